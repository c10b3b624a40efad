"""What a detach keeps when the peer is still sending: ``detach_ssl`` and ``detach_ssl_async``
hand back the same bytes, under the same limit, with the same errors (one policy:
``commssl._detach.DetachDrain``).

The peer is CPython ``ssl`` over memory BIOs (``peers.MemoryBioPeer``), so the test decides
which bytes go out when: application data, the peer's close_notify, then clear bytes.
Either the peer sends all of it before the client detaches ("queued": the client had not
read it), or only once the client's close_notify has reached it ("in-flight": the peer was
still sending as the client detached). After the detach, reading the plain stream to the
peer's FIN returns the application data, then the clear bytes: nothing lost, nothing twice.
Also against ``openssl s_server``, relaying its stdin to the client as application data.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from typing import Any, Callable, Optional, Tuple

import pytest

import commssl
from commssl.io.detach import DETACH_DRAIN
from helpers import connect
from peers import HOST, PKI, MemoryBioPeer, in_thread, openssl_server

CLEAR = b"CLEAR AFTER CLOSE_NOTIFY\r\n" * 3
KINDS = ["blocking", "async"]


def _peer_script(peer: MemoryBioPeer, data: bytes, timing: str, sent: threading.Event,
                 ) -> Optional[BaseException]:
    """The peer's side: ``data`` as application data records, close_notify, ``CLEAR``
    (then ``sent`` is set); then take the client's close_notify and end with a FIN.
    Returns what went wrong, if anything (a client that refuses the data closes on us)."""
    conn = peer.conn
    assert conn is not None
    records = b"".join(peer.record(data[i:i + 16384]) for i in range(0, len(data), 16384))
    try:
        peer.tls.unwrap()  # writes our close_notify; wants the client's
    except ssl.SSLWantReadError:
        pass
    segment = records + peer.outgoing.read() + CLEAR
    try:
        theirs = b""
        if timing == "in-flight":  # the client's close_notify is out before our data leaves
            theirs = conn.recv(65536)
            assert theirs, "the client closed instead of detaching"
        conn.sendall(segment)
        sent.set()
        peer.incoming.write(theirs)
        peer.step(peer.tls.unwrap)  # the client's close_notify completes ours
        conn.shutdown(socket.SHUT_WR)
        return None
    except (OSError, ssl.SSLError) as exc:
        return exc
    finally:
        sent.set()


def _detach_blocking(port: int, ctx: Any, go: Callable[[], None]) -> Tuple[Optional[BaseException], bytes]:
    with connect(port, ctx, tlsext_host_name="localhost", timeout=10) as stream:
        go()
        error: Optional[BaseException] = None
        try:
            commssl.detach_ssl(stream, retry_count=20, retry_timeout=0.25)
        except commssl.SSLCondition as exc:
            error = exc
        assert commssl.socket_stream_ssl(stream) is None  # plain, error or not
        if error is not None:
            return error, stream.read(DETACH_DRAIN)
        return None, stream.read()  # to the peer's FIN


def _detach_async(port: int, ctx: Any, go: Callable[[], None]) -> Tuple[Optional[BaseException], bytes]:
    async def main() -> Tuple[Optional[BaseException], bytes]:
        stream = await commssl.open_tcp_stream_async(HOST, port, ssl_ctx=ctx, tlsext_host_name="localhost")
        try:
            await asyncio.get_running_loop().run_in_executor(None, go)
            error: Optional[BaseException] = None
            try:
                await commssl.detach_ssl_async(stream, timeout=5)
            except commssl.SSLCondition as exc:
                error = exc
            assert stream.ssl is None
            if error is not None:
                return error, await stream.readexactly(DETACH_DRAIN)
            return None, await stream.read()  # to the peer's FIN
        finally:
            await stream.close(timeout=0.5)

    return asyncio.run(asyncio.wait_for(main(), 30))


DETACH = {"blocking": _detach_blocking, "async": _detach_async}


def _run(kind: str, timing: str, data: bytes, pki: PKI, ctx: Any, tls12: bool = False,
         ) -> Tuple[Optional[BaseException], bytes, Optional[BaseException]]:
    peer = MemoryBioPeer(pki)
    if tls12:
        peer.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    handshake = in_thread(peer.accept_and_handshake)
    script: Any = None
    sent = threading.Event()

    def go() -> None:  # the handshake is over: the peer starts sending
        nonlocal script
        handshake.result(10)
        script = in_thread(_peer_script, peer, data, timing, sent)
        if timing == "queued":  # all sent before the detach (what the socket buffers hold, at least)
            sent.wait(0.5 if len(data) > 64 * 1024 else 5)

    try:
        error, plain = DETACH[kind](peer.port, ctx, go)
        return error, plain, script.result(10)
    finally:
        peer.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("timing", ["queued", "in-flight"])
@pytest.mark.parametrize("size", [100, 300 * 1024], ids=["small", "300KiB"])
def test_detach_keeps_the_peers_data_then_its_clear_bytes(kind: str, timing: str, size: int, pki: PKI,
                                                          client_ctx: Callable[..., Any]) -> None:
    """Application data (small, or 300 KiB: more than a socket buffer, a read buffer and an
    asyncio stream's limit), close_notify, clear bytes: the plain stream returns the data and
    then the clear bytes, in order, whether the data was queued or still in flight."""
    data = os.urandom(size)
    error, plain, peer_error = _run(kind, timing, data, pki, client_ctx())
    assert error is None, error
    assert peer_error is None, peer_error
    assert len(plain) == len(data) + len(CLEAR)
    assert plain == data + CLEAR


@pytest.mark.parametrize("kind", KINDS)
def test_detach_keeps_what_a_tls12_peer_sends_as_we_detach(kind: str, pki: PKI,
                                                         client_ctx: Callable[..., Any]) -> None:
    """The same over TLS 1.2 (no post-handshake messages; close_notify rules of 1.2)."""
    data = os.urandom(200 * 1024)
    error, plain, peer_error = _run(kind, "in-flight", data, pki, client_ctx(), tls12=True)
    assert error is None and peer_error is None, (error, peer_error)
    assert plain == data + CLEAR


@pytest.mark.parametrize("kind", KINDS)
def test_detach_refuses_more_than_the_limit_and_keeps_the_first_mib(kind: str, pki: PKI,
                                                                   client_ctx: Callable[..., Any]) -> None:
    """A peer that sends more than 1 MiB instead of answering close_notify: ``SSLClosed`` from
    both detaches, with the same message but for the function's name; the stream is plain and
    holds exactly the first MiB of the peer's data."""
    data = os.urandom(DETACH_DRAIN + 40000)
    error, plain, _ = _run(kind, "in-flight", data, pki, client_ctx())
    assert isinstance(error, commssl.SSLClosed), error
    name = "detach_ssl_async" if kind == "async" else "detach_ssl"
    assert str(error) == (f"{name}: the peer sent more than {DETACH_DRAIN} bytes instead of answering "
                          "close_notify")
    assert plain == data[:DETACH_DRAIN]


@pytest.mark.parametrize("kind", KINDS)
def test_detach_against_openssl_s_server_sending_as_we_detach(kind: str, pki: PKI,
                                                            client_ctx: Callable[..., Any]) -> None:
    """``openssl s_server`` sends 200 KiB of its stdin as application data right after the
    handshake, while the client detaches at once: the detach completes (s_server answers
    close_notify and closes) and the plain stream holds what s_server sent of those 200 KiB,
    in order (s_server stops relaying once it reads our close_notify: a prefix)."""
    data = bytes(range(256)) * 800
    with openssl_server(pki.server_chain, pki.server_key, relay_stdin=True) as server:
        def go() -> None:
            server.send(data)

        error, plain = DETACH[kind](server.port, client_ctx(), go)
    assert error is None, error
    assert data.startswith(plain), len(plain)
