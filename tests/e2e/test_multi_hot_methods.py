"""Every embedding method trains on multi-hot data: synthetic bags of ids through the shards,
the loader's KJT (real lengths) and ``recsys.train.loop.train`` (OptEmbed through its stages,
which train with the same loop)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from recsys.cli.common import CONF_DIR
from recsys.cli.train import to_job_config
from recsys.data.config import BagSize, SynthConfig
from recsys.data.loader import ParquetBatches
from recsys.data.synth import generate
from recsys.train.loop import train
from recsys.train.optembed import run_stages

BAGS = {"C1": BagSize(1, 4), "C3": BagSize(2, 6)}
TINY = ["model=tiny", "data.batch_size=512", "data.eval_batch_size=2048", "trainer.val_batches=1",
        "trainer.threads=1", "trainer.progress=false", "trainer.tensorboard=false", "trainer.epochs=2"]
METHODS = {
    "full": [],
    "hash": ["embedding.compression=4"],
    "qr": ["embedding.collisions=4"],
    "md": ["embedding.num_blocks=2"],
    "unified": ["embedding.compression=4"],
    "optembed": ["embedding.population=4", "embedding.parents=2", "embedding.iterations=1",
                 "embedding.search_batches=1", "embedding.supernet_epochs=1", "embedding.retrain_epochs=1"],
}


@pytest.fixture(scope="module")
def multi_hot_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_hot") / "ds"
    generate(SynthConfig(output=str(root), rows=12_000, valid_fraction=0.15, test_fraction=0.15,
                         cardinality_scale=2e-4, multi_hot=BAGS, seed=3), progress=False)
    return root


@pytest.mark.slow
def test_every_method_trains_on_multi_hot_bags(multi_hot_dataset, tmp_path):
    batch = next(iter(ParquetBatches(multi_hot_dataset, "train", 512)))
    lengths = batch.sparse["C3"].lengths().numpy()
    assert lengths.min() >= 2 and lengths.max() <= 6 and len(np.unique(lengths)) > 1
    assert (batch.sparse["C2"].lengths().numpy() == 1).all()
    aucs = {}
    for method, options in METHODS.items():
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            cfg = to_job_config(compose("train", [f"data.path={multi_hot_dataset}", f"embedding={method}", *TINY, *options]))
        run = run_stages if method == "optembed" else train
        result = run(cfg, tmp_path / method)
        aucs[method] = result.eval["auc"]
        assert math.isfinite(result.eval["logloss"]), method
    # each method learns something from data whose signal sits on frequent ids and bags
    assert all(auc > 0.55 for auc in aucs.values()), aucs
