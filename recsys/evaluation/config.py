"""Typed configs of the evaluation layer (light: no torch import)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional


@dataclasses.dataclass
class EvalJobConfig:
    """``recsys-eval``: score a checkpoint on a split.

    Args:
        checkpoint: a ``step_*.pt`` file, a sharded run's ``step_*.dcp`` directory, or a training run
            directory (its latest checkpoint).
        data_path: dataset to score; defaults to the one the model was trained on.
        split: ``train``, ``valid`` or ``test``.
        batch_size: rows per scoring batch.
        max_batches: score only the first batches (None: the whole split).
        save_predictions: keep each scored row's label and score (``predictions.parquet``, split
            file order); the HTML report's curves, breakdowns and paired tests need them.
        html_report: also write ``report.html`` (and ``report.json``) for this evaluation.
    """

    checkpoint: str = "???"
    data_path: Optional[str] = None
    split: str = "test"
    batch_size: int = 16384
    max_batches: Optional[int] = None
    save_predictions: bool = True
    html_report: bool = True


@dataclasses.dataclass
class ReportJobConfig:
    """``recsys-report``: one HTML report (and JSON beside it) over evaluated runs.

    Args:
        runs: run directories, sweep directories (every job below) or globs; one string or a list
            (``runs='[runs/sweep/a,runs/eval/b]'``).
        output: the HTML file; the JSON goes beside it (same name, ``.json``).
        baseline: name of the run the others are tested against (as the report names runs);
            default: the run with the most embedding bytes.
        title: the report's title (default: says which runs).
        bins: equal-mass bins of the reliability diagram.
        workers: processes analysing runs side by side (default: one per CPU for large runs).
    """

    runs: Any = "???"
    output: str = "report.html"
    baseline: Optional[str] = None
    title: Optional[str] = None
    bins: int = 20
    workers: Optional[int] = None
