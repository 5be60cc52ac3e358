"""recsys's own ops (kernels/) against the per-feature torch path, and what they buy in training.

Three measurements on Kaggle-profile synthetic data (``--rows`` rows at ``--cardinality-scale``
of the Kaggle cardinalities), each a median over ``--repeats`` repeats with min and max, the
baseline measured in the same run:

1. ``transform``: the id-transform stage of each method's plan at each budget (every
   feature's ids → the slot KJT): one ``recsys::transform_ids`` call against the plan's
   per-feature modules, per 2048-row batch. The two must agree bit for bit (checked).
2. ``md_layout``: the mixed-dimension lookup (forward + backward with the fused optimizer)
   with padded block slots (B bags each, empty where no id falls in the block) against
   per-id block slots (one bag per routed id, FBGEMM's variable-batch layout).
3. ``projection``: the mixed-dimension combination of the lookup output (forward + backward)
   at each budget: one ``recsys::grouped_projection`` call against its torch form (gathers,
   a batched matmul, a head add), per 2048-row batch. Outputs and gradients must agree (checked).
4. ``loop`` (``--loop-steps`` > 0): samples/s of recsys-train's own loop (loader, DLRM,
   fused optimizer), full tables against each method at each budget, runs interleaved
   (full, then every method, per repeat) so machine noise falls on all alike.

    python benchmarks/bench_kernels.py --json benchmarks/results/kernels.json
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_CACHE_DIR,
    Timing,
    cached_synthetic_dataset,
    compose_train_job,
    format_table,
    median,
    parse_methods_and_budgets,
    round_robin,
    save_result,
    start_benchmark,
)

METHODS = ("hash", "qr", "md", "unified")


@dataclasses.dataclass
class TransformPoint:
    method: str
    budget: float
    slots: int
    fused_ms: Timing
    modules_ms: Timing
    speedup: float


@dataclasses.dataclass
class ProjectionPoint:
    budget: float
    columns: int  # the lookup output's width
    op_ms: Timing
    torch_ms: Timing
    speedup: float


@dataclasses.dataclass
class LoopPoint:
    method: str
    budget: float
    samples_per_s: Timing
    vs_full: float  # median / full's median
    vs_full_per_repeat: list[float]


@dataclasses.dataclass
class KernelsResult:
    rows: int
    cardinality_scale: float
    batch_size: int
    repeats: int
    allocator: str
    kernels: str
    transform: list[TransformPoint]
    md_layout: dict
    projection: list[ProjectionPoint]
    threads: int
    loop_steps: int
    loop: list[LoopPoint]
    goals: dict
    command: str


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=600_000)
    p.add_argument("--cardinality-scale", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--budgets", default="1/16,1/4", help="fractions of the full tables' bytes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", type=int, default=8, help="batches per transform/lookup timing")
    p.add_argument("--loop-steps", type=int, default=200, help="trainer.max_steps of each loop run; 0 skips the loop")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    parse_methods_and_budgets(p, args)
    return args


def embedding_for(dataset: Path, method: str, budget: float):
    from recsys.data.layout import DatasetMeta
    from recsys.embeddings.build import build_embedding
    from recsys.embeddings.specs import TableOptimizerConfig

    cfg = {"method": method} if method == "full" else {"method": method, "budget": budget}
    return build_embedding(cfg, DatasetMeta.load(dataset), dataset, 16, TableOptimizerConfig())


def ms_per_batch(passes: dict, repeats: int, batches: int) -> dict[str, list[float]]:
    """ms per batch of each pass (one call runs it over ``batches`` batches), timed in turn."""
    seconds = round_robin({name: lambda _, run=run: run() for name, run in passes.items()}, 1, repeats, warmup=1)
    return {name: [s * 1e3 / batches for s in v] for name, v in seconds.items()}


def transform_point(dataset: Path, batches: list, method: str, budget: float, repeats: int) -> TransformPoint:
    import torch

    emb = embedding_for(dataset, method, budget)
    fused = emb.fused_transforms
    if fused is None:
        raise RuntimeError("recsys::transform_ids is unavailable here; build kernels/ first (scripts/setup.sh)")

    def run(with_fused: bool):
        emb.fused_transforms = fused if with_fused else None
        return [emb.slot_ids(b.sparse) for b in batches]

    for got, want in zip(run(True), run(False)):
        if not (torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])):
            raise AssertionError(f"{method}@{budget:g}: fused slot ids differ from the modules'")
    ms = ms_per_batch({"fused": lambda: run(True), "modules": lambda: run(False)}, repeats, len(batches))
    fused_ms, modules_ms = ms["fused"], ms["modules"]
    emb.fused_transforms = fused
    return TransformPoint(method, budget, len(emb.plan.slots), Timing.of(fused_ms), Timing.of(modules_ms),
                          median(modules_ms) / median(fused_ms))


def md_layout(dataset: Path, batches: list, budget: float, repeats: int) -> dict:
    """Lookup forward + backward, padded vs per-id block slots, ms per batch."""
    from recsys.embeddings.fused_transforms import BlockLayout, FusedTransforms

    emb = embedding_for(dataset, "md", budget)
    per_id = FusedTransforms(emb.plan, BlockLayout.per_id)
    batch = batches[0].sparse
    padded_ids = emb.fused_transforms(batch.values(), batch.lengths(), batch.stride())
    routed = per_id(batch.values(), batch.lengths(), batch.stride())
    routed_bags = routed.bags_per_slot.tolist()

    def padded():
        emb.lookup(padded_ids.values, padded_ids.offsets).sum().backward()

    def variable_batch():
        emb.lookup(routed.values, routed.offsets, routed_bags).sum().backward()

    ms = ms_per_batch({"padded": padded, "per_id": variable_batch}, repeats, 1)
    padded_ms, routed_ms = ms["padded"], ms["per_id"]
    return {
        "budget": budget,
        "slots": len(emb.plan.slots),
        "padded_bags": int(padded_ids.bags_per_slot.sum()),
        "per_id_bags": int(routed.bags_per_slot.sum()),
        "padded_ms": dataclasses.asdict(Timing.of(padded_ms)),
        "per_id_ms": dataclasses.asdict(Timing.of(routed_ms)),
        "per_id_vs_padded_time": median(routed_ms) / median(padded_ms),
    }


def projection_point(dataset: Path, batches: list, budget: float, repeats: int) -> ProjectionPoint:
    """md's GroupedProjection forward + backward on real lookup outputs: the op vs the torch form."""
    import torch

    emb = embedding_for(dataset, "md", budget)
    grouped = emb.grouped_projection
    if grouped is None or not grouped.use_op:
        raise RuntimeError("recsys::grouped_projection is unavailable here; build kernels/ first (scripts/setup.sh)")
    with torch.no_grad():
        outputs = [emb.lookup(*emb.slot_ids(b.sparse)[:2]) for b in batches]
    probe = torch.randn(outputs[0].shape[0], grouped.dim * len(emb.features))
    projections = [m.combiner.projection for m in emb.feature_modules if m.combiner.projection.numel()]

    def run(form):
        grads = []
        for x in outputs:
            x = x.detach().requires_grad_(True)
            grads.append(torch.autograd.grad((form(x) * probe).sum(), [x, *projections]))
        return grads

    for got, want in zip(run(grouped.forward), run(grouped.torch_forward)):
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-3)
    ms = ms_per_batch({"op": lambda: run(grouped.forward), "torch": lambda: run(grouped.torch_forward)}, repeats, len(batches))
    op_ms, torch_ms = ms["op"], ms["torch"]
    return ProjectionPoint(budget, outputs[0].shape[1], Timing.of(op_ms), Timing.of(torch_ms), median(torch_ms) / median(op_ms))


def loop_rate(dataset: Path, method: str, budget: float, args: argparse.Namespace) -> float:
    from recsys.train.loop import train

    overrides = [
        "model=kaggle",
        f"data.path={dataset}",
        f"data.batch_size={args.batch_size}",
        "trainer.epochs=1",
        f"trainer.max_steps={args.loop_steps}",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.eval_every_steps=0",
        "trainer.val_batches=2",
        "trainer.keep_best=false",  # no checkpoints: table-sized writes whose write-back would overlap the next run
        "trainer.checkpoint_at_end=false",
        f"trainer.seed={args.seed}",
        f"embedding={method}",
    ]
    if method != "full":
        overrides.append(f"embedding.budget={budget!r}")
    job, _ = compose_train_job(overrides)
    with tempfile.TemporaryDirectory(prefix="bench_kernels_") as run_dir:
        return train(job, run_dir).train_samples_per_s


def loop_points(dataset: Path, args: argparse.Namespace) -> list[LoopPoint]:
    configs = [("full", 1.0)] + [(m, b) for b in args.budgets for m in args.methods]
    rates: dict[tuple[str, float], list[float]] = {c: [] for c in configs}
    for r in range(args.repeats):
        for method, budget in configs:
            start = time.perf_counter()
            rates[(method, budget)].append(loop_rate(dataset, method, budget, args))
            print(f"loop repeat {r}: {method}@{budget:g} {rates[(method, budget)][-1]:,.0f} samples/s "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    full = rates[("full", 1.0)]
    return [
        LoopPoint(m, b, Timing.of(v), median(v) / median(full), [x / f for x, f in zip(v, full)])
        for (m, b), v in rates.items()
    ]


def main(argv=None) -> None:
    args = parse_args(argv)
    allocator = start_benchmark()
    import torch

    import recsys_kernels
    from recsys.data.loader import ParquetBatches

    dataset = cached_synthetic_dataset(args.rows, args.seed, args.cache_dir, args.cardinality_scale)
    batches = []
    for batch in ParquetBatches(dataset, "train", batch_size=args.batch_size):
        batches.append(batch)
        if len(batches) == args.batches:
            break
    torch.manual_seed(args.seed)
    transform = [transform_point(dataset, batches, m, b, args.repeats) for b in args.budgets for m in args.methods]
    print(format_table(
        [(f"{p.method}@{p.budget:g} ({p.slots} slots)", p.speedup,
          f"x; fused {p.fused_ms.median:.2f} ms [{p.fused_ms.min:.2f}, {p.fused_ms.max:.2f}], "
          f"modules {p.modules_ms.median:.2f} ms [{p.modules_ms.min:.2f}, {p.modules_ms.max:.2f}] per batch")
         for p in transform],
        "id transforms: modules time / recsys::transform_ids time"))
    layout = md_layout(dataset, batches, min(args.budgets), args.repeats) if "md" in args.methods else {}
    if layout:
        print(format_table([
            ("padded block slots", layout["padded_ms"]["median"], f"ms, {layout['padded_bags']:,} bags"),
            ("per-id block slots", layout["per_id_ms"]["median"], f"ms, {layout['per_id_bags']:,} bags (variable batch)"),
        ], f"md lookup forward+backward at budget {layout['budget']:g}"))
    projection = [projection_point(dataset, batches, b, args.repeats) for b in args.budgets] if "md" in args.methods else []
    if projection:
        print(format_table(
            [(f"md@{p.budget:g} ({p.columns} columns)", p.speedup,
              f"x; op {p.op_ms.median:.2f} ms [{p.op_ms.min:.2f}, {p.op_ms.max:.2f}], "
              f"torch {p.torch_ms.median:.2f} ms [{p.torch_ms.min:.2f}, {p.torch_ms.max:.2f}] per batch")
             for p in projection],
            f"md projection forward+backward ({torch.get_num_threads()} threads): torch time / recsys::grouped_projection time"))
    loop = loop_points(dataset, args) if args.loop_steps > 0 else []
    if loop:
        print(format_table(
            [(f"{p.method}@{p.budget:g}", p.samples_per_s.median,
              f"samples/s [{p.samples_per_s.min:,.0f}, {p.samples_per_s.max:,.0f}], {p.vs_full:.2f}x full "
              f"(per repeat {', '.join(f'{x:.2f}' for x in p.vs_full_per_repeat)})") for p in loop],
            f"recsys-train loop, {args.loop_steps} steps, median of {args.repeats}"))
    compressed = {f"{p.method}@{p.budget:g}": round(p.vs_full, 3) for p in loop if p.method != "full"}
    goals = {"loop_vs_full": compressed, "all_at_least_0.9x_full": all(v >= 0.9 for v in compressed.values()) if loop else None}
    print(f"goal: every compressed method >= 0.9x full samples/s: {goals['all_at_least_0.9x_full']}")
    result = KernelsResult(
        rows=args.rows, cardinality_scale=args.cardinality_scale, batch_size=args.batch_size, repeats=args.repeats,
        allocator=allocator, kernels="built" if recsys_kernels.available() else recsys_kernels.unavailable_reason(),
        transform=transform, md_layout=layout, projection=projection, threads=torch.get_num_threads(),
        loop_steps=args.loop_steps, loop=loop, goals=goals,
        command=shlex.join(["python", "benchmarks/bench_kernels.py", *(sys.argv[1:] if argv is None else argv)]),
    )
    save_result(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
