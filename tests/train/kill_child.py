"""A training run that SIGKILLs itself at one chosen point (tests/train/test_kill_resume.py forks
one per kill point: a real process, killed for real, without paying the imports again).

:func:`job` resumes from the run directory's newest valid checkpoint when there is one.
:func:`arm` picks the point:
``timer`` (N milliseconds after training starts: anywhere), ``dense_step`` (between the fused
table update in the backward and the dense optimizer's step of the N-th update),
``ckpt_partial`` (half of the N-th checkpoint's bytes written), ``ckpt_fsync`` (after the N-th
temporary file or checksum is flushed, before any rename), ``ckpt_rename`` (the N-th checkpoint's
checksum renamed, its .pt not yet), ``best_link`` (the N-th best.pt link half done) or
``none``. The kill is a real SIGKILL of this process at that point, nothing mocked around it.
"""

from __future__ import annotations

import io
import os
import signal
import threading
from pathlib import Path

import torch

from recsys.core import checkpoint as ckpt
from recsys.data.config import DataConfig
from recsys.models.config import DLRMConfig
from recsys.train import selection
from recsys.train.config import TrainerConfig, TrainJobConfig
from recsys.train.loop import train


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_on_call(n: int, before=None):
    """A counter that kills on its n-th call (after ``before`` ran)."""
    calls = [0]

    def hit(*args):
        calls[0] += 1
        if calls[0] == n:
            if before is not None:
                before(*args)
            die()

    return hit


def arm(kind: str, n: int) -> None:
    if kind == "timer":
        threading.Timer(n / 1000, die).start()
    elif kind == "dense_step":
        hit, step = kill_on_call(n), torch.optim.Adagrad.step
        torch.optim.Adagrad.step = lambda self, *a, **k: (hit(), step(self, *a, **k))[1]
    elif kind == "ckpt_partial":
        def half_write(payload, path):
            buf = io.BytesIO()
            save(payload, buf)
            Path(path).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])

        hit, save = kill_on_call(n, half_write), torch.save
        torch.save = lambda payload, path, *a, **k: (hit(payload, path), save(payload, path, *a, **k))[1]
    elif kind == "ckpt_fsync":
        hit, fsync = kill_on_call(n), ckpt._fsync
        ckpt._fsync = lambda path: (fsync(path), hit())[0]
    elif kind == "ckpt_rename":
        hit, replace = kill_on_call(n), os.replace
        # the .pt rename follows its checksum's: kill between the two
        os.replace = lambda src, dst: (replace(src, dst), str(dst).endswith(".sha256") and hit())[0]
    elif kind == "best_link":
        hit, link = kill_on_call(n), selection.os.link
        selection.os.link = lambda src, dst: (link(src, dst), str(dst).endswith(".sha256.tmp") and hit())[0]
    elif kind != "none":
        raise SystemExit(f"unknown kill kind {kind!r}")


def job(dataset: str, run_dir: Path) -> TrainJobConfig:
    try:
        resume = str(ckpt.resolve_checkpoint(run_dir))
    except FileNotFoundError:
        resume = None
    return TrainJobConfig(
        data=DataConfig(path=dataset, batch_size=256, eval_batch_size=1024, prefetch=2),
        model=DLRMConfig(8, [16, 8], [16, 1]),
        trainer=TrainerConfig(
            epochs=2, checkpoint_every_steps=3, eval_every_steps=5, keep_checkpoints=2, progress=False,
            tensorboard=False, log_every_steps=4, resume_from=resume,
        ),
    )


def run(dataset: str, run_dir: Path, kind: str, n: int) -> None:
    """Train in this (forked) process, killed at the armed point; exit 0 when the run finished."""
    cfg = job(dataset, run_dir)
    arm(kind, n)
    train(cfg, run_dir)
