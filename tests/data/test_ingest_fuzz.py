"""Fuzzing the ingest: hostile files never crash or hang it, and no row is ever lost.

A seeded generator builds each case from valid Criteo lines mixed with random bytes, NUL
bytes, CR / CRLF / LF endings, very long lines and byte-order marks, optionally gzip
compressed in several members, truncated, followed by garbage, or changed (appended to,
truncated) while the ingest reads it. Every case must end in a dataset with
``rows_out + bad_rows == rows_in`` (on plain files ``rows_in`` is also the exact number of
lines), or, when no row is good, in :class:`EmptyDatasetError`; nothing else.

The default run tries ``RECSYS_FUZZ_CASES`` cases (200); set it higher for a long run, e.g.
``RECSYS_FUZZ_CASES=5000 pytest tests/data/test_ingest_fuzz.py -s``.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
import threading
import time
from pathlib import Path

import pytest
from ingest_helpers import random_line, run

from recsys.data.ingest import EmptyDatasetError

CASES = int(os.environ.get("RECSYS_FUZZ_CASES", "200"))
SEED = int(os.environ.get("RECSYS_FUZZ_SEED", "20261127"))
BOM = b"\xef\xbb\xbf"


def fuzz_line(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind <= 2:
        return random_line(rng).encode()
    if kind == 3:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
    if kind == 4:  # a valid line with NUL bytes or stray CRs in it
        line = bytearray(random_line(rng).encode())
        for _ in range(rng.randint(1, 3)):
            line[rng.randrange(len(line))] = rng.choice([0, 13])
        return bytes(line)
    if kind == 5:  # very long line, valid shape or not
        return (b"1" + b"\t" * 13 + b"a" * rng.choice([10, 70_000])) * rng.randint(1, 3)
    if kind == 6:
        return b""
    cols = random_line(rng).split("\t")
    cols[rng.randrange(len(cols))] = rng.choice(["1.5", "260.0", "nan", "1e999", "0x", "-", " ", "\u00e9"])
    return "\t".join(cols).encode()


def fuzz_text(rng: random.Random) -> tuple[bytes, int]:
    """File bytes and its exact number of data lines (physical ``\\n`` lines, plus a last line
    without newline)."""
    lines = [fuzz_line(rng) for _ in range(rng.randint(0, 40))]
    ends = [rng.choice([b"\n", b"\r\n", b"\n", b"\r"]) for _ in lines]
    text = b"".join(l + e for l, e in zip(lines, ends))
    if lines and rng.random() < 0.3:
        text = text.rstrip(b"\n")  # no newline at the end
    if rng.random() < 0.2:
        text = BOM + text
    body = text.removeprefix(BOM)
    n = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
    return text, n


def fuzz_file(rng: random.Random, path: Path) -> int | None:
    """Write one case; return its exact line count where the file is plain, else None."""
    text, n = fuzz_text(rng)
    if rng.random() < 0.5:
        path.write_bytes(text)
        return n
    cut = sorted(rng.randrange(len(text) + 1) for _ in range(rng.randint(0, 3)))
    members = [gzip.compress(text[a:b]) for a, b in zip([0, *cut], [*cut, len(text)])]
    blob = b"".join(members)
    how = rng.randrange(4)
    if how == 1:
        blob = blob[: rng.randrange(len(blob) + 1)]  # truncated
    elif how == 2:
        blob = blob + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 50)))  # garbage after
    elif how == 3:
        damaged = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        blob = bytes(damaged)
    path.write_bytes(blob)
    return n if how == 0 else None


def change_while_read(path: Path, rng: random.Random, stop: threading.Event) -> None:
    """Append lines to, or truncate, ``path`` a few times while the ingest runs."""
    for _ in range(rng.randint(1, 4)):
        if stop.wait(rng.random() * 0.02):
            return
        if rng.random() < 0.5:
            with open(path, "ab") as f:
                f.write(b"".join(fuzz_line(rng) + b"\n" for _ in range(rng.randint(1, 50))))
        else:
            with open(path, "r+b") as f:
                f.truncate(rng.randrange(path.stat().st_size + 1))


@pytest.mark.slow
@pytest.mark.timeout(max(900, CASES * 5))
def test_hostile_inputs_never_crash_hang_or_lose_rows(tmp_path):
    rng = random.Random(SEED)
    outcomes = {"dataset": 0, "no_good_row": 0, "changed_while_read": 0, "exact_line_count": 0}
    slowest = 0.0
    for case in range(CASES):
        path = tmp_path / f"case{case}.{rng.choice(['tsv', 'gz'])}"
        lines = fuzz_file(rng, path)
        stop = threading.Event()
        changer = None
        if rng.random() < 0.15:
            changer = threading.Thread(target=change_while_read, args=(path, random.Random(rng.random()), stop))
            outcomes["changed_while_read"] += 1
            lines = None
        chunk_bytes = rng.choice([64, 1000, 1 << 16])
        started = time.perf_counter()
        if changer is not None:
            changer.start()
        try:
            _, stats = run(tmp_path, f"out{case}", path, chunk_bytes=chunk_bytes)
        except EmptyDatasetError:
            outcomes["no_good_row"] += 1
        else:
            outcomes["dataset"] += 1
            assert stats.rows_out + stats.bad_rows == stats.rows_in, (case, path)
            if lines is not None:
                assert stats.rows_in == lines, (case, path)
                outcomes["exact_line_count"] += 1
        finally:
            stop.set()
            if changer is not None:
                changer.join()
        slowest = max(slowest, time.perf_counter() - started)
        shutil.rmtree(tmp_path / f"out{case}", ignore_errors=True)
        path.unlink()
    print(f"\ningest fuzz: {CASES} cases (seed {SEED}): {outcomes}; slowest case {slowest:.2f}s")
    assert outcomes["dataset"] > CASES // 4 and outcomes["no_good_row"] > 0
    assert slowest < 120  # no case near a hang (a few seconds each, even on a loaded machine)
