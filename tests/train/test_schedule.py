import logging

import pytest
import torch

from recsys.train.config import LRScheduleConfig
from recsys.train.schedule import LRScheduler, lr_factor, warn_if_few_steps


def test_mlperf_schedule_warms_up_linearly_then_decays_quadratically_to_the_floor():
    cfg = LRScheduleConfig(warmup_steps=4, decay_start=0.5, decay_power=2.0, final_factor=0.0)
    factors = [lr_factor(step, 20, cfg) for step in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4:10] == [1.0] * 6
    # decay over steps 10..19: ((20 - step) / 10) ** 2
    assert factors[10:] == pytest.approx([((20 - s) / 10) ** 2 for s in range(10, 20)])
    assert factors[-1] == pytest.approx(0.01)


def test_constant_schedule_and_floor():
    assert {lr_factor(s, 10, LRScheduleConfig()) for s in range(10)} == {1.0}
    cfg = LRScheduleConfig(decay_start=0.0, decay_power=1.0, final_factor=0.5)
    assert lr_factor(0, 10, cfg) == 1.0 and lr_factor(9, 10, cfg) == pytest.approx(0.55)


def test_bad_schedule_names_the_key():
    with pytest.raises(ValueError, match="trainer.lr_schedule"):
        lr_factor(0, 10, LRScheduleConfig(decay_start=1.5))


def test_scheduler_sets_both_optimizers_from_their_base_rates(full_tables):
    tables = full_tables({"C1": 10}, 4)
    dense = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(2))], lr=0.01)
    sched = LRScheduler(LRScheduleConfig(warmup_steps=2), 10, dense, tables.lookup.tbe)
    base_table = tables.lookup.tbe.get_learning_rate()
    assert sched.set_step(0) == 0.5
    assert dense.param_groups[0]["lr"] == pytest.approx(0.005)
    assert tables.lookup.tbe.get_learning_rate() == pytest.approx(base_table * 0.5)
    sched.set_step(5)
    assert dense.param_groups[0]["lr"] == pytest.approx(0.01)
    assert tables.lookup.tbe.get_learning_rate() == pytest.approx(base_table)


def test_short_epochs_warn_with_what_to_change(caplog):
    with caplog.at_level(logging.WARNING, logger="recsys.train.schedule"):
        warn_if_few_steps(train_rows=100_000, batch_size=2048, epochs=1)
    (record,) = caplog.records
    assert "only 49 steps" in record.message
    assert "data.batch_size=500" in record.message and "trainer.epochs=5" in record.message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recsys.train.schedule"):
        warn_if_few_steps(train_rows=3_600_000, batch_size=2048, epochs=1)
    assert not caplog.records
