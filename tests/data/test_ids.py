"""Raw text ids -> int64 ids and status (recsys.data.ids), against a per-field Python reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.ids import BAD, MAX_DECIMAL_DIGITS, MAX_HEX_DIGITS, MAX_STRING_BYTES, OK, TOO_LONG, parse_ids
from recsys.data.layout import MISSING_RAW_ID

ALLOWED = {"hex": (b"0123456789abcdefABCDEF", 16, MAX_HEX_DIGITS), "int": (b"0123456789", 10, MAX_DECIMAL_DIGITS)}


def reference(field: bytes | None, id_type: str) -> tuple[int, int]:
    """(id, status) of one field, written out per character."""
    chars, base, longest = ALLOWED[id_type]
    if not field:
        return MISSING_RAW_ID, OK
    if len(field) > longest:
        return MISSING_RAW_ID, TOO_LONG
    if any(c not in chars for c in field):
        return MISSING_RAW_ID, BAD
    return int(field, base), OK


def as_chunks(fields: list[bytes | None], split: int) -> pa.ChunkedArray:
    split = min(split, len(fields))
    return pa.chunked_array([pa.array(fields[:split], pa.binary()), pa.array(fields[split:], pa.binary())], pa.binary())


field = st.one_of(st.none(), st.binary(max_size=22), st.text("0123456789abcdefABCDEF", max_size=20).map(str.encode))


@settings(max_examples=150, deadline=None)
@given(st.lists(field, max_size=30), st.integers(0, 30), st.sampled_from(["hex", "int"]))
def test_hex_and_decimal_ids_match_the_reference(fields, split, id_type):
    ids, status = parse_ids(as_chunks(fields, split), id_type)
    expected = [reference(f, id_type) for f in fields]
    assert ids.dtype == np.int64 and status.dtype == np.uint8
    assert ids.tolist() == [e[0] for e in expected]
    assert status.tolist() == [e[1] for e in expected]


def test_eight_digit_hex_ids_take_the_contiguous_path_and_still_find_bad_digits():
    fields = [b"0000ffff", b"DEADbeef", b"7fffffff", b"12z45678", b"ffffffff"]
    ids, status = parse_ids(pa.array(fields, pa.binary()), "hex")
    assert ids.tolist() == [0xFFFF, 0xDEADBEEF, 0x7FFFFFFF, MISSING_RAW_ID, 0xFFFFFFFF]
    assert status.tolist() == [OK, OK, OK, BAD, OK]


def test_string_ids_keep_their_hash_values():
    """The 63-bit hashes of a few strings, as written into existing datasets' vocabularies: a change
    of these values would silently re-rank every string id of a dataset prepared before it."""
    fields = [b"abc", b"hello world", b"", None, b"x" * MAX_STRING_BYTES, b"x" * (MAX_STRING_BYTES + 1), "café \t|".encode()]
    ids, status = parse_ids(pa.array(fields, pa.binary()), "string")
    assert ids.tolist() == [7046190246218130180, 8467690379538796592, MISSING_RAW_ID, MISSING_RAW_ID,
                            4850746165580764601, MISSING_RAW_ID, 1798676355430250798]
    assert status.tolist() == [OK, OK, OK, OK, OK, TOO_LONG, OK]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=MAX_STRING_BYTES), min_size=1, max_size=40))
def test_equal_strings_share_an_id_and_distinct_ones_do_not(fields):
    ids, status = parse_ids(pa.array(fields, pa.binary()), "string")
    assert (status == OK).all() and (ids >= 0).all()
    by_field = dict(zip(fields, ids.tolist()))
    assert all(by_field[f] == i for f, i in zip(fields, ids.tolist()))
    assert len(set(by_field.values())) == len(by_field)


def test_an_unknown_id_type_is_refused():
    with pytest.raises(ValueError, match="id_type must be one of .*'uuid'"):
        parse_ids(pa.array([b"1"], pa.binary()), "uuid")
