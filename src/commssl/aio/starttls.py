"""STARTTLS on an ``AsyncSSLStream``: attaching SSL to a plain stream (and its
handshake), detaching it (close_notify both ways, keeping what the peer sent
before its close_notify and in clear after it). The public functions,
``attach_ssl_async`` and ``detach_ssl_async``, are in ``commssl.aio.functions``;
what a detach keeps is ``commssl.io.detach``'s, how its bytes are read
``commssl.io.readside``'s.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl.aio.events import StreamEvents
from commssl.errors import SSLClosed, SSLCondition, SSLError
from commssl.io.detach import DetachDrain
from commssl.io.policy import clear_bytes_rule
from commssl.io.readside import detach_read, send_close_notify
from commssl.io.state import OPEN


class StartTLS(StreamEvents):
    """``AsyncSSLStream``'s attach and detach."""

    def _check_attachable(self, buffered: str) -> None:
        clear_bytes_rule(len(self._rbuf), buffered, "attach_ssl_async")
        if self._tls.peer_closed or self._lost or self._tls.read_error is not None:
            raise SSLError("attach_ssl_async: the connection is closed", None)

    async def _attach_async(self, sslp: SSLPointer, owns: bool, own_ctx: Optional[SSLCtxPointer],
                            seconds: Optional[float]) -> None:
        """Attach and run the handshake; its failure (or a cancellation) leaves the
        stream failed and its socket closed: nothing more goes out in clear."""
        first = bytes(self._rbuf)  # buffered="tls": the start of the peer's handshake
        self._rbuf.clear()
        self._attach(sslp, owns, own_ctx)  # frees what new_ssl made when it fails
        done: "asyncio.Future[None]" = self._loop.create_future()

        def on_handshake(_: Any, exc: Optional[BaseException]) -> None:
            if not done.done():
                done.set_exception(exc) if exc is not None else done.set_result(None)

        self._on_handshake = on_handshake
        self._handshake_timeout = seconds
        try:
            self._start_handshake(first)
            self._maybe_resume_reading(force=True)
            await done
        except BaseException as exc:
            self._on_handshake = None
            if not done.done():
                done.cancel()
            elif not done.cancelled():
                done.exception()
            if self._handshaking:  # cancelled: fail the handshake (no plaintext path is left)
                self._handshake_failed(SSLCondition(f"handshake: {type(exc).__name__}", "cancelled"))
            raise
        finally:
            self._on_handshake = None

    async def _detach_async(self, seconds: float) -> None:
        tls = self._tls
        if tls.read_error is not None and tls.state == OPEN:
            raise tls.read_error
        ssl = tls.begin_detach("detach_ssl_async")
        if ssl is None:
            return
        keep = self._detach_keep = DetachDrain("detach_ssl_async", self._rbuf)
        self._detach_error = None
        self._detach_hold = ssl
        deadline = self._loop.time() + seconds
        try:
            self._maybe_resume_reading(force=True)
            self._detach_begin()
            await self._wait_until(
                lambda: self._detach_hold is None or self._detach_error is not None
                or tls.read_error is not None or self._lost, deadline)
            if self._detach_error is not None:
                raise self._detach_error
            if tls.read_error is not None:
                raise tls.read_error
            if self._detach_hold is not None:
                raise keep.no_answer("(the connection was lost)" if self._lost else f"within {seconds} s")
        finally:
            self._detach_hold = self._detach_keep = self._detach_error = None
            tls.end_detach()
            # the TLS end (close_notify) is not the end of the plain stream
            tls.peer_closed = self._tcp_eof
            self._pause_plain()

    def _pause_plain(self) -> None:
        """Plain again: read from the socket only when a read asks (AsyncSSLStream's docstring)."""
        if self._rbuf and not self._read_paused and self._transport is not None and not self._lost:
            self._read_paused = True
            self._transport.pause_reading()

    def _detach_begin(self) -> None:
        """Send our close_notify; then read what has arrived, toward the peer's."""
        try:
            if not send_close_notify(self._tls, "detach_ssl_async", held=self._detach_hold):
                self._detach_done()  # the peer's close_notify had come already: nothing more to read
                return
        except BaseException as exc:
            self._detach_failed(exc)
            return
        self._detach_step(b"", 0)

    def _detach_step(self, data: bytes, eof: int) -> None:
        """During a detach, after our close_notify: decrypt what arrived up to the
        peer's close_notify, then complete the shutdown (``readside.detach_read``);
        what follows the peer's is clear data."""
        ssl = self._detach_hold
        keep = self._detach_keep
        if ssl is None or keep is None or self._detach_error is not None:
            if data:  # complete (or refused, as detach_ssl): the peer's bytes are plain now
                self._rbuf += data
            if eof:
                self._tls.peer_closed = True
            self._pause_plain()
            self._wake()
            return
        try:
            result = detach_read(self._tls, ssl, keep, "detach_ssl_async", data, eof)
        except BaseException as exc:
            self._detach_failed(exc)
            return
        if isinstance(result, SSLClosed):  # too much: the detach's own refusal, what fit stays readable
            self._detach_error = result
        elif result:
            self._detach_done()
            return
        self._wake()

    def _detach_done(self) -> None:
        ssl, keep = self._detach_hold, self._detach_keep
        assert keep is not None
        keep.finish(ssl)
        self._detach_hold = None
        if self._tcp_eof:
            self._tls.peer_closed = True
        self._pause_plain()
        self._wake()

    def _detach_failed(self, exc: BaseException) -> None:
        """A TLS failure during the detach: raised by it, and by every later read."""
        if self._tls.read_error is None:
            self._tls.read_error = exc
        self._wake()
