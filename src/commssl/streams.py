"""Blocking socket streams (LispWorks ``socket-stream``) with SSL attached.

Once SSL is attached the socket is non-blocking and each handshake, read or
write is one C call (``commssl_io``) that polls the socket itself, so the GIL
is free while OpenSSL and the kernel work and timeouts cost no Python.
"""

from __future__ import annotations

import io
import math
import socket
import threading
import time
from typing import Any, List, Optional

from ._binding import ffi, lib
from .connection import (
    Connection,
    CtxCallback,
    SSLCallback,
    check_after_handshake,
    new_ssl,
    raise_failure,
    timeout_arg,
)
from .errors import SSLClosed, SSLCondition
from .pointers import SSLCtxPointer, SSLPointer

_alloc = ffi.new_allocator(should_clear_after_alloc=False)
_CHUNK = 64 * 1024
# What may stop commssl_read_more's extra reads without being an error: no more
# data yet, or the peer's close_notify (which the next read sees again).
_DATA_RAN_OUT = (0, lib.SSL_ERROR_WANT_READ, lib.SSL_ERROR_WANT_WRITE, lib.SSL_ERROR_ZERO_RETURN)


def _ms(deadline: Optional[float]) -> int:
    if deadline is None:
        return -1
    return max(0, math.ceil((deadline - time.monotonic()) * 1000))  # never end early


class SocketStream(Connection, io.BufferedIOBase):
    """A binary stream over a TCP socket, with or without SSL attached.

    ``read(n)`` returns up to ``n`` bytes (fewer only at end of stream),
    ``read1`` at most one record's worth, ``b""`` at a clean end of stream; a
    peer that closes without close_notify raises ``SSLError``. ``timeout``
    bounds each read or write (``TimeoutError``).
    """

    def __init__(self, sock: socket.socket, *, timeout: Optional[float] = None) -> None:
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
        self._sock = sock
        self._timeout = timeout_arg(timeout, "timeout")
        self._sslp: Optional[SSLPointer] = None
        self._owns_ssl = False
        self._own_ctx: Optional[SSLCtxPointer] = None
        self._side: Optional[str] = None
        self._rbuf = bytearray()
        self._pending_error: Optional[BaseException] = None  # see _recv_into
        # Threads inside an OpenSSL operation on this stream (an operation runs
        # from its first C call to its last use of the SSL, error mapping
        # included): close() and detach_ssl() from another thread must not free
        # the SSL under them. _idle guards the list and _closing.
        self._io_threads: List[int] = []
        self._closing = False
        self._idle = threading.Condition(threading.Lock())
        sock.settimeout(self._timeout)

    def __repr__(self) -> str:
        state = "closed" if self.closed else (self._side or "plain")
        return f"<SocketStream {state} fd={self._sock.fileno()}>"

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    # -- driving OpenSSL -----------------------------------------------------

    def _enter(self) -> None:
        """Start an operation on the SSL (see ``_io_threads``); pair with ``_leave``."""
        with self._idle:
            if self._closing:
                raise ValueError("I/O operation on a closed SocketStream")
            self._io_threads.append(threading.get_ident())

    def _leave(self) -> None:
        with self._idle:
            self._io_threads.remove(threading.get_ident())
            if not self._io_threads:
                self._idle.notify_all()

    def _quiesce(self, what: str, wake: bool) -> None:
        """Before freeing the SSL: refuse when called from inside this stream's own
        operation (a verify callback), else wait for other threads' operations to
        end, waking them first (``wake``: shut the socket down under them)."""
        with self._idle:
            if threading.get_ident() in self._io_threads:
                if self._sslp is not None:
                    self._sslp.in_callback(what)
                raise ValueError(f"{what} is not allowed while this thread is inside an operation "
                                 "on the stream")
            if not self._io_threads:
                return
            if not wake:
                raise ValueError(f"{what}: another thread is reading or writing the stream")
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # their poll() returns; OpenSSL sees EOF
            except OSError:
                pass
            if not self._idle.wait_for(lambda: not self._io_threads, timeout=30):
                raise ValueError(f"{what}: another thread's operation on the stream did not end")

    def _io(self, op: int, buf: Any, n: int, done: Any, timeout: Optional[float]) -> int:
        sslp = self._sslp
        assert sslp is not None
        sslp.in_callback("I/O on the stream")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            err = lib.commssl_io(sslp._live(), op, buf, n, done, _ms(deadline))
            if err != lib.COMMSSL_EINTR:
                return int(err)
            # A signal arrived: its Python handler runs now (and may raise); then go on.

    def _handshake(self, timeout: Optional[float]) -> None:
        sslp = self._sslp
        assert sslp is not None
        self._enter()
        try:
            err = self._io(lib.COMMSSL_OP_HANDSHAKE, ffi.NULL, 0, ffi.NULL, timeout)
            if err:
                raise_failure(sslp, err, "handshake")
        finally:
            self._leave()
        check_after_handshake(sslp)

    def _recv(self, n: int) -> bytes:
        """One read of up to ``n`` bytes (``_recv_into``); ``b""`` at a clean end of stream."""
        if self._sslp is None:
            self._check_open()
            self._raise_pending()
            return self._sock.recv(n)
        buf = _alloc("char[]", n)  # not zero-filled: OpenSSL writes what is returned
        k = self._recv_into(memoryview(ffi.buffer(buf)))
        return ffi.buffer(buf, k)[:]

    def _raise_pending(self) -> None:
        exc = self._pending_error
        if exc is not None:
            self._pending_error = None
            raise exc

    def _recv_into(self, view: memoryview) -> int:
        """Read into ``view`` (writable bytes) what one wait brings: at least one
        record, and the records already behind it (``commssl_read_more``); 0 at a
        clean end of stream. An error after some data is raised by the next read."""
        self._check_open()
        self._raise_pending()
        sslp = self._sslp
        if sslp is None:
            return self._sock.recv_into(view)
        n = len(view)
        buf = ffi.from_buffer(view, require_writable=True)
        done = ffi.new("size_t *")
        later = ffi.new("int *")
        self._enter()
        try:
            sslp.in_callback("I/O on the stream")
            timeout = self._timeout
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                err = lib.commssl_read_more(sslp._live(), buf, n, done, _ms(deadline), later)
                if err != lib.COMMSSL_EINTR:
                    break
            if err == 0:
                if later[0] not in _DATA_RAN_OUT:
                    try:  # keep the data; the error (with its reasons, now) is the next read's
                        raise_failure(sslp, later[0], "read", TimeoutError)
                    except BaseException as exc:
                        self._pending_error = exc.with_traceback(None)  # no frames kept alive
                return int(done[0])
            if err == lib.SSL_ERROR_ZERO_RETURN:
                return 0
            raise_failure(sslp, err, "read", TimeoutError)
        finally:
            ffi.release(buf)  # end the export of the caller's buffer now, not with a traceback
            self._leave()
        raise AssertionError("unreachable")

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed SocketStream")

    # -- the stream interface --------------------------------------------------

    def read(self, n: Optional[int] = -1) -> bytes:
        if n is None or n < 0:
            chunks = [bytes(self._rbuf)]
            self._rbuf.clear()
            while True:
                chunk = self._recv(_CHUNK)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        while len(self._rbuf) < n:
            chunk = self._recv(max(n - len(self._rbuf), 1))
            if not chunk:
                break
            self._rbuf += chunk
        data = bytes(self._rbuf[:n])
        del self._rbuf[:n]
        return data

    def read1(self, n: int = -1) -> bytes:
        if self._rbuf:
            k = len(self._rbuf) if n is None or n < 0 else n
            data = bytes(self._rbuf[:k])
            del self._rbuf[:k]
            return data
        return self._recv(_CHUNK if n is None or n < 0 else n) if n != 0 else b""

    def readinto(self, b: Any) -> int:
        # read(len(b)) straight into b: no intermediate bytes (bulk readers use this)
        view = memoryview(b).cast("B")
        if view.readonly:
            raise TypeError(f"readinto() needs a writable bytes-like object, not {type(b).__name__}")
        n = len(view)
        k = min(len(self._rbuf), n)
        if k:
            view[:k] = self._rbuf[:k]
            del self._rbuf[:k]
        try:
            while k < n:
                got = self._recv_into(view[k:])
                if not got:
                    break
                k += got
        except BaseException:
            self._rbuf[:0] = view[:k]  # as read() would: what arrived stays for the next read
            raise
        return k

    def readline(self, limit: Optional[int] = -1) -> bytes:
        limit = -1 if limit is None else limit
        while True:
            i = self._rbuf.find(b"\n")
            if i >= 0 or (0 <= limit <= len(self._rbuf)):
                end = i + 1 if i >= 0 else limit
                if 0 <= limit < end:
                    end = limit
                break
            chunk = self._recv(_CHUNK)
            if not chunk:
                end = len(self._rbuf)
                break
            self._rbuf += chunk
        data = bytes(self._rbuf[:end])
        del self._rbuf[:end]
        return data

    def write(self, data: Any) -> int:
        self._check_open()
        sslp = self._sslp
        if sslp is None:
            self._sock.sendall(data)
            return len(memoryview(data))
        buf = ffi.from_buffer(data)
        n = len(buf)
        if n == 0:
            return 0
        done = ffi.new("size_t *")
        self._enter()
        try:
            err = self._io(lib.COMMSSL_OP_WRITE, buf, n, done, self._timeout)
            if err:
                raise_failure(sslp, err, "write", TimeoutError)
        finally:
            # End the export of data now: a traceback of this frame kept in a cycle
            # (exception stored on an object the stream refers to) would otherwise hold
            # it until the GC, which then crashed clearing a memoryview still exported.
            ffi.release(buf)
            self._leave()
        return n

    def flush(self) -> None:
        self._check_open()

    def close(self) -> None:
        if self.closed:
            return
        self._quiesce("close()", wake=True)
        with self._idle:
            self._closing = True
        try:
            if self._sslp is not None:
                _detach(self, retry_count=None, retry_timeout=0)
        finally:
            self._sock.close()
            super().close()


# -- attaching and detaching SSL --------------------------------------------


def attach_ssl(
    stream: SocketStream,
    *,
    ssl_ctx: Any = True,
    ssl_side: str = "server",
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    handshake_timeout: Optional[float] = None,
    tlsext_host_name: Any = None,
    _host: Optional[str] = None,
) -> SSLPointer:
    """Attach SSL to a stream and, unless ``ssl_side`` is ``"both"``, run the
    handshake (bounded by ``handshake_timeout``), so its errors raise here.

    On failure the stream is left without SSL, as it was.
    """
    if not isinstance(stream, SocketStream):
        raise TypeError(f"stream must be a SocketStream, not {type(stream).__name__}")
    stream._check_open()
    if stream._sslp is not None:
        raise ValueError(f"{stream!r} already has SSL attached")
    timeout = timeout_arg(handshake_timeout, "handshake_timeout")
    sslp, owns, own_ctx = new_ssl(
        ssl_ctx, ssl_side, host=_host, tlsext_host_name=tlsext_host_name,
        ctx_configure_callback=ctx_configure_callback, ssl_configure_callback=ssl_configure_callback)
    sslp.connection = stream
    stream._sslp, stream._owns_ssl, stream._own_ctx, stream._side = sslp, owns, own_ctx, ssl_side
    if not lib.SSL_set_fd(sslp.cdata, stream._sock.fileno()):
        _detach(stream, retry_count=None, retry_timeout=0, shutdown=False)
        raise SSLCondition("SSL_set_fd failed")
    stream._sock.setblocking(False)
    if ssl_side != "both":
        try:
            stream._handshake(timeout)
        except BaseException:
            _detach(stream, retry_count=None, retry_timeout=0, shutdown=False)
            raise
    return sslp


def socket_stream_handshake(stream: SocketStream, timeout: Optional[float] = None) -> bool:
    """Run (or finish) the handshake. False on timeout or a clean close by the
    peer; True on success; other failures raise."""
    sslp = _ssl(stream)
    seconds = timeout_arg(timeout, "timeout")
    sslp.reset_verification()
    stream._enter()
    try:
        err = stream._io(lib.COMMSSL_OP_HANDSHAKE, ffi.NULL, 0, ffi.NULL, seconds)
        if err in (lib.COMMSSL_TIMEOUT, lib.SSL_ERROR_ZERO_RETURN) and sslp.exception is None:
            return False
        if err:
            raise_failure(sslp, err, "handshake")
    finally:
        stream._leave()
    check_after_handshake(sslp)
    return True


def _ssl(stream: object) -> SSLPointer:
    if not isinstance(stream, SocketStream):
        raise TypeError(f"stream must be a SocketStream, not {type(stream).__name__}")
    stream._check_open()
    if stream._sslp is None:
        raise ValueError(f"{stream!r} has no SSL attached")
    return stream._sslp


def _detach(stream: SocketStream, retry_count: Optional[int], retry_timeout: float,
            shutdown: bool = True) -> None:
    with stream._idle:  # taken once: a close() racing a failed attach_ssl frees it once
        sslp, stream._sslp = stream._sslp, None
    if sslp is None:  # the other one came first
        return
    try:
        if shutdown:
            _shutdown(stream, sslp, retry_count, retry_timeout)
    finally:
        sslp.connection = None
        if stream._owns_ssl:
            sslp._free()
        if stream._own_ctx is not None:
            stream._own_ctx._free()
        stream._owns_ssl, stream._own_ctx, stream._side = False, None, None
        if stream._sock.fileno() >= 0:
            stream._sock.settimeout(stream._timeout)


def _shutdown(stream: SocketStream, sslp: SSLPointer, retry_count: Optional[int],
              retry_timeout: float) -> None:
    ssl = sslp.cdata
    if not lib.SSL_is_init_finished(ssl):
        return
    tries = 1 if retry_count is None else retry_count + 2
    for _ in range(tries):
        err = lib.commssl_io(ssl, lib.COMMSSL_OP_SHUTDOWN, ffi.NULL, 0, ffi.NULL, int(retry_timeout * 1000))
        if err == 0:
            return
        if err == lib.COMMSSL_SHUTDOWN_SENT:
            if retry_count is None:
                return
            continue
        if err in (lib.COMMSSL_TIMEOUT, lib.COMMSSL_EINTR):
            if retry_count is None:  # close(): best effort, never waits or raises
                return
            continue
        if retry_count is None:
            return
        raise_failure(sslp, err, "detach_ssl")
    raise SSLClosed(f"detach_ssl: the peer did not answer close_notify after {tries} tries", "closed")


def detach_ssl(stream: SocketStream, retry_count: Optional[int] = 5, retry_timeout: float = 0.1) -> None:
    """Shut SSL down cleanly (close_notify both ways) and free what attaching
    made; the stream goes on as plain TCP. ``retry_count=None`` does not wait
    for the peer. Does nothing when no SSL is attached."""
    if not isinstance(stream, SocketStream):
        raise TypeError(f"stream must be a SocketStream, not {type(stream).__name__}")
    if retry_count is not None and (isinstance(retry_count, bool) or not isinstance(retry_count, int)):
        raise TypeError(f"retry_count must be an int or None, not {type(retry_count).__name__}")
    if retry_count is not None and retry_count < 0:
        raise ValueError(f"retry_count must be >= 0, not {retry_count}")
    seconds = timeout_arg(retry_timeout, "retry_timeout") or 0.0
    if stream._sslp is not None:
        stream._quiesce("detach_ssl", wake=False)
        _detach(stream, retry_count, seconds)


# -- making streams ------------------------------------------------------------


def open_tcp_stream(
    host: str,
    port: int,
    *,
    ssl_ctx: Any = None,
    tlsext_host_name: Any = None,
    handshake_timeout: Optional[float] = None,
    timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
) -> SocketStream:
    """Connect to ``host:port``; with ``ssl_ctx`` attach SSL as the client.

    ``ssl_ctx``: ``None`` (plain TCP), ``True``/``"default"`` (a context made
    for this stream: verifies the server and its name against the system's
    trusted certificates), an ``SSLCtxPointer`` (yours to destroy), or a client
    abstract context. The name checked is ``tlsext_host_name`` when a string,
    else ``host``. ``timeout`` bounds the connect and each read and write.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, not {port}")
    seconds = timeout_arg(timeout, "timeout")
    sock = socket.create_connection((host, port), timeout=seconds)
    try:
        stream = SocketStream(sock, timeout=seconds)
        if ssl_ctx is not None and ssl_ctx is not False:
            attach_ssl(stream, ssl_ctx=ssl_ctx, ssl_side="client",
                       ctx_configure_callback=ctx_configure_callback,
                       ssl_configure_callback=ssl_configure_callback, handshake_timeout=handshake_timeout,
                       tlsext_host_name=tlsext_host_name, _host=host)
    except BaseException:
        sock.close()
        raise
    return stream


def create_ssl_socket_stream(
    sock: socket.socket,
    ssl_ctx: Any,
    *,
    ssl_side: str = "server",
    handshake_timeout: Optional[float] = None,
    timeout: Optional[float] = None,
    tlsext_host_name: Any = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
) -> SocketStream:
    """Wrap an accepted or connected socket in a ``SocketStream`` with SSL
    attached (``ssl_ctx=None``: plain). The stream owns the socket; on a failed
    handshake the socket is closed."""
    stream = SocketStream(sock, timeout=timeout)
    if ssl_ctx is None:
        return stream
    try:
        attach_ssl(stream, ssl_ctx=ssl_ctx, ssl_side=ssl_side, handshake_timeout=handshake_timeout,
                   tlsext_host_name=tlsext_host_name, ctx_configure_callback=ctx_configure_callback,
                   ssl_configure_callback=ssl_configure_callback)
    except BaseException:
        stream.close()
        raise
    return stream


# -- accessors -----------------------------------------------------------------


def _stream(stream: object) -> SocketStream:
    if not isinstance(stream, SocketStream):
        raise TypeError(f"stream must be a SocketStream, not {type(stream).__name__}")
    return stream


def socket_stream_ssl(stream: SocketStream) -> Optional[SSLPointer]:
    """The stream's ``SSLPointer``, or ``None`` without SSL."""
    return _stream(stream)._sslp


def socket_stream_ctx(stream: SocketStream) -> Optional[SSLCtxPointer]:
    """The ``SSLCtxPointer`` the stream's SSL was made from, or ``None``."""
    sslp = _stream(stream)._sslp
    return None if sslp is None else sslp.ctx


def socket_stream_ssl_side(stream: SocketStream) -> Optional[str]:
    """``"client"``, ``"server"``, ``"both"``, or ``None`` without SSL."""
    return _stream(stream)._side
