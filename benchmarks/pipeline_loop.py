"""The headline training figure: ``recsys-train`` itself, as a user runs it.

Each repeat is one ``python -m recsys.cli.train`` process (it re-executes itself under tcmalloc,
as the installed command does) training the Kaggle DLRM over full tables (the model the in-memory
step and torchrec's DLRM train: :func:`loop_overrides`) for ``steps`` steps
from the Parquet loader (shuffling, prefetch thread), with its progress bar, logging and
metrics file. The figure is the loop's own samples/s (``eval.json``: train samples over the
seconds spent in the loop, the loader's waits included; the one validation and the final
evaluation at the end of the run are outside it), so it is what the real loop sustains.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline_model import BATCH_SIZE, DENSE_LR, TABLE_LR

log = logging.getLogger("bench_pipeline.loop")


def loop_overrides(data: Path, steps: int, run_dir: Path, precision: str) -> list[str]:
    """recsys-train's overrides for the model the in-memory step and torchrec train: the
    reference DLRM (``model=kaggle``'s layer sizes with DLRMConfig's default options, not the
    preset's FM component, constant vector and batch norm, which torchrec's DLRM lacks), dense
    Adagrad and row-wise Adagrad tables at the same rates."""
    from recsys.models.config import DLRMConfig

    reference = DLRMConfig()
    options = [f"model.{name}={str(getattr(reference, name)).lower()}"
               for name in ("fm_component", "first_order", "dense_norm", "bottom_last_relu")]
    return [
        "model=kaggle",
        *options,
        f"model.dense_precision={precision}",
        "trainer.dense_optimizer=adagrad",
        f"trainer.dense_lr={DENSE_LR}",
        "trainer.table_optimizer.kind=rowwise_adagrad",
        f"trainer.table_optimizer.lr={TABLE_LR}",
        "embedding=full",
        f"data.path={data}",
        f"data.batch_size={BATCH_SIZE}",
        "trainer.epochs=1000",  # a small dataset cycles; max_steps ends the run
        f"trainer.max_steps={steps}",
        "trainer.eval_every_steps=0",
        "trainer.val_batches=1",
        "trainer.keep_best=false",
        "trainer.checkpoint_at_end=false",  # a table-sized write whose write-back would overlap the next run
        "trainer.tensorboard=false",
        "eval.max_batches=1",
        f"hydra.run.dir={run_dir}",
    ]


def time_train_loop(data: Path, steps: int, repeats: int, timeout: float, precision: str) -> list[dict]:
    """``repeats`` runs of ``recsys-train`` (dense layers at ``precision``); each run's samples/s,
    steps and allocator line."""
    runs = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench_pipeline_loop_") as tmp:
            run_dir = Path(tmp) / "run"
            cmd = [sys.executable, "-m", "recsys.cli.train", *loop_overrides(data, steps, run_dir, precision)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"recsys-train failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
            record = json.loads((run_dir / "eval.json").read_text())
            log_text = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else proc.stderr
            allocator = next((line.split("allocator: ", 1)[1] for line in log_text.splitlines() if "allocator: " in line), "?")
        train = record["train"]
        runs.append({"samples_per_s": train["samples_per_s"], "steps": train["steps"], "allocator": allocator})
        log.info("recsys-train repeat %d: %.0f samples/s (%s)", r + 1, train["samples_per_s"], allocator)
    return runs
