"""Inference tables: a plan's physical tables as ONE FBGEMM ``IntNBitTableBatchedEmbeddingBagsCodegen``.

The inference table-batched lookup stores each table's rows as fp32, fp16, int8 or int4; the
integer rows carry a row-wise fp16 scale and bias (``w ≈ scale · q + bias``, q in [0, 2^bits),
FBGEMM's "SBHalf" row-wise quantization, as in Guan et al., "Post-training 4-bit quantization
on embedding tables", 2019). Unlike the training lookup, this module can be scripted, saved and
exported, and it can remap ids per table before the lookup (FBGEMM's pruning index remapping),
which serves OptEmbed's compacted tables without a gather in Python.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from fbgemm_gpu.split_embedding_configs import SparseType
from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation, PoolingMode
from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen

from recsys.serving.config import Quantize

SPARSE_TYPE = {
    Quantize.fp32: SparseType.FP32,
    Quantize.fp16: SparseType.FP16,
    Quantize.int8: SparseType.INT8,
    Quantize.int4: SparseType.INT4,
}
BITS = {Quantize.fp32: 32, Quantize.fp16: 16, Quantize.int8: 8, Quantize.int4: 4}
SCALE_BIAS_BYTES = 4  # fp16 scale + fp16 bias per row of an integer table


def row_bytes(dim: int, quantize: Quantize) -> int:
    """Bytes of one stored row: the packed values, plus the scale and bias of integer rows."""
    quantize = Quantize(quantize)
    data = math.ceil(dim * BITS[quantize] / 8)
    return data + (SCALE_BIAS_BYTES if quantize in (Quantize.int8, Quantize.int4) else 0)


def quantize_rows(weights: torch.Tensor, quantize: Quantize) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(rows, dim) float32 → (packed uint8 rows, uint8 (rows, 4) scale-bias or None)."""
    quantize = Quantize(quantize)
    weights = weights.detach().float().contiguous()
    if quantize is Quantize.fp32:
        return weights.view(torch.uint8), None
    if quantize is Quantize.fp16:
        return weights.half().view(torch.uint8), None
    fused = torch.ops.fbgemm.FloatToFusedNBitRowwiseQuantizedSBHalf(weights, BITS[quantize])  # (rows, data + 4)
    return fused[:, :-SCALE_BIAS_BYTES], fused[:, -SCALE_BIAS_BYTES:]


def inference_tables(
    tables: list[tuple[str, torch.Tensor]],
    slot_tables: list[int],
    quantize: Quantize,
    remaps: Optional[list[Optional[torch.Tensor]]] = None,
) -> IntNBitTableBatchedEmbeddingBagsCodegen:
    """One sum-pooled inference lookup over ``tables`` (name, (rows, dim) float32 weights).

    Args:
        tables: the physical tables, in plan order, with their trained weights.
        slot_tables: the table each lookup slot reads (several slots may share one).
        quantize: row format of every table.
        remaps: per table, an optional (ids,) int64 map from the slot's ids to rows, applied by
            FBGEMM before the lookup; a row of -1 contributes nothing.

    Forward takes ``indices`` (N,) int64 and ``offsets`` (S*B + 1,) slots major, and returns
    (B, Σ slot dims) float32.
    """
    sparse_type = SPARSE_TYPE[Quantize(quantize)]
    specs = [(name, w.shape[0], w.shape[1], sparse_type, EmbeddingLocation.HOST) for name, w in tables]
    has_remap = remaps is not None and any(r is not None for r in remaps)
    tbe = IntNBitTableBatchedEmbeddingBagsCodegen(
        specs,
        feature_table_map=slot_tables,
        index_remapping=remaps if has_remap else None,
        pooling_mode=PoolingMode.SUM,
        device="cpu",
        output_dtype=SparseType.FP32,
        indices_dtype=torch.int64,
    )
    tbe.initialize_weights()
    tbe.assign_embedding_weights([quantize_rows(w, quantize) for _, w in tables])
    return tbe


def stored_table_bytes(tbe: IntNBitTableBatchedEmbeddingBagsCodegen) -> int:
    """Bytes the lookup allocates for all tables: the rows (scale-bias included) plus FBGEMM's
    alignment padding (each table starts on a cache line)."""
    return tbe.weights_host.numel() * tbe.weights_host.element_size()
