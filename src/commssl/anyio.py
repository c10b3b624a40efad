"""TLS over any anyio byte stream, so on asyncio and trio alike (``pip install commssl[anyio]``).

``await wrap(byte_stream, ssl_ctx=..., ssl_side=...)`` runs the handshake over
``byte_stream`` (a TCP stream, a STARTTLS connection after its clear preamble,
an in-memory stream pair...) and returns a ``TLSStream``: an
``anyio.abc.ByteStream`` whose ``send``/``receive`` carry application data, with
``.ssl``, accepted by every ``ssl_connection_*`` function. ``await connect(host,
port, ssl_ctx=...)`` opens the TCP connection too.

The connection core (``commssl._tls.TLSConnection``) drives OpenSSL over memory
BIOs, as for ``AsyncSSLStream``: verification modes, Python and C verify
callbacks (their exceptions come out of the await that drove the handshake),
host name checks, SNI and the failure mapping are those of every commssl
connection. This module only moves bytes between the core and the byte stream,
and waits the anyio way (so cancel scopes, ``anyio.fail_after`` and trio's
cancellation work, and cancelling a handshake leaves nothing behind).

A cancelled ``send`` never desynchronises the record stream. Records that the
byte stream has not been handed yet (the send was cancelled while another task
was sending) stay queued and go out first with the next ``send``, ``receive``
or ``aclose``. Records handed to the byte stream's ``send`` when that send is
cancelled (or fails) went out in part or not at all, and no anyio byte stream
says how much: the ``TLSStream`` is then broken, and every later ``send`` and
``receive`` raises ``anyio.BrokenResourceError`` (``aclose`` closes without
close_notify). A ``send`` in a scope already cancelled raises before it
encrypts anything.

One task may send while another receives. ``send_eof`` raises
``NotImplementedError``: commssl does not half-close TLS connections (as
anyio's own ``TLSStream``). ``aclose`` sends close_notify (without waiting for
the peer's) and closes the byte stream.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Tuple

from commssl._extras import missing_extra

try:
    import anyio
    import anyio.abc
    import anyio.lowlevel
except ModuleNotFoundError as _exc:  # without the extra: say how to get it
    raise missing_extra("commssl.anyio", "anyio", _exc) from _exc

from commssl._binding import ffi
from commssl._tls import (
    CLOSED,
    OP_HANDSHAKE,
    OP_SHUTDOWN,
    OP_WRITE,
    OPEN,
    STATE_NAMES,
    WANT_READ,
    ZERO_RETURN,
    TLSConnection,
    check_after_handshake,
    deadline,
    in_callback_error,
    timeout_arg,
)
from commssl.aio import _take
from commssl.connection import Connection, CtxCallback, SSLCallback, new_ssl
from commssl.errors import SSLClosed, SSLError, SSLHandshakeTimeout
from commssl.policy import check_hostname_arg

__all__ = ["TLSStream", "connect", "wrap"]

_NULL = ffi.NULL


def _noop() -> None:
    pass


class TLSStream(Connection, anyio.abc.ByteStream):
    """A TLS connection over an anyio byte stream (made by ``wrap`` or ``connect``).

    ``await send(data)``, ``await receive(max_bytes=65536)`` (``anyio.EndOfStream``
    after the peer's close_notify; a peer that closes without one raises
    ``SSLError``), ``await aclose()``; ``.ssl``, ``.ssl_ctx``, ``.ssl_side``,
    ``.transport_stream``; the byte stream's typed attributes (``extra``).
    """

    def __init__(self, transport_stream: anyio.abc.ByteStream, ssl_side: str) -> None:
        """Internal: use ``wrap`` or ``connect``."""
        self.transport_stream = transport_stream
        self._side = ssl_side
        self._tls = TLSConnection("TLSStream", _noop)  # the byte stream is closed by aclose()
        self._out = bytearray()  # what OpenSSL wrote, for the byte stream
        self._rbuf = bytearray()  # decrypted, not yet received
        self._send_lock = anyio.Lock()
        self._recv_lock = anyio.Lock()
        # The byte stream's send that was cancelled or failed with our records in hand:
        # an unknown part of them went out, so nothing may follow (see the module docstring).
        self._broken: Optional[BaseException] = None

    def __repr__(self) -> str:
        return f"<commssl.anyio.TLSStream {self._side} {STATE_NAMES[self._tls.state]}>"

    # -- accessors ------------------------------------------------------------------

    @property
    def ssl_side(self) -> str:
        """``"client"`` or ``"server"``."""
        return self._side

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.transport_stream.extra_attributes

    # -- moving bytes -------------------------------------------------------------------

    def _collect(self, view: memoryview) -> None:
        self._out += view

    async def _flush(self) -> None:
        """Send what OpenSSL wrote, in order (one sender at a time). The records
        leave ``_out`` only as the byte stream's send takes them: cancelled while
        waiting for the lock, they stay for the next flush. That send cancelled or
        failed: the stream is broken (``_broken``)."""
        if not self._out:
            return
        async with self._send_lock:
            while self._out:
                self._check_broken("send")  # another task's send broke it while we waited
                data = bytes(self._out)
                self._out.clear()
                try:
                    await self.transport_stream.send(data)
                except BaseException as exc:  # a cancellation included: how much went out is unknown
                    self._broken = exc
                    raise

    def _check_broken(self, what: str) -> None:
        exc = self._broken
        if exc is not None:
            raise anyio.BrokenResourceError(
                f"{what} on a TLSStream whose earlier send to the byte stream was interrupted "
                f"({type(exc).__name__}) with TLS records in hand: an unknown part of them went out, "
                "so the connection cannot go on; close it")

    async def _pull(self) -> Tuple[bytes, int]:
        """The next bytes from the byte stream: ``(data, eof)``."""
        try:
            return await self.transport_stream.receive(), 0
        except anyio.EndOfStream:
            return b"", 1
        except anyio.BrokenResourceError as exc:
            raise SSLError(f"read: the connection broke: {exc.__cause__ or exc}", None) from exc

    async def _handshake(self, due: Optional[float]) -> None:
        tls = self._tls
        data, eof = b"", 0
        while True:
            err = tls.mem_step(data, eof, OP_HANDSHAKE, _NULL, 0, "handshake")
            await self._flush()
            if err == 0:
                break
            if err != WANT_READ:  # the peer's close_notify during the handshake
                raise SSLClosed("handshake: the peer closed the TLS connection", "closed")
            if eof:
                raise SSLError("handshake: the peer closed the connection", None)
            data, eof = await self._pull()
        sslp = tls.sslp
        assert sslp is not None
        check_after_handshake(sslp, due)
        tls.handshake_done()

    # -- anyio.abc.ByteStream ----------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be an int, not {type(max_bytes).__name__}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
        self._check("receive")
        rbuf = self._rbuf
        while not rbuf:
            if self._tls.peer_closed:
                raise anyio.EndOfStream
            if self._tls.read_error is not None:
                raise self._tls.read_error
            async with self._recv_lock:
                if rbuf or self._tls.peer_closed or self._tls.read_error is not None:
                    continue
                data, eof = await self._pull()
                self._check("receive")
                try:
                    if self._tls.mem_decrypt(data, eof, rbuf) == ZERO_RETURN:
                        self._tls.peer_closed = True
                except BaseException as exc:  # what came before it is received first
                    self._tls.read_error = exc
            await self._flush()  # a read may answer (a TLS 1.3 key update)
        return _take(rbuf, max_bytes) if len(rbuf) > max_bytes else _take(rbuf, len(rbuf))

    async def send(self, item: Any) -> None:
        """Encrypt ``item`` and send the records (see the module docstring for a
        cancelled send)."""
        await anyio.lowlevel.checkpoint_if_cancelled()  # cancelled already: encrypt nothing
        self._check("send")
        if self._tls.read_error is not None and not self._tls.peer_closed:
            raise self._tls.read_error
        buf = ffi.from_buffer(item)  # TypeError for what is not bytes-like
        try:
            if len(buf):
                self._tls.mem_step(b"", 0, OP_WRITE, buf, len(buf), "write")
        finally:
            ffi.release(buf)  # let go of the caller's buffer now
        await self._flush()

    async def send_eof(self) -> None:
        raise NotImplementedError("commssl.anyio.TLSStream does not half-close TLS connections: "
                                  "use aclose()")

    async def aclose(self) -> None:
        """Send close_notify (best effort), close the byte stream, free the SSL.
        Closing again does nothing."""
        tls = self._tls
        if tls.state == CLOSED:
            return
        was_open = tls.state == OPEN
        try:
            if tls.start_closing() and was_open and self._tls.read_error is None and self._broken is None:
                with anyio.move_on_after(5, shield=True):
                    tls.mem_step(b"", 0, OP_SHUTDOWN, _NULL, 0, "close", closing=True)
                    await self._flush()
        except Exception:  # never raises for the peer: a failed close_notify is still a close
            pass
        finally:
            self._release()
            await anyio.aclose_forcefully(self.transport_stream)

    def _release(self) -> None:
        tls = self._tls
        tls.start_closing()
        ssl, _ = tls.begin_close()
        if ssl is not None:
            tls.end()

    def _check(self, what: str) -> None:
        state = self._tls.state
        if state > OPEN:
            raise anyio.ClosedResourceError(f"{what} on a closed TLSStream")
        self._check_broken(what)
        sslp = self._tls.sslp
        if sslp is not None and sslp.verifying is not None:
            raise in_callback_error(what)


async def wrap(
    byte_stream: anyio.abc.ByteStream,
    *,
    ssl_ctx: Any,
    ssl_side: str,
    server_hostname: Optional[str] = None,
    handshake_timeout: Optional[float] = None,
    tlsext_host_name: Any = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    check_hostname: bool = True,
) -> TLSStream:
    """Run the TLS handshake as ``ssl_side`` (``"client"`` or ``"server"``) over
    ``byte_stream`` and return the ``TLSStream``.

    ``ssl_ctx`` as for ``open_tcp_stream`` (client) or ``create_ssl_socket_stream``
    (server). On the client, ``server_hostname`` is the host for SNI and the
    name checked against the certificate (``tlsext_host_name`` as in
    ``open_tcp_stream`` overrides either). A client that verifies the server
    needs one of them (else ``ValueError`` naming ``server_hostname``, before
    any byte is sent), or ``check_hostname=False`` to check no name (the chain
    is still verified). A failure, a verify callback's own
    exception, ``handshake_timeout`` (``SSLHandshakeTimeout``) or a cancellation
    raise here, with the SSL freed and ``byte_stream`` closed.
    """
    if not isinstance(byte_stream, anyio.abc.ByteStream):
        raise TypeError(f"byte_stream must be an anyio ByteStream, not {type(byte_stream).__name__}")
    if ssl_side not in ("client", "server"):
        raise (ValueError if isinstance(ssl_side, str) else TypeError)(
            f"ssl_side must be 'client' or 'server', not {ssl_side!r}")
    if server_hostname is not None and not isinstance(server_hostname, str):
        raise TypeError(f"server_hostname must be a str or None, not {type(server_hostname).__name__}")
    seconds = timeout_arg(handshake_timeout, "handshake_timeout")
    sslp, owns, own_ctx = new_ssl(ssl_ctx, ssl_side, host=server_hostname, tlsext_host_name=tlsext_host_name,
                                  ctx_configure_callback=ctx_configure_callback,
                                  ssl_configure_callback=ssl_configure_callback,
                                  check_hostname=check_hostname, name_argument="server_hostname")
    stream = TLSStream(byte_stream, ssl_side)
    try:
        stream._tls.attach_mem(sslp, owns, own_ctx, ssl_side, stream, stream._collect)
        due = deadline(seconds)
        try:
            with anyio.fail_after(seconds):
                await stream._handshake(due)
        except TimeoutError:  # anyio's deadline (callbacks run synchronously: none was cut short)
            raise SSLHandshakeTimeout("handshake: timed out") from None
    except BaseException:
        stream._tls.fail()
        stream._release()
        await anyio.aclose_forcefully(byte_stream)
        raise
    return stream


async def connect(
    host: str,
    port: int,
    *,
    ssl_ctx: Any = True,
    tlsext_host_name: Any = None,
    handshake_timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None,
    ssl_configure_callback: SSLCallback = None,
    server_hostname: Optional[str] = None,
    check_hostname: bool = True,
    **connect_tcp_options: Any,
) -> TLSStream:
    """Connect to ``host:port`` with ``anyio.connect_tcp`` (``connect_tcp_options``:
    ``local_host``, ``happy_eyeballs_delay``; any other keyword is a
    ``TypeError``) and ``wrap`` as the client: ``server_hostname`` (default:
    ``host``) and ``tlsext_host_name`` give SNI and the name checked as for
    ``wrap``; ``check_hostname=False`` checks no name."""
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    for keyword in connect_tcp_options:
        if keyword not in _CONNECT_TCP_OPTIONS:
            # anyio's own tls=/ssl_context= would wrap the stream in a second TLS layer
            raise TypeError(f"commssl.anyio.connect() got an unexpected keyword argument {keyword!r} "
                            f"(it passes only {', '.join(_CONNECT_TCP_OPTIONS)} on to anyio.connect_tcp)")
    if server_hostname is not None and not isinstance(server_hostname, str):
        raise TypeError(f"server_hostname must be a str or None, not {type(server_hostname).__name__}")
    check_hostname_arg(check_hostname)
    timeout_arg(handshake_timeout, "handshake_timeout")  # refused before any I/O
    tcp = await anyio.connect_tcp(host, port, **connect_tcp_options)
    try:
        return await wrap(tcp, ssl_ctx=ssl_ctx, ssl_side="client",
                          server_hostname=host if server_hostname is None else server_hostname,
                          tlsext_host_name=tlsext_host_name, handshake_timeout=handshake_timeout,
                          ctx_configure_callback=ctx_configure_callback,
                          ssl_configure_callback=ssl_configure_callback, check_hostname=check_hostname)
    except BaseException:  # wrap refused its arguments before taking the stream over
        await anyio.aclose_forcefully(tcp)
        raise


#: The keywords ``connect`` passes on to ``anyio.connect_tcp`` (its TLS ones are commssl's business).
_CONNECT_TCP_OPTIONS = ("local_host", "happy_eyeballs_delay")

