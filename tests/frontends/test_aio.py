"""asyncio SSL connections: AsyncSSLStream, open_tcp_stream_async, start_ssl_server.

Each test runs its own event loop with ``run()`` (a bounded ``asyncio.run``),
against commssl, CPython's asyncio ``ssl=``, ``openssl s_server`` and raw
socket peers from ``peers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, List, Optional, Tuple

import pytest

import commssl
import peers
from commssl import (
    AsyncSSLStream,
    SSLClosed,
    SSLCondition,
    SSLError,
    SSLFailure,
    SSLHandshakeTimeout,
    SSLVerificationFailure,
    get_certificate_common_name,
    lib,
    open_tcp_stream_async,
    peer_certificates,
    ssl_connection_copy_peer_certificates,
    ssl_connection_protocol_version,
    ssl_connection_ssl_ref,
    ssl_connection_verify,
    start_ssl_server,
)
from helpers import run
from peers import HOST, PKI


def port_of(server: asyncio.AbstractServer) -> int:
    return server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def serving(handler: Callable[[AsyncSSLStream], Awaitable[Any]], ssl_ctx: Any,
                  **kw: Any) -> AsyncIterator[asyncio.AbstractServer]:
    server = await start_ssl_server(handler, HOST, 0, ssl_ctx=ssl_ctx, **kw)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


async def echo(stream: AsyncSSLStream) -> None:
    while True:
        data = await stream.read(65536)
        if not data:
            return
        stream.write(data)
        await stream.drain()


def cn_list(conn: Any) -> List[Optional[str]]:
    with peer_certificates(conn) as certs:
        return [get_certificate_common_name(c) for c in certs if c is not None]


def cpython_server_ctx(pki: PKI, cafile: Any = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_chain, pki.server_key)
    if cafile is not None:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def cpython_client_ctx(pki: PKI, chain: Any = None, key: Any = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.root_cert)
    if chain is not None:
        ctx.load_cert_chain(chain, key)
    return ctx


# -- commssl <-> commssl --------------------------------------------------------


def test_echo_and_accessors_commssl_both_sides(pki: PKI, server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    seen: List[Tuple[Any, ...]] = []

    async def handler(stream: AsyncSSLStream) -> None:
        sni = commssl.ffi.string(lib.SSL_get_servername(stream.ssl.cdata, lib.TLSEXT_NAMETYPE_host_name))
        seen.append((stream.ssl_side, stream.ssl_ctx is sctx, sni, cn_list(stream)))
        await echo(stream)

    async def main() -> None:
        async with serving(handler, sctx) as server:
            stream = await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx)
            assert isinstance(stream, AsyncSSLStream) and isinstance(stream, commssl.io.connection.Connection)
            assert stream.ssl_side == "client" and stream.ssl_ctx is cctx
            assert ssl_connection_ssl_ref(stream) is stream.ssl
            assert ssl_connection_protocol_version(stream) == "tls-v1-3"
            assert ssl_connection_verify(stream) == (True, lib.X509_V_OK)
            assert cn_list(stream) == [pki.server_cn, pki.intermediate_cn]
            payload = bytes(range(256)) * 1000
            stream.write(payload)
            await stream.drain()
            assert await stream.readexactly(len(payload)) == payload
            stream.write(b"x")
            assert await stream.read(100) == b"x"
            await stream.close()
            assert stream.ssl is None and stream.ssl_ctx is None
            await stream.close()  # twice does nothing
            with pytest.raises(ValueError, match="is closed"):
                ssl_connection_verify(stream)

    run(main())
    # the server saw no client certificate (it asks for none), and the client's SNI
    assert seen == [("server", True, b"localhost", [])]


def test_mutual_tls_with_chains_server_copy_includes_client_leaf(
        pki: PKI, server_ctx: Any, client_ctx: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
    server_saw: List[Any] = []

    async def handler(stream: AsyncSSLStream) -> None:
        certs = ssl_connection_copy_peer_certificates(stream)
        try:
            server_saw.append([get_certificate_common_name(c) for c in certs])
            server_saw.append(commssl.get_certificate_serial_number(certs[0]))
        finally:
            commssl.release_certificates_vector(certs)
        server_saw.append(ssl_connection_verify(stream))
        server_saw.append(commssl.ssl_connection_get_peer_certificates_data(stream)[0][0])
        await stream.close()

    async def main() -> None:
        async with serving(handler, sctx) as server:
            async with await open_tcp_stream_async(HOST, port_of(server), ssl_ctx=cctx,
                                                   tlsext_host_name="localhost") as stream:
                assert cn_list(stream) == [pki.server_cn, pki.intermediate_cn]
                assert await stream.read() == b""  # the handler closed: clean end of stream

    run(main())
    assert server_saw == [[pki.client_cn, pki.intermediate_cn], pki.client_serial, (True, 0),
                          ("subject-common-name", pki.client_cn)]


def test_server_requiring_a_certificate_refuses_a_client_without_one(
        pki: PKI, server_ctx: Any, client_ctx: Any, caplog: pytest.LogCaptureFixture) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    cctx = client_ctx()
    handled: List[bool] = []

    async def handler(stream: AsyncSSLStream) -> None:
        handled.append(True)

    async def main() -> None:
        async with serving(handler, sctx) as server:
            # TLS 1.3: the client's handshake ends before the server checks; the alert ends the read
            stream = await open_tcp_stream_async(HOST, port_of(server), ssl_ctx=cctx,
                                                 tlsext_host_name="localhost")
            with pytest.raises(SSLFailure, match="certificate required"):
                await stream.read()
            await stream.close()

    with caplog.at_level(logging.INFO, logger="commssl.aio"):
        run(main())
    assert handled == []
    assert any("SSLVerificationFailure" in r.getMessage() for r in caplog.records)


def test_abstract_contexts_verify_callback_gets_the_async_stream(pki: PKI) -> None:
    calls: List[Tuple[str, bool, Any, List[Optional[str]]]] = []

    def decide(side: str) -> Callable[[Any], bool]:
        def verify(conn: Any) -> bool:
            ok, code = ssl_connection_verify(conn)
            calls.append((side, isinstance(conn, AsyncSSLStream), code, cn_list(conn)))
            return True
        return verify

    server = commssl.create_ssl_server_context(cert_file=pki.server_chain, key_file=pki.server_key,
                                               openssl_trusted_file=pki.root_cert,
                                               verify_callback=decide("server"))
    # the client trusts nothing: the callback accepts the (unverifiable) server anyway
    client = commssl.create_ssl_client_context(cert_file=pki.client_chain, key_file=pki.client_key,
                                               verify_callback=decide("client"), tlsext_host_name="localhost")

    async def main() -> None:
        async with serving(echo, server) as srv:
            async with await open_tcp_stream_async(HOST, port_of(srv), ssl_ctx=client) as stream:
                stream.write(b"ping")
                assert await stream.readexactly(4) == b"ping"

    try:
        run(main())
    finally:
        commssl.destroy_ssl_ctx(server.ssl_ctx_pointer)
        commssl.destroy_ssl_ctx(client.ssl_ctx_pointer)
    assert sorted(calls) == [
        ("client", True, lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
         [pki.server_cn, pki.intermediate_cn]),
        ("server", True, lib.X509_V_OK, [pki.client_cn, pki.intermediate_cn]),
    ]


# -- callbacks, verification failures ------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("mode", ["always", "never"])
def test_callback_exception_propagates_from_the_await(
        pki: PKI, server_ctx: Any, client_ctx: Any, mode: str) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    raised: List[Boom] = []
    connections: List[Any] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        connections.append(commssl.x509_store_ctx_get_connection(store))
        if commssl.x509_store_ctx_get_error_depth(store) == 0:
            raised.append(Boom("from the callback"))
            raise raised[-1]
        return True

    commssl.set_verification_mode(cctx, "client", mode, callback)

    async def main() -> None:
        async with serving(echo, sctx) as server:
            with pytest.raises(Boom) as info:
                await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx)
            assert info.value is raised[0]
            assert any(f.name == "callback" for f in info.traceback)

    run(main())
    assert connections and all(isinstance(c, AsyncSSLStream) for c in connections)


def test_per_connection_callback_exception_propagates(server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    boom = Boom("per-connection")

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        raise boom

    def configure(sslp: commssl.SSLPointer) -> None:  # on this SSL only, not the context
        commssl.set_verification_mode(sslp, "client", "always", callback)

    async def main() -> None:
        async with serving(echo, sctx) as server:
            with pytest.raises(Boom) as info:
                await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx,
                                            ssl_configure_callback=configure)
            assert info.value is boom
            async with await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx) as stream:
                assert ssl_connection_verify(stream) == (True, 0)  # the context itself is untouched

    run(main())


def test_event_loops_in_several_threads(pki: PKI, server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    calls: List[int] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        calls.append(commssl.x509_store_ctx_get_error_depth(store))
        return ok

    commssl.set_verification_mode(cctx, "client", "always", callback)

    async def main(k: int) -> List[bytes]:
        async with serving(echo, sctx) as server:
            async def one(i: int) -> bytes:
                async with await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx) as stream:
                    payload = (b"%d-%d|" % (k, i)) * 20_000
                    stream.write(payload)
                    data = await stream.readexactly(len(payload))
                    return data if data == payload else b"mismatch"
            return list(await asyncio.gather(*(one(i) for i in range(10))))

    futures = [peers.in_thread(run, main(k)) for k in range(3)]
    results = [f.result(60) for f in futures]
    for k, got in enumerate(results):
        assert got == [(b"%d-%d|" % (k, i)) * 20_000 for i in range(10)]
    assert len(calls) == 3 * 10 * 3  # root, intermediate, leaf per connection


def test_python_callback_sees_each_depth_and_can_reject(pki: PKI, server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    depths: List[Tuple[int, bool, Optional[str]]] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        cert = commssl.x509_store_ctx_get_current_cert(store)
        depth = commssl.x509_store_ctx_get_error_depth(store)
        depths.append((depth, ok, get_certificate_common_name(cert)))
        return depth != 0  # reject the leaf

    commssl.set_verification_mode(cctx, "client", "always", callback)

    async def main() -> None:
        async with serving(echo, sctx) as server:
            with pytest.raises(SSLVerificationFailure) as info:
                await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx)
            assert info.value.depth == 0 and info.value.ssl_code == "verify-callback"

    run(main())
    assert depths == [(2, True, pki.root_cn), (1, True, pki.intermediate_cn), (0, True, pki.server_cn)]


def test_c_function_pointer_callback(server_ctx: Any, client_ctx: Any, pki: PKI) -> None:
    sctx = server_ctx()
    good, untrusted = client_ctx(), client_ctx(cafile=pki.other_root_cert)
    for ctx in (good, untrusted):  # installed as it is; OpenSSL's own answer stands
        commssl.set_verification_mode(ctx, "client", "always",
                                      commssl.ffi.addressof(lib, "commssl_verify_cb"))

    async def main() -> None:
        async with serving(echo, sctx) as server:
            async with await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=good) as stream:
                assert ssl_connection_verify(stream) == (True, 0)
            with pytest.raises(SSLVerificationFailure) as info:
                await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=untrusted)
            assert info.value.verify_code == lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY

    run(main())


def test_host_name_checked_and_sni_sent(pki: PKI, server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    names: List[Optional[bytes]] = []

    async def handler(stream: AsyncSSLStream) -> None:
        p = lib.SSL_get_servername(stream.ssl.cdata, lib.TLSEXT_NAMETYPE_host_name)
        names.append(None if p == commssl.ffi.NULL else commssl.ffi.string(p))

    async def main() -> None:
        async with serving(handler, sctx) as server:
            with pytest.raises(SSLVerificationFailure) as info:
                await open_tcp_stream_async(HOST, port_of(server), ssl_ctx=cctx,
                                            tlsext_host_name="wrong.example")
            assert info.value.verify_code == lib.X509_V_ERR_HOSTNAME_MISMATCH and info.value.depth == 0
            # an IP literal is checked against the IP SAN and sends no SNI
            async with await open_tcp_stream_async(HOST, port_of(server), ssl_ctx=cctx) as stream:
                assert await stream.read() == b""
            async with await open_tcp_stream_async(HOST, port_of(server), ssl_ctx=cctx,
                                                   tlsext_host_name="localhost") as stream:
                assert await stream.read() == b""

    run(main())
    assert names == [None, b"localhost"]


def test_server_side_failures_are_logged_and_the_server_goes_on(
        pki: PKI, server_ctx: Any, client_ctx: Any, caplog: pytest.LogCaptureFixture) -> None:
    sctx = server_ctx(cafile=pki.root_cert)

    def server_callback(ok: bool, store: Any) -> bool:
        raise Boom("server-side callback")

    commssl.set_verification_mode(sctx, "server", "always", server_callback)
    with_cert = client_ctx(chain=pki.client_chain, key=pki.client_key)
    without = client_ctx()
    handled: List[str] = []

    async def handler(stream: AsyncSSLStream) -> None:
        handled.append(stream.ssl_side)
        if len(handled) == 1:
            raise RuntimeError("handler bug")  # logged; the connection is closed
        await echo(stream)

    async def main() -> None:
        async with serving(handler, sctx) as server:
            port = port_of(server)
            # garbage instead of a ClientHello
            await asyncio.get_running_loop().run_in_executor(
                None, peers.garbage_client, port, b"GET / HTTP/1.0\r\n\r\n")
            # the server's callback raises: the client sees an alert
            stream = await open_tcp_stream_async("localhost", port, ssl_ctx=with_cert)
            with pytest.raises(SSLCondition):
                await stream.read()
            await stream.close()
            # a client without a certificate passes ("always" does not require one); the handler raises
            async with await open_tcp_stream_async("localhost", port, ssl_ctx=without) as stream:
                assert await stream.read() == b""
            async with await open_tcp_stream_async("localhost", port, ssl_ctx=without) as stream:
                stream.write(b"still serving")
                assert await stream.readexactly(13) == b"still serving"

    with caplog.at_level(logging.INFO, logger="commssl.aio"):
        run(main())
    assert handled == ["server", "server"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("handshake" in m and "SSLFailure" in m for m in messages)  # the garbage
    assert any("Boom: server-side callback" in m for m in messages)
    assert any("raised" in m and r.exc_info and r.exc_info[0] is RuntimeError
               for m, r in zip(messages, caplog.records))


# -- other peers -----------------------------------------------------------------------


def test_commssl_client_against_cpython_asyncio_server(pki: PKI, client_ctx: Any) -> None:
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
    seen: List[Any] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("ssl_object").getpeercert()["subject"])
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        seen.append(await reader.read())  # our close_notify: EOF
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(on_client, HOST, 0, ssl=cpython_server_ctx(pki, pki.root_cert))
        try:
            stream = await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx)
            assert cn_list(stream) == [pki.server_cn, pki.intermediate_cn]
            stream.write(b"hello asyncio\n")
            assert await stream.readexactly(14) == b"HELLO ASYNCIO\n"
            await stream.close()
            for _ in range(100):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.02)
        finally:
            server.close()
            await server.wait_closed()

    run(main())
    assert seen[0][0] == (("commonName", pki.client_cn),) and seen[1] == b""


def test_cpython_asyncio_client_against_commssl_server(pki: PKI, server_ctx: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    seen: List[Any] = []

    async def handler(stream: AsyncSSLStream) -> None:
        seen.append(cn_list(stream))
        await echo(stream)
        seen.append("eof")

    async def main() -> None:
        async with serving(handler, sctx) as server:
            ctx = cpython_client_ctx(pki, pki.client_chain, pki.client_key)
            reader, writer = await asyncio.open_connection(HOST, port_of(server), ssl=ctx,
                                                           server_hostname="localhost")
            payload = b"0123456789" * 50_000
            writer.write(payload)
            await writer.drain()
            assert await reader.readexactly(len(payload)) == payload
            writer.close()
            await writer.wait_closed()
            for _ in range(100):
                if "eof" in seen:
                    break
                await asyncio.sleep(0.02)

    run(main())
    assert seen == [[pki.client_cn, pki.intermediate_cn], "eof"]


def test_against_openssl_s_server(pki: PKI, client_ctx: Any) -> None:
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)

    async def main(port: int) -> None:
        stream = await open_tcp_stream_async("localhost", port, ssl_ctx=cctx)
        assert cn_list(stream) == [pki.server_cn, pki.intermediate_cn]
        stream.write(b"hello openssl\n")
        assert await stream.readexactly(14) == b"lssnepo olleh\n"
        stream.write(b"CLOSE\n")  # s_server -rev closes cleanly: close_notify, then EOF
        assert await stream.read() == b""
        assert await stream.read(10) == b""
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await stream.readexactly(1)
        assert info.value.partial == b""
        await stream.close()

    with peers.openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=2) as server:
        run(main(server.port))
        assert server.wait_for_peer_subject()["CN"] == pki.client_cn


def test_eof_without_close_notify_is_ssl_error(pki: PKI, client_ctx: Any) -> None:
    cctx = client_ctx()

    def handler(tls: ssl.SSLSocket) -> None:
        tls.sendall(b"partial")  # then the socket closes without close_notify

    async def main(port: int) -> None:
        stream = await open_tcp_stream_async("localhost", port, ssl_ctx=cctx)
        assert await stream.readexactly(7) == b"partial"  # buffered data first
        with pytest.raises(SSLError):
            await stream.read(10)
        with pytest.raises(SSLError):
            stream.write(b"too late")
        await stream.close()

    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        run(main(server.port))


def test_write_after_peer_is_gone_and_clean_close_conditions(
        pki: PKI, server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()

    async def handler(stream: AsyncSSLStream) -> None:
        stream.write(b"bye")
        await stream.close(timeout=0)  # close_notify, then the socket, without waiting for ours

    async def main() -> None:
        async with serving(handler, sctx) as server:
            stream = await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx)
            assert await stream.read() == b"bye"  # then close_notify: a clean end
            # TLS allows writing after the peer's close_notify (half-close), until the socket is gone
            for _ in range(200):
                stream.write(b"x")
                await asyncio.sleep(0.01)
                if stream._lost:
                    break
            assert stream._lost
            with pytest.raises(SSLClosed):
                stream.write(b"x")
            with pytest.raises(SSLClosed):
                await stream.drain()
            await stream.close()
            with pytest.raises(ValueError, match="closed"):
                stream.write(b"x")
            with pytest.raises(ValueError, match="closed"):
                await stream.read()

    run(main())


# -- failures while connecting --------------------------------------------------------


def test_handshake_timeout_against_a_silent_server_does_not_block_the_loop(client_ctx: Any) -> None:
    cctx = client_ctx()

    async def main(port: int) -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        start = time.monotonic()
        with pytest.raises(SSLHandshakeTimeout, match="timed out"):
            await open_tcp_stream_async(HOST, port, ssl_ctx=cctx, handshake_timeout=0.5)
        elapsed = time.monotonic() - start
        task.cancel()
        assert 0.4 < elapsed < 5
        assert ticks >= 5  # the loop kept running while the handshake waited

    with peers.silent_server() as server:
        run(main(server.port))


def test_server_handshake_timeout_closes_a_silent_client(
        server_ctx: Any, caplog: pytest.LogCaptureFixture) -> None:
    sctx = server_ctx()

    async def handler(stream: AsyncSSLStream) -> None:
        raise AssertionError("no handshake can complete")

    async def main() -> None:
        async with serving(handler, sctx, handshake_timeout=0.3) as server:
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            start = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
            assert time.monotonic() - start < 4
            writer.close()

    with caplog.at_level(logging.INFO, logger="commssl.aio"):
        run(main())
    assert any("SSLHandshakeTimeout" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("peer,exc", [
    (lambda: peers.reset_server(), (SSLError, SSLFailure)),
    # the reset may beat the loop's view of the connect: then the TCP error itself, before any TLS
    (lambda: peers.reset_server(read_first=False), (SSLError, SSLFailure, ConnectionResetError)),
    (lambda: peers.plaintext_server(), (SSLFailure,)),
])
def test_peer_disappearing_or_not_speaking_tls_mid_handshake(client_ctx: Any, peer: Any, exc: Any) -> None:
    cctx = client_ctx()

    async def main(port: int) -> None:
        with pytest.raises(exc):
            await open_tcp_stream_async(HOST, port, ssl_ctx=cctx, handshake_timeout=10)

    with peer() as server:
        run(main(server.port))


def test_client_disappearing_mid_handshake_and_cancelled_open(server_ctx: Any, client_ctx: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    sctx, cctx = server_ctx(), client_ctx()

    async def main() -> None:
        async with serving(echo, sctx) as server:
            port = port_of(server)
            # a ClientHello cut short, then the client goes away
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            writer.close()
            # a cancelled open frees what it made
            task = asyncio.ensure_future(open_tcp_stream_async("localhost", port, ssl_ctx=cctx))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with await open_tcp_stream_async("localhost", port, ssl_ctx=cctx) as stream:
                stream.write(b"ok")
                assert await stream.readexactly(2) == b"ok"

    with caplog.at_level(logging.INFO, logger="commssl.aio"):
        run(main())
    assert any("SSLError" in r.getMessage() for r in caplog.records)


def test_close_is_bounded_when_the_peer_never_answers(pki: PKI, client_ctx: Any) -> None:
    cctx = client_ctx()

    def handler(tls: ssl.SSLSocket) -> None:
        time.sleep(1)  # never reads, never sends close_notify

    async def main(port: int) -> None:
        stream = await open_tcp_stream_async("localhost", port, ssl_ctx=cctx)
        start = time.monotonic()
        await stream.close(timeout=0.3)
        assert time.monotonic() - start < 2
        assert stream.ssl is None

    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        run(main(server.port))


# -- many connections ----------------------------------------------------------------------


def test_250_concurrent_connections_exchange_data_and_certificates(
        pki: PKI, server_ctx: Any, client_ctx: Any) -> None:
    count = 250
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
    start = commssl.outstanding_certificates()
    peak = [start]
    served: List[bool] = []

    async def handler(stream: AsyncSSLStream) -> None:
        certs = ssl_connection_copy_peer_certificates(stream)
        peak[0] = max(peak[0], commssl.outstanding_certificates())
        try:
            assert [get_certificate_common_name(c) for c in certs] == [pki.client_cn, pki.intermediate_cn]
            n = int(await stream.readexactly(4))
            data = await stream.readexactly(n)
            await asyncio.sleep(0.01)  # hold the certificates while others run
            stream.write(data[::-1])
            await stream.drain()
        finally:
            commssl.release_certificates_vector(certs)
        served.append(True)

    async def client(i: int) -> None:
        stream = await open_tcp_stream_async("localhost", port, ssl_ctx=cctx, handshake_timeout=60)
        try:
            with peer_certificates(stream) as certs:
                assert get_certificate_common_name(certs[0]) == pki.server_cn
                payload = (b"%06d" % i) * (100 + i)
                stream.write(b"%04d" % len(payload) + payload)
                await stream.drain()
                assert await stream.readexactly(len(payload)) == payload[::-1]
                assert await stream.read() == b""
        finally:
            await stream.close()

    async def main() -> None:
        nonlocal port
        async with serving(handler, sctx, backlog=count) as server:
            port = port_of(server)
            await asyncio.gather(*(client(i) for i in range(count)))

    port = 0
    run(main(), timeout=120)
    assert len(served) == count
    assert peak[0] > start  # certificates were held at the same time ...
    assert commssl.outstanding_certificates() == start  # ... and all given back


# -- flow control ------------------------------------------------------------------------


def test_writer_to_a_peer_that_does_not_read_stays_bounded(server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    limit = 64 * 1024
    server_side: List[AsyncSSLStream] = []

    async def main() -> None:
        release = asyncio.Event()

        async def handler(stream: AsyncSSLStream) -> None:
            server_side.append(stream)
            await release.wait()  # does not read for now
            total, tail = 0, b""
            while not tail.endswith(b"|END"):
                data = await stream.read(1 << 20)
                assert data, "end of stream before the trailer"
                total += len(data)
                tail = (tail + data)[-4:]
            stream.write(b"%d" % (total - 4))

        async with serving(handler, sctx, limit=limit) as server:
            stream = await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx)
            chunk = b"z" * 65536
            written = 0
            while True:
                stream.write(chunk)
                written += len(chunk)
                try:
                    await asyncio.wait_for(stream.drain(), 0.5)
                except asyncio.TimeoutError:
                    break  # drain blocks: the peer is not reading
                assert written < 256 * 1024 * 1024, "drain never blocked"
            transport = stream.transport
            assert transport is not None
            high = transport.get_write_buffer_limits()[1]
            # what waits on our side: at most the transport's high-water mark plus one chunk
            assert transport.get_write_buffer_size() <= high + len(chunk) + 1024
            assert lib.BIO_ctrl_pending(stream._tls._wbio) == 0
            # the peer paused reading: its decrypted buffer stays under limit + one socket read
            peer = server_side[0]
            assert len(peer._rbuf) <= limit + 256 * 1024
            assert peer._read_paused and not peer.transport.is_reading()
            # everything arrives once the peer reads
            release.set()
            stream.write(b"|END")
            await stream.drain()
            assert int(await stream.read()) == written
            await stream.close()

    run(main(), timeout=60)


def test_reader_that_does_not_read_pauses_the_transport(server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    limit = 100_000
    size = 8 * 1024 * 1024

    async def handler(stream: AsyncSSLStream) -> None:
        block = bytes(range(256)) * 256
        for _ in range(size // len(block)):
            stream.write(block)
            await stream.drain()

    async def main() -> None:
        async with serving(handler, sctx) as server:
            stream = await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx, limit=limit)
            await asyncio.sleep(0.5)  # the server writes; we do not read
            assert stream._read_paused and not stream.transport.is_reading()
            assert limit < len(stream._rbuf) <= limit + 256 * 1024
            got = 0
            while True:
                data = await stream.read(50_000)
                if not data:
                    break
                assert len(stream._rbuf) <= limit + 256 * 1024
                got += len(data)
            assert got == size
            await stream.close()

    run(main(), timeout=60)


def test_readexactly_beyond_the_read_limit(server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    size = 1024 * 1024

    async def handler(stream: AsyncSSLStream) -> None:
        stream.write(b"r" * size)
        await stream.drain()
        await stream.read()

    async def main() -> None:
        async with serving(handler, sctx) as server:
            stream = await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx, limit=65536)
            await asyncio.sleep(0.2)  # reading pauses above the limit ...
            assert stream._read_paused
            # ... and a reader asking for more than the limit still gets it
            assert await asyncio.wait_for(stream.readexactly(size), 10) == b"r" * size
            await stream.close()

    run(main())


def test_close_wakes_a_waiting_reader_and_refused_connection(server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()

    async def handler(stream: AsyncSSLStream) -> None:
        await stream.read()

    async def main() -> None:
        async with serving(handler, sctx) as server:
            stream = await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx)
            reader = asyncio.ensure_future(stream.read(10))
            await asyncio.sleep(0.05)
            assert not reader.done()
            await stream.close()
            assert await asyncio.wait_for(reader, 5) == b""
        with socket.socket() as s:  # a port nobody listens on
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await open_tcp_stream_async(HOST, port, ssl_ctx=cctx)

    run(main())


def test_tls12_peers(pki: PKI, client_ctx: Any) -> None:
    cctx = client_ctx()

    async def main(port: int) -> None:
        async with await open_tcp_stream_async("localhost", port, ssl_ctx=cctx) as stream:
            assert ssl_connection_protocol_version(stream) == "tls-v1-2"
            assert cn_list(stream) == [pki.server_cn, pki.intermediate_cn]
            stream.write(b"twelve\n")
            assert await stream.readexactly(7) == b"evlewt\n"

    async def refused(port: int) -> None:
        # TLS 1.2: the server's refusal of a client without a certificate ends the handshake itself
        with pytest.raises(SSLFailure):
            await open_tcp_stream_async("localhost", port, ssl_ctx=cctx, handshake_timeout=10)

    with peers.openssl_server(pki.server_chain, pki.server_key, extra_args=("-tls1_2",)) as server:
        run(main(server.port))
    with peers.openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=1,
                              extra_args=("-tls1_2",)) as server:
        run(refused(server.port))


# -- bad inputs ----------------------------------------------------------------------------


def test_bad_arguments(server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    server_abstract = commssl.create_ssl_server_context()
    client_abstract = commssl.create_ssl_client_context()

    async def main() -> None:
        for bad in (False, 42, b"default", object()):  # None: a plain stream
            with pytest.raises(TypeError, match="ssl_ctx"):
                await open_tcp_stream_async(HOST, 1, ssl_ctx=bad)
            with pytest.raises(TypeError, match="ssl_ctx"):
                await start_ssl_server(echo, HOST, 0, ssl_ctx=bad)
        with pytest.raises(ValueError, match="ssl_ctx"):
            await open_tcp_stream_async(HOST, 1, ssl_ctx="bogus")
        with pytest.raises(ValueError, match="ssl_ctx"):
            await start_ssl_server(echo, HOST, 0, ssl_ctx="bogus")
        with pytest.raises(ValueError, match="server context"):
            await open_tcp_stream_async(HOST, 1, ssl_ctx=server_abstract)
        with pytest.raises(ValueError, match="client context"):
            await start_ssl_server(echo, HOST, 0, ssl_ctx=client_abstract)
        sslp = commssl.io.connection.new_ssl(sctx, "server")[0]
        try:
            with pytest.raises(TypeError, match="SSLPointer"):
                await start_ssl_server(echo, HOST, 0, ssl_ctx=sslp)
        finally:
            sslp._kill()
        with pytest.raises(TypeError, match="handler"):
            await start_ssl_server("not callable", HOST, 0, ssl_ctx=sctx)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="host"):
            await open_tcp_stream_async(b"localhost", 1, ssl_ctx=cctx)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="port"):
            await open_tcp_stream_async(HOST, "443", ssl_ctx=cctx)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="port"):
            await open_tcp_stream_async(HOST, 0, ssl_ctx=cctx)
        with pytest.raises(ValueError, match="port"):
            await start_ssl_server(echo, HOST, 70000, ssl_ctx=sctx)
        with pytest.raises(TypeError, match="handshake_timeout"):
            await open_tcp_stream_async(HOST, 1, ssl_ctx=cctx, handshake_timeout="1")
        with pytest.raises(ValueError, match="handshake_timeout"):
            await start_ssl_server(echo, HOST, 0, ssl_ctx=sctx, handshake_timeout=-1)
        with pytest.raises(TypeError, match="limit"):
            await open_tcp_stream_async(HOST, 1, ssl_ctx=cctx, limit=1.5)
        with pytest.raises(ValueError, match="limit"):
            await start_ssl_server(echo, HOST, 0, ssl_ctx=sctx, limit=0)
        with pytest.raises(TypeError, match="tlsext_host_name"):
            await open_tcp_stream_async(HOST, 1, ssl_ctx=cctx, tlsext_host_name=1)
        with pytest.raises(TypeError, match="ssl_ctx"):
            await open_tcp_stream_async(HOST, 1)  # type: ignore[call-arg]

        async with serving(echo, sctx) as server:
            async with await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=cctx) as stream:
                for call in (lambda: stream.read("1"), lambda: stream.readexactly(1.0),
                             lambda: stream.read(True)):
                    with pytest.raises(TypeError, match="n must be an int"):
                        await call()
                with pytest.raises(ValueError, match="n must be >= 0"):
                    await stream.readexactly(-1)
                assert await stream.read(0) == b"" and await stream.readexactly(0) == b""
                with pytest.raises(TypeError, match="str"):
                    stream.write("text")
                with pytest.raises(TypeError):
                    stream.write(12)
                with pytest.raises(TypeError, match="timeout"):
                    await stream.close(timeout="soon")  # type: ignore[arg-type]
                stream.write(b"")
                stream.write(bytearray(b"ab"))
                stream.write(memoryview(b"cd"))
                assert await stream.readexactly(4) == b"abcd"
            for fn in (ssl_connection_verify, ssl_connection_copy_peer_certificates):
                with pytest.raises(ValueError, match="is closed"):
                    fn(stream)

    try:
        run(main())
    finally:
        commssl.destroy_ssl_ctx(server_abstract.ssl_ctx_pointer)
        commssl.destroy_ssl_ctx(client_abstract.ssl_ctx_pointer)


def test_default_contexts_and_configure_callbacks(pki: PKI) -> None:
    configured: List[str] = []

    def configure_server(ctx: commssl.SSLCtxPointer) -> None:
        commssl.ssl_ctx_use_certificate_chain_file(ctx, pki.server_chain)
        commssl.ssl_ctx_use_privatekey_file(ctx, pki.server_key)
        configured.append("server ctx")

    def configure_client(ctx: commssl.SSLCtxPointer) -> None:
        commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
        configured.append("client ctx")

    async def main() -> None:
        async with serving(echo, True, ctx_configure_callback=configure_server,
                           ssl_configure_callback=lambda ssl: configured.append("server ssl")) as server:
            async with await open_tcp_stream_async(
                    "localhost", port_of(server), ssl_ctx="default", ctx_configure_callback=configure_client,
                    ssl_configure_callback=lambda ssl: configured.append("client ssl")) as stream:
                stream.write(b"default")
                assert await stream.readexactly(7) == b"default"
                assert commssl.get_verification_mode(stream.ssl_ctx) == ["verify-peer"]
            # a "default" client context trusts the system's CAs only: the test root is unknown
            with pytest.raises(SSLVerificationFailure):
                await open_tcp_stream_async("localhost", port_of(server), ssl_ctx=True)

    run(main())
    assert sorted(configured[:4]) == ["client ctx", "client ssl", "server ctx", "server ssl"]


# -- the benchmark never rots -----------------------------------------------------------


def test_benchmark_smoke() -> None:
    script = Path(__file__).resolve().parents[2] / "bench" / "bench_aio.py"
    proc = subprocess.run([sys.executable, str(script), "--smoke"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| commssl" in proc.stdout and "| asyncio ssl" in proc.stdout
    assert "handshakes/s" in proc.stdout
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert "uvloop is not installed" in proc.stdout
    else:
        assert "| uvloop ssl" in proc.stdout


def test_tls_inside_asyncio_tls(pki: PKI, server_ctx: Any) -> None:
    """start_ssl_server(..., ssl=) puts commssl's TLS inside asyncio's own TLS transport,
    which reads into commssl's buffered protocol through slices of get_buffer()'s buffer
    (they must be writable views). The client: CPython ssl outside, and inside an
    SSLObject pumped over the outer stream."""

    async def main() -> None:
        async with serving(echo, server_ctx(), ssl=cpython_server_ctx(pki)) as server:
            reader, writer = await asyncio.open_connection(HOST, port_of(server), ssl=cpython_client_ctx(pki),
                                                           server_hostname="localhost")
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            inner = cpython_client_ctx(pki).wrap_bio(incoming, outgoing, server_hostname="localhost")

            async def pump(op: Callable[[], Any]) -> Any:
                while True:
                    try:
                        return op()
                    except ssl.SSLWantReadError:
                        writer.write(outgoing.read())
                        await writer.drain()
                        data = await reader.read(65536)
                        assert data, "the server closed the connection"
                        incoming.write(data)

            await pump(inner.do_handshake)
            payload = bytes(range(256)) * 400  # several records each way
            inner.write(payload)
            writer.write(outgoing.read())
            got = b""
            while len(got) < len(payload):
                got += await pump(lambda: inner.read(65536))
            assert got == payload
            writer.close()

    run(main())


def test_the_shared_read_buffer_is_lent_to_one_stream_at_a_time() -> None:
    """A loop that asked for a buffer and has not yet reported the read keeps the shared
    one: another stream asking meanwhile gets a buffer of its own, never the same memory."""
    from commssl.aio import events as aio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = AsyncSSLStream(loop, "client"), AsyncSSLStream(loop, "client")
        view_a = a._inbuf()
        view_b = b._inbuf()
        assert aio._shared_read.owner is a
        assert not view_b.readonly and not view_a.readonly
        view_a[:4] = b"AAAA"
        view_b[:4] = b"BBBB"
        assert bytes(view_a[:4]) == b"AAAA"  # b did not write into a's buffer
        assert isinstance(view_a[8:], memoryview)  # slices stay writable views (asyncio's sslproto)
        a._connection_lost(None)  # a read that never came: the buffer is free again
        assert aio._shared_read.owner is None
        assert b._inbuf() is view_a  # now b gets the shared one
        b._connection_lost(None)

    run(main())


# -- the shared read buffer (one per thread, lent to one stream at a time), attacked -------


def _sizes(seed: int, count: int) -> List[int]:
    """Payload sizes from 1 byte to 300 KB, spread evenly on a log scale, both ends included."""
    rng = random.Random(seed)
    sizes = [int(math.exp(rng.uniform(0, math.log(300_000)))) for _ in range(count)]
    sizes[0], sizes[1] = 1, 300_000
    return sizes


def _payload(tag: int, size: int) -> bytes:
    """Distinct per connection: a stream that got another's bytes cannot match."""
    rng = random.Random(tag)
    return rng.getrandbits(8 * size).to_bytes(size, "little")


async def _echo_roundtrip(port: int, cctx: Any, payload: bytes, seed: int) -> bool:
    """Connect, write ``payload`` in random pieces while reading the echo with random read
    sizes; whether what came back is exactly what went out (SHA-256)."""
    rng = random.Random(seed)
    stream = await open_tcp_stream_async(HOST, port, ssl_ctx=cctx, handshake_timeout=60)
    async with stream:
        async def send() -> None:
            view = memoryview(payload)
            i = 0
            while i < len(payload):
                n = rng.choice((1, 100, 4096, 16_384, 65_537, 200_000))
                stream.write(view[i: i + n])
                await stream.drain()
                i += n

        async def receive() -> bytes:
            got = bytearray()
            while len(got) < len(payload):
                if rng.random() < 0.3:
                    chunk = await stream.readexactly(min(len(payload) - len(got), rng.randint(1, 70_000)))
                else:
                    chunk = await stream.read(rng.randint(1, 300_000))
                assert chunk, "end of stream before the echo was complete"
                got += chunk
            return bytes(got)

        _, got = await asyncio.gather(send(), receive())
    return len(got) == len(payload) and hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def _run_on(loop_kind: str, coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    if loop_kind == "asyncio":
        return run(coro, timeout)
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_200_concurrent_echoes_of_distinct_payloads_keep_their_bytes(
        loop_kind: str, server_ctx: Any, client_ctx: Any) -> None:
    """200 connections on one loop (both ends on it: 400 streams sharing one read buffer)
    echo distinct random payloads of 1 byte to 300 KB, written in random pieces while
    read back with random read sizes: every connection gets exactly its own bytes back."""
    if loop_kind == "uvloop":
        pytest.importorskip("uvloop")
    sctx, cctx = server_ctx(), client_ctx()
    count = 200
    sizes = _sizes(1, count)

    async def main() -> List[bool]:
        async with serving(echo, sctx, backlog=count) as server:
            port = port_of(server)
            return list(await asyncio.gather(*(
                _echo_roundtrip(port, cctx, _payload(i, sizes[i]), i) for i in range(count))))

    assert _run_on(loop_kind, main()) == [True] * count


def test_two_event_loops_in_two_threads_each_serving_the_others_clients(server_ctx: Any,
                                                                         client_ctx: Any) -> None:
    """Two threads, each with its own loop, server and 50 clients connected to the OTHER
    thread's server: every connection has one end in each thread, both read buffers (one
    per thread) are busy at once; every echo is exact."""
    sctx, cctx = server_ctx(), client_ctx()
    count = 50
    ports: List[int] = [0, 0]
    started, finished = threading.Barrier(2, timeout=30), threading.Barrier(2, timeout=60)

    async def main(k: int) -> List[bool]:
        loop = asyncio.get_running_loop()
        async with serving(echo, sctx, backlog=count) as server:
            ports[k] = port_of(server)
            await loop.run_in_executor(None, started.wait)
            sizes = _sizes(10 + k, count)
            try:
                return list(await asyncio.gather(*(
                    _echo_roundtrip(ports[1 - k], cctx, _payload(1000 * (k + 1) + i, sizes[i] // 2 + 1), i)
                    for i in range(count))))
            finally:
                # keep serving the other thread's clients until they are done too
                await loop.run_in_executor(None, finished.wait)

    futures = [peers.in_thread(run, main(k), 60) for k in range(2)]
    assert [f.result(90) for f in futures] == [[True] * count] * 2


def test_slow_server_verify_callback_while_other_connections_stream(pki: PKI, server_ctx: Any,
                                                                   client_ctx: Any) -> None:
    """The server verifies client certificates with a callback that takes a few ms per
    certificate (blocking the loop, as a callback does) while 15 connections stream
    300 KB each; 30 more connections handshake meanwhile. Every echo is exact and the
    callback saw every certificate of every handshake."""
    sctx = server_ctx(cafile=pki.root_cert)
    calls: List[int] = []

    def slow(ok: bool, store: Any) -> bool:
        calls.append(commssl.x509_store_ctx_get_error_depth(store))
        time.sleep(0.003)
        return ok

    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"], slow)
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)

    async def streamer(port: int, i: int, go: asyncio.Event) -> bool:
        payload = _payload(5000 + i, 300_000)
        stream = await open_tcp_stream_async(HOST, port, ssl_ctx=cctx, handshake_timeout=60)
        async with stream:
            go.set()  # the first streams are up: start the handshakes that block the loop

            async def send() -> None:
                for j in range(0, len(payload), 3000):  # small writes: many records in flight
                    stream.write(payload[j: j + 3000])
                    await stream.drain()
                    await asyncio.sleep(0)

            async def receive() -> bytes:
                got = bytearray()
                while len(got) < len(payload):
                    chunk = await stream.read(7777)
                    assert chunk
                    got += chunk
                return bytes(got)

            _, got = await asyncio.gather(send(), receive())
        return got == payload

    async def main() -> Tuple[List[bool], List[bool]]:
        async with serving(echo, sctx, backlog=64) as server:
            port = port_of(server)
            go = asyncio.Event()
            streams = asyncio.gather(*(streamer(port, i, go) for i in range(15)))
            await go.wait()
            joiners = await asyncio.gather(*(
                _echo_roundtrip(port, cctx, _payload(7000 + i, 5000 + 1000 * i), i) for i in range(30)))
            return list(await streams), list(joiners)

    streamed, joined = run(main(), 60)
    assert streamed == [True] * 15 and joined == [True] * 30
    assert len(calls) == 45 * 3  # root, intermediate, leaf per handshake


def test_reads_cancelled_mid_stream_lose_nothing_and_do_not_disturb_others(server_ctx: Any,
                                                                          client_ctx: Any) -> None:
    """Of 60 connections streaming distinct payloads: 20 read with asyncio.wait_for and
    tiny timeouts (reads cancelled over and over mid-stream, then retried), 20 abandon the
    stream after a cancelled read (close it half-way) and 20 read normally. The normal and
    the cancelling readers get exactly their bytes (a cancelled read takes nothing)."""
    sctx, cctx = server_ctx(), client_ctx()
    cancelled = [0]

    async def one(port: int, i: int) -> Optional[bool]:
        kind = i % 3  # 0: normal, 1: cancelling, 2: abandons
        rng = random.Random(i)
        payload = _payload(9000 + i, 20_000 + 4_000 * i)
        stream = await open_tcp_stream_async(HOST, port, ssl_ctx=cctx, handshake_timeout=60)
        async with stream:
            async def send() -> None:
                for j in range(0, len(payload), 5000):
                    stream.write(payload[j: j + 5000])
                    await stream.drain()
                    await asyncio.sleep(0)

            sender = asyncio.ensure_future(send())
            got = bytearray()
            try:
                while len(got) < len(payload):
                    if kind == 0:
                        chunk = await stream.read(rng.randint(1, 50_000))
                    else:
                        try:
                            chunk = await asyncio.wait_for(stream.read(rng.randint(1, 50_000)),
                                                           rng.choice((0, 0.0001, 0.001)))
                        except asyncio.TimeoutError:
                            cancelled[0] += 1
                            if kind == 2 and len(got) > len(payload) // 3:
                                return None  # abandon: closed half-way, mid-echo
                            continue
                    assert chunk
                    got += chunk
                await sender
            finally:
                if not sender.done():
                    sender.cancel()
                    with contextlib.suppress(BaseException):
                        await sender
        return bytes(got) == payload

    async def main() -> List[Optional[bool]]:
        async with serving(echo, sctx, backlog=64) as server:
            return list(await asyncio.gather(*(one(port_of(server), i) for i in range(60))))

    results = run(main(), 60)
    assert [r for i, r in enumerate(results) if i % 3 != 2] == [True] * 40
    assert cancelled[0] >= 20
