"""The blocking ``SocketStream``: a binary stream over a TCP socket that the
connection core (``io/tls.py``) drives, with or without SSL attached.

The core owns the state, the ``SSL`` and the socket's lifetime; the stream moves
bytes. Once SSL is attached the socket is non-blocking and each handshake, read
or write is one C call (``commssl_io`` / ``commssl_read_more``) that polls the
socket itself, so the GIL is free while OpenSSL and the kernel work.

Readers are serialised among themselves, and so are writers (a handshake takes
both): OpenSSL must not run two reads, or two writes, on one ``SSL`` at once,
and the read buffer has one owner at a time. One thread may read while another
writes, as with CPython's ``ssl``. Attaching, detaching and the public
functions are ``streams.py``'s.
"""

from __future__ import annotations

import io
import socket
import threading
import warnings
from typing import Any, Optional

from commssl._core.binding import ffi, lib
from commssl._core.callbacks import in_callback, in_callback_error
from commssl._core.ownership import StreamSocket, take_over
from commssl.errors import SSLCondition
from commssl.io.connection import Connection
from commssl.io.handshake import check_after_handshake
from commssl.io.state import CLOSED
from commssl.io.timeouts import deadline, ms_left, timeout_arg
from commssl.io.tls import TLSConnection

alloc = ffi.new_allocator(should_clear_after_alloc=False)
CHUNK = 64 * 1024
#: The read buffer in front of the socket (commssl_set_socket): room for a few
#: full 16 KiB records per recv(), so bulk readers make one system call per several.
READ_BUFFER = 64 * 1024
# What may stop commssl_read_more's extra reads without being an error: no more
# data yet, or the peer's close_notify (which the next read sees again).
_DATA_RAN_OUT = (0, lib.SSL_ERROR_WANT_READ, lib.SSL_ERROR_WANT_WRITE, lib.SSL_ERROR_ZERO_RETURN)
EINTR = lib.COMMSSL_EINTR
_OP_HANDSHAKE = lib.COMMSSL_OP_HANDSHAKE
_NULL = ffi.NULL


def drive(ssl: Any, op: int, buf: Any, n: int, done: Any, due: Optional[float]) -> int:
    """One operation through the C loop (GIL released), retried after signals
    (their Python handlers run in between, and may raise)."""
    while True:
        err = lib.commssl_io(ssl, op, buf, n, done, ms_left(due))
        if err != EINTR:
            return int(err)


def close_notify(ssl: Any, ms: int) -> int:
    """One try at the shutdown (close_notify out; complete once the peer's came), waiting up
    to ``ms``: 0 when complete, else what stopped it (``COMMSSL_SHUTDOWN_SENT``: ours is out)."""
    return int(lib.commssl_io(ssl, lib.COMMSSL_OP_SHUTDOWN, ffi.NULL, 0, ffi.NULL, ms))


def _int_or_none(value: object, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")


def _closed_locally(what: str) -> SSLCondition:
    """A plain operation that met the stream closed by another thread's ``close()``."""
    return SSLCondition(f"{what}: the SocketStream was closed locally (close() from another thread)",
                        "closed-locally")


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
        # take_over's settimeout also puts the descriptor in the mode Python believes it is in
        own = take_over(sock, self, self._timeout)
        self._sock: StreamSocket = own
        self._rbuf = bytearray()
        self._rlock = threading.Lock()
        self._wlock = threading.Lock()
        # The C loops' out-parameters, made once: each is used under its lock only.
        self._rout = ffi.new("size_t[1]")  # bytes read (read lock)
        self._rlater = ffi.new("int[1]")  # what stopped the extra reads (read lock)
        self._wout = ffi.new("size_t[1]")  # bytes written (write lock)
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

    def _handshake(self, ssl: Any, due: Optional[float], *, soft: bool = False) -> bool:
        """Run the handshake inside an operation already begun (``ssl`` pinned). ``soft``
        (``socket_stream_handshake``): a timeout or the peer's clean close, with no exception
        parked by a callback, returns False instead of raising."""
        tls = self._tls
        sslp = tls.sslp
        assert sslp is not None
        while True:  # drive()'s loop, inline: once per connection
            err = lib.commssl_io(ssl, _OP_HANDSHAKE, _NULL, 0, _NULL, ms_left(due))
            if err != EINTR:
                break
        if soft and err in (lib.COMMSSL_TIMEOUT, lib.SSL_ERROR_ZERO_RETURN) and sslp.exception is None:
            return False
        if err:
            tls.failure(err, "handshake")
        check_after_handshake(sslp, due)
        tls.handshake_done()
        return True

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
                    raise _closed_locally("read")
                return n
            finally:
                tls.end_plain()
        buf = ffi.from_buffer(view, require_writable=True)
        done, later = self._rout, self._rlater
        try:
            due = deadline(self._timeout)
            while True:
                err = lib.commssl_read_more(ssl, buf, len(view), done, ms_left(due), later)
                if err != EINTR:
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
        buf = alloc("char[]", n)  # not zero-filled: OpenSSL writes what is returned
        k = self._recv_into(memoryview(ffi.buffer(buf)))
        return ffi.buffer(buf, k)[:]

    # -- the stream interface --------------------------------------------------

    def read(self, n: Optional[int] = -1) -> bytes:
        _int_or_none(n, "n")
        self._guard("read")
        with self._rlock:
            rbuf = self._rbuf
            # Chunks go straight into the buffer: on an error what arrived stays there,
            # and the next read returns it.
            if n is None or n < 0:
                while True:
                    chunk = self._recv(CHUNK)
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
        _int_or_none(n, "n")
        self._guard("read1")
        with self._rlock:
            if self._rbuf:
                k = len(self._rbuf) if n is None or n < 0 else n
                data = bytes(self._rbuf[:k])
                del self._rbuf[:k]
                return data
            return self._recv(CHUNK if n is None or n < 0 else n) if n != 0 else b""

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
        _int_or_none(limit, "limit")
        limit = -1 if limit is None else limit
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
                chunk = self._recv(CHUNK)
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
                    raise _closed_locally("write") from None
                raise
            finally:
                tls.end_plain()
            return n
        try:
            if n:
                err = drive(ssl, lib.COMMSSL_OP_WRITE, buf, n, self._wout, deadline(self._timeout))
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
                lib.commssl_close_notify(ssl)  # best effort, never waits
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

