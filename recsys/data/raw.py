"""Reading raw CTR text: finding files, their layout, and streaming bounded chunks of whole lines.

A raw file is one row per line, fields separated by the schema's delimiter
(:class:`~recsys.data.schema.SchemaConfig`; Criteo by default: tab separated ``label``,
``I1..I13``, ``C1..C26``), optionally after a header line of the column names. Files may be
gzip compressed (detected by magic bytes, multi-member allowed); a UTF-8 byte-order mark at the
start of a file is skipped.

Everything here works on chunks of whole lines so memory is bounded by the chunk size, never
by the file size; :mod:`recsys.data.parse` turns each chunk into typed columns.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from recsys.data.schema import SchemaConfig

FORMATS = ("tsv", "csv")
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
BAD_TEXT_CHARS = 200

# Reasons a row is rejected (keys of ``bad_rows_by_reason``).
EMPTY_LINE = "empty_line"
WRONG_COLUMN_COUNT = "wrong_column_count"
STRAY_CARRIAGE_RETURN = "stray_carriage_return"
BAD_LABEL = "bad_label"
BAD_DENSE = "bad_dense"
BAD_ID = "bad_id"
ID_TOO_LONG = "id_too_long"
BAD_TIMESTAMP = "bad_timestamp"
TRUNCATED_GZIP = "truncated_gzip"
CORRUPT_GZIP = "corrupt_gzip"
EMPTY_FILE = "empty_file"


@dataclasses.dataclass
class BadRow:
    """One rejected input line: 1-based physical ``line`` in its file, why, and which column."""

    line: int
    reason: str
    text: str
    feature: str | None = None


# ---------------------------------------------------------------------------------------------
# Files and formats


def list_input_files(spec: str) -> list[Path]:
    """Resolve ``spec`` (a file, a directory of files, or a glob) to a sorted list of files."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        where = f"directory {spec}"
    else:
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
        where = f"glob {spec!r}"
    if not files:
        raise FileNotFoundError(f"no input files: {where} matches no regular file")
    return files


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def head(path: Path, limit: int = 1 << 16) -> bytes:
    """The first ``limit`` (decompressed) bytes of a file; b"" if unreadable."""
    with open(path, "rb") as f:
        data = f.read(limit)
    if data[:2] == GZIP_MAGIC:
        try:
            data = zlib.decompressobj(wbits=31).decompress(data, limit)
        except zlib.error:
            return b""
    return data


@dataclasses.dataclass(frozen=True)
class RawLayout:
    """How one file is read: the schema, its field delimiter and whether line 1 is a header."""

    schema: SchemaConfig
    delimiter: str
    header: bool

    @property
    def columns(self) -> list[str]:
        return self.schema.raw_columns()

    def header_line(self) -> str:
        return self.delimiter.join(self.columns)


def file_layout(path: Path, schema: SchemaConfig, fmt: str) -> RawLayout:
    """The layout of ``path``: ``tsv`` / ``csv`` as forced by ``fmt``; with ``auto``, a file
    whose first line starts with the first column's name followed by a tab or a comma is a
    header file with that delimiter, any other file follows the schema.

    Anything that is not a header is read as data, so that malformed lines, even a whole file
    of them, are reported row by row as bad rows rather than aborting the run.
    """
    if fmt == "tsv":
        return RawLayout(schema, "\t", False)
    if fmt == "csv":
        return RawLayout(schema, ",", True)
    first = head(path).removeprefix(UTF8_BOM)
    name = schema.raw_columns()[0].encode()
    for sep in ("\t", ","):
        if first.startswith(name + sep.encode()):
            return RawLayout(schema, sep, True)
    return RawLayout(schema, schema.delimiter, schema.header)


def check_header(path: Path, line: bytes, layout: RawLayout) -> None:
    """Raise unless ``line`` is exactly the expected header."""
    got = line.rstrip(b"\r").decode("utf-8", errors="replace")
    if got != layout.header_line():
        raise ValueError(f"{path}:1: header does not match schema {layout.schema.name!r}.\n"
                         f"  expected: {layout.header_line()[:400]}\n  got:      {got[:400]}")


# ---------------------------------------------------------------------------------------------
# Streaming bounded chunks of whole lines


@dataclasses.dataclass
class Chunk:
    """``n_lines`` whole lines (``data`` ends with a newline) from 1-based physical ``first_line``."""

    data: bytes
    first_line: int
    n_lines: int


class ChunkReader:
    """Stream a file as chunks of about ``chunk_bytes`` decompressed bytes cut at line ends.

    Line numbers count physical lines (``\\n``); a ``\\r`` left before a ``\\n`` is the
    parser's business (CRLF endings are accepted, a lone ``\\r`` inside a line is not).

    Iterate to get :class:`Chunk` objects. Afterwards ``tail`` holds the bytes after the last
    newline (a final line without newline, or an incomplete line of a damaged gzip),
    ``tail_line`` its line number, and ``problem`` is ``truncated_gzip`` / ``corrupt_gzip``
    when the gzip stream ended early or is damaged (every complete line before the damage has
    been yielded). ``on_bytes`` is called with the number of raw file bytes consumed.
    """

    def __init__(self, path: Path, chunk_bytes: int, on_bytes: Callable[[int], None] = lambda n: None):
        self.path = path
        self.chunk_bytes = chunk_bytes
        self.on_bytes = on_bytes
        self.problem: str | None = None
        self.tail = b""
        self.tail_line = 1

    def __iter__(self) -> Iterator[Chunk]:
        next_line = 1
        pending: list[bytes] = []
        pending_size = 0
        with open(self.path, "rb") as f:
            blocks = self._gzip_blocks(f) if is_gzip(self.path) else self._plain_blocks(f)
            for block in _without_bom(blocks):
                pending.append(block)
                pending_size += len(block)
                if pending_size < self.chunk_bytes or b"\n" not in block:
                    continue  # (no new line end: joining again would cost quadratic time on a long line)
                buf = b"".join(pending)
                cut = buf.rfind(b"\n") + 1
                pending, pending_size = [buf[cut:]], len(buf) - cut
                if cut:
                    chunk = Chunk(buf[:cut], next_line, buf.count(b"\n", 0, cut))
                    yield chunk
                    next_line += chunk.n_lines
        self.tail = b"".join(pending)
        cut = self.tail.rfind(b"\n") + 1
        if cut:
            chunk = Chunk(self.tail[:cut], next_line, self.tail.count(b"\n", 0, cut))
            yield chunk
            next_line += chunk.n_lines
            self.tail = self.tail[cut:]
        self.tail_line = next_line

    def _plain_blocks(self, f: io.BufferedReader) -> Iterator[bytes]:
        while block := f.read(self.chunk_bytes):
            self.on_bytes(len(block))
            yield block

    def _gzip_blocks(self, f: io.BufferedReader) -> Iterator[bytes]:
        """Decompress incrementally, member after member; stop cleanly at damage."""
        read_size = min(max(self.chunk_bytes // 4, 1 << 12), 1 << 20)
        inflater = zlib.decompressobj(wbits=31)
        member_open = False
        while raw := f.read(read_size):
            self.on_bytes(len(raw))
            while raw:
                member_open = True
                try:
                    out = inflater.decompress(raw, self.chunk_bytes)
                except zlib.error:
                    self.problem = CORRUPT_GZIP
                    return
                if out:
                    yield out
                if inflater.eof:
                    raw, inflater, member_open = inflater.unused_data, zlib.decompressobj(wbits=31), False
                else:
                    raw = inflater.unconsumed_tail
        if member_open:
            self.problem = TRUNCATED_GZIP




def _without_bom(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The same bytes, less a UTF-8 byte-order mark at the very start."""
    start = b""
    for block in blocks:
        if start is not None:
            start += block
            if len(start) < len(UTF8_BOM) and start == UTF8_BOM[: len(start)]:
                continue
            block, start = start.removeprefix(UTF8_BOM), None
        if block:
            yield block
    if start:
        yield start.removeprefix(UTF8_BOM)
