"""anyio's conventions for ``commssl.anyio.TLSStream``: its errors, ``unwrap`` and the
closing handshake of ``aclose`` (``standard_compatible``), as anyio's own ``TLSStream``.

``standard_compatible=True`` (the default, as anyio's): ``aclose`` sends close_notify
and waits (at most ``close_timeout`` seconds) for the peer's, and a peer that ends the
stream without close_notify is a ``BrokenResourceError`` (from ``SSLError``), from
``receive`` or from ``aclose``. ``False``: no closing handshake, and such an end is
``anyio.EndOfStream`` (what HTTP clients want: httpcore uses ``False``).

Kept out of ``commssl.anyio`` so that the stream's I/O and these rules each read in one
place. The functions take the stream and use its private state (``_tls``, the locks),
described by ``Stream`` (a ``Protocol``, so that this module need not import
``commssl.anyio``, which imports it).
"""

from __future__ import annotations

import re
from typing import Any, Optional, Protocol, Tuple

import anyio
import anyio.abc

from commssl.errors import SSLClosed, SSLCondition, SSLError
from commssl.io.detach import DetachDrain
from commssl.io.readside import detach_read, end_error, ended, feed, release, send_close_notify
from commssl.io.state import CLOSED, OPEN
from commssl.io.tls import TLSConnection

__all__ = ["Stream", "broken", "byte_stream_arg", "close", "send_eof_error", "standard_compatible_arg",
           "unwrap"]


class Stream(Protocol):
    """What these functions use of a ``commssl.anyio.TLSStream``."""

    transport_stream: anyio.abc.AnyByteStream
    standard_compatible: bool
    _tls: TLSConnection
    _rbuf: bytearray
    _recv_lock: anyio.Lock
    _broken: Optional[BaseException]
    _close_timeout: float
    _unwrapped: bool

    def _check(self, what: str) -> None: ...

    def _read_error(self, exc: BaseException) -> BaseException: ...

    async def _flush(self) -> None: ...

    async def _pull(self) -> Tuple[bytes, int]: ...


def broken(exc: BaseException) -> anyio.BrokenResourceError:
    """anyio's error for a TLS failure, the commssl condition as its ``__cause__``."""
    err = anyio.BrokenResourceError(str(exc) or type(exc).__name__)
    err.__cause__ = exc
    return err


def send_eof_error(version: Optional[str]) -> NotImplementedError:
    """``send_eof``'s refusal, in the words of anyio's ``TLSStream``."""
    match = re.match(r"TLSv(\d+)(?:\.(\d+))?", version or "")
    if match and (int(match.group(1)), int(match.group(2) or 0)) < (1, 3):
        return NotImplementedError(f"send_eof() requires at least TLSv1.3; current session uses {version}")
    return NotImplementedError("send_eof() has not yet been implemented for TLS streams")


def byte_stream_arg(byte_stream: object) -> None:
    if not isinstance(byte_stream, (anyio.abc.ByteStream, anyio.abc.ObjectStream)):
        raise TypeError("byte_stream must be an anyio ByteStream or ObjectStream[bytes], "
                        f"not {type(byte_stream).__name__}")


def standard_compatible_arg(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"standard_compatible must be a bool, not {type(value).__name__}")
    return value


async def unwrap(self: Stream) -> Tuple[anyio.abc.AnyByteStream, bytes]:
    """``TLSStream.unwrap``: do the closing handshake (send close_notify, wait for the peer's) and
    return ``(byte stream, bytes)``: the byte stream, open, to go on in clear,
    and what was received and not yet returned, in order: decrypted data not
    yet received, application data the peer sent before its close_notify (at
    most ``commssl.io.detach.DETACH_DRAIN`` bytes in all), then the clear bytes
    that followed its close_notify. The ``TLSStream`` is closed (its SSL
    freed). No time limit (as anyio's): wrap it in ``anyio.fail_after``. A
    failure, a peer that ends the stream without close_notify, or a
    cancellation closes the byte stream too and raises (``BrokenResourceError``
    from the commssl condition for the first two)."""
    self._check("unwrap")
    tls = self._tls
    if tls.read_error is not None:
        raise self._read_error(tls.read_error)
    try:
        async with self._recv_lock:
            ssl = tls.begin_detach("unwrap")
            try:
                keep = DetachDrain("unwrap", self._rbuf)
                wait = send_close_notify(tls, "unwrap", held=ssl)
                await self._flush()
                if wait:
                    await _unwrap_read(self, ssl, keep)
                keep.finish(ssl)
            finally:
                tls.end_detach()
    except BaseException as exc:
        self._unwrapped = True
        release(tls)
        await anyio.aclose_forcefully(self.transport_stream)
        if isinstance(exc, SSLCondition):
            raise broken(exc) from exc
        raise
    self._unwrapped = True
    release(tls)  # plain now: frees nothing more, marks the TLSStream closed
    data = bytes(self._rbuf)
    self._rbuf.clear()
    return self.transport_stream, data


async def _unwrap_read(self: Stream, ssl: Any, keep: DetachDrain) -> None:
    """After our close_notify: decrypt (and keep) what comes up to the peer's,
    then complete the shutdown (``readside.detach_read``)."""
    data, eof = b"", 0
    while True:
        result = detach_read(self._tls, ssl, keep, "unwrap", data, eof)
        if isinstance(result, SSLClosed):  # more than a detach keeps
            raise result
        await self._flush()
        if result:
            return
        data, eof = await self._pull()


async def close(self: Stream) -> None:
    """``TLSStream.aclose``: with ``standard_compatible``, send close_notify and wait (at most
    ``close_timeout`` seconds, shielded from cancellation) for the peer's;
    then close the byte stream and free the SSL. A peer that ends the stream
    without close_notify meanwhile raises ``BrokenResourceError`` (everything
    is closed first, as anyio's ``aclose``); a peer that does not answer in
    time, or a connection that had failed already, closes quietly. Closing
    again (or after ``unwrap``) does nothing."""
    tls = self._tls
    if tls.state == CLOSED or self._unwrapped:
        return
    was_open = tls.state == OPEN
    error: Optional[BaseException] = None
    try:
        if (tls.start_closing() and was_open and self.standard_compatible
                and tls.read_error is None and self._broken is None):
            with anyio.move_on_after(self._close_timeout, shield=True):
                wait = send_close_notify(tls, "close")
                await self._flush()
                # another task's receive holds the byte stream's receiving side: do not wait
                if wait and not self._recv_lock.locked():
                    async with self._recv_lock:
                        while not ended(tls):  # what comes is dropped (closing), up to the peer's
                            data, eof = await self._pull()
                            if feed(tls, data, eof, self._rbuf) is None and eof and not ended(tls):
                                # OpenSSL reports a truncation itself; never spin on an ended stream
                                raise SSLError("close: the peer closed the connection without close_notify",
                                               None)
                        stored = end_error(tls)
                        if stored is not None:
                            raise stored
    except SSLError as exc:  # exactly SSLError: the peer ended the stream without close_notify
        error = exc if type(exc) is SSLError else None
    except Exception:  # never raises for the peer otherwise: a failed close_notify is still a close
        pass
    finally:
        release(tls)
        await anyio.aclose_forcefully(self.transport_stream)
    if error is not None:
        raise broken(error)
