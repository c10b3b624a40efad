"""``AsyncSSLStream``: an SSL connection on an asyncio event loop (LispWorks
``async-io-state``), its reading, writing and closing. Its event plumbing and flow
control: ``commssl.aio.events``; ``readuntil``/``readline``: ``commssl.aio.lines``;
STARTTLS: ``commssl.aio.starttls``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from commssl._core.binding import ffi
from commssl.aio.lines import Lines
from commssl.aio.starttls import StartTLS
from commssl.errors import SSLClosed
from commssl.io.readside import end_error, ended, send_close_notify, take
from commssl.io.state import OPEN, PLAIN
from commssl.io.timeouts import timeout_arg
from commssl.io.tls import OP_WRITE

#: How long ``close()`` waits for the peer's close_notify and for the socket to close.
DEFAULT_CLOSE_TIMEOUT = 5.0


class AsyncSSLStream(Lines, StartTLS):
    """An SSL connection on an asyncio event loop (LispWorks ``async-io-state``).

    Made by ``open_tcp_stream_async`` (client) and ``start_ssl_server``
    (server), with the handshake complete. ``await read(n=-1)``,
    ``await readexactly(n)``, ``await readline()``, ``await readuntil(separator)``,
    ``write(data)``, ``await drain()``,
    ``await close()``; ``async with`` closes it. Every ``ssl_connection_*``
    function and ``peer_certificates()`` accept it.

    At a clean end of stream (the peer's close_notify) ``read`` returns
    ``b""``; a peer that closes without close_notify raises ``SSLError``.

    Made with ``ssl_ctx=None``, the stream is plain TCP (``.ssl`` is
    ``None``) until ``attach_ssl_async`` (STARTTLS), and again after
    ``detach_ssl_async``. While plain it reads from the socket only when a
    read needs more, so what the peer sends once the application stops
    reading (a TLS ClientHello after a STARTTLS reply) waits in the socket for
    OpenSSL.
    """

    def __repr__(self) -> str:
        state = self._tls.state.value
        peer = self.get_extra_info("peername")
        return f"<AsyncSSLStream {self._side} {state}{f' peer={peer}' if peer else ''}>"

    # -- accessors ------------------------------------------------------------

    @property
    def ssl_side(self) -> str:
        """``"client"`` or ``"server"``."""
        return self._side

    @property
    def transport(self) -> Optional[asyncio.Transport]:
        """The TCP transport under the TLS connection."""
        return self._transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info (``"peername"``, ``"sockname"``, ``"socket"``...)."""
        t = self._transport
        return default if t is None else t.get_extra_info(name, default)

    # -- reading ----------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``n < 0``: everything until the end of stream);
        ``b""`` at a clean end of stream. A peer that closes without
        close_notify, or a failure, raises once the buffered data is read."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        self._check_open("read")
        if n == 0:
            return b""
        rbuf = self._rbuf
        if n < 0:
            while not self._ended():
                self._maybe_resume_reading(force=True)
                await self._wait()
            error = self._end_error()
            if error is not None:  # the data before it stays for a read(n)
                raise error
            data = bytes(rbuf)
            rbuf.clear()
            self._maybe_resume_reading()
            return data
        while not rbuf and not self._ended():
            self._maybe_resume_reading(force=True)
            await self._wait()
        if rbuf:
            if len(rbuf) <= n:
                data = bytes(rbuf)
                rbuf.clear()
            else:
                data = take(rbuf, n)
            self._maybe_resume_reading()
            return data
        error = self._end_error()
        if error is not None:
            raise error
        return b""

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; at the end of stream before that,
        ``asyncio.IncompleteReadError`` with the partial data (as ``StreamReader``)."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        self._check_open("readexactly")
        rbuf = self._rbuf
        while len(rbuf) < n:
            if self._ended():
                raise self._incomplete(n)
            self._maybe_resume_reading(force=True)  # n may exceed the limit
            await self._wait()
        data = take(rbuf, n)
        self._maybe_resume_reading()
        return data

    # -- writing ----------------------------------------------------------------

    def write(self, data: Any) -> None:
        """Encrypt ``data`` (bytes-like) and queue it on the transport; ``await
        drain()`` to wait while the transport's buffer is full."""
        if isinstance(data, str):
            raise TypeError("data must be a bytes-like object, not str")
        self._check_open("write")
        if self._lost or self._tls.read_error is not None:
            if self._tls.read_error is not None:
                raise self._tls.read_error
            raise SSLClosed("write: the connection is closed", "closed")
        if self._tls.state == PLAIN:
            self._write_plain(data)
            return
        buf = ffi.from_buffer(data)  # TypeError for what is not bytes-like
        try:
            if len(buf):
                self._tls.mem_step(b"", 0, OP_WRITE, buf, len(buf), "write")
        finally:
            # Let go of the caller's buffer now: an exception kept in a reference
            # cycle would otherwise hold it exported until the GC, which crashes.
            ffi.release(buf)

    def _write_plain(self, data: Any) -> None:
        tls = self._tls
        ssl = tls.begin("write")
        try:
            if ssl is not None:  # cannot happen on the loop's thread: attach needs the connection
                raise ValueError("write: SSL was attached to the AsyncSSLStream meanwhile")
            payload = bytes(memoryview(data))  # TypeError for what is not bytes-like
            if payload and self._transport is not None:
                self._transport.write(payload)
        finally:
            if ssl is None:
                tls.end_plain()
            else:
                tls.end()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        self._check_open("drain")
        if self._lost:
            error = end_error(self._tls)
            if error is not None:
                raise error
            raise SSLClosed("drain: the connection is closed", "closed")
        if self._write_paused:
            fut = self._loop.create_future()
            self._drainers.append(fut)
            await fut

    # -- closing ------------------------------------------------------------------

    async def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Shut TLS down cleanly: send close_notify, wait (at most ``timeout``
        seconds) for the peer's, close the socket (dropping what a peer that
        does not read left queued after at least half a second more), and free
        the SSL. Never raises for a peer that is gone or silent. Unread data is
        dropped. Closing again does nothing."""
        seconds = timeout_arg(timeout, "timeout") or 0.0
        tls = self._tls
        was_open = tls.state == OPEN
        if not tls.start_closing():
            return
        self._rbuf.clear()  # unread data is dropped, as by a socket close
        self._wake()
        transport = self._transport
        deadline = self._loop.time() + seconds
        try:
            if was_open and transport is not None and not self._lost and tls.read_error is None:
                if self._read_paused:
                    self._read_paused = False
                    transport.resume_reading()
                if send_close_notify(tls, "close"):
                    await self._wait_until(lambda: ended(tls) or self._lost, deadline)
            if transport is not None and not self._lost:
                transport.close()  # sends what is queued first; half a second more for that at least
                await self._wait_until(lambda: self._lost, max(deadline, self._loop.time() + 0.5))
        except Exception:  # never raises for the peer: a failed close_notify is still a close
            pass
        finally:
            self._release()

    async def __aenter__(self) -> "AsyncSSLStream":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
