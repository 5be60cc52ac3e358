"""The artifact as a server sees it: quantized tables, loading without recsys, input checks,
damaged files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from recsys.serving.artifact import ArtifactError, load_model, read_metadata
from recsys.serving.config import ExportConfig
from recsys.serving.export import export_artifact
from tests.serving.conftest import raw_rows, raw_tensors


@pytest.fixture(scope="module")
def artifacts(checkpoint_for, tmp_path_factory):
    """The MD model (mixed dims, several tables per feature) at every quantization."""
    root = tmp_path_factory.mktemp("artifacts")
    for quantize in ("fp32", "fp16", "int8", "int4"):
        export_artifact(ExportConfig(checkpoint=str(checkpoint_for("md")), output=str(root / quantize), quantize=quantize))
    return root


@pytest.mark.parametrize("quantize, bytes_per_value, tolerance", [("fp16", 2, 1e-3), ("int8", 1, 2e-2), ("int4", 0.5, 1e-1)])
def test_quantized_artifacts_score_close_to_fp32_with_the_table_bytes_the_metadata_says(artifacts, quantize, bytes_per_value, tolerance):
    dense, sparse = raw_tensors(raw_rows())
    reference = load_model(artifacts / "fp32")(dense, sparse)
    for fmt in ("torchscript", "export"):
        got = load_model(artifacts / quantize, fmt)(dense, sparse)
        error = (got - reference).abs().max().item()
        assert 0 < error <= tolerance, (fmt, error)  # quantized: not bit-equal, but close
    plan = read_metadata(artifacts / quantize)["plan"]
    scale_bias = 4 if quantize.startswith("int") else 0
    expected = sum(int(t["rows"] * (t["dim"] * bytes_per_value + scale_bias)) for t in plan["tables"])
    assert plan["table_bytes"] == expected
    # what the loaded TorchScript module's table storage holds: the rows plus alignment padding
    stored = load_model(artifacts / quantize).embedding.tables.weights_host.numel()
    assert plan["stored_table_bytes"] == stored >= expected


NO_RECSYS = """
import importlib.util, sys
# neither the checkout nor the editable install's finder can reach recsys; torchrec is blocked
sys.path = [p for p in sys.path if p and p != {repo!r} and not (__import__('pathlib').Path(p) / 'recsys').is_dir()]
sys.meta_path = [f for f in sys.meta_path if 'editable' not in type(f).__name__.lower() and 'editable' not in getattr(f, '__name__', '').lower()]
assert importlib.util.find_spec('recsys') is None, 'recsys is importable'
sys.modules['torchrec'] = None
import torch, fbgemm_gpu
dense = torch.tensor({dense}); sparse = torch.tensor({sparse})
ts = torch.jit.load({ts!r})(dense, sparse)
ep = torch.export.load({pt2!r}).module()(dense, sparse)
print(ts.tolist(), ep.tolist())
"""


def test_artifact_loads_and_scores_with_torch_and_fbgemm_only(artifacts, tmp_path):
    from tests.conftest import REPO

    dense, sparse = raw_tensors(raw_rows())
    dense, sparse = dense[:4], sparse[:4]
    expected = load_model(artifacts / "int8")(dense, sparse)
    code = NO_RECSYS.format(repo=str(REPO), dense=dense.tolist(), sparse=sparse.tolist(),
                            ts=str(artifacts / "int8" / "model.ts"), pt2=str(artifacts / "int8" / "model.pt2"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ts, ep = json.loads("[" + proc.stdout.strip().replace("] [", "], [") + "]")
    assert torch.allclose(torch.tensor(ts), expected, atol=1e-6) and torch.allclose(torch.tensor(ep), expected, atol=1e-6)


def bad_inputs():
    good_dense, good_sparse = torch.zeros(3, 13, dtype=torch.int64), torch.zeros(3, 26, dtype=torch.int64)
    return [
        ("dense float dtype", (good_dense.float(), good_sparse), r"input 'dense': expected \(B, 13\) int64, got float32"),
        ("sparse int32 dtype", (good_dense, good_sparse.int()), r"input 'sparse': expected \(B, 26\) int64, got int32"),
        ("12 dense", (good_dense[:, :12], good_sparse), r"input 'dense': expected shape \(B, 13\)"),
        ("a sparse feature missing", (good_dense, good_sparse[:, :25]), r"input 'sparse': expected shape \(B, 26\)"),
        ("1-d dense", (good_dense[0], good_sparse), r"input 'dense': expected shape"),
        ("batch mismatch", (good_dense, good_sparse[:2]), r"same batch size B, got 3 and 2"),
    ]


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_bad_inputs_raise_an_error_naming_the_input(artifacts, fmt):
    model = load_model(artifacts / "fp32", fmt)
    for case, args, pattern in bad_inputs():
        with pytest.raises(Exception, match=pattern):  # ValueError in Python, torch.jit.Error from TorchScript
            model(*args)
    dense, sparse = torch.zeros(0, 13, dtype=torch.int64), torch.zeros(0, 26, dtype=torch.int64)
    assert model(dense, sparse).shape == (0,)  # an empty batch is a valid, empty answer


def test_the_bare_exported_program_refuses_bad_inputs_too(artifacts):
    program = torch.export.load(str(artifacts / "fp32" / "model.pt2")).module()
    for case, args, pattern in bad_inputs():
        with pytest.raises(Exception) as info:
            program(*args)
        if "dtype" not in case and "1-d" not in case:  # export's own guards name the input for widths and batches
            assert "dense" in str(info.value) or "sparse" in str(info.value), (case, str(info.value))


def test_a_damaged_or_foreign_artifact_fails_at_load(artifacts, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(artifacts / "fp32", copy)
    data = bytearray((copy / "model.ts").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.ts").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.ts: contents do not match"):
        load_model(copy, "torchscript")
    load_model(copy, "export")  # the other file is intact
    metadata = json.loads((copy / "metadata.json").read_text())
    metadata["artifact_version"] = 99
    (copy / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match="artifact_version 99"):
        load_model(copy, "export")


def test_a_checkpoint_from_another_format_version_is_refused(checkpoint_for, tmp_path):
    from recsys.core.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(checkpoint_for("full"))
    payload["format_version"] = 1
    old = save_checkpoint(tmp_path / "old" / "step_000000001.pt", payload)
    with pytest.raises(ValueError, match="another recsys version"):
        export_artifact(ExportConfig(checkpoint=str(old), output=str(tmp_path / "a")))
