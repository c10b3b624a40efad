"""Application data that arrives with the handshake's last flight (a client's first request
sent in the same segment as its Finished) is read at once by every memory-BIO driver.

The server's last handshake read takes both records; the handshake consumes the first, and
the second waits in OpenSSL's read BIO. A driver that then waits on the socket for more
bytes waits for what it already has while the client waits for the answer: both hang. The
client here is CPython's ``ssl`` over memory BIOs, so the test decides what shares a segment.
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

LIMIT = 10  # seconds: a hang fails the test instead of stalling the run


def first_flight_client(pki: PKI, port: int, got: List[Any]) -> None:
    """Handshake over memory BIOs, then send the client's last flight and b"ping" in one
    ``sendall``; ``got`` receives the echo (or the exception)."""
    ctx = ssl.create_default_context(cafile=str(pki.root_cert))
    ctx.load_cert_chain(str(pki.client_chain), str(pki.client_key))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        with socket.create_connection((HOST, port), timeout=LIMIT) as sock:
            bio_step(sock, incoming, outgoing, tls.do_handshake, flush=False)  # its Finished stays
            tls.write(b"ping")
            sock.sendall(outgoing.read())  # Finished and the request: one segment
            echo = bio_step(sock, incoming, outgoing, lambda: tls.read(4))
            bio_step(sock, incoming, outgoing, tls.unwrap)  # close_notify both ways: a clean close
            got.append(echo)
    except BaseException as exc:
        got.append(exc)


def server_ctx_for(pki: PKI, server_ctx: Any) -> Any:
    ctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(ctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    return ctx


@pytest.mark.parametrize("backend", BACKENDS)
def test_anyio_server_reads_the_request_that_came_with_the_finished(backend: str, pki: PKI,
                                                                    server_ctx: Any) -> None:
    sctx = server_ctx_for(pki, server_ctx)
    got: List[Any] = []

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host=HOST)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = threading.Thread(target=first_flight_client, args=(pki, port, got))
        async with listener:
            client.start()
            with anyio.fail_after(LIMIT):
                tcp = await listener.listeners[0].accept()
                async with await tls_anyio.wrap(tcp, ssl_ctx=sctx, ssl_side="server") as stream:
                    await stream.send(await stream.receive())
        await anyio.to_thread.run_sync(client.join)

    anyio.run(main, backend=backend)
    assert got == [b"ping"]


def test_asyncio_server_reads_the_request_that_came_with_the_finished(pki: PKI, server_ctx: Any) -> None:
    sctx = server_ctx_for(pki, server_ctx)
    got: List[Any] = []

    async def handle(stream: Any) -> None:
        stream.write(await stream.read(4))
        await stream.drain()
        await stream.close()

    async def main() -> None:
        server = await commssl.start_ssl_server(handle, HOST, 0, ssl_ctx=sctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            client = threading.Thread(target=first_flight_client, args=(pki, port, got))
            client.start()
            await asyncio.wait_for(asyncio.to_thread(client.join), LIMIT * 2)

    asyncio.run(main())
    assert got == [b"ping"]
