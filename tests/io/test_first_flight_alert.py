"""The first flight's failures (readside.handshake_done): a failure met while decrypting
what came with the handshake's last flight must be told to the peer, as every other read
failure is.

A TLS 1.3 client sends its Finished, a request and a damaged record in one segment. The
server decrypts the request at the end of its handshake (handshake_done) and meets the bad
record there: OpenSSL writes a bad_record_mac alert. The asyncio driver sends it (its output
goes straight to the transport); commssl.anyio.TLSStream flushes it at the end of its handshake,
where it once left it in ``_out``: every later
``send``/``receive`` raises the stored error before flushing, and ``aclose`` skips
close_notify, so the alert is never sent and the peer sees a bare EOF. The same damaged
record arriving one segment later (the ordinary ``receive`` path) is answered with the alert,
which the third test shows.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import Any, List

import pytest

import commssl
from helpers import BACKENDS
from peers import HOST, PKI, bio_step

anyio = pytest.importorskip("anyio")
import commssl.anyio as tls_anyio  # noqa: E402

LIMIT = 10


def damaging_client(pki: PKI, port: int, got: List[Any], same_segment: bool) -> None:
    """TLS 1.3 over memory BIOs: Finished + b"ping" + a record whose last byte is flipped
    (in one segment, or the bad record in a second one after a pause); then read to EOF and
    record what the server's bytes say: the alert, or nothing."""
    ctx = ssl.create_default_context(cafile=str(pki.root_cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        with socket.create_connection((HOST, port), timeout=LIMIT) as sock:
            bio_step(sock, incoming, outgoing, tls.do_handshake, flush=False)  # its Finished stays
            tls.write(b"ping")
            good = outgoing.read()  # the Finished and the request
            tls.write(b"more")
            bad = bytearray(outgoing.read())
            bad[-1] ^= 1
            if same_segment:
                sock.sendall(good + bytes(bad))
            else:
                sock.sendall(good)
                threading.Event().wait(0.5)
                sock.sendall(bytes(bad))
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                incoming.write(data)
            incoming.write_eof()
            try:
                while tls.read(100):
                    pass
                got.append("clean close")
            except ssl.SSLError as exc:
                got.append(exc.reason)
    except BaseException as exc:
        got.append(exc)


async def anyio_server(pki: PKI, sctx: Any, same_segment: bool) -> List[Any]:
    got: List[Any] = []
    seen: List[Any] = []
    listener = await anyio.create_tcp_listener(local_host=HOST)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    client = threading.Thread(target=damaging_client, args=(pki, port, got, same_segment), daemon=True)
    async with listener:
        client.start()
        with anyio.fail_after(LIMIT):
            tcp = await listener.listeners[0].accept()
            stream = await tls_anyio.wrap(tcp, ssl_ctx=sctx, ssl_side="server")
            seen.append(await stream.receive())
            with pytest.raises(anyio.BrokenResourceError, match="bad record mac"):
                await stream.receive()
            await stream.aclose()
    await anyio.to_thread.run_sync(client.join, LIMIT)
    assert seen == [b"ping"]
    return got


@pytest.mark.parametrize("backend", BACKENDS)
def test_anyio_server_sends_the_alert_for_a_bad_record_in_the_first_flight(backend: str, pki: PKI,
                                                                          server_ctx: Any) -> None:
    got = anyio.run(anyio_server, pki, server_ctx(), True, backend=backend)
    # observed on the current code: ["UNEXPECTED_EOF_WHILE_READING"] (no alert, a bare EOF)
    assert got == ["SSLV3_ALERT_BAD_RECORD_MAC"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_control_anyio_server_sends_the_alert_for_a_bad_record_in_a_later_segment(backend: str, pki: PKI,
                                                                                 server_ctx: Any) -> None:
    got = anyio.run(anyio_server, pki, server_ctx(), False, backend=backend)
    assert got == ["SSLV3_ALERT_BAD_RECORD_MAC"]


def test_control_asyncio_server_sends_the_alert_for_a_bad_record_in_the_first_flight(pki: PKI,
                                                                                    server_ctx: Any) -> None:
    got: List[Any] = []
    seen: List[Any] = []

    async def handle(stream: Any) -> None:
        seen.append(await stream.read(4))
        try:
            await stream.read(4)
        except commssl.SSLCondition as exc:
            seen.append(type(exc).__name__)
        await stream.close()

    async def main() -> None:
        server = await commssl.start_ssl_server(handle, HOST, 0, ssl_ctx=server_ctx())
        port = server.sockets[0].getsockname()[1]
        async with server:
            client = threading.Thread(target=damaging_client, args=(pki, port, got, True), daemon=True)
            client.start()
            await asyncio.wait_for(asyncio.to_thread(client.join), LIMIT * 2)

    asyncio.run(main())
    assert seen == [b"ping", "SSLFailure"]
    assert got == ["SSLV3_ALERT_BAD_RECORD_MAC"]
