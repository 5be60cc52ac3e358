"""Shared helpers for the ingest tests: a pure-Python reference parser and output readers.

The reference parser states the row rules of ``recsys.data.raw`` in the plainest possible
Python, one line at a time, so the vectorised implementation can be checked against it.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data import layout
from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE
from recsys.data.config import PreprocessConfig, SplitConfig
from recsys.data.ingest import preprocess

N_COLUMNS = 40
ALL_TRAIN = SplitConfig(valid_fraction=0.0, test_fraction=0.0)


def reference_parse(line: str, sep: str = "\t") -> tuple[str, None] | tuple[None, tuple]:
    """(reason, None) for a bad line, (None, (label, dense, ids)) for a good one."""
    if line == "":
        return "empty_line", None
    cols = line.split(sep)
    if len(cols) != N_COLUMNS:
        return "wrong_column_count", None
    if cols[0] not in ("0", "1"):
        return "bad_label", None
    dense = []
    for v in cols[1:14]:
        if v == "":
            dense.append(None)
        elif re.fullmatch(r"-?[0-9]{1,18}", v.strip(" ")):
            dense.append(int(v))
        elif re.fullmatch(r"0[xX][0-9a-fA-F]{1,15}", v.strip(" ")):  # pyarrow's int parser takes hex
            dense.append(int(v.strip(" "), 16))
        elif re.fullmatch(r"-?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})?|-?[0-9]+[eE][-+]?[0-9]{1,3}", v.strip(" ")) \
                and math.isfinite(float(v)):
            dense.append(float(v))  # a real number: kept as it is
        else:
            return "bad_dense", None
    ids = []
    for v in cols[14:]:
        if v == "":
            ids.append(layout.MISSING_RAW_ID)
        elif len(v) > 8:
            return "id_too_long", None
        elif re.fullmatch(r"[0-9a-fA-F]+", v):
            ids.append(int(v, 16))
        else:
            return "bad_id", None
    return None, (int(cols[0]), dense, ids)


def expected_dense(value: int | None, transform: str = "log1p") -> float:
    x = 0 if value is None or value < 0 else value
    return float(np.float32(math.log1p(x) if transform == "log1p" else x))


def random_line(rng: random.Random) -> str:
    """A valid Criteo line with some missing values and a skewed id distribution."""
    label = str(rng.randint(0, 1))
    dense = ["" if rng.random() < 0.2 else str(rng.randint(-3, 5000)) for _ in range(13)]
    ids = ["" if rng.random() < 0.1 else f"{rng.choice([7, 255, 4096, 2**31 + 5, rng.getrandbits(32)]):08x}"
           for _ in range(26)]
    return "\t".join([label, *dense, *ids])


def run(tmp_path: Path, name: str, input_path: Path | str, **overrides) -> tuple[Path, object]:
    """Ingest into ``tmp_path/name`` (all rows to train unless ``split`` is given)."""
    out = tmp_path / name
    cfg = PreprocessConfig(input=str(input_path), output=str(out), **{"split": ALL_TRAIN, **overrides})
    return out, preprocess(cfg, progress=False)


def read_split(root: Path, split: str = "train") -> pa.Table:
    shards = layout.list_shards(root, split)
    if not shards:
        return layout.shard_schema(list(CRITEO_DENSE), list(CRITEO_CATEGORICAL)).empty_table()
    return pa.concat_tables(pq.read_table(p) for p in shards)


def read_vocab(root: Path, feature: str) -> pa.Table:
    return pq.read_table(layout.vocab_path(root, feature))


def decoded_rows(root: Path, split: str = "train") -> list[tuple]:
    """Rows as (label, dense floats, raw ids) with ranks turned back into raw ids (OOV -> None)."""
    table = read_split(root, split)
    vocabs = {f: read_vocab(root, f).column("raw").to_pylist() for f in CRITEO_CATEGORICAL}
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    rows = []
    for i in range(table.num_rows):
        dense = tuple(cols[f][i] for f in CRITEO_DENSE)
        ids = tuple(vocabs[f][cols[f][i]] if cols[f][i] < len(vocabs[f]) else None for f in CRITEO_CATEGORICAL)
        rows.append((cols[layout.LABEL][i], dense, ids))
    return rows


def expected_rows(lines: list[str]) -> list[tuple]:
    """What ``decoded_rows`` must return for the good lines among ``lines``."""
    rows = []
    for line in lines:
        reason, parsed = reference_parse(line)
        if reason is None:
            label, dense, ids = parsed
            rows.append((label, tuple(expected_dense(v) for v in dense), tuple(ids)))
    return rows


def dataset_tables(root: Path) -> dict[str, pa.Table]:
    """Every shard split and vocabulary of a dataset, for whole-dataset equality checks."""
    tables = {split: read_split(root, split) for split in layout.SPLITS}
    tables.update({f: read_vocab(root, f) for f in CRITEO_CATEGORICAL})
    return tables
