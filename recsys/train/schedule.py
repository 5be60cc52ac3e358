"""Learning-rate schedule of both optimizers, and the check that a run has steps enough to use it.

MLPerf's DLRM (Mattson et al., "MLPerf Training Benchmark", MLSys 2020; the reference's
``LRPolicyScheduler`` in facebookresearch/dlrm) trains with a linear warm-up followed by a
polynomial (power 2) decay to zero. The warm-up keeps the first, large Adagrad/SGD steps of
freshly initialised MLPs from overshooting; the decay averages out the noise of the last steps.
One factor scales both the fused table optimizer (FBGEMM's ``set_learning_rate``) and the dense
torch optimizer, so their base rates keep their ratio.
"""

from __future__ import annotations

import logging

import torch

from recsys.train.config import LRScheduleConfig

log = logging.getLogger(__name__)

MIN_STEPS_PER_EPOCH = 200


def lr_factor(step: int, total_steps: int, cfg: LRScheduleConfig) -> float:
    """The multiplier of the base learning rates for the update at ``step`` (0-based) of a run
    of ``total_steps`` updates."""
    if cfg.warmup_steps < 0 or not 0.0 <= cfg.decay_start <= 1.0 or cfg.decay_power <= 0:
        raise ValueError(
            f"trainer.lr_schedule: warmup_steps >= 0, 0 <= decay_start <= 1 and decay_power > 0 "
            f"required, got {cfg}"
        )
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    start = max(int(cfg.decay_start * total_steps), cfg.warmup_steps)
    if step < start or start >= total_steps:
        return 1.0
    remaining = (total_steps - step) / (total_steps - start)  # 1 at the decay's first step, -> 0 at the end
    return cfg.final_factor + (1.0 - cfg.final_factor) * remaining**cfg.decay_power


class LRScheduler:
    """Sets both optimizers' rates for each step from the base rates and :func:`lr_factor`.

    The rate is a function of the step alone, so a resumed run needs no scheduler state.
    """

    def __init__(self, cfg: LRScheduleConfig, total_steps: int, dense: torch.optim.Optimizer, tables) -> None:
        self.cfg = cfg
        self.total_steps = total_steps
        self.dense = dense
        self.tables = tables  # the table lookup, or a sharded model's fused optimizers: get/set_learning_rate
        self.dense_base = [group["lr"] for group in dense.param_groups]
        self.constant = cfg.warmup_steps == 0 and cfg.decay_start >= 1.0
        self.table_base = tables.get_learning_rate()

    def set_step(self, step: int) -> float:
        """Set the rates of the update at ``step``; returns the factor applied."""
        if self.constant:
            return 1.0
        factor = lr_factor(step, self.total_steps, self.cfg)
        for group, base in zip(self.dense.param_groups, self.dense_base):
            group["lr"] = base * factor
        self.tables.set_learning_rate(self.table_base * factor)
        return factor


def warn_if_few_steps(train_rows: int, batch_size: int, epochs: int) -> None:
    """Warn, with what to change, when an epoch is too short to train in (a small dataset at a
    large batch): a one-epoch run of a few dozen steps stops long before the model has learned."""
    steps = -(-train_rows // batch_size)
    if steps >= MIN_STEPS_PER_EPOCH:
        return
    smaller_batch = max(1, train_rows // MIN_STEPS_PER_EPOCH)
    more_epochs = -(-MIN_STEPS_PER_EPOCH // max(steps, 1))
    log.warning(
        "an epoch is only %d steps (%d train rows at data.batch_size=%d; a run needs about %d or more "
        "to train well, and trainer.epochs=%d gives %d): use a smaller batch (data.batch_size=%d) or "
        "more epochs (trainer.epochs=%d)",
        steps, train_rows, batch_size, MIN_STEPS_PER_EPOCH, epochs, steps * epochs, smaller_batch,
        max(epochs, more_epochs),
    )
