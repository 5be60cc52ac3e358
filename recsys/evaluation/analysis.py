"""The numbers of a report, per run and across runs, as one JSON-able dict.

Everything is computed from the saved per-row predictions (label, score) when a run has them,
so the curves, the calibration, the frequency breakdown and the paired test all describe the
same rows; a run without predictions contributes the figures of its ``eval.json`` only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path

import numpy as np

from recsys.data.layout import LABEL, DatasetMeta
from recsys.evaluation.breakdown import BUCKETS, ScoreIndex, dataset_bucket_edges, read_split_columns
from recsys.evaluation.curves import pr_curve, reliability, roc_curve
from recsys.core.metrics import CTRMetrics
from recsys.evaluation.runs import Problem, Run
from recsys.evaluation.significance import RocComponents, auc_confidence_interval, paired_test, score_order


@dataclasses.dataclass
class SplitRows:
    """What the report needs of a split's first N rows: labels, and each row's frequency bucket per feature."""

    labels: np.ndarray  # (N,)
    buckets: dict[str, np.ndarray]  # feature -> (N,) int8 index into BUCKETS
    edges: dict[str, dict]
    vocabulary: dict[str, int]  # kept ids per feature (the OOV row excluded)


class SplitCache:
    """Reads each (dataset, split, rows) once, however many runs were scored on it."""

    def __init__(self) -> None:
        self._cache: dict[tuple, SplitRows | str] = {}

    def clear(self) -> None:
        self._cache.clear()

    def get(self, dataset: str, split: str, rows: int) -> SplitRows | str:
        """The split's rows, or a message saying why they cannot be read."""
        key = (str(Path(dataset).resolve()), split, rows)
        if key not in self._cache:
            self._cache[key] = self._read(dataset, split, rows)
        return self._cache[key]

    @staticmethod
    def _read(dataset: str, split: str, rows: int) -> SplitRows | str:
        try:
            meta = DatasetMeta.load(dataset)
            cols = read_split_columns(dataset, split, rows, [LABEL, *meta.sparse_features])
        except (OSError, ValueError) as e:
            return f"cannot read the scored rows of {dataset} split {split!r}: {e}"
        edges = dataset_bucket_edges(dataset, meta)
        return SplitRows(
            labels=cols[LABEL],
            buckets={f: edges[f].assign(cols[f]).astype(np.int8) for f in meta.sparse_features},
            edges={f: dataclasses.asdict(e) for f, e in edges.items()},
            vocabulary={f: n - 1 for f, n in meta.num_embeddings.items()},
        )


def analyze_run(run: Run, splits: SplitCache, bins: int = 20) -> tuple[dict, list[Problem]]:
    """Headline, curves, calibration, breakdowns and training curves of one run."""
    record = run.record
    problems: list[Problem] = []
    out = {
        "name": run.name,
        "eval_dir": str(run.eval_dir),
        "train_dir": str(run.train_dir) if run.train_dir else None,
        "dataset": record.get("dataset"),
        "split": record.get("split"),
        "overrides": run.overrides,
        "embedding": record.get("embedding"),
        "metrics": record["metrics"],
        "metrics_source": "eval.json",
        "bayes_optimal": record.get("bayes_optimal"),
        "memory": record.get("memory"),
        "embedding_bytes": (record.get("memory") or {}).get("total_bytes"),
        "train_samples_per_s": run.train_samples_per_s,
        "training": _training_curves(run),
    }
    if run.has_predictions:
        p, y = run.scores, run.labels.astype(np.float64)
        metrics = CTRMetrics.compute(p, y)
        out["metrics"], out["metrics_source"] = metrics.to_dict(), "predictions"
        order = score_order(p, y)  # the one sort every rank statistic below shares
        if min(metrics.positives, metrics.rows - metrics.positives) < 2:
            problems.append(Problem(run.name, f"the {metrics.rows:,} scored rows hold {metrics.positives:,} clicks: "
                                    "too few of one class for an AUC interval, curves or a paired test"))
        else:
            run.roc = RocComponents.of(p, y, order)
            _, low, high = auc_confidence_interval(run.roc)
            out["auc_ci95"] = [low, high]
            out["roc"] = dataclasses.asdict(roc_curve(p, y, order=order))
            out["pr"] = dataclasses.asdict(pr_curve(p, y, order=order))
        rel = reliability(p, y, bins)
        out["reliability"] = dataclasses.asdict(rel)
        out["metrics"]["ece"] = rel.ece
        _add_breakdowns(out, run, splits, order, problems)
    out["features"] = _feature_table(out, record)
    return out, problems


def _add_breakdowns(out: dict, run: Run, splits: SplitCache, order: np.ndarray, problems: list[Problem]) -> None:
    if not out["dataset"] or not out["split"]:
        problems.append(Problem(run.name, "eval.json names no dataset or split: no frequency breakdown"))
        return
    rows = splits.get(out["dataset"], out["split"], run.scores.size)
    if isinstance(rows, str):
        problems.append(Problem(run.name, rows + ": no frequency breakdown"))
        return
    if not np.array_equal(rows.labels.astype(np.int64), run.labels.astype(np.int64)):
        problems.append(
            Problem(run.name, f"the saved labels differ from {out['dataset']} split {out['split']!r} in file order: "
                    "the predictions do not line up with the rows, so there is no frequency breakdown")
        )
        return
    index = ScoreIndex(run.scores, run.labels, order)
    out["frequency"] = {
        "buckets": list(BUCKETS),
        "edges": rows.edges,
        "features": {f: dataclasses.asdict(index.grouped(b, len(BUCKETS))) for f, b in rows.buckets.items()},
    }
    out["oov_rate"] = {f: float(np.mean(b == BUCKETS.index("oov"))) for f, b in rows.buckets.items()}
    out["vocabulary"] = rows.vocabulary


def _feature_table(out: dict, record: dict) -> list[dict]:
    memory = {m["feature"]: m for m in record.get("feature_memory") or []}
    names = list(out.get("vocabulary") or memory)
    return [
        {
            "feature": f,
            "vocabulary": (out.get("vocabulary") or {}).get(f),
            "oov_rate": (out.get("oov_rate") or {}).get(f),
            "method": memory.get(f, {}).get("method"),
            "description": memory.get(f, {}).get("description"),
            "bytes": memory.get(f, {}).get("total_bytes"),
            "shared": memory.get(f, {}).get("shared"),
        }
        for f in names
    ]


def _training_curves(run: Run) -> dict:
    scale = run.samples_per_step or 1.0
    axis = "samples" if run.samples_per_step else "steps"
    train = [r for r in run.training if r.get("kind") == "train"]
    valid = [r for r in run.training if r.get("kind") == "valid"]
    return {
        "axis": axis,
        "train": {
            "x": [r["step"] * scale for r in train],
            "loss": [r.get("loss") for r in train],
            "samples_per_s": [r.get("samples_per_s") for r in train],
        },
        "valid": {"x": [r["step"] * scale for r in valid], "auc": [r.get("auc") for r in valid],
                  "logloss": [r.get("logloss") for r in valid]},
    }


def choose_baseline(runs: list[dict], wanted: str | None) -> tuple[dict | None, str]:
    """The run to compare against: ``wanted`` by name, else the run with the most embedding bytes
    (the uncompressed model of a compression sweep), else the first."""
    if wanted is not None:
        match = [r for r in runs if r["name"] == wanted]
        if not match:
            raise ValueError(f"baseline={wanted!r} is none of the runs: {[r['name'] for r in runs]}")
        return match[0], "chosen by baseline="
    sized = [r for r in runs if r.get("embedding_bytes")]
    if sized:
        return max(sized, key=lambda r: r["embedding_bytes"]), "the run with the most embedding bytes"
    return runs[0], "the first run"


def compare_runs(runs: list[dict], loaded: dict[str, Run], baseline: dict, reason: str) -> dict:
    """Comparison table (sorted by AUC), Pareto front of bytes vs AUC, and DeLong tests vs ``baseline``."""
    base_run = loaded[baseline["name"]]
    common = set.intersection(*(set(r["overrides"]) for r in runs))  # shown once, not in every row
    rows = []
    for r in sorted(runs, key=lambda r: (math.isnan(_num(r["metrics"].get("auc"))), -_num(r["metrics"].get("auc")))):
        row = {
            "name": r["name"],
            "overrides": [o for o in r["overrides"] if o not in common],
            "auc": r["metrics"].get("auc"),
            "auc_ci95": r.get("auc_ci95"),
            "logloss": r["metrics"].get("logloss"),
            "normalized_entropy": r["metrics"].get("normalized_entropy"),
            "calibration": r["metrics"].get("calibration"),
            "ece": r["metrics"].get("ece"),
            "embedding_bytes": r.get("embedding_bytes"),
            "bytes_vs_baseline": _ratio(r.get("embedding_bytes"), baseline.get("embedding_bytes")),
            "train_samples_per_s": r.get("train_samples_per_s"),
            "is_baseline": r["name"] == baseline["name"],
        }
        row["test"] = _paired(loaded[r["name"]], r, base_run, baseline)
        rows.append(row)
    return {
        "baseline": baseline["name"],
        "baseline_reason": reason,
        "common_overrides": [o for o in runs[0]["overrides"] if o in common],
        "table": rows,
        "pareto": pareto_front(runs),
    }


def _paired(run: Run, summary: dict, base: Run, base_summary: dict) -> dict:
    if run is base:
        return {"status": "baseline"}
    if run.labels is None or base.labels is None:
        who = run.name if run.labels is None else base.name
        return {"status": "skipped", "reason": f"{who} has no saved predictions"}
    same = [("dataset", _resolved(summary["dataset"]), _resolved(base_summary["dataset"])),
            ("split", summary["split"], base_summary["split"]), ("rows", run.labels.size, base.labels.size)]
    for what, mine, theirs in same:
        if mine != theirs:
            return {"status": "skipped", "reason": f"different {what}: {mine} vs the baseline's {theirs}"}
    if not np.array_equal(run.labels, base.labels):
        return {"status": "skipped", "reason": "the labels differ row by row: not the same test rows"}
    if run.roc is None or base.roc is None:
        return {"status": "skipped", "reason": "too few rows of one class"}
    t = paired_test(run.roc, base.roc)
    return {"status": "done", "method": "DeLong (Sun & Xu 2014)", **dataclasses.asdict(t)}


def pareto_front(runs: list[dict]) -> list[dict]:
    """Each run's (bytes, AUC) and whether no other run has fewer-or-equal bytes and a higher AUC."""
    points = [r for r in runs if r.get("embedding_bytes") and not math.isnan(_num(r["metrics"].get("auc")))]
    out = []
    for r in points:
        b, a = r["embedding_bytes"], r["metrics"]["auc"]
        dominated = any(
            o is not r and o["embedding_bytes"] <= b and o["metrics"]["auc"] >= a
            and (o["embedding_bytes"] < b or o["metrics"]["auc"] > a)
            for o in points
        )
        out.append({"name": r["name"], "bytes": b, "auc": a, "on_front": not dominated})
    return sorted(out, key=lambda p: p["bytes"])


def build_summary(runs: list[dict], comparison: dict | None, problems: list[Problem], title: str) -> dict:
    return {
        "title": title,
        "generated_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "runs": runs,
        "comparison": comparison,
        "problems": [dataclasses.asdict(p) for p in problems],
    }


def _resolved(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _ratio(a, b):
    return a / b if a and b else None
