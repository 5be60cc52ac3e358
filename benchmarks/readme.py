"""The README's benchmark figures, generated from ``benchmarks/results/*.json``.

Each result file has a block in README.md between ``<!-- generated: NAME -->`` and
``<!-- end generated: NAME -->`` (NAME = the JSON's stem). This script rewrites those blocks
from the JSON; ``--check`` only reports blocks that differ (tests/benchmarks/test_readme.py runs
it, so a README figure cannot drift from its JSON). No figure in those blocks is typed by hand.

    python benchmarks/readme.py            # rewrite README.md
    python benchmarks/readme.py --check    # exit 1 if README.md and the JSON disagree
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"


def _k(x: float) -> str:
    return f"{x / 1000:,.1f}K"


def _spread(s: dict) -> str:
    return f"{_k(s['median'])} (min {_k(s['min'])}, max {_k(s['max'])}, {s['n']} runs)"


def _ms(s: dict) -> str:
    return f"{s['median']:.2f} ms (min {s['min']:.2f}, max {s['max']:.2f})"


def render_pipeline(r: dict) -> str:
    lines = [
        f"`bench_pipeline.py --rows {r['rows']}` ({r['cpu_count']} shared CPU cores; rates move between runs, "
        "ratios are within one run). Every row trains the reference Kaggle DLRM (torchrec's architecture: no FM "
        f"component, constant vector or batch norm) over full tables, on a {r['train_dataset_rows']:,}-row synthetic set:",
        "",
        "| figure | samples/s | note |",
        "|---|---|---|",
    ]
    precision = r.get("dense_precision", "fp32")  # results from before model.dense_precision: fp32
    fp32_peer = r.get("torchrec_fp32_samples_per_s")
    lines += [
        f"| `recsys-train` (the real loop, loader included; dense layers {precision}) | {_spread(r['train_loop_spread'])} | "
        f"{r['loop_vs_torchrec']:.2f}x torchrec at {precision}"
        + (f", {r['loop_vs_torchrec_fp32']:.2f}x torchrec in fp32" if fp32_peer else "")
        + f", {r['loop_vs_step']:.2f}x the in-memory step |",
        f"| in-memory training step ({precision}) | {_spread(r['step_spread'])} | glibc malloc: {_k(r['step_samples_per_s_glibc'])} "
        f"(tcmalloc {r['tcmalloc_vs_glibc']:.2f}x) |",
        *([f"| in-memory training step (fp32) | {_spread(r['step_fp32_spread'])} | bf16 {r['bf16_vs_fp32_step']:.2f}x fp32 |"]
          if r.get("step_fp32_samples_per_s") else []),
        f"| torchrec DLRM + FusedEmbeddingBagCollection (in-memory, {precision}) | {_spread(r['torchrec_spread'])} | |",
    ]
    if fp32_peer:
        lines.append(f"| the same torchrec DLRM in fp32, as its example trains it | {_spread(r['torchrec_fp32_spread'])} | |")
    lines.append(
        f"| roofline (per repeat) | {', '.join(_k(x) for x in r['roofline_per_repeat'])} | step / roofline per repeat: "
        f"{', '.join(f'{x:.2f}' for x in r['step_vs_roofline_per_repeat'])} |")
    lines += [
        "",
        f"Ingest {_k(r['ingest_rows_per_s'])} rows/s vs the pandas way {_k(r['pandas_rows_per_s'])} "
        f"({r['ingest_vs_pandas']:.1f}x); loader {r['loader_samples_per_s'] / 1e6:.2f}M samples/s; "
        f"{r['table_rows']:,} table rows, batch {r['batch_size']}, {r['flops_per_sample'] / 1e6:.2f} MFLOP per sample.",
    ]
    return "\n".join(lines)


def _dlrm_options(model: dict) -> str:
    """The DLRM options (recsys/models/dlrm.py) a result's model config turns on, as a parenthesis."""
    on = [k for k in ("fm_component", "first_order", "dense_norm") if model.get(k)]
    if model.get("bottom_last_relu") is False:
        on.append("bottom_last_relu=false")
    if model.get("dense_precision", "fp32") != "fp32":
        on.append(f"dense_precision={model['dense_precision']}")
    return f" ({', '.join(on)})" if on else " (reference DLRM)"


def render_quality(r: dict) -> str:
    lines = [
        f"`bench_quality.py --rows {r['rows']}"
        + (f" --cardinality-scale {r['cardinality_scale']:g}" if r.get("cardinality_scale", 1.0) != 1.0 else "")
        + f"`: one epoch of the full-table DLRM{_dlrm_options(r['config']['model'])} reaches test AUC "
        f"{r['auc']:.4f} (logloss {r['logloss']:.4f}) against a Bayes-optimal {r['bayes_auc']:.4f} "
        f"({r['bayes_logloss']:.4f}): a gap of {r['auc_gap']:.3f}."
    ]
    if "fm_auc" in r:
        lines.append(
            f"A factorization machine on the same rows reaches {r['fm_auc']:.4f} (DLRM - FM {r['dlrm_minus_fm_auc']:+.4f}); "
            f"goals (within 0.015 of Bayes, >= FM): {'met' if r['goal_within_0015_of_bayes'] else 'not met'}, "
            f"{'met' if r['goal_at_least_fm'] else 'not met'}."
        )
    return " ".join(lines)


def _met(value: bool) -> str:
    return "met" if value else "not met"


def render_pareto(r: dict) -> str:
    points = r["results"]
    full = next(p for p in points if p["method"] == "full")
    budgets = sorted({p["budget"] for p in points if p["budget"] is not None and p["budget"] < 1.0}, reverse=True)
    series = [m for m in dict.fromkeys(p["method"] for p in points) if m not in ("full", "optembed")]
    runs = f"the median of {r['speed_repeats']} runs of {r['speed_steps']} steps" if "speed_steps" in r else "one run"
    if r.get("full_every"):
        runs = (f"the median over {r['speed_repeats']} repeats of a run of {r['speed_steps']} steps against the mean of "
                f"the full-table runs before and after it, full tables running again after every {r['full_every']} points")
    command = r["command"].removeprefix("python benchmarks/") if r.get("command") else f"bench_pareto.py --rows {r['rows']}"
    sizes = (f"the full tables' {full['full_bytes'] / 1e9:.2f} GB (weights + optimizer state + projections)")
    speeds = f"recsys-train's samples/s against full tables' ({runs})"
    baseline = f"full tables {full['auc']:.4f}, Bayes-optimal {full['bayes_auc']:.4f}"
    if not series:  # OptEmbed alone: no budget table
        lines = [f"`{command}`, test AUC after one epoch against {sizes}, {speeds}; {baseline}."]
    else:
        lines = [
            f"`{command}`, test AUC after one epoch at a fraction of {sizes}, and in brackets {speeds}; {baseline}:",
            "",
            "| method | " + " | ".join(f"1/{round(1 / b)}" for b in budgets) + " |",
            "|" + "---|" * (len(budgets) + 1),
        ]
    for method in series:
        mine = {p["budget"]: p for p in points if p["method"] == method}
        cells = []
        for b in budgets:
            p = mine.get(b)
            if p is None:
                cells.append("-")
                continue
            used = p["bytes"] / p["full_bytes"]
            cells.append(f"{p['auc']:.4f} ({p['speed_vs_full']:.3f}x" + (f", uses {used:.3g})" if abs(used - b) > 0.1 * b else ")"))
        first = next(iter(mine.values()))
        name = f"{method} ({first['setting']})" if first.get("setting") else method
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = []
    if "samples_per_s" in full:
        s = full["samples_per_s"]
        notes.append(f"Full tables train at {_k(s['median'])} samples/s (min {_k(s['min'])}, max {_k(s['max'])}).")
    optembed = next((p for p in points if p["method"] == "optembed"), None)
    if optembed:
        notes.append(
            f"OptEmbed, at the size its search picks ({optembed['knob']}): AUC {optembed['auc']:.4f} with "
            f"{optembed['bytes_fraction']:.3g} of the full bytes, {optembed['speed_vs_full']:.2f}x full samples/s (its retraining)."
        )
    g = r["goals"]
    if "all_at_least_0.9x_full_speed" in g:
        goals = [f"every compressed point >= 0.9x full samples/s: {_met(g['all_at_least_0.9x_full_speed'])}"]
        if "md_1_16_within_0.002" in g:
            goals.append(f"MD at 1/16 within 0.002 AUC of full ({g['md_1_16_auc_gap_to_full']:+.4f}): {_met(g['md_1_16_within_0.002'])}")
        if "qr_at_least_hash_everywhere" in g:
            goals.append(f"QR >= hash at every budget: {_met(g['qr_at_least_hash_everywhere'])}")
        if "md_1_4_and_1_16_differ" in g:
            goals.append(f"MD's 1/4 and 1/16 plans differ: {_met(g['md_1_4_and_1_16_differ'])}")
        whole = not any(option in r.get("command", "") for option in ("--budgets", "--methods"))
        if whole and "seconds" in r:  # the whole sweep, not a part of it
            goals.append(f"the whole sweep in under an hour ({r['seconds'] / 60:.1f} min): {_met(r['seconds'] < 3600)}")
        notes.append("Goals: " + "; ".join(goals) + ".")
    return "\n".join(lines + ([""] + [" ".join(notes)] if notes else []))


def render_scale(r: dict) -> str:
    """bench_scale's sharding section: one process against 2 gloo ranks sharded by DMP."""
    met = "met" if r["goal_sharded_at_least_0_8x"] else "**not met**"
    return (
        f"`{r['command'].removeprefix('python ')}`: the Kaggle DLRM ({r['table_rows']:,} table rows, Kaggle cardinalities x "
        f"{r['cardinality_scale']:g}), global batch {r['batch_size']}, {r['repeats']} x {r['steps']} steps: one process "
        f"({2 * r['threads_per_rank']} torch threads) {_k(r['single_samples_per_s'])} samples/s (min {_k(r['single_min_max'][0])}, max "
        f"{_k(r['single_min_max'][1])}); {r['sharded_world_size']} gloo ranks ({r['threads_per_rank']} thread each), tables sharded by "
        f"DistributedModelParallel ({', '.join(r['sharding_types'])}) {_k(r['sharded_samples_per_s'])} samples/s (min "
        f"{_k(r['sharded_min_max'][0])}, max {_k(r['sharded_min_max'][1])}): {r['ratio']:.2f}x (goal >= 0.8x: {met}). On 2 cores 2 ranks "
        "cannot be faster than one process: the ratio is the cost of sharding."
    )


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _met_marked(ok: bool) -> str:
    """``met``, or a bold ``not met`` (the disk-tier paragraphs' goals)."""
    return "met" if ok else "**not met**"


def render_scale_disk_tier(r: dict) -> str:
    t = r["disk_tier"]
    return (
        f"`{r['command'].removeprefix('python ')}` ({t['threads']} torch thread(s)): the {t['profile']} profile's tables capped at "
        f"{t['cap']:,} rows, {t['table_rows']:,} rows of dim {t['dim']}: {_gb(t['table_bytes'])} of weights and row-wise Adagrad state, "
        f"{t['tables_over_ram']:.2f}x this machine's {_gb(t['ram_bytes'])} of RAM (goal >= 1.5x: {_met_marked(t['goal_tables_at_least_1_5x_ram'])}). "
        f"{t['ram_share']:.0%} of the bytes ({_gb(t['tier_ram_bytes'])}, the hottest rows) in RAM, {_gb(t['disk_bytes'])} in memory-mapped "
        f"files: {_k(t['samples_per_s'])} samples/s (min {_k(t['min_max'][0])}, max {_k(t['min_max'][1])}), hot-tier hit rate "
        f"{t['hit_rate']:.3f}, peak RSS {_gb(t['peak_rss_bytes'])} (goal < 20 GB: {_met_marked(t['goal_peak_rss_under_20gb'])}). "
        + (f"The lookups waited {t['read_wait_per_step_s'] * 1e3:.0f} ms a step for cold pages; {t['read_ahead_batches']['pipelined']} "
           f"of {sum(t['read_ahead_batches'].values())} batches had their reads started during the step before. "
           if "read_wait_per_step_s" in t else "")
        + (f"Each step read {t['cold_pages_per_step']:.0f} pages of the cold file; the disk served "
           f"{' and '.join(f'{_k(x)}' for x in t['disk_random_reads_per_s'])} random page reads a second before and after the "
           f"steps, a bound of {_k(t['disk_bound_samples_per_s'])} samples/s for a step that did nothing but read them. "
           if "disk_random_reads_per_s" in t else "")
        + "The same model "
        f"with its tables scaled to {t['in_ram_scale']:g} of the rows ({_gb(t['in_ram_table_bytes'])}, all in RAM), in the same run: "
        f"{_k(t['in_ram_samples_per_s'])} samples/s (min {_k(t['in_ram_min_max'][0])}, max {_k(t['in_ram_min_max'][1])}); disk tier / "
        f"in RAM {t['ratio']:.2f}x (goal >= 0.5x: {_met_marked(t['goal_at_least_0_5x_in_ram'])})."
    )


def render_scale_sharded_disk_tier(r: dict) -> str:
    t = r["sharded_disk_tier"]
    return (
        f"`{r['command'].removeprefix('python ')}` ({t['threads_per_rank']} torch thread(s) a rank): the disk-tier model above "
        f"({t['table_rows']:,} rows of dim {t['dim']}, {_gb(t['table_bytes'])}, {t['tables_over_ram']:.2f}x RAM) on {t['world_size']} "
        f"gloo ranks, each with a RAM budget of {_gb(t['budget_per_rank'])} ({t['ram_share']:.0%} of the bytes in all): hot pieces "
        f"sharded {' or '.join(t['types'])}, cold pieces row-wise in each rank's file ({', '.join(_gb(b) for b in t['cold_file_bytes'])}). "
        f"{_k(t['samples_per_s'])} samples/s (min {_k(t['min_max'][0])}, max {_k(t['min_max'][1])}), hot-tier hit rate {t['hit_rate']:.3f}, "
        f"peak RSS {_gb(t['peak_rss_bytes'])} summed over the ranks ({', '.join(_gb(b) for b in t['peak_rss_bytes_per_rank'])}; goal < 20 GB: "
        f"{_met_marked(t['goal_peak_rss_under_20gb'])}), tables built and initialised in {t['build_seconds']:.0f} s. The model with its tables "
        f"scaled to {t['in_ram_scale']:g} of the rows ({_gb(t['in_ram_table_bytes'])}, all in RAM) on the same 2 ranks, in the same run: "
        f"{_k(t['in_ram_samples_per_s'])} samples/s (min {_k(t['in_ram_min_max'][0])}, max {_k(t['in_ram_min_max'][1])}); disk tier / "
        f"in RAM {t['ratio']:.2f}x (goal >= 0.5x: {_met_marked(t['goal_at_least_0_5x_in_ram'])})."
        + (f" Each rank read ahead, from the next global batch, the cold rows it holds ({', '.join(f'{p:.0f}' for p in t['cold_pages_per_step_per_rank'])} "
           f"pages a step), waiting {', '.join(f'{w * 1e3:.1f}' for w in t['read_wait_per_step_s_per_rank'])} ms a step for them; without "
           f"read-ahead (`placement.read_ahead=false`, the repeats interleaved on the same tables) {_k(t['no_read_ahead_samples_per_s'])} "
           f"samples/s (min {_k(t['no_read_ahead_min_max'][0])}, max {_k(t['no_read_ahead_min_max'][1])})."
           if "no_read_ahead_samples_per_s" in t else "")
    )


def _rate(x: float) -> str:
    return f"{x / 1e6:,.2f}M" if x >= 1e6 else _k(x)


def render_scale_gpu(r: dict) -> str:
    """bench_scale's gpu section and gpu_check.sh's recsys-train runs: each GPU placement's speed."""
    g = r["gpu"]
    batches = g["batches"]
    names = {("device", None): "all tables in GPU memory", ("uvm_cache", "lru"): f"uvm_cache, LRU, {g['cache_load_factor']:g} of rows cached",
             ("uvm_cache", "lfu"): f"uvm_cache, LFU, {g['cache_load_factor']:g} of rows cached", ("host", None): "host memory (UVM, no cache)"}
    lines = [
        f"`scripts/gpu_check.sh` on one {g['device_name']} (fbgemm-gpu 1.6.0, torchrec 1.6.1, torch 2.11): the Kaggle DLRM at full "
        f"Kaggle cardinalities ({g['table_rows']:,} rows of dim 16). `{r['command'].removeprefix('python ')}`: training steps on "
        f"Zipf-skewed ids drawn on the GPU, every placement built side by side and timed round-robin "
        f"({g['repeats']} x {g['steps']} steps after {g['warmup_steps']} warm-up steps); hit rate = share of each batch's distinct "
        "rows found in the GPU cache:",
        "",
        "| placement | " + " | ".join(f"batch {b['batch_size']:,}: samples/s (min, max), vs device" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    for i, first in enumerate(batches[0]["placements"]):
        cells = []
        for b in batches:
            p = b["placements"][i]
            hit = "" if p["hit_rate"] is None else f", hit rate {p['hit_rate']:.3f}"
            cells.append(f"{_rate(p['samples_per_s'])} ({_rate(p['min_max'][0])}, {_rate(p['min_max'][1])}), {p['vs_device']:.2f}x{hit}")
        lines.append(f"| {names[(first['tier'], first['cache_algorithm'])]} | " + " | ".join(cells) + " |")
    t = g.get("train_cli")
    if t:
        dev, uvm = t["tiers"]["device"], t["tiers"]["uvm_cache"]
        lines += ["", f"`recsys-train device=cuda` on a 1M-row Kaggle-profile synthetic set ({t['steps']} steps at batch 2048, runs "
                      f"interleaved): tables in GPU memory {_spread(dev['samples_per_s'])} samples/s; `placement.hot_tier=uvm_cache "
                      f"placement.cache_load_factor=0.2` {_spread(uvm['samples_per_s'])} ({uvm['vs_device']:.2f}x), hit rate "
                      f"{uvm['hit_rate']:.3f}, the same test AUC ({uvm['test_auc'][0]:.4f} against {dev['test_auc'][0]:.4f}). At batch "
                      "2048 a step is bound by the loader and kernel launches, not by the lookups."]
    return "\n".join(lines)


def render_kernels(r: dict) -> str:
    """bench_kernels: each method's recsys-train speed against full tables, and the fused op."""
    budgets = ",".join(sorted({f"1/{round(1 / p['budget'])}" for p in r["loop"] if p["method"] != "full"}))
    methods = ",".join(dict.fromkeys(p["method"] for p in r["loop"] if p["method"] != "full"))
    command = r["command"].removeprefix("python benchmarks/") if "command" in r else (
        f"bench_kernels.py --methods {methods} --budgets {budgets} --loop-steps {r['loop_steps']}")
    lines = [
        f"`{command}` "
        f"({r['rows']:,} rows at {r['cardinality_scale']:g} of the Kaggle cardinalities, batch {r['batch_size']}; "
        f"`recsys-train`'s own loop, {r['loop_steps']} steps per run, median of {r['repeats']} runs interleaved with full tables'):",
        "",
        "| method @ budget | samples/s | vs full (median; per repeat) |",
        "|---|---|---|",
    ]
    for p in r["loop"]:
        per_repeat = ", ".join(f"{x:.2f}" for x in p["vs_full_per_repeat"])
        lines.append(f"| {p['method']} @ {p['budget']:g} | {_spread(p['samples_per_s'])} | {p['vs_full']:.2f} ({per_repeat}) |")
    if any(x > 2 for p in r["loop"] for x in p["vs_full_per_repeat"]):
        lines += ["", "A per-repeat ratio far above 1 is a repeat whose full-table run other jobs on the machine slowed; "
                      "the medians set it aside."]
    speedups = [p["speedup"] for p in r["transform"]]
    lines += ["", f"`recsys::transform_ids` against the per-feature modules: {min(speedups):.1f}-{max(speedups):.1f}x faster per "
              f"batch."]
    for p in r.get("projection", []):
        lines[-1] += (f" md @ {p['budget']:g}: `recsys::grouped_projection` forward+backward {_ms(p['op_ms'])} against "
                      f"{_ms(p['torch_ms'])} for its torch form per batch ({r['threads']} threads), {p['speedup']:.1f}x faster.")
    lines[-1] += f" Goal (every compressed method >= 0.9x full), at these cardinalities: {_met(bool(r['goals']['all_at_least_0.9x_full']))}."
    return "\n".join(lines)


def render_interaction(r: dict) -> str:
    """bench_interaction: recsys::dot_interaction against its torch form, and the DLRM step."""
    step = r["step"]
    sizes = "; ".join(
        f"batch {p['batch_size']:,}: {_ms(p['op_ms'])} against {_ms(p['torch_fp32_ms'])} for the torch form in fp32 "
        f"({p['torch_fp32_vs_op']:.1f}x) and {_ms(p['torch_bf16_ms'])} under bf16 autocast ({p['torch_bf16_vs_op']:.1f}x)"
        for p in r["interaction"])
    return (
        f"`{r['command'].removeprefix('python benchmarks/')}` ({r['threads']} threads, medians of {r['repeats']} rounds of "
        f"{r['calls']} calls, the forms timed in turn): `recsys::dot_interaction` forward and backward through autograd (a probe loss included) at the Kaggle DLRM's shape "
        f"({r['features']} sparse vectors, the dense one and the first-order constant, dim {r['dim']}): {sizes}. The Kaggle "
        f"DLRM's in-memory training step at {step['table_rows']:,} table rows, batch 2048, {step['dense_precision']} dense "
        f"layers: {_spread(step['op_samples_per_s'])} samples/s with the op against {_spread(step['torch_samples_per_s'])} "
        f"with the torch form, {step['op_vs_torch']:.2f}x."
    )


def _by_name_and_batch(points: list[dict], name: Callable[[dict], str]) -> dict[str, dict[int, dict]]:
    """Points grouped into table rows (by ``name``, in first-seen order), then by batch size."""
    rows: dict[str, dict[int, dict]] = {}
    for p in points:
        rows.setdefault(name(p), {})[p["batch_size"]] = p
    return rows


def render_kernels_gpu(r: dict) -> str:
    """bench_kernels_gpu and gpu_check.sh's recsys-train runs: the masked transform op and each
    method's training step against full tables on a GPU."""
    batches = sorted({p["batch_size"] for p in r["step"]})
    budgets = ",".join(sorted({f"1/{round(1 / p['budget'])}" for p in r["step"] if p["method"] != "full"}))
    lines = [
        f"`scripts/gpu_check.sh` on one {r['device']} (Triton, fbgemm-gpu 1.6.0, torch 2.11): `bench_kernels_gpu.py --budgets {budgets} "
        f"--batches {' '.join(map(str, batches))} --steps {r['steps']} --repeats {r['repeats']}`, the Kaggle DLRM's "
        f"{r['table_rows']:,} rows, Zipf-skewed ids drawn on the GPU. The id-transform stage per batch, median ms: "
        "`recsys::transform_ids_masked` (Triton), its vectorised torch version, and the per-feature modules the GPU ran before:",
        "",
        "| method @ budget | " + " | ".join(f"batch {b:,}: op / torch / modules" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    for name, by_batch in _by_name_and_batch(r["transform"], lambda p: f"{p['method']} @ {p['budget']:g}").items():
        lines.append(f"| {name} | " + " | ".join(
            f"{by_batch[b]['op_ms']['median']:.2f} / {by_batch[b]['torch_ms']['median']:.2f} / {by_batch[b]['modules_ms']['median']:.2f}"
            for b in batches) + " |")
    lines += ["", f"A DLRM training step (forward, backward, fused table optimizer), all models side by side, timed round-robin "
                  f"({r['repeats']} x {r['steps']} steps after {r['warmup']}); samples/s (min, max), vs full tables:", "",
              "| method @ budget (transforms) | " + " | ".join(f"batch {b:,}" for b in batches) + " |",
              "|---|" + "---|" * len(batches)]
    for name, by_batch in _by_name_and_batch(r["step"], lambda p: f"{p['method']} @ {p['budget']:g} ({p['transforms']})").items():
        lines.append(f"| {name} | " + " | ".join(
            f"{_rate(by_batch[b]['samples_per_s']['median'])} ({_rate(by_batch[b]['samples_per_s']['min'])}, "
            f"{_rate(by_batch[b]['samples_per_s']['max'])}), {by_batch[b]['vs_full']:.2f}x" for b in batches) + " |")
    t = r.get("train_cli")
    if t:
        full, md = t["runs"]["train_full"], t["runs"]["train_md"]
        lines += ["", f"`recsys-train +experiment=kaggle device=cuda` on a 1M-row Kaggle-profile synthetic set ({t['steps']} steps "
                      f"at batch 2048, runs interleaved): full tables {_spread(full['samples_per_s'])} samples/s, `embedding=md "
                      f"embedding.budget=0.0625` {_spread(md['samples_per_s'])} ({md['vs_baseline']:.2f}x), test AUC "
                      f"{md['test_auc'][0]:.4f} against {full['test_auc'][0]:.4f}."]
    met = r["goals"]["every_compressed_at_least_0.9x_full"]
    lines += ["", f"Goal (every compressed method >= 0.9x full, here on a GPU): {_met(met)}."]
    return "\n".join(lines)


def render_report(r: dict) -> str:
    every, base = r["report_all_runs_s"], r["baseline_global_metrics_s"]
    return (
        f"`bench_report.py --runs {r['runs']} --rows {r['rows_per_run']} --repeats {r['repeats']}`: a report over "
        f"{r['runs']} runs of {r['rows_per_run']:,} test rows took a median {every['median']:.0f} s (min {every['min']:.0f}, "
        f"max {every['max']:.0f}), against {base['median']:.0f} s for the bare global metrics of the same {r['runs']} runs "
        f"measured in the same run ({r['report_vs_baseline']:.1f}x). The goal of under {r['goal_seconds']:.0f} s is "
        + ("met." if r["goal_met"] else "**not met** in this measurement.")
    )


RENDERERS: dict[str, Callable[[dict], str]] = {
    "pipeline": render_pipeline,
    "quality": render_quality,
    "pareto_4m_all": render_pareto,
    "pareto_4m": render_pareto,
    "pareto_4m_md": render_pareto,
    "pareto_4m_optembed": render_pareto,
    "scale": render_scale,
    "scale_disk_tier": render_scale_disk_tier,
    "scale_sharded_disk_tier": render_scale_sharded_disk_tier,
    "scale_gpu": render_scale_gpu,
    "report": render_report,
    "kernels": render_kernels,
    "kernels_4m": render_kernels,
    "kernels_gpu": render_kernels_gpu,
    "interaction": render_interaction,
}


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated: {name} -->)(.*?)(<!-- end generated: {name} -->)", re.S)


def render_readme(text: str, results: Path = RESULTS) -> str:
    """``text`` with every generated block rewritten from its JSON; a block without a JSON, or a
    JSON without a block, is an error."""
    for name, render in RENDERERS.items():
        path = results / f"{name}.json"
        pattern = block_pattern(name)
        if not pattern.search(text):
            raise ValueError(f"README has no block <!-- generated: {name} --> for {path}")
        body = render(json.loads(path.read_text()))
        text = pattern.sub(lambda m: f"{m.group(1)}\n{body}\n{m.group(3)}", text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md differs from what the JSON gives")
    args = p.parse_args(argv)
    current = README.read_text()
    wanted = render_readme(current)
    if args.check:
        if wanted != current:
            print("README.md benchmark figures differ from benchmarks/results/*.json: run python benchmarks/readme.py")
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
