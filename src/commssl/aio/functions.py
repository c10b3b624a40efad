"""The functions that make ``AsyncSSLStream`` objects and change them: the client's
``open_tcp_stream_async``, the server's ``start_ssl_server``, and STARTTLS's
``attach_ssl_async`` and ``detach_ssl_async`` (LispWorks ``async-io-state-attach-ssl``
and ``-detach-ssl``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Optional, Union

from commssl._core.args import side_arg
from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl._core.types import ContextArg, NewContext, SSLCtxArg
from commssl.aio.events import DEFAULT_LIMIT, Protocol
from commssl.aio.stream import DEFAULT_CLOSE_TIMEOUT, AsyncSSLStream
from commssl.config.abstract import SSLAbstractContext
from commssl.config.contexts import check_method_side, wants_new_ctx
from commssl.errors import SSLError
from commssl.io.connection import CtxCallback, SSLCallback, new_ssl
from commssl.io.handshake import release_new_ssl
from commssl.io.policy import buffered_arg, check_hostname_arg
from commssl.io.state import HANDSHAKING, OPEN
from commssl.io.timeouts import timeout_arg

_log = logging.getLogger("commssl.aio")  # the package's logger, named in the docs


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


# -- making streams ------------------------------------------------------------


async def open_tcp_stream_async(
    host: str,
    port: int,
    *,
    ssl_ctx: Optional[SSLCtxArg],
    tlsext_host_name: Any = None,
    handshake_timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
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
        await loop.create_connection(lambda: Protocol(stream), host, port)
        await done
    except BaseException:
        # Cancelled or failed: nothing may be left behind, not even an outcome set
        # on `done` later that no one retrieves (asyncio would log it).
        stream._on_handshake = None
        if not done.done():
            done.cancel()
        elif not done.cancelled():
            done.exception()
        stream._release()
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
    ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
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

    def factory() -> Protocol:
        stream = AsyncSSLStream(loop, "server", limit=limit, handshake_timeout=seconds,
                                on_handshake=on_handshake)
        if ssl_ctx is None:
            return Protocol(stream)
        try:
            sslp, owns, own_ctx = new_ssl(ssl_ctx, "server", ctx_configure_callback=ctx_configure_callback,
                                          ssl_configure_callback=ssl_configure_callback)
            stream._attach(sslp, owns, own_ctx)
        except Exception as exc:  # the context was destroyed, say: refuse this connection, keep serving
            _log.error("commssl: cannot make an SSL for a new connection: %s: %s", type(exc).__name__, exc)
            stream._release()
            return Refuse(stream)
        return Protocol(stream)

    return await loop.create_server(factory, host, port, **server_kwargs)


class Refuse(Protocol):
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



# -- STARTTLS ------------------------------------------------------------------------


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
    ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
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
    side_arg(ssl_side, ("server", "client"))
    buffered_arg(buffered)
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
