"""Ingest and loader measurements of the pipeline benchmark: recsys's ``preprocess`` against the
straightforward pandas ingest of the same raw file, and the Parquet batch loader."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import time_call  # noqa: E402
from pipeline_model import BATCH_SIZE  # noqa: E402


def recsys_ingest(tsv: Path, out: Path) -> int:
    from recsys.data.config import PreprocessConfig
    from recsys.data.ingest import preprocess

    stats = preprocess(PreprocessConfig(input=str(tsv), output=str(out)), progress=False)
    return stats.rows_in


def pandas_ingest(tsv: Path, out: Path, chunk_rows: int = 1 << 18, valid_fraction: float = 0.1,
                  test_fraction: float = 0.1, seed: int = 2018) -> int:
    """The straightforward pandas ingest: two chunked passes over the file.

    Pass 1 assigns each row a split, counts ids of the training rows per column
    (``value_counts`` per chunk, summed at the end). Vocabularies rank ids by count (most
    frequent = 0, unseen ids share an OOV row). Pass 2 re-reads the file, maps ids to ranks,
    transforms dense values (missing/negative → 0, log1p) and writes one Parquet file per chunk
    and split.
    """
    import pandas as pd

    from recsys.data.layout import LABEL, SPLITS
    from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE

    names = [LABEL, *CRITEO_DENSE, *CRITEO_CATEGORICAL]
    dtype = {LABEL: "int8", **dict.fromkeys(CRITEO_DENSE, "float32"), **dict.fromkeys(CRITEO_CATEGORICAL, "str")}

    def chunks():
        reader = pd.read_csv(tsv, sep="\t", header=None, names=names, dtype=dtype, engine="c", chunksize=chunk_rows)
        for i, chunk in enumerate(reader):
            u = np.random.default_rng([seed, i]).random(len(chunk))
            split = np.where(u < valid_fraction, 1, np.where(u < valid_fraction + test_fraction, 2, 0))
            yield i, chunk, split

    counts: dict[str, list] = {f: [] for f in CRITEO_CATEGORICAL}
    rows = 0
    for _, chunk, split in chunks():
        rows += len(chunk)
        train = chunk[split == 0]
        for f in CRITEO_CATEGORICAL:
            counts[f].append(train[f].value_counts(dropna=False))

    (out / "vocab").mkdir(parents=True)
    vocab = {}
    for f in CRITEO_CATEGORICAL:
        total = pd.concat(counts[f]).groupby(level=0, dropna=False).sum().sort_values(ascending=False, kind="stable")
        vocab[f] = pd.Index(total.index)
        total.rename("count").rename_axis("raw").reset_index().to_parquet(out / "vocab" / f"{f}.parquet", index=False)

    for s in SPLITS:
        (out / s).mkdir()
    for i, chunk, split in chunks():
        frame = pd.DataFrame({LABEL: chunk[LABEL]})
        for f in CRITEO_DENSE:
            frame[f] = np.log1p(chunk[f].fillna(0).clip(lower=0)).astype("float32")
        for f in CRITEO_CATEGORICAL:
            ranks = vocab[f].get_indexer(chunk[f])
            frame[f] = np.where(ranks < 0, len(vocab[f]), ranks).astype("int32")
        for code, s in enumerate(SPLITS):
            frame[split == code].to_parquet(out / s / f"part-{i:05d}.parquet", index=False, compression="zstd")
    return rows


def time_ingest(fn, tsv: Path, workdir: Path, repeats: int) -> tuple[list[float], int]:
    """Seconds of each repeat of ``fn(tsv, out)`` into a fresh directory, and the rows it read."""
    times, rows = [], 0
    for r in range(repeats):
        out = workdir / f"{fn.__name__}-{r}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        rows = fn(tsv, out)
        times.append(time.perf_counter() - start)
        if r < repeats - 1:
            shutil.rmtree(out)
    return times, rows


def time_loader(root: Path, repeats: int) -> tuple[list[float], int]:
    from recsys.data.loader import ParquetBatches

    batches = ParquetBatches(root, "train", BATCH_SIZE, shuffle=True, prefetch=4)

    def epoch() -> None:
        for _ in batches:
            pass

    return time_call(epoch, repeats, warmup=1), batches.rows
