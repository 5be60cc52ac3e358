"""Quality yardstick: full-table DLRM vs the Bayes-optimal AUC and a factorization machine.

Generates ``--rows`` rows of Kaggle-profile synthetic data (full Kaggle cardinalities unless
``--cardinality-scale`` says otherwise), trains the Kaggle DLRM (dim 16, the tuned trainer
preset ``conf/trainer/kaggle.yaml`` that ``+experiment=kaggle`` uses) with full tables for one epoch, evaluates on
the test split, and compares with the generator's Bayes-optimal AUC and logloss of the same
split (known exactly because the generator knows every row's true click probability). In the
same run, on the same rows, it trains a factorization machine (Rendle, 2010; ``model.arch=fm``,
the planted model's own family) as the learnable baseline: ``fm_auc``.
Goals: DLRM AUC within 0.015 of ``bayes_auc`` and >= ``fm_auc``.

    python benchmarks/bench_quality.py --rows 4000000 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
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


@dataclasses.dataclass
class QualityResult:
    rows: int
    train_rows: int
    test_rows: int
    cardinality_scale: float
    auc: float
    logloss: float
    normalized_entropy: float
    calibration: float
    bayes_auc: float
    bayes_logloss: float
    auc_gap: float
    logloss_gap: float
    fm_auc: float
    fm_logloss: float
    dlrm_minus_fm_auc: float
    goal_within_0015_of_bayes: bool
    goal_at_least_fm: bool
    evaluated: str
    fm_evaluated: str
    train_samples_per_s: float
    embedding_parameters: int
    allocator: str
    config: dict


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_synthetic_training_args(p)
    p.add_argument("--trainer", default="kaggle", help="conf/trainer preset of both jobs (kaggle: the tuned one)")
    p.add_argument("--fm-override", action="append",
                   default=["trainer.dense_optimizer=adagrad", "trainer.dense_lr=0.05"],
                   help="Hydra overrides of the FM job only (default: dense Adagrad lr 0.05, as the "
                        "planted-family FM of recsys.data.synth_model's docstring)")
    return p.parse_args(argv)


def main(argv=None) -> QualityResult:
    args = parse_args(argv)
    allocator = start_benchmark(logging.INFO)  # recsys's INFO lines, not FBGEMM's table arguments
    from omegaconf import OmegaConf

    from recsys.data.layout import DatasetMeta
    from recsys.evaluation.report import load_bayes
    from recsys.train.loop import train

    dataset = cached_synthetic_dataset(args.rows, args.seed, args.cache_dir, args.cardinality_scale)
    meta = DatasetMeta.load(dataset)
    job, raw_cfg = compose_train_job(synthetic_job_overrides(dataset, args, f"trainer={args.trainer}"))
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as run_dir:
        result = train(job, run_dir)
    fm_job, _ = compose_train_job(synthetic_job_overrides(dataset, args, f"trainer={args.trainer}", "model.arch=fm",
                                                          *args.fm_override))
    with tempfile.TemporaryDirectory(prefix="bench_quality_fm_") as run_dir:
        fm = train(fm_job, run_dir)
    bayes = load_bayes(dataset, job.eval.split)
    m = result.eval
    out = QualityResult(
        rows=args.rows,
        train_rows=meta.rows["train"],
        test_rows=m["rows"],
        cardinality_scale=args.cardinality_scale,
        auc=m["auc"],
        logloss=m["logloss"],
        normalized_entropy=m["normalized_entropy"],
        calibration=m["calibration"],
        bayes_auc=bayes["bayes_auc"],
        bayes_logloss=bayes["bayes_logloss"],
        auc_gap=bayes["bayes_auc"] - m["auc"],
        logloss_gap=m["logloss"] - bayes["bayes_logloss"],
        fm_auc=fm.eval["auc"],
        fm_logloss=fm.eval["logloss"],
        dlrm_minus_fm_auc=m["auc"] - fm.eval["auc"],
        goal_within_0015_of_bayes=bayes["bayes_auc"] - m["auc"] <= 0.015,
        goal_at_least_fm=m["auc"] >= fm.eval["auc"],
        evaluated=result.evaluated,
        fm_evaluated=fm.evaluated,
        train_samples_per_s=result.train_samples_per_s,
        embedding_parameters=result.memory["parameters"],
        allocator=allocator,
        config=OmegaConf.to_container(raw_cfg, resolve=True),
    )
    print(
        format_table(
            [
                ("rows (train / test)", f"{out.train_rows:,} / {out.test_rows:,}", ""),
                ("AUC", out.auc, f"Bayes-optimal {out.bayes_auc:.5f}, gap {out.auc_gap:+.5f} (goal <= 0.015)"),
                ("FM AUC", out.fm_auc, f"DLRM - FM {out.dlrm_minus_fm_auc:+.5f} (goal >= 0)"),
                ("goals met", out.goal_within_0015_of_bayes and out.goal_at_least_fm,
                 f"within 0.015 of Bayes: {out.goal_within_0015_of_bayes}, >= FM: {out.goal_at_least_fm}"),
                ("evaluated model", out.evaluated, ""),
                ("logloss", out.logloss, f"Bayes-optimal {out.bayes_logloss:.5f}, gap {out.logloss_gap:+.5f}"),
                ("normalized entropy", out.normalized_entropy, ""),
                ("calibration", out.calibration, "mean prediction / positive rate"),
                ("train samples/s", out.train_samples_per_s, ""),
                ("embedding parameters", out.embedding_parameters, ""),
            ],
            title="bench_quality: full-table DLRM vs Bayes-optimal and a factorization machine",
        )
    )
    save_result(args.json, out)
    print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
