import json

import pytest

from recsys.core.checkpoint import load_checkpoint
from recsys.data.config import DataConfig
from recsys.models.config import DLRMConfig
from recsys.train.config import EarlyStoppingConfig, TrainerConfig, TrainJobConfig
from recsys.train.loop import train
from recsys.train.selection import SelectionState, best_checkpoint_path


def test_selection_tracks_the_best_auc_and_counts_validations_since():
    s = SelectionState()
    assert s.update(0.70, 10) and s.update(0.72, 20)
    assert not s.update(0.719, 30) and not s.update(0.7205, 40, min_delta=0.001)
    assert (s.best_auc, s.best_step, s.validations_since_best) == (0.72, 20, 2)
    assert s.should_stop(EarlyStoppingConfig(patience=2)) and not s.should_stop(EarlyStoppingConfig(patience=3))
    assert not s.should_stop(EarlyStoppingConfig())


def job(path, **trainer) -> TrainJobConfig:
    return TrainJobConfig(
        data=DataConfig(path=str(path), batch_size=256, eval_batch_size=1024, prefetch=2),
        model=DLRMConfig(8, [16, 8], [16, 1]),
        trainer=TrainerConfig(progress=False, tensorboard=False, log_every_steps=4, **trainer),
    )


def test_best_checkpoint_is_the_best_validation_and_the_final_eval_uses_it(tiny_dataset, tmp_path):
    cfg = job(tiny_dataset, epochs=3, eval_every_steps=4, keep_checkpoints=1)
    result = train(cfg, tmp_path)
    valid = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in valid if r["kind"] == "valid"]
    best = max(valid, key=lambda r: r["auc"])
    payload = load_checkpoint(best_checkpoint_path(tmp_path))
    assert payload["state"]["step"] == best["step"]
    assert result.best_valid_auc == best["auc"]
    assert result.evaluated.startswith(f"best (step {best['step']}")
    # the final evaluation saw the best weights: re-evaluating them offline gives the same AUC
    from recsys.evaluation.offline import EvalJobConfig, evaluate_checkpoint

    out = evaluate_checkpoint(EvalJobConfig(checkpoint=str(best_checkpoint_path(tmp_path))), tmp_path / "eval")
    assert out["metrics"]["auc"] == pytest.approx(result.eval["auc"], abs=1e-9)


def test_early_stopping_ends_the_run_after_patience_validations_without_gain(tiny_dataset, tmp_path):
    cfg = job(tiny_dataset, epochs=20, eval_every_steps=2, early_stopping=EarlyStoppingConfig(patience=2, min_delta=0.5))
    result = train(cfg, tmp_path)  # min_delta 0.5: no validation after the first can count as a gain
    assert result.stopped_early and result.steps == 3 * 2
    assert result.best_valid_auc is not None
