"""Parsing chunks of raw lines into typed, validated columns (see :mod:`recsys.data.raw`).

Each chunk is parsed by ``pyarrow.csv`` (the fast path: dense columns typed as int64, every
other column as bytes checked by the vectorised converters of :mod:`recsys.data.ids`). Only
when that finds something wrong does the chunk go through a slower path that locates every bad
line, vectorised, and parses the rest; both paths share the converters, so a row's fate never
depends on which path read it. Python code runs per chunk and per *bad* row, never per good row.

Row rules:

- the line has exactly one field per schema column (no stray ``\\r``; CRLF endings are fine);
- the label is exactly ``0`` or ``1``;
- a dense value is empty (missing), an integer (``-?[0-9]{1,18}``, or ``0x`` hex, which
  pyarrow's integer parser also takes) or a finite real number (``260.0``, ``.5``, ``1e3``),
  surrounding spaces allowed. Integral values written as floats (``260.0``, as CSV exports
  write counts) are the integers they spell; non-integral values are kept as real numbers
  (the dense transform, ``log1p(max(x, 0))``, takes them as they are);
- ids follow the schema's ``id_type`` (:mod:`recsys.data.ids`); timestamps are ``YYMMDDHH``.

A row's reason is that of its first bad column in file order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recsys.data import ids, raw
from recsys.data.bad_rows import BadRowLog
from recsys.data.raw import BadRow, Chunk, RawLayout

_INT_PATTERN = r"^[ \t]*(-?[0-9]{1,18}|0[xX][0-9a-fA-F]{1,15})[ \t]*$"
_REAL_PATTERN = r"^[ \t]*-?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]{1,3}|\.[0-9]+[eE][-+]?[0-9]{1,3})[ \t]*$"


@dataclasses.dataclass
class ParsedRows:
    """The good rows of one chunk, plus the bad lines found in it.

    Attributes:
        label: (N,) int8, 0/1.
        dense: feature -> (N,) float64 Arrow array, null where the value is missing.
        sparse: feature -> (N,) int64 raw ids (``MISSING_RAW_ID`` when empty), or for a
            multi-hot feature a list<int64> Arrow array.
        lines: (N,) int64 1-based physical line number of each good row.
        bad: rejected lines in line order.
        n_lines: physical lines in the chunk (good + bad).
    """

    label: np.ndarray
    dense: dict[str, pa.Array]
    sparse: dict[str, np.ndarray | pa.Array]
    lines: np.ndarray
    bad: list[BadRow]
    n_lines: int

    def __len__(self) -> int:
        return len(self.label)


def read_file_rows(
    path: Path, layout: RawLayout, chunk_bytes: int, bad: BadRowLog, on_bytes: Callable[[int], None] = lambda n: None
) -> Iterator[ParsedRows]:
    """One raw file's rows, parsed chunk by chunk, each chunk's bad lines in its ``bad`` list.

    The header (when the layout has one) is checked and dropped. A damaged end (a truncated or
    corrupt gzip) comes as one bad line; problems that cost no line (an empty file, a gzip cut
    exactly at a line end) go to ``bad.file_issue``. Ingest and ``recsys-predict`` read files
    through this one function, so both count and report bad input alike; the caller passes
    each chunk's ``rows.bad`` to ``bad.rows``.
    """
    reader = raw.ChunkReader(path, chunk_bytes, on_bytes)
    nothing_read = True
    for chunk in reader:
        if nothing_read and layout.header:
            end = chunk.data.index(b"\n")
            raw.check_header(path, chunk.data[:end], layout)
            chunk = raw.Chunk(chunk.data[end + 1 :], chunk.first_line + 1, chunk.n_lines - 1)
        nothing_read = False
        yield parse_chunk(chunk, layout)
    if reader.tail and reader.problem is None:
        if nothing_read and layout.header:
            raw.check_header(path, reader.tail, layout)  # a header-only file without newline
            return
        yield parse_chunk(raw.Chunk(reader.tail + b"\n", reader.tail_line, 1), layout)
    elif reader.tail:
        text = reader.tail[: raw.BAD_TEXT_CHARS].decode("utf-8", errors="replace")
        yield _no_rows([raw.BadRow(reader.tail_line, reader.problem, text)], n_lines=1)
    elif reader.problem is not None:
        bad.file_issue(path, reader.tail_line, reader.problem)
    elif nothing_read:
        bad.file_issue(path, 0, raw.EMPTY_FILE)


def _no_rows(bad: list[BadRow], n_lines: int) -> ParsedRows:
    """A chunk whose every line is bad."""
    return ParsedRows(np.empty(0, np.int8), {}, {}, np.empty(0, np.int64), bad, n_lines)


def parse_chunk(chunk: Chunk, layout: RawLayout) -> ParsedRows:
    """Parse whole lines; good rows come back typed, bad ones as :class:`BadRow` records."""
    fast = _parse_fast(chunk, layout)
    return fast if fast is not None else _parse_slow(chunk, layout)


def _read_csv(data: bytes, layout: RawLayout, types: dict[str, pa.DataType], on_invalid: Callable | None) -> pa.Table:
    schema = layout.schema
    return pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=layout.columns, block_size=1 << 22),
        parse_options=pacsv.ParseOptions(
            delimiter=layout.delimiter, quote_char=False, ignore_empty_lines=False, invalid_row_handler=on_invalid
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=False,
            include_columns=[c for c in layout.columns if c not in schema.ignore],
        ),
    )


def _types(layout: RawLayout, dense_as_int: bool) -> dict[str, pa.DataType]:
    # Text columns are read as binary: no UTF-8 validation to pay for (ids are checked by the
    # converters anyway) and no failure on stray non-UTF-8 bytes, which then count as bad values.
    types = {c: pa.binary() for c in layout.columns}
    if dense_as_int:
        types.update(dict.fromkeys(layout.schema.dense, pa.int64()))
    return types


def _parse_fast(chunk: Chunk, layout: RawLayout) -> ParsedRows | None:
    """Typed pyarrow parse; ``None`` if anything at all is off (the slow path then decides)."""
    try:  # a line with the wrong number of fields raises (no invalid-row handler: pyarrow
        # would decode the line as UTF-8 to hand it over, and fail on binary garbage)
        table = _read_csv(chunk.data, layout, _types(layout, dense_as_int=True), None)
    except pa.ArrowInvalid:
        return None
    if table.num_rows != chunk.n_lines:
        return None
    all_good = [True]

    def mark(bad: np.ndarray, reason: str, column: str) -> None:
        if bad.any():
            all_good[0] = False

    label, dense, sparse = _convert(table, layout, mark, dense_typed=True, stop=lambda: not all_good[0])
    if not all_good[0]:
        return None
    lines = np.arange(chunk.first_line, chunk.first_line + chunk.n_lines, dtype=np.int64)
    return ParsedRows(label, dense, sparse, lines, [], chunk.n_lines)


def _convert(table: pa.Table, layout: RawLayout, mark: Callable[[np.ndarray, str, str], None],
             dense_typed: bool, stop: Callable[[], bool] = lambda: False) -> tuple:
    """Check and convert every column in file order, calling ``mark(bad_rows, reason, column)``.

    Returns (label bytes as int8 where valid, dense float64 arrays, sparse ids) over all rows
    of ``table``; the caller keeps the rows never marked.
    """
    schema = layout.schema
    derived = {}
    for d in schema.derived:
        derived.setdefault(d.source, []).append(d)
    label, dense, sparse = None, {}, {}
    for column in layout.columns:
        if stop():
            break
        if column in schema.ignore:
            continue
        text = table.column(column)
        if column == schema.label:
            one = pc.fill_null(pc.equal(text, pa.scalar(b"1")), False).to_numpy(zero_copy_only=False)
            zero = pc.fill_null(pc.equal(text, pa.scalar(b"0")), False).to_numpy(zero_copy_only=False)
            mark(~(one | zero), raw.BAD_LABEL, column)
            label = one.astype(np.int8)
        elif column in schema.dense:
            if dense_typed:
                dense[column] = pc.cast(text, pa.float64())
            else:
                values, bad = _dense_values(text)
                mark(bad, raw.BAD_DENSE, column)
                dense[column] = values
        elif column in schema.multi_hot:
            bags, status = ids.bag_ids(text, schema.multi_hot[column], schema.id_type)
            mark(status == ids.BAD, raw.BAD_ID, column)
            mark(status == ids.TOO_LONG, raw.ID_TOO_LONG, column)
            sparse[column] = bags
        elif column in derived:
            hour, weekday, status = ids.yymmddhh(text)
            mark(status != ids.OK, raw.BAD_TIMESTAMP, column)
            for d in derived[column]:
                sparse[d.name] = hour if d.kind == "hour_of_day" else weekday
        if column in schema.categorical:  # a derived source may be a categorical feature too
            values, status = ids.parse_ids(text, schema.id_type)
            mark(status == ids.BAD, raw.BAD_ID, column)
            mark(status == ids.TOO_LONG, raw.ID_TOO_LONG, column)
            sparse[column] = values
    sparse = {name: sparse[name] for name in schema.sparse_features() if name in sparse}
    return label, dense, sparse


def _dense_values(text: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Dense text -> (float64 values, null where missing or bad; bad mask)."""
    text = text.combine_chunks().cast(pa.string()) if text.num_chunks != 1 else text.chunk(0).cast(pa.string())
    is_int = pc.fill_null(pc.match_substring_regex(text, _INT_PATTERN), False)
    is_real = pc.fill_null(pc.match_substring_regex(text, _REAL_PATTERN), False)
    trimmed = pc.utf8_trim(text, " \t")
    ints = pc.cast(pc.if_else(is_int, trimmed, pa.scalar(None, pa.string())), pa.int64())
    reals = pc.cast(pc.if_else(is_real, trimmed, pa.scalar(None, pa.string())), pa.float64())
    values = pc.if_else(is_int, pc.cast(ints, pa.float64()), reals)
    finite = pc.fill_null(pc.is_finite(values), False)
    bad = ~pc.or_(text.is_null(), finite).to_numpy(zero_copy_only=False)
    return pc.if_else(finite, values, pa.scalar(None, pa.float64())), bad


def _parse_slow(chunk: Chunk, layout: RawLayout) -> ParsedRows:
    """Locate every bad line vectorised, then parse and convert the good ones."""
    data, n_lines = chunk.data, chunk.n_lines
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    starts = np.concatenate([[0], ends[:-1] + 1])
    crlf = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == ord("\r"))
    content_len = ends - starts - crlf
    seps = np.add.reduceat((buf == ord(layout.delimiter)).astype(np.int64), starts)
    stray_cr = np.add.reduceat((buf == ord("\r")).astype(np.int64), starts) - crlf
    reason = np.full(n_lines, None, dtype=object)
    reason[seps != len(layout.columns) - 1] = raw.WRONG_COLUMN_COUNT
    reason[stray_cr > 0] = raw.STRAY_CARRIAGE_RETURN
    reason[content_len == 0] = raw.EMPTY_LINE
    feature = np.full(n_lines, None, dtype=object)

    ok = reason == None  # noqa: E711 (elementwise on an object array)
    rows_at = np.flatnonzero(ok)  # line index (within chunk) of each parsed row
    row_ok = np.ones(len(rows_at), dtype=bool)

    def mark(bad: np.ndarray, why: str, column: str) -> None:
        new = bad & row_ok
        reason[rows_at[new]] = why
        feature[rows_at[new]] = column
        row_ok[new] = False

    converted = None
    if ok.any():
        good = data if ok.all() else buf[np.repeat(ok, ends - starts + 1)].tobytes()
        table = _read_csv(good, layout, _types(layout, dense_as_int=False), _raise_invalid)
        converted = _convert(table, layout, mark, dense_typed=False)
    lines = chunk.first_line + np.arange(n_lines, dtype=np.int64)
    bad = [
        BadRow(int(lines[i]), reason[i], _line_text(data, starts[i], ends[i]), feature[i])
        for i in np.flatnonzero(reason != None)  # noqa: E711
    ]
    keep = np.flatnonzero(row_ok)
    if converted is None:
        keep = np.empty(0, np.int64)
        converted = _convert(_empty_table(layout), layout, lambda *a: None, dense_typed=False)
    label, dense, sparse = converted
    take = pa.array(keep)
    return ParsedRows(
        label[keep],
        {name: values.take(take) for name, values in dense.items()},
        {name: values.take(take) if isinstance(values, pa.Array) else values[keep] for name, values in sparse.items()},
        lines[rows_at[keep]] if len(rows_at) else np.empty(0, np.int64),
        bad,
        n_lines,
    )


def _empty_table(layout: RawLayout) -> pa.Table:
    return pa.table({c: pa.array([], pa.binary()) for c in layout.columns if c not in layout.schema.ignore})


def _raise_invalid(row) -> str:
    raise AssertionError(f"pyarrow found {row.actual_columns} columns in a pre-checked line: {row.text[:200]!r}")


def _line_text(data: bytes, start: int, end: int) -> str:
    return data[start : min(end, start + raw.BAD_TEXT_CHARS)].decode("utf-8", errors="replace")
