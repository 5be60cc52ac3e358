"""Typed configs of the serving layer (light: no torch import).

:class:`ExportConfig` is ``recsys-export`` (checkpoint → artifact directory), :class:`PredictConfig`
is ``recsys-predict`` (artifact + raw Criteo files → predictions Parquet).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional


class Quantize(str, enum.Enum):
    """Row format of the inference tables (FBGEMM's ``SparseType``): int8/int4 rows carry a
    row-wise fp16 scale and bias."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"
    int4 = "int4"


class ArtifactFormat(str, enum.Enum):
    """``torchscript`` is ``model.ts`` (C++ servers load it), ``export`` is ``model.pt2``."""

    torchscript = "torchscript"
    export = "export"


@dataclasses.dataclass
class ExportConfig:
    """``recsys-export``: a trained checkpoint → an artifact directory.

    Args:
        checkpoint: a ``step_*.pt`` file, a sharded run's ``step_*.dcp`` directory, or a training run
            directory (its newest valid checkpoint).
        output: the artifact directory to create (must not exist or be empty).
        quantize: row format of the inference tables.
        data_path: the dataset whose vocabularies and dense transform go inside the artifact;
            default the one the model was trained on.
        torchscript: write ``model.ts``.
        export: write ``model.pt2`` (``torch.export``, dynamic batch).
    """

    checkpoint: str = "???"
    output: str = "???"
    quantize: Quantize = Quantize.fp32
    data_path: Optional[str] = None
    torchscript: bool = True
    export: bool = True


@dataclasses.dataclass
class PredictConfig:
    """``recsys-predict``: score raw Criteo files through an artifact.

    Args:
        artifact: an artifact directory written by ``recsys-export``.
        input: a raw Criteo TSV/CSV file (plain or .gz), a directory of them, or a glob.
        output: the predictions Parquet file to write (columns file, line, prediction, label).
        format: which model of the artifact scores (``torchscript`` or ``export``).
        batch_size: rows per scoring batch.
        chunk_bytes: raw text read at a time.
        on_bad_row: ``skip`` (count and report bad lines) or ``fail`` (stop at the first).
        max_bad_row_examples: bad lines kept (with file:line) in the summary.
        threads: torch intra-op threads (None: torch's default).
    """

    artifact: str = "???"
    input: str = "???"
    output: str = "???"
    format: ArtifactFormat = ArtifactFormat.torchscript
    batch_size: int = 4096
    chunk_bytes: int = 16 << 20
    on_bad_row: str = "skip"
    max_bad_row_examples: int = 20
    threads: Optional[int] = None
