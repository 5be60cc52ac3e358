"""recsys-report over run directories: comparison, paired tests, breakdowns, and bad input."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recsys.evaluation.breakdown import BUCKETS, feature_memory
from recsys.evaluation.report_html import build_report

REPO = Path(__file__).resolve().parents[2]


def recsys_report(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "recsys.cli.report", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_sweep_dir_report_compares_runs_with_paired_tests(tiny_dataset, tmp_path, run_writer):
    sweep = tmp_path / "sweep"
    good = run_writer(sweep / "0", tiny_dataset, noise=0.5, total_bytes=4000, overrides=["embedding=full"])
    run_writer(sweep / "1", tiny_dataset, noise=3.0, total_bytes=1000, overrides=["embedding=hash"])
    run_writer(sweep / "2", tiny_dataset, scores=good, total_bytes=2000, overrides=["embedding=qr"])
    proc = recsys_report(f"runs={sweep}", "output=out/report.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report: out/report.html" in proc.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    comp = report["comparison"]
    assert comp["baseline"] == "0" and report["problems"] == []
    table = {r["name"]: r for r in comp["table"]}
    assert [r["name"] for r in comp["table"]][-1] == "1"  # sorted by AUC: the noisy run last
    assert table["2"]["test"]["p_value"] == 1.0  # same scores as the baseline
    assert table["1"]["test"]["p_value"] < 0.01 and table["1"]["test"]["difference"] < 0
    assert table["1"]["overrides"] == ["embedding=hash"]
    assert table["1"]["bytes_vs_baseline"] == 0.25
    front = {p["name"]: p["on_front"] for p in comp["pareto"]}
    assert front == {"1": True, "2": True, "0": False}  # 2 has 0's AUC with half the bytes
    run = report["runs"][0]
    assert run["metrics"]["rows"] == 1024 and run["auc_ci95"][0] < run["metrics"]["auc"] < run["auc_ci95"][1]
    for feature, groups in run["frequency"]["features"].items():
        assert sum(groups["rows"]) == 1024, feature
    assert run["training"]["axis"] == "samples" and run["training"]["train"]["x"][-1] == 2560
    html = (tmp_path / "out" / "report.html").read_text()
    for plot in ("pareto", "roc-pr", "reliability", "frequency", "memory", "training"):
        assert f"data-plot='{plot}'><svg" in html, plot
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # nothing fetched from the network


def test_bad_runs_are_named_and_the_rest_is_reported(tiny_dataset, tmp_path, run_writer):
    runs = tmp_path / "runs"
    run_writer(runs / "good", tiny_dataset, noise=0.5, total_bytes=4000)
    nan_scores = run_writer(runs / "other", tiny_dataset, noise=1.0)
    nan_scores[[3, 7]] = np.nan
    run_writer(runs / "nan", tiny_dataset, scores=nan_scores)
    run_writer(runs / "valid_split", tiny_dataset, noise=0.5, split="valid")
    run_writer(runs / "no_preds", tiny_dataset, noise=0.5)
    (runs / "no_preds" / "predictions.parquet").unlink()
    run_writer(runs / "shuffled", tiny_dataset, noise=0.5)
    _reorder_predictions(runs / "shuffled")
    (runs / "unfinished" / ".hydra").mkdir(parents=True)

    report = build_report([str(runs)], tmp_path / "report.html", baseline="good")
    problems = {p["run"]: p["message"] for p in report["problems"]}
    assert "2 of 1,024 scores are NaN" in problems["nan"] and "first at row 3" in problems["nan"]
    assert "no predictions.parquet" in problems["no_preds"]
    assert "do not line up" in problems["shuffled"]
    assert "has no eval.json" in problems["unfinished"]
    tests = {r["name"]: r["test"] for r in report["comparison"]["table"]}
    assert tests["valid_split"] == {"status": "skipped", "reason": "different split: valid vs the baseline's test"}
    assert tests["nan"]["reason"] == "nan has no saved predictions"
    assert tests["other"]["status"] == "done"
    assert "frequency" not in {r["name"]: r for r in report["runs"]}["shuffled"]
    html = (tmp_path / "report.html").read_text()
    assert "What could not be reported" in html and "first at row 3" in html


def _reorder_predictions(run_dir: Path) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(run_dir / "predictions.parquet")
    pq.write_table(table.take(np.argsort(table.column("label").to_numpy(), kind="stable")), run_dir / "predictions.parquet")


def test_nothing_to_report_fails_naming_what_is_missing(tmp_path):
    (tmp_path / "empty_run").mkdir()
    proc = recsys_report(f"runs={tmp_path / 'empty_run'}", f"output={tmp_path / 'r.html'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "nothing to report" in proc.stderr and "empty_run has no eval.json" in proc.stderr
    assert not (tmp_path / "r.html").exists()
    proc = recsys_report(f"runs={tmp_path / 'nowhere*'}", f"output={tmp_path / 'r.html'}", cwd=tmp_path)
    assert proc.returncode != 0 and "the pattern matches nothing" in proc.stderr


def test_a_glob_and_a_list_of_runs_select_the_same_runs(tiny_dataset, tmp_path, run_writer):
    for name, noise in (("a_full", 0.5), ("a_hash", 2.0), ("b_other", 1.0)):
        run_writer(tmp_path / name, tiny_dataset, noise=noise)
    by_glob = build_report([str(tmp_path / "a_*")], tmp_path / "g.html")
    by_list = build_report([str(tmp_path / "a_full"), str(tmp_path / "a_hash")], tmp_path / "l.html")
    assert {r["name"] for r in by_glob["runs"]} == {r["name"] for r in by_list["runs"]} == {"a_full", "a_hash"}
    with pytest.raises(ValueError, match="baseline='nope' is none of the runs"):
        build_report([str(tmp_path / "a_*")], tmp_path / "x.html", baseline="nope")


@pytest.mark.parametrize("method", [{"method": "unified", "compression": 4.0}, {"method": "md", "alpha": 0.3}])
def test_feature_memory_adds_up_to_the_plan_total(full_tables, method):
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.plan import FeatureInfo
    from recsys.embeddings.tables import TableOptimizerConfig

    features = [FeatureInfo(f"C{i}", n, np.arange(n, 0, -1)) for i, n in enumerate([1000, 50, 7, 300], 1)]
    emb = make_embedding(method, features, 16, TableOptimizerConfig())
    rows = feature_memory(emb)
    assert [r["feature"] for r in rows] == ["C1", "C2", "C3", "C4"]
    assert sum(r["total_bytes"] for r in rows) == pytest.approx(emb.memory().total_bytes)
    assert all(r["method"] == method["method"] for r in rows)
    if method["method"] == "unified":
        assert all(r["shared"] for r in rows)


def test_buckets_cover_every_row_once(tiny_dataset, tmp_path, run_writer):
    run_writer(tmp_path / "r", tiny_dataset, noise=1.0)
    run = build_report([str(tmp_path / "r")], tmp_path / "r.html")["runs"][0]
    assert run["frequency"]["buckets"] == list(BUCKETS)
    assert all(rate == 0.0 for rate in run["oov_rate"].values())  # the fixture draws only kept ids
