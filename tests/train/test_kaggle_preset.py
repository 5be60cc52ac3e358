"""The Kaggle preset's fused table optimizer: rows seen once barely move, trained rows move at full rate.

With a mean-reduced loss over a batch of 2048, one occurrence of an id gives its row a
per-element gradient of about (p - y) / 2048 times its partners' weights (estimated 1e-5 to 1e-4).
FBGEMM's row-wise Adagrad divides by sqrt(accumulated mean square) + eps, so with a tiny eps
that one occurrence moves the row by the full learning rate in the direction of one sample's
noise (benchmarks/sweep_training.py measured the cost). The preset's eps makes such a row move
like SGD with rate lr/eps, in proportion to its evidence.
"""

import pytest
import torch
from hydra import compose, initialize_config_dir

from recsys.cli.common import CONF_DIR
from recsys.cli.train import to_job_config
from recsys.embeddings.tables import PhysicalTable, TableBatchedLookup


def kaggle_table_optimizer():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=kaggle", "data.path=x"])
    return to_job_config(cfg).trainer.table_optimizer


def first_update(optimizer, gradient: float) -> float:
    """How far one fused update moves each element of a fresh row whose gradient is ``gradient`` per element."""
    lookup = TableBatchedLookup([PhysicalTable("t", 1, 4)], optimizer)
    before = lookup.table_weights()["t"].clone()
    out = lookup(torch.tensor([0]), torch.tensor([0, 1]))  # (1, 4): one bag holding row 0
    (out.sum() * gradient).backward()
    return float((before - lookup.table_weights()["t"]).abs().mean())


def test_kaggle_preset_damps_a_row_seen_once_but_not_a_trained_row():
    optimizer = kaggle_table_optimizer()
    seen_once = first_update(optimizer, 3e-5)  # one sample's gradient at batch 2048
    hot = first_update(optimizer, 1.0)  # a row whose accumulated gradient is far above eps
    assert seen_once < optimizer.lr / 100
    assert hot == pytest.approx(optimizer.lr / (1.0 + optimizer.eps), rel=1e-4)
    assert hot > optimizer.lr * 0.9


def test_fbgemm_default_eps_moves_a_row_seen_once_by_the_whole_rate():
    """The behaviour the preset corrects: with eps 1e-8 the first step is lr whatever the evidence."""
    optimizer = kaggle_table_optimizer()
    optimizer.eps = 1e-8
    assert first_update(optimizer, 3e-5) == pytest.approx(optimizer.lr, rel=1e-3)
