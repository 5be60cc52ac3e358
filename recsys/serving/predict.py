"""``recsys-predict``: score raw Criteo files through an artifact, in streaming batches.

Files are read exactly as ingest reads them (:func:`recsys.data.parse.read_file_rows`: the same
parser, the same bad-line reasons, counted and reported with ``file:line``, ``on_bad_row=fail``
stopping at the first), and the raw values go to the artifact as they are: the artifact does
the dense transform and the vocabulary lookup itself. Predictions land in one Parquet file with
each row's file and line, so they join back to the input; the labels of the input give AUC and
logloss.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys.core.metrics import CTRMetrics
from recsys.data import raw
from recsys.data.bad_rows import BadRowLog
from recsys.data.parse import ParsedRows, read_file_rows
from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE, SchemaConfig
from recsys.serving.artifact import load_model, read_metadata
from recsys.serving.config import ArtifactFormat, PredictConfig

log = logging.getLogger(__name__)

MISSING_DENSE = -1  # the artifact's missing sentinel for a dense value (see its metadata)
PREDICTIONS_SCHEMA = pa.schema([
    pa.field("file", pa.string(), nullable=False),
    pa.field("line", pa.int64(), nullable=False),
    pa.field("prediction", pa.float32(), nullable=False),
    pa.field("label", pa.int8(), nullable=False),
])


@dataclasses.dataclass
class PredictResult:
    """What ``recsys-predict`` did (also printed and written as JSON)."""

    rows_in: int
    rows_scored: int
    bad_rows: int
    bad_rows_by_reason: dict[str, int]
    bad_row_examples: list[dict]
    file_issues: list[dict]
    output: str
    metrics: dict | None
    seconds: float
    rows_per_s: float


def raw_inputs(rows: ParsedRows) -> tuple[torch.Tensor, torch.Tensor]:
    """The artifact's inputs for parsed rows: dense (N, 13) int64 with missing = -1, raw ids (N, 26)."""
    dense = np.stack([rows.dense[f].fill_null(MISSING_DENSE).to_numpy() for f in CRITEO_DENSE], axis=1)
    sparse = np.stack([rows.sparse[f] for f in CRITEO_CATEGORICAL], axis=1)
    return torch.from_numpy(dense.astype(np.int64, copy=False)), torch.from_numpy(sparse.astype(np.int64, copy=False))


def check_contract(metadata: dict, artifact: str) -> None:
    """The artifact must take the raw Criteo columns this reader produces, in this order."""
    inputs = metadata["inputs"]
    if inputs["dense"]["features"] != list(CRITEO_DENSE) or inputs["sparse"]["features"] != list(CRITEO_CATEGORICAL):
        raise ValueError(f"{artifact}: the artifact's input features are not Criteo's I1..I13 and C1..C26")


def predict_files(cfg: PredictConfig) -> PredictResult:
    """Score every row of ``cfg.input``; write ``cfg.output``; see the module docstring."""
    if cfg.on_bad_row not in ("skip", "fail"):
        raise ValueError(f"PredictConfig: on_bad_row must be skip|fail, got {cfg.on_bad_row!r}")
    if cfg.batch_size < 1:
        raise ValueError(f"PredictConfig: batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    check_contract(read_metadata(cfg.artifact), cfg.artifact)
    model = load_model(cfg.artifact, ArtifactFormat(cfg.format))
    files = raw.list_input_files(cfg.input)
    bad = BadRowLog(cfg.on_bad_row == "fail", cfg.max_bad_row_examples)
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    rows_in, predictions, labels = 0, [], []
    with pq.ParquetWriter(output, PREDICTIONS_SCHEMA) as writer, torch.no_grad():
        for path in files:
            layout = raw.file_layout(path, SchemaConfig(), "auto")
            for rows in read_file_rows(path, layout, cfg.chunk_bytes, bad):
                rows_in += rows.n_lines
                bad.rows(path, rows.bad)
                if not len(rows):
                    continue
                dense, sparse = raw_inputs(rows)
                scores = torch.cat([model(dense[i : i + cfg.batch_size], sparse[i : i + cfg.batch_size])
                                    for i in range(0, len(rows), cfg.batch_size)]).numpy()
                writer.write_table(pa.table({
                    "file": pa.array([str(path)] * len(rows), pa.string()), "line": rows.lines,
                    "prediction": scores.astype(np.float32), "label": rows.label,
                }, schema=PREDICTIONS_SCHEMA))
                predictions.append(scores)
                labels.append(rows.label)
    scored = sum(len(p) for p in predictions)
    if not scored:
        raise ValueError(f"no row of {cfg.input} could be scored ({bad.count} bad rows of {rows_in}); see the bad-row report")
    p, y = np.concatenate(predictions), np.concatenate(labels)
    metrics = CTRMetrics.compute(p, y).to_dict() if 0 < y.sum() < len(y) else None
    seconds = time.perf_counter() - start
    if bad.count or bad.file_issues:
        log.warning("skipped %d bad rows of %d (%s)", bad.count, rows_in, ", ".join(f"{k}={v}" for k, v in sorted(bad.by_reason.items())))
    return PredictResult(rows_in, scored, bad.count, dict(sorted(bad.by_reason.items())), bad.examples,
                         bad.file_issues, str(output), metrics, seconds, scored / seconds if seconds else 0.0)
