"""TLS over any anyio byte stream, so on asyncio and trio alike (``pip install commssl[anyio]``).

``await wrap(byte_stream, ssl_ctx=..., ssl_side=...)`` runs the handshake over
``byte_stream`` (a TCP stream, a STARTTLS connection after its clear preamble,
an in-memory stream pair...) and returns a ``TLSStream``: an
``anyio.abc.ByteStream`` whose ``send``/``receive`` carry application data, with
``.ssl``, accepted by every ``ssl_connection_*`` function. ``await connect(host,
port, ssl_ctx=...)`` opens the TCP connection too.

The connection core (``commssl.io.tls.TLSConnection``) drives OpenSSL over memory
BIOs, as for ``AsyncSSLStream``, and what the peer's bytes mean (data, the end,
the stored error) is decided for both in ``commssl.io.readside``. Verification
modes, Python and C verify callbacks (their exceptions come out of the await that drove the handshake),
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

One task may send while another receives.

anyio's conventions, as its own ``TLSStream`` (``anyio.streams.tls``): a TLS
failure during ``send``/``receive`` raises ``anyio.BrokenResourceError`` from
the commssl condition; the handshake raises the commssl condition itself (as
anyio raises ``ssl.SSLError``), except a peer that leaves mid-handshake
(``BrokenResourceError`` from ``SSLError``). ``standard_compatible``, ``unwrap``
and the closing handshake: ``commssl._anyio_conventions``; the ``TLSAttribute``
extras (``extra()``, on top of the byte stream's): ``commssl._anyio_extras``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from commssl._extras import missing_extra

try:
    import anyio
    import anyio.abc
    import anyio.lowlevel
except ModuleNotFoundError as _exc:  # without the extra: say how to get it
    raise missing_extra("commssl.anyio", "anyio", _exc) from _exc

from anyio.streams.tls import TLSAttribute

from commssl import _anyio_conventions as _conventions
from commssl._anyio_extras import tls_attributes
from commssl._core.args import side_arg
from commssl._core.binding import ffi
from commssl._core.callbacks import in_callback_error
from commssl.errors import SSLCondition, SSLError, SSLHandshakeTimeout
from commssl.io.connection import Connection, CtxCallback, SSLCallback, new_ssl
from commssl.io.handshake import check_after_handshake, release_new_ssl
from commssl.io.policy import check_hostname_arg
from commssl.io.readside import end_error, ended, feed, handshake_done, handshake_step, release, take
from commssl.io.timeouts import deadline, timeout_arg
from commssl.io.tls import OP_WRITE, TLSConnection

__all__ = ["TLSStream", "connect", "wrap"]

#: How long ``aclose`` waits for the peer's close_notify (``standard_compatible``).
DEFAULT_CLOSE_TIMEOUT = 5.0

# anyio >= 4.5: an uncontended lock does not yield to the event loop (every send and receive
# still waits on the byte stream, so nothing spins); about 5 % more handshakes on trio
# (docs/performance.md). An older anyio gets its plain lock.
_LOCK_ARGS: Dict[str, bool] = (
    {"fast_acquire": True} if "fast_acquire" in inspect.signature(anyio.Lock).parameters else {})


def _noop() -> None:
    pass


class TLSStream(Connection, anyio.abc.ByteStream):
    """A TLS connection over an anyio byte stream (made by ``wrap`` or ``connect``).

    ``await send(data)``, ``await receive(max_bytes=65536)`` (``anyio.EndOfStream``
    after the peer's close_notify), ``await aclose()``, ``await unwrap()``;
    ``.ssl``, ``.ssl_ctx``, ``.ssl_side``, ``.transport_stream``,
    ``.standard_compatible``; ``extra()`` with anyio's ``TLSAttribute`` extras
    and the byte stream's own.
    """

    def __init__(self, transport_stream: anyio.abc.AnyByteStream, ssl_side: str,
                 standard_compatible: bool = True, close_timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Internal: use ``wrap`` or ``connect``."""
        self.transport_stream = transport_stream
        self.standard_compatible = standard_compatible
        self._close_timeout = close_timeout
        self._side = ssl_side
        self._tls = TLSConnection("TLSStream", _noop)  # the byte stream is closed by aclose()
        self._out = bytearray()  # what OpenSSL wrote, for the byte stream
        self._rbuf = bytearray()  # decrypted, not yet received
        self._send_lock = anyio.Lock(**_LOCK_ARGS)
        self._recv_lock = anyio.Lock(**_LOCK_ARGS)
        # The byte stream's send that was cancelled or failed with our records in hand:
        # an unknown part of them went out, so nothing may follow (see the module docstring).
        self._broken: Optional[BaseException] = None
        self._ragged = False  # read_error is the peer's end of stream without close_notify
        self._unwrapped = False

    def __repr__(self) -> str:
        state = "unwrapped" if self._unwrapped else self._tls.state.value
        return f"<commssl.anyio.TLSStream {self._side} {state}>"

    # -- accessors ------------------------------------------------------------------

    @property
    def ssl_side(self) -> str:
        """``"client"`` or ``"server"``."""
        return self._side

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The byte stream's extras, and anyio's ``TLSAttribute`` ones (see ``commssl._anyio_extras``)."""
        return {**self.transport_stream.extra_attributes, **tls_attributes(self)}

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

    async def _send_alert(self) -> None:
        """After a failed handshake: send what OpenSSL wrote last (its alert), shielded and
        bounded by ``close_timeout``, so the peer learns why, as from the blocking and
        asyncio runtimes; a send that fails or does not finish in time is given up."""
        if self._out and self._broken is None:
            with anyio.move_on_after(self._close_timeout, shield=True):
                try:
                    await self._flush()
                except Exception:  # the peer left already: nothing more to tell it
                    pass

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
            return bytes(await self.transport_stream.receive()), 0
        except anyio.EndOfStream:
            return b"", 1
        except anyio.BrokenResourceError as exc:
            raise SSLError(f"read: the connection broke: {exc.__cause__ or exc}", None) from exc

    async def _handshake(self, due: Optional[float]) -> None:
        tls = self._tls
        data, eof = b"", 0
        while True:
            done = handshake_step(tls, data, eof)
            await self._flush()
            if done:
                break
            data, eof = await self._pull()
        sslp = tls.sslp
        assert sslp is not None
        check_after_handshake(sslp, due)
        handshake_done(tls, self._rbuf)  # a failure is stored: receive raises it after the data
        await self._flush()  # what that decrypt wrote: an alert for a bad record, say

    def _read_error(self, exc: BaseException) -> BaseException:
        """The stored error ``exc`` in anyio's terms: ``EndOfStream`` for a peer's end
        without close_notify when not ``standard_compatible``, else
        ``BrokenResourceError`` from the commssl condition."""
        if self._ragged and not self.standard_compatible:
            return anyio.EndOfStream()
        return _conventions.broken(exc)

    # -- anyio.abc.ByteStream ----------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be an int, not {type(max_bytes).__name__}")
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")  # anyio's words
        self._check("receive")
        tls = self._tls
        rbuf = self._rbuf
        while not rbuf:
            if ended(tls):
                error = end_error(tls)
                if error is None:
                    raise anyio.EndOfStream
                raise self._read_error(error)
            async with self._recv_lock:
                if rbuf or ended(tls):
                    continue
                data, eof = await self._pull()
                self._check("receive")
                exc = feed(tls, data, eof, rbuf)  # what came before a failure is received first
                if exc is not None:
                    self._ragged = bool(eof) and type(exc) is SSLError
            await self._flush()  # a read may answer (a TLS 1.3 key update)
        return take(rbuf, min(len(rbuf), max_bytes))

    async def send(self, item: Any) -> None:
        """Encrypt ``item`` and send the records (see the module docstring for a
        cancelled send)."""
        await anyio.lowlevel.checkpoint_if_cancelled()  # cancelled already: encrypt nothing
        self._check("send")
        error = end_error(self._tls)
        if error is not None and not self._ragged:
            raise _conventions.broken(error)
        buf = ffi.from_buffer(item)  # TypeError for what is not bytes-like
        try:
            if len(buf):
                self._tls.mem_step(b"", 0, OP_WRITE, buf, len(buf), "write")
        except SSLCondition as exc:
            raise _conventions.broken(exc) from exc
        finally:
            ffi.release(buf)  # let go of the caller's buffer now
        await self._flush()

    async def send_eof(self) -> None:
        """Not supported (TLS has no half-close): ``NotImplementedError``, in anyio's words."""
        try:
            version = self.extra(TLSAttribute.tls_version, None)
        except Exception:  # closed: the SSL is gone, and the answer is the same refusal
            version = None
        raise _conventions.send_eof_error(version)

    async def unwrap(self) -> Tuple[anyio.abc.AnyByteStream, bytes]:
        """Do the closing handshake and return ``(byte stream, unread bytes)``, as
        anyio's: the byte stream stays open (go on in clear), the ``TLSStream`` is
        closed. No time limit: use ``anyio.fail_after``. Details and errors:
        ``commssl._anyio_conventions.unwrap``."""
        return await _conventions.unwrap(self)

    async def aclose(self) -> None:
        """Close; with ``standard_compatible``, send close_notify and wait (at most
        ``close_timeout`` seconds) for the peer's: a peer that ends the stream
        without one raises ``BrokenResourceError`` once all is closed, as anyio's
        ``aclose``. Closing again (or after ``unwrap``) does nothing."""
        await _conventions.close(self)

    def _check(self, what: str) -> None:
        state = self._tls.state
        if not state.usable or self._unwrapped:
            raise anyio.ClosedResourceError(f"{what} on a closed TLSStream")
        self._check_broken(what)
        sslp = self._tls.sslp
        if sslp is not None and sslp.verifying is not None:
            raise in_callback_error(what)


async def wrap(
    byte_stream: anyio.abc.AnyByteStream,
    *,
    ssl_ctx: Any,
    ssl_side: str,
    server_hostname: Optional[str] = None,
    handshake_timeout: Optional[float] = None,
    tlsext_host_name: Any = None,
    ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
    check_hostname: bool = True,
    standard_compatible: bool = True,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
) -> TLSStream:
    """Run the TLS handshake as ``ssl_side`` (``"client"`` or ``"server"``) over
    ``byte_stream`` (an anyio ``ByteStream``, or an ``ObjectStream`` of bytes such
    as a stapled pair of memory object streams) and return the ``TLSStream``.

    ``ssl_ctx`` as for ``open_tcp_stream`` (client) or ``create_ssl_socket_stream``
    (server). On the client, ``server_hostname`` is the host for SNI and the
    name checked against the certificate (``tlsext_host_name`` as in
    ``open_tcp_stream`` overrides either). A client that verifies the server
    needs one of them (else ``ValueError`` naming ``server_hostname``, before
    any byte is sent), or ``check_hostname=False`` to check no name (the chain
    is still verified). ``standard_compatible`` and ``close_timeout`` (how long
    ``aclose`` waits for the peer's close_notify): see the module docstring.

    A failure (the commssl condition: ``SSLVerificationFailure``...), a verify
    callback's own exception, ``handshake_timeout`` (``SSLHandshakeTimeout``), a
    peer that leaves (``anyio.BrokenResourceError`` from ``SSLError``) or a
    cancellation raise here, with the SSL freed and ``byte_stream`` closed.
    """
    _conventions.byte_stream_arg(byte_stream)
    side_arg(ssl_side, ("client", "server"))
    if server_hostname is not None and not isinstance(server_hostname, str):
        raise TypeError(f"server_hostname must be a str or None, not {type(server_hostname).__name__}")
    compatible = _conventions.standard_compatible_arg(standard_compatible)
    seconds = timeout_arg(handshake_timeout, "handshake_timeout")
    linger = timeout_arg(close_timeout, "close_timeout")
    sslp, owns, own_ctx = new_ssl(ssl_ctx, ssl_side, host=server_hostname, tlsext_host_name=tlsext_host_name,
                                  ctx_configure_callback=ctx_configure_callback,
                                  ssl_configure_callback=ssl_configure_callback,
                                  check_hostname=check_hostname, name_argument="server_hostname")
    try:
        stream = TLSStream(byte_stream, ssl_side, compatible,
                           DEFAULT_CLOSE_TIMEOUT if linger is None else linger)
    except BaseException:  # an SSLPointer passed in is given back (its claim), a new one freed
        release_new_ssl(sslp, owns, own_ctx)
        raise
    try:
        stream._tls.attach_mem(sslp, owns, own_ctx, ssl_side, stream, stream._collect)
        due = deadline(seconds)
        try:
            with anyio.fail_after(seconds):
                await stream._handshake(due)
        except TimeoutError:  # anyio's deadline (callbacks run synchronously: none was cut short)
            raise SSLHandshakeTimeout("handshake: timed out") from None
    except BaseException as exc:
        stream._tls.fail()
        release(stream._tls)
        await stream._send_alert()
        await anyio.aclose_forcefully(byte_stream)
        if type(exc) is SSLError:  # the peer left, or the byte stream broke (anyio: BrokenResourceError)
            raise _conventions.broken(exc) from exc
        raise
    return stream


async def connect(
    host: str,
    port: int,
    *,
    ssl_ctx: Any = True,
    tlsext_host_name: Any = None,
    handshake_timeout: Optional[float] = None,
    ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
    server_hostname: Optional[str] = None,
    check_hostname: bool = True,
    standard_compatible: bool = True,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    **connect_tcp_options: Any,
) -> TLSStream:
    """Connect to ``host:port`` with ``anyio.connect_tcp`` (``connect_tcp_options``:
    ``local_host``, ``happy_eyeballs_delay``; any other keyword is a
    ``TypeError``) and ``wrap`` as the client: ``server_hostname`` (default:
    ``host``) and ``tlsext_host_name`` give SNI and the name checked as for
    ``wrap``; ``check_hostname=False`` checks no name; ``standard_compatible``
    and ``close_timeout`` as for ``wrap``."""
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
    _conventions.standard_compatible_arg(standard_compatible)
    timeout_arg(handshake_timeout, "handshake_timeout")  # refused before any I/O
    timeout_arg(close_timeout, "close_timeout")
    tcp = await anyio.connect_tcp(host, port, **connect_tcp_options)
    try:
        return await wrap(tcp, ssl_ctx=ssl_ctx, ssl_side="client",
                          server_hostname=host if server_hostname is None else server_hostname,
                          tlsext_host_name=tlsext_host_name, handshake_timeout=handshake_timeout,
                          ctx_configure_callback=ctx_configure_callback,
                          ssl_configure_callback=ssl_configure_callback, check_hostname=check_hostname,
                          standard_compatible=standard_compatible, close_timeout=close_timeout)
    except BaseException:  # wrap refused its arguments before taking the stream over
        await anyio.aclose_forcefully(tcp)
        raise


#: The keywords ``connect`` passes on to ``anyio.connect_tcp`` (its TLS ones are commssl's business).
_CONNECT_TCP_OPTIONS = ("local_host", "happy_eyeballs_delay")
