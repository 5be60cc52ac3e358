"""The sharded (DCP directory) checkpoint format, in one process: written whole or not at all,
verified file by file, torn or damaged directories skipped for the previous checkpoint, read back
whole without a process group, and ``best.dcp`` linked like ``best.pt``."""

from __future__ import annotations

import logging

import pytest
import torch

from recsys.core.checkpoint import (
    CorruptCheckpointError,
    checkpoint_path,
    column_widths,
    list_checkpoints,
    load_checkpoint,
    make_payload,
    merge_column_states,
    resolve_checkpoint,
    save_checkpoint,
    save_sharded_checkpoint,
)
from recsys.train.selection import best_checkpoint_path, link_best


def tensors(seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "model.top.0.weight": torch.randn(3, 4, generator=gen),
        "tables.C1.weight": torch.randn(10, 8, generator=gen),
        "tables.C1.momentum1": torch.rand(10, generator=gen),
    }


def save(run, step: int, keep: int | None = None) -> dict:
    saved = tensors(step)
    payload = make_payload(model={}, recipe={}, state={"step": step}, config={}, dense_optimizer={"state": {}})
    del payload["model"]
    save_sharded_checkpoint(checkpoint_path(run, step, sharded=True), saved, payload, keep=keep)
    return saved


def test_a_sharded_checkpoint_reads_back_whole_in_one_process(tmp_path):
    saved = save(tmp_path, 3)
    payload = load_checkpoint(tmp_path)
    assert payload["state"] == {"step": 3}
    torch.testing.assert_close(payload["model"]["top.0.weight"], saved["model.top.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(payload["tables"]["C1"]["weight"], saved["tables.C1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(payload["tables"]["C1"]["momentum1"], saved["tables.C1.momentum1"], rtol=0, atol=0)


def test_rotation_and_listing_mix_files_and_directories_by_step(tmp_path):
    save(tmp_path, 1)
    save_checkpoint(checkpoint_path(tmp_path, 2), make_payload(model={}, recipe={}, state={"step": 2}, config={}))
    save(tmp_path, 3, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step_000000002.pt", "step_000000003.dcp"]
    assert resolve_checkpoint(tmp_path).name == "step_000000003.dcp"


def test_a_torn_directory_never_has_the_checkpoints_name_and_is_ignored(tmp_path):
    save(tmp_path, 1)
    torn = checkpoint_path(tmp_path, 2, sharded=True).with_suffix(".dcp.tmp")
    torn.mkdir()  # a run killed while its ranks wrote step 2
    (torn / "__0_0.distcp").write_bytes(b"half")
    assert resolve_checkpoint(tmp_path).name == "step_000000001.dcp"
    save(tmp_path, 2)  # the next save of that step replaces the torn leftovers
    assert not torn.exists() and resolve_checkpoint(tmp_path).name == "step_000000002.dcp"


@pytest.mark.parametrize("damage", ["shard", "missing_checksums", "extra_file", "missing_file"])
def test_a_damaged_directory_is_skipped_for_the_previous_one_with_a_warning(tmp_path, caplog, damage):
    save(tmp_path, 1)
    save(tmp_path, 2)
    newest = checkpoint_path(tmp_path, 2, sharded=True)
    if damage == "shard":
        shard = next(newest.glob("__0_*.distcp"))
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte
        shard.write_bytes(bytes(data))
    elif damage == "missing_checksums":
        (newest / "checksums.json").unlink()
    elif damage == "extra_file":
        (newest / "__1_0.distcp").write_bytes(b"a rank that was not there")
    else:
        (newest / "payload.pt").unlink()
    with caplog.at_level(logging.WARNING):
        assert resolve_checkpoint(tmp_path).name == "step_000000001.dcp"
    assert "step_000000002.dcp" in caplog.text
    with pytest.raises(CorruptCheckpointError):
        resolve_checkpoint(newest)  # named explicitly, it must verify


def test_best_dcp_follows_the_best_step_and_survives_rotation(tmp_path):
    saved = save(tmp_path, 1)
    link_best(checkpoint_path(tmp_path, 1, sharded=True), tmp_path)
    save(tmp_path, 2, keep=1)  # rotation deletes step 1; best.dcp keeps its files
    assert not checkpoint_path(tmp_path, 1, sharded=True).exists()
    best = best_checkpoint_path(tmp_path)
    assert best.name == "best.dcp"
    payload = load_checkpoint(best)
    assert payload["state"] == {"step": 1}
    torch.testing.assert_close(payload["tables"]["C1"]["weight"], saved["tables.C1.weight"], rtol=0, atol=0)
    link_best(checkpoint_path(tmp_path, 2, sharded=True), tmp_path)
    assert load_checkpoint(best_checkpoint_path(tmp_path))["state"] == {"step": 2}
    assert [p.name for p in (tmp_path / "checkpoints").glob(".best.*")] == [".best.000000002.dcp"]  # the old copy went
    # a later one-process best (a run resumed on one rank) replaces it
    save_checkpoint(checkpoint_path(tmp_path, 3), make_payload(model={}, recipe={}, state={"step": 3}, config={}))
    link_best(checkpoint_path(tmp_path, 3), tmp_path)
    assert best_checkpoint_path(tmp_path).name == "best.pt"
    assert not list((tmp_path / "checkpoints").glob(".best.*")) and not (tmp_path / "checkpoints" / "best.dcp").exists()


def test_column_shard_states_merge_into_the_row_state_weighted_by_width():
    """Row-wise Adagrad sums each step's mean squared gradient over a shard's columns: the whole
    row's is the shards' mean weighted by width."""
    grads = torch.randn(5, 3, 16)  # steps, rows, columns
    widths = [4, 12]
    shards = torch.cat([grads[..., :4].square().mean(-1).sum(0), grads[..., 4:].square().mean(-1).sum(0)])  # (2 * rows,)
    whole = grads.square().mean(-1).sum(0)
    torch.testing.assert_close(merge_column_states(shards, 3, widths), whole)
    assert merge_column_states(whole, 3, widths) is whole  # already one state per row
    with pytest.raises(ValueError, match="table t_C1: its saved momentum1 has 7 values"):
        merge_column_states(torch.zeros(7), 3, widths, "t_C1")
    assert column_widths([((0, 8), (10, 4)), ((0, 0), (10, 8)), ((10, 0), (5, 8))]) == [8, 4]
