"""Crash-proof runs: SIGKILL a training run at random points, mid-step and mid-checkpoint-write,
resume each time from the newest checkpoint that verifies, and reach the unbroken run's weights."""

from __future__ import annotations

import importlib.util
import logging
import random
import signal
import os
from pathlib import Path

import pytest
import torch

from recsys.core.checkpoint import load_checkpoint, resolve_checkpoint
from recsys.train.selection import best_checkpoint_path

CHILD = Path(__file__).with_name("kill_child.py")
REPO = Path(__file__).resolve().parents[2]
# where the kills land: each kind at a random occurrence (32 steps, ~11 checkpoints per run)
KILL_KINDS = {
    "dense_step": (1, 30),
    "ckpt_partial": (1, 8),
    "ckpt_fsync": (1, 16),
    "ckpt_rename": (1, 8),
    "best_link": (1, 3),
    "timer": (300, 6000),  # milliseconds after the child's imports: anywhere in the run
}
MIN_KILLS = 12


def load_child():
    spec = importlib.util.spec_from_file_location("kill_child", CHILD)
    child = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(child)
    return child


def run_child(dataset: Path, run_dir: Path, kind: str, n: int) -> int:
    """Fork a training process killed at (kind, n); its exit code, or minus the killing signal."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            torch.set_num_threads(1)  # no OpenMP pool inherited across fork
            load_child().run(str(dataset), run_dir, kind, n)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def final_model(run_dir: Path) -> dict:
    return load_checkpoint(run_dir)["model"]


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_reaches_the_unbroken_weights(tiny_dataset, tmp_path):
    unbroken = tmp_path / "unbroken"
    assert run_child(tiny_dataset, unbroken, "none", 0) == 0

    rng = random.Random(2026)
    broken = tmp_path / "broken"
    kinds = list(KILL_KINDS) * 4
    rng.shuffle(kinds)
    kills, log = 0, []
    for kind in kinds:  # until MIN_KILLS kills landed: a timer may fire after a run has finished
        if kills >= MIN_KILLS:
            break
        n = rng.randint(*KILL_KINDS[kind])
        code = run_child(tiny_dataset, broken, kind, n)
        log.append((kind, n, code))
        if code == -signal.SIGKILL:
            kills += 1
            continue
        # the run completed before this kill point: start over, as a fresh run
        assert code == 0, log
        for path in sorted(broken.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    assert run_child(tiny_dataset, broken, "none", 0) == 0  # finish the run
    print(f"kill points: {kills} of {len(kinds)} tries: {log}")
    assert kills >= MIN_KILLS, log

    a, b = final_model(unbroken), final_model(broken)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    best_a = load_checkpoint(best_checkpoint_path(unbroken))
    best_b = load_checkpoint(best_checkpoint_path(broken))
    assert best_b["state"]["step"] == best_a["state"]["step"]
    for key in best_a["model"]:
        torch.testing.assert_close(best_b["model"][key], best_a["model"][key], rtol=1e-5, atol=1e-6, msg=key)


def test_a_torn_checkpoint_is_skipped_for_the_previous_one_with_a_warning(tiny_dataset, tmp_path, caplog):
    from recsys.train.loop import train

    cfg = load_child().job(str(tiny_dataset), tmp_path)
    cfg.trainer.epochs, cfg.trainer.eval_every_steps = 1, 0
    train(cfg, tmp_path)
    newest = resolve_checkpoint(tmp_path)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a torn write on a filesystem without atomic rename
    with caplog.at_level(logging.WARNING, logger="recsys.core.checkpoint"):
        fallback = resolve_checkpoint(tmp_path)
    assert fallback != newest and fallback.name < newest.name
    assert any(newest.name in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)
    load_checkpoint(fallback)  # and it loads
