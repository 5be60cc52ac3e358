"""End-to-end smoke test of benchmarks/bench_pipeline.py with tiny settings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recsys.models.dlrm import native_bf16

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_pipeline.py"

POSITIVE_KEYS = (
    "rows", "batch_size", "ingest_rows_per_s", "pandas_rows_per_s", "ingest_vs_pandas",
    "loader_samples_per_s", "train_loop_samples_per_s", "step_samples_per_s", "step_samples_per_s_glibc",
    "torchrec_samples_per_s", "roofline_samples_per_s", "step_vs_roofline", "loop_vs_step", "loop_vs_torchrec",
    "step_vs_torchrec", "tcmalloc_vs_glibc",
    "flops_per_sample", "gemm_gflops", "dense_us_per_sample", "embedding_us_per_sample", "cpu_count",
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bench_pipeline_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("torchrec")
    from recsys.allocator import find_tcmalloc

    if find_tcmalloc() is None:
        pytest.skip("tcmalloc is not installed")
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(SCRIPT), "--rows", "20000", "--train-rows", "20000", "--steps", "3",
           "--warmup", "1", "--repeats", "1", "--loop-steps", "3", "--cardinality-scale", "0.001",
           "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "train_loop_samples_per_s" in proc.stdout and "step_vs_roofline" in proc.stdout  # the printed table

    result = json.loads(out.read_text())
    for key in POSITIVE_KEYS:
        value = result[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    assert result["rows"] == 20000 and result["batch_size"] == 2048
    # About 2.9 MFLOP per sample: 3 GEMMs per Linear layer (2 for the first) plus 3 bmm.
    assert 2.8e6 < result["flops_per_sample"] < 3.0e6

    assert result["allocator_check"] is True
    allocators = result["allocators"]
    assert allocators["recsys_tcmalloc"]["active"] == "tcmalloc"
    assert allocators["torchrec_tcmalloc"]["active"] == "tcmalloc"
    assert allocators["recsys_glibc"]["active"] == "glibc"
    assert [a.startswith("tcmalloc") for a in allocators["recsys_train"]] == [True]
    assert "glibc" in allocators["recsys_glibc"]["describe"]
    children = [child for name, child in allocators.items() if name not in ("parent", "recsys_train")]
    # the Kaggle preset's dense_precision=auto: bf16 on a CPU with BF16 instructions (then recsys's
    # step and torchrec's DLRM are measured in fp32 too), fp32 elsewhere
    bf16 = result["dense_precision"] == "bf16"
    assert bf16 is native_bf16(torch.device("cpu"))
    assert len(children) == (5 if bf16 else 3) and all(child["ok"] for child in children)  # each ran the allocator it asked for
    for key in ("step_fp32_samples_per_s", "bf16_vs_fp32_step", "torchrec_fp32_samples_per_s", "loop_vs_torchrec_fp32"):
        assert (result[key] > 0) if bf16 else (result[key] is None), key

    timings = result["timings"]
    assert len(timings["step_s"]) == len(timings["step_glibc_s"]) == len(timings["torchrec_s"]) == 1
    # every figure carries its spread; the roofline bounds every repeat (the script fails otherwise)
    spread = result["train_loop_spread"]
    assert spread["n"] == 1 and spread["min"] <= spread["median"] <= spread["max"]
    assert result["roofline_bound_holds"] and all(r <= 1.0 for r in result["step_vs_roofline_per_repeat"])
    assert result["versions"]["torch"] and result["versions"]["torchrec"]
    assert len(result["gemm_shapes"]) == 23


def test_criteo_tsv_writer_round_trips_through_ingest_parser(tmp_path: Path) -> None:
    """The vectorised TSV writer produces lines recsys's raw parser accepts unchanged."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    from common import hex8, write_criteo_tsv

    from recsys.data import raw
    from recsys.data.parse import parse_chunk
    from recsys.data.schema import SchemaConfig

    label = np.array([0, 1, 1])
    dense = np.full((3, 13), np.nan)
    dense[0, :] = np.arange(13)
    dense[1, 3] = 12345
    sparse = np.full((3, 26), -1, np.int64)
    sparse[0, :] = np.arange(26) * 0x01010101
    sparse[2, 5] = 0xFFFFFFFF
    path = tmp_path / "x.tsv"
    write_criteo_tsv(path, label, dense, sparse)
    text = path.read_bytes()
    assert text.count(b"\n") == 3 and all(line.count(b"\t") == 39 for line in text.splitlines())
    assert hex8(np.array([0, 0xABCDEF12])).tolist() == [b"00000000", b"abcdef12"]

    parsed = parse_chunk(raw.Chunk(text, 1, 3), raw.RawLayout(SchemaConfig(), "\t", False))
    assert not parsed.bad and len(parsed) == 3
    assert parsed.label.tolist() == [0, 1, 1]
    assert parsed.dense["I4"].to_pylist() == [3, 12345, None]
    assert parsed.sparse["C2"].tolist() == [0x01010101, -1, -1]
    assert parsed.sparse["C6"].tolist() == [5 * 0x01010101, -1, 0xFFFFFFFF]
