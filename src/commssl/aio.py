# Over 400 lines: AsyncSSLStream, its asyncio protocol and the server share one per-connection
# state (buffers, waiters, the memory-BIO SSL); split apart, that private state would cross modules.
"""asyncio SSL connections (the LispWorks ``async-io-state`` counterpart).

An ``AsyncSSLStream`` drives its ``SSL`` through a pair of memory BIOs on top
of a plain asyncio TCP transport: the protocol feeds what the socket delivers
into the read BIO and sends what OpenSSL wrote to the write BIO, so no call
ever blocks the event loop. Each event is one C call (``commssl_mem_step``),
not a cffi round trip per TLS record. Contexts, verification modes, Python
and C verify callbacks, host name checks and SNI are those of the blocking
streams (``connection.new_ssl``); so is the mapping of failures to conditions.

Flow control: ``write`` encrypts at once and hands the records to the
transport; ``drain`` waits while the transport's buffer is above its high-water
mark. Decrypted data waits in the stream until read; above ``limit`` bytes the
transport stops reading, so a peer that sends faster than the application
reads, or an application that writes to a peer that does not read, makes no
buffer grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Awaitable, Callable, List, Optional, Union

from commssl._core.binding import ffi
from commssl._core.callbacks import in_callback, in_callback_error
from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl._core.types import ContextArg, NewContext, SSLCtxArg
from commssl._separators import Separator, find_separator, separators_arg
from commssl.config.abstract import SSLAbstractContext
from commssl.config.contexts import check_method_side, wants_new_ctx
from commssl.errors import SSLClosed, SSLCondition, SSLError, SSLHandshakeTimeout
from commssl.io.connection import Connection, CtxCallback, SSLCallback, new_ssl
from commssl.io.detach import DetachDrain
from commssl.io.handshake import check_after_handshake, release_new_ssl
from commssl.io.policy import check_hostname_arg
from commssl.io.state import CLOSING, DETACHING, HANDSHAKING, OPEN, PLAIN
from commssl.io.timeouts import timeout_arg
from commssl.io.tls import (
    OP_HANDSHAKE,
    OP_READ,
    OP_SHUTDOWN,
    OP_WRITE,
    SCRATCH,
    SHUTDOWN_SENT,
    WANT_READ,
    ZERO_RETURN,
    TLSConnection,
    scratch,
)

__all__ = [
    "AsyncSSLStream", "attach_ssl_async", "detach_ssl_async", "open_tcp_stream_async", "start_ssl_server",
]

_log = logging.getLogger("commssl.aio")

#: Decrypted bytes a stream buffers before it stops reading from the socket.
DEFAULT_LIMIT = 256 * 1024
#: How long ``close()`` waits for the peer's close_notify and for the socket to close.
DEFAULT_CLOSE_TIMEOUT = 5.0

_NULL = ffi.NULL
_alloc = ffi.new_allocator(should_clear_after_alloc=False)
#: What the transport reads into per read: asyncio's own read size (256 KiB).
_IN_BUFFER = 256 * 1024


class _SharedReadBuffer(threading.local):
    """This thread's read buffer, lent to one stream at a time: asyncio's loops and
    uvloop call get_buffer, fill it and call buffer_updated in one go, and the
    bytes go into OpenSSL's read BIO at once, so one hot buffer serves every
    stream. A loop that filled buffers later would find it lent: that stream reads
    into one of its own."""

    def __init__(self) -> None:
        self.owner: Optional["AsyncSSLStream"] = None
        self.buf: Any = None
        self.view: Optional[memoryview] = None


_shared_read = _SharedReadBuffer()
_RUNNING = (HANDSHAKING, OPEN, CLOSING)  # states whose incoming records OpenSSL still reads


def _take(buf: bytearray, n: int) -> bytes:
    """The first ``n`` bytes of ``buf``, removed from it, in one copy (deleting
    from the front of a bytearray only moves its start)."""
    with memoryview(buf) as view:
        data = bytes(view[:n])
    del buf[:n]
    return data


def _limit_arg(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"limit must be an int, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"limit must be > 0, not {value}")
    return value


def _address_args(host: object, port: object, *, server: bool) -> None:
    if not (isinstance(host, str) or (server and host is None)):
        raise TypeError(f"host must be a str{' or None' if server else ''}, not {type(host).__name__}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    low = 0 if server else 1
    if not low <= port < 65536:
        raise ValueError(f"port must be {low}..65535, not {port}")


def _check_server_ctx(ssl_ctx: object) -> None:
    """Refuse, before listening, what ``new_ssl`` would refuse per connection."""
    if isinstance(ssl_ctx, SSLPointer):
        raise TypeError("ssl_ctx must not be an SSLPointer for a server: each connection needs its own SSL; "
                        "pass an SSLCtxPointer or a server abstract context")
    if isinstance(ssl_ctx, SSLAbstractContext):
        if ssl_ctx.side != "server":
            raise ValueError(f"ssl_ctx is a {ssl_ctx.side} context, used on the server side")
    elif isinstance(ssl_ctx, SSLCtxPointer):
        cdata = ssl_ctx._pin()
        try:
            check_method_side(cdata, "server", ctx=True)
        finally:
            ssl_ctx._unpin()
    elif not wants_new_ctx(ssl_ctx):
        raise (ValueError if isinstance(ssl_ctx, str) else TypeError)(
            "ssl_ctx must be True, 'default', 'v23', an SSLCtxPointer or a server abstract context, "
            f"not {ssl_ctx!r}")


class _Protocol(asyncio.BufferedProtocol):
    """Hands the transport's events to its stream. Buffered: the transport reads
    into the stream's buffer (``recv_into``), not into a new bytes object per read
    (which for asyncio's 256 KiB reads is an mmap and munmap each)."""

    __slots__ = ("stream",)

    def __init__(self, stream: "AsyncSSLStream") -> None:
        self.stream = stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stream._connection_made(transport)  # type: ignore[arg-type]

    def get_buffer(self, sizehint: int) -> Any:
        return self.stream._inbuf()

    def buffer_updated(self, nbytes: int) -> None:
        self.stream._buffer_updated(nbytes)

    def eof_received(self) -> bool:
        self.stream._eof_received()
        return True  # keep the socket open for our close_notify; close() closes it

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.stream._connection_lost(exc)

    def pause_writing(self) -> None:
        self.stream._write_paused = True

    def resume_writing(self) -> None:
        self.stream._resume_writing()


class AsyncSSLStream(Connection):
    """An SSL connection on an asyncio event loop (LispWorks ``async-io-state``).

    Made by ``open_tcp_stream_async`` (client) and ``start_ssl_server``
    (server), with the handshake complete. ``await read(n=-1)``,
    ``await readexactly(n)``, ``await readline()``, ``await readuntil(separator)``,
    ``write(data)``, ``await drain()``,
    ``await close()``; ``async with`` closes it. Every ``ssl_connection_*``
    function and ``peer_certificates()`` accept it.

    At a clean end of stream (the peer's close_notify) ``read`` returns
    ``b""``; a peer that closes without close_notify raises ``SSLError``.

    Made with ``ssl_ctx=None``, the stream is plain TCP (``.ssl`` is
    ``None``) until ``attach_ssl_async`` (STARTTLS), and again after
    ``detach_ssl_async``. While plain it reads from the socket only when a
    read needs more, so what the peer sends once the application stops
    reading (a TLS ClientHello after a STARTTLS reply) waits in the socket for
    OpenSSL.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, ssl_side: str, *, limit: int = DEFAULT_LIMIT,
                 handshake_timeout: Optional[float] = None,
                 on_handshake: Optional[Callable[["AsyncSSLStream", Optional[BaseException]], None]] = None,
                 ) -> None:
        """Internal: use ``open_tcp_stream_async`` or ``start_ssl_server``."""
        self._loop = loop
        self._side = ssl_side
        self._limit = limit
        self._handshake_timeout = handshake_timeout
        self._due: Optional[float] = None  # the handshake's deadline, on the loop's clock
        self._on_handshake = on_handshake
        self._tls = TLSConnection("AsyncSSLStream", self._abort_transport)
        self._host: Optional[str] = None  # the host a client connected to (attach's default name)
        self._detach_hold: Any = None  # the SSL a detach has pinned while it waits for the peer
        self._detach_keep: Optional[DetachDrain] = None  # what that detach keeps (_detach.py)
        self._detach_error: Optional[BaseException] = None  # its own refusal (too much data)
        self._tcp_eof = False  # the peer's FIN (the end of a plain stream, also after a detach)
        self._transport: Optional[asyncio.Transport] = None
        self._done = ffi.new("size_t[2]")  # [0]: bytes done, [1]: bytes pending in the write BIO
        self._rbuf = bytearray()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._lost = False
        self._read_paused = False
        self._write_paused = False
        self._waiters: List["asyncio.Future[None]"] = []
        self._drainers: List["asyncio.Future[None]"] = []
        self._in: Any = None  # the buffer the transport reads into (_SharedReadBuffer)
        self._own_in: Any = None  # this stream's own, when the shared one is lent
        self._own_view: Optional[memoryview] = None

    def _attach(self, sslp: SSLPointer, owns: bool, own_ctx: Optional[SSLCtxPointer]) -> None:
        """Take the SSL (the core's attach, with memory BIOs)."""
        self._tls.attach_mem(sslp, owns, own_ctx, self._side, self, self._send)

    def _send(self, view: memoryview) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(view)  # the view keeps its buffer alive while queued

    @property
    def _handshaking(self) -> bool:
        return self._tls.state == HANDSHAKING

    @property
    def _closing(self) -> bool:
        return not self._tls.state.usable

    def __repr__(self) -> str:
        state = self._tls.state.value
        peer = self.get_extra_info("peername")
        return f"<AsyncSSLStream {self._side} {state}{f' peer={peer}' if peer else ''}>"

    # -- accessors ------------------------------------------------------------

    @property
    def ssl_side(self) -> str:
        """``"client"`` or ``"server"``."""
        return self._side

    @property
    def transport(self) -> Optional[asyncio.Transport]:
        """The TCP transport under the TLS connection."""
        return self._transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info (``"peername"``, ``"sockname"``, ``"socket"``...)."""
        t = self._transport
        return default if t is None else t.get_extra_info(name, default)

    # -- the protocol's side ----------------------------------------------------

    def _step(self, data: Any, eof: int, op: int, buf: Any, n: int, what: str, closing: bool = False) -> int:
        return int(self._tls.mem_step(data, eof, op, buf, n, what, closing))

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        state = self._tls.state
        if state == PLAIN:  # no SSL yet: ready at once; read only when asked (see the class docstring)
            self._read_paused = True
            transport.pause_reading()
            if self._on_handshake is not None:
                self._on_handshake(self, None)
            return
        if state != HANDSHAKING:
            return  # the server side's protocol factory could not make the SSL, or it was cancelled
        self._start_handshake()

    def _start_handshake(self, first: bytes = b"") -> None:
        if self._handshake_timeout is not None:
            self._due = self._loop.time() + self._handshake_timeout
            self._timer = self._loop.call_at(self._due, self._handshake_timed_out)
        self._handshake(first, 0)

    def _handshake(self, data: bytes, eof: int) -> None:
        tls = self._tls
        try:
            err = self._step(data, eof, OP_HANDSHAKE, _NULL, 0, "handshake")
            if err == WANT_READ:
                return
            if err:  # the peer's close_notify during the handshake
                raise SSLClosed("handshake: the peer closed the TLS connection", "closed")
            check_after_handshake(tls.sslp, self._due, self._loop.time)  # type: ignore[arg-type]
        except BaseException as exc:  # a callback's own exception included: the awaiting code gets it
            self._handshake_failed(exc)
            return
        tls.handshake_done()
        self._cancel_timer()
        self._read(b"", 0)  # application data may have come with the handshake's last flight
        if self._on_handshake is not None:
            self._on_handshake(self, None)

    def _handshake_failed(self, exc: BaseException) -> None:
        self._cancel_timer()
        self._tls.fail()
        self._tls.read_error = exc
        transport = self._transport
        if transport is not None:
            transport.close()  # after the alert OpenSSL queued, if any
        if self._on_handshake is not None:
            self._on_handshake(self, exc)

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._handshaking:
            self._handshake_failed(SSLHandshakeTimeout("handshake: timed out"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _read(self, data: bytes, eof: int) -> None:
        """Decrypt what has arrived into the read buffer."""
        try:
            if self._tls.mem_decrypt(data, eof, self._rbuf) == ZERO_RETURN:
                self._tls.peer_closed = True
        except BaseException as exc:  # what arrived before it stays readable
            if self._tls.read_error is None:
                self._tls.read_error = exc
            if self._transport is not None:
                self._transport.close()
        self._wake()
        if len(self._rbuf) > self._limit and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _inbuf(self) -> memoryview:
        shared = _shared_read
        if shared.owner is None or shared.owner is self:
            if shared.view is None:
                shared.buf = _alloc("char[]", _IN_BUFFER)  # not zero-filled: recv_into writes what is read
                shared.view = memoryview(ffi.buffer(shared.buf))
            shared.owner = self
            self._in = shared.buf
            return shared.view
        if self._own_view is None:
            self._own_in = _alloc("char[]", _IN_BUFFER)
            self._own_view = memoryview(ffi.buffer(self._own_in))
        self._in = self._own_in
        return self._own_view

    def _buffer_updated(self, n: int) -> None:
        tls = self._tls
        state = tls.state
        buf = self._in
        try:
            if state == OPEN and tls.read_error is None:  # the common case: no copy, straight to OpenSSL
                self._read(buf[0:n], 0)
            elif state == HANDSHAKING and tls.read_error is None:
                self._handshake(buf[0:n], 0)
            else:
                self._data_received(ffi.buffer(buf, n)[:])
        finally:  # the bytes are in OpenSSL's read BIO (or copied): the buffer is free again
            if _shared_read.owner is self:
                _shared_read.owner = None

    def _data_received(self, data: bytes) -> None:
        state = self._tls.state
        if state == PLAIN:
            self._rbuf += data
            if not self._read_paused and self._transport is not None:
                self._read_paused = True  # until a read wants more
                self._transport.pause_reading()
            self._wake()
            return
        if state == DETACHING:
            self._detach_step(data, 0)
            return
        if state not in _RUNNING or self._tls.read_error is not None:
            return
        if type(data) is not bytes:  # other event loops may pass a bytearray or memoryview
            data = bytes(data)
        if self._handshaking:
            self._handshake(data, 0)
        else:
            self._read(data, 0)

    def _eof_received(self) -> None:
        self._tcp_eof = True
        state = self._tls.state
        if state == PLAIN:
            self._tls.peer_closed = True
            self._wake()
            return
        if state == DETACHING:
            self._detach_step(b"", 1)
            return
        if state not in _RUNNING or self._tls.read_error is not None or self._tls.peer_closed:
            return
        # OpenSSL decides: after close_notify this is a clean end, else a truncation (SSLError).
        if self._handshaking:
            self._handshake(b"", 1)
        else:
            self._read(b"", 1)

    def _connection_lost(self, exc: Optional[Exception]) -> None:
        self._lost = True
        if _shared_read.owner is self:  # lent for a read that never came
            _shared_read.owner = None
        self._write_paused = False
        if self._tls.state == PLAIN and self._tls.peer_closed and exc is None:
            pass  # the peer's FIN came first: a clean end of a plain stream
        elif self._handshaking:
            self._handshake_failed(self._lost_error("handshake", exc))
        elif self._tls.read_error is None and not self._tls.peer_closed:
            self._tls.read_error = self._lost_error("read", exc)
        self._wake()
        error = self._tls.read_error
        if error is None:
            error = SSLClosed("write: the connection is closed", "closed")
        drainers, self._drainers = self._drainers, []
        for fut in drainers:
            if not fut.done():
                fut.set_exception(error)

    @staticmethod
    def _lost_error(what: str, exc: Optional[Exception]) -> SSLError:
        detail = (str(exc) or type(exc).__name__) if exc is not None else "the peer closed the connection"
        err = SSLError(f"{what}: {detail}", getattr(exc, "errno", None))
        err.__cause__ = exc
        return err

    def _resume_writing(self) -> None:
        self._write_paused = False
        drainers, self._drainers = self._drainers, []
        for fut in drainers:
            if not fut.done():
                fut.set_result(None)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _wait(self) -> None:
        fut = self._loop.create_future()
        self._waiters.append(fut)
        await fut

    def _maybe_resume_reading(self, force: bool = False) -> None:
        """Resume reading once the buffer is half drained, or at once when a
        reader needs more than the buffer holds (``readexactly`` beyond the
        limit, or any read of a plain stream: it reads only when asked)."""
        if self._read_paused and (force or (len(self._rbuf) <= self._limit // 2
                                            and self._tls.state != PLAIN)):
            self._read_paused = False
            if self._transport is not None:
                self._transport.resume_reading()

    def _ended(self) -> bool:
        return self._tls.peer_closed or self._tls.read_error is not None or self._closing

    def _check_open(self, what: str) -> None:
        """Refuse I/O on a closed stream, and from inside its own verify callback."""
        tls = self._tls
        if not tls.state.usable:
            raise ValueError(f"{what} on a closed AsyncSSLStream")
        sslp = tls.sslp
        if sslp is not None and in_callback(sslp):
            raise in_callback_error(what, sslp)

    # -- reading ----------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``n < 0``: everything until the end of stream);
        ``b""`` at a clean end of stream. A peer that closes without
        close_notify, or a failure, raises once the buffered data is read."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        self._check_open("read")
        if n == 0:
            return b""
        rbuf = self._rbuf
        if n < 0:
            while not self._ended():
                self._maybe_resume_reading(force=True)
                await self._wait()
            if self._tls.read_error is not None and not self._tls.peer_closed:
                raise self._tls.read_error
            data = bytes(rbuf)
            rbuf.clear()
            self._maybe_resume_reading()
            return data
        while not rbuf and not self._ended():
            self._maybe_resume_reading(force=True)
            await self._wait()
        if rbuf:
            if len(rbuf) <= n:
                data = bytes(rbuf)
                rbuf.clear()
            else:
                data = _take(rbuf, n)
            self._maybe_resume_reading()
            return data
        if self._tls.read_error is not None and not self._closing:
            raise self._tls.read_error
        return b""

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; at the end of stream before that,
        ``asyncio.IncompleteReadError`` with the partial data (as ``StreamReader``)."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        self._check_open("readexactly")
        rbuf = self._rbuf
        while len(rbuf) < n:
            if self._ended():
                raise self._incomplete(n)
            self._maybe_resume_reading(force=True)  # n may exceed the limit
            await self._wait()
        data = _take(rbuf, n)
        self._maybe_resume_reading()
        return data

    def _incomplete(self, expected: Optional[int]) -> BaseException:
        """What ends a read wanting more at the end of the stream: the stored error
        (a failure, a truncation), else ``IncompleteReadError`` with all the data
        left, the buffer emptied."""
        tls = self._tls
        if tls.read_error is not None and not tls.peer_closed and not self._closing:
            return tls.read_error
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
                data = _take(rbuf, end)
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

    # -- writing ----------------------------------------------------------------

    def write(self, data: Any) -> None:
        """Encrypt ``data`` (bytes-like) and queue it on the transport; ``await
        drain()`` to wait while the transport's buffer is full."""
        if isinstance(data, str):
            raise TypeError("data must be a bytes-like object, not str")
        self._check_open("write")
        if self._lost or self._tls.read_error is not None:
            if self._tls.read_error is not None:
                raise self._tls.read_error
            raise SSLClosed("write: the connection is closed", "closed")
        if self._tls.state == PLAIN:
            self._write_plain(data)
            return
        buf = ffi.from_buffer(data)  # TypeError for what is not bytes-like
        try:
            if len(buf):
                self._step(b"", 0, OP_WRITE, buf, len(buf), "write")
        finally:
            # Let go of the caller's buffer now: an exception kept in a reference
            # cycle would otherwise hold it exported until the GC, which crashes.
            ffi.release(buf)

    def _write_plain(self, data: Any) -> None:
        tls = self._tls
        ssl = tls.begin("write")
        try:
            if ssl is not None:  # cannot happen on the loop's thread: attach needs the connection
                raise ValueError("write: SSL was attached to the AsyncSSLStream meanwhile")
            payload = bytes(memoryview(data))  # TypeError for what is not bytes-like
            if payload and self._transport is not None:
                self._transport.write(payload)
        finally:
            if ssl is None:
                tls.end_plain()
            else:
                tls.end()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        self._check_open("drain")
        if self._lost:
            if self._tls.read_error is not None and not self._tls.peer_closed:
                raise self._tls.read_error
            raise SSLClosed("drain: the connection is closed", "closed")
        if self._write_paused:
            fut = self._loop.create_future()
            self._drainers.append(fut)
            await fut

    # -- STARTTLS: attaching and detaching SSL --------------------------------------

    def _check_attachable(self, buffered: str) -> None:
        if self._rbuf and buffered != "tls":
            raise ValueError(
                f"attach_ssl_async: {len(self._rbuf)} bytes the peer sent in clear are buffered and unread: "
                "read them first (bytes that follow a STARTTLS exchange in the same packet are refused "
                "rather than taken as part of the TLS connection; buffered='tls' when the peer starts TLS "
                "at once)")
        if self._tls.peer_closed or self._lost or self._tls.read_error is not None:
            raise SSLError("attach_ssl_async: the connection is closed", None)

    async def _attach_async(self, sslp: SSLPointer, owns: bool, own_ctx: Optional[SSLCtxPointer],
                            seconds: Optional[float]) -> None:
        """Attach and run the handshake; its failure (or a cancellation) leaves the
        stream failed and its socket closed: nothing more goes out in clear."""
        first = bytes(self._rbuf)  # buffered="tls": the start of the peer's handshake
        self._rbuf.clear()
        self._attach(sslp, owns, own_ctx)  # frees what new_ssl made when it fails
        done: "asyncio.Future[None]" = self._loop.create_future()

        def on_handshake(_: AsyncSSLStream, exc: Optional[BaseException]) -> None:
            if not done.done():
                done.set_exception(exc) if exc is not None else done.set_result(None)

        self._on_handshake = on_handshake
        self._handshake_timeout = seconds
        try:
            self._start_handshake(first)
            self._maybe_resume_reading(force=True)
            await done
        except BaseException as exc:
            self._on_handshake = None
            if not done.done():
                done.cancel()
            elif not done.cancelled():
                done.exception()
            if self._handshaking:  # cancelled: fail the handshake (no plaintext path is left)
                self._handshake_failed(SSLCondition(f"handshake: {type(exc).__name__}", "cancelled"))
            raise
        finally:
            self._on_handshake = None

    async def _detach_async(self, seconds: float) -> None:
        tls = self._tls
        if self._tls.read_error is not None and tls.state == OPEN:
            raise self._tls.read_error
        ssl = tls.begin_detach("detach_ssl_async")
        if ssl is None:
            return
        keep = self._detach_keep = DetachDrain("detach_ssl_async", self._rbuf)
        self._detach_error = None
        self._detach_hold = ssl
        deadline = self._loop.time() + seconds
        try:
            self._maybe_resume_reading(force=True)
            self._detach_begin()
            await self._wait_until(
                lambda: self._detach_hold is None or self._detach_error is not None
                or self._tls.read_error is not None or self._lost, deadline)
            if self._detach_error is not None:
                raise self._detach_error
            if self._tls.read_error is not None:
                raise self._tls.read_error
            if self._detach_hold is not None:
                raise keep.no_answer("(the connection was lost)" if self._lost else f"within {seconds} s")
        finally:
            self._detach_hold = self._detach_keep = self._detach_error = None
            tls.end_detach()
            # the TLS end (close_notify) is not the end of the plain stream
            self._tls.peer_closed = self._tcp_eof
            self._pause_plain()

    def _pause_plain(self) -> None:
        """Plain again: read from the socket only when a read asks (see the class docstring)."""
        if self._rbuf and not self._read_paused and self._transport is not None and not self._lost:
            self._read_paused = True
            self._transport.pause_reading()

    def _detach_begin(self) -> None:
        """Send our close_notify; then read what has arrived, toward the peer's."""
        try:
            err = self._tls.mem_step(b"", 0, OP_SHUTDOWN, _NULL, 0, "detach_ssl_async",
                                     held=self._detach_hold)
            if err == 0:  # the peer's close_notify had come already: nothing more to read
                self._detach_done()
                return
        except BaseException as exc:
            self._detach_failed(exc)
            return
        self._detach_step(b"", 0)

    def _detach_step(self, data: bytes, eof: int) -> None:
        """During a detach, after our close_notify: decrypt what arrived up to the
        peer's close_notify (kept by the shared policy, ``_detach.DetachDrain``),
        then complete the shutdown; what follows the peer's is clear data."""
        ssl = self._detach_hold
        keep = self._detach_keep
        if ssl is None or keep is None or self._detach_error is not None:
            if data:  # complete (or refused, as detach_ssl): the peer's bytes are plain now
                self._rbuf += data
            if eof:
                self._tls.peer_closed = True
            self._pause_plain()
            self._wake()
            return
        tls = self._tls
        buf = scratch()
        done = tls.mem_done
        try:
            while True:
                err = tls.mem_step(data, eof, OP_READ, buf, SCRATCH, "detach_ssl_async", held=ssl)
                data, eof = b"", 0
                if done[0]:
                    try:
                        keep.keep(ffi.buffer(buf, done[0]))
                    except SSLClosed as exc:  # too much: the detach's own refusal
                        self._detach_error = exc
                        self._wake()
                        return
                if err == WANT_READ:
                    break
                if err == ZERO_RETURN:  # the peer's close_notify: complete the shutdown
                    err = tls.mem_step(b"", 0, OP_SHUTDOWN, _NULL, 0, "detach_ssl_async", held=ssl)
                    if err:
                        tls.failure(err, "detach_ssl_async")
                    self._detach_done()
                    return
        except BaseException as exc:
            self._detach_failed(exc)
            return
        self._wake()

    def _detach_done(self) -> None:
        ssl, keep = self._detach_hold, self._detach_keep
        assert keep is not None
        keep.finish(ssl)
        self._detach_hold = None
        if self._tcp_eof:
            self._tls.peer_closed = True
        self._pause_plain()
        self._wake()

    def _detach_failed(self, exc: BaseException) -> None:
        """A TLS failure during the detach: raised by it, and by every later read."""
        if self._tls.read_error is None:
            self._tls.read_error = exc
        self._wake()

    # -- closing ------------------------------------------------------------------

    async def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Shut TLS down cleanly: send close_notify, wait (at most ``timeout``
        seconds) for the peer's, close the socket (dropping what a peer that
        does not read left queued after at least half a second more), and free
        the SSL. Never raises for a peer that is gone or silent. Unread data is
        dropped. Closing again does nothing."""
        seconds = timeout_arg(timeout, "timeout") or 0.0
        tls = self._tls
        was_open = tls.state == OPEN
        if not tls.start_closing():
            return
        self._rbuf.clear()  # unread data is dropped, as by a socket close
        self._wake()
        transport = self._transport
        deadline = self._loop.time() + seconds
        try:
            if was_open and transport is not None and not self._lost and self._tls.read_error is None:
                if self._read_paused:
                    self._read_paused = False
                    transport.resume_reading()
                err = self._step(b"", 0, OP_SHUTDOWN, _NULL, 0, "close", closing=True)
                if err == SHUTDOWN_SENT:
                    tls = self._tls
                    await self._wait_until(
                        lambda: tls.peer_closed or tls.read_error is not None or self._lost, deadline)
            if transport is not None and not self._lost:
                transport.close()  # sends what is queued first; half a second more for that at least
                await self._wait_until(lambda: self._lost, max(deadline, self._loop.time() + 0.5))
        except Exception:  # never raises for the peer: a failed close_notify is still a close
            pass
        finally:
            self._release()

    async def _wait_until(self, done: Callable[[], bool], deadline: float) -> None:
        loop = self._loop
        while not done():
            if deadline <= loop.time():
                return
            fut = loop.create_future()
            self._waiters.append(fut)
            timer = loop.call_at(deadline, _set_done, fut)  # lighter than asyncio.wait(timeout=)
            try:
                await fut
            finally:
                timer.cancel()

    def _abort_transport(self) -> None:
        """The core's last step: drop the transport (no-op once it is gone)."""
        transport = self._transport
        if transport is not None and not self._lost and not transport.is_closing():
            transport.abort()

    def _release(self) -> None:
        """Close the connection in the core, freeing the SSL and the transport."""
        self._cancel_timer()
        self._tls.start_closing()
        ssl, _ = self._tls.begin_close()
        if ssl is not None:
            self._tls.end()

    def _abort(self) -> None:
        """Drop the connection at once (a failed or cancelled open); a transport
        already closing still sends the alert OpenSSL queued."""
        self._release()

    async def __aenter__(self) -> "AsyncSSLStream":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


# -- making streams ------------------------------------------------------------


async def open_tcp_stream_async(
    host: str,
    port: int,
    *,
    ssl_ctx: Optional[SSLCtxArg],
    tlsext_host_name: Any = None,
    handshake_timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    limit: int = DEFAULT_LIMIT,
    session: Any = None,
    check_hostname: bool = True,
) -> AsyncSSLStream:
    """Connect to ``host:port`` and complete the TLS handshake as the client
    (``ssl_ctx=None``: a plain stream, for ``attach_ssl_async`` later).

    ``ssl_ctx`` as for ``open_tcp_stream``: ``True``/``"default"`` (a context
    made for this stream, verifying the server and its name against the
    system's trusted certificates), an ``SSLCtxPointer`` (yours to destroy),
    an ``SSLPointer`` (used as it is), or a client abstract context. SNI and
    the name checked follow ``tlsext_host_name`` as there. A verify callback's
    exception propagates from this await; ``handshake_timeout`` (seconds, from
    the TCP connection) raises ``SSLHandshakeTimeout``. ``limit``: decrypted
    bytes buffered before reading from the socket pauses. ``session``: a
    ``Session`` to resume (``ssl_connection_session``). ``check_hostname=False``
    checks no name (the chain is still verified).
    """
    _address_args(host, port, server=False)
    seconds = timeout_arg(handshake_timeout, "handshake_timeout")
    limit = _limit_arg(limit)
    check_hostname_arg(check_hostname)
    if ssl_ctx is False:  # type: ignore[comparison-overlap]  # (from callers not type-checked)
        raise TypeError("ssl_ctx must be None (plain), True, 'default', 'v23', an SSLCtxPointer, an "
                        f"SSLPointer or a client abstract context, not {ssl_ctx!r}")
    if ssl_ctx is None and (tlsext_host_name is not None or ctx_configure_callback is not None
                            or ssl_configure_callback is not None or handshake_timeout is not None
                            or not check_hostname):
        raise ValueError("tlsext_host_name, check_hostname, handshake_timeout and the configure callbacks "
                         "need SSL: with ssl_ctx=None pass them to attach_ssl_async")
    loop = asyncio.get_running_loop()
    if ssl_ctx is not None:
        sslp, owns, own_ctx = new_ssl(ssl_ctx, "client", host=host, tlsext_host_name=tlsext_host_name,
                                      ctx_configure_callback=ctx_configure_callback,
                                      ssl_configure_callback=ssl_configure_callback, session=session,
                                      check_hostname=check_hostname)
    done: "asyncio.Future[None]" = loop.create_future()

    def on_handshake(_: AsyncSSLStream, exc: Optional[BaseException]) -> None:
        if not done.done():
            done.set_exception(exc) if exc is not None else done.set_result(None)

    try:
        stream = AsyncSSLStream(loop, "client", limit=limit, handshake_timeout=seconds,
                                on_handshake=on_handshake)
    except BaseException:  # an SSLPointer passed in is given back (its claim), a new one freed
        if ssl_ctx is not None:
            release_new_ssl(sslp, owns, own_ctx)
        raise
    stream._host = host
    if ssl_ctx is not None:
        try:
            stream._attach(sslp, owns, own_ctx)  # frees what new_ssl made when it fails
        except BaseException:
            stream._release()
            raise
    try:
        await loop.create_connection(lambda: _Protocol(stream), host, port)
        await done
    except BaseException:
        # Cancelled or failed: nothing may be left behind, not even an outcome set
        # on `done` later that no one retrieves (asyncio would log it).
        stream._on_handshake = None
        if not done.done():
            done.cancel()
        elif not done.cancelled():
            done.exception()
        stream._abort()
        raise
    stream._on_handshake = None
    return stream


Handler = Callable[[AsyncSSLStream], Awaitable[Any]]


async def start_ssl_server(
    handler: Handler,
    host: Optional[str],
    port: int,
    *,
    ssl_ctx: Union[None, NewContext, ContextArg],  # None: a plain server
    handshake_timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    limit: int = DEFAULT_LIMIT,
    log_missing_close_notify: bool = False,
    **server_kwargs: Any,
) -> asyncio.Server:
    """Listen on ``host:port`` (``port=0``: any; see ``server.sockets``) and run
    ``await handler(stream)`` for each connection whose handshake completed
    (``ssl_ctx=None``: for each connection, a plain stream, for STARTTLS with
    ``attach_ssl_async``).

    ``ssl_ctx``: an ``SSLCtxPointer``, a server abstract context, or
    ``True``/``"default"`` (a context per connection: configure its
    certificate in ``ctx_configure_callback``). A failed handshake (bad
    certificate, timeout, a callback's exception, a peer that goes away) is
    logged on the ``commssl.aio`` logger and its connection closed; the server
    goes on. The stream is closed when the handler returns or raises (an
    exception is logged with its traceback). ``server_kwargs`` go to
    ``loop.create_server``.

    A handler that lets the ``SSLError`` of a peer that left without
    close_notify (or whose connection was lost) out is logged quietly, as
    CPython's asyncio and trio do: one line at DEBUG, no traceback.
    ``log_missing_close_notify=True`` logs it as any other exception.
    """
    if not callable(handler):
        raise TypeError(f"handler must be a coroutine function, not {type(handler).__name__}")
    _address_args(host, port, server=True)
    if ssl_ctx is not None:
        _check_server_ctx(ssl_ctx)
    seconds = timeout_arg(handshake_timeout, "handshake_timeout")
    limit = _limit_arg(limit)
    if not isinstance(log_missing_close_notify, bool):
        raise TypeError("log_missing_close_notify must be a bool, "
                        f"not {type(log_missing_close_notify).__name__}")
    loop = asyncio.get_running_loop()
    tasks = set()

    async def serve(stream: AsyncSSLStream) -> None:
        try:
            await handler(stream)
        except Exception as exc:
            # exactly SSLError, and the stream's own: the peer's end without close_notify (or a lost
            # connection), not a failure of the handler nor a protocol error
            if not log_missing_close_notify and type(exc) is SSLError and exc is stream._tls.read_error:
                _log.debug("commssl: %r: the peer left without close_notify: %s", stream, exc)
            else:
                _log.exception("commssl: handler of %r raised", stream)
        finally:
            await stream.close()

    def on_handshake(stream: AsyncSSLStream, exc: Optional[BaseException]) -> None:
        stream._on_handshake = None
        if exc is not None:
            _log.info("commssl: TLS handshake with %s failed: %s: %s",
                      stream.get_extra_info("peername"), type(exc).__name__, exc)
            stream._release()
            return
        task = loop.create_task(serve(stream))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def factory() -> _Protocol:
        stream = AsyncSSLStream(loop, "server", limit=limit, handshake_timeout=seconds,
                                on_handshake=on_handshake)
        if ssl_ctx is None:
            return _Protocol(stream)
        try:
            sslp, owns, own_ctx = new_ssl(ssl_ctx, "server", ctx_configure_callback=ctx_configure_callback,
                                          ssl_configure_callback=ssl_configure_callback)
            stream._attach(sslp, owns, own_ctx)
        except Exception as exc:  # the context was destroyed, say: refuse this connection, keep serving
            _log.error("commssl: cannot make an SSL for a new connection: %s: %s", type(exc).__name__, exc)
            stream._release()
            return _Refuse(stream)
        return _Protocol(stream)

    return await loop.create_server(factory, host, port, **server_kwargs)


def _set_done(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class _Refuse(_Protocol):
    """The protocol of a connection that could not get an SSL: closes it at once."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]

    def get_buffer(self, sizehint: int) -> Any:
        return bytearray(256)

    def buffer_updated(self, nbytes: int) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        pass


# -- STARTTLS (LispWorks async-io-state-attach-ssl / -detach-ssl) ---------------------


def _async_stream(stream: object, what: str) -> AsyncSSLStream:
    if not isinstance(stream, AsyncSSLStream):
        raise TypeError(f"{what}: stream must be an AsyncSSLStream, not {type(stream).__name__}")
    return stream


async def attach_ssl_async(
    stream: AsyncSSLStream,
    *,
    ssl_ctx: SSLCtxArg = True,
    ssl_side: str = "server",
    tlsext_host_name: Any = None,
    handshake_timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    buffered: str = "refuse",
    check_hostname: bool = True,
) -> SSLPointer:
    """Attach SSL to a plain ``AsyncSSLStream`` (STARTTLS) and run the handshake
    as ``ssl_side`` (``"server"`` or ``"client"``); returns the ``SSLPointer``.

    ``ssl_ctx``, ``tlsext_host_name`` and the configure callbacks as for
    ``open_tcp_stream_async``; on the client side the name checked defaults to
    the host the stream connected to (none known, as on a stream a server
    accepted: ``ValueError`` unless ``tlsext_host_name`` or
    ``check_hostname=False``). A verify callback's exception, a failure,
    ``handshake_timeout`` (``SSLHandshakeTimeout``) or a cancellation raise here
    and leave the stream failed, its socket closed (``close()`` it): nothing is
    sent in clear after an attach.

    Clear data buffered in the stream and not yet read (bytes that came with
    the peer's STARTTLS reply or command, in one packet) is, with ``buffered``
    ``"refuse"`` (the default), a ``ValueError`` before anything is attached:
    read it first. Such bytes are an injection (CVE-2011-0411) or a peer that
    did not wait; they are never silently taken as TLS. ``"tls"`` hands them to
    OpenSSL as the start of the handshake, for protocols whose peer starts TLS
    at once after its reply. What arrives after the last read (the plain stream
    reads only when asked) waits in the socket and goes to OpenSSL.
    """
    stream = _async_stream(stream, "attach_ssl_async")
    seconds = timeout_arg(handshake_timeout, "handshake_timeout")
    if ssl_side not in ("server", "client"):
        raise (ValueError if isinstance(ssl_side, str) else TypeError)(
            f"ssl_side must be 'server' or 'client', not {ssl_side!r}")
    if buffered not in ("refuse", "tls"):
        raise (ValueError if isinstance(buffered, str) else TypeError)(
            f"buffered must be 'refuse' or 'tls', not {buffered!r}")
    stream._check_open("attach_ssl_async")
    tls = stream._tls
    if tls.state in (HANDSHAKING, OPEN):
        raise ValueError("attach_ssl_async: this AsyncSSLStream already has SSL attached")
    stream._check_attachable(buffered)
    host = stream._host if ssl_side == "client" else None
    sslp, owns, own_ctx = new_ssl(ssl_ctx, ssl_side, host=host, tlsext_host_name=tlsext_host_name,
                                  ctx_configure_callback=ctx_configure_callback,
                                  ssl_configure_callback=ssl_configure_callback,
                                  check_hostname=check_hostname)
    stream._side = ssl_side
    await stream._attach_async(sslp, owns, own_ctx, seconds)
    return sslp


async def detach_ssl_async(stream: AsyncSSLStream, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
    """Shut SSL down (close_notify both ways, waiting at most ``timeout``
    seconds for the peer's) and free it; the stream goes on as plain TCP, as
    in LispWorks. What ``detach_ssl`` keeps, this keeps: decrypted data not
    yet read, then the data the peer sent before its close_notify (these two
    up to 1 MiB), then what it sends in clear after it. Does nothing on a plain
    stream. ``SSLClosed`` when the peer does not answer in time, or sends more
    than 1 MiB instead (the stream is then plain, what was kept readable, but
    the peer may still speak TLS: close it)."""
    stream = _async_stream(stream, "detach_ssl_async")
    seconds = timeout_arg(timeout, "timeout") or 0.0
    stream._check_open("detach_ssl_async")
    await stream._detach_async(seconds)
