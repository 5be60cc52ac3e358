"""A 2-rank run's checkpoint (a DCP directory, each rank's shards in its own files) is evaluated
and exported in one process by the real entry points, ``recsys-eval`` and ``recsys-export``: the
evaluation equals the run's own sharded one, and the artifact scores the raw rows as the
evaluation did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from recsys.core.checkpoint import resolve_checkpoint
from recsys.serving.artifact import load_model
from recsys.train.config import DistributedConfig, ShardingConfig, TrainerConfig, TrainJobConfig
from recsys.train.distributed import launch
from recsys.train.loop import train
from tests.serving.conftest import REPO, TINY_MODEL, raw_rows, raw_tensors


def entry_point(module: str, *overrides: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, *overrides], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.slow
def test_a_two_rank_checkpoint_evaluates_and_exports_in_one_process(sample_dataset, tmp_path):
    cfg = TrainJobConfig(
        trainer=TrainerConfig(max_steps=3, progress=False, tensorboard=False, threads=1),
        distributed=DistributedConfig(nproc=2),
        sharding=ShardingConfig(types=["row_wise", "table_wise"], rank_memory="1GB"),
    )
    cfg.data.path = str(sample_dataset)
    cfg.data.batch_size = 64
    cfg.data.eval_batch_size = 99  # several batches, split unevenly between the ranks
    cfg.model.embedding_dim, cfg.model.bottom_mlp, cfg.model.top_mlp = TINY_MODEL.values()
    cfg.eval.split = "train"
    result = launch(train, cfg, tmp_path / "run")
    assert resolve_checkpoint(result.run_dir).name == "step_000000003.dcp"

    entry_point("recsys.cli.eval", f"checkpoint={result.run_dir}", "split=train", "html_report=false", f"hydra.run.dir={tmp_path / 'eval'}")
    evaluated = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert evaluated["metrics"]["auc"] == pytest.approx(result.eval["auc"], abs=1e-6)
    assert evaluated["metrics"]["logloss"] == pytest.approx(result.eval["logloss"], abs=1e-6)

    artifact = tmp_path / "artifact"
    entry_point("recsys.cli.export", f"checkpoint={result.run_dir}", f"output={artifact}", "export=false", f"hydra.run.dir={tmp_path / 'export'}")
    scores = load_model(artifact)(*raw_tensors(raw_rows()))  # (rows,)
    predicted = torch.from_numpy(pq.read_table(tmp_path / "eval" / "predictions.parquet")["score"].to_numpy().copy())
    torch.testing.assert_close(scores, predicted, rtol=0, atol=1e-5)
    # the 2-rank run's own predictions: its ranks' slices put back in the split's row order
    kept = torch.from_numpy(pq.read_table(Path(result.run_dir) / "predictions.parquet")["score"].to_numpy().copy())
    torch.testing.assert_close(kept, predicted, rtol=0, atol=1e-6)
