"""Typed configs of the data layer (Hydra structured configs): ingest, synthetic data, batching.

Light on purpose: importing this module loads no torch, pyarrow or numpy code paths beyond the
dataclasses, so command-line entry points can parse configs before choosing an allocator.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from recsys.data.schema import SchemaConfig


@dataclasses.dataclass(frozen=True)
class ModelMagnitudes:
    """Sizes of the planted model's terms (see the module docstring for the formula).

    Attributes:
        latent_dim: k, size of the per-id vectors in the pairwise term.
        bias_std: std of a full-strength id's bias.
        latent_std: std of each coordinate of a full-strength id's vector.
        dense_std: std of the dense linear term (over standardised dense values).
        dense_latent_std: std of the dense-by-sparse projection ``U y`` per coordinate.
        effect_half_frequency: id probability at which an id carries half its full effect.
    """

    latent_dim: int = 8
    bias_std: float = 0.23
    latent_std: float = 0.14
    dense_std: float = 0.35
    dense_latent_std: float = 0.3
    effect_half_frequency: float = 1e-4

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        for name in ("bias_std", "latent_std", "dense_std", "dense_latent_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.effect_half_frequency <= 0:
            raise ValueError(f"effect_half_frequency must be > 0, got {self.effect_half_frequency}")


@dataclasses.dataclass
class SplitConfig:
    """How rows are divided into train/valid/test.

    ``random``: each row independently, valid with probability ``valid_fraction`` and test with
    ``test_fraction``; the draw is a hash of (seed, file, line), so it does not depend on chunking.
    ``by_file``: files whose names match a ``valid_files`` / ``test_files`` glob go to that
    split, all others to train (for the 1TB days, e.g. ``test_files: ["day_23*"]``).
    """

    mode: str = "random"
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 2018
    valid_files: list[str] = dataclasses.field(default_factory=list)
    test_files: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PreprocessConfig:
    """Options of :func:`~recsys.data.ingest.preprocess` (a Hydra structured config).

    Attributes:
        input: a file, a directory of files or a glob.
        output: the dataset directory to create.
        schema: the raw layout (a ``conf/schema`` preset; Criteo by default).
        schema_file: a YAML schema that replaces ``schema`` (``schema=<file.yaml>`` on the
            command line sets this).
        format: ``auto`` (a file whose first line starts with the first column's name is read
            as a header file, delimited by the character after the name; any other file by
            the schema's delimiter and header setting), ``tsv`` (tabs, no header) or ``csv``
            (commas, header line).
        max_bad_row_fraction: above this share of bad rows the run warns, naming the main reason.
    """

    input: str = "???"
    output: str = "???"
    schema: SchemaConfig = dataclasses.field(default_factory=SchemaConfig)
    schema_file: Optional[str] = None
    format: str = "auto"
    min_count: int = 1
    max_rows_per_feature: int | None = None
    dense_transform: str = "log1p"
    on_bad_row: str = "skip"
    rows_per_shard: int = 1_000_000
    chunk_bytes: int = 64 << 20
    max_bad_row_examples: int = 100
    max_bad_row_fraction: float = 0.01
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)


@dataclasses.dataclass
class BagSize:
    """Ids per row of a synthetic multi-hot feature, uniform on ``[min, max]``."""

    min: int = 1
    max: int = 1


@dataclasses.dataclass
class SynthConfig:
    """What to generate (a Hydra structured config; see the module docstrings).

    Attributes:
        output: directory to create (must not exist or be empty).
        profile: ``kaggle`` or ``terabyte``: cardinalities, skew and positive rate.
        rows: total rows over all splits.
        valid_fraction, test_fraction: shares of ``rows`` in the valid and test splits.
        seed: random stream of the rows.
        model_seed: the planted model and vocab ids; defaults to ``seed``. Same model_seed with
            another seed gives fresh rows from the same world (e.g. a second test set).
        cardinality_scale: multiplies every cardinality (at least 2 ids remain): small demo sets.
        max_cardinality: optional cap on ids per feature.
        positive_rate: target click rate; defaults to the profile's (25.62% / 3%).
        rows_per_shard: rows per Parquet file.
        chunk_rows: rows generated per step (rounded up to whole blocks of 16,384).
        workers: threads generating chunks while the main thread writes; 0 = one per
            available CPU, 1 = everything in the calling thread. The output does not depend on it.
        multi_hot: features written as bags of ids, with their bag sizes, e.g.
            ``{C3: {min: 1, max: 5}}`` (see :mod:`recsys.data.synth`).
        latent_dim, bias_std, latent_std, dense_std, dense_latent_std, effect_half_frequency:
            the planted model's magnitudes (:class:`~recsys.data.synth_model.ModelMagnitudes`).
    """

    output: str = "???"
    profile: str = "kaggle"
    rows: int = 1_000_000
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    seed: int = 0
    model_seed: Optional[int] = None
    cardinality_scale: float = 1.0
    max_cardinality: Optional[int] = None
    positive_rate: Optional[float] = None
    rows_per_shard: int = 1_000_000
    chunk_rows: int = 262_144
    workers: int = 0
    multi_hot: dict[str, BagSize] = dataclasses.field(default_factory=dict)
    latent_dim: int = 8
    bias_std: float = ModelMagnitudes.bias_std
    latent_std: float = ModelMagnitudes.latent_std
    dense_std: float = ModelMagnitudes.dense_std
    dense_latent_std: float = ModelMagnitudes.dense_latent_std
    effect_half_frequency: float = ModelMagnitudes.effect_half_frequency


@dataclasses.dataclass
class DataConfig:
    """Which prepared dataset to read and how to batch it."""

    path: str = "???"
    batch_size: int = 2048
    eval_batch_size: int = 16384
    shuffle: bool = True
    shuffle_buffer_groups: int = 4
    prefetch: int = 4
