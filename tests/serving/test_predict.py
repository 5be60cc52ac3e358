"""``recsys-predict`` on raw files: equal to ``recsys-eval`` on the same rows prepared by ingest,
and bad lines handled as ingest handles them."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys.data.bad_rows import BadRowError
from recsys.data.loader import ParquetBatches
from recsys.serving.config import ExportConfig, PredictConfig
from recsys.serving.export import export_artifact
from recsys.serving.predict import predict_files
from tests.serving.conftest import SAMPLE


@pytest.fixture(scope="module")
def qr_artifact(checkpoint_for, tmp_path_factory):
    out = tmp_path_factory.mktemp("qr_artifact") / "artifact"
    export_artifact(ExportConfig(checkpoint=str(checkpoint_for("qr")), output=str(out), export=False))
    return out


def test_predict_on_the_raw_sample_equals_eval_on_its_parquet(qr_artifact, checkpoint_for, sample_dataset, tmp_path):
    from recsys.core.checkpoint import load_checkpoint
    from recsys.data.layout import DatasetMeta
    from recsys.evaluation.evaluate import predict
    from recsys.models.build import build_model, recipe_from_dict

    result = predict_files(PredictConfig(artifact=str(qr_artifact), input=str(SAMPLE), output=str(tmp_path / "p.parquet"), batch_size=300))
    got = pq.read_table(tmp_path / "p.parquet").to_pydict()
    assert result.rows_in == result.rows_scored == 1000 and got["line"] == list(range(1, 1001))

    payload = load_checkpoint(checkpoint_for("qr"))
    model = build_model(recipe_from_dict(payload["recipe"]), DatasetMeta.load(sample_dataset))
    model.load_state_dict(payload["model"])
    expected, labels = predict(model, ParquetBatches(str(sample_dataset), "train", 256))  # the file's rows, in order
    assert np.abs(np.array(got["prediction"]) - expected).max() <= 1e-6
    assert got["label"] == labels.astype(int).tolist()
    from recsys.core.metrics import CTRMetrics

    assert result.metrics["auc"] == pytest.approx(CTRMetrics.compute(expected, labels).auc, abs=1e-6)


def bad_copy(tmp_path):
    """The sample's first 20 lines gzipped, with line 5 cut short and line 9 given a bad id."""
    lines = SAMPLE.read_bytes().split(b"\n")[:20]
    lines[4] = b"\t".join(lines[4].split(b"\t")[:10])
    cols = lines[8].split(b"\t")
    cols[20] = b"zz"
    lines[8] = b"\t".join(cols)
    path = tmp_path / "bad.tsv.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return path


def test_bad_lines_are_counted_and_reported_with_file_and_line(qr_artifact, tmp_path):
    path = bad_copy(tmp_path)
    result = predict_files(PredictConfig(artifact=str(qr_artifact), input=str(path), output=str(tmp_path / "p.parquet")))
    assert (result.rows_in, result.rows_scored, result.bad_rows) == (20, 18, 2)
    assert [(e["line"], e["reason"]) for e in result.bad_row_examples] == [(5, "wrong_column_count"), (9, "bad_id")]
    assert result.bad_row_examples[1]["feature"] == "C7"
    lines = pq.read_table(tmp_path / "p.parquet").column("line").to_pylist()
    assert 5 not in lines and 9 not in lines and len(lines) == 18
    with pytest.raises(BadRowError, match=r"bad\.tsv\.gz:5: wrong_column_count"):
        predict_files(PredictConfig(artifact=str(qr_artifact), input=str(path), output=str(tmp_path / "q.parquet"), on_bad_row="fail"))


def test_a_file_of_only_bad_lines_is_an_error_not_an_empty_output(qr_artifact, tmp_path):
    path = tmp_path / "junk.tsv"
    path.write_text("not\ta\tcriteo\tline\n")
    with pytest.raises(ValueError, match="no row of"):
        predict_files(PredictConfig(artifact=str(qr_artifact), input=str(path), output=str(tmp_path / "p.parquet")))


@pytest.mark.slow
def test_export_and_predict_command_lines(checkpoint_for, tmp_path):
    def run(*args):
        proc = subprocess.run([sys.executable, *args, f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    out = run("-m", "recsys.cli.export", f"checkpoint={checkpoint_for('full').parent.parent}",
              f"output={tmp_path / 'art'}", "quantize=int8", "export=false")
    assert "int8 tables" in out
    out = run("-m", "recsys.cli.predict", f"artifact={tmp_path / 'art'}", f"input={SAMPLE}", f"output={tmp_path / 'p.parquet'}")
    assert "scored 1,000 rows" in out and "AUC" in out
    summary = json.loads((tmp_path / "hydra" / "predict.json").read_text())
    assert summary["rows_scored"] == 1000
