import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from recsys.evaluation.offline import EvalJobConfig, evaluate_checkpoint
from recsys.models.config import DLRMConfig
from recsys.core.checkpoint import list_checkpoints, load_checkpoint
from recsys.data.config import DataConfig
from recsys.train.config import TrainerConfig, TrainJobConfig
from recsys.train.loop import train


def job(path, **trainer) -> TrainJobConfig:
    return TrainJobConfig(
        data=DataConfig(path=str(path), batch_size=256, eval_batch_size=1024, prefetch=2),
        model=DLRMConfig(8, [16, 8], [16, 1]),
        trainer=TrainerConfig(progress=False, tensorboard=False, log_every_steps=4, **trainer),
    )


def test_training_learns_the_planted_signal_and_writes_its_records(tiny_dataset, tmp_path):
    result = train(job(tiny_dataset, epochs=2), tmp_path)
    assert result.eval["auc"] > 0.75  # the fixture's label depends on C1 and I1
    assert result.steps == 2 * 16 and result.samples == 2 * 4096
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert kinds == {"train", "valid", "test"}
    assert all(r["samples_per_s"] > 0 for r in records if r["kind"] == "train")
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["metrics"]["auc"] == result.eval["auc"]
    assert report["memory"]["parameters"] == 26 * 51 * 8
    assert "| AUC |" in (tmp_path / "eval.md").read_text()


def test_resume_continues_exactly_where_training_stopped(tiny_dataset, tmp_path):
    straight = train(job(tiny_dataset, epochs=2, checkpoint_every_steps=0), tmp_path / "straight")
    train(job(tiny_dataset, epochs=2, max_steps=21), tmp_path / "first")  # stops mid-epoch 2
    stopped = load_checkpoint(tmp_path / "first")
    position = {k: stopped["state"][k] for k in ("step", "epoch", "batch_in_epoch", "samples")}
    assert position == {"step": 21, "epoch": 1, "batch_in_epoch": 5, "samples": 21 * 256}
    resumed = train(job(tiny_dataset, epochs=2, resume_from=str(tmp_path / "first")), tmp_path / "resumed")
    assert resumed.steps == straight.steps
    a = load_checkpoint(tmp_path / "straight")["model"]
    b = load_checkpoint(tmp_path / "resumed")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert resumed.eval["auc"] == pytest.approx(straight.eval["auc"], abs=1e-6)


def test_periodic_checkpoints_keep_the_newest(tiny_dataset, tmp_path):
    train(job(tiny_dataset, epochs=1, checkpoint_every_steps=4, keep_checkpoints=2), tmp_path)
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step_000000012.pt", "step_000000016.pt"]


def test_a_throughput_run_can_skip_the_checkpoint_at_the_end(tiny_dataset, tmp_path):
    result = train(job(tiny_dataset, epochs=1, keep_best=False, checkpoint_at_end=False), tmp_path)
    assert not (tmp_path / "checkpoints").exists() or not list_checkpoints(tmp_path / "checkpoints")
    assert result.steps == 16 and result.evaluated == "last (step 16)"  # the model in memory is evaluated
    assert result.eval["auc"] > 0.6


def test_offline_evaluation_reproduces_the_training_report(tiny_dataset, tmp_path):
    result = train(job(tiny_dataset, epochs=1), tmp_path / "run")
    out = evaluate_checkpoint(EvalJobConfig(checkpoint=str(tmp_path / "run")), tmp_path / "eval")
    assert out["metrics"]["auc"] == pytest.approx(result.eval["auc"], abs=1e-9)
    assert out["metrics"]["rows"] == 1024
    # the training run kept the same per-row predictions itself (split file order)
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["predictions"] == "predictions.parquet"
    kept = pq.read_table(tmp_path / "run" / "predictions.parquet").to_pandas()
    rescored = pq.read_table(tmp_path / "eval" / "predictions.parquet").to_pandas()
    assert len(kept) == 1024 and (kept["label"] == rescored["label"]).all()
    np.testing.assert_allclose(kept["score"], rescored["score"], rtol=0, atol=1e-6)


def test_a_run_told_not_to_keeps_no_predictions(tiny_dataset, tmp_path):
    cfg = job(tiny_dataset, max_steps=2)
    cfg.eval.save_predictions = False
    train(cfg, tmp_path)
    assert (tmp_path / "eval.json").exists() and not (tmp_path / "predictions.parquet").exists()
    assert "predictions" not in json.loads((tmp_path / "eval.json").read_text())


@pytest.mark.parametrize(("dense_optimizer", "dense_lr"), [("sgd", 0.5), ("adam", 0.003)])
def test_other_dense_optimizers_train(tiny_dataset, tmp_path, dense_optimizer, dense_lr):
    cfg = job(tiny_dataset, epochs=2, dense_optimizer=dense_optimizer, dense_lr=dense_lr)
    assert train(cfg, tmp_path).eval["auc"] > 0.7


def test_fused_sgd_tables_train(tiny_dataset, tmp_path):
    # SGD moves the tiny initial rows slowly (no per-row step scaling): a weaker bar than Adagrad's.
    cfg = job(tiny_dataset, epochs=2)
    cfg.trainer.table_optimizer.kind = "sgd"
    cfg.trainer.table_optimizer.lr = 2.0
    result = train(cfg, tmp_path)
    assert result.memory["optimizer_bytes"] == 0
    assert result.eval["auc"] > 0.56


def test_a_dataset_without_validation_rows_trains_and_says_so(tmp_path, caplog, dataset_writer):
    dataset_writer(tmp_path / "data", {"train": 1024, "test": 512})
    with caplog.at_level("WARNING"):
        result = train(job(tmp_path / "data", epochs=1), tmp_path / "run")
    assert result.eval["rows"] == 512
    assert "no validation rows" in caplog.text


def test_a_factorization_machine_trains_through_the_same_loop(tiny_dataset, tmp_path):
    cfg = job(tiny_dataset, epochs=2, dense_lr=0.05)
    cfg.model.arch = "fm"
    result = train(cfg, tmp_path)
    assert result.eval["auc"] > 0.7  # chance is 0.5; the DLRM's bar above is 0.75
    assert load_checkpoint(tmp_path)["recipe"]["model"]["arch"] == "fm"


def test_mixed_precision_dense_layers_train_and_evaluate_offline_alike(tiny_dataset, tmp_path):
    cfg = job(tiny_dataset, epochs=2)
    cfg.model.dense_precision = "bf16"
    result = train(cfg, tmp_path / "run")
    assert result.eval["auc"] > 0.75
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["train"]["dense_precision"] == "bf16"
    out = evaluate_checkpoint(EvalJobConfig(checkpoint=str(tmp_path / "run"), html_report=False), tmp_path / "eval")
    assert out["metrics"]["auc"] == pytest.approx(result.eval["auc"], abs=1e-9)  # the recipe keeps bf16
