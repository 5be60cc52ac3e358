"""bench_pareto's training runs: one full epoch per point for its AUC, short runs for its speed.

A *series* is one way of compressing (a method, plus fixed options such as the hashing trick's
``threshold``); a *point* is a series at one budget. :func:`epoch_run` trains a point for one
epoch through ``recsys.train.loop.train`` (OptEmbed through its stage runner,
``recsys.train.optembed.run_stages``, as ``recsys-train embedding=optembed`` runs it), whose
final evaluation keeps the test split's per-row predictions for the report; it returns the
job that :func:`short_run_rate` times: the same plan (the budget's solved knobs passed as
plain options, so no solve is repeated), or for OptEmbed its retraining network (full tables
with the searched row and dimension masks, what OptEmbed trains).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

from common import compose_train_job, synthetic_job_overrides

# Tables of at most this many rows stay whole in the ``hash_threshold`` series. At Kaggle's
# cardinalities the 18 tables this small hold about 47K of the 33.8M rows (0.14% of the full
# bytes, 9% of the 1/64 budget), so keeping them costs little at every budget, while plain
# hashing at 1/64 squeezes a table like C6 (25 rows) into one row.
HASH_THRESHOLD = 20_000


@dataclasses.dataclass(frozen=True)
class Series:
    name: str  # the label of its points (and run directories)
    method: str  # the conf/embedding group
    options: tuple[str, ...] = ()  # fixed embedding options, as Hydra overrides

    @property
    def setting(self) -> str:
        return " ".join(o.removeprefix("embedding.") for o in self.options)


def all_series(hash_threshold: int) -> dict[str, Series]:
    return {
        "hash": Series("hash", "hash"),
        "hash_threshold": Series("hash_threshold", "hash", (f"embedding.threshold={hash_threshold}",)),
        "qr": Series("qr", "qr"),
        "md": Series("md", "md"),
        "unified": Series("unified", "unified"),
    }


FULL = Series("full", "full")
OPTEMBED = Series("optembed", "optembed")


@dataclasses.dataclass
class EpochRun:
    """What one epoch of a point gave, and the job its short runs time."""

    bytes: int
    knob: str
    eval: dict
    epoch_samples_per_s: float
    seconds: float  # wall time of the whole point (build, epoch, evaluations)
    speed_job: object  # a TrainJobConfig


# one validation (5 batches) at the epoch's end: the final evaluation scores the model then,
# as the best model of one validation would be, so the plain points write no checkpoint
EPOCH_RUN_OVERRIDES = ("trainer.eval_every_steps=0", "trainer.val_batches=5")


def short_run_overrides(args: argparse.Namespace) -> list[str]:
    """A few hundred steps, a one-batch validation and evaluation, no checkpoint (each would be a
    table-sized write whose write-back overlaps the next run's timed steps)."""
    return ["trainer.eval_every_steps=0", "trainer.val_batches=1",
            "eval.max_batches=1", "trainer.keep_best=false", "trainer.checkpoint_at_end=false"]


def runs_dir(args: argparse.Namespace) -> Path:
    """Where the points' evaluated runs stay for the report (in the cache: predictions are large)."""
    return args.cache_dir / f"{args.json.stem}_runs"


def drop_checkpoints(run_dir: Path) -> None:
    """Remove every checkpoint below the run (GBs at full Kaggle cardinalities); its final
    evaluation kept its per-row predictions (``eval.save_predictions``) for recsys-report."""
    for checkpoints in sorted(run_dir.rglob("checkpoints"), reverse=True):
        shutil.rmtree(checkpoints)


def epoch_run(dataset: Path, series: Series, budget: float, args: argparse.Namespace) -> EpochRun:
    """One epoch of ``series`` at ``budget`` (OptEmbed: its stages, each one epoch)."""
    if series is OPTEMBED:
        return _optembed_epoch(dataset, args)
    from recsys.embeddings.embedding_config import BUDGET_KNOBS
    from recsys.train.loop import train

    start = time.perf_counter()
    chosen = [f"embedding={series.method}", *series.options]
    extra = [] if series is FULL else [f"embedding.budget={budget!r}"]
    job, _ = compose_train_job(synthetic_job_overrides(
        dataset, args, *chosen, *extra, *EPOCH_RUN_OVERRIDES, "trainer.keep_best=false", "trainer.checkpoint_at_end=false"))
    run_dir = runs_dir(args) / f"{series.name}@{budget:g}"
    shutil.rmtree(run_dir, ignore_errors=True)
    result = train(job, run_dir)
    knobs = {k: result.embedding[k] for k in BUDGET_KNOBS.get(series.method, ())}
    speed_job, _ = compose_train_job(synthetic_job_overrides(
        dataset, args, *chosen, *(f"embedding.{k}={v!r}" for k, v in knobs.items()), *short_run_overrides(args)))
    return EpochRun(
        bytes=result.memory["total_bytes"],
        knob=" ".join(f"{k}={v:.4g}" for k, v in knobs.items()),
        eval=result.eval,
        epoch_samples_per_s=result.train_samples_per_s,
        seconds=time.perf_counter() - start,
        speed_job=speed_job,
    )


def _optembed_epoch(dataset: Path, args: argparse.Namespace) -> EpochRun:
    from recsys.embeddings.optembed_artifacts import load_dims, load_mask_summary
    from recsys.embeddings.specs import OptEmbedNetwork
    from recsys.train.optembed import ARTIFACTS_DIR, run_stages, stage_config

    start = time.perf_counter()
    chosen = ["embedding=optembed", *args.optembed_overrides]
    job, _ = compose_train_job(synthetic_job_overrides(
        dataset, args, *chosen, *EPOCH_RUN_OVERRIDES))
    run_dir = runs_dir(args) / "optembed"
    shutil.rmtree(run_dir, ignore_errors=True)
    result = run_stages(job, run_dir)  # its stages read each other's checkpoints
    drop_checkpoints(run_dir)
    artifacts = run_dir / ARTIFACTS_DIR
    # the report's training curves of the final model: its retraining's
    shutil.copy2(artifacts / "retrain" / "metrics.jsonl", run_dir / "metrics.jsonl")
    retrained = json.loads((artifacts / "retrain" / "eval.json").read_text())
    dims = list(load_dims(artifacts).values())
    masks = load_mask_summary(artifacts).values()
    kept = sum(m["kept"] for m in masks) / sum(m["rows"] for m in masks)
    short, _ = compose_train_job(synthetic_job_overrides(dataset, args, *chosen, *short_run_overrides(args)))
    return EpochRun(
        bytes=result.memory["total_bytes"],
        knob=f"kept {kept:.3g} of the rows, dims {min(dims)}-{max(dims)} (mean {sum(dims) / len(dims):.1f})",
        eval=result.eval,
        epoch_samples_per_s=retrained["train"]["samples_per_s"],  # the retraining epoch
        seconds=time.perf_counter() - start,
        speed_job=stage_config(short, OptEmbedNetwork.retrain, artifacts),
    )


def short_run_rate(job, args: argparse.Namespace) -> float:
    """samples/s of recsys-train's own loop over ``job`` for ``args.speed_steps`` steps."""
    from recsys.train.loop import train

    job = dataclasses.replace(job, trainer=dataclasses.replace(job.trainer, max_steps=args.speed_steps))
    with tempfile.TemporaryDirectory(prefix="bench_pareto_speed_", dir=args.cache_dir) as run_dir:
        return train(job, run_dir).train_samples_per_s
