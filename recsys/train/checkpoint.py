"""Checkpoints that resume exactly: model (tables and their optimizer state included), dense
optimizer, loop position and RNG states, written atomically so a crash mid-save never
leaves a corrupt latest checkpoint."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step_(\d+)\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:09d}.pt"


def save_checkpoint(path: Path, payload: dict, keep: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    if keep:
        for old in list_checkpoints(path.parent)[:-keep]:
            old.unlink()
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    found = [p for p in Path(directory).glob("step_*.pt") if _NAME.search(p.name)]
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def resolve_checkpoint(location: str | os.PathLike) -> Path:
    """A checkpoint file, or the latest checkpoint of a run directory."""
    location = Path(location)
    if location.is_file():
        return location
    for directory in (location / CHECKPOINT_DIR, location):
        found = list_checkpoints(directory) if directory.is_dir() else []
        if found:
            return found[-1]
    raise FileNotFoundError(f"no checkpoint at {location} (expected a step_*.pt file or a run directory)")


def load_checkpoint(location: str | os.PathLike) -> dict:
    return torch.load(resolve_checkpoint(location), map_location="cpu", weights_only=False)
