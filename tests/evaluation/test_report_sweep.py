"""A 5-run ``recsys-train -m`` sweep writes its comparison report at the end (the Hydra callback)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
METHODS = ["full", "hash", "qr", "md", "unified"]


@pytest.mark.slow
def test_sweep_writes_a_report_comparing_its_five_runs(tiny_dataset, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli.train", "-m", f"data.path={tiny_dataset}", "model=tiny",
         "data.batch_size=512", f"embedding={','.join(METHODS)}", "trainer.progress=false", "trainer.tensorboard=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "runs" / "sweep").iterdir()
    assert f"sweep report: {sweep.relative_to(tmp_path) / 'report.html'}" in proc.stdout
    report = json.loads((sweep / "report.json").read_text())
    assert report["problems"] == []
    names = [r["name"] for r in report["runs"]]
    assert names == [str(i) for i in range(5)]
    comp = report["comparison"]
    assert comp["baseline"] == "0"  # full tables: the most embedding bytes
    table = {r["name"]: r for r in comp["table"]}
    for i, method in enumerate(METHODS):
        row = table[str(i)]
        assert row["overrides"] == [f"embedding={method}"]
        assert row["test"]["status"] == ("baseline" if method == "full" else "done"), method
        # each job's own final evaluation kept its predictions: no job is scored again
        assert (sweep / str(i) / "predictions.parquet").exists() and not (sweep / str(i) / "eval").exists()
    aucs = [r["auc"] for r in comp["table"]]
    assert aucs == sorted(aucs, reverse=True)
    assert any(p["on_front"] for p in comp["pareto"])
    assert {r["method"] for r in report["runs"][1]["features"]} == {"hash"}
    html = (sweep / "report.html").read_text()
    assert html.count("<section class='run'>") == 5 and "data-plot='pareto'" in html



def test_a_sweep_job_without_predictions_is_scored_again(tiny_dataset, tmp_path):
    from omegaconf import OmegaConf

    from recsys.cli.report import SweepReport
    from recsys.train.config import TrainerConfig, TrainJobConfig
    from recsys.train.loop import train

    sweep = tmp_path / "sweep"
    for job, keeps in (("0", True), ("1", False)):
        cfg = TrainJobConfig(trainer=TrainerConfig(max_steps=4, progress=False, tensorboard=False))
        cfg.data.path, cfg.data.batch_size = str(tiny_dataset), 512
        cfg.model.embedding_dim, cfg.model.bottom_mlp, cfg.model.top_mlp = 8, [8], [8, 1]
        cfg.eval.save_predictions = keeps
        train(cfg, sweep / job)
        (sweep / job / ".hydra").mkdir()
        OmegaConf.save(OmegaConf.structured(cfg), sweep / job / ".hydra" / "config.yaml")
    SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert not (sweep / "0" / "eval").exists()  # its training run kept its predictions
    assert (sweep / "1" / "eval" / "predictions.parquet").exists()
    report = json.loads((sweep / "report.json").read_text())
    assert report["problems"] == [] and [r["name"] for r in report["runs"]] == ["0", "1"]
