"""Property: on any mix of valid and malformed lines, ingest keeps exactly the valid ones.

Malformed lines are random corruptions of valid lines; the expected outcome of every line
comes from the pure-Python reference parser in ``ingest_helpers``.
"""

from __future__ import annotations

import random
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_helpers import decoded_rows, expected_rows, random_line, reference_parse, run

from recsys.data.ingest import EmptyDatasetError


def corrupt(line: str, how: int, rng: random.Random) -> str:
    cols = line.split("\t")
    i = rng.randrange(len(cols))
    if how == 0:
        del cols[i]
    elif how == 1:
        cols.insert(i, "0")
    elif how == 2:
        cols[rng.randint(1, 13)] = rng.choice(["x", "1.5", "--3", "1e3", "0x", "-0x10", " 7", "\xe9"])
    elif how == 3:
        cols[rng.randint(14, 39)] = rng.choice(["g0000000", "12 34", "-1", "123456789", "0x12"])
    elif how == 4:
        cols[0] = rng.choice(["", "2", "-1", "yes", "00"])
    else:
        return ""
    return "\t".join(cols)


@st.composite
def mixed_lines(draw) -> list[str]:
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    kinds = draw(st.lists(st.integers(-1, 5), min_size=1, max_size=60))  # -1: valid line
    return [random_line(rng) if k < 0 else corrupt(random_line(rng), k, rng) for k in kinds]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=mixed_lines(), chunk_bytes=st.sampled_from([512, 4096, 1 << 20]))
def test_ingest_keeps_exactly_the_valid_lines(tmp_path, lines, chunk_bytes):
    path = tmp_path / "mixed.tsv"
    path.write_text("".join(line + "\n" for line in lines))
    out = tmp_path / "ds"
    shutil.rmtree(out, ignore_errors=True)
    verdicts = [reference_parse(line)[0] for line in lines]
    bad_lines = [n for n, v in enumerate(verdicts, start=1) if v is not None]

    if len(bad_lines) == len(lines):
        with pytest.raises(EmptyDatasetError, match=f"all {len(lines)} rows"):
            run(tmp_path, "ds", path, chunk_bytes=chunk_bytes)
        return
    root, stats = run(tmp_path, "ds", path, chunk_bytes=chunk_bytes, max_bad_row_examples=1000)

    assert stats.rows_in == len(lines)
    assert stats.rows_out == len(lines) - len(bad_lines)
    assert stats.bad_rows == len(bad_lines)
    assert [e["line"] for e in stats.bad_row_examples] == bad_lines
    assert [e["reason"] for e in stats.bad_row_examples] == [v for v in verdicts if v is not None]
    assert decoded_rows(root) == expected_rows(lines)
