"""httpx transports whose TLS is commssl's (``pip install commssl[httpx]``).

``HTTPTransport(ssl_ctx=...)`` for ``httpx.Client`` and ``AsyncHTTPTransport(
ssl_ctx=...)`` for ``httpx.AsyncClient`` (on asyncio or trio): drop-in
transports built on httpcore's pluggable network backends. The sync backend
connects a plain ``SocketStream`` and attaches SSL to it (``attach_ssl``); the
async one wraps an anyio TCP stream (``commssl.anyio.wrap``). So the handshake
is commssl's: verification modes, verify callbacks (pinning), OCSP, client
certificates, all from the ``ssl_ctx`` given (anything ``open_tcp_stream``
accepts: ``True`` for the system's trust store, an ``SSLCtxPointer``, an
abstract client context).

A failed handshake is an ``httpx.ConnectError`` whose ``__cause__`` is the
commssl exception (``SSLVerificationFailure``...) or the verify callback's own
exception; a handshake timeout is ``httpx.ConnectTimeout``.

HTTP/2: with ``http2=True`` (needs the ``h2`` package, part of the ``httpx``
extra) each TLS connection offers ALPN ``["h2", "http/1.1"]`` and speaks HTTP/2
when the server selects ``h2`` (``response.http_version == "HTTP/2"``), HTTP/1.1
otherwise. Without it the connection offers ``["http/1.1"]`` only, whatever the
``ssl_ctx`` offers (the offer is set on the connection, never on your context), and
a server that selects ``h2`` anyway fails the connection. Proxies are not
supported by these transports.
``response.extensions["network_stream"].get_extra_info("commssl")`` is the
commssl connection (for ``ssl_connection_*``).
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import time
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Type, Union

from commssl._extras import missing_extra

try:
    import anyio
    import anyio.abc
    import httpcore
    import httpx
except ModuleNotFoundError as _exc:  # without the extra: say how to get it
    raise missing_extra("commssl.httpx", "httpx", _exc) from _exc

import commssl.anyio as _tls_anyio
from commssl._core.pointers import SSLPointer
from commssl.config.abstract import SSLAbstractContext
from commssl.config.features import set_alpn_protocols, ssl_connection_alpn_protocol
from commssl.errors import SSLHandshakeTimeout
from commssl.io.connection import CtxCallback, SSLCallback, ssl_connection_protocol_version
from commssl.io.policy import check_hostname_arg
from commssl.streams import SocketStream, attach_ssl

__all__ = ["AsyncHTTPTransport", "AsyncNetworkBackend", "HTTPTransport", "NetworkBackend"]

SocketOption = Union[Tuple[int, int, int], Tuple[int, int, Union[bytes, bytearray]],
                     Tuple[int, int, None, int]]

_VERSIONS = {"tls-v1-3": "TLSv1.3", "tls-v1-2": "TLSv1.2", "tls-v1-1": "TLSv1.1", "tls-v1": "TLSv1"}


class _TLSSettings:
    """What commssl passes httpcore as its ``ssl_context``: httpcore only sets the
    ALPN protocols on it. The protocols offered are the transport's (``_Options.alpn``),
    most preferred first, which httpcore's list (``http/1.1`` first) is not."""

    def __init__(self) -> None:
        self.alpn_protocols: List[str] = []

    def set_alpn_protocols(self, protocols: Iterable[str]) -> None:
        self.alpn_protocols = list(protocols)


class SSLObjectInfo:
    """``get_extra_info("ssl_object")``: the little of ``ssl.SSLObject`` httpcore
    and applications ask for, and ``.connection``, the commssl connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def selected_alpn_protocol(self) -> Optional[str]:
        """What httpcore asks to choose HTTP/2 (``"h2"``) or HTTP/1.1."""
        return ssl_connection_alpn_protocol(self.connection)

    def version(self) -> Optional[str]:
        return _VERSIONS.get(ssl_connection_protocol_version(self.connection))


def _readable(sock: Optional[socket.socket]) -> bool:
    """Whether a read would not block (data, or the peer's close): an idle
    keep-alive connection that is readable is dead."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32" or not hasattr(select, "poll"):
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


@contextlib.contextmanager
def _mapped(timeout_exc: Type[Exception], error_exc: Type[Exception],
            handshake: bool = False) -> Iterator[None]:
    """Map errors to httpcore's: a handshake's every error is a connect error."""
    errors: Tuple[Type[Exception], ...] = (
        (Exception,) if handshake else (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError))
    try:
        yield
    except (TimeoutError, SSLHandshakeTimeout) as exc:
        raise timeout_exc(str(exc) or "timed out") from exc
    except errors as exc:
        error = error_exc(str(exc) or type(exc).__name__)
        error._commssl_cause = exc  # type: ignore[attr-defined] # httpcore's pool drops __cause__
        raise error from exc


class _Options:
    """The TLS settings a backend applies to every connection."""

    def __init__(self, ssl_ctx: Any = True, *, tlsext_host_name: Any = None,
                 ctx_configure_callback: CtxCallback = None,
                 ssl_configure_callback: SSLCallback = None, check_hostname: bool = True,
                 alpn: Iterable[str] = ("http/1.1",)) -> None:
        if ssl_ctx is None or ssl_ctx is False:
            raise TypeError("ssl_ctx must be True, 'default', an SSLCtxPointer or a client abstract context, "
                            f"not {ssl_ctx!r} (plain http:// URLs need no TLS settings)")
        self.ssl_ctx = ssl_ctx
        #: The ALPN offer of every connection, most preferred first.
        self.alpn = list(alpn)
        # an abstract context's own callback runs unless one is given (as in open_tcp_stream)
        if ssl_configure_callback is None and isinstance(ssl_ctx, SSLAbstractContext):
            ssl_configure_callback = ssl_ctx.ssl_configure_callback
        # the name checked is the origin's host (httpcore's server_hostname), as for a browser
        self.tls: Any = dict(tlsext_host_name=tlsext_host_name, ctx_configure_callback=ctx_configure_callback,
                             check_hostname=check_hostname_arg(check_hostname))
        if not isinstance(ssl_ctx, SSLPointer):  # an SSLPointer takes no callback: see offer()
            self.tls["ssl_configure_callback"] = self._configure(ssl_configure_callback)

    def _configure(self, user_callback: SSLCallback) -> Any:
        def configure(sslp: SSLPointer) -> None:
            # on the connection's SSL: the context (maybe the user's, shared) is left as it is
            set_alpn_protocols(sslp, self.alpn)
            if user_callback is not None:
                user_callback(sslp)
        return configure

    def offer(self) -> None:
        """Before a handshake on an ``ssl_ctx`` that is an SSL: set the offer on it."""
        if isinstance(self.ssl_ctx, SSLPointer):
            set_alpn_protocols(self.ssl_ctx, self.alpn)

    def check(self, connection: Any) -> None:
        """After the handshake: a protocol the transport did not offer fails the connection
        (httpcore would speak HTTP/2 on an ``h2`` it did not ask for)."""
        selected = ssl_connection_alpn_protocol(connection)
        if selected is not None and selected not in self.alpn:
            raise ValueError(f"the server selected ALPN {selected!r}, which this transport did not offer "
                             f"({self.alpn}): pass http2=True to speak HTTP/2")


# -- sync ------------------------------------------------------------------------------


class NetworkStream(httpcore.NetworkStream):
    """A TCP connection for httpcore: a commssl ``SocketStream``, plain until
    ``start_tls`` attaches SSL."""

    def __init__(self, stream: SocketStream, options: _Options) -> None:
        self.stream = stream
        self._options = options

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            self.stream.timeout = timeout
            return self.stream.read1(max_bytes)

    def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            self.stream.timeout = timeout
            self.stream.write(buffer)

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: Optional[str] = None,
                  timeout: Optional[float] = None) -> "NetworkStream":
        options = self._options
        try:
            with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError, handshake=True):
                options.offer()
                attach_ssl(self.stream, ssl_ctx=options.ssl_ctx, ssl_side="client", handshake_timeout=timeout,
                           _host=server_hostname, **options.tls)
                options.check(self.stream)
        except BaseException:
            self.stream.close()
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        stream = self.stream
        if info == "ssl_object":
            return SSLObjectInfo(stream) if stream.ssl is not None else None
        if info == "commssl":
            return stream
        if info == "is_readable":
            return stream._holds_unread() or _readable(None if stream.closed else stream.socket)
        if stream.closed:
            return None
        if info == "socket":
            return stream.socket
        if info == "client_addr":
            return stream.socket.getsockname()
        if info == "server_addr":
            return stream.socket.getpeername()
        return None


class _Configured:
    """A backend's TLS settings: ``ssl_ctx`` and the keywords of ``HTTPTransport``."""

    def __init__(self, ssl_ctx: Any = True, **tls: Any) -> None:
        self.options = _Options(ssl_ctx, **tls)


class NetworkBackend(_Configured, httpcore.NetworkBackend):
    """httpcore's sync network backend with commssl's TLS (see ``HTTPTransport``)."""


    def _stream(self, sock: socket.socket, socket_options: Optional[Iterable[SocketOption]]) -> NetworkStream:
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            return NetworkStream(SocketStream(sock), self.options)
        except BaseException:
            sock.close()
            raise

    def connect_tcp(self, host: str, port: int, timeout: Optional[float] = None,
                    local_address: Optional[str] = None,
                    socket_options: Optional[Iterable[SocketOption]] = None) -> NetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            source = None if local_address is None else (local_address, 0)
            sock = socket.create_connection((host, port), timeout, source_address=source)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self._stream(sock, socket_options)

    def connect_unix_socket(self, path: str, timeout: Optional[float] = None,
                            socket_options: Optional[Iterable[SocketOption]] = None) -> NetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(path)
            except BaseException:
                sock.close()
                raise
            return self._stream(sock, socket_options)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# -- async (anyio: asyncio and trio) -----------------------------------------------------


class AsyncNetworkStream(httpcore.AsyncNetworkStream):
    """A TCP connection for httpcore: an anyio byte stream, a
    ``commssl.anyio.TLSStream`` after ``start_tls``."""

    def __init__(self, stream: anyio.abc.ByteStream, options: _Options) -> None:
        self.stream = stream
        self._options = options

    async def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError), anyio.fail_after(timeout):
            try:
                return await self.stream.receive(max_bytes)
            except anyio.EndOfStream:
                return b""

    async def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError), anyio.fail_after(timeout):
            await self.stream.send(buffer)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: Optional[str] = None,
                        timeout: Optional[float] = None) -> "AsyncNetworkStream":
        options = self._options
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError, handshake=True):
            options.offer()
            # wrap closes the byte stream when the handshake fails or is cancelled.
            # standard_compatible=False as httpcore's own anyio backend: HTTP frames its
            # messages, so a server's missing close_notify is an end, and closing waits for none.
            tls = await _tls_anyio.wrap(self.stream, ssl_ctx=options.ssl_ctx, ssl_side="client",
                                        server_hostname=server_hostname, handshake_timeout=timeout,
                                        standard_compatible=False, **options.tls)
            try:
                options.check(tls)
            except BaseException:
                await anyio.aclose_forcefully(tls)
                raise
        return AsyncNetworkStream(tls, options)

    def get_extra_info(self, info: str) -> Any:
        stream = self.stream
        tls = stream if isinstance(stream, _tls_anyio.TLSStream) else None
        if info == "ssl_object":
            return SSLObjectInfo(tls) if tls is not None and tls.ssl is not None else None
        if info == "commssl":
            return tls
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if info == "is_readable":
            return (tls is not None and bool(tls._rbuf)) or _readable(sock)
        if info == "socket":
            return sock
        if info == "client_addr":
            return stream.extra(anyio.abc.SocketAttribute.local_address, None)
        if info == "server_addr":
            return stream.extra(anyio.abc.SocketAttribute.remote_address, None)
        return None


class AsyncNetworkBackend(_Configured, httpcore.AsyncNetworkBackend):
    """httpcore's async network backend (anyio) with commssl's TLS (see ``AsyncHTTPTransport``)."""


    async def _stream(self, connecting: Any, timeout: Optional[float],
                      socket_options: Optional[Iterable[SocketOption]]) -> AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError), anyio.fail_after(timeout):
            stream = await connecting
        try:
            sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            for option in socket_options or ():
                sock.setsockopt(*option)
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        return AsyncNetworkStream(stream, self.options)

    async def connect_tcp(self, host: str, port: int, timeout: Optional[float] = None,
                          local_address: Optional[str] = None,
                          socket_options: Optional[Iterable[SocketOption]] = None) -> AsyncNetworkStream:
        return await self._stream(anyio.connect_tcp(host, port, local_host=local_address), timeout,
                                  socket_options)

    async def connect_unix_socket(
            self, path: str, timeout: Optional[float] = None,
            socket_options: Optional[Iterable[SocketOption]] = None) -> AsyncNetworkStream:
        return await self._stream(anyio.connect_unix(path), timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


# -- the transports ---------------------------------------------------------------------------


def _alpn(http1: bool, http2: bool) -> List[str]:
    """The ALPN offer for ``http1``/``http2`` (HTTP/2 preferred), checking both and ``h2``."""
    for name, value in (("http1", http1), ("http2", http2)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, not {value!r}")
    if not (http1 or http2):
        raise ValueError("http1 and http2 are both False: at least one must be True")
    if http2:
        try:
            import h2  # noqa: F401  # httpcore imports it only at the first HTTP/2 connection
        except ImportError:
            raise ImportError("http2=True needs the 'h2' package: pip install commssl[httpx]") from None
    return (["h2"] if http2 else []) + (["http/1.1"] if http1 else [])


def _pool_options(limits: Optional[httpx.Limits], pool_options: Any) -> Any:
    for name in ("verify", "cert", "proxy", "trust_env"):
        if name in pool_options:
            raise TypeError(f"{name}= does not apply to commssl's transports: TLS settings come from ssl_ctx"
                            + ("; proxies are not supported" if name == "proxy" else ""))
    limits = limits if limits is not None else httpx.Limits(max_connections=100, max_keepalive_connections=20)
    # httpcore only sets the ALPN protocols on its ssl_context: this stands in for it
    options: Any = dict(ssl_context=_TLSSettings(),
                        max_connections=limits.max_connections,
                        max_keepalive_connections=limits.max_keepalive_connections,
                        keepalive_expiry=limits.keepalive_expiry)
    options.update(pool_options)
    return options


def _cause_is_commssl(exc: httpx.ConnectError) -> None:
    """httpx raises its ConnectError from httpcore's, made by the backend for the
    real cause (httpcore's pool re-raises it ``from None``): make that cause the
    httpx exception's."""
    cause = getattr(exc.__cause__, "_commssl_cause", None)
    if cause is not None:
        exc.__cause__ = cause


class HTTPTransport(httpx.HTTPTransport):
    """An ``httpx.HTTPTransport`` whose TLS is commssl's:
    ``httpx.Client(transport=HTTPTransport(ssl_ctx=ctx))``.

    ``ssl_ctx``: anything ``open_tcp_stream`` takes (``True``: a new context per
    connection verifying against the system's trust store; pass a context made
    once to share it). ``tlsext_host_name``, ``check_hostname`` (default: the
    certificate must carry the URL's host) and the configure callbacks as for
    ``open_tcp_stream``. ``limits`` (``httpx.Limits``) and ``pool_options``
    (``retries``, ``local_address``, ``uds``, ``socket_options``,
    ``keepalive_expiry``...) go to ``httpcore.ConnectionPool``.

    ``http2=True`` (needs ``h2``: ``pip install commssl[httpx]``) offers ALPN
    ``["h2", "http/1.1"]`` on each connection and speaks HTTP/2 where the server
    selects it; by default only ``http/1.1`` is offered, whatever ``ssl_ctx``
    offers. ``http1=False`` with ``http2=True`` offers ``h2`` alone. The offer is
    set on each connection's SSL before ``ssl_configure_callback`` (or the abstract
    context's) runs, so that callback may narrow it; a protocol the server selects
    that the transport did not offer fails the connection (``httpx.ConnectError``).
    """

    def __init__(self, ssl_ctx: Any = True, *, tlsext_host_name: Any = None,
                 ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
                 check_hostname: bool = True, limits: Optional[httpx.Limits] = None,
                 http1: bool = True, http2: bool = False, **pool_options: Any) -> None:
        backend = NetworkBackend(ssl_ctx, tlsext_host_name=tlsext_host_name,
                                 check_hostname=check_hostname,
                                 ctx_configure_callback=ctx_configure_callback,
                                 ssl_configure_callback=ssl_configure_callback, alpn=_alpn(http1, http2))
        self._pool = httpcore.ConnectionPool(network_backend=backend, http1=http1, http2=http2,
                                             **_pool_options(limits, pool_options))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.ConnectError as exc:
            _cause_is_commssl(exc)
            raise


class AsyncHTTPTransport(httpx.AsyncHTTPTransport):
    """An ``httpx.AsyncHTTPTransport`` whose TLS is commssl's, on asyncio or trio
    (through anyio): ``httpx.AsyncClient(transport=AsyncHTTPTransport(ssl_ctx=ctx))``.
    Arguments as for ``HTTPTransport`` (``http2=True`` included)."""

    def __init__(self, ssl_ctx: Any = True, *, tlsext_host_name: Any = None,
                 ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
                 check_hostname: bool = True, limits: Optional[httpx.Limits] = None,
                 http1: bool = True, http2: bool = False, **pool_options: Any) -> None:
        backend = AsyncNetworkBackend(ssl_ctx, tlsext_host_name=tlsext_host_name,
                                      check_hostname=check_hostname,
                                      ctx_configure_callback=ctx_configure_callback,
                                      ssl_configure_callback=ssl_configure_callback, alpn=_alpn(http1, http2))
        self._pool = httpcore.AsyncConnectionPool(network_backend=backend, http1=http1, http2=http2,
                                                  **_pool_options(limits, pool_options))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectError as exc:
            _cause_is_commssl(exc)
            raise
