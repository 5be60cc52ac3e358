"""The parameter rows that describe a plan's lookup slots to the id-transform ops."""

import enum


class SlotKind(enum.IntEnum):
    """How one slot's rows come from its feature's ids (``a``, ``b``: the slot's two parameters)."""

    IDENTITY = 0  # row = id
    MODULO = 1  # row = id % a
    HASH = 2  # row = hash32(id, key=a) % b  (recsys.embeddings.hash_functions)
    DIGIT = 3  # row = (id // a) % b, or id // a when b == 0
    REMAP = 4  # row = aux[a + id], for ids < b
    BLOCK = 5  # only ids in [a, b), row = id - a
    KEEP = 6  # only ids with aux[a + id] != 0 (ids < b), row = id


# slot_params columns: kind, feature, per_id (1: one bag per emitted id, else B pooled bags), a, b
SLOT_PARAM_COLUMNS = 5
