"""``recsys::dot_interaction`` against the torch form it replaces, and what it buys a DLRM step.

Two measurements at the Kaggle DLRM's shape (26 sparse vectors, dim 16, the ``kaggle`` preset's
first-order constant vector: 28 vectors, 378 pairs), each a median over ``--repeats`` with min
and max, the forms timed round-robin in the same run:

1. ``interaction``: forward + backward per batch, at each of ``--batches``: the op (float32),
   the torch form in float32 (``DotInteraction.forward``: concatenation, batched matmul, upper
   triangle gather) and the torch form under bfloat16 autocast (what a bf16 DLRM ran before the
   op). The op's output and gradients must match the float32 torch form (checked).
2. ``step``: the Kaggle DLRM's in-memory training step (the ``kaggle`` model and trainer presets:
   forward, backward, fused table optimizer, the preset's dense optimizer) at full Kaggle cardinalities and batch 2048, Zipf-
   skewed ids, with the interaction through the op and through the torch form, the model's
   dense precision as the ``kaggle`` preset resolves it here (``--dense-precision``).

    python benchmarks/bench_interaction.py --json benchmarks/results/interaction.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (Timing, ZipfBatches, compose_train_job, format_table, median, round_robin, save_result,  # noqa: E402
                    start_benchmark)

FEATURES, DIM = 26, 16


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[2048, 16384], help="batch sizes of the op's timing")
    p.add_argument("--calls", type=int, default=30, help="timed calls (or steps) per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--step-cardinality-scale", type=float, default=1.0, help="the step's Kaggle cardinalities times this")
    p.add_argument("--dense-precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--json", type=Path, required=True)
    return p.parse_args(argv)


def interaction_section(args) -> list[dict]:
    import torch

    from recsys.models.dlrm import DotInteraction

    module = DotInteraction(FEATURES + 1, DIM)
    if not module.fusable:
        raise RuntimeError("recsys::dot_interaction is unavailable here; build kernels/ first (scripts/setup.sh)")
    points = []
    for batch in args.batches:
        g = torch.Generator().manual_seed(batch)
        dense = torch.randn(batch, DIM, generator=g, requires_grad=True)
        sparse = torch.randn(batch, FEATURES, DIM, generator=g, requires_grad=True)
        probe = torch.randn(batch, module.output_dim(DIM), generator=g)
        leaves = [dense, sparse, module.constant]

        def grads(forward, bf16=False):
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                out = forward(dense, sparse)
            return [out, *torch.autograd.grad((out.float() * probe).sum(), leaves)]

        for got, want in zip(grads(module.fused), grads(module.forward)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
        seconds = round_robin({"op": lambda _: grads(module.fused), "torch_fp32": lambda _: grads(module.forward),
                               "torch_bf16": lambda _: grads(module.forward, bf16=True)}, args.calls, args.repeats)
        ms = {name: Timing.of([s * 1e3 for s in v]).__dict__ for name, v in seconds.items()}
        points.append({"batch_size": batch, **{f"{name}_ms": t for name, t in ms.items()},
                       "torch_fp32_vs_op": median(seconds["torch_fp32"]) / median(seconds["op"]),
                       "torch_bf16_vs_op": median(seconds["torch_bf16"]) / median(seconds["op"])})
        print(f"interaction batch {batch}: op {ms['op']['median']:.3f} ms, torch fp32 {ms['torch_fp32']['median']:.3f} ms, "
              f"torch bf16 {ms['torch_bf16']['median']:.3f} ms", flush=True)
    return points


def step_section(args) -> dict:
    import torch

    from bench_kernels_gpu import zipf_features  # beside this script
    from recsys.embeddings.build import make_embedding
    from recsys.models.dlrm import DLRM
    from recsys.train.loop import make_dense_optimizer

    # the kaggle model and trainer presets, as recsys-train composes them (data.path is mandatory
    # there; nothing reads it here, the batches are drawn in memory)
    job, _ = compose_train_job(["model=kaggle", "trainer=kaggle", f"model.dense_precision={args.dense_precision}",
                                "data.path=none-batches-drawn-in-memory"])
    features = zipf_features(args.step_cardinality_scale)
    torch.manual_seed(0)
    embedding = make_embedding({"method": "full"}, features, job.model.embedding_dim, job.trainer.table_optimizer)
    model = DLRM(embedding, num_dense=13, config=job.model)
    optimizer = make_dense_optimizer(model, job.trainer.dense_optimizer, job.trainer.dense_lr)
    stream = ZipfBatches(features, 2048, torch.device("cpu"))
    data = [stream[0] for _ in range(8)]
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(fused: bool):
        def run(i: int):
            dense, kjt, labels = data[i % len(data)]
            model.interaction.fusable = fused
            loss = loss_fn(model(dense, kjt), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return run

    seconds = round_robin({"op": step(True), "torch": step(False)}, args.calls, args.repeats)
    model.interaction.fusable = True
    rates = {name: Timing.of([2048 / s for s in v]).__dict__ for name, v in seconds.items()}
    out = {"dense_precision": "bf16" if model.bf16 else "fp32", "table_rows": sum(f.num_embeddings for f in features),
           "op_samples_per_s": rates["op"], "torch_samples_per_s": rates["torch"],
           "op_vs_torch": median(seconds["torch"]) / median(seconds["op"])}
    print(f"DLRM step ({out['dense_precision']} dense layers): op {rates['op']['median']:,.0f} samples/s, "
          f"torch form {rates['torch']['median']:,.0f}", flush=True)
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    allocator = start_benchmark()
    import torch

    interaction = interaction_section(args)
    print(format_table(
        [(f"batch {p['batch_size']}", p["torch_fp32_vs_op"],
          f"x (fp32), {p['torch_bf16_vs_op']:.2f}x (bf16 autocast); op {p['op_ms']['median']:.3f} ms "
          f"[{p['op_ms']['min']:.3f}, {p['op_ms']['max']:.3f}]") for p in interaction],
        f"dot interaction forward+backward ({torch.get_num_threads()} threads): torch time / recsys::dot_interaction time"))
    step = step_section(args)
    print(format_table([("DLRM step", step["op_vs_torch"], f"x the torch form's samples/s ({step['dense_precision']} dense layers)")]))
    result = {"allocator": allocator, "threads": torch.get_num_threads(), "features": FEATURES, "dim": DIM,
              "calls": args.calls, "repeats": args.repeats, "interaction": interaction, "step": step,
              "command": shlex.join(["python", "benchmarks/bench_interaction.py", *(sys.argv[1:] if argv is None else argv)])}
    save_result(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
