"""The raw layout of a CTR dataset: which column is the label, which are dense, categorical or
multi-hot, how fields are delimited and how ids are written (a Hydra structured config).

Light on purpose (no numpy, pyarrow or torch), like :mod:`recsys.data.config`.

Presets live in ``conf/schema/``: ``criteo_kaggle`` (the default), ``criteo_1tb`` and
``avazu``; ``recsys-preprocess schema=<preset>`` picks one, ``schema=<path/to/schema.yaml>``
reads your own. A schema YAML holds only what differs from :class:`SchemaConfig`'s defaults,
which are the Criteo layout.

The prepared dataset's sparse features are, in this order: the categorical columns, the
multi-hot columns, then the derived features. Raw columns that are none of these are listed
under ``ignore`` (for example Avazu's per-impression ``id``), so that every column of the file
has exactly one declared role and a typo in a column name is an error, not a silent drop.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

CRITEO_LABEL = "label"
CRITEO_DENSE: tuple[str, ...] = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL: tuple[str, ...] = tuple(f"C{i}" for i in range(1, 27))

ID_TYPES = ("hex", "int", "string")
DERIVED_KINDS = ("hour_of_day", "day_of_week")


@dataclasses.dataclass
class DerivedFeature:
    """A categorical feature computed from a raw column.

    Attributes:
        name: the feature's name in the prepared dataset.
        source: the raw column it is computed from; that column holds ``YYMMDDHH`` timestamps
            (Avazu's ``hour``: ``14102100`` is 2014-10-21, 00:00).
        kind: ``hour_of_day`` (ids 0-23) or ``day_of_week`` (ids 0-6, Monday = 0).
    """

    name: str = "???"
    source: str = "???"
    kind: str = "???"


@dataclasses.dataclass
class SchemaConfig:
    """How a raw CTR file is laid out.

    Attributes:
        name: a label for logs and ``meta.json``.
        columns: every raw column, in file order (``None`` = label, dense, then categorical,
            the Criteo order).
        label: the 0/1 click column.
        dense: numeric columns (integers, or real numbers: see :mod:`recsys.data.raw`).
        categorical: single-id columns (empty field = the missing id, ranked like any other).
        multi_hot: multi-id columns and the delimiter between ids inside a field, e.g.
            ``{tags: "|"}``; an empty field is an empty bag.
        derived: features computed from a raw column (see :class:`DerivedFeature`).
        ignore: columns read past and dropped.
        delimiter: between fields (one character).
        header: whether files start with a header line of the column names.
        id_type: how ids are written: ``hex`` (up to 8 hex digits, Criteo), ``int``
            (non-negative decimal, up to 18 digits) or ``string`` (any bytes, up to 64, kept
            as a 63-bit hash of the bytes).
    """

    name: str = "criteo_kaggle"
    columns: Optional[list[str]] = None
    label: str = CRITEO_LABEL
    dense: list[str] = dataclasses.field(default_factory=lambda: list(CRITEO_DENSE))
    categorical: list[str] = dataclasses.field(default_factory=lambda: list(CRITEO_CATEGORICAL))
    multi_hot: dict[str, str] = dataclasses.field(default_factory=dict)
    derived: list[DerivedFeature] = dataclasses.field(default_factory=list)
    ignore: list[str] = dataclasses.field(default_factory=list)
    delimiter: str = "\t"
    header: bool = False
    id_type: str = "hex"

    def raw_columns(self) -> list[str]:
        return list(self.columns) if self.columns is not None else [self.label, *self.dense, *self.categorical]

    def sparse_features(self) -> list[str]:
        """The prepared dataset's sparse features: categorical, multi-hot, then derived."""
        return [*self.categorical, *self.multi_hot, *(d.name for d in self.derived)]

    def validate(self) -> None:
        """Raise ``ValueError`` naming the key when the schema is inconsistent."""
        where = f"schema {self.name!r}"
        columns = self.raw_columns()
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise ValueError(f"{where}: columns: {duplicated} listed more than once")
        roles: dict[str, str] = {}
        sources = {d.source for d in self.derived}
        for role, names in (("label", [self.label]), ("dense", self.dense), ("categorical", self.categorical),
                            ("multi_hot", list(self.multi_hot)), ("ignore", self.ignore)):
            for name in names:
                if name not in columns:
                    raise ValueError(f"{where}: {role}: {name!r} is not one of the columns {columns}")
                if name in roles:
                    raise ValueError(f"{where}: column {name!r} is both {roles[name]} and {role}")
                roles[name] = role
        for d in self.derived:
            if d.source not in columns:
                raise ValueError(f"{where}: derived {d.name!r}: source {d.source!r} is not one of the columns")
            if d.kind not in DERIVED_KINDS:
                raise ValueError(f"{where}: derived {d.name!r}: kind must be one of {DERIVED_KINDS}, got {d.kind!r}")
        unassigned = [c for c in columns if c not in roles and c not in sources]
        if unassigned:
            raise ValueError(f"{where}: columns {unassigned} have no role: list them under dense, categorical, "
                             "multi_hot, derived (as a source) or ignore")
        features = self.sparse_features()
        clashes = sorted({f for f in features if features.count(f) > 1} | (set(features) & set(self.dense)))
        if clashes:
            raise ValueError(f"{where}: feature names {clashes} are used twice")
        if not features:
            raise ValueError(f"{where}: no categorical, multi-hot or derived feature")
        if len(self.delimiter) != 1 or self.delimiter in "\r\n":
            raise ValueError(f"{where}: delimiter must be one character other than a line break, got {self.delimiter!r}")
        for name, inner in self.multi_hot.items():
            if len(inner) != 1 or inner in (self.delimiter, "\r", "\n"):
                raise ValueError(f"{where}: multi_hot.{name}: the in-field delimiter must be one character, "
                                 f"not the field delimiter {self.delimiter!r} or a line break, got {inner!r}")
        if self.id_type not in ID_TYPES:
            raise ValueError(f"{where}: id_type must be one of {ID_TYPES}, got {self.id_type!r}")


def load_schema(path: str) -> SchemaConfig:
    """A schema from a YAML file of :class:`SchemaConfig` keys (unknown keys are errors)."""
    from omegaconf import OmegaConf

    try:
        merged = OmegaConf.merge(OmegaConf.structured(SchemaConfig), OmegaConf.load(path))
    except Exception as exc:  # omegaconf's errors name the key; add the file
        raise ValueError(f"{path}: not a valid schema: {exc}") from exc
    return OmegaConf.to_object(merged)
