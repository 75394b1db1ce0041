"""Ids sent as one uuid[] parameter in PostgreSQL's binary array format, built in one piece.

psycopg dumps a list of UUIDs element by element, a Python call and a UUID object each; the
request path's `= ANY(%s)` queries send up to hundreds of ids that the model holds as 16 raw
bytes each (a numpy "V16" array). `UuidArray` wraps such bytes and its dumper writes the array
with numpy: the header (one dimension, no nulls, element type uuid, length, lower bound 1),
then each element as its length (16) and its bytes.
"""

from __future__ import annotations

import struct
from typing import Iterable
from uuid import UUID

import numpy as np
import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

_UUID_OID = postgres.types["uuid"].oid
_ELEMENT = np.dtype([("length", ">i4"), ("id", "V16")])


class UuidArray:
    """Ids to send as one uuid[] parameter: their 16-byte values, back to back."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes | np.ndarray) -> None:
        self.raw = np.ascontiguousarray(raw).tobytes() if isinstance(raw, np.ndarray) else raw

    @classmethod
    def of(cls, ids: Iterable[UUID]) -> UuidArray:
        """The array of `ids`, in their order."""
        return cls(b"".join(i.bytes for i in ids))

    def __len__(self) -> int:
        return len(self.raw) // 16


class UuidArrayDumper(Dumper):
    """UuidArray as a binary uuid[]."""

    format = Format.BINARY

    def __init__(self, cls: type, context=None) -> None:
        super().__init__(cls, context)
        # Set here, not on the class: a dumper class with an oid is also registered for that
        # type by oid, and COPY's uuid[] columns (set_types) would then get it for lists.
        self.oid = postgres.types["uuid"].array_oid

    def dump(self, obj: UuidArray) -> bytes:
        count = len(obj)
        if count == 0:
            return struct.pack("!iii", 0, 0, _UUID_OID)
        elements = np.empty(count, dtype=_ELEMENT)
        elements["length"] = 16
        elements["id"] = np.frombuffer(obj.raw, dtype="V16")
        return struct.pack("!iiiii", 1, 0, _UUID_OID, count, 1) + elements.tobytes()


psycopg.adapters.register_dumper(UuidArray, UuidArrayDumper)
