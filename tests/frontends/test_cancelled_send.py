"""A cancelled send never desynchronises the TLS record stream.

The peer is CPython ``ssl`` (``peers.cpython_tls_server``) that does not read until told,
so a large send blocks (the client's socket send buffer is made small); the send is
cancelled (``anyio.move_on_after`` / ``asyncio.wait_for``), more is sent, then the peer
reads everything. What it decrypts must be a prefix of what was sent, in order, ending
without a record error (no ``bad_record_mac``), and every send that returned normally
must have arrived.

``commssl.anyio.TLSStream`` on both anyio backends: a send cancelled inside the byte
stream's send breaks the stream (every later call raises ``BrokenResourceError``).
``AsyncSSLStream``: ``write`` hands every record to the asyncio transport at once and
``drain`` only waits, so a cancelled drain loses nothing and the stream goes on.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import Any, List, Optional, Tuple

import pytest

import commssl
import peers
from peers import HOST, PKI

anyio = pytest.importorskip("anyio")
pytest.importorskip("trio")

import commssl.anyio as tls_anyio  # noqa: E402

BIG = 2 * 1024 * 1024  # far more than the socket buffers hold while the peer does not read


def _chunk(tag: int, size: int) -> bytes:
    """Distinct, position-dependent bytes: a lost or repeated piece shows in a comparison."""
    pattern = bytes((tag * 7 + i) % 251 for i in range(251))
    return (pattern * (size // 251 + 1))[:size]


class SlowPeer:
    """A handler for ``cpython_tls_server``: reads nothing until ``resume`` is set, then
    everything to the end; ``result`` is (the decrypted bytes, the exception that ended the
    reading or None at a clean close_notify)."""

    def __init__(self) -> None:
        self.resume = threading.Event()
        self.done = threading.Event()
        self.result: Optional[Tuple[bytes, Optional[BaseException]]] = None

    def __call__(self, tls: ssl.SSLSocket) -> None:
        got = bytearray()
        error: Optional[BaseException] = None
        try:
            self.resume.wait(20)
            while chunk := tls.recv(1 << 20):
                got += chunk
        except (OSError, ssl.SSLError) as exc:
            error = exc
        finally:
            self.result = (bytes(got), error)
            self.done.set()

    def received(self) -> Tuple[bytes, Optional[BaseException]]:
        assert self.done.wait(20), "the peer never finished reading"
        assert self.result is not None
        return self.result


def _check_peer(peer: SlowPeer, attempted: bytes, delivered: bytes, clean: bool) -> bytes:
    """The peer's plaintext is a prefix of ``attempted`` that holds ``delivered`` (the sends
    that returned normally) and ends cleanly or at a cut (EOF, reset), never at a bad record."""
    got, error = peer.received()
    if error is not None:
        assert isinstance(error, (ssl.SSLEOFError, ConnectionResetError)) or not isinstance(
            error, ssl.SSLError), f"the peer's TLS failed: {error!r}"
        assert "BAD_RECORD_MAC" not in str(error) and "bad record mac" not in str(error).lower()
    if clean:
        assert error is None, error
    assert attempted.startswith(got), (len(got), len(attempted))
    assert got.startswith(delivered), (len(got), len(delivered))
    return got


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_cancelled_send_breaks_the_stream_and_desynchronises_nothing(
        backend: str, pki: PKI, client_ctx: Any) -> None:
    """hello (sent), 2 MiB cancelled after 0.3 s, 64 KiB cancelled after 0.3 s, then the peer
    reads and a last line is sent: without the fix the later sends return normally and the
    peer meets bad_record_mac (records it never got were skipped); with it they raise
    ``BrokenResourceError`` (and so does ``receive``), and the peer's data is a clean prefix."""
    peer = SlowPeer()
    cctx = client_ctx()
    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=peer) as server:
        attempted = bytearray()
        delivered = bytearray()
        outcomes: List[str] = []

        async def send(data: bytes, seconds: float) -> None:
            attempted.extend(data)
            try:
                with anyio.move_on_after(seconds) as scope:
                    await stream.send(data)
            except anyio.BrokenResourceError:
                outcomes.append("broken")
                del attempted[len(attempted) - len(data):]  # refused before it encrypted anything
                return
            if scope.cancelled_caught:
                outcomes.append("cancelled")
            else:
                outcomes.append("sent")
                if len(delivered) == len(attempted) - len(data):
                    delivered.extend(data)  # every send before it returned too

        async def main() -> None:
            nonlocal stream
            stream = await tls_anyio.connect(HOST, server.port, ssl_ctx=cctx, tlsext_host_name="localhost")
            raw = stream.transport_stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            try:
                await send(b"hello\n", 10)
                await send(_chunk(1, BIG), 0.3)
                await send(_chunk(2, 65536), 0.3)
                peer.resume.set()
                await send(b"the last line\n", 10)
                if "broken" in outcomes:
                    with pytest.raises(anyio.BrokenResourceError):
                        await stream.receive()
            finally:
                peer.resume.set()
                await stream.aclose()

        stream: Any = None
        anyio.run(main, backend=backend)
        assert outcomes[:2] == ["sent", "cancelled"], outcomes  # the big send did block
        _check_peer(peer, bytes(attempted), bytes(delivered), clean=False)
        assert outcomes[2:] == ["broken", "broken"], outcomes


def test_asyncio_stream_cancelled_drain_loses_nothing(pki: PKI, client_ctx: Any) -> None:
    """``AsyncSSLStream``: 2 MiB written, the drain cancelled (``wait_for``), 64 KiB more, that
    drain cancelled too, then the peer reads and a last line goes out: the peer gets every
    byte, in order, and the clean close_notify (the transport holds what ``write`` encrypted)."""
    peer = SlowPeer()
    cctx = client_ctx()
    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=peer) as server:
        sent = [b"hello\n", _chunk(1, BIG), _chunk(2, 65536), b"the last line\n"]

        async def main() -> None:
            stream = await commssl.open_tcp_stream_async(HOST, server.port, ssl_ctx=cctx,
                                                         tlsext_host_name="localhost")
            stream.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            try:
                stream.write(sent[0])
                await stream.drain()
                for data in sent[1:3]:
                    stream.write(data)
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(stream.drain(), 0.3)
                peer.resume.set()
                stream.write(sent[3])
                await asyncio.wait_for(stream.drain(), 20)
            finally:
                peer.resume.set()
                await stream.close(timeout=20)

        asyncio.run(main())
        everything = b"".join(sent)
        assert _check_peer(peer, everything, everything, clean=True) == everything


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_send_in_a_cancelled_scope_encrypts_nothing_and_the_stream_goes_on(
        backend: str, pki: PKI, client_ctx: Any) -> None:
    """A send in a scope cancelled before it starts raises at once, before OpenSSL made any
    record: nothing of it reaches the peer, later and earlier sends arrive intact, and the
    stream is not broken. (Without the check its records were made, stayed queued when the
    lock's checkpoint raised, and went out with the next send: a "cancelled" send delivered.)"""
    peer = SlowPeer()
    peer.resume.set()
    cctx = client_ctx()
    # No session tickets: this client never reads, and tickets left unread in its socket
    # make its close a TCP reset, which may discard what the peer has not read yet
    # (seen with OpenSSL 3.5 and 3.6 peers); the test is about the records, not that race.
    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=peer,
                                  tickets=False) as server:
        async def main() -> None:
            # the CPython peer closes without close_notify: accepted (standard_compatible=False)
            async with await tls_anyio.connect(HOST, server.port, ssl_ctx=cctx, tlsext_host_name="localhost",
                                               standard_compatible=False) as stream:
                await stream.send(b"before\n")
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await stream.send(b"cancelled\n")
                assert scope.cancelled_caught
                await stream.send(b"after\n")

        anyio.run(main, backend=backend)
        got, error = peer.received()
    assert error is None, error
    assert got == b"before\nafter\n"
