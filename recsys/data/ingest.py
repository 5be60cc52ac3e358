"""Turn raw Criteo text files into a prepared dataset (see :mod:`recsys.data.layout`).

Two passes, both streaming, so a file larger than memory works:

1. Read each file in chunks of whole lines (:class:`recsys.data.raw.ChunkReader`), parse and
   validate them (:func:`recsys.data.parse.read_file_rows`), assign every good row to a split and
   append the rows, dense already transformed and sparse still as raw int64 ids, to one
   zstd-compressed scratch Parquet file per split.
2. Count each feature's training ids from its scratch column alone, one feature at a time
   (:class:`recsys.data.vocab.FrequencyCounter`), and rank them into vocabularies; then re-read
   the scratch files, map raw ids to ranks (ids not kept share the feature's OOV row) and
   write the final shards.

Bad input never crashes the run and never disappears silently: each rejected line is counted
by reason, the first few are kept with file, line and text in ``stats.json``, and
``rows_out == rows_in - bad_rows`` is checked before anything is reported. With
``on_bad_row=fail`` the first bad line raises :class:`BadRowError` instead.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data import raw
from recsys.data.bad_rows import BadRowError, BadRowLog, EmptyDatasetError, no_rows_message, report_bad  # noqa: F401 (BadRowError: callers catch it from here)
from recsys.data.config import PreprocessConfig
from recsys.data.parse import ParsedRows, read_file_rows
from recsys.data.schema import SchemaConfig, load_schema
from recsys.core.io import write_json
from recsys.data.layout import LABEL, SPLITS, DatasetMeta, vocab_path
from recsys.data.shards import ShardWriter
from recsys.data.splits import TRAIN, file_split, random_split
from recsys.data.vocab import FrequencyCounter, Vocabulary

log = logging.getLogger("recsys.data.ingest")

TMP_DIR = "_ingest_tmp"
SCRATCH_CODEC = "zstd"  # pass 1's scratch rows: raw int64 ids have zero high bytes and a skewed head


@dataclass
class IngestStats:
    """What happened during ingest (also written to ``<output>/stats.json``).

    ``rows_in`` counts every physical data line (bad ones too, headers not), ``rows_out`` the
    rows written over all splits; ``bad_rows == sum(bad_rows_by_reason.values())`` and
    ``rows_out == rows_in - bad_rows``. ``file_issues`` lists problems that concern a file but
    no line (an empty file, a gzip cut exactly at a line end). ``oov_rows`` counts, per
    feature, the written ids that went to the OOV row; ``scratch_bytes`` is the size of pass 1's
    temporary files (deleted at the end).
    """

    rows_in: int = 0
    rows_out: int = 0
    bad_rows: int = 0
    bad_rows_by_reason: dict[str, int] = field(default_factory=dict)
    bad_row_examples: list[dict] = field(default_factory=list)
    file_issues: list[dict] = field(default_factory=list)
    rows_per_split: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    files: list[dict] = field(default_factory=list)
    num_embeddings: dict[str, int] = field(default_factory=dict)
    oov_rows: dict[str, int] = field(default_factory=dict)
    scratch_bytes: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0


# ---------------------------------------------------------------------------------------------
# Configuration


def validate_config(cfg: PreprocessConfig) -> None:
    """Reject impossible settings before touching any file."""
    checks = [
        (cfg.input not in ("", "???"), "input must be set (a file, a directory or a glob)"),
        (cfg.output not in ("", "???"), "output must be set (the dataset directory to create)"),
        (cfg.format in ("auto", *raw.FORMATS), f"format must be auto|tsv|csv, got {cfg.format!r}"),
        (cfg.min_count >= 1, f"min_count must be >= 1, got {cfg.min_count}"),
        (
            cfg.max_rows_per_feature is None or cfg.max_rows_per_feature >= 1,
            f"max_rows_per_feature must be >= 1 or null, got {cfg.max_rows_per_feature}",
        ),
        (cfg.dense_transform in ("log1p", "none"), f"dense_transform must be log1p|none, got {cfg.dense_transform!r}"),
        (cfg.on_bad_row in ("skip", "fail"), f"on_bad_row must be skip|fail, got {cfg.on_bad_row!r}"),
        (cfg.rows_per_shard >= 1, f"rows_per_shard must be >= 1, got {cfg.rows_per_shard}"),
        (cfg.chunk_bytes >= 1, f"chunk_bytes must be >= 1, got {cfg.chunk_bytes}"),
        (cfg.max_bad_row_examples >= 0, f"max_bad_row_examples must be >= 0, got {cfg.max_bad_row_examples}"),
        (0 <= cfg.max_bad_row_fraction <= 1, f"max_bad_row_fraction must be in [0, 1], got {cfg.max_bad_row_fraction}"),
        (cfg.split.mode in ("random", "by_file"), f"split.mode must be random|by_file, got {cfg.split.mode!r}"),
        (
            0 <= cfg.split.valid_fraction and 0 <= cfg.split.test_fraction
            and cfg.split.valid_fraction + cfg.split.test_fraction < 1,
            "split fractions must be >= 0 and valid_fraction + test_fraction < 1, got "
            f"{cfg.split.valid_fraction} + {cfg.split.test_fraction}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"PreprocessConfig: {message}")
    effective_schema(cfg).validate()


def effective_schema(cfg: PreprocessConfig) -> SchemaConfig:
    """``cfg.schema_file`` read as a schema when set, else ``cfg.schema``."""
    return load_schema(cfg.schema_file) if cfg.schema_file else cfg.schema


# ---------------------------------------------------------------------------------------------
# Writers


class Background:
    """Run calls in order on one worker thread, overlapping them with the caller's work.

    Parquet encoding releases the GIL, so writing chunk ``n`` while chunk ``n + 1`` is parsed
    uses the second core. At most ``max_pending`` calls wait, which bounds the memory held by
    queued tables; errors surface on the next ``submit`` or on ``close``.
    """

    def __init__(self, max_pending: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self._pending: list[Future] = []
        self._max_pending = max_pending

    def submit(self, fn, *args) -> None:
        self._pending.append(self._pool.submit(fn, *args))
        while len(self._pending) > self._max_pending or (self._pending and self._pending[0].done()):
            self._pending.pop(0).result()

    def close(self) -> None:
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown(wait=True)


def _scratch_schema(schema: SchemaConfig) -> pa.Schema:
    """Pass-1 rows: final label and dense columns, sparse still raw int64 ids (lists for bags)."""
    return pa.schema([pa.field(LABEL, pa.int8(), nullable=False)]
                     + [pa.field(f, pa.float32(), nullable=False) for f in schema.dense]
                     + [pa.field(f, pa.list_(pa.int64()) if f in schema.multi_hot else pa.int64(), nullable=False)
                        for f in schema.sparse_features()])


# ---------------------------------------------------------------------------------------------
# The two passes


def transform_dense(column: pa.Array | pa.ChunkedArray, how: str) -> np.ndarray:
    """Missing -> 0, negative -> 0, then ``log1p`` if asked; float32."""
    values = np.maximum(pc.fill_null(column, 0).to_numpy(), 0).astype(np.float64)
    if how == "log1p":
        np.log1p(values, out=values)
    return values.astype(np.float32)


class _Pass1:
    """Parse every file, count training ids, spill rows to temporary per-split Parquet files."""

    def __init__(self, cfg: PreprocessConfig, schema: SchemaConfig, tmp: Path, bad: BadRowLog, bar: tqdm) -> None:
        self.cfg, self.raw_schema, self.tmp, self.bad, self.bar = cfg, schema, tmp, bad, bar
        self.schema = _scratch_schema(schema)
        self.writers = [pq.ParquetWriter(scratch_path(tmp, s), self.schema, compression=SCRATCH_CODEC) for s in SPLITS]
        self.background = Background()
        self.rows_in = 0
        self.header_lines = 0
        self.files: list[dict] = []

    def run(self, files: list[Path]) -> None:
        try:
            for index, path in enumerate(files):
                self._file(index, path)
        finally:
            self.background.close()
            for writer in self.writers:
                writer.close()

    def _file(self, index: int, path: Path) -> None:
        layout = raw.file_layout(path, self.raw_schema, self.cfg.format)
        self.header_lines = int(layout.header)
        whole_split = file_split(path.name, self.cfg.split)
        rows_before, bad_before = self.rows_in, self.bad.count
        for rows in read_file_rows(path, layout, self.cfg.chunk_bytes, self.bad, self.bar.update):
            self._rows(index, path, whole_split, rows)
        info = {"path": str(path), "delimiter": layout.delimiter, "header": layout.header, "bytes": path.stat().st_size,
                "rows_in": self.rows_in - rows_before, "bad_rows": self.bad.count - bad_before}
        if whole_split is not None:
            info["split"] = SPLITS[whole_split]
        self.files.append(info)

    def _rows(self, index: int, path: Path, whole_split: int | None, rows: ParsedRows) -> None:
        self.rows_in += rows.n_lines
        self.bad.rows(path, rows.bad)
        if not len(rows):
            return
        if whole_split is None:
            codes = random_split(index, rows.lines - self.header_lines, self.cfg.split)
        else:
            codes = np.full(len(rows), whole_split, dtype=np.int8)
        columns = {LABEL: rows.label}
        columns.update({f: transform_dense(rows.dense[f], self.cfg.dense_transform) for f in self.raw_schema.dense})
        columns.update(rows.sparse)
        table = pa.table(columns, schema=self.schema)
        for code, writer in enumerate(self.writers):
            mask = codes == code
            if not mask.any():
                continue
            part = table if mask.all() else table.filter(pa.array(mask))
            self.background.submit(writer.write_table, part)


def scratch_path(tmp: Path, split: str) -> Path:
    return tmp / f"{split}.parquet"


def count_training_ids(tmp: Path, feature: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, counts) of one feature over the training rows of pass 1's scratch file.

    Counting one feature at a time, from its column alone, bounds the counters' memory by the
    largest single vocabulary instead of the sum over all features.
    """
    counter = FrequencyCounter()
    for batch in pq.ParquetFile(scratch_path(tmp, SPLITS[TRAIN])).iter_batches(batch_size=1 << 20, columns=[feature]):
        column = batch.column(0)
        counter.add((column.flatten() if pa.types.is_list(column.type) else column).to_numpy())
    return counter.totals()


def _pass2(cfg: PreprocessConfig, out: Path, tmp: Path, meta: DatasetMeta, vocabs: dict[str, Vocabulary]) -> tuple[dict, dict]:
    """Map raw ids to ranks and write the final shards; returns (rows per split, OOV rows)."""
    lookups = {f: v.lookup() for f, v in vocabs.items()}
    oov = dict.fromkeys(meta.sparse_features, 0)
    rows = {}
    schema = meta.shard_schema()
    background = Background()
    try:
        for split in SPLITS:
            writer = ShardWriter(out, split, cfg.rows_per_shard, schema)
            source = pq.ParquetFile(scratch_path(tmp, split))
            rows[split] = source.metadata.num_rows
            for batch in source.iter_batches(batch_size=1 << 20):
                columns = [batch.column(LABEL), *(batch.column(f) for f in meta.dense_features)]
                for f in meta.sparse_features:
                    mapped, oov[f] = _map_ids(lookups[f], batch.column(f), oov[f])
                    columns.append(mapped)
                background.submit(writer.write, pa.Table.from_arrays(columns, schema=schema))
            background.submit(writer.close)
    finally:
        background.close()
    return rows, oov


def _map_ids(lookup, column: pa.Array, oov: int) -> tuple[pa.Array, int]:
    """Raw ids (or lists of them) -> ranks, and the running OOV count."""
    if not pa.types.is_list(column.type):
        ranks, n_oov = lookup(column.to_numpy())
        return pa.array(ranks), oov + n_oov
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    ranks, n_oov = lookup(column.flatten().to_numpy())
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(ranks)), oov + n_oov


def _prepare_output(out: Path) -> Path:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output {out} exists and is not empty; choose a new directory or delete it")
    tmp = out / TMP_DIR
    tmp.mkdir(parents=True)
    return tmp


def preprocess(cfg: PreprocessConfig, progress: bool = True) -> IngestStats:
    """Ingest ``cfg.input`` into the prepared dataset ``cfg.output``; see the module docstring."""
    validate_config(cfg)
    start = time.perf_counter()
    files = raw.list_input_files(cfg.input)
    for path in files:
        file_split(path.name, cfg.split)  # fail early on ambiguous patterns
    schema = effective_schema(cfg)
    out = Path(cfg.output)
    tmp = _prepare_output(out)
    bad = BadRowLog(cfg.on_bad_row == "fail", cfg.max_bad_row_examples)
    meta = DatasetMeta(num_embeddings={}, rows={}, dense_features=list(schema.dense),
                       sparse_features=schema.sparse_features(), multi_hot_features=list(schema.multi_hot),
                       dense_transform=cfg.dense_transform)
    try:
        with tqdm(total=sum(p.stat().st_size for p in files), unit="B", unit_scale=True,
                  desc="ingest", disable=not progress) as bar:
            first = _Pass1(cfg, schema, tmp, bad, bar)
            first.run(files)
        if first.rows_in == bad.count:
            raise EmptyDatasetError(no_rows_message(first.rows_in, bad, files))
        scratch_bytes = sum(scratch_path(tmp, s).stat().st_size for s in SPLITS)
        log.info("pass 1: %d rows (%d bad) from %d files; counting ids per feature", first.rows_in, bad.count, len(files))
        vocabs = {f: Vocabulary.build(*count_training_ids(tmp, f), cfg.min_count, cfg.max_rows_per_feature)
                  for f in meta.sparse_features}
        for f, vocab in vocabs.items():
            vocab.save(vocab_path(out, f))
        rows_per_split, oov = _pass2(cfg, out, tmp, meta, vocabs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    stats = IngestStats(
        rows_in=first.rows_in, rows_out=sum(rows_per_split.values()), bad_rows=bad.count,
        bad_rows_by_reason=dict(sorted(bad.by_reason.items())), bad_row_examples=bad.examples,
        file_issues=bad.file_issues, rows_per_split=rows_per_split, files=first.files,
        num_embeddings={f: v.num_embeddings for f, v in vocabs.items()}, oov_rows=oov, scratch_bytes=scratch_bytes,
    )
    if stats.rows_out != stats.rows_in - stats.bad_rows:
        raise AssertionError(f"ingest lost rows: rows_out {stats.rows_out} != rows_in {stats.rows_in} "
                             f"- bad_rows {stats.bad_rows}")
    stats.seconds = time.perf_counter() - start
    stats.rows_per_s = stats.rows_in / stats.seconds if stats.seconds else 0.0
    meta.num_embeddings, meta.rows = stats.num_embeddings, stats.rows_per_split
    meta.source = {
        "kind": "ingest", "schema": dataclasses.asdict(schema), "inputs": [str(p) for p in files],
        "format": cfg.format, "min_count": cfg.min_count, "cap": cfg.max_rows_per_feature,
        "split": dataclasses.asdict(cfg.split),
    }
    write_json(out / "stats.json", dataclasses.asdict(stats))
    meta.save(out)  # last: its presence marks a complete dataset
    report_bad(stats, cfg.max_bad_row_fraction, log)
    return stats
