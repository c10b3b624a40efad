"""Reading up to a separator: ``AsyncSSLStream.readuntil`` and ``readline``, as
``asyncio.StreamReader``'s.

The search's rules (which separator wins, when the limit is overrun, what
``consumed`` says) read in one place, ``find_separator``, next to the
``StreamReader`` source they mirror (CPython 3.13's ``readuntil``).
"""

from __future__ import annotations

import asyncio
from typing import List, Optional, Tuple, Union

from commssl.aio.events import StreamEvents
from commssl.io.readside import take

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


class Lines(StreamEvents):
    """``AsyncSSLStream``'s ``readuntil`` and ``readline``, and how a read wanting more ends."""

    def _incomplete(self, expected: Optional[int]) -> BaseException:
        """What ends a read wanting more at the end of the stream: the stored error
        (a failure, a truncation), else ``IncompleteReadError`` with all the data
        left, the buffer emptied."""
        error = self._end_error()
        if error is not None:
            return error
        partial = bytes(self._rbuf)
        self._rbuf.clear()
        return asyncio.IncompleteReadError(partial, expected)

    async def readuntil(self, separator: Separator = b"\n", limit: int = -1) -> bytes:
        """The data up to and including ``separator`` (bytes-like, or a tuple of
        them: the first that ends earliest wins), as ``StreamReader.readuntil``.
        At the end of stream before a separator, ``asyncio.IncompleteReadError``
        with all the data left (``expected`` is ``None``) and the buffer emptied.
        When the data before the separator, or the data read without finding one,
        is longer than ``limit`` (``-1``: the stream's ``limit``, as
        ``StreamReader``'s), ``asyncio.LimitOverrunError`` (``consumed``: that
        length) and the data stays buffered. A peer that closes without
        close_notify, or a failure, raises that error instead once the buffered
        data holds no separator."""
        seps = separators_arg(separator)
        cap = self._line_limit(limit)
        self._check_open("readuntil")
        rbuf = self._rbuf
        offset = 0
        while True:
            end, offset = find_separator(rbuf, seps, offset, cap)
            if end is not None:
                data = take(rbuf, end)
                self._maybe_resume_reading()
                return data
            if self._ended():
                raise self._incomplete(None)
            self._maybe_resume_reading(force=True)  # limit may exceed the stream's
            await self._wait()

    async def readline(self, limit: int = -1) -> bytes:
        """One line, ending with ``b"\n"``, as ``StreamReader.readline``: at the
        end of stream the data left (without ``b"\n"``; ``b""`` when none). A line
        longer than ``limit`` (``-1``: the stream's ``limit``) raises
        ``ValueError`` and is dropped from the buffer (through its ``b"\n"`` when
        that was read, else all that was buffered), as ``StreamReader`` does."""
        cap = self._line_limit(limit)
        try:
            return await self.readuntil(b"\n", cap)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError as exc:
            if self._rbuf.startswith(b"\n", exc.consumed):
                del self._rbuf[:exc.consumed + 1]
            else:
                self._rbuf.clear()
            self._maybe_resume_reading()
            raise ValueError(exc.args[0]) from None

    def _line_limit(self, limit: object) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit == -1:
            return self._limit
        if limit < 1:
            raise ValueError(f"limit must be -1 (the stream's limit) or >= 1, not {limit}")
        return limit
