"""How training saves and restores checkpoints, in one process or sharded over ranks.

A one-process run writes the ``.pt`` format; a sharded run writes a ``torch.distributed.checkpoint``
(DCP) directory into which every rank saves the shards it holds, its tables' rows and their
row-wise Adagrad state, nothing gathered (the format: :mod:`recsys.core.checkpoint`). Any world
size resumes either, and any placement: a one-process run reads a sharded checkpoint whole, and
a one-process checkpoint of other tiers table by table (:func:`~recsys.models.build.load_weights`);
a sharded run loads a sharded one through DCP, which reads each rank's rows of the new plan from
whichever files hold them, and a one-process ``.pt`` (tiered or not) by mapping the file and
copying each rank's rows out of its tables (the rank reads only their pages). The dense layers
and their optimizer, the loop position and every rank's RNG state come back too, so a resumed
run continues the unbroken one's steps.

Column-wise sharding gives each column shard its own row-wise Adagrad state (torchrec keeps one
per shard). Read whole, a table's shard states merge exactly into the whole row's (their mean
weighted by width, :func:`recsys.core.checkpoint.merge_column_states`); spread over column shards,
the whole row's state goes to every shard: the state of a row-wise optimizer keeps no per-column
figure, so that is an estimate (exact when the columns' squared gradients are alike). A sharded
checkpoint resumed under another column split takes that path for the optimizer state alone
(merged, then spread; every rank reads all of it, 1/dim of the weights' bytes), while DCP
reshards the weights, each rank reading only its rows and columns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from torch.distributed._shard.metadata import ShardMetadata
from torch.distributed._shard.sharded_tensor import Shard, ShardedTensor
from torchrec.distributed.model_parallel import DistributedModelParallel

from recsys.core.checkpoint import (
    MODEL_PREFIX,
    TABLE_PREFIX,
    checkpoint_path,
    column_widths,
    is_sharded,
    load_checkpoint,
    load_sharded_checkpoint,
    load_table_momenta,
    make_payload,
    resolve_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
    save_sharded_checkpoint,
    saved_table_layouts,
)
from recsys.models.build import LOOKUP_PREFIX, load_all_but_tables, load_weights, recipe_to_dict, saved_lookup_tables
from recsys.models.dlrm import DLRM
from recsys.train.config import EvalModel, TrainJobConfig, job_config_dict
from recsys.train.distributed import World
from recsys.train.selection import best_checkpoint_path

log = logging.getLogger(__name__)


class Checkpointer:
    """Saves and restores one run's model, dense optimizer, loop state and RNG.

    Args:
        cfg: the job (its recipe, config and ``trainer.keep_checkpoints`` go into checkpoints).
        run_dir: where ``checkpoints/`` goes.
        model: the model; in a sharded run, the module DistributedModelParallel sharded in place.
        dmp: the DistributedModelParallel wrapper in a sharded run, else None.
        dense_opt: the dense layers' torch optimizer.
        world: this rank's place in a sharded run, else None.
    """

    def __init__(
        self,
        cfg: TrainJobConfig,
        run_dir: Path,
        model: DLRM,
        dmp: Optional[DistributedModelParallel],
        dense_opt: torch.optim.Optimizer,
        world: Optional[World],
    ) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.model, self.dmp, self.dense_opt, self.world = model, dmp, dense_opt, world
        self._saved: dict[int, Optional[Path]] = {}

    def save(self, state: dict) -> Optional[Path]:
        """Save the loop position ``state`` (once per step); the checkpoint's path on rank 0, None elsewhere."""
        step = state["step"]
        if step in self._saved:
            return self._saved[step]
        payload = make_payload(
            model={} if self.world else self.model.state_dict(),
            recipe=recipe_to_dict(self.cfg.recipe()),
            state=state,
            config=job_config_dict(self.cfg),
            dense_optimizer=self.dense_opt.state_dict(),
        )
        keep = self.cfg.trainer.keep_checkpoints
        if self.world:
            del payload["model"]  # the tensors go through DCP
            payload["rank_rng"] = [None] * self.world.size
            dist.all_gather_object(payload["rank_rng"], rng_state())
            path = checkpoint_path(self.run_dir, step, sharded=True)
            self._saved[step] = save_sharded_checkpoint(path, sharded_tensors(self.model, self.dmp), payload, keep)
        else:
            self._saved[step] = save_checkpoint(checkpoint_path(self.run_dir, step), payload, keep)
        return self._saved[step]

    def restore(self, location: str | Path) -> tuple[Path, dict]:
        """Resume from a checkpoint (a file, a directory, or a run's newest): weights, dense
        optimizer and RNG; returns the checkpoint's path and its loop state."""
        path = self._agreed(lambda: resolve_checkpoint(location))
        payload = self._load_weights(path, optimizer_state=True)
        if "dense_optimizer" not in payload:
            raise ValueError(f"{path} is a final (compacted) model, not a training checkpoint: it cannot be resumed")
        self.dense_opt.load_state_dict(payload["dense_optimizer"])
        ranks = payload.get("rank_rng")
        same_world = ranks is not None and self.world is not None and len(ranks) == self.world.size
        restore_rng(ranks[self.world.rank] if same_world else payload["rng"])
        return path, payload["state"]

    def load_best(self, step: int, best_auc: Optional[float]) -> str:
        """Load the best checkpoint's weights when ``eval.model=best`` and one exists; say which
        model the final evaluation sees."""
        best = self._agreed(lambda: best_checkpoint_path(self.run_dir) if best_checkpoint_path(self.run_dir).exists() else None)
        if EvalModel(self.cfg.eval.model) is EvalModel.last or best is None:
            return f"last (step {step})"
        payload = self._load_weights(best, optimizer_state=False)
        return f"best (step {payload['state']['step']}, valid AUC {best_auc:.5f})"

    def _agreed(self, decide):
        """``decide()`` on rank 0, the same answer on every rank (one rank reads the disk)."""
        if not self.world:
            return decide()
        box = [decide() if self.world.leader else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _load_weights(self, path: Path, optimizer_state: bool) -> dict:
        """Put ``path``'s weights into the model (or this rank's shards); its payload without tensors."""
        if self.world and is_sharded(path):
            same_split = not optimizer_state or self._same_column_split(path)
            payload = load_sharded_checkpoint(path, sharded_tensors(self.model, self.dmp, optimizer_state=same_split))  # in place
            if not same_split:  # each column shard's optimizer state from the whole row's
                scatter_momenta(load_table_momenta(path), self.model, self.dmp)
            return payload
        payload = load_checkpoint(path, mmap=self.world is not None)
        if not self.world:
            load_weights(self.model, payload, optimizer_state)
            return payload
        # each rank copies its rows out of views of the mapped file, reading only their pages
        saved = saved_lookup_tables(payload, self.model)
        load_all_but_tables(self.model, payload.pop("model"))
        scatter_weights({name: states["weight"] for name, states in saved.items()}, self.model, self.dmp)
        if optimizer_state:
            momenta = {name: states["momentum1"] for name, states in saved.items() if "momentum1" in states}
            scatter_momenta(momenta, self.model, self.dmp)
        return payload

    def _same_column_split(self, path: Path) -> bool:
        """Whether every table of the sharded checkpoint ``path`` has this run's column shards
        (so DCP can load its optimizer state shard to shard)."""
        saved = saved_table_layouts(path)
        for name, (weight, momentum) in table_states(self.model, self.dmp).items():
            widths = column_widths((m.shard_offsets, m.shard_sizes) for m in weight.metadata().shards_metadata)
            if saved.get(name) != (momentum.size().numel() if momentum is not None else 0, widths):
                return False
        return True


def table_states(model: DLRM, dmp: DistributedModelParallel) -> dict[str, list]:
    """Per physical table, its sharded weight and (row-wise Adagrad) momentum: ShardedTensors
    whose local shards are views of this rank's fused kernel state. A tiered lookup's table is
    a hot piece and cold pieces, each a table of its own collection; its ShardedTensors are
    assembled from theirs (every rank must call it then), so a checkpoint holds whole tables
    whatever the tiers."""
    optimizer = dmp.fused_optimizer.state_dict()["state"]
    pieces: dict[str, list] = {}  # plan table -> [(first row, weight, momentum)] of its pieces
    for _, part in model.embedding.lookup.shardable_parts():
        weights = part.ebc.state_dict()
        for table, (whole, _, first) in zip(part.tables, part.origins):
            suffix = f"embedding_bags.{table.name}.weight"
            weight = next(v for k, v in weights.items() if k.endswith(suffix))
            state = next((v for k, v in optimizer.items() if k.endswith(suffix)), {})
            pieces.setdefault(whole.name, []).append((first, weight, state.get(f"{table.name}.momentum1")))
    states = {}
    for table in model.embedding.plan.tables:
        own = pieces[table.name]
        if len(own) == 1 and own[0][0] == 0:
            states[table.name] = list(own[0][1:])
            continue
        momenta = [(first, m) for first, _, m in own if m is not None]
        states[table.name] = [
            _assembled([(first, w) for first, w, _ in own], [table.num_embeddings, table.dim]),
            _assembled(momenta, [table.num_embeddings]) if momenta else None,
        ]
    return states


def _assembled(pieces: list[tuple[int, ShardedTensor]], size: list[int]) -> ShardedTensor:
    """One ShardedTensor of global ``size`` from pieces holding its rows from their first row on:
    the local shards (views) of each, moved down by that row."""
    shards = [
        Shard(shard.tensor, ShardMetadata([first + shard.metadata.shard_offsets[0], *shard.metadata.shard_offsets[1:]],
                                          list(shard.metadata.shard_sizes), shard.metadata.placement))
        for first, tensor in pieces
        for shard in tensor.local_shards()
    ]
    return ShardedTensor._init_from_local_shards(shards, *size, process_group=dist.group.WORLD)


def sharded_tensors(model: DLRM, dmp: DistributedModelParallel, optimizer_state: bool = True) -> dict:
    """What a sharded checkpoint holds, as live views of this rank's state (so DCP saves from
    them and loads into them in place): ``model.<key>`` for everything but the lookup, and
    ``tables.<table>.weight`` / ``.momentum1`` ShardedTensors."""
    tensors = {MODEL_PREFIX + k: v for k, v in model.state_dict().items() if not k.startswith(LOOKUP_PREFIX)}
    for name, (weight, momentum) in table_states(model, dmp).items():
        tensors[f"{TABLE_PREFIX}{name}.weight"] = weight
        if momentum is not None and optimizer_state:
            tensors[f"{TABLE_PREFIX}{name}.momentum1"] = momentum
    return tensors


@torch.no_grad()
def scatter_weights(weights: dict, model: DLRM, dmp: DistributedModelParallel) -> None:
    """Copy whole tables' weights ``{table: (rows, dim)}`` (tensors, or
    :class:`~recsys.embeddings.saved_tables.TableRows`) into this rank's shards of them."""
    for name, (weight, _) in table_states(model, dmp).items():
        for shard in weight.local_shards():
            (row, col), (rows, cols) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
            shard.tensor.copy_(weights[name][row : row + rows][:, col : col + cols])


@torch.no_grad()
def scatter_momenta(momenta: dict, model: DLRM, dmp: DistributedModelParallel) -> None:
    """Copy whole tables' row-wise Adagrad states ``{table: (rows,)}`` (tensors, or
    :class:`~recsys.embeddings.saved_tables.TableRows`) into this rank's shards of them; every
    column shard of a row gets the row's state."""
    for name, (_, momentum) in table_states(model, dmp).items():
        if momentum is None or name not in momenta:
            continue
        total = len(momenta[name])
        for shard in momentum.local_shards():
            # column shard k's states sit at [k * total, (k + 1) * total): each gets the whole row's
            (row,), (rows,) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
            shard.tensor.copy_(momenta[name][row % total : row % total + rows])
