"""The httpx async backend's connections on asyncio: commssl's asyncio protocol
(``commssl.aio.AsyncSSLStream``) under httpcore directly. On trio the backend goes through
anyio (``commssl._httpx_network``).

Why not anyio on asyncio too: each anyio call is a checkpoint, a lock or a cancel scope,
so a request cost several turns of the event loop more than httpx's own transport. Here a
write queues its records on the transport at once (``drain`` waits only while the transport
is paused), a read waits only when nothing is buffered, and a timer is armed only for a
wait. The connection is made plain (``connect_tcp``) and TLS attached to it
(``start_tls``), as httpcore asks: STARTTLS on the ``AsyncSSLStream``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar

import httpcore

from commssl._httpx_network import (
    _OTHER,
    AnyioNetworkBackend,
    SocketOption,
    _mapped,
    _Options,
    _readable,
    stream_extra,
)
from commssl.aio import AsyncSSLStream, attach_ssl_async
from commssl.aio.events import Protocol
from commssl.errors import SSLError

T = TypeVar("T")
_timeout: Any = getattr(asyncio, "timeout", None)  # Python 3.11+: lighter than wait_for's task


async def _within(aw: Awaitable[T], seconds: Optional[float]) -> T:
    if seconds is None:
        return await aw
    if _timeout is not None:
        async with _timeout(seconds):
            return await aw
    return await asyncio.wait_for(aw, seconds)


def on_asyncio() -> bool:
    """Whether this task runs on an asyncio event loop (not trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class AsyncioNetworkStream(httpcore.AsyncNetworkStream):
    """A TCP connection for httpcore on asyncio: an ``AsyncSSLStream``, plain until
    ``start_tls`` attaches SSL (the asyncio side of ``AsyncNetworkStream``)."""

    def __init__(self, stream: AsyncSSLStream, options: _Options) -> None:
        self.stream = stream
        self._options = options

    async def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        stream = self.stream
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            try:
                if timeout is not None and not stream._rbuf and not stream._ended():
                    await self._arrival(timeout)
                return await stream.read(max_bytes)
            except SSLError as exc:
                # the peer's end without close_notify: an end for HTTP, which frames its messages
                # (as httpcore's anyio backend, standard_compatible=False)
                if type(exc) is SSLError and exc is stream._tls.read_error and exc.__cause__ is None:
                    return b""
                raise

    async def _arrival(self, timeout: float) -> None:
        """Wait for data or the end, at most ``timeout`` seconds (``TimeoutError``): one timer
        on the stream's own wait, lighter than a timeout scope around the read."""
        stream = self.stream
        stream._maybe_resume_reading(force=True)  # a plain stream reads only when asked

        def arrived() -> bool:
            return bool(stream._rbuf) or stream._ended()

        await stream._wait_until(arrived, stream._loop.time() + timeout)
        if not arrived():
            raise TimeoutError("read: timed out")

    async def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        if not buffer:
            return
        stream = self.stream
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            stream.write(buffer)
            if stream._write_paused:  # drain waits only then
                await _within(stream.drain(), timeout)

    async def aclose(self) -> None:
        # close_notify sent, none awaited (HTTP frames its messages), as httpcore's own backend
        await self.stream.close(0)

    async def start_tls(self, ssl_context: Any, server_hostname: Optional[str] = None,
                        timeout: Optional[float] = None) -> "AsyncioNetworkStream":
        options, stream = self._options, self.stream
        try:
            with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError, handshake=True):
                options.offer()
                stream._host = server_hostname  # the name for SNI and the check, as wrap's
                await attach_ssl_async(stream, ssl_ctx=options.ssl_ctx, ssl_side="client",
                                       handshake_timeout=timeout, **options.tls)
                options.check(stream)
        except BaseException:
            await stream.close(0)
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        got = stream_extra(self.stream, info, plain=False)
        if got is not _OTHER:
            return got
        stream = self.stream
        if info == "is_readable":
            return bool(stream._rbuf) or stream._lost or stream._ended() or _readable(
                stream.get_extra_info("socket"))
        if info == "socket":
            return stream.get_extra_info("socket")
        if info == "client_addr":
            return stream.get_extra_info("sockname")
        if info == "server_addr":
            return stream.get_extra_info("peername")
        return None


async def connect(connecting: Callable[[Callable[[], Protocol]], Awaitable[Any]], options: _Options,
                  host: Optional[str], timeout: Optional[float],
                  socket_options: Optional[Iterable[SocketOption]]) -> AsyncioNetworkStream:
    """A plain ``AsyncSSLStream`` connected by ``connecting(protocol_factory)`` (the loop's
    ``create_connection`` or ``create_unix_connection``), with the socket options set."""
    stream = AsyncSSLStream(asyncio.get_running_loop(), "client")
    stream._host = host
    try:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            await _within(connecting(lambda: Protocol(stream)), timeout)
            sock = stream.get_extra_info("socket")
            for option in socket_options or ():
                sock.setsockopt(*option)
    except BaseException:
        stream._release()
        raise
    return AsyncioNetworkStream(stream, options)


class AsyncNetworkBackend(AnyioNetworkBackend):
    """httpcore's async network backend with commssl's TLS (see ``AsyncHTTPTransport``): on
    asyncio, commssl's asyncio protocol (``AsyncSSLStream``) directly; on trio, through anyio."""

    async def connect_tcp(
            self, host: str, port: int, timeout: Optional[float] = None, local_address: Optional[str] = None,
            socket_options: Optional[Iterable[SocketOption]] = None) -> httpcore.AsyncNetworkStream:
        if not on_asyncio():
            return await super().connect_tcp(host, port, timeout, local_address, socket_options)
        loop = asyncio.get_running_loop()
        source = None if local_address is None else (local_address, 0)
        return await connect(lambda factory: loop.create_connection(factory, host, port, local_addr=source),
                             self.options, host, timeout, socket_options)

    async def connect_unix_socket(
            self, path: str, timeout: Optional[float] = None,
            socket_options: Optional[Iterable[SocketOption]] = None) -> httpcore.AsyncNetworkStream:
        if not on_asyncio():
            return await super().connect_unix_socket(path, timeout, socket_options)
        loop = asyncio.get_running_loop()
        return await connect(lambda factory: loop.create_unix_connection(factory, path), self.options, None,
                             timeout, socket_options)
