"""Optimizer and learning-rate sweep of the Kaggle DLRM on Kaggle-profile synthetic data.

Trains one epoch per setting (full tables, batch 2048) on the same cached synthetic rows and
reports each setting's test AUC beside the Bayes-optimal AUC. Each setting is a list of Hydra
overrides of the training job; the first is the baseline. One run per setting: AUC differences
below ~0.002 are within seed noise. The winning setting is committed as
``conf/trainer/kaggle_tuned.yaml``.

    python benchmarks/sweep_training.py --rows 1000000 --json sweep.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    add_synthetic_training_args,
    cached_synthetic_dataset,
    compose_train_job,
    format_table,
    save_result,
    start_benchmark,
    synthetic_job_overrides,
)

T, D = "trainer.table_optimizer", "trainer"
SETTINGS: dict[str, list[str]] = {
    "baseline (table adagrad 0.05, dense adagrad 0.01)": [],
    "dense adagrad 0.05": [f"{D}.dense_lr=0.05"],
    "dense adam 0.001": [f"{D}.dense_optimizer=adam", f"{D}.dense_lr=0.001"],
    "table lr 0.15": [f"{T}.lr=0.15"],
    "warm-up 50 steps, decay from 0.5": [f"{D}.lr_schedule.warmup_steps=50", f"{D}.lr_schedule.decay_start=0.5"],
}


@dataclasses.dataclass
class SweepPoint:
    name: str
    overrides: list[str]
    auc: float
    logloss: float
    valid_auc: float | None
    bayes_auc: float
    samples_per_s: float


@dataclasses.dataclass
class SweepResult:
    rows: int
    cardinality_scale: float
    batch_size: int
    points: list[SweepPoint]


def main(argv=None) -> SweepResult:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_synthetic_training_args(p)
    p.add_argument("--only", nargs="*", help="names of SETTINGS to run (default: all)")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=OVERRIDE[,OVERRIDE...]",
                   help="another setting: a name and comma-separated overrides")
    args = p.parse_args(argv)
    start_benchmark()
    from recsys.evaluation.report import load_bayes
    from recsys.train.loop import train

    settings = {k: v for k, v in SETTINGS.items() if not args.only or k in args.only}
    for item in args.extra:
        name, _, overrides = item.partition("=")
        settings[name] = overrides.split(",")
    dataset = cached_synthetic_dataset(args.rows, args.seed, args.cache_dir, args.cardinality_scale)
    bayes = load_bayes(dataset, "test")
    points = []
    for name, overrides in settings.items():
        job, _ = compose_train_job(synthetic_job_overrides(dataset, args, *overrides))
        with tempfile.TemporaryDirectory(prefix="sweep_training_") as run_dir:
            result = train(job, run_dir)
        points.append(SweepPoint(name, overrides, result.eval["auc"], result.eval["logloss"], result.best_valid_auc,
                                 bayes["bayes_auc"], result.train_samples_per_s))
        print(f"{name}: test AUC {result.eval['auc']:.5f} (Bayes {bayes['bayes_auc']:.5f})", flush=True)
        out = SweepResult(args.rows, args.cardinality_scale, args.batch_size, points)
        save_result(args.json, out)  # after every point: a long sweep's partial results survive
    print(format_table([(pt.name, pt.auc, f"gap {pt.bayes_auc - pt.auc:.4f}, logloss {pt.logloss:.4f}")
                        for pt in points], title="sweep_training: test AUC after one epoch"))
    return out


if __name__ == "__main__":
    main()
