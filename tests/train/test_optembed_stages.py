"""OptEmbed's stages on the tiny dataset: all of them through ``recsys-train``, then one at a
time from an earlier run's artifacts; the compacted model is what the run reports and saves."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from recsys.cli.common import CONF_DIR
from recsys.cli.train import to_job_config, trainer_for
from recsys.data.layout import DatasetMeta
from recsys.embeddings.build import dataset_features
from recsys.embeddings.compiler import plan_bytes
from recsys.embeddings.embedding_config import parse_embedding_config
from recsys.embeddings.specs import TableOptimizer
from recsys.evaluation.offline import EvalJobConfig, evaluate_checkpoint
from recsys.train.loop import train
from recsys.train.optembed import optembed_spec, run_stages

BIN = Path(sys.executable).parent
# tiny everything: 4 steps per epoch, one validation batch, 2 search generations of 4
TINY = [
    "model=tiny",
    "embedding=optembed",
    "data.batch_size=1024",
    "data.eval_batch_size=1024",
    "trainer.val_batches=1",
    "trainer.threads=1",
    "trainer.progress=false",
    "trainer.tensorboard=false",
    "embedding.threshold_init=0.5",  # about a third of the initial rows start pruned
    "embedding.population=4",
    "embedding.parents=2",
    "embedding.iterations=2",
    "embedding.search_batches=1",
]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process stage runs set torch's thread count (trainer.threads); restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def all_stages(tiny_dataset, tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("optembed_all")
    proc = subprocess.run(
        [str(BIN / "recsys-train"), f"data.path={tiny_dataset}", *TINY, "hydra.run.dir=run"],
        cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report: " in proc.stdout
    return cwd / "run"


def job(dataset: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return to_job_config(compose("train", overrides=[f"data.path={dataset}", *TINY, *overrides]))


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_all_stages_report_the_compacted_model(all_stages, tiny_dataset):
    art = all_stages / "optembed"
    for name in ("masks.pt", "masks.json", "dims.json", "search.json", "supernet/eval.json", "retrain/eval.json"):
        assert (art / name).exists(), name
    report = read(all_stages / "eval.json")
    found = report["optembed"]
    assert set(found["dims"].values()) <= {4, 8}
    assert 0 < sum(found["kept_rows"].values()) < sum(found["rows"].values())
    assert found["max_prediction_gap_vs_retrained"] < 1e-6
    # the reported memory is the compact plan's, and smaller than the supernet's
    compact = job(tiny_dataset, "embedding.network=compact", f"embedding.artifacts={art}")
    features = dataset_features(DatasetMeta.load(tiny_dataset), None, with_counts=False)
    expected = plan_bytes(parse_embedding_config(compact.embedding), features, 8, TableOptimizer.rowwise_adagrad)
    assert report["memory"]["total_bytes"] == expected == found["bytes"]["compact"] < found["bytes"]["supernet"]
    assert report["memory"]["parameters"] == sum((found["kept_rows"][f] + 1) * d for f, d in found["dims"].items())
    search = read(art / "search.json")
    assert len(search["history"]) == 2 and search["dims"] == found["dims"]
    log = (all_stages / "train.log").read_text()
    assert "optembed supernet: C1 kept" in log and "optembed search: dims C1=" in log and "optembed compaction" in log
    # the run's checkpoint is the compacted model: recsys-eval scores it the same
    scored = evaluate_checkpoint(EvalJobConfig(checkpoint=str(all_stages), split="test"), all_stages / "rescored")
    assert scored["metrics"]["auc"] == pytest.approx(report["metrics"]["auc"], abs=1e-9)


@pytest.mark.slow
def test_one_stage_at_a_time_from_artifacts_reproduces_the_full_run(all_stages, tiny_dataset, tmp_path):
    first = all_stages / "optembed"
    searched = run_stages(job(tiny_dataset, "embedding.stage=search", f"embedding.artifacts={first}"), tmp_path / "search")
    assert read(tmp_path / "search/optembed/dims.json") == read(first / "dims.json")  # seeded search
    assert searched.eval["auc"] == read(first / "search.json")["valid_auc"]
    assert not (tmp_path / "search/eval.json").exists()
    second = tmp_path / "search" / "optembed"
    run_stages(job(tiny_dataset, "embedding.stage=retrain", f"embedding.artifacts={second}"), tmp_path / "retrain")
    again, before = read(tmp_path / "retrain/eval.json"), read(all_stages / "eval.json")
    assert again["optembed"]["dims"] == before["optembed"]["dims"]
    assert again["optembed"]["kept_rows"] == before["optembed"]["kept_rows"]
    assert again["memory"] == before["memory"]


def test_supernet_stage_alone_writes_masks_and_stops(tiny_dataset, tmp_path):
    result = run_stages(job(tiny_dataset, "embedding.stage=supernet", "trainer.max_steps=2"), tmp_path)
    summary = read(tmp_path / "optembed/masks.json")
    assert set(summary) == {f"C{i}" for i in range(1, 27)}
    assert all(0 <= s["kept"] <= s["rows"] == 51 for s in summary.values())
    assert not (tmp_path / "optembed/dims.json").exists() and not (tmp_path / "optembed/retrain").exists()
    assert result.report.endswith("supernet/eval.md")


def test_budgets_and_other_methods_are_refused(tiny_dataset):
    with pytest.raises(ValueError, match="embedding.budget needs a method with a size knob"):
        job(tiny_dataset, "embedding.budget=0.5")
    with pytest.raises(ValueError, match=r"embedding.overrides.C3.method=full: embedding=optembed runs its stages on every feature"):
        optembed_spec(job(tiny_dataset, "+embedding.overrides.C3.method=full"))


def test_an_optembed_override_under_another_method_runs_the_stages_and_is_refused(tiny_dataset, tmp_path):
    # it used to train a bare supernet: the CLI dispatched on the default method only
    def full_job(*overrides: str):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return to_job_config(compose("train", overrides=[f"data.path={tiny_dataset}", "model=tiny", "embedding=full", *overrides]))

    mixed = full_job("+embedding.overrides.C3.method=optembed")
    trainer = trainer_for(mixed)
    assert trainer is run_stages
    with pytest.raises(ValueError, match=r"embedding.overrides.C3.method=optembed: .* under embedding.method=full"):
        trainer(mixed, tmp_path)
    assert trainer_for(full_job()) is train


@pytest.mark.parametrize("threshold_lr", [None, 1e-4])
def test_the_thresholds_train_at_their_own_rate(threshold_lr):
    """embedding.threshold_lr (the paper's lr^t) puts the per-field thresholds in a parameter
    group of their own; without it they train at trainer.dense_lr with the dense layers."""
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.plan import FeatureInfo
    from recsys.embeddings.specs import TableOptimizerConfig
    from recsys.models.config import DLRMConfig
    from recsys.models.dlrm import DLRM
    from recsys.train.loop import dense_parameters, make_dense_optimizer

    features = [FeatureInfo(f"C{i}", 50) for i in range(1, 4)]
    spec = parse_embedding_config({"method": "optembed", "threshold_lr": threshold_lr})
    model = DLRM(make_embedding(spec, features, 8, TableOptimizerConfig()), num_dense=13, config=DLRMConfig(8, [16, 8], [16, 1]))
    optimizer = make_dense_optimizer(model, "adagrad", 0.01)
    thresholds = {id(m.threshold) for m in model.modules() if hasattr(m, "threshold")}
    groups = [(g["lr"], {id(p) for p in g["params"]}) for g in optimizer.param_groups]
    everything = {id(p) for p in dense_parameters(model)}
    if threshold_lr is None:
        assert groups == [(0.01, everything)]
    else:
        assert groups == [(0.01, everything - thresholds), (threshold_lr, thresholds)] and len(thresholds) == 3


def test_a_threshold_rate_that_is_not_positive_names_its_key():
    with pytest.raises(ValueError, match="embedding.threshold_lr"):
        parse_embedding_config({"method": "optembed", "threshold_lr": 0.0})
