"""Length- and CRC-framed records in an append-only file: the collector's write-ahead log and a sync
run's journal both write them.

A record is `length (u32 LE) | CRC-32 (u32 LE) | payload`. A crash mid-write leaves a torn or
corrupt last record; reading stops there, and what precedes it is intact.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["HEADER_SIZE", "frame", "read_frames"]

_HEADER = struct.Struct("<II")
HEADER_SIZE = _HEADER.size


def frame(payload: bytes) -> bytes:
    """`payload` as one record, ready to append."""
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_frames(path: Path) -> Iterator[bytes]:
    """The intact record payloads of the file at `path`, in order, read one at a time (nothing if it
    is gone); stops at the first torn or corrupt record."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        while len(header := handle.read(HEADER_SIZE)) == HEADER_SIZE:
            length, crc = _HEADER.unpack(header)
            payload = handle.read(length)
            if len(payload) != length or zlib.crc32(payload) != crc:
                return
            yield payload
