"""recsys's own operators, registered through ``torch.library`` in the ``recsys`` namespace.

FBGEMM gives one table-batched lookup for all physical tables; what it has no kernel for is
the step before it: turning every logical feature's ids into lookup-slot ids (a seeded hash,
the digits of compositional embeddings, mixed-dimension frequency blocks, unified
embedding's probes, OptEmbed's remap). Run one feature at a time in Python, that step costs
more than the lookup. ``recsys::transform_ids`` does it for all features in one call
(``recsys::transform_ids_masked``, :mod:`recsys_kernels.masked`, is its form with every size
known on the host, for GPUs). After the lookup, ``recsys::grouped_projection``
(:mod:`recsys_kernels.grouped_projection`) combines every mixed-dimension feature's blocks.
``recsys::dot_interaction`` (:mod:`recsys_kernels.dot_interaction`) is DLRM's pairwise dot
interaction of the combined vectors.

Each op has a schema (defined here, so it exists even without the C++ build), a C++ CPU
kernel (``csrc/``, loaded from the ``_C`` extension that ``pip install --no-build-isolation
-e kernels/`` builds), and a fake implementation for ``torch.compile``/``torch.export``. The
pure-torch reference of the transform ops is the per-feature modules they fuse
(``recsys/embeddings/transforms.py``), of the projection op the torch form in
``recsys/embeddings/grouped_projection.py``, of the interaction op ``DotInteraction`` in
``recsys/models/dlrm.py``; when the extension is missing, recsys runs those
and :func:`available` says why.
"""

from __future__ import annotations

from pathlib import Path

import torch

from recsys_kernels.dot_interaction import MAX_VECTORS, dot_interaction
from recsys_kernels.grouped_projection import grouped_projection
from recsys_kernels.masked import transform_ids_masked
from recsys_kernels.slots import SLOT_PARAM_COLUMNS, SlotKind

__all__ = [
    "MAX_VECTORS",
    "SlotKind",
    "SLOT_PARAM_COLUMNS",
    "available",
    "dot_interaction",
    "grouped_projection",
    "unavailable_reason",
    "transform_ids",
    "transform_ids_masked",
]

_LIB = torch.library.Library("recsys", "DEF")
_LIB.define(
    "transform_ids(Tensor values, Tensor lengths, int batch, Tensor slot_params, Tensor aux, Tensor? slot_rows=None)"
    " -> (Tensor values, Tensor offsets, Tensor bags_per_slot, Tensor id_bags)"
)


@torch.library.register_fake("recsys::transform_ids")
def _transform_ids_fake(values, lengths, batch, slot_params, aux, slot_rows=None):
    ctx = torch.library.get_ctx()
    ids = ctx.new_dynamic_size()  # filtering slots (blocks, kept rows) make both data-dependent
    bag_offsets = ctx.new_dynamic_size(min=1)  # Σ bags + 1
    long = dict(dtype=torch.int64, device=values.device)
    return (
        torch.empty(ids, **long),
        torch.empty(bag_offsets, **long),
        torch.empty(slot_params.shape[0], **long),
        torch.empty(ids, **long),
    )


def transform_ids(
    values: torch.Tensor,
    lengths: torch.Tensor,
    batch: int,
    slot_params: torch.Tensor,
    aux: torch.Tensor,
    slot_rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every slot's ids of a plan from a KeyedJaggedTensor's ids, in one call.

    Args:
        values: (N,) int64 ids of all features, features major (a KJT's ``values()``).
        lengths: (F * B,) int32/int64 ids per bag, features major (a KJT's ``lengths()``).
        batch: B.
        slot_params: (S, 5) int64, one row per lookup slot: kind (:class:`SlotKind`), the
            feature it reads, per_id, a, b.
        aux: (A,) int64 maps the REMAP and KEEP slots index into (may be empty).
        slot_rows: (S,) int64 rows of each slot's table, or None. Given, every emitted row is
            checked: an id that maps outside its table raises an error naming the id, its
            feature (``feature #f``: its index in the KJT), bag and slot, so the lookup after
            it needs no bounds check of its own.

    Returns:
        values: (M,) int64 slot rows, slots major, then bags, then the ids' order.
        offsets: (L + 1,) int64 bag offsets into ``values`` (L = Σ bags_per_slot).
        bags_per_slot: (S,) int64 bags of each slot: B, or the ids it emits when per_id.
        id_bags: (M,) int64 the bag (0..B-1) each emitted id came from.
    """
    return torch.ops.recsys.transform_ids(values, lengths, batch, slot_params, aux, slot_rows)


def _load_extension() -> str:
    """Load the C++ kernels; '' on success, else why not."""
    built = sorted(Path(__file__).parent.glob("_C*.so"))
    if not built:
        return (
            "the C++ extension recsys_kernels._C is not built "
            "(run `pip install --no-build-isolation -e kernels/` after torch)"
        )
    try:
        torch.ops.load_library(str(built[0]))
    except OSError as err:
        return f"the C++ extension {built[0].name} does not load: {err}"
    return ""


_UNAVAILABLE = _load_extension()


def available() -> bool:
    """Whether the C++ kernels are loaded (else the ops have no CPU implementation)."""
    return not _UNAVAILABLE


def unavailable_reason() -> str:
    return _UNAVAILABLE
