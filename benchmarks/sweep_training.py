"""Optimizer and learning-rate sweep of the Kaggle DLRM (and of the FM baseline) on Kaggle-profile
synthetic data.

Trains one epoch per setting (full tables, batch 2048) on the same cached synthetic rows and
reports each setting's test AUC beside the Bayes-optimal AUC. A setting is a list of Hydra
overrides of the training job, run once per ``--seeds`` value (``trainer.seed``: initial weights
and shuffling); one seed leaves AUC differences below ~0.002 within noise. The FM settings
(``model.arch=fm``, the planted model's own family, as ``bench_quality.py`` trains it) are cheap
(no MLPs) and share the table optimizer with the DLRM, so they screen table-optimizer settings
that the DLRM points then confirm. The winner is committed as ``conf/trainer/kaggle.yaml``.
The last group of settings screens the DLRM's model options (``recsys/models/dlrm.py``) on that
trainer; what they found is committed as ``conf/model/kaggle.yaml``. Settings with
``*REFERENCE`` turn those options off: the reference DLRM that the earlier points measured.

    python benchmarks/sweep_training.py --rows 1000000 --json sweep.json
    python benchmarks/sweep_training.py --rows 1000000 --json sweep.json --append --only "dlrm: table eps 1e-3" --seeds 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
# bench_quality's FM job: the kaggle preset's tables and schedule, dense Adagrad lr 0.05
FM = ["model.arch=fm", f"{D}.dense_optimizer=adagrad", f"{D}.dense_lr=0.05"]
# the kaggle preset before this sweep: table row-wise Adagrad lr 0.05 with FBGEMM's eps, dense Adam 0.001
BEFORE = [f"{T}.lr=0.05", f"{T}.eps=1e-8", f"{D}.dense_lr=0.001"]
M = "model"
# conf/model/kaggle.yaml's options off: the reference DLRM (recsys/models/dlrm.py)
REFERENCE = [f"{M}.fm_component=false", f"{M}.first_order=false", f"{M}.dense_norm=false", f"{M}.bottom_last_relu=true"]
SETTINGS: dict[str, list[str]] = {
    "dlrm: kaggle preset before (table lr 0.05, eps 1e-8; dense adam 0.001)": ["trainer=kaggle", *REFERENCE, *BEFORE],
    "fm: kaggle preset before": ["trainer=kaggle", *BEFORE, *FM],
    "fm: table sgd lr 1": ["trainer=kaggle", *BEFORE, f"{T}.kind=sgd", f"{T}.lr=1.0", *FM],
    "fm: table sgd lr 4": ["trainer=kaggle", *BEFORE, f"{T}.kind=sgd", f"{T}.lr=4.0", *FM],
    "fm: table sgd lr 16": ["trainer=kaggle", *BEFORE, f"{T}.kind=sgd", f"{T}.lr=16.0", *FM],
    "fm: table lr 0.02": ["trainer=kaggle", *BEFORE, f"{T}.lr=0.02", *FM],
    "fm: table lr 0.15": ["trainer=kaggle", *BEFORE, f"{T}.lr=0.15", *FM],
    "fm: table eps 1e-4": ["trainer=kaggle", *BEFORE, f"{T}.eps=1e-4", *FM],
    "fm: table eps 1e-3": ["trainer=kaggle", *BEFORE, f"{T}.eps=1e-3", *FM],
    "fm: table eps 1e-2": ["trainer=kaggle", *BEFORE, f"{T}.eps=1e-2", *FM],
    "fm: table lr 0.15, eps 1e-3": ["trainer=kaggle", *BEFORE, f"{T}.lr=0.15", f"{T}.eps=1e-3", *FM],
    "fm: table lr 0.15, eps 1e-2": ["trainer=kaggle", *BEFORE, f"{T}.lr=0.15", f"{T}.eps=1e-2", *FM],
    "fm: table lr 0.5, eps 1e-2": ["trainer=kaggle", *BEFORE, f"{T}.lr=0.5", f"{T}.eps=1e-2", *FM],
    "dlrm: table eps 1e-3": ["trainer=kaggle", *REFERENCE, *BEFORE, f"{T}.eps=1e-3"],
    "dlrm: table lr 0.15, eps 1e-3": ["trainer=kaggle", *REFERENCE, *BEFORE, f"{T}.lr=0.15", f"{T}.eps=1e-3"],
    "dlrm: table lr 0.15, eps 1e-2": ["trainer=kaggle", *REFERENCE, *BEFORE, f"{T}.lr=0.15", f"{T}.eps=1e-2"],
    "dlrm: table lr 0.15, eps 1e-2, linear top (model.top_mlp=[1])": [
        "trainer=kaggle", *REFERENCE, *BEFORE, f"{T}.lr=0.15", f"{T}.eps=1e-2", "model.top_mlp=[1]"],
    "dlrm: table lr 0.15, eps 1e-2, dense adam 0.003": ["trainer=kaggle", *REFERENCE, *BEFORE, f"{T}.lr=0.15", f"{T}.eps=1e-2", f"{D}.dense_lr=0.003"],
    "dlrm: table lr 0.15, eps 1e-2, dense adam 0.01": ["trainer=kaggle", *REFERENCE, *BEFORE, f"{T}.lr=0.15", f"{T}.eps=1e-2", f"{D}.dense_lr=0.01"],
    # the DLRM's options (recsys/models/dlrm.py), on the kaggle trainer preset
    "dlrm: reference DLRM (no model options)": ["trainer=kaggle", *REFERENCE],
    "dlrm: first_order": ["trainer=kaggle", *REFERENCE, f"{M}.first_order=true"],
    "dlrm: dense_norm": ["trainer=kaggle", *REFERENCE, f"{M}.dense_norm=true"],
    "dlrm: bottom_last_relu=false": ["trainer=kaggle", *REFERENCE, f"{M}.bottom_last_relu=false"],
    "dlrm: first_order, dense_norm, bottom_last_relu=false": [
        "trainer=kaggle", *REFERENCE, f"{M}.first_order=true", f"{M}.dense_norm=true", f"{M}.bottom_last_relu=false"],
    "dlrm: fm_component": ["trainer=kaggle", *REFERENCE, f"{M}.fm_component=true"],
    "dlrm: fm_component, first_order, dense_norm": [
        "trainer=kaggle", *REFERENCE, f"{M}.fm_component=true", f"{M}.first_order=true", f"{M}.dense_norm=true"],
    "dlrm: fm_component, dense_norm, bottom_last_relu=false": [
        "trainer=kaggle", *REFERENCE, f"{M}.fm_component=true", f"{M}.dense_norm=true", f"{M}.bottom_last_relu=false"],
    "dlrm: fm_component, first_order, bottom_last_relu=false": [
        "trainer=kaggle", *REFERENCE, f"{M}.fm_component=true", f"{M}.first_order=true", f"{M}.bottom_last_relu=false"],
    "dlrm: all four options (the kaggle model preset)": ["trainer=kaggle"],
    "dlrm: reference DLRM, table lr 0.5": ["trainer=kaggle", *REFERENCE, f"{T}.lr=0.5"],
    "dlrm: reference DLRM, table eps 1e-4": ["trainer=kaggle", *REFERENCE, f"{T}.eps=1e-4"],
}


@dataclasses.dataclass
class SweepPoint:
    name: str
    overrides: list[str]
    seed: int
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
    note: str = ""


def load_previous(path: Path, args) -> list[SweepPoint]:
    """The points of an earlier sweep at ``path`` (``--append``), which must be on the same data."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    same = (old["rows"], old["cardinality_scale"], old["batch_size"]) == (args.rows, args.cardinality_scale, args.batch_size)
    if not same:
        raise SystemExit(f"--append: {path} holds a sweep of rows={old['rows']}, cardinality_scale="
                         f"{old['cardinality_scale']}, batch_size={old['batch_size']}; this run differs")
    return [SweepPoint(**{"seed": 0, **p}) for p in old["points"]]


def main(argv=None) -> SweepResult:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_synthetic_training_args(p)
    p.add_argument("--only", nargs="*", help="names of SETTINGS to run (default: all)")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=OVERRIDE[,OVERRIDE...]",
                   help="another setting: a name and comma-separated overrides")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="trainer.seed values each setting runs with")
    p.add_argument("--append", action="store_true", help="keep the points already in --json (same data)")
    p.add_argument("--note", default="", help="recorded in the JSON (e.g. how loaded the machine was)")
    args = p.parse_args(argv)
    start_benchmark()
    from recsys.evaluation.report import load_bayes
    from recsys.train.loop import train

    unknown = set(args.only or ()) - set(SETTINGS)
    if unknown:
        raise SystemExit(f"--only: no such setting {sorted(unknown)}; settings: {list(SETTINGS)}")
    settings = {k: v for k, v in SETTINGS.items() if args.only is None or k in args.only}
    for item in args.extra:
        name, _, overrides = item.partition("=")
        settings[name] = overrides.split(",")
    dataset = cached_synthetic_dataset(args.rows, args.seed, args.cache_dir, args.cardinality_scale)
    bayes = load_bayes(dataset, "test")
    points = load_previous(args.json, args) if args.append else []
    out = SweepResult(args.rows, args.cardinality_scale, args.batch_size, points, args.note)
    for name, overrides in settings.items():
        for seed in args.seeds:
            job, _ = compose_train_job(synthetic_job_overrides(dataset, args, *overrides, f"trainer.seed={seed}"))
            with tempfile.TemporaryDirectory(prefix="sweep_training_") as run_dir:
                result = train(job, run_dir)
            points.append(SweepPoint(name, overrides, seed, result.eval["auc"], result.eval["logloss"],
                                     result.best_valid_auc, bayes["bayes_auc"], result.train_samples_per_s))
            print(f"{name} (seed {seed}): test AUC {result.eval['auc']:.5f} (Bayes {bayes['bayes_auc']:.5f})", flush=True)
            save_result(args.json, out)  # after every point: a long sweep's partial results survive
    print(format_table([(f"{pt.name} (seed {pt.seed})", pt.auc, f"gap {pt.bayes_auc - pt.auc:.4f}, logloss {pt.logloss:.4f}")
                        for pt in points], title="sweep_training: test AUC after one epoch"))
    return out


if __name__ == "__main__":
    main()
