"""Behaviour of ``recsys.data.ingest.preprocess`` on real, hand-made and damaged inputs."""

from __future__ import annotations

import gzip
import json
import random
import shutil
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from ingest_helpers import (
    dataset_tables,
    decoded_rows,
    expected_rows,
    random_line,
    read_split,
    read_vocab,
    run,
)

from recsys.data import layout
from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE
from recsys.data.config import PreprocessConfig, SplitConfig
from recsys.data.ingest import BadRowError, preprocess

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "criteo_1tb_sample_1k.tsv"


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def good_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [random_line(rng) for _ in range(n)]


# --- the bundled real sample -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_dataset(tmp_path_factory) -> tuple[Path, object]:
    return run(tmp_path_factory.mktemp("sample"), "ds", SAMPLE, split=SplitConfig())


def test_sample_rows_schema_and_meta(sample_dataset):
    root, stats = sample_dataset
    assert (stats.rows_in, stats.rows_out, stats.bad_rows) == (1000, 1000, 0)
    assert sum(stats.rows_per_split.values()) == 1000 and min(stats.rows_per_split.values()) > 50
    meta = layout.DatasetMeta.load(root)
    assert meta.rows == stats.rows_per_split and meta.source["kind"] == "ingest"
    saved = json.loads((root / "stats.json").read_text())
    assert saved["rows_out"] == 1000 and saved["bad_rows_by_reason"] == {}
    for split in layout.SPLITS:
        for shard in layout.list_shards(root, split):
            assert pq.read_schema(shard).remove_metadata() == layout.shard_schema(list(CRITEO_DENSE), list(CRITEO_CATEGORICAL))
    assert not (root / "_ingest_tmp").exists()


def test_sample_vocab_ranked_by_frequency_with_oov_last(sample_dataset):
    root, stats = sample_dataset
    meta = layout.DatasetMeta.load(root)
    train = read_split(root, "train")
    for feature in CRITEO_CATEGORICAL:
        vocab = read_vocab(root, feature)
        counts, raws = vocab.column("count").to_numpy(), vocab.column("raw").to_numpy()
        assert np.all(np.diff(counts) <= 0), feature
        ties = np.diff(counts) == 0
        assert np.all(np.diff(raws)[ties] > 0), f"{feature}: ties not broken by raw id"
        assert meta.num_embeddings[feature] == len(vocab) + 1
        ranks = train.column(feature).to_numpy()
        assert ranks.min() >= 0 and ranks.max() < len(vocab)  # min_count 1: no train row is OOV
        assert np.array_equal(np.bincount(ranks, minlength=len(vocab)), counts)


def test_sample_dense_and_missing_shares(sample_dataset):
    root, _ = sample_dataset
    table = read_split(root, "train")
    for feature in CRITEO_DENSE:
        values = table.column(feature).to_numpy()
        assert values.dtype == np.float32 and values.min() >= 0 and np.isfinite(values).all()
    rows = [line.split("\t") for line in SAMPLE.read_text().splitlines()]
    for i, feature in enumerate(CRITEO_CATEGORICAL):
        vocab = read_vocab(root, feature).column("raw").to_numpy()
        ranks = np.concatenate([read_split(root, s).column(feature).to_numpy() for s in layout.SPLITS])
        missing = np.mean(vocab[np.minimum(ranks, len(vocab) - 1)] == layout.MISSING_RAW_ID)
        assert missing == pytest.approx(np.mean([r[14 + i] == "" for r in rows])), feature
        if feature == "C1":
            assert missing < 0.05
        if feature == "C14":  # about 46% missing in the 1TB data
            assert 0.3 < missing < 0.6


def test_sample_values_match_reference_parser(tmp_path):
    root, _ = run(tmp_path, "ds", SAMPLE)
    lines = SAMPLE.read_text().splitlines()
    assert decoded_rows(root) == expected_rows(lines)


def test_gzip_and_csv_variants_give_identical_datasets(tmp_path):
    lines = SAMPLE.read_text().splitlines()
    plain, _ = run(tmp_path, "plain", SAMPLE, split=SplitConfig())
    gz = write_lines(tmp_path / "sample.tsv.gz", lines, gz=True)
    csv_path = write_lines(tmp_path / "sample.csv", [",".join(layout_columns())] + [l.replace("\t", ",") for l in lines])
    multi = tmp_path / "multi.gz"
    half = len(lines) // 2
    multi.write_bytes(gzip.compress("".join(l + "\n" for l in lines[:half]).encode())
                      + gzip.compress("".join(l + "\n" for l in lines[half:]).encode()))
    reference = dataset_tables(plain)
    for name, path in [("gz", gz), ("csv", csv_path), ("multi", multi)]:
        root, stats = run(tmp_path, name, path, split=SplitConfig())
        assert stats.rows_out == 1000
        assert dataset_tables(root) == reference, name


def layout_columns() -> list[str]:
    return [layout.LABEL, *CRITEO_DENSE, *CRITEO_CATEGORICAL]


def test_csv_header_mismatch_is_a_clear_error(tmp_path):
    path = write_lines(tmp_path / "x.csv", ["label,I1,I2", "1,2,3"])
    with pytest.raises(ValueError, match="header does not match"):
        run(tmp_path, "ds", path, format="csv")


# --- vocabulary options ----------------------------------------------------------------------


def frequency_lines() -> list[str]:
    """C1 takes id 0xa 5 times, 0xb 3 times, 0xc twice, 0xd once; other columns constant."""
    rest = ["1"] * 13 + ["00000001"] * 25
    ids = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]
    return ["\t".join(["0", *rest[:13], i, *rest[13:]]) for i in ids]


def test_min_count_sends_rare_ids_to_oov(tmp_path):
    path = write_lines(tmp_path / "f.tsv", frequency_lines())
    root, stats = run(tmp_path, "ds", path, min_count=3)
    assert read_vocab(root, "C1").column("raw").to_pylist() == [0xA, 0xB]
    assert stats.num_embeddings["C1"] == 3 and stats.oov_rows["C1"] == 3
    assert read_split(root).column("C1").to_pylist() == [0] * 5 + [1] * 3 + [2] * 3


def test_cap_keeps_the_most_frequent(tmp_path):
    path = write_lines(tmp_path / "f.tsv", frequency_lines())
    root, stats = run(tmp_path, "ds", path, max_rows_per_feature=1)
    assert read_vocab(root, "C1").to_pydict() == {"raw": [0xA], "count": [5]}
    assert stats.num_embeddings["C1"] == 2
    assert read_split(root).column("C1").to_pylist() == [0] * 5 + [1] * 6


# --- splits and chunking ---------------------------------------------------------------------


def test_random_split_deterministic_and_independent_of_chunk_size(tmp_path):
    path = write_lines(tmp_path / "d.tsv", good_lines(3000))
    split = SplitConfig(valid_fraction=0.2, test_fraction=0.1, seed=7)
    big, stats = run(tmp_path, "big", path, split=split)
    small, _ = run(tmp_path, "small", path, split=split, chunk_bytes=4096, rows_per_shard=500)
    other, _ = run(tmp_path, "other", path, split=SplitConfig(valid_fraction=0.2, test_fraction=0.1, seed=8))
    assert dataset_tables(big) == dataset_tables(small)
    assert len(layout.list_shards(small, "train")) == -(-stats.rows_per_split["train"] // 500)
    assert read_split(big, "valid") != read_split(other, "valid")
    assert abs(stats.rows_per_split["valid"] / 3000 - 0.2) < 0.03
    assert abs(stats.rows_per_split["test"] / 3000 - 0.1) < 0.03


def test_tiny_chunks_give_identical_output(tmp_path):
    lines = good_lines(500)
    lines[100] = "not\ta\trow"
    path = write_lines(tmp_path / "d.tsv.gz", lines, gz=True)
    a, stats_a = run(tmp_path, "a", path)
    b, stats_b = run(tmp_path, "b", path, chunk_bytes=4096)
    assert dataset_tables(a) == dataset_tables(b)
    assert stats_a.bad_row_examples == stats_b.bad_row_examples


def test_by_file_split_routes_files(tmp_path):
    data = tmp_path / "days"
    data.mkdir()
    for day, n in [(0, 30), (1, 20), (2, 10)]:
        write_lines(data / f"day_{day}", good_lines(n, seed=day))
    split = SplitConfig(mode="by_file", valid_files=["day_1*"], test_files=["day_2"])
    root, stats = run(tmp_path, "ds", data, split=split)
    assert stats.rows_per_split == {"train": 30, "valid": 20, "test": 10}
    assert [f["split"] for f in stats.files] == ["train", "valid", "test"]
    glob_root, glob_stats = run(tmp_path, "glob", str(data / "day_[01]"), split=split)
    assert glob_stats.rows_per_split == {"train": 30, "valid": 20, "test": 0}


# --- bad input -------------------------------------------------------------------------------

CORRUPTIONS = {
    "wrong_column_count": lambda cols: cols[:-1],
    "bad_dense": lambda cols: cols[:3] + ["1.5x"] + cols[4:],
    "bad_id": lambda cols: cols[:20] + ["zz12"] + cols[21:],
    "id_too_long": lambda cols: cols[:20] + ["123456789"] + cols[21:],
    "bad_label": lambda cols: ["2"] + cols[1:],
    "empty_label": lambda cols: [""] + cols[1:],
    "empty_line": lambda cols: [],
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_bad_row_kind_is_counted_located_and_skipped(tmp_path, kind):
    lines = good_lines(60)
    lines[17] = "\t".join(CORRUPTIONS[kind](lines[17].split("\t")))
    path = write_lines(tmp_path / "d.tsv", lines)
    root, stats = run(tmp_path, "ds", path)
    reason = "bad_label" if kind == "empty_label" else kind
    assert stats.bad_rows_by_reason == {reason: 1}
    assert (stats.rows_in, stats.rows_out, stats.bad_rows) == (60, 59, 1)
    example = stats.bad_row_examples[0]
    assert (example["file"], example["line"], example["reason"]) == (str(path), 18, reason)
    assert decoded_rows(root) == expected_rows(lines[:17] + lines[18:])
    with pytest.raises(BadRowError, match=rf"d\.tsv:18: {reason}"):
        run(tmp_path, "strict", path, on_bad_row="fail")


def test_bad_rows_warn_once_and_examples_are_capped(tmp_path, caplog):
    lines = good_lines(30)
    for i in range(0, 30, 3):
        lines[i] = "garbage"
    path = write_lines(tmp_path / "d.tsv", lines)
    with caplog.at_level("WARNING", logger="recsys.data.ingest"):
        _, stats = run(tmp_path, "ds", path, max_bad_row_examples=4)
    assert stats.bad_rows == 10 and len(stats.bad_row_examples) == 4
    assert [e["line"] for e in stats.bad_row_examples] == [1, 4, 7, 10]
    assert len(caplog.records) == 1 and "10 bad rows" in caplog.text


def test_truncated_gzip_keeps_every_complete_line(tmp_path):
    lines = good_lines(400)
    blob = gzip.compress("".join(l + "\n" for l in lines).encode())
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) * 2 // 3])
    complete = zlib.decompressobj(wbits=31).decompress(blob[: len(blob) * 2 // 3])
    n_complete = complete.count(b"\n")
    root, stats = run(tmp_path, "ds", path, chunk_bytes=2048)
    assert stats.rows_out == n_complete > 100
    assert stats.bad_rows_by_reason == {"truncated_gzip": 1}
    assert stats.bad_row_examples[0]["line"] == n_complete + 1
    assert decoded_rows(root) == expected_rows(lines[:n_complete])


def test_corrupt_gzip_keeps_rows_before_damage(tmp_path):
    lines = good_lines(200)
    members = [gzip.compress("".join(l + "\n" for l in lines[:100]).encode()),
               gzip.compress("".join(l + "\n" for l in lines[100:]).encode())]
    damaged = bytearray(members[1])
    damaged[20:40] = b"\xff" * 20
    path = tmp_path / "bad.gz"
    path.write_bytes(members[0] + bytes(damaged))
    root, stats = run(tmp_path, "ds", path)
    assert stats.rows_out >= 100 and decoded_rows(root)[:100] == expected_rows(lines[:100])
    reasons = set(stats.bad_rows_by_reason) | {i["reason"] for i in stats.file_issues}
    assert reasons == {"corrupt_gzip"}
    assert stats.rows_out == stats.rows_in - stats.bad_rows


def test_empty_file_is_reported_not_fatal(tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    write_lines(data / "a.tsv", good_lines(10))
    (data / "b.tsv").write_bytes(b"")
    root, stats = run(tmp_path, "ds", data)
    assert stats.rows_out == 10 and stats.bad_rows == 0
    assert stats.file_issues == [{"file": str(data / "b.tsv"), "line": 0, "reason": "empty_file"}]
    with pytest.raises(BadRowError, match=r"b\.tsv:0: empty_file"):
        run(tmp_path, "strict", data, on_bad_row="fail")


def test_last_line_without_newline_is_kept(tmp_path):
    lines = good_lines(5)
    path = tmp_path / "d.tsv"
    path.write_text("\n".join(lines))
    root, stats = run(tmp_path, "ds", path)
    assert stats.rows_out == 5 and decoded_rows(root) == expected_rows(lines)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"on_bad_row": "ignore"}, "on_bad_row must be skip|fail"),
        ({"format": "json"}, "format must be"),
        ({"min_count": 0}, "min_count"),
        ({"dense_transform": "sqrt"}, "dense_transform"),
        ({"split": SplitConfig(valid_fraction=0.6, test_fraction=0.5)}, "fractions"),
        ({"split": SplitConfig(mode="days")}, "split.mode"),
    ],
)
def test_invalid_config_is_rejected_up_front(tmp_path, overrides, message):
    cfg = PreprocessConfig(input=str(SAMPLE), output=str(tmp_path / "ds"), **overrides)
    with pytest.raises(ValueError, match=message):
        preprocess(cfg, progress=False)
    assert not (tmp_path / "ds").exists()


def test_missing_input_and_non_empty_output_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no input files"):
        run(tmp_path, "ds", tmp_path / "nothing*.tsv")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        run(tmp_path, "full", SAMPLE)
    shutil.rmtree(tmp_path / "full")


def test_non_utf8_bytes_are_a_bad_row_not_a_crash(tmp_path):
    lines = good_lines(20)
    raw_lines = [line.encode() for line in lines]
    cols = raw_lines[4].split(b"\t")
    cols[30] = b"\xff\xfe0000"
    raw_lines[4] = b"\t".join(cols)
    path = tmp_path / "d.tsv"
    path.write_bytes(b"\n".join(raw_lines) + b"\n")
    root, stats = run(tmp_path, "ds", path)
    assert stats.bad_rows_by_reason == {"bad_id": 1}
    assert stats.bad_row_examples[0]["line"] == 5 and stats.bad_row_examples[0]["feature"] == "C17"
    assert decoded_rows(root) == expected_rows(lines[:4] + lines[5:])
