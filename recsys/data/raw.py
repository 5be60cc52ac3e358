"""Reading raw Criteo text: finding files, streaming bounded chunks, parsing and validating rows.

The raw format (Criteo Kaggle ``train.txt`` and the 1TB ``day_N`` files) is one row per line,
40 tab-separated columns: ``label`` (0/1), ``I1..I13`` (integers, may be negative, empty =
missing) and ``C1..C26`` (ids of up to 8 hex digits, empty = missing). A header-CSV variant
(comma separated, first line ``label,I1,...,C26``) is accepted too. Files may be gzip
compressed (detected by magic bytes, multi-member allowed).

Everything here works on chunks of whole lines so memory is bounded by the chunk size, never
by the file size. Each chunk is parsed by ``pyarrow.csv`` with typed columns (the fast path);
only when that finds something wrong does the chunk go through a slower path that locates
every bad line, vectorised, and parses the rest. Python code runs per chunk and per *bad*
row, never per good row.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recsys.data.layout import DENSE_FEATURES, LABEL, MISSING_RAW_ID, SPARSE_FEATURES

COLUMNS: tuple[str, ...] = (LABEL, *DENSE_FEATURES, *SPARSE_FEATURES)
CSV_HEADER = ",".join(COLUMNS)
FORMATS = ("tsv", "csv")
SEPARATOR = {"tsv": "\t", "csv": ","}
GZIP_MAGIC = b"\x1f\x8b"
MAX_ID_HEX_DIGITS = 8
BAD_TEXT_CHARS = 200

# Reasons a row is rejected (keys of ``bad_rows_by_reason``).
EMPTY_LINE = "empty_line"
WRONG_COLUMN_COUNT = "wrong_column_count"
STRAY_CARRIAGE_RETURN = "stray_carriage_return"
BAD_LABEL = "bad_label"
BAD_DENSE = "bad_dense"
BAD_ID = "bad_id"
ID_TOO_LONG = "id_too_long"
TRUNCATED_GZIP = "truncated_gzip"
CORRUPT_GZIP = "corrupt_gzip"
EMPTY_FILE = "empty_file"


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
# A dense value is a decimal integer, or (because pyarrow's fast int64 parser accepts it, and
# both parse paths must agree) a 0x-prefixed hex integer; digit limits keep it within int64.
# Surrounding spaces are allowed, as pyarrow's parser allows them.
_DENSE_PATTERN = r"^[ \t]*(-?[0-9]{1,18}|0[xX][0-9a-fA-F]{1,15})[ \t]*$"


@dataclasses.dataclass
class BadRow:
    """One rejected input line: 1-based physical ``line`` in its file, why, and which column."""

    line: int
    reason: str
    text: str
    feature: str | None = None


@dataclasses.dataclass
class ParsedRows:
    """The good rows of one chunk, columns as numpy arrays, plus the bad lines found in it.

    Attributes:
        label: int8, 0/1.
        dense: feature -> int64 Arrow array, null where the value is missing.
        sparse: feature -> int64 raw ids (``MISSING_RAW_ID`` when empty).
        lines: int64 1-based physical line number of each good row.
        bad: rejected lines in line order.
        n_lines: physical lines in the chunk (good + bad).
    """

    label: np.ndarray
    dense: dict[str, pa.Array]
    sparse: dict[str, np.ndarray]
    lines: np.ndarray
    bad: list[BadRow]
    n_lines: int

    def __len__(self) -> int:
        return len(self.label)


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


def detect_format(path: Path) -> str:
    """``csv`` if the file starts with a ``label`` header, else ``tsv`` (the native format).

    Anything that is not a header is treated as TSV so that malformed lines, even a whole file
    of them, are reported row by row as bad rows rather than aborting the run.
    """
    return "csv" if head(path).startswith(b"label") else "tsv"


def check_csv_header(path: Path, line: bytes) -> None:
    """Raise unless ``line`` is exactly the expected CSV header."""
    got = line.rstrip(b"\r").decode("utf-8", errors="replace")
    if got != CSV_HEADER:
        raise ValueError(f"{path}:1: CSV header does not match.\n  expected: {CSV_HEADER}\n  got:      {got[:400]}")


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
            for block in blocks:
                pending.append(block)
                pending_size += len(block)
                if pending_size < self.chunk_bytes:
                    continue
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


# ---------------------------------------------------------------------------------------------
# Parsing chunks


def _read_csv(data: bytes, sep: str, types: dict[str, pa.DataType], on_invalid: Callable) -> pa.Table:
    return pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=list(COLUMNS), block_size=1 << 22),
        parse_options=pacsv.ParseOptions(
            delimiter=sep, quote_char=False, ignore_empty_lines=False, invalid_row_handler=on_invalid
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=False
        ),
    )


# Text columns are read as binary: no UTF-8 validation to pay for (ids are checked as hex
# anyway) and no failure on stray non-UTF-8 bytes, which then count as bad values.
_TYPED = {LABEL: pa.binary(), **{f: pa.int64() for f in DENSE_FEATURES}, **{f: pa.binary() for f in SPARSE_FEATURES}}
_BINARY = {c: pa.binary() for c in COLUMNS}


def hex_ids(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Hex id strings -> (int64 ids with ``MISSING_RAW_ID`` for null/empty, uint8 status).

    Status is 0 for a good id, 1 for a non-hex character, 2 for more than 8 digits. Works on
    the Arrow string buffers directly: ids are gathered into an (n, 8) byte matrix (right
    aligned, left padded with '0'), each digit pair is turned into its byte by one table
    lookup, and the 4 bytes are read as a big-endian uint32. When every present id has
    exactly 8 digits (real Criteo data) the byte matrix is simply a view of the data buffer.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [_hex_ids_array(c) for c in chunks]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _hex_ids_array(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    n = len(arr)
    ids = np.full(n, MISSING_RAW_ID, dtype=np.int64)
    status = np.zeros(n, dtype=np.uint8)
    if n == 0 or arr.null_count == n:
        return ids, status
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=n + 1, offset=4 * arr.offset)
    data = np.frombuffer(data_buf, dtype=np.uint8)
    lengths = np.diff(offsets)
    if arr.null_count:
        lengths = np.where(arr.is_null().to_numpy(zero_copy_only=False), 0, lengths)
    present = lengths > 0
    start, end = offsets[0], offsets[-1]
    if np.all(lengths[present] == MAX_ID_HEX_DIGITS) and lengths.sum() == end - start:
        digits = data[start:end].reshape(-1, MAX_ID_HEX_DIGITS)
    else:
        status[lengths > MAX_ID_HEX_DIGITS] = 2
        present &= lengths <= MAX_ID_HEX_DIGITS
        digits = _gather_right_aligned(data, offsets[:-1][present], lengths[present])
    pairs = _HEX_PAIR[np.ascontiguousarray(digits).view(np.uint16)]
    bad = pairs.max(axis=1) > 255 if pairs.size and pairs.max() > 255 else None
    values = pairs.astype(np.uint8).view(">u4").ravel().astype(np.int64)
    ids[present] = values
    if bad is not None:
        where = np.flatnonzero(present)[bad]
        status[where] = 1
        ids[where] = MISSING_RAW_ID
    return ids, status


def _gather_right_aligned(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(n, 8) bytes: each string right aligned, padded on the left with '0'."""
    col = np.arange(MAX_ID_HEX_DIGITS)
    pad = MAX_ID_HEX_DIGITS - lengths[:, None]
    index = starts[:, None] + col - pad
    out = data[np.clip(index, 0, max(len(data) - 1, 0))]
    out[col < pad] = ord("0")
    return out


def parse_chunk(chunk: Chunk, fmt: str) -> ParsedRows:
    """Parse whole lines; good rows come back typed, bad ones as :class:`BadRow` records."""
    sep = SEPARATOR[fmt]
    fast = _parse_fast(chunk.data, sep, chunk.first_line, chunk.n_lines)
    return fast if fast is not None else _parse_slow(chunk.data, sep, chunk.first_line, chunk.n_lines)


def _parse_fast(data: bytes, sep: str, first_line: int, n_lines: int) -> ParsedRows | None:
    """Typed pyarrow parse; ``None`` if anything at all is off (the slow path then decides)."""
    invalid: list[object] = []

    def on_invalid(row) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = _read_csv(data, sep, _TYPED, on_invalid)
    except pa.ArrowInvalid:
        return None
    if invalid or table.num_rows != n_lines:
        return None
    label = _labels(table.column(LABEL))
    if label is None:
        return None
    sparse = {}
    for feature in SPARSE_FEATURES:
        ids, status = hex_ids(table.column(feature))
        if status.any():
            return None
        sparse[feature] = ids
    dense = {f: table.column(f) for f in DENSE_FEATURES}
    lines = np.arange(first_line, first_line + n_lines, dtype=np.int64)
    return ParsedRows(label, dense, sparse, lines, [], n_lines)


def _labels(column: pa.ChunkedArray) -> np.ndarray | None:
    """int8 labels if every value is exactly "0" or "1" (so "00" or "" are bad), else None."""
    one = pc.equal(column, pa.scalar(b"1"))
    valid = pc.or_(one, pc.equal(column, pa.scalar(b"0")))
    if valid.null_count or not pc.all(valid).as_py():
        return None
    return one.to_numpy(zero_copy_only=False).astype(np.int8)


def _parse_slow(data: bytes, sep: str, first_line: int, n_lines: int) -> ParsedRows:
    """Locate every bad line vectorised, then parse and convert the good ones."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    starts = np.concatenate([[0], ends[:-1] + 1])
    crlf = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == ord("\r"))
    content_len = ends - starts - crlf
    seps = np.add.reduceat((buf == ord(sep)).astype(np.int64), starts)
    stray_cr = np.add.reduceat((buf == ord("\r")).astype(np.int64), starts) - crlf
    reason = np.full(n_lines, None, dtype=object)
    reason[seps != len(COLUMNS) - 1] = WRONG_COLUMN_COUNT
    reason[stray_cr > 0] = STRAY_CARRIAGE_RETURN
    reason[content_len == 0] = EMPTY_LINE
    feature = np.full(n_lines, None, dtype=object)

    ok = reason == None  # noqa: E711 (elementwise on an object array)
    keep_bytes = np.repeat(ok, ends - starts + 1)
    good = data if ok.all() else buf[keep_bytes].tobytes()
    table = _read_csv(good, sep, _BINARY, _raise_invalid) if ok.any() else None
    rows_at = np.flatnonzero(ok)  # line index (within chunk) of each parsed row

    converted = _validate_strings(table, reason, feature, rows_at) if table is not None else None
    lines = first_line + np.arange(n_lines, dtype=np.int64)
    bad = [
        BadRow(int(lines[i]), reason[i], _line_text(data, starts[i], ends[i]), feature[i])
        for i in np.flatnonzero(reason != None)  # noqa: E711
    ]
    if converted is None:
        empty = np.empty(0, dtype=np.int64)
        return ParsedRows(
            np.empty(0, np.int8), {f: pa.array([], pa.int64()) for f in DENSE_FEATURES},
            {f: empty for f in SPARSE_FEATURES}, empty, bad, n_lines,
        )
    label, dense, sparse, row_ok = converted
    return ParsedRows(label, dense, sparse, lines[rows_at[row_ok]], bad, n_lines)


def _raise_invalid(row) -> str:
    raise AssertionError(f"pyarrow found {row.actual_columns} columns in a pre-checked line: {row.text[:200]!r}")


def _ascii_ints(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Regex-checked (so ASCII) integer text -> int64, surrounding spaces trimmed."""
    return pc.utf8_trim(column.cast(pa.string()), " \t").cast(pa.int64())


def _line_text(data: bytes, start: int, end: int) -> str:
    return data[start : min(end, start + BAD_TEXT_CHARS)].decode("utf-8", errors="replace")


def _validate_strings(
    table: pa.Table, reason: np.ndarray, feature: np.ndarray, rows_at: np.ndarray
) -> tuple[np.ndarray, dict[str, pa.Array], dict[str, np.ndarray], np.ndarray]:
    """Check every value of string columns; mark the first bad column of each row.

    Columns are checked in file order and a row keeps the reason of its first bad column, so
    ``reason``/``feature`` (indexed by line) are only written where still empty.
    """
    row_ok = np.ones(table.num_rows, dtype=bool)

    def mark(bad: np.ndarray, why: str, column: str) -> None:
        new = bad & row_ok
        reason[rows_at[new]] = why
        feature[rows_at[new]] = column
        row_ok[new] = False

    label_bytes = table.column(LABEL)
    mark(~pc.is_in(label_bytes, pa.array([b"0", b"1"])).to_numpy(zero_copy_only=False), BAD_LABEL, LABEL)
    dense = {}
    for name in DENSE_FEATURES:
        text = table.column(name)
        valid = pc.or_kleene(pc.is_null(text), pc.match_substring_regex(text, _DENSE_PATTERN))
        mark(~valid.to_numpy(zero_copy_only=False), BAD_DENSE, name)
        dense[name] = text
    sparse = {}
    for name in SPARSE_FEATURES:
        ids, status = hex_ids(table.column(name))
        mark(status == 1, BAD_ID, name)
        mark(status == 2, ID_TOO_LONG, name)
        sparse[name] = ids
    keep = pa.array(row_ok)
    label = pc.equal(pc.filter(label_bytes, keep), pa.scalar(b"1")).to_numpy(zero_copy_only=False).astype(np.int8)
    dense = {name: _ascii_ints(pc.filter(col, keep)) for name, col in dense.items()}
    sparse = {name: ids[row_ok] for name, ids in sparse.items()}
    return label, dense, sparse, row_ok
