"""httpcore network backends whose TLS is commssl's: the connections ``commssl.httpx``'s
transports make (a ``SocketStream`` with ``attach_ssl`` for the sync one, an anyio byte
stream with ``commssl.anyio.wrap`` for the async one on trio; on asyncio:
``commssl._httpx_asyncio``), the ALPN offer set on each, and the mapping of their errors
to httpcore's.
"""

from __future__ import annotations

import asyncio
import select
import socket
import sys
import time
from typing import Any, Dict, Iterable, Optional, Tuple, Type, Union

import anyio
import anyio.abc
import httpcore

import commssl.anyio as _tls_anyio
from commssl._core.pointers import SSLPointer
from commssl.config.abstract import SSLAbstractContext
from commssl.config.features import set_alpn_protocols, ssl_connection_alpn_protocol
from commssl.errors import SSLHandshakeTimeout
from commssl.io.connection import CtxCallback, SSLCallback, ssl_connection_protocol_version
from commssl.io.policy import check_hostname_arg
from commssl.streams import SocketStream, attach_ssl

SocketOption = Union[Tuple[int, int, int], Tuple[int, int, Union[bytes, bytearray]],
                     Tuple[int, int, None, int]]

_VERSIONS = {"tls-v1-3": "TLSv1.3", "tls-v1-2": "TLSv1.2", "tls-v1-1": "TLSv1.1", "tls-v1": "TLSv1"}


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


_TIMEOUTS = (TimeoutError, asyncio.TimeoutError, SSLHandshakeTimeout)  # wait_for's, before 3.11


_OTHER: Any = object()


def stream_extra(stream: Any, info: str, plain: bool) -> Any:
    """The TLS extras every commssl network stream answers alike (``_OTHER`` for the rest):
    ``ssl_object``, and ``commssl`` (the stream; with ``plain``, before TLS too)."""
    if info == "ssl_object":
        return SSLObjectInfo(stream) if stream.ssl is not None else None
    if info == "commssl":
        return stream if plain or stream.ssl is not None else None
    return _OTHER


class _Mapped:
    """Maps errors to httpcore's: a handshake's every error is a connect error. A class, not
    a generator (each read and write of a request goes through one); it keeps no state, so
    one per kind serves every connection (``_mapped``)."""

    __slots__ = ("timeout_exc", "error_exc", "errors")

    def __init__(self, timeout_exc: Type[Exception], error_exc: Type[Exception], handshake: bool) -> None:
        self.timeout_exc = timeout_exc
        self.error_exc = error_exc
        self.errors: Tuple[Type[BaseException], ...] = (
            (Exception,) if handshake else (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError))

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Optional[BaseException], tb: Any) -> None:
        if exc is None:
            return
        if isinstance(exc, _TIMEOUTS):
            raise self.timeout_exc(str(exc) or "timed out") from exc
        if isinstance(exc, self.errors):
            error = self.error_exc(str(exc) or type(exc).__name__)
            error._commssl_cause = exc  # type: ignore[attr-defined] # httpcore's pool drops __cause__
            raise error from exc


_KINDS: Dict[Tuple[Type[Exception], Type[Exception], bool], _Mapped] = {}


def _mapped(timeout_exc: Type[Exception], error_exc: Type[Exception], handshake: bool = False) -> _Mapped:
    key = (timeout_exc, error_exc, handshake)
    kind = _KINDS.get(key)
    if kind is None:
        kind = _KINDS[key] = _Mapped(timeout_exc, error_exc, handshake)
    return kind


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
        stream = self.stream
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            if stream.timeout != timeout:
                stream.timeout = timeout
            return stream.read1(max_bytes)

    def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        if not buffer:
            return
        stream = self.stream
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            if stream.timeout != timeout:
                stream.timeout = timeout
            stream.write(buffer)

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
        got = stream_extra(self.stream, info, plain=True)
        if got is not _OTHER:
            return got
        stream = self.stream
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


class AnyioNetworkBackend(_Configured, httpcore.AsyncNetworkBackend):
    """httpcore's async network backend through anyio, with commssl's TLS: trio's
    (``commssl._httpx_asyncio.AsyncNetworkBackend`` takes asyncio's connections)."""


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

    async def connect_tcp(
            self, host: str, port: int, timeout: Optional[float] = None, local_address: Optional[str] = None,
            socket_options: Optional[Iterable[SocketOption]] = None) -> httpcore.AsyncNetworkStream:
        return await self._stream(anyio.connect_tcp(host, port, local_host=local_address), timeout,
                                  socket_options)

    async def connect_unix_socket(
            self, path: str, timeout: Optional[float] = None,
            socket_options: Optional[Iterable[SocketOption]] = None) -> httpcore.AsyncNetworkStream:
        return await self._stream(anyio.connect_unix(path), timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

