"""A rank that dies ends a torchrun run within a bounded time, with an error naming the rank."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_killing_one_rank_fails_the_run_naming_it(tiny_dataset, tmp_path):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--monitor-interval=0.5",
        "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0",
        "-m", "recsys.cli.train", f"data.path={tiny_dataset}", "model=tiny", "trainer.epochs=1000",
        "trainer.progress=false", "trainer.tensorboard=false", "data.batch_size=64", f"hydra.run.dir={tmp_path}/run",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (tmp_path / "run" / "sharding_plan.json").exists():
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(1)
        time.sleep(3)  # training steps are running
        pids = {}
        for entry in Path("/proc").iterdir():  # torchrun's workers: its children, LOCAL_RANK in their environment
            try:
                env = (entry / "environ").read_bytes().split(b"\0") if entry.name.isdigit() else []
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if env else -1
            except OSError:
                continue
            if b"LOCAL_RANK=1" in env and parent == proc.pid:
                pids[1] = int(entry.name)
        assert 1 in pids, "rank 1 not found"
        killed = time.monotonic()
        os.kill(pids[1], signal.SIGKILL)
        output, _ = proc.communicate(timeout=120)
        elapsed = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert elapsed < 60
    assert "rank" in output and ("local_rank: 1" in output or "rank 1" in output), output[-3000:]
