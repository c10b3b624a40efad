"""The event plumbing of ``AsyncSSLStream``: the asyncio protocol that hands the
transport's events to the stream, the handshake they drive, and the flow control.

The protocol feeds what the socket delivers into the read BIO and sends what
OpenSSL wrote to the write BIO, so no call ever blocks the event loop. Each event
is one C call (``commssl_mem_step``), not a cffi round trip per TLS record; what
the bytes mean (data, the end, the stored error) is ``commssl.io.readside``'s.

Flow control: ``write`` encrypts at once and hands the records to the transport;
``drain`` waits while the transport's buffer is above its high-water mark.
Decrypted data waits in the stream until read; above ``limit`` bytes the
transport stops reading, so a peer that sends faster than the application reads,
or an application that writes to a peer that does not read, makes no buffer grow
without bound.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, List, Optional

from commssl._core.binding import ffi
from commssl._core.callbacks import in_callback, in_callback_error
from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl.errors import SSLClosed, SSLError, SSLHandshakeTimeout
from commssl.io.connection import Connection
from commssl.io.detach import DetachDrain
from commssl.io.handshake import check_after_handshake
from commssl.io.readside import end_error, ended, feed, handshake_done, handshake_step, release
from commssl.io.state import CLOSING, DETACHING, HANDSHAKING, OPEN, PLAIN
from commssl.io.tls import TLSConnection

#: Decrypted bytes a stream buffers before it stops reading from the socket.
DEFAULT_LIMIT = 256 * 1024

_alloc = ffi.new_allocator(should_clear_after_alloc=False)
#: What the transport reads into per read: asyncio's own read size (256 KiB).
_IN_BUFFER = 256 * 1024
_RUNNING = (HANDSHAKING, OPEN, CLOSING)  # states whose incoming records OpenSSL still reads

#: Called once the handshake is over: ``(stream, None)``, or ``(stream, its error)``.
OnHandshake = Callable[[Any, Optional[BaseException]], None]


class _SharedReadBuffer(threading.local):
    """This thread's read buffer, lent to one stream at a time: asyncio's loops and
    uvloop call get_buffer, fill it and call buffer_updated in one go, and the
    bytes go into OpenSSL's read BIO at once, so one hot buffer serves every
    stream. A loop that filled buffers later would find it lent: that stream reads
    into one of its own."""

    def __init__(self) -> None:
        self.owner: Optional["StreamEvents"] = None
        self.buf: Any = None
        self.view: Optional[memoryview] = None


_shared_read = _SharedReadBuffer()


class Protocol(asyncio.BufferedProtocol):
    """Hands the transport's events to its stream. Buffered: the transport reads
    into the stream's buffer (``recv_into``), not into a new bytes object per read
    (which for asyncio's 256 KiB reads is an mmap and munmap each)."""

    __slots__ = ("stream",)

    def __init__(self, stream: "StreamEvents") -> None:
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


class StreamEvents(Connection):
    """``AsyncSSLStream``'s state and its side of the protocol (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ssl_side: str, *, limit: int = DEFAULT_LIMIT,
                 handshake_timeout: Optional[float] = None, on_handshake: Optional[OnHandshake] = None,
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
        self._detach_keep: Optional[DetachDrain] = None  # what that detach keeps (io/detach.py)
        self._detach_error: Optional[BaseException] = None  # its own refusal (too much data)
        self._tcp_eof = False  # the peer's FIN (the end of a plain stream, also after a detach)
        self._transport: Optional[asyncio.Transport] = None
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

    def _check_open(self, what: str) -> None:
        """Refuse I/O on a closed stream, and from inside its own verify callback."""
        tls = self._tls
        if not tls.state.usable:
            raise ValueError(f"{what} on a closed AsyncSSLStream")
        sslp = tls.sslp
        if sslp is not None and in_callback(sslp):
            raise in_callback_error(what, sslp)

    # -- the protocol's side ----------------------------------------------------

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        state = self._tls.state
        if state == PLAIN:  # no SSL yet: ready at once; read only when asked (AsyncSSLStream's docstring)
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
            if not handshake_step(tls, data, eof):
                return
            check_after_handshake(tls.sslp, self._due, self._loop.time)  # type: ignore[arg-type]
        except BaseException as exc:  # a callback's own exception included: the awaiting code gets it
            self._handshake_failed(exc)
            return
        failed = handshake_done(tls, self._rbuf)
        self._cancel_timer()
        self._fed(failed)
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
        """Decrypt what has arrived into the read buffer; a failure closes the transport."""
        self._fed(feed(self._tls, data, eof, self._rbuf))

    def _fed(self, failed: Optional[BaseException]) -> None:
        """After a decrypt (``failed``: its failure): close the transport on a failure, wake the
        reader, pause reading past the limit."""
        if failed is not None and self._transport is not None:
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
        # after the peer's close_notify its bytes still go to OpenSSL: a detach keeps what follows it
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
        if state not in _RUNNING or ended(self._tls):
            return
        # OpenSSL decides: after close_notify this is a clean end, else a truncation (SSLError).
        if self._handshaking:
            self._handshake(b"", 1)
        else:
            self._read(b"", 1)

    def _detach_step(self, data: bytes, eof: int) -> None:
        """What arrives during a detach (``starttls.StartTLS``)."""
        raise NotImplementedError

    def _connection_lost(self, exc: Optional[Exception]) -> None:
        self._lost = True
        if _shared_read.owner is self:  # lent for a read that never came
            _shared_read.owner = None
        self._write_paused = False
        if self._tls.state == PLAIN and self._tls.peer_closed and exc is None:
            pass  # the peer's FIN came first: a clean end of a plain stream
        elif self._handshaking:
            self._handshake_failed(self._lost_error("handshake", exc))
        elif not ended(self._tls):
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

    # -- waiting and flow control -------------------------------------------------------

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
        """No more data will come to a read: the end (``readside.ended``), or a close."""
        return ended(self._tls) or self._closing

    def _end_error(self) -> Optional[BaseException]:
        """What a read raises once it has taken the data of an ended stream
        (``readside.end_error``); nothing after a close."""
        return None if self._closing else end_error(self._tls)

    # -- the end ------------------------------------------------------------------

    def _abort_transport(self) -> None:
        """The core's last step: drop the transport (no-op once it is gone)."""
        transport = self._transport
        if transport is not None and not self._lost and not transport.is_closing():
            transport.abort()

    def _release(self) -> None:
        """Close the connection in the core at once, freeing the SSL and the transport
        (``close``'s last step, a failed or cancelled open, a failed handshake on a server)."""
        self._cancel_timer()
        release(self._tls)


def _set_done(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)
