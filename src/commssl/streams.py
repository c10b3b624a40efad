"""Blocking socket streams (LispWorks ``socket-stream``) with SSL attached: making
them, attaching, handshaking and detaching SSL, and their accessors.

The stream itself, ``SocketStream``, and its reads and writes are ``_socket_stream.py``'s;
the connection core it drives is ``io/tls.py``.
"""

from __future__ import annotations

import socket
from typing import Any, Literal, Optional, Union

from commssl._core.binding import ffi, lib
from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl._core.types import SSLCtxArg
from commssl._socket_stream import CHUNK, EINTR, READ_BUFFER, SocketStream, alloc, close_notify
from commssl.io.connection import CtxCallback, SSLCallback, new_ssl
from commssl.io.detach import DetachDrain
from commssl.io.handshake import release_new_ssl
from commssl.io.policy import buffered_arg, check_hostname_arg, clear_bytes_rule
from commssl.io.state import CLOSED, HANDSHAKING, OPEN
from commssl.io.timeouts import deadline, timeout_arg

__all__ = ["SocketStream", "attach_ssl", "create_ssl_socket_stream", "detach_ssl", "open_tcp_stream",
           "socket_stream_ctx", "socket_stream_handshake", "socket_stream_ssl", "socket_stream_ssl_side"]


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
    ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
    handshake_timeout: Optional[float] = None,
    tlsext_host_name: Any = None,
    session: Any = None,
    check_hostname: bool = True,
    buffered: str = "refuse",
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

    Clear data the stream buffered and nobody read (bytes that came with the
    peer's STARTTLS reply or command, in one packet) is, with ``buffered``
    ``"refuse"`` (the default), a ``ValueError`` before anything is attached:
    read it first. Such bytes are an injection (CVE-2011-0411) or a peer that
    did not wait; they never become data of the TLS connection. ``"tls"`` hands
    them to OpenSSL as the start of the peer's handshake.
    """
    _stream(stream)
    buffered_arg(buffered)
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
        rbuf = stream._rbuf
        try:
            first = bytes(rbuf) if clear_bytes_rule(len(rbuf), buffered, "attach_ssl") else b""
        except BaseException:
            release_new_ssl(sslp, owns, own_ctx)
            raise
        ssl = tls.attach(sslp, owns, own_ctx, ssl_side, stream)
        try:
            if not lib.commssl_set_socket(ssl, stream._sock.fileno(), READ_BUFFER):
                raise MemoryError("attach_ssl: no memory for the socket BIOs")
            if first:
                if not lib.commssl_preload(ssl, first, len(first)):
                    raise ValueError("attach_ssl: buffered='tls' could not hand the buffered bytes to "
                                     "OpenSSL (kernel TLS reads the socket itself)")
                rbuf.clear()
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
            tls.sslp.reset_verification()  # type: ignore[union-attr]  # pinned by begin()
            return stream._handshake(ssl, due, soft=True)
        finally:
            tls.end()


def _shutdown(stream: SocketStream, ssl: Any, retry_count: Optional[int], retry_timeout: float,
              keep: DetachDrain) -> None:
    """A detach's close_notify, then (``retry_count`` not None) wait for the peer's: each wait
    up to ``retry_timeout``, ``retry_count + 1`` of them. What the peer sent before its
    close_notify (it may not have seen ours yet) goes to ``keep`` (the policy, limit and
    errors shared with ``detach_ssl_async``)."""
    if not lib.SSL_is_init_finished(ssl):
        return
    ms = int(retry_timeout * 1000)
    err = close_notify(ssl, ms)
    if err == 0 or retry_count is None:  # done; or not waiting for the peer's
        return
    waits = retry_count + 1

    def wait_used() -> None:
        nonlocal waits
        waits -= 1
        if waits <= 0:
            raise keep.no_answer(f"after {retry_count + 2} tries")

    while err != lib.COMMSSL_SHUTDOWN_SENT:  # ours is not out yet (the socket was full)
        if err not in (lib.COMMSSL_TIMEOUT, EINTR):
            stream._tls.failure(err, "detach_ssl")
        wait_used()
        err = close_notify(ssl, ms)
        if err == 0:
            return
    # Ours is out: read until the peer's (see io/detach.py for why not SSL_shutdown).
    buf, done = alloc("char[]", CHUNK), stream._rout  # the detach holds the read lock
    while True:
        err = lib.commssl_io(ssl, lib.COMMSSL_OP_READ, buf, CHUNK, done, ms)
        if err == 0:
            keep.keep(ffi.buffer(buf, done[0]))
        elif err == lib.SSL_ERROR_ZERO_RETURN:  # the peer's close_notify: complete the shutdown
            err = close_notify(ssl, ms)
            if err == 0:
                return
            stream._tls.failure(err, "detach_ssl")
        elif err in (lib.COMMSSL_TIMEOUT, EINTR):
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


def _attached(stream: SocketStream, **attach: Any) -> SocketStream:
    """``stream`` with SSL attached (``attach_ssl``'s keywords); closed when attaching fails."""
    try:
        attach_ssl(stream, **attach)
    except BaseException:
        stream.close()
        raise
    return stream


def open_tcp_stream(
    host: str,
    port: int,
    *,
    ssl_ctx: Union[None, Literal[False], SSLCtxArg] = None,  # None or False: plain TCP
    tlsext_host_name: Any = None,
    handshake_timeout: Optional[float] = None,
    timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
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
    if ssl_ctx is None or ssl_ctx is False:
        return stream
    return _attached(stream, ssl_ctx=ssl_ctx, ssl_side="client",
                     ctx_configure_callback=ctx_configure_callback,
                     ssl_configure_callback=ssl_configure_callback, handshake_timeout=handshake_timeout,
                     tlsext_host_name=tlsext_host_name, session=session, check_hostname=check_hostname)


def create_ssl_socket_stream(
    sock: socket.socket,
    ssl_ctx: Optional[SSLCtxArg],
    *,
    ssl_side: str = "server",
    handshake_timeout: Optional[float] = None,
    timeout: Optional[float] = None,
    tlsext_host_name: Any = None,
    ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
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
    return _attached(stream, ssl_ctx=ssl_ctx, ssl_side=ssl_side, handshake_timeout=handshake_timeout,
                     tlsext_host_name=tlsext_host_name, ctx_configure_callback=ctx_configure_callback,
                     ssl_configure_callback=ssl_configure_callback, check_hostname=check_hostname)


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
