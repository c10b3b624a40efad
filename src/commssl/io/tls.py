"""The connection core: one ``TLSConnection`` per stream owns the stream's state,
its ``SSL`` and its transport, for the blocking and the asyncio streams alike.

Lifetimes are held, not checked. Every operation (a handshake, a read, a write,
a shutdown, plain I/O before SSL is attached) starts with ``begin()``, which
under the connection's one lock refuses or counts it and hands back the live
``SSL*`` pinned for the operation, and ends with ``end()``. ``close()`` marks
the connection closed at once (operations that start afterwards raise
``ValueError``) and wakes the ones in flight; whoever ends last frees the SSL,
the context the stream made, and the transport (a socket's file descriptor is
closed only then, so no operation ever polls a descriptor number that was
reused). ``detach`` and ``attach`` need the connection to themselves.

The states and their moves: ``commssl.io.state``.

The rest of what every stream kind shares lives here too: the memory-BIO engine
(asyncio, anyio), and the error met after data was received (kept for the next
read, so no data is lost).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, NoReturn, Optional, Tuple, Type

from commssl._core.binding import drain, ffi, lib
from commssl._core.callbacks import in_callback, in_callback_error
from commssl._core.ownership import release_ssl_claim
from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl.errors import SSLCondition, SSLHandshakeTimeout
from commssl.io.handshake import raise_failure, release_new_ssl
from commssl.io.state import CLOSED, CLOSING, DETACHING, FAILED, HANDSHAKING, OPEN, PLAIN, check_move

# -- memory-BIO mode (the asyncio and anyio adapters) --------------------------------

_alloc = ffi.new_allocator(should_clear_after_alloc=False)
_NULL = ffi.NULL
#: Decryption scratch, one per thread (data is copied out at once).
SCRATCH = 256 * 1024
_FLUSH_CHUNK = 1 << 24  # largest single BIO_read (an int in C)
OP_HANDSHAKE = lib.COMMSSL_OP_HANDSHAKE
OP_READ = lib.COMMSSL_OP_READ
OP_WRITE = lib.COMMSSL_OP_WRITE
OP_SHUTDOWN = lib.COMMSSL_OP_SHUTDOWN
WANT_READ = lib.SSL_ERROR_WANT_READ
ZERO_RETURN = lib.SSL_ERROR_ZERO_RETURN
SHUTDOWN_SENT = lib.COMMSSL_SHUTDOWN_SENT
_FINE = (WANT_READ, ZERO_RETURN, SHUTDOWN_SENT)
_per_thread = threading.local()


def scratch() -> Any:
    """This thread's decryption buffer (``SCRATCH`` bytes)."""
    buf = getattr(_per_thread, "buf", None)
    if buf is None:
        buf = _per_thread.buf = _alloc("char[]", SCRATCH)
    return buf


class TLSConnection:
    """The state, the ``SSL`` and the transport of one stream (see the module docstring).

    ``release_transport`` is called once, by whoever ends last after ``close()``;
    the stream passes what frees its transport (a socket's ``close``).
    """

    __slots__ = ("name", "state", "sslp", "side", "_lock", "_users", "_owns_ssl", "_own_ctx",
                 "_release_transport", "_released", "closed_locally", "pending_error", "conn",
                 "peer_closed", "read_error", "mem_done", "_wbio", "_send", "pid")

    def __init__(self, name: str, release_transport: Callable[[], None]) -> None:
        self.name = name  # for messages: "SocketStream", "AsyncSSLStream"
        self.state = PLAIN
        self.sslp: Optional[SSLPointer] = None
        self.side: Optional[str] = None
        self._lock = threading.Lock()
        self._users = 0
        self._owns_ssl = False
        self._own_ctx: Optional[SSLCtxPointer] = None
        self._release_transport = release_transport
        self._released = False
        self.closed_locally = False  # close() came while operations were in flight
        self.pending_error: Optional[BaseException] = None  # met after data: the next read's
        # The read side of a connection driven over memory BIOs (asyncio, anyio): the
        # peer's close_notify arrived; the error that ends reading once the data
        # received before it has been read (a failure, a truncation, a lost transport).
        self.peer_closed = False
        self.read_error: Optional[BaseException] = None
        self.conn: Any = None  # the stream (weakly referenced by the SSLPointer)
        # memory-BIO mode: [0] bytes done by the last step, [1] bytes it left in the write BIO
        self.mem_done: Any = None
        self._wbio: Any = _NULL
        self._send: Optional[Callable[[memoryview], None]] = None
        # The process whose connection this is (set again at attach): a forked child
        # sends nothing on it (ownership.py).
        self.pid = os.getpid()

    def __repr__(self) -> str:
        return f"<TLSConnection {self.name} {self.state.value} users={self._users}>"

    # -- operations -------------------------------------------------------------------

    def _refuse(self, what: str) -> NoReturn:
        state = self.state
        if state in (CLOSING, CLOSED):
            raise ValueError(f"{what} on a closed {self.name}")
        if state == FAILED:
            raise ValueError(f"{what} on a {self.name} whose SSL handshake failed (close it)")
        if state == DETACHING:
            raise ValueError(f"{what} on a {self.name} whose SSL is being detached by another thread")
        raise in_callback_error(what, self.sslp)

    def begin(self, what: str, closing: bool = False) -> Any:
        """Start an operation: the pinned ``SSL*`` (``None`` while plain), or
        ``ValueError`` when the connection is closed, failed, being detached, or
        inside its own verify callback. ``closing``: a step of the close itself,
        allowed while CLOSING. Pair every successful call with ``end()``."""
        with self._lock:
            state = self.state
            if state == PLAIN:
                self._users += 1
                return None
            sslp = self.sslp
            if (state is not OPEN and state is not HANDSHAKING and not (closing and state is CLOSING)) or (
                    sslp is not None and in_callback(sslp)):
                self._refuse(what)
            self._users += 1
        try:
            return sslp._pin()  # type: ignore[union-attr]
        except BaseException:
            self._end(False)
            raise

    def end(self) -> None:
        """End an operation begun with a non-``None`` ``SSL*``."""
        self.sslp._unpin()  # type: ignore[union-attr]
        self._end(False)

    def end_plain(self) -> None:
        """End an operation begun while plain."""
        self._end(False)

    def _end(self, pinned: bool) -> None:
        if pinned:
            self.sslp._unpin()  # type: ignore[union-attr]
        with self._lock:
            users = self._users = self._users - 1
            if users or self.state is not CLOSED or self._released:
                return
            self._released = True
        self._release_all()

    # -- attaching, detaching, closing ------------------------------------------------

    def attach(self, sslp: SSLPointer, owns: bool, own_ctx: Optional[SSLCtxPointer], side: str,
               conn: Any) -> Any:
        """Take a new SSL (PLAIN -> HANDSHAKING) and begin the handshake operation:
        returns the pinned ``SSL*``; ``end()`` it. On refusal the SSL is not taken, and
        what ``new_ssl`` made is given back (``release_new_ssl``)."""
        with self._lock:
            try:
                if self.state != PLAIN:
                    if self.state in (HANDSHAKING, OPEN):
                        raise ValueError(f"this {self.name} already has SSL attached")
                    self._refuse("attach_ssl")
                if self._users:
                    raise ValueError(f"attach_ssl: another thread is reading or writing the {self.name}")
            except BaseException:
                release_new_ssl(sslp, owns, own_ctx)
                raise
            self.sslp, self._owns_ssl, self._own_ctx, self.side = sslp, owns, own_ctx, side
            self.state = check_move(self.state, HANDSHAKING)
            self._users = 1
            self.pid = os.getpid()
        self.conn = conn
        sslp.connection = conn  # x509_store_ctx_get_connection, verify_callback(conn)
        return sslp._pin()

    def attach_mem(self, sslp: SSLPointer, owns: bool, own_ctx: Optional[SSLCtxPointer], side: str,
                   conn: Any, send: Callable[[memoryview], None]) -> None:
        """``attach`` in memory-BIO mode: the SSL gets a pair of memory BIOs, and
        what OpenSSL writes to the outgoing one is handed to ``send`` (a view that
        keeps its buffer alive) by ``mem_step``."""
        ssl = self.attach(sslp, owns, own_ctx, side, conn)
        try:
            rbio = lib.BIO_new(lib.BIO_s_mem())
            wbio = lib.BIO_new(lib.BIO_s_mem())
            if rbio == _NULL or wbio == _NULL:
                lib.BIO_free(rbio)  # BIO_free(NULL) does nothing
                lib.BIO_free(wbio)
                self.fail()
                raise MemoryError("BIO_new failed")
            lib.SSL_set_bio(ssl, rbio, wbio)  # the SSL owns both from now on
            self._wbio, self._send = wbio, send
            if self.mem_done is None:
                self.mem_done = ffi.new("size_t[2]")
        finally:
            self.end()

    def mem_step(self, data: Any, eof: int, op: int, buf: Any, n: int, what: str,
                 closing: bool = False, held: Any = None) -> int:
        """One ``commssl_mem_step`` (feed ``data``, ``eof``, then run ``op``) as an
        operation of its own, or within the operation that pinned ``held`` (a
        detach); hands what OpenSSL wrote to ``send``. Returns 0, WANT_READ,
        ZERO_RETURN or SHUTDOWN_SENT (``mem_done[0]``: bytes read or written);
        raises what any other result means."""
        done = self.mem_done
        done[0] = 0
        if op == OP_SHUTDOWN and self.forked():
            return 0  # a forked child's close: the parent's session, not ours to end
        ssl = held if held is not None else self.begin(what, closing)
        try:
            err = lib.commssl_mem_step(ssl, data, len(data), eof, op, buf, n, done, done + 1)
            if done[1]:
                self._flush_out(done[1])
            if err and err not in _FINE:
                self.failure(err, what)
            return int(err)
        finally:
            if held is None:
                self.end()

    def _flush_out(self, pending: int) -> None:
        send = self._send
        while pending > 0:
            k = min(pending, _FLUSH_CHUNK)
            buf = _alloc("char[]", k)
            got = lib.BIO_read(self._wbio, buf, k)
            if got <= 0:
                return
            if send is not None:
                send(memoryview(ffi.buffer(buf, got)))
            pending -= got

    def mem_decrypt(self, data: Any, eof: int, rbuf: bytearray) -> int:
        """Feed ``data`` (and ``eof``) and decrypt all that can be into ``rbuf``
        (while CLOSING the data is dropped). Returns WANT_READ (all consumed) or
        ZERO_RETURN (the peer's close_notify); an error is raised with what was
        decrypted before it kept in ``rbuf``."""
        buf = scratch()
        keep = self.state != CLOSING
        done = self.mem_done
        try:
            while True:
                err = self.mem_step(data, eof, OP_READ, buf, SCRATCH, "read", not keep)
                if done[0] and keep:
                    rbuf += ffi.buffer(buf, done[0])
                if err:
                    return err
                data, eof = b"", 0
        except BaseException:
            if done[0] and keep:
                rbuf += ffi.buffer(buf, done[0])
            raise

    def forked(self) -> bool:
        """Whether this is a forked child of the process that attached the SSL (or
        made the stream): its close frees memory and sends nothing."""
        return os.getpid() != self.pid

    def handshake_done(self) -> None:
        with self._lock:
            if self.state == HANDSHAKING:
                self.state = check_move(self.state, OPEN)

    def fail(self) -> None:
        """The handshake failed: the connection never carries data again; its SSL
        is freed by the last operation (or close)."""
        with self._lock:
            if self.state in (HANDSHAKING, OPEN):
                self.state = check_move(self.state, FAILED)

    def start_closing(self) -> bool:
        """HANDSHAKING/OPEN -> CLOSING (user operations refused, the close's own
        steps go on); False when the connection is already closing or closed."""
        with self._lock:
            state = self.state
            if state in (CLOSING, CLOSED):
                return False
            sslp = self.sslp
            if sslp is not None and in_callback(sslp):
                raise in_callback_error("close()", sslp)
            if state in (HANDSHAKING, OPEN):
                self.state = check_move(self.state, CLOSING)
            return True

    def begin_detach(self, what: str) -> Any:
        """Take the connection for a detach (OPEN/HANDSHAKING -> DETACHING): the
        pinned ``SSL*``, ``None`` when no SSL is attached, or ``ValueError`` when
        another operation is in flight (or this is its own verify callback)."""
        with self._lock:
            state = self.state
            if state == PLAIN:
                return None
            sslp = self.sslp
            if not state.has_tls or (sslp is not None and in_callback(sslp)):
                self._refuse(what)
            if self._users:
                raise ValueError(f"{what}: another thread is reading or writing the {self.name}")
            self.state = check_move(self.state, DETACHING)
            self._users = 1
        return sslp._pin()  # type: ignore[union-attr]

    def end_detach(self) -> None:
        """End a detach: the SSL is freed and the connection is plain again (or, if
        ``close()`` came meanwhile, closed and released)."""
        self.sslp._unpin()  # type: ignore[union-attr]
        with self._lock:
            self._users -= 1
            if self.state == DETACHING:
                self.state = check_move(self.state, PLAIN)
                sslp, self.sslp, self.side = self.sslp, None, None
                self._release_ssl(sslp)
                return
            last = self._users == 0 and not self._released
            if last:
                self._released = True
        if last:
            self._release_all()

    def begin_close(self) -> Tuple[Any, bool]:
        """Mark the connection closed. Returns ``(ssl, busy)``: ``ssl`` is the
        pinned ``SSL*`` when the caller should shut TLS down itself (nothing else
        in flight, handshake complete) and then ``end()``; ``busy`` is True when
        operations are in flight (wake them: the last one releases everything).
        A close from inside the connection's own verify callback is ``ValueError``."""
        with self._lock:
            state = self.state
            if state == CLOSED:
                return None, False
            sslp = self.sslp
            if sslp is not None and in_callback(sslp):
                raise in_callback_error("close()", sslp)
            self.state = check_move(self.state, CLOSED)
            if self.pid != os.getpid():
                # A forked child: free, send no close_notify (the session is the parent's).
                # The operations counted are the parent's threads', which the child does
                # not have: nothing here waits to release.
                self._users = 0
                state = CLOSED
            if self._users:
                self.closed_locally = True
                return None, True
            if state not in (HANDSHAKING, OPEN):
                self._released = True
                shutdown = False
            else:
                self._users = 1
                shutdown = True
        if not shutdown:
            self._release_all()
            return None, False
        try:
            return sslp._pin(), False  # type: ignore[union-attr]
        except ValueError:  # the collector freed the SSL first (a reference cycle)
            self._end(False)
            return None, False

    def _release_ssl(self, sslp: Optional[SSLPointer]) -> None:
        self._wbio = _NULL  # the SSL owned it
        if sslp is None:
            return
        sslp.connection = None
        release_ssl_claim(sslp)  # an SSL passed in may serve another connection now
        if self._owns_ssl:
            sslp._kill()
        if self._own_ctx is not None:
            self._own_ctx._kill()
        self._owns_ssl, self._own_ctx = False, None

    def _release_all(self) -> None:
        sslp, self.sslp = self.sslp, None
        try:
            self._release_ssl(sslp)
        finally:
            self._release_transport()

    # -- errors -------------------------------------------------------------------------

    def failure(self, err: int, what: str, timeout_exc: Type[Exception] = SSLHandshakeTimeout) -> NoReturn:
        """Raise what a failed operation means (its SSL still pinned): when a local
        ``close()`` ended it, say so rather than blaming the peer."""
        if self.closed_locally and self.sslp is not None and self.sslp.exception is None:
            drain()
            raise SSLCondition(f"{what}: the {self.name} was closed locally (close() from another thread)",
                               "closed-locally")
        raise_failure(self.sslp, err, what, timeout_exc)  # type: ignore[arg-type]

    def take_pending(self) -> None:
        """Raise the error met after data that an earlier read returned, if any."""
        exc = self.pending_error
        if exc is not None:
            self.pending_error = None
            raise exc
