"""One self-contained HTML report (and its numbers as JSON) over one or many evaluated runs.

``build_report`` finds the runs, computes everything (:mod:`~recsys.evaluation.analysis`),
draws the plots (:mod:`~recsys.evaluation.plots`, inline SVG) and writes ``<output>.html`` with
``<output>.json`` beside it. The page needs nothing from the network: styles are inline, plots
are SVG elements, there is no script. It is laid out for a laptop screen and prints one run per
page. Every headline figure carries ``data-run``/``data-key`` attributes naming its JSON value,
so a browser test can check the page against the JSON.
"""

from __future__ import annotations

import html
import logging
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

from recsys.core.io import write_json
from recsys.core.units import format_bytes
from recsys.evaluation import plots
from recsys.evaluation.analysis import SplitCache, analyze_run, build_summary, choose_baseline, compare_runs
from recsys.evaluation.breakdown import BUCKETS, HEAD_SHARE, TORSO_SHARE
from recsys.evaluation.runs import PREDICTIONS, Run, find_eval_dirs, load_run, run_names

log = logging.getLogger(__name__)


def build_report(
    runs: list[str],
    output: str | Path,
    baseline: str | None = None,
    title: str | None = None,
    bins: int = 20,
    workers: int | None = None,
) -> dict:
    """Write ``output`` (HTML) and the same numbers as JSON beside it; return those numbers.

    Args:
        runs: run directories, sweep directories or globs.
        baseline: name of the run the others are tested against (default: the most embedding bytes).
        bins: reliability-diagram bins.
        workers: processes that analyse and draw runs side by side; None: one per CPU when the
            runs hold a million scored rows or more together (below that, starting processes
            costs more than it saves).

    Raises:
        ValueError: no run could be read (the message lists what was wrong with each).
    """
    output = Path(output)
    eval_dirs, problems = find_eval_dirs(list(runs))
    names = run_names(eval_dirs)
    jobs = [(d, n, bins) for d, n in zip(eval_dirs, names)]
    if workers is None:
        workers = (os.cpu_count() or 1) if sum(_scored_rows(d) for d in eval_dirs) >= 1_000_000 else 1
    workers = max(1, min(workers, len(jobs)))
    _SPLITS.clear()
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(_analyze_and_draw, jobs))
    else:
        done = [_analyze_and_draw(job) for job in jobs]
    loaded, summaries, sections = {}, [], []
    for summary, found, run, section in done:
        problems += found
        if run is not None:
            loaded[run.name] = run
            summaries.append(summary)
            sections.append(section)
    if not loaded:
        detail = "; ".join(f"{p.run}: {p.message}" for p in problems) or "no runs given"
        raise ValueError(f"nothing to report from runs={list(runs)}: {detail}")
    comparison = None
    if len(summaries) > 1:
        base, reason = choose_baseline(summaries, baseline)
        comparison = compare_runs(summaries, loaded, base, reason)
    title = title or (f"Evaluation of {summaries[0]['name']}" if len(summaries) == 1 else f"Comparison of {len(summaries)} runs")
    report = build_summary(summaries, comparison, problems, title)
    for p in problems:
        log.warning("report: %s: %s", p.run, p.message)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output.with_suffix(".json"), _finite(report))
    output.write_text(render(report, sections))
    log.info("report over %d run(s): %s (numbers in %s)", len(summaries), output, output.with_suffix(".json"))
    return report


_SPLITS = SplitCache()  # per process: a worker reads each scored split once, whatever runs it gets


def _analyze_and_draw(job: tuple[Path, str, int]) -> tuple[dict | None, list, Run | None, str]:
    """Load, analyse and draw one run (in a worker process or in this one). Returns its summary,
    problems, the run stripped to what the comparison needs (labels, DeLong components) and its
    HTML section."""
    eval_dir, name, bins = job
    run, problems = load_run(eval_dir, name)
    if run is None:
        return None, problems, None, ""
    summary, found = analyze_run(run, _SPLITS, bins)
    run.scores = None  # the comparison needs the labels and DeLong components only
    return summary, problems + found, run, _run_section(summary)


def _scored_rows(eval_dir: Path) -> int:
    path = eval_dir / PREDICTIONS
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def _finite(obj):
    """JSON has no NaN: write null instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def render(report: dict, sections: list[str]) -> str:
    """The HTML page of a report dict (as :func:`build_report` returns it) and its runs' sections."""
    body = [f"<header><h1>{_e(report['title'])}</h1><p class='meta'>generated {report['generated_utc']} UTC · "
            f"{len(report['runs'])} run(s)</p></header>"]
    if report["problems"]:
        items = "".join(f"<li><b>{_e(p['run'])}</b>: {_e(p['message'])}</li>" for p in report["problems"])
        body.append(f"<section class='problems'><h2>What could not be reported</h2><ul>{items}</ul></section>")
    if report["comparison"]:
        body.append(_comparison(report["comparison"]))
    body += sections
    return _PAGE.format(title=_e(report["title"]), style=_STYLE, body="\n".join(body))


def _comparison(comp: dict) -> str:
    head = ("<tr><th>run</th><th>AUC</th><th>95% CI</th><th>ΔAUC vs baseline</th><th>p (DeLong)</th><th>logloss</th>"
            "<th>NE</th><th>calibration</th><th>ECE</th><th>embedding bytes</th><th>× baseline</th><th>samples/s</th>"
            "<th>overrides</th></tr>")
    rows = []
    for r in comp["table"]:
        t = r["test"]
        if t["status"] == "done":
            delta, pval = _f(t["difference"], "+.5f"), _p(t["p_value"])
        elif t["status"] == "baseline":
            delta, pval = "baseline", ""
        else:
            delta, pval = "—", f"<span class='note'>{_e(t['reason'])}</span>"
        name = _e(r["name"])
        rows.append(
            f"<tr class='{'baseline' if r['is_baseline'] else ''}'><td>{name}</td>"
            f"<td data-run='{name}' data-key='auc'>{_f(r['auc'], '.5f')}</td><td>{_ci(r['auc_ci95'])}</td>"
            f"<td>{delta}</td><td data-run='{name}' data-key='p_value'>{pval}</td><td>{_f(r['logloss'], '.5f')}</td>"
            f"<td>{_f(r['normalized_entropy'], '.4f')}</td><td>{_f(r['calibration'], '.4f')}</td><td>{_f(r['ece'], '.4f')}</td>"
            f"<td>{_bytes(r['embedding_bytes'])}</td><td>{_f(r['bytes_vs_baseline'], '.4f')}</td>"
            f"<td>{_f(r['train_samples_per_s'], ',.0f')}</td><td class='overrides'>{_e(' '.join(r['overrides']))}</td></tr>"
        )
    parts = [
        "<section class='comparison'><h2>Comparison</h2>",
        f"<p>Sorted by AUC. Baseline: <b>{_e(comp['baseline'])}</b> ({_e(comp['baseline_reason'])}). "
        "p is DeLong's two-sided test of each run's AUC against the baseline's on the same test rows "
        "(paired: it needs both runs' saved predictions on the same dataset and split)."
        + (f" Overrides shared by every run: <code>{_e(' '.join(comp['common_overrides']))}</code>." if comp["common_overrides"] else "")
        + "</p>",
        f"<div class='scroll'><table class='compare'>{head}{''.join(rows)}</table></div>",
    ]
    if len(comp["pareto"]) > 1:
        parts.append(_figure("pareto", plots.pareto(comp["pareto"], comp["baseline"]),
                             "Runs on the Pareto front: no other run has fewer bytes and a higher AUC."))
    parts.append("</section>")
    return "\n".join(parts)


def _run_section(run: dict) -> str:
    name = _e(run["name"])
    m = run["metrics"]
    bayes = run.get("bayes_optimal") or {}
    cells = [
        ("AUC", "auc", _f(m.get("auc"), ".5f"), _f(bayes.get("auc"), ".5f")),
        ("AUC 95% CI (DeLong)", "auc_ci95", _ci(run.get("auc_ci95")), ""),
        ("logloss", "logloss", _f(m.get("logloss"), ".5f"), _f(bayes.get("logloss"), ".5f")),
        ("normalized entropy", "normalized_entropy", _f(m.get("normalized_entropy"), ".5f"), ""),
        ("calibration (mean p / click rate)", "calibration", _f(m.get("calibration"), ".4f"), ""),
        ("expected calibration error", "ece", _f(m.get("ece"), ".5f"), ""),
        ("rows (positives)", "rows", f"{m['rows']:,} ({m['positives']:,})", ""),
        ("embedding bytes", "embedding_bytes", _bytes(run.get("embedding_bytes")), ""),
        ("training samples/s", "train_samples_per_s", _f(run.get("train_samples_per_s"), ",.0f"), ""),
    ]
    bayes_head = "<th>Bayes-optimal</th>" if bayes else ""
    rows = "".join(
        f"<tr><th>{label}</th><td data-run='{name}' data-key='{key}'>{value}</td>{f'<td>{b}</td>' if bayes else ''}</tr>"
        for label, key, value, b in cells
    )
    parts = [
        f"<section class='run'><h2>Run {name}</h2>",
        f"<p class='meta'>{_e(run['dataset'] or '?')} · split {_e(run['split'] or '?')} · figures from "
        f"{_e(run['metrics_source'])}{' · ' + _e(' '.join(run['overrides'])) if run['overrides'] else ''}</p>",
        f"<table class='headline'><tr><th></th><th>model</th>{bayes_head}</tr>{rows}</table>",
    ]
    if "roc" in run:
        parts.append(_figure("roc-pr", plots.roc_pr(run), "ROC and precision-recall curves over the scored rows."))
    if "reliability" in run:
        parts.append(_figure("reliability", plots.reliability(run),
                             f"{len(run['reliability']['rows'])} equal-mass bins; ECE = row-weighted mean |prediction − rate|."))
    if "frequency" in run:
        basis = {e["basis"] for e in run["frequency"]["edges"].values()}
        parts.append(_figure("frequency", plots.frequency(run),
                             f"Head: most frequent ids up to {HEAD_SHARE:.0%} of training occurrences; torso: up to "
                             f"{TORSO_SHARE:.0%}; tail: other kept ids; OOV: the shared out-of-vocabulary row. "
                             f"Frequencies from {_e(', '.join(sorted(basis)))}."))
    if run["features"]:
        parts.append(_feature_table(run))
    if any(r.get("bytes") for r in run["features"]):
        parts.append(_figure("memory", plots.memory(run), _memory_caption(run.get("memory"))))
    if run["training"]["train"]["x"]:
        parts.append(_figure("training", plots.training(run), f"From metrics.jsonl of {_e(run['train_dir'] or '?')}."))
    parts.append("</section>")
    return "\n".join(parts)


def _feature_table(run: dict) -> str:
    freq = (run.get("frequency") or {}).get("features", {})
    head = "".join(f"<th>AUC {b}</th>" for b in BUCKETS)
    rows = []
    for r in run["features"]:
        aucs = freq.get(r["feature"], {}).get("auc", [None] * len(BUCKETS))
        rows.append(
            f"<tr><td>{_e(r['feature'])}</td><td>{_f(r['vocabulary'], ',d')}</td><td>{_f(r['oov_rate'], '.4f')}</td>"
            f"<td>{_e(r['method'] or '—')}</td><td>{_bytes(r['bytes'])}{' (shared)' if r.get('shared') else ''}</td>"
            + "".join(f"<td>{_f(a, '.4f')}</td>" for a in aucs) + "</tr>"
        )
    return ("<h3>Per feature</h3><div class='scroll'><table class='features'><tr><th>feature</th><th>vocabulary</th>"
            f"<th>OOV rate</th><th>method</th><th>bytes</th>{head}</tr>{''.join(rows)}</table></div>")


def _memory_caption(memory: dict | None) -> str:
    if not memory:
        return "Bytes per feature."
    return (f"{memory['tables']} physical tables: weights {format_bytes(memory['weight_bytes'])}, optimizer state "
            f"{format_bytes(memory['optimizer_bytes'])}, combiner weights {format_bytes(4 * memory['combiner_parameters'])}; "
            f"total {format_bytes(memory['total_bytes'])}. A table shared by several features is split evenly among them.")


def _figure(kind: str, svg: str, caption: str) -> str:
    return f"<figure class='plot' data-plot='{kind}'>{svg}<figcaption>{caption}</figcaption></figure>"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _f(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


def _p(value: float) -> str:
    return "&lt; 1e-16" if value < 1e-16 else format(value, ".3g")


def _ci(ci) -> str:
    return f"[{ci[0]:.5f}, {ci[1]:.5f}]" if ci else "—"


def _bytes(n) -> str:
    return format_bytes(int(n)) if n else "—"


_STYLE = """
:root { --fg: #1d232b; --muted: #5b6573; --line: #d9dee5; --accent: #0b62a4; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       max-width: 1120px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 0; } h2 { font-size: 18px; margin: 28px 0 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta, .note, figcaption { color: var(--muted); font-size: 12.5px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 6px 0 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child, td.overrides { text-align: left; }
table.headline th { text-align: left; font-weight: 600; }
tr.baseline { background: #eef5fb; font-weight: 600; }
td.overrides { white-space: normal; font-family: ui-monospace, monospace; font-size: 12px; min-width: 180px; }
.scroll { overflow-x: auto; }
table.compare { font-size: 12.5px; } table.compare th { white-space: normal; vertical-align: bottom; }
figure.plot { margin: 12px 0; } figure.plot svg { max-width: 100%; height: auto; display: block; }
.problems { border: 1px solid #e0b252; background: #fff8e6; padding: 4px 16px; margin-top: 16px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  section.run { break-before: page; }
  figure.plot, table { break-inside: avoid; }
  .scroll { overflow: visible; }
}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head>
<body>
{body}
</body></html>
"""
