"""The in-memory training step, measured in a child process under a chosen allocator.

The parent (:func:`train_child`) starts ``python pipeline_worker.py ...`` with ``LD_PRELOAD`` and
``RECSYS_ALLOCATOR`` set for the allocator it wants (it must be chosen before a process
starts); the child materialises batches in memory, builds the model, times ``--repeats`` runs
of ``--steps`` steps (after ``--warmup``), optionally measures the roofline's primitives after
each repeat, and prints its result as one JSON line (:func:`common.emit_result`). The parent
checks the child ran under the allocator it asked for.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit_result, rate, run_worker, time_call  # noqa: E402
from pipeline_model import BATCH_SIZE, BUILDERS, MODELS, materialise_batches  # noqa: E402
from pipeline_roofline import ROOFLINE_BATCHES, Roofline  # noqa: E402
from recsys.models.config import DensePrecision  # noqa: E402
from recsys.models.dlrm import computes_bf16  # noqa: E402

log = logging.getLogger("bench_pipeline.worker")


def time_training(model, optimizer, batches: list, warmup: int, steps: int, repeats: int,
                  after_repeat=None) -> tuple[list[float], float]:
    """Seconds of each repeat of ``steps`` training steps (after ``warmup`` steps), final loss.

    ``after_repeat`` (untimed) runs after each repeat: the roofline's primitives are measured
    there, interleaved with the training they bound, so both see the same load from other
    processes on a shared machine.
    """
    import torch

    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    cursor = 0
    loss = torch.zeros(())

    def run(n: int) -> None:
        nonlocal cursor, loss
        for _ in range(n):
            batch = batches[cursor % len(batches)]
            cursor += 1
            logits = model(batch.dense, batch.sparse).reshape(-1)
            loss = loss_fn(logits, batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # table rows are updated inside (fused optimizer)
            optimizer.step()

    run(warmup)
    times = []
    for _ in range(repeats):
        times += time_call(lambda: run(steps), 1)
        if after_repeat is not None:
            after_repeat()
    return times, float(loss.detach())


def worker_allocator_info() -> dict:
    from recsys.allocator import active_allocator, describe_allocator

    line = describe_allocator()
    log.info("worker %d: %s", os.getpid(), line)
    return {"active": active_allocator(), "describe": line, "ld_preload": os.environ.get("LD_PRELOAD", ""),
            "recsys_allocator_env": os.environ.get("RECSYS_ALLOCATOR", "")}


def train_worker(args: argparse.Namespace) -> dict:
    import torch

    allocator = worker_allocator_info()
    torch.manual_seed(0)
    batches, num_embeddings = materialise_batches(Path(args.data), args.warmup + args.steps)
    start = time.perf_counter()
    model, optimizer = BUILDERS[args.model](Path(args.data), num_embeddings, args.dense_precision)
    build_seconds = time.perf_counter() - start
    bf16 = computes_bf16(args.dense_precision, "cpu")
    roofline = Roofline(batches[:ROOFLINE_BATCHES], num_embeddings, bf16) if args.roofline else None
    measurements: list[dict] = []
    times, loss = time_training(model, optimizer, batches, args.warmup, args.steps, args.repeats,
                                after_repeat=roofline and (lambda: measurements.append(roofline.measure())))
    result = {"model": args.model, "allocator": allocator, "seconds": times, "steps": args.steps,
              "samples_per_s": rate(args.steps * BATCH_SIZE, times), "final_loss": loss,
              "build_seconds": build_seconds, "table_rows": sum(num_embeddings.values()),
              "threads": torch.get_num_threads(), "dense_precision": "bf16" if bf16 else "fp32"}
    if roofline is not None:
        result["roofline"] = roofline.summarise(measurements)
        per_repeat = [args.steps * BATCH_SIZE / t for t in times]
        result["roofline"]["train_vs_roofline_per_repeat"] = [
            t / r for t, r in zip(per_repeat, result["roofline"]["roofline_per_repeat"])]
    return result


def worker_argv(args: argparse.Namespace, data: Path, model: str, roofline: bool, precision: str) -> list[str]:
    argv = [str(Path(__file__).resolve()), "--model", model, "--data", str(data), "--dense-precision", precision,
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    return argv + (["--roofline"] if roofline else [])


def train_child(args, data: Path, model: str, allocator: str, roofline: bool = False, precision: str | None = None) -> dict:
    """Measure training in a child process under ``allocator``, dense layers at ``precision``
    (default ``--dense-precision``); verify it really ran under the allocator."""
    precision = precision or args.dense_precision
    log.info("training %s under %s, dense precision %s%s ...", model, allocator, precision, " (+ roofline)" if roofline else "")
    result = run_worker(worker_argv(args, data, model, roofline, precision), allocator, timeout=args.worker_timeout)
    result["allocator"]["requested"] = allocator
    result["allocator"]["ok"] = result["allocator"]["active"] == allocator
    if not result["allocator"]["ok"]:
        log.error("%s child asked for %s but ran under %s", model, allocator, result["allocator"]["active"])
    log.info("%s/%s: %.0f samples/s", model, allocator, result["samples_per_s"])
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--roofline", action="store_true")
    p.add_argument("--dense-precision", choices=[d.value for d in DensePrecision], required=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    emit_result(train_worker(p.parse_args(argv)))


if __name__ == "__main__":
    main()
