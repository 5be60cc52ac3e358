"""Model selection by validation AUC: the best checkpoint kept as ``best.pt``, and early stopping.

The best model is the one a user should ship and evaluate, not the last one: a late epoch can
overfit the rare ids. Each validation that beats the best AUC so far checkpoints the model and
points ``checkpoints/best.pt`` at that file by a hard link (no second copy of a multi-GB
checkpoint, and step rotation can delete the step file while ``best.pt`` keeps the bytes). A
sharded run's best is ``checkpoints/best.dcp``: a symbolic link, replaced atomically, to a
directory of hard links to the step directory's files (a directory cannot be hard-linked).
Early stopping (Prechelt, "Early Stopping - But When?", 1998) ends the run after ``patience``
validations in a row without an improvement of more than ``min_delta``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from recsys.core.checkpoint import CHECKPOINT_DIR
from recsys.train.config import EarlyStoppingConfig

log = logging.getLogger(__name__)

BEST_NAME = "best.pt"
BEST_SHARDED_NAME = "best.dcp"
_BEST_SHARDED_COPIES = ".best.*.dcp"  # the directories best.dcp points at


def best_checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """The run's best checkpoint: ``best.dcp`` where a sharded run linked one, else ``best.pt``."""
    return _best_in(Path(run_dir) / CHECKPOINT_DIR)


def _best_in(directory: Path) -> Path:
    sharded = directory / BEST_SHARDED_NAME
    return sharded if sharded.exists() else directory / BEST_NAME


@dataclasses.dataclass
class SelectionState:
    """The best validation so far; part of the loop state, so a resumed run keeps it."""

    best_auc: Optional[float] = None
    best_step: Optional[int] = None
    validations_since_best: int = 0

    def update(self, auc: float, step: int, min_delta: float = 0.0) -> bool:
        """Record a validation; True if it is the new best (by more than ``min_delta``)."""
        if self.best_auc is None or auc > self.best_auc + min_delta:
            self.best_auc, self.best_step, self.validations_since_best = auc, step, 0
            return True
        self.validations_since_best += 1
        return False

    def should_stop(self, cfg: EarlyStoppingConfig) -> bool:
        return cfg.patience is not None and self.validations_since_best >= cfg.patience


def link_best(checkpoint: Path, run_dir: str | os.PathLike) -> Path:
    """Point the run's best checkpoint at ``checkpoint`` atomically, by hard links: ``best.pt``
    (and its checksum) for a file, ``best.dcp`` for a sharded checkpoint's directory. The best
    of the other format, if any (a run resumed in another world size), is removed."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    if checkpoint.is_dir():
        best = _link_best_directory(checkpoint, directory)
        for stale in (directory / BEST_NAME, directory / f"{BEST_NAME}.sha256"):
            stale.unlink(missing_ok=True)
        return best
    best = directory / BEST_NAME
    for source, target in ((Path(f"{checkpoint}.sha256"), Path(f"{best}.sha256")), (checkpoint, best)):
        _hard_link(source, target.with_name(target.name + ".tmp"))
        os.replace(target.with_name(target.name + ".tmp"), target)  # checksum first: a best.pt always has one
    (directory / BEST_SHARDED_NAME).unlink(missing_ok=True)
    for stale in directory.glob(_BEST_SHARDED_COPIES):
        shutil.rmtree(stale)
    return best


def _hard_link(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem (a resumed run's best): copy instead
        shutil.copyfile(source, target)


def _link_best_directory(checkpoint: Path, directory: Path) -> Path:
    """``best.dcp`` → ``.best.<step>.dcp``, a directory of hard links to ``checkpoint``'s files."""
    step = re.search(r"(\d+)\.dcp$", checkpoint.resolve().name).group(1)  # of step_N.dcp or another run's .best.N.dcp
    copy = directory / f".best.{step}.dcp"
    if not copy.exists():
        tmp = copy.with_name(copy.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for source in checkpoint.iterdir():
            _hard_link(source, tmp / source.name)
        os.replace(tmp, copy)
    best = directory / BEST_SHARDED_NAME
    link = best.with_name(best.name + ".tmp")
    link.unlink(missing_ok=True)
    link.symlink_to(copy.name)
    os.replace(link, best)  # rename swaps the link itself: best.dcp always names a whole checkpoint
    for stale in directory.glob(_BEST_SHARDED_COPIES):
        if stale != copy:
            shutil.rmtree(stale)
    return best


def adopt_best(resumed: Path, run_dir: str | os.PathLike, selection: SelectionState) -> SelectionState:
    """After resuming from checkpoint file ``resumed``, make ``run_dir``'s ``best.pt`` the best of
    the interrupted run: its ``best.pt`` if that verifies, else the resumed checkpoint when it is
    the best one (a run killed while linking). Otherwise the best so far is lost: say so and
    start selection afresh, so the next validation sets a new best."""
    from recsys.core.checkpoint import CorruptCheckpointError, verify_checkpoint

    if selection.best_step is None:
        return selection
    candidates = [_best_in(resumed.parent)]
    if resumed.name not in (BEST_NAME, BEST_SHARDED_NAME) and _step_of(resumed) == selection.best_step:
        candidates.append(resumed)
    for candidate in candidates:
        try:
            verify_checkpoint(candidate)
        except (CorruptCheckpointError, FileNotFoundError) as exc:
            log.warning("best checkpoint candidate skipped: %s", exc)
            continue
        if candidate.resolve() != best_checkpoint_path(run_dir).resolve():
            link_best(candidate, run_dir)
        return selection
    log.warning("the best checkpoint of the resumed run (step %d, AUC %.5f) is gone; selection starts afresh",
                selection.best_step, selection.best_auc)
    return SelectionState()


def _step_of(path: Path) -> Optional[int]:
    stem = path.name.removesuffix(".pt").removesuffix(".dcp")
    return int(stem.split("_")[1]) if stem.startswith("step_") else None
