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
from typing import Any, Awaitable, Callable, List, Optional

from ._binding import ffi, lib
from ._tls import (
    CLOSING,
    HANDSHAKING,
    OPEN,
    STATE_NAMES,
    TLSConnection,
    check_after_handshake,
    in_callback,
    in_callback_error,
    timeout_arg,
)
from .connection import Connection, CtxCallback, SSLCallback, new_ssl, release_new_ssl
from .contexts import SSLAbstractContext, wants_new_ctx
from .errors import SSLClosed, SSLError, SSLHandshakeTimeout
from .pointers import SSLCtxPointer, SSLPointer

__all__ = ["AsyncSSLStream", "open_tcp_stream_async", "start_ssl_server"]

_log = logging.getLogger("commssl.aio")
_alloc = ffi.new_allocator(should_clear_after_alloc=False)

#: Decrypted bytes a stream buffers before it stops reading from the socket.
DEFAULT_LIMIT = 256 * 1024
#: How long ``close()`` waits for the peer's close_notify and for the socket to close.
DEFAULT_CLOSE_TIMEOUT = 5.0
_SCRATCH = 256 * 1024  # decryption scratch, one per thread (data is copied out at once)
_FLUSH_CHUNK = 1 << 24  # largest single BIO_read (an int in C)

_OP_HANDSHAKE = lib.COMMSSL_OP_HANDSHAKE
_OP_READ = lib.COMMSSL_OP_READ
_OP_WRITE = lib.COMMSSL_OP_WRITE
_OP_SHUTDOWN = lib.COMMSSL_OP_SHUTDOWN
_WANT_READ = lib.SSL_ERROR_WANT_READ
_ZERO_RETURN = lib.SSL_ERROR_ZERO_RETURN
_NULL = ffi.NULL
_FINE = (_WANT_READ, _ZERO_RETURN, lib.COMMSSL_SHUTDOWN_SENT)
_RUNNING = (HANDSHAKING, OPEN, CLOSING)  # states whose incoming records OpenSSL still reads

_tls = threading.local()


def _scratch() -> Any:
    buf = getattr(_tls, "buf", None)
    if buf is None:
        buf = _tls.buf = _alloc("char[]", _SCRATCH)
    return buf


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
        ssl_ctx._live()
    elif not wants_new_ctx(ssl_ctx):
        raise (ValueError if isinstance(ssl_ctx, str) else TypeError)(
            "ssl_ctx must be True, 'default', 'v23', an SSLCtxPointer or a server abstract context, "
            f"not {ssl_ctx!r}")


class _Protocol(asyncio.Protocol):
    """Hands the transport's events to its stream."""

    __slots__ = ("stream",)

    def __init__(self, stream: "AsyncSSLStream") -> None:
        self.stream = stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stream._connection_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.stream._data_received(data)

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
    ``await readexactly(n)``, ``write(data)``, ``await drain()``,
    ``await close()``; ``async with`` closes it. Every ``ssl_connection_*``
    function and ``peer_certificates()`` accept it.

    At a clean end of stream (the peer's close_notify) ``read`` returns
    ``b""``; a peer that closes without close_notify raises ``SSLError``.
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
        self._wbio: Any = _NULL
        self._transport: Optional[asyncio.Transport] = None
        self._done = ffi.new("size_t[2]")  # [0]: bytes done, [1]: bytes pending in the write BIO
        self._rbuf = bytearray()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._eof = False  # the peer's close_notify arrived
        self._exc: Optional[BaseException] = None  # what ends reading: failure, truncation, loss
        self._lost = False
        self._read_paused = False
        self._write_paused = False
        self._waiters: List["asyncio.Future[None]"] = []
        self._drainers: List["asyncio.Future[None]"] = []

    def _attach(self, sslp: SSLPointer, owns: bool, own_ctx: Optional[SSLCtxPointer]) -> None:
        """Take the SSL (the core's attach) and give it memory BIOs."""
        tls = self._tls
        try:
            ssl = tls.attach(sslp, owns, own_ctx, self._side, self)
        except BaseException:
            release_new_ssl(sslp, owns, own_ctx)
            raise
        try:
            rbio = lib.BIO_new(lib.BIO_s_mem())
            wbio = lib.BIO_new(lib.BIO_s_mem())
            if rbio == _NULL or wbio == _NULL:
                for bio in (rbio, wbio):
                    if bio != _NULL:
                        lib.BIO_free(bio)
                tls.fail()
                raise MemoryError("BIO_new failed")
            lib.SSL_set_bio(ssl, rbio, wbio)  # the SSL owns both from now on
            self._wbio = wbio
        finally:
            tls.end()

    @property
    def _handshaking(self) -> bool:
        return self._tls.state == HANDSHAKING

    @property
    def _closing(self) -> bool:
        return self._tls.state >= CLOSING

    def __repr__(self) -> str:
        state = STATE_NAMES[self._tls.state]
        peer = self.get_extra_info("peername")
        return f"<AsyncSSLStream {self._side} {state}{f' peer={peer}' if peer else ''}>"

    # -- accessors ------------------------------------------------------------

    @property
    def ssl(self) -> Optional[SSLPointer]:
        """The connection's ``SSLPointer`` (``None`` once closed)."""
        tls = self._tls
        return tls.sslp if tls.state in (HANDSHAKING, OPEN) else None

    @property
    def ssl_ctx(self) -> Optional[SSLCtxPointer]:
        """The ``SSLCtxPointer`` the SSL was made from (``None`` once closed)."""
        sslp = self.ssl
        return None if sslp is None else sslp.ctx

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
        """One ``commssl_mem_step`` as an operation of the core (the SSL pinned);
        sends what OpenSSL wrote to the write BIO. Returns 0, WANT_READ,
        ZERO_RETURN or SHUTDOWN_SENT; raises what any other result means."""
        tls = self._tls
        ssl = tls.begin(what, closing)
        try:
            done = self._done
            err = lib.commssl_mem_step(ssl, data, len(data), eof, op, buf, n, done, done + 1)
            if done[1]:
                self._flush(done[1])
            if err and err not in _FINE:
                tls.failure(err, what)
            return int(err)
        finally:
            tls.end()

    def _flush(self, pending: int) -> None:
        transport = self._transport
        while pending > 0:
            k = min(pending, _FLUSH_CHUNK)
            buf = _alloc("char[]", k)
            got = lib.BIO_read(self._wbio, buf, k)
            if got <= 0:
                return
            if transport is not None and not transport.is_closing():
                transport.write(memoryview(ffi.buffer(buf, got)))  # keeps buf alive while queued
            pending -= got

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        if self._tls.state != HANDSHAKING:
            return  # the server side's protocol factory could not make the SSL, or it was cancelled
        if self._handshake_timeout is not None:
            self._due = self._loop.time() + self._handshake_timeout
            self._timer = self._loop.call_at(self._due, self._handshake_timed_out)
        self._handshake(b"", 0)

    def _handshake(self, data: bytes, eof: int) -> None:
        tls = self._tls
        try:
            err = self._step(data, eof, _OP_HANDSHAKE, _NULL, 0, "handshake")
            if err == _WANT_READ:
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
        self._exc = exc
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
        buf = _scratch()
        closing = self._tls.state == CLOSING  # close() waits for the peer's close_notify: data is dropped
        try:
            while True:
                err = self._step(data, eof, _OP_READ, buf, _SCRATCH, "read", closing)
                n = self._done[0]
                if n and not closing:
                    self._rbuf += ffi.buffer(buf, n)
                if err:
                    break
                data, eof = b"", 0
            if err == _ZERO_RETURN:
                self._eof = True
        except BaseException as exc:  # what arrived before it stays readable
            n = self._done[0]
            if n and not closing:
                self._rbuf += ffi.buffer(buf, n)
            if self._exc is None:
                self._exc = exc
            if self._transport is not None:
                self._transport.close()
        self._wake()
        if len(self._rbuf) > self._limit and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _data_received(self, data: bytes) -> None:
        if self._tls.state not in _RUNNING or self._exc is not None:
            return
        if type(data) is not bytes:  # other event loops may pass a bytearray or memoryview
            data = bytes(data)
        if self._handshaking:
            self._handshake(data, 0)
        else:
            self._read(data, 0)

    def _eof_received(self) -> None:
        if self._tls.state not in _RUNNING or self._exc is not None or self._eof:
            return
        # OpenSSL decides: after close_notify this is a clean end, else a truncation (SSLError).
        if self._handshaking:
            self._handshake(b"", 1)
        else:
            self._read(b"", 1)

    def _connection_lost(self, exc: Optional[Exception]) -> None:
        self._lost = True
        self._write_paused = False
        if self._handshaking:
            self._handshake_failed(self._lost_error("handshake", exc))
        elif self._exc is None and not self._eof:
            self._exc = self._lost_error("read", exc)
        self._wake()
        error = self._exc if self._exc is not None else SSLClosed("write: the connection is closed", "closed")
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
        reader needs more than the buffer holds (``readexactly`` beyond the limit)."""
        if self._read_paused and (force or len(self._rbuf) <= self._limit // 2):
            self._read_paused = False
            if self._transport is not None:
                self._transport.resume_reading()

    def _ended(self) -> bool:
        return self._eof or self._exc is not None or self._closing

    def _check_open(self, what: str) -> None:
        """Refuse I/O on a closed stream, and from inside its own verify callback."""
        tls = self._tls
        if tls.state >= CLOSING:
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
            if self._exc is not None and not self._eof:
                raise self._exc
            data = bytes(rbuf)
            rbuf.clear()
            self._maybe_resume_reading()
            return data
        while not rbuf and not self._ended():
            await self._wait()
        if rbuf:
            if len(rbuf) <= n:
                data = bytes(rbuf)
                rbuf.clear()
            else:
                data = _take(rbuf, n)
            self._maybe_resume_reading()
            return data
        if self._exc is not None and not self._closing:
            raise self._exc
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
                if self._exc is not None and not self._eof and not self._closing:
                    raise self._exc
                partial = bytes(rbuf)
                rbuf.clear()
                raise asyncio.IncompleteReadError(partial, n)
            self._maybe_resume_reading(force=True)  # n may exceed the limit
            await self._wait()
        data = _take(rbuf, n)
        self._maybe_resume_reading()
        return data

    # -- writing ----------------------------------------------------------------

    def write(self, data: Any) -> None:
        """Encrypt ``data`` (bytes-like) and queue it on the transport; ``await
        drain()`` to wait while the transport's buffer is full."""
        if isinstance(data, str):
            raise TypeError("data must be a bytes-like object, not str")
        self._check_open("write")
        if self._lost or self._exc is not None:
            if self._exc is not None:
                raise self._exc
            raise SSLClosed("write: the connection is closed", "closed")
        buf = ffi.from_buffer(data)  # TypeError for what is not bytes-like
        try:
            if len(buf):
                self._step(b"", 0, _OP_WRITE, buf, len(buf), "write")
        finally:
            # Let go of the caller's buffer now: an exception kept in a reference
            # cycle would otherwise hold it exported until the GC, which crashes.
            ffi.release(buf)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        self._check_open("drain")
        if self._lost:
            if self._exc is not None and not self._eof:
                raise self._exc
            raise SSLClosed("drain: the connection is closed", "closed")
        if self._write_paused:
            fut = self._loop.create_future()
            self._drainers.append(fut)
            await fut

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
            if was_open and transport is not None and not self._lost and self._exc is None:
                if self._read_paused:
                    self._read_paused = False
                    transport.resume_reading()
                err = self._step(b"", 0, _OP_SHUTDOWN, _NULL, 0, "close", closing=True)
                if err == lib.COMMSSL_SHUTDOWN_SENT:
                    await self._wait_until(lambda: self._eof or self._exc is not None or self._lost, deadline)
            if transport is not None and not self._lost:
                transport.close()  # sends what is queued first; half a second more for that at least
                await self._wait_until(lambda: self._lost, max(deadline, self._loop.time() + 0.5))
        except Exception:  # never raises for the peer: a failed close_notify is still a close
            pass
        finally:
            self._release()

    async def _wait_until(self, done: Callable[[], bool], deadline: float) -> None:
        while not done():
            left = deadline - self._loop.time()
            if left <= 0:
                return
            fut = self._loop.create_future()
            self._waiters.append(fut)
            await asyncio.wait([fut], timeout=left)

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
        self._wbio = _NULL

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
    ssl_ctx: Any,
    tlsext_host_name: Any = None,
    handshake_timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    limit: int = DEFAULT_LIMIT,
    session: Any = None,
) -> AsyncSSLStream:
    """Connect to ``host:port`` and complete the TLS handshake as the client.

    ``ssl_ctx`` as for ``open_tcp_stream``: ``True``/``"default"`` (a context
    made for this stream, verifying the server and its name against the
    system's trusted certificates), an ``SSLCtxPointer`` (yours to destroy),
    an ``SSLPointer`` (used as it is), or a client abstract context. SNI and
    the name checked follow ``tlsext_host_name`` as there. A verify callback's
    exception propagates from this await; ``handshake_timeout`` (seconds, from
    the TCP connection) raises ``SSLHandshakeTimeout``. ``limit``: decrypted
    bytes buffered before reading from the socket pauses. ``session``: a
    ``Session`` to resume (``ssl_connection_session``).
    """
    _address_args(host, port, server=False)
    seconds = timeout_arg(handshake_timeout, "handshake_timeout")
    limit = _limit_arg(limit)
    if ssl_ctx is None or ssl_ctx is False:
        raise TypeError("ssl_ctx must be True, 'default', 'v23', an SSLCtxPointer, an SSLPointer or a client "
                        f"abstract context, not {ssl_ctx!r} (an AsyncSSLStream always has SSL)")
    loop = asyncio.get_running_loop()
    sslp, owns, own_ctx = new_ssl(ssl_ctx, "client", host=host, tlsext_host_name=tlsext_host_name,
                                  ctx_configure_callback=ctx_configure_callback,
                                  ssl_configure_callback=ssl_configure_callback, session=session)
    done: "asyncio.Future[None]" = loop.create_future()

    def on_handshake(_: AsyncSSLStream, exc: Optional[BaseException]) -> None:
        if not done.done():
            done.set_exception(exc) if exc is not None else done.set_result(None)

    stream = AsyncSSLStream(loop, "client", limit=limit, handshake_timeout=seconds, on_handshake=on_handshake)
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
    ssl_ctx: Any,
    handshake_timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    limit: int = DEFAULT_LIMIT,
    **server_kwargs: Any,
) -> asyncio.Server:
    """Listen on ``host:port`` (``port=0``: any; see ``server.sockets``) and run
    ``await handler(stream)`` for each connection whose handshake completed.

    ``ssl_ctx``: an ``SSLCtxPointer``, a server abstract context, or
    ``True``/``"default"`` (a context per connection: configure its
    certificate in ``ctx_configure_callback``). A failed handshake (bad
    certificate, timeout, a callback's exception, a peer that goes away) is
    logged on the ``commssl.aio`` logger and its connection closed; the server
    goes on. The stream is closed when the handler returns or raises (an
    exception is logged). ``server_kwargs`` go to ``loop.create_server``.
    """
    if not callable(handler):
        raise TypeError(f"handler must be a coroutine function, not {type(handler).__name__}")
    _address_args(host, port, server=True)
    _check_server_ctx(ssl_ctx)
    seconds = timeout_arg(handshake_timeout, "handshake_timeout")
    limit = _limit_arg(limit)
    loop = asyncio.get_running_loop()
    tasks = set()

    async def serve(stream: AsyncSSLStream) -> None:
        try:
            await handler(stream)
        except Exception:
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


class _Refuse(_Protocol):
    """The protocol of a connection that could not get an SSL: closes it at once."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        pass
