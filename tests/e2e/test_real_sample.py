"""The bundled real Criteo 1TB sample through preprocess → train → eval, as a user runs it."""

import json
from pathlib import Path

import pytest

from recsys.data.config import DataConfig, PreprocessConfig
from recsys.data.ingest import preprocess
from recsys.evaluation.offline import EvalJobConfig, evaluate_checkpoint
from recsys.models.config import DLRMConfig
from recsys.train.config import TrainerConfig, TrainJobConfig
from recsys.train.loop import train
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_real_sample_preprocess_train_eval(tmp_path):
    data = tmp_path / "criteo_sample"
    stats = preprocess(PreprocessConfig(input=str(REPO / "datasets/criteo_1tb_sample_1k.tsv"), output=str(data)), progress=False)
    assert (stats.rows_in, stats.rows_out, stats.bad_rows) == (1000, 1000, 0)
    assert sum(stats.rows_per_split.values()) == 1000

    job = TrainJobConfig(
        data=DataConfig(path=str(data), batch_size=128, eval_batch_size=512, prefetch=2),
        model=DLRMConfig(8, [16, 8], [16, 1]),
        trainer=TrainerConfig(epochs=2, progress=False, tensorboard=False),
    )
    result = train(job, tmp_path / "run")
    assert result.samples == 2 * stats.rows_per_split["train"]
    assert result.eval["rows"] == stats.rows_per_split["test"]
    assert 0.0 < result.eval["mean_prediction"] < 0.5  # 2.1% positives: the model must learn the base rate

    out = evaluate_checkpoint(EvalJobConfig(checkpoint=str(tmp_path / "run"), split="test"), tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["metrics"] == out["metrics"]
    assert report["memory"]["parameters"] == sum(stats.num_embeddings.values()) * 8
