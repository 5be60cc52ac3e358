"""The checkpoint format: one entry per saved step, written atomically and verified on load.

A one-process run's checkpoint is ``<run>/checkpoints/step_<step>.pt`` (a ``torch.save`` payload,
see :func:`make_payload`) beside ``step_<step>.pt.sha256``, the SHA-256 of the file's bytes. The
payload is written to a temporary name and renamed only after its checksum is on disk, so a
process killed at any point leaves either a complete, verifiable checkpoint or none. A file
whose checksum is missing or wrong (a torn write on a filesystem without atomic rename, a
damaged disk) is skipped, with a warning, for the previous checkpoint.

A sharded run's checkpoint is a directory ``step_<step>.dcp`` in the format of
``torch.distributed.checkpoint`` (DCP): every rank writes the shards it holds (``__<rank>_*.distcp``,
nothing is gathered), rank 0 the global ``.metadata``, so a table too big for one process is
saved and any world size loads it, DCP resharding it to the new layout. Its tensors are the model
without its lookup (``model.<key>``, the one-process state-dict keys) and each physical table's
whole weights and fused-optimizer state (``tables.<table>.weight``, ``tables.<table>.momentum1``).
The rest of the payload (recipe, loop state, dense optimizer, RNG: small, and the same on every
rank) is ``payload.pt``, and ``checksums.json`` holds the SHA-256 of every file (each rank hashes
its own). The directory is written as ``step_<step>.dcp.tmp`` and renamed when complete, so a torn
one never has the checkpoint's name, and one that does not match its checksums is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np

from recsys.core.io import file_sha256

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 2
SHARDED_SUFFIX = ".dcp"
_NAME = re.compile(r"step_(\d+)\.(pt|dcp)$")
_PAYLOAD_FILE = "payload.pt"
_CHECKSUMS_FILE = "checksums.json"
MODEL_PREFIX = "model."
TABLE_PREFIX = "tables."


class CorruptCheckpointError(ValueError):
    """A checkpoint file whose bytes do not match its checksum (or that has none)."""


def checkpoint_path(run_dir: str | os.PathLike, step: int, sharded: bool = False) -> Path:
    """Where step ``step``'s checkpoint goes: a ``.pt`` file, or a ``.dcp`` directory when sharded."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:09d}{SHARDED_SUFFIX if sharded else '.pt'}"


def is_sharded(path: str | os.PathLike) -> bool:
    """True for a sharded (DCP directory) checkpoint."""
    return Path(path).suffix == SHARDED_SUFFIX


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


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # a directory too: its entries (a rename) reach the disk
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
    checksum_tmp.write_text(file_sha256(tmp) + "\n")
    _fsync(checksum_tmp)
    os.replace(checksum_tmp, _checksum_path(path))  # checksum first: a .pt on disk always has one
    os.replace(tmp, path)
    rotate_checkpoints(path.parent, keep)
    return path


def rotate_checkpoints(directory: Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoints of ``directory`` (None or 0 keeps all)."""
    if not keep:
        return
    for old in list_checkpoints(directory)[:-keep]:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
            _checksum_path(old).unlink(missing_ok=True)


def save_sharded_checkpoint(path: str | os.PathLike, tensors: dict, payload: dict, keep: int | None = None) -> Optional[Path]:
    """Write a sharded checkpoint directory; every rank calls it (one process without a group).

    Args:
        path: the ``step_<step>.dcp`` directory (see :func:`checkpoint_path`).
        tensors: ``model.<key>`` tensors (the same on every rank) and ``tables.<table>.<state>``
            ShardedTensors whose local shards are this rank's rows: DCP writes each rank's
            shards from that rank and a replicated tensor once.
        payload: :func:`make_payload`'s dict without ``model`` (written by rank 0).
        keep: rotation, as :func:`save_checkpoint`.

    Returns the directory on rank 0, None on the other ranks.
    """
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # a torn write of an earlier, killed run
        tmp.mkdir(parents=True)
    if distributed:
        dist.barrier()
    with _dcp_in(distributed):
        dcp.save(tensors, storage_writer=dcp.FileSystemWriter(str(tmp)), no_dist=not distributed)
    mine = {f.name: file_sha256(f) for f in sorted(tmp.glob(f"__{rank}_*"))}  # each rank hashes its own shards
    everyone = [mine]
    if distributed:
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
    if rank != 0:
        return None
    torch.save(payload, tmp / _PAYLOAD_FILE)
    _fsync(tmp / _PAYLOAD_FILE)
    checksums = {name: digest for part in everyone for name, digest in part.items()}
    for name in (".metadata", _PAYLOAD_FILE):
        checksums[name] = file_sha256(tmp / name)
    (tmp / _CHECKSUMS_FILE).write_text(json.dumps(checksums, indent=1, sort_keys=True) + "\n")
    _fsync(tmp / _CHECKSUMS_FILE)
    _fsync(tmp)
    if path.exists():  # the same step saved again (a run resumed at its last checkpoint)
        shutil.rmtree(path)
    os.replace(tmp, path)
    _fsync(path.parent)
    rotate_checkpoints(path.parent, keep)
    return path


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints (files and DCP directories) in ``directory``, oldest step first (verified or not)."""
    found = [p for p in Path(directory).glob("step_*") if _NAME.search(p.name)]
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def _verify_sharded(path: Path) -> None:
    checksums_file = path / _CHECKSUMS_FILE
    if not checksums_file.exists():
        raise CorruptCheckpointError(f"{path}: no {_CHECKSUMS_FILE} (torn or foreign checkpoint)")
    checksums = json.loads(checksums_file.read_text())
    present = {f.name for f in path.iterdir()} - {_CHECKSUMS_FILE}
    if present != set(checksums):
        raise CorruptCheckpointError(
            f"{path}: files {sorted(present ^ set(checksums))} missing or not in {_CHECKSUMS_FILE} (torn or damaged write)"
        )
    for name, digest in checksums.items():
        if file_sha256(path / name) != digest:
            raise CorruptCheckpointError(f"{path}: {name} does not match {_CHECKSUMS_FILE} (torn or damaged write)")


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`CorruptCheckpointError` unless ``path`` matches its recorded checksum(s)."""
    path = Path(path)
    if path.is_dir():
        _verify_sharded(path)
        return
    checksum = _checksum_path(path)
    if not checksum.exists():
        raise CorruptCheckpointError(f"{path}: no checksum file {checksum.name} (torn or foreign checkpoint)")
    if checksum.read_text().strip() != file_sha256(path):
        raise CorruptCheckpointError(f"{path}: contents do not match {checksum.name} (torn or damaged write)")


def resolve_checkpoint(location: str | os.PathLike) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory that verifies.

    A file named explicitly must verify; in a directory, newer checkpoints that do not are
    skipped with a warning, so a run killed mid-write resumes from the one before.
    """
    location = Path(location)
    if location.is_file() or is_sharded(location) and location.is_dir():
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
    raise FileNotFoundError(
        f"no valid checkpoint at {location} (expected a step_*.pt file, a step_*.dcp directory or a run directory)"
    )


def _read_payload(path: Path, mmap: bool = False) -> dict[str, Any]:
    import torch

    payload = torch.load(path / _PAYLOAD_FILE if path.is_dir() else path, map_location="cpu", weights_only=False, mmap=mmap)
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {version!r}, this recsys reads format {FORMAT_VERSION} "
            "(written by another recsys version)"
        )
    return payload


def load_checkpoint(location: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """The payload of a checkpoint or of a run directory's newest valid checkpoint, in this process.

    ``mmap=True`` maps a ``.pt`` file's tensors instead of reading them (copy-on-write): a
    process that uses a few rows of its tables reads only their pages.

    A sharded checkpoint is read whole (DCP without a process group): its payload gets
    ``model`` (every key but the lookup's) and ``tables`` ({table: {"weight": (rows, dim),
    "momentum1": (rows,)}}), which :func:`recsys.models.build.load_weights` puts into a model.
    """
    path = resolve_checkpoint(location)
    payload = _read_payload(path, mmap=mmap and not path.is_dir())
    if path.is_dir():
        payload["model"], payload["tables"] = {}, {}
        tensors, chunks = _read_sharded_tensors(path)
        for key, tensor in tensors.items():
            if key.startswith(MODEL_PREFIX):
                payload["model"][key[len(MODEL_PREFIX) :]] = tensor
            else:
                table, state = key[len(TABLE_PREFIX) :].rsplit(".", 1)
                payload["tables"].setdefault(table, {})[state] = tensor
        for table, states in payload["tables"].items():
            if "momentum1" in states:
                widths = column_widths((c.offsets, c.sizes) for c in chunks[f"{TABLE_PREFIX}{table}.weight"])
                states["momentum1"] = merge_column_states(states["momentum1"], states["weight"].shape[0], widths, table)
    return payload


def load_table_momenta(path: str | os.PathLike) -> dict[str, Any]:
    """Each table's row-wise Adagrad state in a sharded checkpoint, whole and merged over column
    shards (:func:`merge_column_states`): ``{table: (rows,)}``, read in this process without the
    weights (1/dim of their bytes); empty for a checkpoint without optimizer state."""
    path = Path(path)
    entries = _tensor_entries(path)
    wanted = {k: meta for k, meta in entries.items() if k.startswith(TABLE_PREFIX) and k.endswith(".momentum1")}
    tensors, _ = _read_sharded_tensors(path, wanted)
    momenta = {}
    for key, momentum in tensors.items():
        table = key[len(TABLE_PREFIX) : -len(".momentum1")]
        weight = entries[f"{TABLE_PREFIX}{table}.weight"]
        widths = column_widths((c.offsets, c.sizes) for c in weight.chunks)
        momenta[table] = merge_column_states(momentum, weight.size[0], widths, table)
    return momenta


def column_widths(shards) -> list[int]:
    """The widths of a (rows, dim) weight's column shards, left to right, from its shards'
    ``(offsets, sizes)``; ``[dim]`` for a table not split by columns."""
    return [width for _, width in sorted({(int(offsets[1]), int(sizes[1])) for offsets, sizes in shards})]


def merge_column_states(momentum, rows: int, widths: list[int], table: str = "?"):
    """A table's row-wise Adagrad state as the whole table's ``(rows,)``.

    Column-wise sharding gives each column shard its own state, saved one block of ``rows`` after
    another, left to right (torchrec's layout: ``(len(widths) * rows,)``). A shard's state sums,
    over steps, the mean squared gradient of its columns, so the whole row's is the shards' mean
    weighted by their widths: exact, up to float rounding. A ``(rows,)`` state comes back as is.

    Raises:
        ValueError: the state's size fits neither layout (names the table).
    """
    if momentum.numel() == rows:
        return momentum
    if momentum.numel() != rows * len(widths):
        raise ValueError(
            f"table {table}: its saved momentum1 has {momentum.numel()} values, neither its {rows} rows nor "
            f"{len(widths)} column shards x {rows} rows"
        )
    blocks = momentum.view(len(widths), rows).double()
    weights = blocks.new_tensor(widths).unsqueeze(1) / sum(widths)
    return (blocks * weights).sum(0).to(momentum.dtype)


def load_sharded_checkpoint(path: str | os.PathLike, tensors: dict) -> dict[str, Any]:
    """Load a (verified) sharded checkpoint's tensors in place into ``tensors`` and return the rest
    of its payload. Every rank calls it with its own ShardedTensors: DCP reads the rows each local
    shard holds, whatever world size wrote them."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    payload = _read_payload(Path(path))
    distributed = dist.is_available() and dist.is_initialized()
    with _dcp_in(distributed):
        dcp.load(tensors, storage_reader=dcp.FileSystemReader(str(path)), no_dist=not distributed)
    return payload


@contextmanager
def _dcp_in(distributed: bool):
    """DCP warns on every use without a process group; here one process is meant."""
    with warnings.catch_warnings():
        if not distributed:
            warnings.filterwarnings("ignore", message="torch.distributed is (disabled|unavailable)", category=UserWarning)
        yield


def saved_table_layouts(path: str | os.PathLike) -> dict[str, tuple[int, list[int]]]:
    """Per table of a sharded checkpoint: its momentum1's size (0 without one) and its weight's
    column widths (:func:`column_widths`), from the metadata alone."""
    entries = _tensor_entries(Path(path))
    layouts = {}
    for key, meta in entries.items():
        if key.startswith(TABLE_PREFIX) and key.endswith(".weight"):
            table = key[len(TABLE_PREFIX) : -len(".weight")]
            momentum = entries.get(f"{TABLE_PREFIX}{table}.momentum1")
            layouts[table] = (momentum.size.numel() if momentum is not None else 0,
                              column_widths((c.offsets, c.sizes) for c in meta.chunks))
    return layouts


def _tensor_entries(path: Path) -> dict:
    """The metadata (size, dtype, saved chunks) of every tensor in a DCP directory, by key."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    entries = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    return {key: meta for key, meta in entries.items() if isinstance(meta, TensorStorageMetadata)}


def _read_sharded_tensors(path: Path, entries: Optional[dict] = None) -> tuple[dict, dict]:
    """The tensors of a DCP directory that ``entries`` (:func:`_tensor_entries`, or a part of it;
    default every tensor) describe, whole, read in this process (no process group), and each
    one's saved chunks (offsets and sizes of the shards that wrote it)."""
    import torch
    import torch.distributed.checkpoint as dcp

    entries = _tensor_entries(path) if entries is None else entries
    tensors = {key: torch.empty(meta.size, dtype=meta.properties.dtype) for key, meta in entries.items()}
    if tensors:
        with _dcp_in(distributed=False):
            dcp.load(tensors, storage_reader=dcp.FileSystemReader(str(path)), no_dist=True)
    return tensors, {key: entries[key].chunks for key in tensors}
