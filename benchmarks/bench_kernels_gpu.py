"""recsys's GPU id-transform op and what it buys in training, on one GPU (``scripts/gpu_check.sh``).

Two measurements on the Kaggle DLRM's features (``--cardinality-scale`` of the Kaggle
cardinalities, Zipf-skewed single-hot ids drawn on the device each step, the batches carrying
``length_per_key`` as the loader's do), each a median over ``--repeats`` with min and max, the
baseline in the same run:

1. ``transform``: the id-transform stage of each method at each budget, per batch:
   ``recsys::transform_ids_masked`` (Triton on CUDA) against the vectorised torch version of the
   same op and against the plan's per-feature modules (what a GPU ran before). Triton and torch
   must agree bit for bit, and the embedding output must match the modules' (checked).
2. ``step``: a DLRM training step (forward, backward, fused table optimizer, dense Adagrad) of
   each method at each budget against full tables, at each of ``--batches``, all models built
   side by side and timed round-robin; mixed-dimension (MD) also with the per-feature modules,
   whose frequency-block routing waits for the device once per feature.

    python benchmarks/bench_kernels_gpu.py --json benchmarks/results/kernels_gpu.json

``--device cpu --cardinality-scale 0.001`` runs the same code on a CPU (the torch version of the
op instead of Triton): a dry run, not a figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (Timing, ZipfBatches, format_table, median, parse_methods_and_budgets, round_robin,  # noqa: E402
                    save_result, start_benchmark)

METHODS = ("hash", "qr", "md", "unified")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--cardinality-scale", type=float, default=1.0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--budgets", default="1/16,1/4", help="fractions of the full tables' bytes")
    p.add_argument("--batches", type=int, nargs="+", default=[2048, 65536], help="batch sizes")
    p.add_argument("--steps", type=int, default=30, help="timed steps (or transform calls) per repeat")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sections", nargs="+", default=["transform", "step"], choices=["transform", "step"])
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    parse_methods_and_budgets(p, args)
    return args


def zipf_features(scale: float):
    """The Kaggle features, with the frequency of each rank that Zipf (exponent 1) ids give."""
    from recsys.data.synth_model import KAGGLE_CARDINALITIES
    from recsys.embeddings.plan import FeatureInfo

    features = []
    for i, n in enumerate(KAGGLE_CARDINALITIES):
        rows = max(4, int(n * scale)) + 1
        features.append(FeatureInfo(f"C{i + 1}", rows, counts=(1e9 / np.arange(1, rows + 1)).astype(np.int64)))
    return features


def embedding(features, method: str, budget: float, device, modules: bool = False):
    import torch

    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.specs import TableOptimizerConfig

    torch.manual_seed(0)
    cfg = {"method": method} if method == "full" else {"method": method, "budget": budget}
    emb = make_embedding(cfg, features, 16, TableOptimizerConfig(), device=device)
    if modules:
        emb.fused_transforms = None
    return emb


def transform_section(args, features, device, sync) -> list[dict]:
    import torch

    from recsys.embeddings.fused_transforms import MaskedTransforms
    from recsys_kernels.masked import masked_torch

    points = []
    for batch in args.batches:
        stream = ZipfBatches(features, batch, device)
        kjts = [stream[0][1] for _ in range(8)]
        for budget in args.budgets:
            for method in args.methods:
                emb = embedding(features, method, budget, device)
                masked = MaskedTransforms(emb.plan).to(device)
                args0 = masked.op_args(kjts[0])
                for got, want in zip(torch.ops.recsys.transform_ids_masked(*args0), masked_torch(*args0)):
                    if not torch.equal(got, want):
                        raise AssertionError(f"{method}@{budget:g}: the op's kernel differs from its torch version")
                emb.fused_transforms = masked
                with torch.no_grad():
                    out = emb(kjts[0]).values()
                    emb.fused_transforms = None
                    torch.testing.assert_close(out, emb(kjts[0]).values(), rtol=1e-5, atol=1e-6)
                calls = {
                    "op": lambda i: torch.ops.recsys.transform_ids_masked(*masked.op_args(kjts[i % 8])),
                    "torch": lambda i: masked_torch(*masked.op_args(kjts[i % 8])),
                    "modules": lambda i: emb.slot_ids(kjts[i % 8]),
                }
                seconds = round_robin(calls, args.steps, args.repeats, warmup=args.warmup, sync=sync)
                ms = {name: [t * 1e3 for t in v] for name, v in seconds.items()}
                points.append({"batch_size": batch, "method": method, "budget": budget, "slots": len(emb.plan.slots),
                               **{f"{name}_ms": Timing.of(v).__dict__ for name, v in ms.items()},
                               "modules_vs_op": median(ms["modules"]) / median(ms["op"]),
                               "torch_vs_op": median(ms["torch"]) / median(ms["op"])})
                print(f"transform {method}@{budget:g} batch {batch}: op {median(ms['op']):.3f} ms, "
                      f"torch {median(ms['torch']):.3f} ms, modules {median(ms['modules']):.3f} ms", flush=True)
    return points


def step_section(args, features, device, sync) -> list[dict]:
    import torch

    from recsys.models.dlrm import DLRM
    from recsys.train.loop import make_dense_optimizer

    from bench_scale import kaggle_dlrm_config  # beside this script, on sys.path (top of module)

    configs = [("full", 1.0, False)] + [(m, b, False) for b in args.budgets for m in args.methods]
    if "md" in args.methods:
        configs.append(("md", min(args.budgets), True))
    runs = []
    for method, budget, modules in configs:
        emb = embedding(features, method, budget, device, modules)
        model = DLRM(emb, num_dense=13, config=kaggle_dlrm_config()).to(device)
        runs.append((model, make_dense_optimizer(model, "adagrad", 0.01), emb.memory().total_bytes))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    points = []
    for batch in args.batches:
        stream = ZipfBatches(features, batch, device)
        data = [stream[0] for _ in range(8)]

        def step_fn(run: int):
            model, opt, _ = runs[run]

            def step(i: int) -> None:
                dense, kjt, labels = data[i % len(data)]
                loss = loss_fn(model(dense, kjt), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return step

        per_step = round_robin({run: step_fn(run) for run in range(len(runs))}, args.steps, args.repeats,
                               warmup=args.warmup, sync=sync)
        full = [batch / s for s in per_step[0]]
        for run, ((method, budget, modules), (_, _, table_bytes)) in enumerate(zip(configs, runs)):
            rates = [batch / s for s in per_step[run]]
            points.append({"batch_size": batch, "method": method, "budget": budget,
                           "transforms": "modules" if modules else ("none" if method == "full" else "op"),
                           "table_bytes": table_bytes, "samples_per_s": Timing.of(rates).__dict__,
                           "vs_full": median(rates) / median(full), "vs_full_per_repeat": [r / f for r, f in zip(rates, full)]})
    return points


def main(argv=None) -> None:
    args = parse_args(argv)
    allocator = start_benchmark()
    import torch

    import recsys_kernels  # noqa: F401  (registers the ops)

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    features = zipf_features(args.cardinality_scale)
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "allocator": allocator,
              "cardinality_scale": args.cardinality_scale, "table_rows": sum(f.num_embeddings for f in features),
              "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "transform": [], "step": []}
    if "transform" in args.sections:
        result["transform"] = transform_section(args, features, device, sync)
        print(format_table(
            [(f"{p['method']}@{p['budget']:g} batch {p['batch_size']}", p["modules_vs_op"],
              f"x; op {p['op_ms']['median']:.3f} ms [{p['op_ms']['min']:.3f}, {p['op_ms']['max']:.3f}], "
              f"torch {p['torch_ms']['median']:.3f} ms, modules {p['modules_ms']['median']:.3f} ms") for p in result["transform"]],
            "id transforms per batch: modules time / recsys::transform_ids_masked time"))
    if "step" in args.sections:
        result["step"] = step_section(args, features, device, sync)
        print(format_table(
            [(f"{p['method']}@{p['budget']:g} ({p['transforms']}) batch {p['batch_size']}", p["samples_per_s"]["median"],
              f"samples/s [{p['samples_per_s']['min']:,.0f}, {p['samples_per_s']['max']:,.0f}], {p['vs_full']:.2f}x full")
             for p in result["step"]],
            f"DLRM training step, {args.steps} steps x {args.repeats} repeats, round-robin"))
        compressed = [p for p in result["step"] if p["method"] != "full" and p["transforms"] == "op"]
        result["goals"] = {"every_compressed_at_least_0.9x_full": all(p["vs_full"] >= 0.9 for p in compressed)}
        print(f"goal: every compressed method >= 0.9x full samples/s on this device: {result['goals']}")
    save_result(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
