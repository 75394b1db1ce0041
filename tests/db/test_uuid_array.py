"""Ids sent as one binary uuid[] (database/uuid_array.py) reach PostgreSQL as psycopg's lists do."""

import uuid

import numpy as np
import psycopg

from database.uuid_array import UuidArray


def test_a_uuid_array_is_the_uuid_array_a_list_of_uuids_is(db_urls):
    ids = [uuid.UUID(int=n * 0x1000_0000_0001) for n in range(1, 300)] + [uuid.uuid4()]
    raw = np.frombuffer(b"".join(i.bytes for i in ids), dtype="V16")
    with psycopg.connect(db_urls.catalog) as conn:
        for value in (UuidArray.of(ids), UuidArray(raw), UuidArray(raw[::2])):
            expected = [ids[i] for i in range(0, len(ids), 2)] if len(value) < len(ids) else ids
            assert conn.execute("SELECT %s", (value,), binary=True).fetchone()[0] == expected
            assert conn.execute("SELECT %s = %s::uuid[]", (value, expected)).fetchone()[0]
        assert conn.execute("SELECT %s", (UuidArray(b""),)).fetchone()[0] == []
        assert conn.execute("SELECT %s = ANY(%s)", (ids[3], UuidArray.of(ids[:5]))).fetchone()[0]


def test_copy_of_a_uuid_array_column_still_takes_lists(db_urls):
    ids = [uuid.uuid4(), uuid.uuid4()]
    with psycopg.connect(db_urls.catalog) as conn:
        conn.execute("CREATE TEMP TABLE t (ids uuid[])")
        with conn.cursor().copy("COPY t (ids) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid[]"])
            copy.write_row([ids])
        assert conn.execute("SELECT ids FROM t").fetchone()[0] == ids
