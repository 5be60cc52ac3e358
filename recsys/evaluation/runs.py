"""Runs as a report reads them: where they are, what they hold, and what is missing.

A *run* here is an evaluation directory: it holds ``eval.json`` and, when the evaluation was
asked to keep them, ``predictions.parquet`` (one row per scored test row: ``label``, ``score``).
``recsys-train`` writes ``eval.json`` into its run directory; ``recsys-eval`` writes its own
directory, which names the checkpoint it scored, and so the training run: there the report
finds ``metrics.jsonl`` (training curves) and ``.hydra/overrides.yaml`` (what the run changed).
Files are read as files: this module never imports the training code.

Nothing here raises on a bad run: each problem becomes a :class:`Problem` naming the run and
what is missing, and the report shows what can be shown.
"""

from __future__ import annotations

import dataclasses
import glob
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from recsys.evaluation.significance import RocComponents

EVAL_JSON = "eval.json"
PREDICTIONS = "predictions.parquet"
EVAL_SUBDIR = "eval"  # where a sweep's jobs are re-evaluated with predictions


@dataclasses.dataclass
class Problem:
    run: str
    message: str


@dataclasses.dataclass
class Run:
    """One evaluated run, loaded.

    Attributes:
        name: short unique label (the run directory relative to the runs' common parent).
        eval_dir: the directory of ``eval.json``.
        record: ``eval.json``.
        train_dir: the training run directory, when known.
        labels, scores: (N,) saved predictions in split file order, or None.
        training: ``metrics.jsonl`` records of the training run.
        overrides: the training run's Hydra overrides.
        samples_per_step: samples per training step (to put curves on a samples axis), or None.
        roc: DeLong components of the predictions, once the analysis has computed them.
    """

    name: str
    eval_dir: Path
    record: dict
    train_dir: Path | None = None
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    training: list[dict] = dataclasses.field(default_factory=list)
    overrides: list[str] = dataclasses.field(default_factory=list)
    samples_per_step: float | None = None
    roc: RocComponents | None = None

    @property
    def has_predictions(self) -> bool:
        return self.scores is not None

    @property
    def train_samples_per_s(self) -> float | None:
        train = [r for r in self.training if r.get("kind") == "train" and "samples_per_s" in r]
        if train:
            return float(train[-1]["samples_per_s"])
        return self.record.get("train", {}).get("samples_per_s")


def find_eval_dirs(specs: list[str]) -> tuple[list[Path], list[Problem]]:
    """Evaluation directories named by ``specs``: run directories, sweep directories (every job
    below them) or globs. A training run re-evaluated into ``<run>/eval`` counts once, as that."""
    found: list[Path] = []
    problems: list[Problem] = []
    for spec in specs:
        matches = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
        if not matches:
            problems.append(Problem(spec, "the pattern matches nothing"))
        for match in matches:
            path = Path(match)
            if not path.is_dir():
                problems.append(Problem(spec, f"{path} is not a directory"))
                continue
            direct = _eval_dir_of(path)
            if direct is not None:
                found.append(direct)
                continue
            jobs = [d for d in sorted(path.iterdir(), key=_natural) if d.is_dir() and not d.name.startswith(".")]
            below = [e for e in map(_eval_dir_of, jobs) if e is not None]
            missing = [d for d in jobs if _eval_dir_of(d) is None and (d / ".hydra").is_dir()]
            problems += [Problem(d.name, f"{d} has no {EVAL_JSON} (the run did not finish?)") for d in missing]
            if not below and not missing:
                problems.append(Problem(path.name, f"{path} has no {EVAL_JSON}, and no run below it has one"))
            found += below
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, problems


def _natural(path: Path):
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def _eval_dir_of(path: Path) -> Path | None:
    for candidate in (path / EVAL_SUBDIR, path):
        if (candidate / EVAL_JSON).is_file():
            return candidate
    return None


def run_names(eval_dirs: list[Path]) -> list[str]:
    """Labels unique among the runs: each run directory relative to their common parent."""
    run_dirs = [d.parent if d.name == EVAL_SUBDIR else d for d in eval_dirs]
    if len(run_dirs) <= 1:
        return [d.name for d in run_dirs]
    parent = Path(*Path(run_dirs[0]).parts[: _common_depth(run_dirs)])
    return [str(d.relative_to(parent)) or d.name for d in run_dirs]


def _common_depth(paths: list[Path]) -> int:
    depth = 0
    for parts in zip(*(p.parts for p in paths)):
        if len(set(parts)) > 1:
            break
        depth += 1
    return min(depth, min(len(p.parts) for p in paths) - 1)


def load_run(eval_dir: Path, name: str) -> tuple[Run | None, list[Problem]]:
    """Read one run; every missing or bad part is a problem, not an exception."""
    problems: list[Problem] = []
    try:
        record = json.loads((eval_dir / EVAL_JSON).read_text())
    except (OSError, json.JSONDecodeError) as e:
        return None, [Problem(name, f"{eval_dir / EVAL_JSON} cannot be read: {e}")]
    if "metrics" not in record:
        return None, [Problem(name, f"{eval_dir / EVAL_JSON} has no 'metrics'")]
    run = Run(name, eval_dir, record)
    run.train_dir = _train_dir(eval_dir, record)
    _load_predictions(run, problems)
    if run.train_dir is not None:
        _load_training(run, problems)
    return run, problems


def _train_dir(eval_dir: Path, record: dict) -> Path | None:
    checkpoint = record.get("checkpoint")
    if checkpoint:
        ckpt = Path(checkpoint)
        if not ckpt.is_absolute():
            ckpt = (eval_dir / ckpt) if (eval_dir / ckpt).exists() else ckpt.resolve()
        return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return eval_dir if (eval_dir / "metrics.jsonl").exists() or (eval_dir / ".hydra").is_dir() else None


def write_predictions(eval_dir: Path, scores: np.ndarray, labels: np.ndarray) -> str:
    """Save per-row predictions (split file order) as ``predictions.parquet``; return its name."""
    import pyarrow as pa

    table = pa.table({"label": np.asarray(labels).astype(np.int8), "score": np.asarray(scores, dtype=np.float32)})
    pq.write_table(table, Path(eval_dir) / PREDICTIONS)
    return PREDICTIONS


def _load_predictions(run: Run, problems: list[Problem]) -> None:
    path = run.eval_dir / run.record.get("predictions", PREDICTIONS)
    if not path.exists():
        problems.append(
            Problem(run.name, f"no {PREDICTIONS} in {run.eval_dir} (evaluate with `recsys-eval save_predictions=true`): "
                    "curves, calibration, breakdowns and the paired test are left out for this run")
        )
        return
    table = pq.read_table(path)
    missing = {"label", "score"} - set(table.column_names)
    if missing:
        problems.append(Problem(run.name, f"{path} lacks column(s) {sorted(missing)}"))
        return
    labels = table.column("label").to_numpy()
    scores = table.column("score").to_numpy().astype(np.float64)
    if scores.size == 0:
        problems.append(Problem(run.name, f"{path} has no rows (empty split?)"))
        return
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        problems.append(
            Problem(run.name, f"{path}: {int(bad.sum()):,} of {scores.size:,} scores are NaN or outside [0, 1] "
                    f"(first at row {first}); predictions are left out for this run")
        )
        return
    run.labels, run.scores = labels, scores


def _load_training(run: Run, problems: list[Problem]) -> None:
    train_dir = run.train_dir
    metrics = train_dir / "metrics.jsonl"
    if metrics.exists():
        for number, line in enumerate(metrics.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                run.training.append(json.loads(line))
            except json.JSONDecodeError:
                problems.append(Problem(run.name, f"{metrics}:{number} is not JSON; the line is skipped"))
    else:
        problems.append(Problem(run.name, f"no metrics.jsonl in {train_dir}: no training curves"))
    overrides = train_dir / ".hydra" / "overrides.yaml"
    if overrides.exists():
        from omegaconf import OmegaConf

        run.overrides = [str(o) for o in OmegaConf.load(overrides)]
    train_record = run.record if train_dir == run.eval_dir else _read_json(train_dir / EVAL_JSON)
    train = (train_record or {}).get("train") or {}
    if train.get("steps"):
        run.samples_per_step = train["samples"] / train["steps"]
    elif (train_dir / ".hydra" / "config.yaml").exists():
        from omegaconf import OmegaConf

        run.samples_per_step = OmegaConf.select(OmegaConf.load(train_dir / ".hydra" / "config.yaml"), "data.batch_size")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
