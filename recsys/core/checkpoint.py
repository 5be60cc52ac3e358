"""The checkpoint format: one file per saved step, written atomically and verified on load.

A checkpoint is ``<run>/checkpoints/step_<step>.pt`` (a ``torch.save`` payload, see
:func:`make_payload`) beside ``step_<step>.pt.sha256``, the SHA-256 of the file's bytes. The
payload is written to a temporary name and renamed only after its checksum is on disk, so a
process killed at any point leaves either a complete, verifiable checkpoint or none. A file
whose checksum is missing or wrong (a torn write on a filesystem without atomic rename, a
damaged disk) is skipped, with a warning, for the previous checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 2
_NAME = re.compile(r"step_(\d+)\.pt$")


class CorruptCheckpointError(ValueError):
    """A checkpoint file whose bytes do not match its checksum (or that has none)."""


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:09d}.pt"


def rng_state() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def make_payload(
    *,
    model: dict,
    recipe: dict,
    state: dict,
    config: dict,
    dense_optimizer: Optional[dict] = None,
    extra: Optional[dict] = None,
) -> dict:
    """The one payload layout every checkpoint has.

    Args:
        model: the model's ``state_dict`` (tables and their fused optimizer state included).
        recipe: what rebuilds the model's modules (:class:`recsys.models.config.ModelRecipe`
            as a plain dict), so evaluation and export never need the training job's config.
        state: the loop position (step, epoch, batch in epoch, samples).
        config: the whole job config, for the record.
        dense_optimizer: the torch optimizer's ``state_dict`` (absent for a final, compacted model).
        extra: anything else a stage records.
    """
    payload = {
        "format_version": FORMAT_VERSION,
        "model": model,
        "recipe": recipe,
        "state": state,
        "config": config,
        "rng": rng_state(),
    }
    if dense_optimizer is not None:
        payload["dense_optimizer"] = dense_optimizer
    payload.update(extra or {})
    return payload


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike, payload: dict, keep: int | None = None) -> Path:
    """Write ``payload`` atomically with its checksum; keep only the newest ``keep`` checkpoints."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    _fsync(tmp)
    checksum_tmp = _checksum_path(tmp)
    checksum_tmp.write_text(_sha256(tmp) + "\n")
    _fsync(checksum_tmp)
    os.replace(checksum_tmp, _checksum_path(path))  # checksum first: a .pt on disk always has one
    os.replace(tmp, path)
    if keep:
        for old in list_checkpoints(path.parent)[:-keep]:
            old.unlink()
            _checksum_path(old).unlink(missing_ok=True)
    return path


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoint files in ``directory``, oldest step first (verified or not)."""
    found = [p for p in Path(directory).glob("step_*.pt") if _NAME.search(p.name)]
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`CorruptCheckpointError` unless ``path`` matches its recorded checksum."""
    path = Path(path)
    checksum = _checksum_path(path)
    if not checksum.exists():
        raise CorruptCheckpointError(f"{path}: no checksum file {checksum.name} (torn or foreign checkpoint)")
    if checksum.read_text().strip() != _sha256(path):
        raise CorruptCheckpointError(f"{path}: contents do not match {checksum.name} (torn or damaged write)")


def resolve_checkpoint(location: str | os.PathLike) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory that verifies.

    A file named explicitly must verify; in a directory, newer checkpoints that do not are
    skipped with a warning, so a run killed mid-write resumes from the one before.
    """
    location = Path(location)
    if location.is_file():
        verify_checkpoint(location)
        return location
    for directory in (location / CHECKPOINT_DIR, location):
        found = list_checkpoints(directory) if directory.is_dir() else []
        for candidate in reversed(found):
            try:
                verify_checkpoint(candidate)
            except CorruptCheckpointError as exc:
                log.warning("skipping checkpoint: %s", exc)
                continue
            return candidate
    raise FileNotFoundError(f"no valid checkpoint at {location} (expected a step_*.pt file or a run directory)")


def load_checkpoint(location: str | os.PathLike) -> dict[str, Any]:
    """The payload of a checkpoint file or of a run directory's newest valid checkpoint."""
    import torch

    path = resolve_checkpoint(location)
    payload = torch.load(path, map_location="cpu", weights_only=False)
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {version!r}, this recsys reads format {FORMAT_VERSION} "
            "(written by another recsys version)"
        )
    return payload
