# Over 400 lines: one class, SocketStream, and its blocking API (attach, handshake, read, write,
# detach) with the LispWorks-named functions over it; the connection core is io/tls.py.
"""Blocking socket streams (LispWorks ``socket-stream``) with SSL attached.

``SocketStream`` is a thin adapter over the connection core (``commssl.io.tls``): the
core owns the state, the ``SSL`` and the socket's lifetime; the stream moves
bytes. Once SSL is attached the socket is non-blocking and each handshake, read
or write is one C call (``commssl_io`` / ``commssl_read_more``) that polls the
socket itself, so the GIL is free while OpenSSL and the kernel work.

Readers are serialised among themselves, and so are writers (a handshake takes
both): OpenSSL must not run two reads, or two writes, on one ``SSL`` at once,
and the read buffer has one owner at a time. One thread may read while another
writes, as with CPython's ``ssl``.
"""

from __future__ import annotations

import io
import socket
import threading
import warnings
from typing import Any, Literal, Optional, Union

from commssl._core.binding import ffi, lib
from commssl._core.callbacks import in_callback, in_callback_error
from commssl._core.ownership import StreamSocket, take_over
from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl._core.types import SSLCtxArg
from commssl.errors import SSLCondition
from commssl.io.connection import Connection, CtxCallback, SSLCallback, new_ssl
from commssl.io.detach import DetachDrain
from commssl.io.handshake import check_after_handshake, release_new_ssl
from commssl.io.policy import check_hostname_arg
from commssl.io.state import CLOSED, HANDSHAKING, OPEN
from commssl.io.timeouts import deadline, ms_left, timeout_arg
from commssl.io.tls import TLSConnection

_alloc = ffi.new_allocator(should_clear_after_alloc=False)
_CHUNK = 64 * 1024
#: The read buffer in front of the socket (commssl_set_socket): room for a few
#: full 16 KiB records per recv(), so bulk readers make one system call per several.
_READ_BUFFER = 64 * 1024
# What may stop commssl_read_more's extra reads without being an error: no more
# data yet, or the peer's close_notify (which the next read sees again).
_DATA_RAN_OUT = (0, lib.SSL_ERROR_WANT_READ, lib.SSL_ERROR_WANT_WRITE, lib.SSL_ERROR_ZERO_RETURN)
_EINTR = lib.COMMSSL_EINTR


def _drive(ssl: Any, op: int, buf: Any, n: int, done: Any, due: Optional[float]) -> int:
    """One operation through the C loop (GIL released), retried after signals
    (their Python handlers run in between, and may raise)."""
    while True:
        err = lib.commssl_io(ssl, op, buf, n, done, ms_left(due))
        if err != _EINTR:
            return int(err)


class SocketStream(Connection, io.BufferedIOBase):
    """A binary stream over a TCP socket, with or without SSL attached.

    ``read(n)`` returns up to ``n`` bytes (fewer only at end of stream),
    ``read1`` at most what one wait brings, ``b""`` at a clean end of stream;
    a peer that closes without close_notify raises ``SSLError``. ``timeout``
    (seconds, or ``None``) bounds each read or write (``TimeoutError``).
    An error met after some data was received is raised with the data kept:
    the next read returns it.

    The stream takes the socket's descriptor over, as CPython's
    ``SSLContext.wrap_socket`` does: ``sock`` is left detached (``fileno()`` -1,
    its ``close()`` does nothing), and ``stream.socket`` is the stream's own.
    """

    def __init__(self, sock: socket.socket, *, timeout: Optional[float] = None) -> None:
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
        self._timeout = timeout_arg(timeout, "timeout")
        # The descriptor is the stream's alone (ownership.py): an `except: sock.close()`
        # in the caller can no longer free the number while the stream still writes to it.
        own = take_over(sock, self)
        self._sock: StreamSocket = own
        self._rbuf = bytearray()
        self._rlock = threading.Lock()
        self._wlock = threading.Lock()
        # The C loops' out-parameters, made once: each is used under its lock only.
        self._rout = ffi.new("size_t[1]")  # bytes read (read lock)
        self._rlater = ffi.new("int[1]")  # what stopped the extra reads (read lock)
        self._wout = ffi.new("size_t[1]")  # bytes written (write lock)
        own.settimeout(self._timeout)  # also puts the descriptor in the mode Python believes it is in
        self._tls = TLSConnection("SocketStream", own._release)
        own._owned = True  # from now on the core alone closes it (StreamSocket.__del__)
        self._host: Optional[str] = None  # the host open_tcp_stream dialled: a client attach's name

    def __repr__(self) -> str:
        tls = getattr(self, "_tls", None)
        state = "closed" if tls is None or tls.state == CLOSED else (tls.side or "plain")
        return f"<SocketStream {state} fd={self._sock.fileno() if tls is not None else -1}>"

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("a SocketStream cannot be copied or pickled: it owns a socket and an SSL")

    @property
    def closed(self) -> bool:
        tls = getattr(self, "_tls", None)
        return tls is None or tls.state == CLOSED

    @property
    def socket(self) -> socket.socket:
        """The stream's own socket (a ``StreamSocket``): for its address and options.
        Closing it closes the stream (its transport: close_notify first, as
        ``close()``); the descriptor is closed once no operation uses it, so the
        stream never writes to a number it no longer owns. ``detach()`` is refused."""
        return self._sock

    @property
    def timeout(self) -> Optional[float]:
        """Seconds each read or write may wait (``None``: no limit)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: Optional[float]) -> None:
        self._timeout = timeout_arg(value, "timeout")

    def fileno(self) -> int:
        return self._sock.fileno()

    def _holds_unread(self) -> bool:
        """Whether bytes already received wait above the socket, where polling its
        descriptor cannot see them: in the stream's buffer, decrypted in the SSL, or
        in the SSL's read buffer (``commssl_set_socket``) not yet decrypted. False
        while another thread reads (whose read will take them)."""
        if self._rbuf:
            return True
        if not self._rlock.acquire(blocking=False):
            return False
        try:
            tls = self._tls
            try:
                ssl = tls.begin("is_readable")
            except ValueError:  # closed, failed, being detached
                return False
            if ssl is None:
                tls.end_plain()
                return False
            try:
                return bool(lib.commssl_holds_unread(ssl))
            finally:
                tls.end()
        finally:
            self._rlock.release()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    # -- operations through the core ---------------------------------------------

    def _guard(self, what: str) -> None:
        """I/O from inside this stream's own verify callback: refused before taking
        the locks (the handshake running the callback holds them)."""
        sslp = self._tls.sslp
        if sslp is not None and in_callback(sslp):
            raise in_callback_error(what, sslp)

    def _handshake(self, ssl: Any, due: Optional[float]) -> None:
        """Run the handshake inside an operation already begun (``ssl`` pinned)."""
        tls = self._tls
        err = _drive(ssl, lib.COMMSSL_OP_HANDSHAKE, ffi.NULL, 0, ffi.NULL, due)
        if err:
            tls.failure(err, "handshake")
        check_after_handshake(tls.sslp, due)  # type: ignore[arg-type]
        tls.handshake_done()

    def _recv_into(self, view: memoryview) -> int:
        """Read into ``view`` what one wait brings (at least one record, and the
        records already behind it); 0 at a clean end of stream. Called with the
        read lock held. An error after some data is kept for the next read."""
        tls = self._tls
        tls.take_pending()
        ssl = tls.begin("read")
        if ssl is None:
            try:
                n = self._sock.recv_into(view)
                if not n and tls.closed_locally:
                    raise SSLCondition("read: the SocketStream was closed locally (close() from another "
                                       "thread)", "closed-locally")
                return n
            finally:
                tls.end_plain()
        buf = ffi.from_buffer(view, require_writable=True)
        done, later = self._rout, self._rlater
        try:
            due = deadline(self._timeout)
            while True:
                err = lib.commssl_read_more(ssl, buf, len(view), done, ms_left(due), later)
                if err != _EINTR:
                    break
            if err == 0:
                if later[0] not in _DATA_RAN_OUT:
                    try:  # keep the data; the error (with its reasons, now) is the next read's
                        tls.failure(later[0], "read", TimeoutError)
                    except BaseException as exc:
                        tls.pending_error = exc.with_traceback(None)  # no frames kept alive
                return int(done[0])
            if err == lib.SSL_ERROR_ZERO_RETURN:
                return 0
            tls.failure(err, "read", TimeoutError)
        finally:
            ffi.release(buf)  # end the export of the caller's buffer now, not with a traceback
            tls.end()

    def _recv(self, n: int) -> bytes:
        buf = _alloc("char[]", n)  # not zero-filled: OpenSSL writes what is returned
        k = self._recv_into(memoryview(ffi.buffer(buf)))
        return ffi.buffer(buf, k)[:]

    # -- the stream interface --------------------------------------------------

    def read(self, n: Optional[int] = -1) -> bytes:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
            raise TypeError(f"n must be an int or None, not {type(n).__name__}")
        self._guard("read")
        with self._rlock:
            rbuf = self._rbuf
            # Chunks go straight into the buffer: on an error what arrived stays there,
            # and the next read returns it.
            if n is None or n < 0:
                while True:
                    chunk = self._recv(_CHUNK)
                    if not chunk:
                        break
                    rbuf += chunk
                data = bytes(rbuf)
                rbuf.clear()
                return data
            while len(rbuf) < n:
                chunk = self._recv(max(n - len(rbuf), 1))
                if not chunk:
                    break
                rbuf += chunk
            data = bytes(rbuf[:n])
            del rbuf[:n]
            return data

    def read1(self, n: int = -1) -> bytes:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        self._guard("read1")
        with self._rlock:
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
        self._guard("readinto")
        with self._rlock:
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
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
        self._guard("readline")
        with self._rlock:
            rbuf = self._rbuf
            while True:
                i = rbuf.find(b"\n")
                if i >= 0 or (0 <= limit <= len(rbuf)):
                    end = i + 1 if i >= 0 else limit
                    if 0 <= limit < end:
                        end = limit
                    break
                chunk = self._recv(_CHUNK)
                if not chunk:
                    end = len(rbuf)
                    break
                rbuf += chunk
            data = bytes(rbuf[:end])
            del rbuf[:end]
            return data

    def write(self, data: Any) -> int:
        if isinstance(data, str):
            raise TypeError("data must be a bytes-like object, not str")
        buf = ffi.from_buffer(data)  # TypeError for what is not bytes-like
        try:
            self._guard("write")
            with self._wlock:
                return self._write(buf)
        finally:
            # End the export of data now: a traceback of this frame kept in a cycle
            # would otherwise hold it until the GC, which crashed clearing it.
            ffi.release(buf)

    def _write(self, buf: Any) -> int:
        n = len(buf)
        tls = self._tls
        ssl = tls.begin("write")
        if ssl is None:
            try:
                self._sock.sendall(ffi.buffer(buf))
            except OSError:
                if tls.closed_locally:
                    raise SSLCondition("write: the SocketStream was closed locally (close() from another "
                                       "thread)", "closed-locally") from None
                raise
            finally:
                tls.end_plain()
            return n
        try:
            if n:
                err = _drive(ssl, lib.COMMSSL_OP_WRITE, buf, n, self._wout, deadline(self._timeout))
                if err:
                    tls.failure(err, "write", TimeoutError)
        finally:
            tls.end()
        return n

    def flush(self) -> None:
        if self.closed:
            raise ValueError("flush on a closed SocketStream")

    def close(self) -> None:
        """Send close_notify (best effort, never waits), free the SSL and close
        the socket. From another thread while an operation is blocked: wakes it
        (it raises an error saying the stream was closed locally); the last
        operation to leave frees the SSL and the socket."""
        tls = getattr(self, "_tls", None)
        if tls is None:  # __init__ refused its arguments
            return
        ssl, busy = tls.begin_close()
        if busy:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # their poll() returns; OpenSSL sees EOF
            except OSError:
                pass
        elif ssl is not None:
            try:
                _shutdown(self, ssl, None, 0.0)
            finally:
                tls.end()
        # io.IOBase's own close() is not called: `closed` is the core's state.

    def __del__(self) -> None:
        tls = getattr(self, "_tls", None)
        if tls is None or tls.state == CLOSED:
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()
        except Exception:  # interpreter shutdown, or a failure no one can see
            pass


# -- attaching and detaching SSL --------------------------------------------


def _stream(stream: object) -> SocketStream:
    if not isinstance(stream, SocketStream):
        raise TypeError(f"stream must be a SocketStream, not {type(stream).__name__}")
    return stream


def attach_ssl(
    stream: SocketStream,
    *,
    ssl_ctx: SSLCtxArg = True,
    ssl_side: str = "server",
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    handshake_timeout: Optional[float] = None,
    tlsext_host_name: Any = None,
    session: Any = None,
    check_hostname: bool = True,
    _host: Optional[str] = None,
) -> SSLPointer:
    """Attach SSL to a stream and, unless ``ssl_side`` is ``"both"``, run the
    handshake (bounded by ``handshake_timeout``, callbacks included), so its
    errors raise here. After a failed handshake the stream can only be closed:
    reads and writes raise ``ValueError`` (no byte goes out in clear).
    ``session``: a ``Session`` (``ssl_connection_session``) to resume, client side.

    On the client side (STARTTLS) SNI and the name checked are
    ``tlsext_host_name``, else the host ``open_tcp_stream`` dialled; a client
    that verifies the server with no name known raises ``ValueError`` before
    sending anything. ``check_hostname=False``: check no name (the chain is
    still verified).
    """
    _stream(stream)
    due = deadline(timeout_arg(handshake_timeout, "handshake_timeout"))
    stream._guard("attach_ssl")
    tls = stream._tls
    if tls.state == CLOSED:
        raise ValueError("attach_ssl on a closed SocketStream")
    sslp, owns, own_ctx = new_ssl(
        ssl_ctx, ssl_side, host=stream._host if _host is None else _host, tlsext_host_name=tlsext_host_name,
        ctx_configure_callback=ctx_configure_callback, ssl_configure_callback=ssl_configure_callback,
        session=session, check_hostname=check_hostname)
    with stream._rlock, stream._wlock:
        try:
            ssl = tls.attach(sslp, owns, own_ctx, ssl_side, stream)
        except BaseException:
            release_new_ssl(sslp, owns, own_ctx)
            raise
        try:
            if not lib.commssl_set_socket(ssl, stream._sock.fileno(), _READ_BUFFER):
                raise MemoryError("attach_ssl: no memory for the socket BIOs")
            if stream._sock.gettimeout() is None:  # a timeout already means O_NONBLOCK
                stream._sock.setblocking(False)
            if ssl_side != "both":
                stream._handshake(ssl, due)
        except BaseException:
            tls.fail()
            raise
        finally:
            tls.end()
    return sslp


def socket_stream_handshake(stream: SocketStream, timeout: Optional[float] = None) -> bool:
    """Run (or finish) the handshake. False on timeout or a clean close by the
    peer; True on success; other failures raise."""
    _stream(stream)
    due = deadline(timeout_arg(timeout, "timeout"))
    stream._guard("socket_stream_handshake")
    tls = stream._tls
    with stream._rlock, stream._wlock:
        ssl = tls.begin("socket_stream_handshake")
        if ssl is None:
            tls.end_plain()
            raise ValueError(f"{stream!r} has no SSL attached")
        try:
            sslp = tls.sslp
            assert sslp is not None
            sslp.reset_verification()
            err = _drive(ssl, lib.COMMSSL_OP_HANDSHAKE, ffi.NULL, 0, ffi.NULL, due)
            if err in (lib.COMMSSL_TIMEOUT, lib.SSL_ERROR_ZERO_RETURN) and sslp.exception is None:
                return False
            if err:
                tls.failure(err, "handshake")
            check_after_handshake(sslp, due)
            tls.handshake_done()
        finally:
            tls.end()
    return True


def _shutdown(stream: SocketStream, ssl: Any, retry_count: Optional[int], retry_timeout: float,
              keep: Optional[DetachDrain] = None) -> None:
    """close_notify, then (``retry_count`` not None) wait for the peer's: each wait up
    to ``retry_timeout``, ``retry_count + 1`` of them. What the peer sent before its
    close_notify (it may not have seen ours yet) goes to ``keep`` (a detach's
    ``DetachDrain``: the policy, limit and errors shared with ``detach_ssl_async``)."""
    if not lib.SSL_is_init_finished(ssl):
        return
    ms = int(retry_timeout * 1000)
    err = lib.commssl_io(ssl, lib.COMMSSL_OP_SHUTDOWN, ffi.NULL, 0, ffi.NULL, ms)
    if err == 0 or retry_count is None or keep is None:  # done; or close(): best effort, never waits
        return
    waits = retry_count + 1

    def wait_used() -> None:
        nonlocal waits
        waits -= 1
        if waits <= 0:
            raise keep.no_answer(f"after {retry_count + 2} tries")

    while err != lib.COMMSSL_SHUTDOWN_SENT:  # ours is not out yet (the socket was full)
        if err not in (lib.COMMSSL_TIMEOUT, _EINTR):
            stream._tls.failure(err, "detach_ssl")
        wait_used()
        err = lib.commssl_io(ssl, lib.COMMSSL_OP_SHUTDOWN, ffi.NULL, 0, ffi.NULL, ms)
        if err == 0:
            return
    # Ours is out: read until the peer's (see _detach.py for why not SSL_shutdown).
    buf, done = _alloc("char[]", _CHUNK), stream._rout  # the detach holds the read lock
    while True:
        err = lib.commssl_io(ssl, lib.COMMSSL_OP_READ, buf, _CHUNK, done, ms)
        if err == 0:
            keep.keep(ffi.buffer(buf, done[0]))
        elif err == lib.SSL_ERROR_ZERO_RETURN:  # the peer's close_notify: complete the shutdown
            err = lib.commssl_io(ssl, lib.COMMSSL_OP_SHUTDOWN, ffi.NULL, 0, ffi.NULL, ms)
            if err == 0:
                return
            stream._tls.failure(err, "detach_ssl")
        elif err in (lib.COMMSSL_TIMEOUT, _EINTR):
            wait_used()
        else:
            stream._tls.failure(err, "detach_ssl")


def detach_ssl(stream: SocketStream, retry_count: Optional[int] = 5, retry_timeout: float = 0.1) -> None:
    """Shut SSL down cleanly (close_notify both ways) and free what attaching
    made; the stream goes on as plain TCP. Data the peer sent before its
    close_notify and not yet read (up to 1 MiB; more is ``SSLClosed``, the first
    MiB kept) is read first, and the plain stream returns it, then what the peer
    sends in clear (the same as ``detach_ssl_async``). ``retry_count=None``
    does not wait for the peer. Does nothing when no SSL is attached.
    ``ValueError`` while another thread reads or writes the stream."""
    _stream(stream)
    if retry_count is not None and (isinstance(retry_count, bool) or not isinstance(retry_count, int)):
        raise TypeError(f"retry_count must be an int or None, not {type(retry_count).__name__}")
    if retry_count is not None and retry_count < 0:
        raise ValueError(f"retry_count must be >= 0, not {retry_count}")
    seconds = timeout_arg(retry_timeout, "retry_timeout") or 0.0
    stream._guard("detach_ssl")
    tls = stream._tls
    if not stream._rlock.acquire(blocking=False):
        raise ValueError("detach_ssl: another thread is reading the SocketStream")
    try:
        if not stream._wlock.acquire(blocking=False):
            raise ValueError("detach_ssl: another thread is writing the SocketStream")
        try:
            ssl = tls.begin_detach("detach_ssl")
            if ssl is None:
                return
            try:
                keep = DetachDrain("detach_ssl", stream._rbuf)
                _shutdown(stream, ssl, retry_count, seconds, keep)
                keep.finish(ssl)  # the clear bytes after the peer's close_notify, next
            finally:
                tls.end_detach()
                if tls.state != CLOSED and stream._sock.gettimeout() != stream._timeout:
                    stream._sock.settimeout(stream._timeout)
        finally:
            stream._wlock.release()
    finally:
        stream._rlock.release()


# -- making streams ------------------------------------------------------------


def open_tcp_stream(
    host: str,
    port: int,
    *,
    ssl_ctx: Union[None, Literal[False], SSLCtxArg] = None,  # None or False: plain TCP
    tlsext_host_name: Any = None,
    handshake_timeout: Optional[float] = None,
    timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    session: Any = None,
    check_hostname: bool = True,
) -> SocketStream:
    """Connect to ``host:port``; with ``ssl_ctx`` attach SSL as the client.

    ``ssl_ctx``: ``None`` (plain TCP), ``True``/``"default"`` (a context made
    for this stream: verifies the server and its name against the system's
    trusted certificates), an ``SSLCtxPointer`` (yours to destroy), or a client
    abstract context. The name checked is ``tlsext_host_name`` when a string,
    else ``host``; the stream remembers ``host`` for a later ``attach_ssl``
    (STARTTLS). ``check_hostname=False`` checks no name (the chain is still
    verified). ``timeout`` bounds the connect and each read and write.
    ``session``: a ``Session`` to resume (``ssl_connection_session``).
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, not {port}")
    seconds = timeout_arg(timeout, "timeout")
    timeout_arg(handshake_timeout, "handshake_timeout")  # refused before connecting
    check_hostname_arg(check_hostname)
    sock = socket.create_connection((host, port), timeout=seconds)
    stream = SocketStream(sock, timeout=seconds)
    stream._host = host
    if ssl_ctx is not None and ssl_ctx is not False:
        try:
            attach_ssl(stream, ssl_ctx=ssl_ctx, ssl_side="client",
                       ctx_configure_callback=ctx_configure_callback,
                       ssl_configure_callback=ssl_configure_callback, handshake_timeout=handshake_timeout,
                       tlsext_host_name=tlsext_host_name, session=session, check_hostname=check_hostname)
        except BaseException:
            stream.close()
            raise
    return stream


def create_ssl_socket_stream(
    sock: socket.socket,
    ssl_ctx: Optional[SSLCtxArg],
    *,
    ssl_side: str = "server",
    handshake_timeout: Optional[float] = None,
    timeout: Optional[float] = None,
    tlsext_host_name: Any = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    check_hostname: bool = True,
) -> SocketStream:
    """Wrap an accepted or connected socket in a ``SocketStream`` with SSL
    attached (``ssl_ctx=None``: plain). The stream takes the socket's descriptor
    over (``sock`` is left detached, as by CPython's ``wrap_socket``; use
    ``stream.socket``); on a failed handshake it is closed. A client that
    verifies the server needs ``tlsext_host_name`` (the name its certificate
    must carry; the address the socket is connected to is not taken for one),
    or ``check_hostname=False``."""
    stream = SocketStream(sock, timeout=timeout)
    if ssl_ctx is None:
        return stream
    try:
        attach_ssl(stream, ssl_ctx=ssl_ctx, ssl_side=ssl_side, handshake_timeout=handshake_timeout,
                   tlsext_host_name=tlsext_host_name, ctx_configure_callback=ctx_configure_callback,
                   ssl_configure_callback=ssl_configure_callback, check_hostname=check_hostname)
    except BaseException:
        stream.close()
        raise
    return stream


# -- accessors -----------------------------------------------------------------


def socket_stream_ssl(stream: SocketStream) -> Optional[SSLPointer]:
    """The stream's ``SSLPointer``, or ``None`` without SSL (or once closed)."""
    tls = _stream(stream)._tls
    return tls.sslp if tls.state in (HANDSHAKING, OPEN) else None


def socket_stream_ctx(stream: SocketStream) -> Optional[SSLCtxPointer]:
    """The ``SSLCtxPointer`` the stream's SSL was made from, or ``None``."""
    sslp = socket_stream_ssl(stream)
    return None if sslp is None else sslp.ctx


def socket_stream_ssl_side(stream: SocketStream) -> Optional[str]:
    """``"client"``, ``"server"``, ``"both"``, or ``None`` without SSL."""
    tls = _stream(stream)._tls
    return tls.side if tls.state in (HANDSHAKING, OPEN) else None
