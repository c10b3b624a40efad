"""The search behind ``AsyncSSLStream.readuntil``/``readline``, as ``asyncio.StreamReader``'s.

Kept apart from the stream so that the rules (which separator wins, when the
limit is overrun, what ``consumed`` says) read in one place, next to the
``StreamReader`` source they mirror (CPython 3.13's ``readuntil``).
"""

from __future__ import annotations

import asyncio
from typing import List, Optional, Tuple, Union

__all__ = ["separators_arg", "find_separator"]

Separator = Union[bytes, bytearray, memoryview, Tuple[Union[bytes, bytearray, memoryview], ...]]


def separators_arg(separator: object) -> List[bytes]:
    """The separators to look for, shortest first: one bytes-like object, or a
    tuple of them (as ``StreamReader.readuntil`` since Python 3.13)."""
    items = list(separator) if isinstance(separator, tuple) else [separator]
    if not items:
        raise ValueError("separator should contain at least one element")
    seps: List[bytes] = []
    for item in items:
        if not isinstance(item, (bytes, bytearray, memoryview)):
            raise TypeError("separator must be bytes-like or a tuple of bytes-like, "
                            f"not {type(item).__name__}")
        seps.append(bytes(item))
    seps.sort(key=len)
    if not seps[0]:
        raise ValueError("separator should be at least one-byte string")
    return seps


def find_separator(buf: bytearray, seps: List[bytes], offset: int, limit: int) -> Tuple[Optional[int], int]:
    """Look for the first separator in ``buf`` from ``offset``: ``(end, offset)``
    where ``end`` is the index just past the earliest-ending separator (``None``
    when none is there yet) and ``offset`` where the next search starts.
    ``asyncio.LimitOverrunError`` when the data before a separator, or the data
    searched without one, is longer than ``limit`` (``consumed``: that length)."""
    min_len, max_len = len(seps[0]), len(seps[-1])
    if len(buf) - offset >= min_len:
        start: Optional[int] = None
        end: Optional[int] = None
        for sep in seps:
            i = buf.find(sep, offset)
            if i != -1 and (end is None or i + len(sep) < end):
                start, end = i, i + len(sep)
        if start is not None and end is not None:
            if start > limit:
                raise asyncio.LimitOverrunError("Separator is found, but chunk is longer than limit", start)
            return end, offset
        offset = max(0, len(buf) + 1 - max_len)
        if offset > limit:
            raise asyncio.LimitOverrunError("Separator is not found, and chunk exceed the limit", offset)
    return None, offset
