"""The files OptEmbed's stages hand to each other (in ``<run>/optembed/``).

- ``masks.pt``: {feature: (num_embeddings,) bool, True = kept row}, written by the supernet
  stage; ``masks.json`` summarises it: {feature: {rows, kept, threshold}}.
- ``dims.json``: {feature: searched dim}, written by the search stage.

A missing file is an error naming the stage (``embedding.stage=...``) that writes it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from recsys.core.io import read_json, write_json

MASKS_PT = "masks.pt"
MASKS_JSON = "masks.json"
DIMS_JSON = "dims.json"


def save_masks(directory: str | Path, kept: dict[str, torch.Tensor], thresholds: dict[str, float]) -> None:
    """Write the kept-row sets (tensor file) and their summary (JSON)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({name: mask.to(torch.bool).cpu() for name, mask in kept.items()}, directory / MASKS_PT)
    summary = {
        name: {"rows": int(mask.numel()), "kept": int(mask.sum()), "threshold": float(thresholds[name])}
        for name, mask in kept.items()
    }
    write_json(directory / MASKS_JSON, summary)


def _existing(directory: str | Path, name: str, produced_by: str) -> Path:
    path = Path(directory) / name
    if not path.exists():
        raise FileNotFoundError(f"OptEmbed artifacts: no {path} (it is written by embedding.stage={produced_by})")
    return path


def load_kept(directory: str | Path) -> dict[str, torch.Tensor]:
    """Kept-row masks by feature: (num_embeddings,) bool."""
    return torch.load(_existing(directory, MASKS_PT, "supernet"), weights_only=True)


def load_mask_summary(directory: str | Path) -> dict[str, dict]:
    """{feature: {rows, kept, threshold}}."""
    return read_json(_existing(directory, MASKS_JSON, "supernet"))


def save_dims(directory: str | Path, dims: dict[str, int]) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    write_json(Path(directory) / DIMS_JSON, {k: int(v) for k, v in dims.items()})


def load_dims(directory: str | Path) -> dict[str, int]:
    return read_json(_existing(directory, DIMS_JSON, "search"))
