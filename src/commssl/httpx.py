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

HTTP/1.1 only: commssl offers no ALPN yet, so HTTP/2 cannot be negotiated
(``http2=True`` is refused). Proxies are not supported by these transports.
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

import anyio
import anyio.abc
import httpcore
import httpx

import commssl.anyio as _tls_anyio
from commssl.connection import CtxCallback, SSLCallback, ssl_connection_protocol_version
from commssl.errors import SSLHandshakeTimeout
from commssl.policy import check_hostname_arg
from commssl.streams import SocketStream, attach_ssl

__all__ = ["AsyncHTTPTransport", "AsyncNetworkBackend", "HTTPTransport", "NetworkBackend"]

SocketOption = Union[Tuple[int, int, int], Tuple[int, int, Union[bytes, bytearray]],
                     Tuple[int, int, None, int]]

_VERSIONS = {"tls-v1-3": "TLSv1.3", "tls-v1-2": "TLSv1.2", "tls-v1-1": "TLSv1.1", "tls-v1": "TLSv1"}


class _TLSSettings:
    """What commssl passes httpcore as its ``ssl_context``: httpcore only sets the
    ALPN protocols on it (there is no ALPN in commssl yet: HTTP/1.1 is spoken)."""

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
        return None  # no ALPN yet

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
                 ssl_configure_callback: SSLCallback = None, check_hostname: bool = True) -> None:
        if ssl_ctx is None or ssl_ctx is False:
            raise TypeError("ssl_ctx must be True, 'default', an SSLCtxPointer or a client abstract context, "
                            f"not {ssl_ctx!r} (plain http:// URLs need no TLS settings)")
        self.ssl_ctx = ssl_ctx
        # the name checked is the origin's host (httpcore's server_hostname), as for a browser
        self.tls: Any = dict(tlsext_host_name=tlsext_host_name, ctx_configure_callback=ctx_configure_callback,
                             ssl_configure_callback=ssl_configure_callback,
                             check_hostname=check_hostname_arg(check_hostname))


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
                attach_ssl(self.stream, ssl_ctx=options.ssl_ctx, ssl_side="client", handshake_timeout=timeout,
                           _host=server_hostname, **options.tls)
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
            # wrap closes the byte stream when the handshake fails or is cancelled.
            # standard_compatible=False as httpcore's own anyio backend: HTTP frames its
            # messages, so a server's missing close_notify is an end, and closing waits for none.
            tls = await _tls_anyio.wrap(self.stream, ssl_ctx=options.ssl_ctx, ssl_side="client",
                                        server_hostname=server_hostname, handshake_timeout=timeout,
                                        standard_compatible=False, **options.tls)
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


def _pool_options(limits: Optional[httpx.Limits], pool_options: Any) -> Any:
    for name in ("verify", "cert", "proxy", "trust_env"):
        if name in pool_options:
            raise TypeError(f"{name}= does not apply to commssl's transports: TLS settings come from ssl_ctx"
                            + ("; proxies are not supported" if name == "proxy" else ""))
    if pool_options.pop("http2", False):
        raise ValueError("http2=True: commssl has no ALPN yet, so its transports speak HTTP/1.1 only")
    pool_options.pop("http1", None)
    limits = limits if limits is not None else httpx.Limits(max_connections=100, max_keepalive_connections=20)
    # httpcore only sets the ALPN protocols on its ssl_context: this stands in for it
    options: Any = dict(ssl_context=_TLSSettings(), http1=True, http2=False,
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
    """

    def __init__(self, ssl_ctx: Any = True, *, tlsext_host_name: Any = None,
                 ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
                 check_hostname: bool = True, limits: Optional[httpx.Limits] = None,
                 **pool_options: Any) -> None:
        backend = NetworkBackend(ssl_ctx, tlsext_host_name=tlsext_host_name,
                                 check_hostname=check_hostname,
                                 ctx_configure_callback=ctx_configure_callback,
                                 ssl_configure_callback=ssl_configure_callback)
        self._pool = httpcore.ConnectionPool(network_backend=backend, **_pool_options(limits, pool_options))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.ConnectError as exc:
            _cause_is_commssl(exc)
            raise


class AsyncHTTPTransport(httpx.AsyncHTTPTransport):
    """An ``httpx.AsyncHTTPTransport`` whose TLS is commssl's, on asyncio or trio
    (through anyio): ``httpx.AsyncClient(transport=AsyncHTTPTransport(ssl_ctx=ctx))``.
    Arguments as for ``HTTPTransport``."""

    def __init__(self, ssl_ctx: Any = True, *, tlsext_host_name: Any = None,
                 ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
                 check_hostname: bool = True, limits: Optional[httpx.Limits] = None,
                 **pool_options: Any) -> None:
        backend = AsyncNetworkBackend(ssl_ctx, tlsext_host_name=tlsext_host_name,
                                      check_hostname=check_hostname,
                                      ctx_configure_callback=ctx_configure_callback,
                                      ssl_configure_callback=ssl_configure_callback)
        self._pool = httpcore.AsyncConnectionPool(network_backend=backend,
                                                  **_pool_options(limits, pool_options))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectError as exc:
            _cause_is_commssl(exc)
            raise
