"""asyncio STARTTLS: attach_ssl_async / detach_ssl_async on plain AsyncSSLStreams.

commssl on both sides (both TLS roles on each side), ``openssl s_client -starttls smtp``
against a small SMTP-speaking commssl server, and a commssl client against ``openssl
s_server`` behind a plain Python preamble relay (s_server has no server-side STARTTLS).
"""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

import commssl
import peers
from commssl import (
    AsyncSSLStream,
    attach_ssl_async,
    detach_ssl_async,
    open_tcp_stream_async,
    start_ssl_server,
)
from helpers import run
from peers import HOST, PKI


async def readline(stream: AsyncSSLStream) -> bytes:
    """One CRLF/LF line, read a byte at a time (nothing past it is taken)."""
    line = b""
    while not line.endswith(b"\n"):
        line += await stream.readexactly(1)
    return line


@pytest.mark.parametrize("client_role", ["client", "server"])
def test_upgrade_exchange_detach_plain_both_ways(client_role: str, server_ctx: Any, client_ctx: Any) -> None:
    """The connecting side speaks TLS as client or as server; then both detach and talk in clear."""
    server_role = "server" if client_role == "client" else "client"
    ctxs = {"server": server_ctx(), "client": client_ctx()}
    seen: List[Any] = []

    async def handler(stream: AsyncSSLStream) -> None:
        assert stream.ssl is None
        assert await readline(stream) == b"STARTTLS\r\n"
        stream.write(b"220 go ahead\r\n")
        await stream.drain()
        await attach_ssl_async(stream, ssl_ctx=ctxs[server_role], ssl_side=server_role,
                               tlsext_host_name="localhost" if server_role == "client" else None)
        seen.append(commssl.ssl_connection_protocol_version(stream))
        stream.write((await readline(stream)).upper())
        assert await readline(stream) == b"detach\n"
        await detach_ssl_async(stream)
        assert stream.ssl is None
        stream.write(b"in clear again\n")
        seen.append(await readline(stream))

    async def main() -> None:
        server = await start_ssl_server(handler, HOST, 0, ssl_ctx=None)
        try:
            port = server.sockets[0].getsockname()[1]
            stream = await open_tcp_stream_async(HOST, port, ssl_ctx=None)
            assert stream.ssl is None and commssl.lib is not None
            stream.write(b"STARTTLS\r\n")
            assert await readline(stream) == b"220 go ahead\r\n"
            # the peer (TLS client) sends its ClientHello right after its reply: it may come in the
            # same packet, so it is handed to OpenSSL ("tls")
            sslp = await attach_ssl_async(stream, ssl_ctx=ctxs[client_role], ssl_side=client_role,
                                          tlsext_host_name="localhost" if client_role == "client" else None,
                                          buffered="tls" if client_role == "server" else "refuse")
            assert sslp is stream.ssl and commssl.ssl_connection_ssl_ref(stream) is sslp
            if client_role == "client":
                assert commssl.ssl_connection_verify(stream) == (True, 0)
            stream.write(b"hello tls\n")
            assert await readline(stream) == b"HELLO TLS\n"
            stream.write(b"detach\n")
            await detach_ssl_async(stream)
            assert await readline(stream) == b"in clear again\n"
            stream.write(b"plain reply\n")
            await stream.drain()
            await asyncio.sleep(0.05)
            await stream.close()
        finally:
            server.close()
            await server.wait_closed()

    run(main())
    assert seen == ["tls-v1-3", b"plain reply\n"]


def test_clear_data_buffered_before_attach_is_refused_then_readable(server_ctx: Any) -> None:
    async def handler(stream: AsyncSSLStream) -> None:
        stream.write(b"220 ready\r\nINJECTED\r\n")  # both in one packet, as an attacker would
        await stream.drain()
        await asyncio.sleep(1)

    async def main() -> None:
        server = await start_ssl_server(handler, HOST, 0, ssl_ctx=None)
        try:
            stream = await open_tcp_stream_async(HOST, server.sockets[0].getsockname()[1], ssl_ctx=None)
            assert await stream.readexactly(11) == b"220 ready\r\n"
            with pytest.raises(ValueError, match="unread"):
                await attach_ssl_async(stream, ssl_ctx=server_ctx(), ssl_side="server")
            assert stream.ssl is None
            assert await stream.read(100) == b"INJECTED\r\n"  # not lost, not fed to OpenSSL
            await stream.close()
        finally:
            server.close()
            await server.wait_closed()

    run(main())


def test_bytes_after_the_reply_wait_for_openssl(server_ctx: Any, client_ctx: Any) -> None:
    """The peer starts TLS right after its reply (a ClientHello before we attach): it reaches OpenSSL."""
    async def handler(stream: AsyncSSLStream) -> None:
        stream.write(b"OK starting\r\n")
        await stream.drain()
        await asyncio.sleep(0.05)
        await attach_ssl_async(stream, ssl_ctx=client_ctx(), ssl_side="client", tlsext_host_name="localhost")
        stream.write(b"over tls\n")
        await stream.drain()
        await asyncio.sleep(0.5)

    async def main() -> None:
        server = await start_ssl_server(handler, HOST, 0, ssl_ctx=None)
        try:
            stream = await open_tcp_stream_async(HOST, server.sockets[0].getsockname()[1], ssl_ctx=None)
            assert await stream.read(100) == b"OK starting\r\n"
            await asyncio.sleep(0.3)  # the ClientHello arrives meanwhile
            await attach_ssl_async(stream, ssl_ctx=server_ctx(), ssl_side="server")
            assert await readline(stream) == b"over tls\n"
            await stream.close()
        finally:
            server.close()
            await server.wait_closed()

    run(main())


def test_failures_and_cancellation_leave_nothing_behind(server_ctx: Any, client_ctx: Any) -> None:
    def reject(ok: bool, store: Any) -> bool:
        raise RuntimeError("pinning says no")

    async def quiet(stream: AsyncSSLStream) -> None:
        await asyncio.sleep(3)

    async def tls_server(stream: AsyncSSLStream) -> None:
        try:
            await attach_ssl_async(stream, ssl_ctx=server_ctx(), handshake_timeout=5)
        except Exception:
            pass

    async def main() -> None:
        for handler in (quiet, tls_server):
            server = await start_ssl_server(handler, HOST, 0, ssl_ctx=None)
            port = server.sockets[0].getsockname()[1]
            try:
                stream = await open_tcp_stream_async(HOST, port, ssl_ctx=None)
                if handler is quiet:  # a silent peer: cancelled, then a timeout
                    with pytest.raises(asyncio.TimeoutError):
                        attach = attach_ssl_async(stream, ssl_ctx=client_ctx(), ssl_side="client")
                        await asyncio.wait_for(attach, 0.2)
                    other = await open_tcp_stream_async(HOST, port, ssl_ctx=None)
                    with pytest.raises(commssl.SSLHandshakeTimeout):
                        await attach_ssl_async(other, ssl_ctx=client_ctx(), ssl_side="client",
                                               handshake_timeout=0.2)
                    await other.close()
                else:
                    ctx = client_ctx()
                    commssl.set_verification_mode(ctx, "client", "always", reject)
                    with pytest.raises(RuntimeError, match="pinning says no"):
                        await attach_ssl_async(stream, ssl_ctx=ctx, ssl_side="client",
                                               tlsext_host_name="localhost")
                with pytest.raises(ValueError):
                    stream.write(b"never in clear")  # a failed attach leaves no plaintext path
                await stream.close()
            finally:
                server.close()
                await server.wait_closed()

    run(main())
    assert commssl.outstanding_certificates() == 0


def test_openssl_s_client_starttls_smtp(pki: PKI, server_ctx: Any) -> None:
    """A real STARTTLS peer nobody here wrote: ``openssl s_client -starttls smtp``."""
    sctx = server_ctx()
    got: List[bytes] = []

    async def smtp(stream: AsyncSSLStream) -> None:
        stream.write(b"220 commssl ESMTP\r\n")
        ehlo = await readline(stream)
        assert ehlo.upper().startswith((b"EHLO", b"HELO")), ehlo
        stream.write(b"250-commssl\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        assert (await readline(stream)).upper() == b"STARTTLS\r\n"
        stream.write(b"220 2.0.0 Ready to start TLS\r\n")
        await stream.drain()
        await attach_ssl_async(stream, ssl_ctx=sctx, ssl_side="server", handshake_timeout=10)
        line = await readline(stream)
        got.append(line)
        version = commssl.ssl_connection_protocol_version(stream).encode()
        stream.write(b"250 commssl over " + version + b"\r\n")
        await stream.drain()
        got.append(await readline(stream))
        stream.write(b"221 bye\r\n")
        await stream.drain()

    async def main() -> None:
        server = await start_ssl_server(smtp, HOST, 0, ssl_ctx=None)
        port = server.sockets[0].getsockname()[1]
        try:
            with peers.openssl_client_async(port, cafile=pki.root_cert, servername="localhost",
                                            extra_args=["-starttls", "smtp", "-crlf", "-ign_eof"]) as client:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, client.wait_for, r"Verify return code: 0")
                client.send(b"EHLO again\n")
                await loop.run_in_executor(None, client.wait_for, r"250 commssl over tls-v1-3")
                client.send(b"QUIT\n")
                await loop.run_in_executor(None, client.wait_for, r"221 bye")
        finally:
            server.close()
            await server.wait_closed()

    run(main(), timeout=60)
    assert got == [b"EHLO again\r\n", b"QUIT\r\n"]


def test_commssl_client_starttls_to_openssl_s_server(pki: PKI, client_ctx: Any) -> None:
    with peers.openssl_server(pki.server_chain, pki.server_key) as s_server:
        port = peers.starttls_relay(s_server.port)

        async def main() -> None:
            stream = await open_tcp_stream_async(HOST, port, ssl_ctx=None)
            assert await readline(stream) == b"220 relay ready\r\n"
            stream.write(b"STARTTLS\r\n")
            assert await readline(stream) == b"220 go ahead\r\n"
            await attach_ssl_async(stream, ssl_ctx=client_ctx(), ssl_side="client",
                                   tlsext_host_name="localhost", handshake_timeout=10)
            assert commssl.ssl_connection_verify(stream) == (True, 0)
            stream.write(b"abc\n")
            assert await readline(stream) == b"cba\n"  # s_server -rev
            await stream.close()

        run(main())


def test_bad_arguments(server_ctx: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="AsyncSSLStream"):
            await attach_ssl_async(object())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="AsyncSSLStream"):
            await detach_ssl_async(object())  # type: ignore[arg-type]

        async def echo(stream: AsyncSSLStream) -> None:
            await asyncio.sleep(0.5)

        server = await start_ssl_server(echo, HOST, 0, ssl_ctx=None)
        try:
            stream = await open_tcp_stream_async(HOST, server.sockets[0].getsockname()[1], ssl_ctx=None)
            with pytest.raises(ValueError, match="ssl_side"):
                await attach_ssl_async(stream, ssl_ctx=server_ctx(), ssl_side="both")
            with pytest.raises(ValueError, match="handshake_timeout"):
                await attach_ssl_async(stream, ssl_ctx=server_ctx(), handshake_timeout=-1)
            with pytest.raises(ValueError, match="attach_ssl_async"):
                await open_tcp_stream_async(HOST, 1, ssl_ctx=None, handshake_timeout=1)
            await detach_ssl_async(stream)  # plain: nothing to do
            await stream.close()
            with pytest.raises(ValueError, match="closed"):
                await attach_ssl_async(stream, ssl_ctx=server_ctx())
        finally:
            server.close()
            await server.wait_closed()

    run(main())
