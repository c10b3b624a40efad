"""httpx transports whose TLS is commssl's (``pip install commssl[httpx]``).

``HTTPTransport(ssl_ctx=...)`` for ``httpx.Client`` and ``AsyncHTTPTransport(
ssl_ctx=...)`` for ``httpx.AsyncClient`` (on asyncio or trio): drop-in
transports built on httpcore's pluggable network backends. The sync backend
connects a plain ``SocketStream`` and attaches SSL to it (``attach_ssl``); the
async one, on asyncio, connects a plain ``AsyncSSLStream`` and attaches SSL to it
(``attach_ssl_async``: commssl's asyncio protocol under httpcore, no anyio layer), and
on trio wraps an anyio TCP stream (``commssl.anyio.wrap``). So the handshake
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

from typing import Any, Iterable, List, Optional

from commssl._extras import missing_extra

try:
    import anyio  # noqa: F401  # the async backend's: its absence is the extra's to report
    import httpcore
    import httpx
except ModuleNotFoundError as _exc:  # without the extra: say how to get it
    raise missing_extra("commssl.httpx", "httpx", _exc) from _exc

from commssl._httpx_asyncio import AsyncNetworkBackend
from commssl._httpx_network import AsyncNetworkStream as AsyncNetworkStream
from commssl._httpx_network import NetworkBackend
from commssl._httpx_network import NetworkStream as NetworkStream
from commssl._httpx_network import SocketOption as SocketOption
from commssl._httpx_network import SSLObjectInfo as SSLObjectInfo
from commssl.io.connection import CtxCallback, SSLCallback

__all__ = ["AsyncHTTPTransport", "AsyncNetworkBackend", "HTTPTransport", "NetworkBackend"]


class _TLSSettings:
    """What commssl passes httpcore as its ``ssl_context``: httpcore only sets the
    ALPN protocols on it. The protocols offered are the transport's (``_Options.alpn``),
    most preferred first, which httpcore's list (``http/1.1`` first) is not."""

    def __init__(self) -> None:
        self.alpn_protocols: List[str] = []

    def set_alpn_protocols(self, protocols: Iterable[str]) -> None:
        self.alpn_protocols = list(protocols)


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


class _Transport:
    """What both transports are: a commssl network backend under httpcore's connection pool."""

    _backend_class: Any  # NetworkBackend or AsyncNetworkBackend
    _pool_class: Any  # httpcore's ConnectionPool or AsyncConnectionPool

    def __init__(self, ssl_ctx: Any = True, *, tlsext_host_name: Any = None,
                 ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
                 check_hostname: bool = True, limits: Optional[httpx.Limits] = None,
                 http1: bool = True, http2: bool = False, **pool_options: Any) -> None:
        backend = self._backend_class(ssl_ctx, tlsext_host_name=tlsext_host_name,
                                      check_hostname=check_hostname,
                                      ctx_configure_callback=ctx_configure_callback,
                                      ssl_configure_callback=ssl_configure_callback, alpn=_alpn(http1, http2))
        self._pool = self._pool_class(network_backend=backend, http1=http1, http2=http2,
                                      **_pool_options(limits, pool_options))


class HTTPTransport(_Transport, httpx.HTTPTransport):
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

    _backend_class = NetworkBackend
    _pool_class = httpcore.ConnectionPool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.ConnectError as exc:
            _cause_is_commssl(exc)
            raise


class AsyncHTTPTransport(_Transport, httpx.AsyncHTTPTransport):
    """An ``httpx.AsyncHTTPTransport`` whose TLS is commssl's, on asyncio (commssl's asyncio
    protocol) or trio (through anyio): ``httpx.AsyncClient(transport=AsyncHTTPTransport(ssl_ctx=ctx))``.
    Arguments as for ``HTTPTransport`` (``http2=True`` included)."""

    _backend_class = AsyncNetworkBackend
    _pool_class = httpcore.AsyncConnectionPool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectError as exc:
            _cause_is_commssl(exc)
            raise

