"""The roofline of the pipeline benchmark: what one training step of the Kaggle DLRM costs if the
machine only did the unavoidable work, at the best rates it reaches on the primitives involved.

It must be a bound: the benchmark asserts, per repeat, that the measured step is no faster. So
every primitive is timed as the *fastest* of its timings (a rate the machine showed it can reach),
not the median, and the embedding term counts only work no implementation can skip: gathering
each of the batch's rows once. (An earlier model timed ``index_select`` plus ``index_add_`` of
the rows as the embedding cost; FBGEMM's fused backward does that work faster than those two
generic ops, and one repeat beat the "bound".)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median, time_call  # noqa: E402
from pipeline_model import BATCH_SIZE, BOTTOM_MLP, EMBEDDING_DIM, TOP_MLP  # noqa: E402

ROOFLINE_BATCHES = 16  # batches whose ids the embedding primitive gathers


def linear_layers() -> list[tuple[str, int, int]]:
    """(name, in, out) of every Linear layer of the Kaggle DLRM."""
    layers, width = [], 13
    for i, out in enumerate(BOTTOM_MLP):
        layers.append((f"bottom{i}", width, out))
        width = out
    num_vectors = 27
    width = EMBEDDING_DIM + num_vectors * (num_vectors - 1) // 2
    for i, out in enumerate(TOP_MLP):
        layers.append((f"top{i}", width, out))
        width = out
    return layers


def gemm_shapes(batch: int) -> list[dict]:
    """Every GEMM of one training step: name, kind, (m, k, n) with batch count for bmm, FLOPs."""
    shapes = []
    for index, (name, fan_in, fan_out) in enumerate(linear_layers()):
        shapes.append({"name": f"{name}.fwd", "op": "mm", "m": batch, "k": fan_in, "n": fan_out})
        if index > 0:  # the first layer's input (the dense features) needs no gradient
            shapes.append({"name": f"{name}.grad_in", "op": "mm", "m": batch, "k": fan_out, "n": fan_in})
        shapes.append({"name": f"{name}.grad_w", "op": "mm", "m": fan_out, "k": batch, "n": fan_in})
    v, d = 27, EMBEDDING_DIM
    shapes.append({"name": "interaction.fwd", "op": "bmm", "b": batch, "m": v, "k": d, "n": v})
    shapes.append({"name": "interaction.grad_a", "op": "bmm", "b": batch, "m": v, "k": v, "n": d})
    shapes.append({"name": "interaction.grad_b", "op": "bmm", "b": batch, "m": d, "k": v, "n": v})
    for s in shapes:
        s["flops"] = 2 * s.get("b", 1) * s["m"] * s["k"] * s["n"]
    return shapes


def gemm_operands(shape: dict, dtype) -> tuple:
    """Operands of a GEMM laid out as autograd has them (weights are (out, in), row-major), in
    ``dtype`` (bfloat16 for dense layers in mixed precision, which autocast casts to it).

    Linear ``fwd`` is ``x @ W^T``, ``grad_in`` is ``g @ W``, ``grad_w`` is ``g^T @ x``; the
    interaction's forward is ``S @ S^T`` and its backward ``G @ S`` and ``S^T @ G``.
    """
    import torch

    kind = shape["name"].rsplit(".", 1)[1]
    if shape["op"] == "bmm":
        b, v, d = shape["b"], 27, EMBEDDING_DIM
        stacked, gram = torch.randn(b, v, d, dtype=dtype), torch.randn(b, v, v, dtype=dtype)
        return {"fwd": (stacked, stacked.transpose(1, 2)), "grad_a": (gram, stacked),
                "grad_b": (stacked.transpose(1, 2), gram)}[kind]
    if kind == "fwd":
        batch, fan_in, fan_out = shape["m"], shape["k"], shape["n"]
        return torch.randn(batch, fan_in, dtype=dtype), torch.randn(fan_out, fan_in, dtype=dtype).t()
    if kind == "grad_in":
        batch, fan_out, fan_in = shape["m"], shape["k"], shape["n"]
        return torch.randn(batch, fan_out, dtype=dtype), torch.randn(fan_out, fan_in, dtype=dtype)
    fan_out, batch, fan_in = shape["m"], shape["k"], shape["n"]
    return torch.randn(batch, fan_out, dtype=dtype).t(), torch.randn(batch, fan_in, dtype=dtype)


def time_gemm(shape: dict, iters: int, dtype) -> float:
    """Fastest seconds of one GEMM of ``shape`` in ``dtype`` over ``iters`` calls (a bound, not a
    typical time)."""
    import torch

    a, b = gemm_operands(shape, dtype)
    op = torch.bmm if shape["op"] == "bmm" else torch.mm
    return min(time_call(lambda: op(a, b), iters, warmup=3))


class Roofline:
    """The roofline's primitives for a model's tables and a list of its batches (see the module
    docstring); :meth:`measure` times them once, :meth:`summarise` turns measurements into rates.
    ``bf16``: the dense layers compute in bfloat16 (``model.dense_precision``), so their GEMMs are
    timed in it."""

    def __init__(self, batches: list, num_embeddings: dict[str, int], bf16: bool, gemm_iters: int = 20) -> None:
        import torch

        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.shapes = gemm_shapes(BATCH_SIZE)
        self.gemm_iters = gemm_iters
        self.features = len(num_embeddings)
        self.table_rows = sum(num_embeddings.values())
        offsets = torch.tensor(np.concatenate([[0], np.cumsum(list(num_embeddings.values()))[:-1]]))
        self.table = torch.empty(self.table_rows, EMBEDDING_DIM).uniform_(-0.01, 0.01)
        # KeyedJaggedTensor values are feature-major (F blocks of B ids): shift each into its table
        self.ids = [(b.sparse.values().view(self.features, -1) + offsets[:, None]).reshape(-1) for b in batches]

    def _embedding_pass(self) -> None:
        for ids in self.ids:
            self.table.index_select(0, ids)  # every row of the batch read once: no step can do less

    def measure(self) -> dict:
        """Fastest seconds of each GEMM shape (over ``gemm_iters``) and of one batch's row gather."""
        gemms = {s["name"]: time_gemm(s, self.gemm_iters, self.dtype) for s in self.shapes}
        embedding = min(time_call(self._embedding_pass, 3, warmup=1)) / len(self.ids)
        return {"gemm_s": gemms, "embedding_s": embedding}

    def summarise(self, measurements: list[dict]) -> dict:
        """Medians over measurements; per-repeat rooflines in ``roofline_per_repeat``."""
        flops = sum(s["flops"] for s in self.shapes)
        dense = [sum(m["gemm_s"].values()) / BATCH_SIZE for m in measurements]
        embedding = [m["embedding_s"] / BATCH_SIZE for m in measurements]
        shapes = [dict(s, seconds=median([m["gemm_s"][s["name"]] for m in measurements])) for s in self.shapes]
        for s in shapes:
            s["gflops"] = s["flops"] / s["seconds"] / 1e9
        return {
            "flops_per_sample": flops / BATCH_SIZE,
            "gemm_gflops": flops / sum(s["seconds"] for s in shapes) / 1e9,
            "dense_s_per_sample": median(dense),
            "embedding_s_per_sample": median(embedding),
            "embedding_rows_per_s": self.features / median(embedding),
            "roofline_samples_per_s": median([1.0 / (d + e) for d, e in zip(dense, embedding)]),
            "roofline_per_repeat": [1.0 / (d + e) for d, e in zip(dense, embedding)],
            "gemm_shapes": shapes,
        }
