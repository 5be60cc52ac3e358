"""Memory vs quality and speed: every embedding method at budgets of 1/4, 1/16 and 1/64 of the full tables.

On Kaggle-profile synthetic data (``--rows`` rows, full Kaggle cardinalities), each point (a
method at a budget) trains the classic Kaggle DLRM (dim 16) for one full epoch and is scored
on the test split: its AUC. The budget counts the exact bytes of the embedding plan: table
weights, the fused optimizer's state (row-wise Adagrad: one float per row) and combiner
weights (mixed-dimension projections); the solver picks each method's size knobs
(hash/unified ``compression``, QR ``collisions``, MD ``alpha`` and ``rounding``) for the
largest plan that fits, and each point reports its bytes over its budget. Series:

* ``hash``, ``qr``, ``md``, ``unified``: the method with its defaults;
* ``hash_threshold``: the hashing trick with ``threshold`` (``--hash-threshold``, 20,000 rows:
  why in ``pareto_runs.HASH_THRESHOLD``): small tables stay whole, the rest share the budget;
* ``optembed``: OptEmbed's stages (supernet, search, retrain: one epoch each) through the
  stage runner; one point at the size its search picks, its bytes and fraction reported.

Full tables are the baseline, trained in the same run (every method at budget 1 is the full
tables or close to them: ``--budgets 1,1/4,...`` adds those points), and the generator's
Bayes-optimal AUC is the ceiling. Speed is recsys-train's own loop (``train_samples_per_s``)
over ``--speed-steps`` steps per run (more where fewer would take under ``--speed-seconds`` at full
tables' epoch rate: a short run on a fast machine is otherwise mostly noise), the median of
``--speed-repeats`` runs with min and max. Each repeat runs every point in turn, with the full
tables first, again after every ``--full-every`` points and last: a point's speed against full
tables, per repeat, is its rate over the mean of the two full-table runs around it (minutes
apart, where a repeat of all points takes seven on this machine's 2 cores, over which its
speed drifts by 10-20%), and the point's figure is the median of those ratios.

    python benchmarks/bench_pareto.py --rows 4000000 --json out.json

Goals checked and printed (issue 9): every compressed point >= 0.9x full tables' samples/s;
MD at 1/16 within 0.002 AUC of full tables; QR at least hash's AUC at every budget; MD's 1/4 and
1/16 plans differ. The script prints its expected duration before it starts and again after
the full-table epoch, from that epoch's measured time.

Every point's final evaluation keeps its per-row predictions (``<cache dir>/<json stem>_runs/<point>``;
the plain points write no checkpoint, OptEmbed's stages' checkpoints are removed), and ``recsys-report`` writes ``<json stem>_report.html`` beside the JSON over all of
them: the memory-vs-AUC Pareto front, and DeLong tests of each point against the full tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import gc
import json
import subprocess
import sys
import math
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Timing,
    add_synthetic_training_args,
    cached_synthetic_dataset,
    format_table,
    median,
    save_result,
    start_benchmark,
)
from pareto_runs import (  # noqa: E402
    FULL,
    HASH_THRESHOLD,
    OPTEMBED,
    EpochRun,
    Series,
    all_series,
    epoch_run,
    runs_dir,
    short_run_rate,
)

BUDGETS = ("1/4", "1/16", "1/64")
METHODS = ("hash", "hash_threshold", "qr", "md", "unified", "optembed")
# the duration estimate before anything is measured starts from full tables' recsys-train rate that
# bench_pipeline last measured (committed), plus what a run costs besides its steps (building the
# model, validation, evaluation)
PIPELINE_RESULT = Path(__file__).resolve().parent / "results" / "pipeline.json"
EPOCH_OVERHEAD_S, SHORT_OVERHEAD_S = 25.0, 8.0
OPTEMBED_EPOCHS = 3  # supernet + retrain epochs, and a search that scores about an epoch's worth of rows


@dataclasses.dataclass
class Point:
    method: str  # the series: full, hash, hash_threshold, qr, md, unified, optembed
    setting: str  # the series' fixed options (threshold=20000)
    budget: float | None  # the fraction asked for; None for OptEmbed (its search picks the size)
    bytes: int
    full_bytes: int
    bytes_fraction: float  # bytes / full_bytes
    bytes_vs_budget: float | None  # bytes / (budget x full_bytes)
    knob: str  # what the budget solve (or OptEmbed's search) chose
    auc: float
    logloss: float
    bayes_auc: float
    bayes_logloss: float
    epoch_samples_per_s: float  # the AUC epoch's own loop rate (one figure; OptEmbed: its retraining)
    samples_per_s: Timing  # short runs of the loop
    speed_vs_full: float  # median over repeats of rate / the mean of the full-table runs around it
    speed_vs_full_per_repeat: list[float]
    epoch_seconds: float


@dataclasses.dataclass
class ParetoResult:
    rows: int
    train_rows: int
    test_rows: int
    allocator: str
    speed_steps: int
    speed_repeats: int
    hash_threshold: int
    seconds: float
    results: list[Point]
    goals: dict
    plot: str
    command: str = ""  # the command line that produced this result
    full_every: int | None = None  # full tables ran again after this many points (None: first in each repeat only)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_synthetic_training_args(p)
    p.add_argument("--methods", default=",".join(METHODS), help=f"series among {','.join(METHODS)}")
    p.add_argument("--budgets", default=",".join(BUDGETS), help="fractions of the full bytes, e.g. 1,1/4")
    p.add_argument("--hash-threshold", type=int, default=HASH_THRESHOLD, help="hash_threshold's tables of at most this many rows stay whole")
    p.add_argument("--speed-steps", type=int, default=200, help="steps of each short run of the loop")
    p.add_argument("--speed-seconds", type=float, default=20.0,
                   help="each short run takes at least about this long at full tables' epoch rate (more steps if needed)")
    p.add_argument("--speed-repeats", type=int, default=3)
    p.add_argument("--full-every", type=int, default=4,
                   help="in each repeat, run the full tables again after this many points (their ratio's baseline)")
    p.add_argument("--optembed-override", dest="optembed_overrides", action="append", default=[],
                   help="a Hydra override of the OptEmbed job only (repeatable), e.g. embedding.search_batches=5")
    args = p.parse_args(argv)
    series = all_series(args.hash_threshold) | {"optembed": OPTEMBED}
    unknown = set(args.methods.split(",")) - set(series)
    if unknown:
        p.error(f"--methods: unknown {sorted(unknown)}; choose among {','.join(METHODS)}")
    args.series = [series[m] for m in args.methods.split(",")]
    args.budgets = [float(Fraction(b)) for b in args.budgets.split(",")]
    if args.full_every < 1:
        p.error("--full-every must be at least 1")
    if args.speed_repeats < 3:
        p.error("--speed-repeats must be at least 3 (figures are medians with min and max)")
    return args


def expected_seconds(args: argparse.Namespace, epoch_s: float, short_s: float) -> float:
    """The sweep's duration if an epoch run takes ``epoch_s`` and a short run ``short_s``."""
    budgeted = [s for s in args.series if s is not OPTEMBED]
    epochs = 1 + len(budgeted) * len(args.budgets) + (OPTEMBED_EPOCHS if OPTEMBED in args.series else 0)
    points = len(budgeted) * len(args.budgets) + (OPTEMBED in args.series)
    shorts = args.speed_repeats * (points + 1 + math.ceil(points / args.full_every))  # full first and after each group
    return epochs * epoch_s + shorts * short_s


def print_estimate(args: argparse.Namespace, train_rows: int, measured_full_s: float | None = None) -> None:
    rate = json.loads(PIPELINE_RESULT.read_text())["train_loop_samples_per_s"]
    epoch_s = train_rows / rate + EPOCH_OVERHEAD_S
    short_s = args.speed_steps * args.batch_size / rate + SHORT_OVERHEAD_S
    scale, basis = 1.0, f"at {rate:,.0f} samples/s (full tables' recsys-train rate in {PIPELINE_RESULT.name}, a quiet machine)"
    if measured_full_s is not None:
        scale, basis = measured_full_s / epoch_s, f"scaled by the full-table epoch's {measured_full_s:.0f} s"
    total = expected_seconds(args, epoch_s * scale, short_s * scale)
    print(f"expected duration: {total / 60:.0f} min {basis}; compressed methods slower than full tables take longer",
          flush=True)


def check_goals(points: list[Point]) -> dict:
    full = next(p for p in points if p.method == "full")
    by = {(p.method, p.budget): p for p in points}
    goals: dict = {}
    speed = {label(p): round(p.speed_vs_full, 4) for p in points if p.method != "full"}
    goals["speed_vs_full"] = speed
    goals["all_at_least_0.9x_full_speed"] = all(v >= 0.9 for v in speed.values())
    md16, md4 = by.get(("md", 1 / 16)), by.get(("md", 1 / 4))
    if md16:
        goals["md_1_16_auc_gap_to_full"] = full.auc - md16.auc
        goals["md_1_16_within_0.002"] = full.auc - md16.auc <= 0.002
    qr_vs_hash = {f"{b:g}": by[("qr", b)].auc - by[("hash", b)].auc for (m, b) in by if m == "qr" and ("hash", b) in by}
    if qr_vs_hash:
        goals["qr_minus_hash_auc"] = qr_vs_hash
        goals["qr_at_least_hash_everywhere"] = all(v >= 0 for v in qr_vs_hash.values())
    if md16 and md4:
        goals["md_1_4_and_1_16_differ"] = (md4.bytes, md4.knob) != (md16.bytes, md16.knob)
    return goals


def threshold_effect(points: list[Point]) -> dict:
    """hash_threshold's AUC minus plain hash's, per budget (a measurement, not a goal)."""
    by = {(p.method, p.budget): p for p in points}
    return {f"{b:g}": by[("hash_threshold", b)].auc - by[("hash", b)].auc
            for (m, b) in by if m == "hash_threshold" and ("hash", b) in by}


def label(p: Point) -> str:
    return p.method if p.budget is None else f"{p.method}@{p.budget:g}"


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(p.method for p in points):
        pts = sorted((p for p in points if p.method == method), key=lambda p: p.bytes)
        ax.plot([p.bytes / 2**20 for p in pts], [p.auc for p in pts], marker="o", label=method)
    ax.axhline(points[0].bayes_auc, color="grey", linestyle="--", label="Bayes-optimal")
    ax.set_xscale("log")
    ax.set_xlabel("embedding bytes (weights + optimizer state + projections), MiB")
    ax.set_ylabel("test AUC")
    ax.set_title("DLRM on synthetic Criteo-Kaggle: memory vs AUC")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def measure_speed(runs: dict[tuple[Series, float | None], EpochRun], args: argparse.Namespace) -> tuple[dict, dict]:
    """Short-run rates per point over ``--speed-repeats`` rounds of every point in turn, the full
    tables first, after every ``--full-every`` points and last.

    Returns (each point's rates, one per repeat, full tables' all of theirs; each point's
    baseline per repeat: the mean of the two full-table rates around it)."""
    full_key = (FULL, 1.0)
    others = [key for key in runs if key != full_key]
    rates: dict = {key: [] for key in runs}
    baselines: dict = {key: [] for key in others}

    def measure(key, r: int) -> float:
        start = time.perf_counter()
        rate = short_run_rate(runs[key].speed_job, args)
        series, budget = key
        where = series.name if budget is None else f"{series.name}@{budget:g}"
        print(f"speed repeat {r + 1}: {where} {rate:,.0f} samples/s ({time.perf_counter() - start:.0f} s)", flush=True)
        gc.collect()
        return rate

    for r in range(args.speed_repeats):
        before = measure(full_key, r)
        rates[full_key].append(before)
        for i in range(0, len(others), args.full_every):
            group = others[i:i + args.full_every]
            group_rates = [measure(key, r) for key in group]
            after = measure(full_key, r)
            rates[full_key].append(after)
            for key, rate in zip(group, group_rates):
                rates[key].append(rate)
                baselines[key].append((before + after) / 2)
            before = after
    return rates, baselines


def main(argv=None) -> ParetoResult:
    args = parse_args(argv)
    allocator = start_benchmark()
    from recsys.data.layout import DatasetMeta
    from recsys.evaluation.report import load_bayes

    started = time.perf_counter()
    dataset = cached_synthetic_dataset(args.rows, args.seed, args.cache_dir, args.cardinality_scale)
    meta = DatasetMeta.load(dataset)
    bayes = load_bayes(dataset, "test")
    print_estimate(args, meta.rows["train"])
    jobs: list[tuple[Series, float | None]] = [(FULL, 1.0)] + [
        (s, None) if s is OPTEMBED else (s, b) for s in args.series for b in ([None] if s is OPTEMBED else args.budgets)
    ]
    runs: dict[tuple[Series, float | None], EpochRun] = {}
    for series, budget in jobs:
        run = runs[(series, budget)] = epoch_run(dataset, series, budget, args)
        where = series.name if budget is None else f"{series.name}@{budget:g}"
        print(f"{where:22s} bytes {run.bytes:>14,} AUC {run.eval['auc']:.5f} logloss {run.eval['logloss']:.5f} "
              f"epoch {run.epoch_samples_per_s:>8,.0f} samples/s {run.seconds:.0f} s  {run.knob}", flush=True)
        if series is FULL:
            args.speed_steps = max(args.speed_steps, math.ceil(args.speed_seconds * run.epoch_samples_per_s / args.batch_size))
            print(f"short runs: {args.speed_steps} steps each", flush=True)
            print_estimate(args, meta.rows["train"], run.seconds)
        gc.collect()
    rates, baselines = measure_speed(runs, args)
    full_run = runs[(FULL, 1.0)]
    points = []
    for (series, budget), run in runs.items():
        mine = rates[(series, budget)]
        per_repeat = [x / f for x, f in zip(mine, baselines[(series, budget)])] if series is not FULL else [1.0] * args.speed_repeats
        points.append(Point(
            method=series.name, setting=series.setting, budget=budget, bytes=run.bytes, full_bytes=full_run.bytes,
            bytes_fraction=run.bytes / full_run.bytes,
            bytes_vs_budget=None if budget is None else run.bytes / (budget * full_run.bytes),
            knob=run.knob, auc=run.eval["auc"], logloss=run.eval["logloss"],
            bayes_auc=bayes["bayes_auc"], bayes_logloss=bayes["bayes_logloss"],
            epoch_samples_per_s=run.epoch_samples_per_s, samples_per_s=Timing.of(mine),
            speed_vs_full=median(per_repeat), speed_vs_full_per_repeat=per_repeat, epoch_seconds=run.seconds,
        ))
    goals = check_goals(points)
    goals["measured_hash_threshold_minus_hash_auc"] = threshold_effect(points)
    plot_path = args.json.with_suffix(".png")
    plot(points, plot_path)
    rows = [
        (label(p), p.auc,
         f"bytes {p.bytes_fraction:.4f} of full" + ("" if p.bytes_vs_budget is None else f" ({p.bytes_vs_budget:.2f} of budget)")
         + f"  {p.samples_per_s.median:,.0f} samples/s [{p.samples_per_s.min:,.0f}, {p.samples_per_s.max:,.0f}] "
         f"({p.speed_vs_full:.2f}x full)  {p.setting} {p.knob}".rstrip())
        for p in points
    ]
    rows.append(("Bayes-optimal", bayes["bayes_auc"], f"logloss {bayes['bayes_logloss']:.5f}"))
    print(format_table(rows, title=f"bench_pareto: test AUC after one epoch ({meta.rows['train']:,} training rows); "
                                   f"samples/s: median of {args.speed_repeats} runs of {args.speed_steps} steps"))
    for key, value in goals.items():
        print(f"  {key}: {value}")
    seconds = time.perf_counter() - started
    print(f"sweep took {seconds / 60:.1f} min")
    out = ParetoResult(args.rows, meta.rows["train"], meta.rows["test"], allocator, args.speed_steps, args.speed_repeats,
                       args.hash_threshold, seconds, points, goals, str(plot_path),
                       shlex.join(["python", "benchmarks/bench_pareto.py", *(sys.argv[1:] if argv is None else argv)]),
                       args.full_every)
    save_result(args.json, out)
    print(f"wrote {args.json} and {plot_path}")
    report = args.json.with_name(args.json.stem + "_report.html")  # its numbers: <stem>_report.json
    subprocess.run([sys.executable, "-m", "recsys.cli.report", f"runs={runs_dir(args)}", f"output={report}",
                    "baseline=full@1"], check=True)
    return out


if __name__ == "__main__":
    main()
