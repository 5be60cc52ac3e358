"""The training loop: fused table optimizer in the backward, torch optimizer for dense layers,
periodic validation, resumable checkpoints, JSONL (and TensorBoard) metrics, final evaluation.

``train(cfg, run_dir)`` is a plain function: the Hydra entry point and the tests call it alike.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from recsys.allocator import describe_allocator
from recsys.data.layout import DatasetMeta
from recsys.data.loader import Batch, ParquetBatches
from recsys.core.metrics import CTRMetrics
from recsys.evaluation.breakdown import feature_memory
from recsys.evaluation.evaluate import predict
from recsys.evaluation.report import load_bayes, write_report
from recsys.evaluation.runs import write_predictions
from recsys.models.build import build_model
from recsys.models.dlrm import DLRM
from recsys.models.config import DensePrecision, ModelRecipe
from recsys.train.checkpointing import Checkpointer
from recsys.train.config import DenseOptimizer, TrainJobConfig
from recsys.train.schedule import LRScheduler, warn_if_few_steps
from recsys.train.selection import SelectionState, adopt_best, link_best
from recsys.train.distributed import (
    ShardedTableRates,
    World,
    agreed_run_dir,
    predict_sharded,
    join_world,
    leave_world,
    local_ranks,
    shard_model,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoopState:
    """Where the loop is; saved in checkpoints so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples: int = 0
    selection: SelectionState = dataclasses.field(default_factory=SelectionState)

    def __post_init__(self) -> None:
        if isinstance(self.selection, dict):  # as a checkpoint stores it
            self.selection = SelectionState(**self.selection)


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    steps: int
    samples: int
    train_seconds: float
    train_samples_per_s: float
    final_loss: float
    eval: dict
    evaluated: str  # which model the final evaluation saw: "best (step N)" or "last (step N)"
    best_valid_auc: float | None
    stopped_early: bool
    memory: dict
    embedding: dict  # the default method's spec as trained (a budget's chosen size included)
    report: str


class MetricsLog:
    """Append-only JSONL of training records, mirrored to TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, tensorboard: bool, enabled: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._file = self.path.open("a") if enabled else None
        self._tb = None
        if tensorboard and enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard not installed; metrics go to %s only", self.path)
            else:
                self._tb = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, kind: str, step: int, **values: float) -> None:
        if self._file is None:  # a rank other than 0
            return
        self._file.write(json.dumps({"kind": kind, "step": step, "time": time.time(), **values}) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()


def dense_parameters(model: DLRM) -> list[torch.nn.Parameter]:
    """Parameters the torch optimizer updates: everything but the fused tables (MLPs, and
    combiner weights such as mixed-dimension projections or OptEmbed thresholds)."""
    table_params = {id(p) for p in model.embedding.lookup.parameters()}
    return [p for p in model.parameters() if id(p) not in table_params]


def dense_param_groups(model: DLRM) -> list[dict]:
    """The torch optimizer's parameter groups: the dense parameters at the optimizer's rate, and
    apart, with their own ``lr``, the direct parameters of each module that sets ``parameter_lr``
    (OptEmbed's thresholds at the paper's lr^t)."""
    params = dense_parameters(model)
    dense = {id(p) for p in params}
    own: dict[float, list[torch.nn.Parameter]] = {}
    for module in model.modules():
        rate = getattr(module, "parameter_lr", None)
        if rate is not None:
            own.setdefault(float(rate), []).extend(p for p in module.parameters(recurse=False) if id(p) in dense)
    apart = {id(p) for group in own.values() for p in group}
    groups = [{"params": [p for p in params if id(p) not in apart]}]
    groups += [{"params": group, "lr": rate} for rate, group in own.items()]
    return [group for group in groups if group["params"]]


# where torch has a fused kernel of each dense optimizer (its Adagrad has none for CUDA)
FUSED_DEVICES = {DenseOptimizer.adagrad: ("cpu",), DenseOptimizer.sgd: ("cpu", "cuda"), DenseOptimizer.adam: ("cpu", "cuda")}


def make_dense_optimizer(model: DLRM, kind: DenseOptimizer, lr: float) -> torch.optim.Optimizer:
    groups = dense_param_groups(model)
    kind = DenseOptimizer(kind)
    # torch's fused kernels update every parameter in one call, not a handful of ops per
    # parameter: mixed-dimension plans add a projection per feature
    # where there is none (Adagrad on CUDA), None lets torch take its multi-tensor (foreach) form:
    # an explicit False would also turn that off, one update per parameter (seen on an H200:
    # 160 kernel launches a step for mixed dimensions)
    fused = True if all(p.device.type in FUSED_DEVICES[kind] for group in groups for p in group["params"]) else None
    if kind is DenseOptimizer.adagrad:
        return torch.optim.Adagrad(groups, lr=lr, fused=fused)
    if kind is DenseOptimizer.sgd:
        return torch.optim.SGD(groups, lr=lr, fused=fused)
    return torch.optim.Adam(groups, lr=lr, fused=fused)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str, world: World | None) -> torch.device:
    """The run's device; ``cuda`` without a GPU is an error naming the key."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name}: no CUDA device is available here (use device=cpu)")
        if device.index is None:
            device = torch.device("cuda", world.local_rank if world else 0)
        torch.cuda.set_device(device)
    return device


def _batches(cfg: TrainJobConfig, split: str, train: bool, limit: int | None = None, world: World | None = None,
             global_sparse: bool = False) -> ParquetBatches:
    return ParquetBatches(
        cfg.data.path,
        split,
        cfg.data.batch_size if train else cfg.data.eval_batch_size,
        shuffle=train and cfg.data.shuffle,
        seed=cfg.trainer.seed,
        prefetch=cfg.data.prefetch,
        shuffle_buffer_groups=cfg.data.shuffle_buffer_groups,
        limit_batches=limit,
        part=(world.rank, world.size) if world else (0, 1),
        pin_memory=cfg.device.startswith("cuda"),
        global_sparse=global_sparse,
    )


def train(cfg: TrainJobConfig, run_dir: str | Path) -> TrainResult:
    """Train a DLRM on ``cfg.data.path``, evaluate it on ``cfg.eval.split``, write the report."""
    world = join_world(cfg)
    try:
        return _train(cfg, Path(run_dir), world)
    finally:
        leave_world()


def _train(cfg: TrainJobConfig, run_dir: Path, world: World | None) -> TrainResult:
    if world:
        run_dir = agreed_run_dir(run_dir, world)
    leader = world is None or world.leader
    run_dir.mkdir(parents=True, exist_ok=True)
    tcfg = cfg.trainer
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    elif world is not None:  # the machine's cores shared among its ranks, not each rank taking all
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_ranks(world)))
    seed_everything(tcfg.seed)
    device = resolve_device(cfg.device, world)
    log.info(describe_allocator())
    log.info("torch threads: %d, device: %s", torch.get_num_threads(), device)

    meta = DatasetMeta.load(cfg.data.path)
    validates = meta.rows.get("valid", 0) > 0
    if not validates:
        log.warning("the dataset has no validation rows; training without validation")
    train_batches = _batches(cfg, "train", train=True, world=world)
    if not tcfg.resume_from:  # the first block is read while the model is built
        train_batches.read_ahead(0)
    model = build_model(_tables_in_run(cfg.recipe(), run_dir), meta, device, shardable=world is not None)
    if model.embedding.prefetches_global_batch:  # a sharded disk tier: batches keep the global batch's ids
        train_batches.close()
        train_batches = _batches(cfg, "train", train=True, world=world, global_sparse=True)
    dense_precision = "bf16" if getattr(model, "bf16", False) else "fp32"  # what model.dense_precision resolved to
    log.info("dense layers: %s (model.dense_precision=%s)", dense_precision, DensePrecision(cfg.model.dense_precision).value)
    net = shard_model(model, cfg, world, device, run_dir) if world else model  # what a step calls
    dense_opt = make_dense_optimizer(model, tcfg.dense_optimizer, tcfg.dense_lr)
    memory = model.embedding.memory().summary()
    embedding_spec = dataclasses.asdict(model.embedding.plan.default_spec)
    for line in model.embedding.plan.describe():
        log.info("embedding %s", line)
    log.info("embedding memory: %s", memory)
    tiers = model.embedding.tiers()  # (a sharded run's ranks all count: every rank asks)
    if tiers is not None:
        memory["placement"] = tiers
    state = LoopState()
    checkpointer = Checkpointer(cfg, run_dir, model, net if world else None, dense_opt, world)
    if tcfg.resume_from:
        resumed, saved_state = checkpointer.restore(tcfg.resume_from)
        state = LoopState(**saved_state)
        if leader:
            state.selection = adopt_best(resumed, run_dir, state.selection)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", tcfg.resume_from, state.step, state.epoch, state.batch_in_epoch)

    metrics_log = MetricsLog(run_dir, tcfg.tensorboard, enabled=leader)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    total_steps = len(train_batches) * tcfg.epochs
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)
    # each epoch's first block is read while the epoch before ends; none past the last step's
    train_batches.set_last_epoch(max(total_steps - 1, 0) // max(len(train_batches), 1))
    warn_if_few_steps(meta.rows["train"], cfg.data.batch_size, tcfg.epochs)
    scheduler = LRScheduler(tcfg.lr_schedule, total_steps, dense_opt, ShardedTableRates(net) if world else model.embedding.lookup)
    stopped_early = False
    train_seconds, loss_value = 0.0, float("nan")
    samples_at_start = state.samples
    running = []
    bar = tqdm(
        total=total_steps,
        initial=state.step,
        disable=not (tcfg.progress and leader),
        unit="step",
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,  # a log file gets a line every 30 s, not a flood
    )

    def checkpoint() -> Path | None:
        return checkpointer.save(dataclasses.asdict(state))

    def validate() -> bool:
        """Validate; keep the best checkpoint; True when early stopping says stop."""
        auc = _validate(cfg, net, metrics_log, state.step, world, device)
        if state.selection.update(auc, state.step, tcfg.early_stopping.min_delta) and tcfg.keep_best:
            path = checkpoint()
            if path is not None:  # rank 0 writes checkpoints
                link_best(path, run_dir)
        if state.selection.should_stop(tcfg.early_stopping):
            log.info("early stopping at step %d: %d validations without a better AUC than %.5f (step %d)",
                     state.step, state.selection.validations_since_best, state.selection.best_auc,
                     state.selection.best_step)
            return True
        return False

    model.train()
    try:
        while state.epoch < tcfg.epochs and state.step < total_steps:
            train_batches.set_epoch(state.epoch)
            tick = time.perf_counter()
            for batch, upcoming in _with_next(train_batches.iter_from(state.batch_in_epoch)):
                if upcoming is not None:  # disk-tier tables start reading its cold rows, overlapping this step
                    model.embedding.prefetch(upcoming.sparse if upcoming.global_sparse is None else upcoming.global_sparse)
                lr_factor = scheduler.set_step(state.step)
                logits = net(batch.dense.to(device, non_blocking=True), batch.sparse.to(device, non_blocking=True))
                loss = loss_fn(logits, batch.labels.to(device, non_blocking=True))
                dense_opt.zero_grad(set_to_none=True)
                (loss + model.embedding.regularization()).backward()  # table rows update inside (fused optimizer)
                dense_opt.step()
                state.step += 1
                state.batch_in_epoch += 1
                state.samples += batch.size * (world.size if world else 1)  # global samples
                running.append(loss.detach())
                if state.step % tcfg.log_every_steps == 0 or state.step == total_steps:
                    loss_value = _mean_over_ranks(torch.stack(running).mean(), world)
                    running.clear()
                    elapsed = train_seconds + time.perf_counter() - tick
                    rate = (state.samples - samples_at_start) / max(elapsed, 1e-9)
                    metrics_log.write("train", state.step, loss=loss_value, samples_per_s=rate, epoch=state.epoch,
                                      lr_factor=lr_factor)
                    bar.set_postfix(loss=f"{loss_value:.4f}", samples_per_s=f"{rate:,.0f}")
                bar.update(1)
                if validates and tcfg.eval_every_steps and state.step % tcfg.eval_every_steps == 0:
                    train_seconds += time.perf_counter() - tick
                    stopped_early = validate()
                    tick = time.perf_counter()
                if tcfg.checkpoint_every_steps and state.step % tcfg.checkpoint_every_steps == 0:
                    train_seconds += time.perf_counter() - tick
                    checkpoint()
                    tick = time.perf_counter()
                if state.step >= total_steps or stopped_early:
                    break
            train_seconds += time.perf_counter() - tick
            if state.step < total_steps or state.batch_in_epoch >= len(train_batches):
                state.epoch += 1
                state.batch_in_epoch = 0
            if validates and not tcfg.eval_every_steps:
                stopped_early = validate()
            if stopped_early:
                break
        bar.close()
        if tcfg.checkpoint_at_end:
            checkpoint()
        evaluated = checkpointer.load_best(state.step, state.selection.best_auc)
        log.info("final evaluation on %s: the %s model", cfg.eval.split, evaluated)
        probs, labels = _predict(net, _batches(cfg, cfg.eval.split, train=False, limit=cfg.eval.max_batches, world=world), device, world)
        result_metrics = CTRMetrics.compute(probs, labels)
        metrics_log.write("test", state.step, **result_metrics.to_dict())
    finally:
        train_batches.close()
        metrics_log.close()

    rate = (state.samples - samples_at_start) / max(train_seconds, 1e-9)
    tiers = model.embedding.tiers()
    if tiers is not None:
        memory["placement"] = tiers
        if tiers["hit_rate"] is not None:
            log.info("placement: fast-tier hit rate %.4f", tiers["hit_rate"])
    bayes = load_bayes(cfg.data.path, cfg.eval.split)
    md_path = run_dir / "report.md"
    if leader:
        extra = {"embedding": embedding_spec, "feature_memory": feature_memory(model.embedding),
                 "train": {"steps": state.step, "samples": state.samples, "samples_per_s": rate,
                           "dense_precision": dense_precision}}
        if cfg.eval.save_predictions:
            extra["predictions"] = write_predictions(run_dir, probs, labels)
        _, md_path = write_report(
            run_dir,
            result_metrics,
            split=cfg.eval.split,
            dataset=cfg.data.path,
            bayes=bayes,
            memory=memory,
            extra=extra,
        )
    log.info(
        "%s: AUC %.5f logloss %.5f NE %.4f%s",
        cfg.eval.split,
        result_metrics.auc,
        result_metrics.logloss,
        result_metrics.normalized_entropy,
        f" (Bayes-optimal AUC {bayes['bayes_auc']:.5f})" if bayes else "",
    )
    log.info("report: %s", md_path)
    return TrainResult(
        run_dir=str(run_dir),
        steps=state.step,
        samples=state.samples,
        train_seconds=train_seconds,
        train_samples_per_s=rate,
        final_loss=loss_value,
        eval=result_metrics.to_dict(),
        evaluated=evaluated,
        best_valid_auc=state.selection.best_auc,
        stopped_early=stopped_early,
        memory=memory,
        embedding=embedding_spec,
        report=str(md_path),
    )


def _mean_over_ranks(loss: torch.Tensor, world) -> float:
    """The global batch's loss: each rank's (its equal slice's) averaged over the ranks."""
    if world is None:
        return float(loss)
    total = loss.detach().clone()
    dist.all_reduce(total)  # a sum (gloo has no average)
    return float(total) / world.size


def _with_next(batches: Iterator[Batch]) -> Iterator[tuple[Batch, Batch | None]]:
    """Each batch with the one after it (None after the last), so a step can start what the next
    one needs (the loader's own background thread has it ready already)."""
    current = next(batches, None)
    while current is not None:
        upcoming = next(batches, None)
        yield current, upcoming
        current = upcoming


def _tables_in_run(recipe: ModelRecipe, run_dir: Path) -> ModelRecipe:
    """The recipe with cold tables in ``<run dir>/tables`` unless placement.disk_dir says where
    (checkpoints keep the unset key, so a model rebuilt elsewhere writes its own files)."""
    if recipe.placement.ram_budget is None or recipe.placement.disk_dir is not None:
        return recipe
    return dataclasses.replace(recipe, placement=dataclasses.replace(recipe.placement, disk_dir=str(run_dir / "tables")))


def _predict(net: torch.nn.Module, batches: ParquetBatches, device: torch.device, world: World | None):
    """Probabilities and labels of the split's rows, in its order (every rank gets them all)."""
    return predict_sharded(net, batches, device) if world else predict(net, batches, device)


def _validate(cfg: TrainJobConfig, net: torch.nn.Module, metrics_log: MetricsLog, step: int, world: World | None, device: torch.device) -> float:
    m = CTRMetrics.compute(*_predict(net, _batches(cfg, "valid", train=False, limit=cfg.trainer.val_batches, world=world), device, world))
    metrics_log.write("valid", step, auc=m.auc, logloss=m.logloss, normalized_entropy=m.normalized_entropy)
    log.info("step %d valid: AUC %.5f logloss %.5f (%d rows)", step, m.auc, m.logloss, m.rows)
    return m.auc
