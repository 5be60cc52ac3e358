"""Any CTR schema: the presets on small files in their own layouts, custom schemas with integer
and multi-hot ids, dense values written as floats, and runs with no good row."""

from __future__ import annotations

import gzip
import logging
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ingest_helpers import decoded_rows, expected_rows, random_line, read_split, read_vocab, run

from recsys.data import layout
from recsys.data.config import SplitConfig
from recsys.data.ingest import EmptyDatasetError
from recsys.data.loader import ParquetBatches
from recsys.data.schema import CRITEO_CATEGORICAL, DerivedFeature, SchemaConfig, load_schema

REPO = Path(__file__).resolve().parents[2]
PRESETS = REPO / "conf" / "schema"
AVAZU_COLUMNS = load_schema(PRESETS / "avazu.yaml").raw_columns() if (PRESETS / "avazu.yaml").exists() else []


def criteo_lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [random_line(rng) for _ in range(n)]


def avazu_rows(n: int, seed: int) -> list[list[str]]:
    """Rows in Avazu's layout: id, click, hour (YYMMDDHH, October 2014), 21 string/int ids."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        hour = f"1410{rng.randint(21, 30):02d}{rng.randint(0, 23):02d}"
        ids = [rng.choice(["1005", "1002", "1010"]), str(rng.randint(0, 2))]
        ids += [f"{rng.choice([0x1fbe01fe, 0x85f751fd, rng.getrandbits(32)]):08x}" for _ in range(11)]
        ids += [str(rng.randint(0, 5)) for _ in range(8)]
        rows.append([str(10**18 + i), str(rng.randint(0, 1)), hour, *ids])
    return rows


def write_avazu(path: Path, rows: list[list[str]]) -> Path:
    path.write_text(",".join(AVAZU_COLUMNS) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("preset", ["criteo_kaggle", "criteo_1tb"])
def test_criteo_presets_ingest_their_layouts(tmp_path, preset):
    schema = load_schema(PRESETS / f"{preset}.yaml")
    assert schema.name == preset and schema.sparse_features() == list(CRITEO_CATEGORICAL)
    lines = criteo_lines(300, seed=1)
    data = tmp_path / "in"
    data.mkdir()
    if preset == "criteo_1tb":  # day files, gzip, the last day held out
        for day, part in enumerate((lines[:150], lines[150:])):
            (data / f"day_{day}.gz").write_bytes(gzip.compress("".join(l + "\n" for l in part).encode()))
        split = SplitConfig(mode="by_file", test_files=["day_1*"], valid_fraction=0, test_fraction=0)
    else:
        (data / "train.txt").write_text("".join(l + "\n" for l in lines))
        split = SplitConfig(valid_fraction=0, test_fraction=0)
    root, stats = run(tmp_path, "ds", data, schema=schema, split=split)
    assert stats.rows_out == 300 and stats.bad_rows == 0
    if preset == "criteo_1tb":
        assert stats.rows_per_split == {"train": 150, "valid": 0, "test": 150}
    else:
        assert decoded_rows(root) == expected_rows(lines)
    assert layout.DatasetMeta.load(root).source["schema"]["name"] == preset


def test_avazu_preset_derives_hour_features_and_drops_the_id(tmp_path):
    schema = load_schema(PRESETS / "avazu.yaml")
    rows = avazu_rows(400, seed=2)
    rows[7][2] = "14103124"  # hour 24: not a timestamp
    rows[9][2] = "14023100"  # 31 February
    root, stats = run(tmp_path, "ds", write_avazu(tmp_path / "train.csv", rows), schema=schema)
    assert stats.bad_rows_by_reason == {"bad_timestamp": 2}
    assert [e["line"] for e in stats.bad_row_examples] == [9, 11]  # the header is line 1
    meta = layout.DatasetMeta.load(root)
    assert meta.dense_features == [] and "id" not in meta.sparse_features
    assert meta.sparse_features[-2:] == ["hour_of_day", "day_of_week"] and len(meta.sparse_features) == 23
    kept = [r for i, r in enumerate(rows) if i not in (7, 9)]
    table = read_split(root)
    for name, expect in (("hour_of_day", [int(r[2][6:]) for r in kept]),
                         ("day_of_week", [(int(r[2][4:6]) - 21 + 1) % 7 for r in kept])):  # 2014-10-21: Tuesday
        raw = read_vocab(root, name).column("raw").to_numpy()
        assert raw[table.column(name).to_numpy()].tolist() == expect, name
    assert table.column("label").to_numpy().tolist() == [int(r[1]) for r in kept]
    # string ids: equal strings share a rank, distinct strings do not
    site = table.column("site_id").to_numpy()
    text = np.array([r[5] for r in kept])
    for value in np.unique(text)[:20]:
        assert len(np.unique(site[text == value])) == 1
    assert len(np.unique(site)) == len(np.unique(text))
    batch = next(iter(ParquetBatches(root, "train", 64)))
    assert batch.dense.shape == (64, 0) and batch.sparse.keys() == meta.sparse_features


def test_integer_ids_and_multi_hot_bags_reach_the_loader(tmp_path):
    schema = SchemaConfig(name="inhouse", columns=["click", "price", "user", "tags"], label="click", dense=["price"],
                          categorical=["user"], multi_hot={"tags": "|"}, delimiter=",", id_type="int")
    rng = random.Random(3)
    bags = [[rng.choice([5, 7, 9, 10**12]) for _ in range(rng.randint(0, 4))] for _ in range(500)]
    lines = [f"{i % 2},{rng.random() * 10:.3f},{i % 13},{'|'.join(map(str, bag))}" for i, bag in enumerate(bags)]
    lines[4] = "1,2.5,3,5||7"  # an empty id inside a bag
    lines[6] = "1,2.5,-3,5"  # a negative integer id
    path = tmp_path / "log.csv"
    path.write_text("".join(l + "\n" for l in lines))
    root, stats = run(tmp_path, "ds", path, schema=schema)
    assert stats.bad_rows_by_reason == {"bad_id": 2}
    kept = [b for i, b in enumerate(bags) if i not in (4, 6)]
    meta = layout.DatasetMeta.load(root)
    assert meta.multi_hot_features == ["tags"] and meta.sparse_features == ["user", "tags"]
    vocab = read_vocab(root, "tags").column("raw").to_numpy()
    batches = list(ParquetBatches(root, "train", 100))
    lengths = np.concatenate([b.sparse["tags"].lengths().numpy() for b in batches])
    values = np.concatenate([b.sparse["tags"].values().numpy() for b in batches])
    assert lengths.tolist() == [len(b) for b in kept]  # real bag sizes, empty bags included
    assert vocab[values].tolist() == [v for b in kept for v in b]
    counts = read_vocab(root, "tags").column("count").to_numpy()
    assert counts.sum() == sum(len(b) for b in kept)


def test_integral_floats_are_integers_and_real_values_are_kept(tmp_path):
    lines = criteo_lines(50, seed=4)
    as_floats = ["\t".join(f"{c}.0" if 1 <= j <= 13 and c not in ("",) and not c.startswith("-") else c
                           for j, c in enumerate(line.split("\t"))) for line in lines]
    a, _ = run(tmp_path, "ints", _write(tmp_path / "a.tsv", lines))
    b, stats = run(tmp_path, "floats", _write(tmp_path / "b.tsv", as_floats))
    assert stats.bad_rows == 0 and decoded_rows(a) == decoded_rows(b)
    cols = lines[0].split("\t")
    cols[1:4] = ["0.5", "2.5e1", "-1.5"]
    c, stats = run(tmp_path, "reals", _write(tmp_path / "c.tsv", ["\t".join(cols)]))
    dense = read_split(c).column("I1").to_numpy()[0], read_split(c).column("I2").to_numpy()[0], read_split(c).column("I3").to_numpy()[0]
    assert dense == pytest.approx((np.log1p(0.5), np.log1p(25.0), 0.0))


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(l + "\n" for l in lines))
    return path


def test_a_run_with_no_good_row_raises_and_writes_no_dataset(tmp_path):
    path = _write(tmp_path / "wrong.tsv", ["a,b,c"] * 20)
    with pytest.raises(EmptyDatasetError, match=r"all 20 rows .*main reason wrong_column_count"):
        run(tmp_path, "ds", path)
    assert not (tmp_path / "ds" / "meta.json").exists()


def test_bad_row_share_above_the_limit_warns_with_the_main_reason(tmp_path, caplog):
    lines = criteo_lines(400, seed=5)
    lines[3] = "2" + lines[3][1:]
    with caplog.at_level(logging.INFO, logger="recsys.data.ingest"):
        run(tmp_path, "few", _write(tmp_path / "few.tsv", lines))  # 0.25% bad: an info line
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    for i in range(0, 400, 20):
        lines[i] = "2" + lines[i][1:]
    with caplog.at_level(logging.INFO, logger="recsys.data.ingest"):
        run(tmp_path, "many", _write(tmp_path / "many.tsv", lines))  # 5% bad
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "mostly bad_label" in warnings[0] and "max_bad_row_fraction 0.01" in warnings[0]


@pytest.mark.parametrize("change, message", [
    ({"columns": ["label", "I1", "C1"], "dense": ["I1", "nope"], "categorical": ["C1"]},
     r"dense: 'nope' is not one of the columns"),
    ({"columns": ["label", "I1", "C1", "C2"], "dense": ["I1"], "categorical": ["C2"]}, r"columns \['C1'\] have no role"),
    ({"multi_hot": {"C1": "\t"}}, "column 'C1' is both categorical and multi_hot"),
    ({"columns": ["label", "C1", "tags"], "dense": [], "categorical": ["C1"], "multi_hot": {"tags": "\t"}},
     r"multi_hot.tags: the in-field delimiter"),
    ({"id_type": "uuid"}, "id_type must be one of"),
    ({"derived": [DerivedFeature("h", "I1", "minute")]}, "kind must be one of"),
])
def test_inconsistent_schemas_are_errors_naming_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        SchemaConfig(**change).validate()


@pytest.mark.slow
def test_cli_takes_presets_and_schema_files_and_fails_loudly_on_no_good_row(tmp_path):
    binary = Path(sys.executable).parent / "recsys-preprocess"
    avazu = write_avazu(tmp_path / "train.csv", avazu_rows(200, seed=6))
    common = ["split.valid_fraction=0", "split.test_fraction=0", f"hydra.run.dir={tmp_path / 'h'}"]
    ok = subprocess.run([str(binary), "schema=avazu", f"input={avazu}", f"output={tmp_path / 'a'}", *common],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert layout.DatasetMeta.load(tmp_path / "a").sparse_features[-1] == "day_of_week"
    schema_file = tmp_path / "mine.yaml"
    schema_file.write_text("name: mine\ncolumns: [y, x, k]\nlabel: y\ndense: [x]\ncategorical: [k]\nid_type: int\n")
    data = _write(tmp_path / "d.tsv", ["1\t3\t7", "0\t\t8", "1\t2\t7"])
    mine = subprocess.run([str(binary), f"schema={schema_file}", f"input={data}", f"output={tmp_path / 'm'}", *common],
                          capture_output=True, text=True, timeout=300)
    assert mine.returncode == 0, mine.stderr[-2000:]
    assert layout.DatasetMeta.load(tmp_path / "m").num_embeddings == {"k": 3}
    bad = subprocess.run([str(binary), f"input={data}", f"output={tmp_path / 'b'}", *common],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "all 3 rows" in bad.stderr and "wrong_column_count" in bad.stderr
