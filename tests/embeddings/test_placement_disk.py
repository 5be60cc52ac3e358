"""A ram-budget plan whose cold tails do not fit the free disk fails before training, before any
file is made, naming the tables, their bytes, the free bytes and the directory. The small disk is
real: a tmpfs of a few pages mounted for the test (it needs root, as this machine and CI run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from recsys.data.config import DataConfig
from recsys.embeddings.placement import check_disk_space, cold_bytes, hot_rows
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.specs import TableOptimizer
from recsys.embeddings.tables import PhysicalTable
from recsys.models.config import DLRMConfig
from recsys.train.config import TrainerConfig, TrainJobConfig
from recsys.train.loop import train


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) → a directory on a fresh tmpfs of ``size`` bytes, unmounted afterwards."""
    mounted = []

    def mount(size: str) -> Path:
        target = tmp_path / f"disk{len(mounted)}"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], check=True)


def test_cold_bytes_are_the_weights_of_the_rows_past_the_hot_prefix():
    tables = [PhysicalTable("a", 1000, 8), PhysicalTable("b", 10, 8)]
    hot = hot_rows(tables, 4 * 1010 + 32 * 110, TableOptimizer.rowwise_adagrad)  # [100, 10]
    assert cold_bytes(tables, hot) == {"a": 900 * 32}  # the optimizer state stays in RAM


def test_cold_tables_over_the_free_space_are_refused_naming_tables_bytes_and_directory(small_disk):
    disk = small_disk("64k")
    check_disk_space({"a": 60_000}, disk / "tables")  # fits (the folder is made later)
    with pytest.raises(ValueError) as error:
        check_disk_space({"a": 50_000, "b": 20_000}, disk / "tables")
    message = str(error.value)
    assert "70,000 bytes" in message and "65,536 bytes" in message and str(disk / "tables") in message
    assert "tables: a 48.83 KiB, b 19.53 KiB" in message  # largest first
    assert "placement.disk_dir" in message and "placement.ram_budget" in message


def test_a_run_whose_cold_tables_exceed_the_disk_fails_before_training(tiny_dataset, tmp_path, small_disk):
    disk = small_disk("16k")  # 26 tables of 51 rows x 8 floats on disk: about 42 KB, nearly all cold
    cfg = TrainJobConfig(
        data=DataConfig(path=str(tiny_dataset), batch_size=256),
        model=DLRMConfig(8, [16, 8], [16, 1]),
        trainer=TrainerConfig(max_steps=2, progress=False, tensorboard=False),
    )
    cfg.placement = PlacementConfig(ram_budget="7KB", disk_dir=str(disk / "tables"))  # 5.2 KB of it: every row's state
    with pytest.raises(ValueError, match=r"placement: the cold tables need .* on disk, but .*disk0/tables has"):
        train(cfg, tmp_path / "run")
    assert not (disk / "tables").exists()  # no file made
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no step trained

    cfg.placement = PlacementConfig(ram_budget="7KB", disk_dir=str(small_disk("1m") / "tables"))
    assert train(cfg, tmp_path / "fits").steps == 2  # the same plan on a disk that holds it trains


def test_the_prefetcher_queues_the_pages_of_the_rows_asked_for(tmp_path):
    from recsys.embeddings.disk_prefetch import PAGE_BYTES, RowPrefetcher, advise_random_access

    path = tmp_path / "cold.f32"
    mapped = torch.from_file(str(path), shared=True, size=PAGE_BYTES, dtype=torch.float32)  # 4 pages
    advise_random_access(mapped)
    # table 0: rows of 256 bytes from byte 0; table 1: rows of 96 bytes from byte 2 * PAGE_BYTES
    prefetch = RowPrefetcher(path, [0, 2 * PAGE_BYTES], [256, 96])
    rows_per_page = PAGE_BYTES // 256
    assert prefetch(torch.tensor([0, 0]), torch.tensor([0, 1])) == 1  # two rows on one page
    assert prefetch(torch.tensor([0, 0]), torch.tensor([0, rows_per_page])) == 2
    straddling = PAGE_BYTES // 96  # this row of table 1 starts on one page and ends on the next
    assert prefetch(torch.tensor([1]), torch.tensor([straddling])) == 2
    prefetch.close()
