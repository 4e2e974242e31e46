"""Identifiers: time-ordered (UUIDv7-shaped) so that ids sort by creation, which cursor pagination relies on."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """RFC 9562 version 7: 48-bit Unix milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | rand & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | 0x7 << 76  # version
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant
    return uuid.UUID(int=value)


def new_id(prefix: str) -> str:
    """`ord_0192f…`: the prefix says what it names, the hex sorts by time."""
    return f"{prefix}_{uuid7().hex}"
