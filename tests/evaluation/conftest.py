"""Evaluated runs written straight into the on-disk format a report reads (eval.json,
predictions.parquet, metrics.jsonl, .hydra/overrides.yaml), scored on a real prepared split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys.data.layout import LABEL, list_shards
from recsys.core.metrics import CTRMetrics
from recsys.evaluation.runs import write_predictions


def split_labels(dataset: Path, split: str) -> np.ndarray:
    return np.concatenate([pq.read_table(p, columns=[LABEL]).column(LABEL).to_numpy() for p in list_shards(dataset, split)])


def write_run(
    run_dir: Path,
    dataset: Path,
    *,
    noise: float = 1.0,
    seed: int = 0,
    total_bytes: int = 1000,
    split: str = "test",
    scores: np.ndarray | None = None,
    overrides: list[str] | None = None,
) -> np.ndarray:
    """A run whose scores are the split's labels blurred by ``noise`` (more noise, lower AUC)."""
    labels = split_labels(dataset, split)
    if scores is None:
        rng = np.random.default_rng(seed)
        scores = 1 / (1 + np.exp(-(2.0 * (labels - 0.5) + rng.normal(0, noise, labels.size))))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(run_dir, scores, labels)
    finite = np.isfinite(scores)
    metrics = CTRMetrics.compute(scores[finite], labels[finite]).to_dict()
    record = {
        "split": split,
        "dataset": str(dataset),
        "metrics": metrics,
        "memory": {"tables": 26, "parameters": total_bytes // 8, "weight_bytes": total_bytes // 2,
                   "optimizer_bytes": total_bytes // 2, "combiner_parameters": 0, "total_bytes": total_bytes},
        "feature_memory": [{"feature": f"C{i}", "method": "full", "description": "", "tables": [f"C{i}"], "shared": False,
                            "weight_bytes": total_bytes / 52, "optimizer_bytes": total_bytes / 52, "combiner_bytes": 0,
                            "total_bytes": total_bytes / 26} for i in range(1, 27)],
        "train": {"steps": 10, "samples": 2560, "samples_per_s": 1000.0},
        "predictions": "predictions.parquet",
    }
    (run_dir / "eval.json").write_text(json.dumps(record))
    lines = [{"kind": "train", "step": s, "loss": 0.7 - 0.01 * s, "samples_per_s": 900.0 + s} for s in range(1, 11)]
    lines += [{"kind": "valid", "step": 10, "auc": 0.8, "logloss": 0.5}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run_dir / ".hydra").mkdir(exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides or []))
    return scores


@pytest.fixture
def run_writer():
    """:func:`write_run`, for tests that lay out evaluated runs of their own."""
    return write_run
