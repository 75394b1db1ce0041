"""Bulk transfer of fixed-width rows between PostgreSQL and numpy through binary COPY.

PostgreSQL's binary COPY format (docs: "COPY ... Binary Format") writes each row as an int16
field count followed, per field, by an int32 byte length and the value in network byte order.
When every field is NOT NULL and of a fixed-width type, every row has the same size, so a
block of rows is one numpy structured array: millions of rows move without a Python object
per row. Used by the refresh job (reading all interactions, writing the model tables) and by
each worker loading the model.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import psycopg
from psycopg import sql

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
TRAILER = b"\xff\xff"

# PostgreSQL type -> numpy dtype of its binary representation.
PG_TYPES = {
    "uuid": np.dtype("V16"),
    "int2": np.dtype(">i2"),
    "int4": np.dtype(">i4"),
    "int8": np.dtype(">i8"),
    "float4": np.dtype(">f4"),
    "float8": np.dtype(">f8"),
    "bool": np.dtype("?"),
    # microseconds since 2000-01-01 00:00:00
    "timestamp": np.dtype(">i8"),
}
# Writing only: "text" columns take the width of their numpy bytes array (dtype "S<n>"), and
# every value must be exactly n bytes long (e.g. one COPY per interaction type).
VARIABLE_TYPES = {"text"}


def row_dtype(columns: Sequence[tuple[str, str]]) -> np.dtype:
    """The structured dtype of one binary COPY row with these (name, PostgreSQL type) columns."""
    parts: list[tuple[str, np.dtype]] = [("_ncols", np.dtype(">i2"))]
    for name, pg_type in columns:
        parts.append((f"_len_{name}", np.dtype(">i4")))
        parts.append((name, PG_TYPES[pg_type]))
    return np.dtype(parts)


def read_rows(
    conn: psycopg.Connection,
    query: sql.Composable | str,
    columns: Sequence[tuple[str, str]],
    params: Sequence[object] | None = None,
    chunk_rows: int = 1_000_000,
) -> Iterator[np.ndarray]:
    """Run `COPY (query) TO STDOUT` in binary and yield the rows in structured arrays.

    `columns` names the query's output columns and their types, in order; every value must be
    NOT NULL (use coalesce in the query). Yields arrays of at most about `chunk_rows` rows.
    """
    dtype = row_dtype(columns)
    stride = dtype.itemsize
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(
        sql.SQL(query) if isinstance(query, str) else query
    )
    buffer = bytearray()
    header_done = False
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        for block in copy:
            buffer += block
            if not header_done:
                if len(buffer) < 19:
                    continue
                header_length = _header_length(buffer)
                if len(buffer) < header_length:
                    continue
                del buffer[:header_length]
                header_done = True
            if len(buffer) >= chunk_rows * stride:
                count = len(buffer) // stride
                yield _rows(buffer, count, dtype, columns)
                del buffer[: count * stride]
    if not header_done:
        raise ValueError("binary COPY returned no header")
    count = (len(buffer) - len(TRAILER)) // stride
    if bytes(buffer[count * stride :]) != TRAILER:
        raise ValueError("binary COPY rows are not of the expected fixed width (a NULL or a wrong type?)")
    if count:
        yield _rows(buffer, count, dtype, columns)


def read_all(
    conn: psycopg.Connection,
    query: sql.Composable | str,
    columns: Sequence[tuple[str, str]],
    params: Sequence[object] | None = None,
) -> np.ndarray:
    """All rows of `read_rows` in one structured array (empty when the query returns none)."""
    chunks = list(read_rows(conn, query, columns, params))
    if not chunks:
        return np.empty(0, dtype=row_dtype(columns))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def write_rows(
    conn: psycopg.Connection,
    table: sql.Composable,
    columns: Sequence[tuple[str, str]],
    arrays: Sequence[np.ndarray],
    chunk_rows: int = 1_000_000,
) -> int:
    """COPY equally long arrays, one per column, into `table` in binary; returns the row count."""
    count = len(arrays[0]) if arrays else 0
    if any(len(a) != count for a in arrays):
        raise ValueError("all column arrays must have the same length")
    widths = {}
    for (name, pg_type), values in zip(columns, arrays):
        if pg_type in VARIABLE_TYPES:
            values = np.asarray(values)
            if values.dtype.kind != "S" or (count and (np.char.str_len(values) != values.dtype.itemsize).any()):
                raise ValueError(f"column {name!r}: text values must be bytes of one fixed length")
            widths[name] = values.dtype
    dtype = _write_dtype(columns, widths)
    names = sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, names)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00")
        for start in range(0, count, chunk_rows):
            stop = min(start + chunk_rows, count)
            rows = np.empty(stop - start, dtype=dtype)
            rows["_ncols"] = len(columns)
            for (name, pg_type), values in zip(columns, arrays):
                rows[f"_len_{name}"] = dtype[name].itemsize
                rows[name] = values[start:stop]
            copy.write(rows.tobytes())
        copy.write(TRAILER)
    return count


def _write_dtype(columns: Sequence[tuple[str, str]], widths: dict[str, np.dtype]) -> np.dtype:
    parts: list[tuple[str, np.dtype]] = [("_ncols", np.dtype(">i2"))]
    for name, pg_type in columns:
        parts.append((f"_len_{name}", np.dtype(">i4")))
        parts.append((name, widths[name] if pg_type in VARIABLE_TYPES else PG_TYPES[pg_type]))
    return np.dtype(parts)


def _header_length(buffer: bytearray) -> int:
    if bytes(buffer[:11]) != SIGNATURE:
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension = int.from_bytes(buffer[15:19], "big")
    return 19 + extension


def _rows(buffer: bytearray, count: int, dtype: np.dtype, columns: Sequence[tuple[str, str]]) -> np.ndarray:
    # One copy of the chunk (a bytearray slice), viewed in place by numpy.
    rows = np.frombuffer(buffer[: count * dtype.itemsize], dtype=dtype)
    if not (rows["_ncols"] == len(columns)).all():
        raise ValueError("binary COPY returned a different number of columns than declared")
    for name, pg_type in columns:
        if not (rows[f"_len_{name}"] == PG_TYPES[pg_type].itemsize).all():
            raise ValueError(f"column {name!r} is NULL or not of type {pg_type} in some row")
    return rows
