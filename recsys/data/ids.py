"""Vectorised converters from raw text fields (Arrow binary arrays) to int64 ids.

Each converter works on the Arrow string buffers directly (offsets and bytes), never on
Python objects, and returns ``(values, status)``: int64 values (``MISSING_RAW_ID`` for an
empty field) and a uint8 status per field, ``OK``, ``BAD`` (a character the id type does not
allow) or ``TOO_LONG``. The id types (``SchemaConfig.id_type``):

- ``hex``: up to 8 hex digits (Criteo), read as a 32-bit number;
- ``int``: a non-negative decimal of up to 18 digits, no sign or spaces;
- ``string``: any bytes, up to 64, kept as a 63-bit hash of the bytes and their length
  (splitmix64 over 8-byte words): equal strings give equal ids, and two of the 1e8 ids of a
  large vocabulary collide with probability about 1e-3 (n^2 / 2^64).

``YYMMDDHH`` timestamps (Avazu's ``hour``) become an hour of day and a day of week, and
multi-hot fields are split on their in-field delimiter into lists of ids of the same type.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.counter_hash import mix_key, splitmix64
from recsys.data.layout import MISSING_RAW_ID

OK, BAD, TOO_LONG = 0, 1, 2
MAX_HEX_DIGITS = 8
MAX_DECIMAL_DIGITS = 18
MAX_STRING_BYTES = 64
_STRING_KEY = mix_key(0x5EED, 64)
# (bytes, starts, lengths) of fields that are present and short enough -> (int64 ids, BAD mask or None)
Decoder = Callable[[np.ndarray, np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray | None]"]


def _hex_pair_table() -> np.ndarray:
    """Byte value of every 2-character hex string, indexed by the chars read as a uint16.

    Index ``first | second << 8`` (little-endian uint16 view of the two bytes) holds
    ``16 * hex(first) + hex(second)``; 256 marks a pair with a non-hex character. One lookup per
    two digits, straight to the packed byte, is the cheapest vectorised hex decoder numpy has.
    """
    digit = np.full(256, -1, dtype=np.int32)
    for value, chars in enumerate(zip("0123456789abcdef", "0123456789ABCDEF")):
        for c in chars:
            digit[ord(c)] = value
    first, second = np.meshgrid(digit, digit, indexing="ij")
    table = np.where((first >= 0) & (second >= 0), 16 * first + second, 256).astype(np.uint16)
    index = np.arange(256)[:, None] | (np.arange(256)[None, :] << 8)
    out = np.empty(1 << 16, dtype=np.uint16)
    out[index] = table
    return out


_HEX_PAIR = _hex_pair_table()


def parse_ids(column: pa.ChunkedArray | pa.Array, id_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Text ids of ``id_type`` -> (int64 ids, uint8 status); see the module docstring."""
    if id_type not in _ID_TYPES:
        raise ValueError(f"id_type must be one of {sorted(_ID_TYPES)}, got {id_type!r}")
    max_length, decode = _ID_TYPES[id_type]
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [_convert(*_fields(c), max_length, decode) for c in chunks]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.uint8)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _fields(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, start of each field, length of each field; 0 for null) of a binary array."""
    n = len(arr)
    if n == 0 or arr.null_count == n:
        return np.zeros(1, np.uint8), np.zeros(n, np.int64), np.zeros(n, np.int64)
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=n + 1, offset=4 * arr.offset).astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(1, np.uint8)
    lengths = np.diff(offsets)
    if arr.null_count:
        lengths = np.where(arr.is_null().to_numpy(zero_copy_only=False), 0, lengths)
    return data, offsets[:-1], lengths


def _gather(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int, right: bool, pad: int) -> np.ndarray:
    """(n, width) bytes of each field, right or left aligned, padded with ``pad``."""
    col = np.arange(width)
    shift = (width - lengths[:, None]) if right else np.zeros((len(lengths), 1), np.int64)
    index = starts[:, None] + col - shift
    out = data[np.clip(index, 0, max(len(data) - 1, 0))]
    inside = (col >= shift) & (col < shift + lengths[:, None])
    out[~inside] = pad
    return out


def _convert(
    data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, max_length: int, decode: Decoder
) -> tuple[np.ndarray, np.ndarray]:
    """What every id type shares: empty fields stay ``MISSING_RAW_ID``, fields over ``max_length``
    bytes are ``TOO_LONG``, and ``decode`` reads the rest, returning their values and which of
    them hold a character the type does not allow (``None`` when none does); those are ``BAD``."""
    n = len(lengths)
    ids = np.full(n, MISSING_RAW_ID, dtype=np.int64)
    status = np.where(lengths > max_length, TOO_LONG, OK).astype(np.uint8)
    present = (lengths > 0) & (lengths <= max_length)
    if not present.any():
        return ids, status
    values, bad = decode(data, starts[present], lengths[present])
    ids[present] = values
    if bad is not None and bad.any():
        at = np.flatnonzero(present)[bad]
        status[at], ids[at] = BAD, MISSING_RAW_ID
    return ids, status


def _decode_hex(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Each pair of hex digits becomes its byte by one table lookup; the 4 bytes are read as a
    big-endian uint32. When every id has 8 digits (real Criteo data) the digit matrix is a view
    of the data buffer, with no gather."""
    if np.all(lengths == MAX_HEX_DIGITS) and np.all(np.diff(starts) == MAX_HEX_DIGITS):
        digits = data[starts[0] : starts[0] + MAX_HEX_DIGITS * len(starts)].reshape(-1, MAX_HEX_DIGITS)
    else:
        digits = _gather(data, starts, lengths, MAX_HEX_DIGITS, right=True, pad=ord("0"))
    pairs = _HEX_PAIR[np.ascontiguousarray(digits).view(np.uint16)]  # (m, 4); 256 = not hex
    values = pairs.astype(np.uint8).view(">u4").ravel().astype(np.int64)
    if pairs.max() <= 255:  # one global check first: rows are almost always all good
        return values, None
    return values, pairs.max(axis=1) > 255


_POWERS_OF_TEN = 10 ** np.arange(MAX_DECIMAL_DIGITS - 1, -1, -1, dtype=np.int64)


def _decode_decimal(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    digits = _gather(data, starts, lengths, MAX_DECIMAL_DIGITS, right=True, pad=ord("0"))
    digits = digits.astype(np.int64) - ord("0")  # (m, 18)
    return digits @ _POWERS_OF_TEN, ((digits < 0) | (digits > 9)).any(axis=1)


def _decode_string(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, None]:
    width = -(-int(lengths.max()) // 8) * 8
    words = np.ascontiguousarray(_gather(data, starts, lengths, width, right=False, pad=0))
    words = words.view(np.uint64)  # (m, width / 8)
    h = splitmix64(lengths.astype(np.uint64) + _STRING_KEY)
    for j in range(words.shape[1]):
        h = splitmix64(h ^ words[:, j])
    return (h >> np.uint64(1)).astype(np.int64), None  # 63 bits: never MISSING_RAW_ID


# id type -> (longest field, decoder of the fields up to that length)
_ID_TYPES: dict[str, tuple[int, Decoder]] = {
    "hex": (MAX_HEX_DIGITS, _decode_hex),
    "int": (MAX_DECIMAL_DIGITS, _decode_decimal),
    "string": (MAX_STRING_BYTES, _decode_string),
}


def yymmddhh(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``YYMMDDHH`` timestamps (20YY) -> (hour of day 0-23, day of week 0-6 with Monday = 0,
    status): ``BAD`` unless exactly 8 digits naming a real date and an hour below 24."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    data, starts, lengths = _fields(arr)
    n = len(lengths)
    hour, weekday = np.zeros(n, np.int64), np.zeros(n, np.int64)
    status = np.full(n, BAD, np.uint8)
    ok = lengths == 8
    if not ok.any():
        return hour, weekday, status
    digits = _gather(data, starts[ok], lengths[ok], 8, right=True, pad=ord("0")).astype(np.int64) - ord("0")
    good = ((digits >= 0) & (digits <= 9)).all(axis=1)
    yy, mm, dd, hh = (digits[:, 2 * i] * 10 + digits[:, 2 * i + 1] for i in range(4))
    good &= (mm >= 1) & (mm <= 12) & (dd >= 1) & (hh <= 23)
    month = (np.datetime64("2000-01", "M") + (yy * 12 + np.clip(mm, 1, 12) - 1).astype("m8[M]"))
    day = month.astype("M8[D]") + (dd - 1).astype("m8[D]")
    good &= day.astype("M8[M]") == month  # day 31 of a 30-day month rolls over: not a date
    days = day.astype(np.int64)  # days since 1970-01-01, a Thursday
    at = np.flatnonzero(ok)
    hour[at], weekday[at] = np.where(good, hh, 0), np.where(good, (days + 3) % 7, 0)
    status[at] = np.where(good, OK, BAD)
    return hour, weekday, status


def bag_ids(column: pa.ChunkedArray | pa.Array, inner: str, id_type: str) -> tuple[pa.ListArray, np.ndarray]:
    """Multi-hot fields split on ``inner`` -> (list<int64> ids, per-row status).

    An empty field is an empty bag; an empty id inside a bag (``a||b``) is ``BAD``.
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = pc.fill_null(arr, b"")
    lists = pc.split_pattern(arr, pattern=inner)
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    empty_field = pc.equal(arr, b"").to_numpy(zero_copy_only=False)
    lengths[empty_field] = 0
    lists = pc.if_else(pa.array(empty_field), pa.scalar([], lists.type), lists)
    flat = pc.list_flatten(lists)
    values, element_status = parse_ids(flat, id_type)
    element_status = np.where(values == MISSING_RAW_ID, np.maximum(element_status, BAD), element_status)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    status = np.zeros(len(lengths), np.uint8)
    nonempty = lengths > 0
    if nonempty.any():
        status[nonempty] = np.maximum.reduceat(element_status, offsets[:-1][nonempty])
    ids = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, pa.int64()))
    return ids, status
