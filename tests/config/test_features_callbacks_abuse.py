"""ALPN select and key log callbacks that misbehave: they return junk, close the
connection from inside, take long. That an exception they raise comes out of the call
that drove the handshake, on every runtime, is tests/core/test_callback_rule.py's."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, List

import pytest

import commssl
from helpers import QUICK_HS, connect_localhost
from peers import PKI, in_thread, openssl_client, openssl_server


class Boom(Exception):
    pass


def alpn_client(port: int, client_ctx: Any) -> Any:
    ctx = client_ctx()
    commssl.set_alpn_protocols(ctx, ["h2", "http/1.1"])
    return connect_localhost(port, ctx, wait=QUICK_HS)


# -- ALPN select callback ------------------------------------------------------------------


@pytest.mark.parametrize("junk,exc", [("spdy/3", ValueError), (b"h2", TypeError), (42, TypeError),
                                      ("", ValueError)])
def test_alpn_select_junk_return(server_ctx, client_ctx, commssl_server, junk: Any, exc: type) -> None:
    ctx = server_ctx()
    commssl.set_alpn_select_callback(ctx, lambda conn, offered: junk)
    server = commssl_server(ctx)
    with pytest.raises(commssl.SSLCondition):
        alpn_client(server.port, client_ctx)
    server.join()
    assert len(server.errors) == 1 and type(server.errors[0]) is exc, server.errors
    assert "ALPN select callback" in str(server.errors[0])


def test_alpn_select_junk_truthiness_raises(server_ctx, client_ctx, commssl_server) -> None:
    class Weird(str):
        def __eq__(self, other: object) -> bool:
            raise Boom("__eq__")

        __hash__ = str.__hash__

    ctx = server_ctx()
    commssl.set_alpn_select_callback(ctx, lambda conn, offered: Weird("h2"))
    server = commssl_server(ctx)
    with pytest.raises(commssl.SSLCondition):
        alpn_client(server.port, client_ctx)
    server.join()
    assert len(server.errors) == 1 and isinstance(server.errors[0], Boom)


@pytest.mark.parametrize("action", ["close", "write", "read", "detach"])
def test_alpn_select_uses_its_own_connection(server_ctx, client_ctx, commssl_server, action: str) -> None:
    """Close, I/O or detach from inside: refused with ValueError (the handshake is
    running in this thread), which aborts the handshake and propagates."""
    ctx = server_ctx()

    def select(conn: Any, offered: List[str]) -> str:
        if action == "close":
            conn.close()
        elif action == "write":
            conn.write(b"in the middle of a handshake")
        elif action == "read":
            conn.read(1)
        else:
            commssl.detach_ssl(conn)
        return offered[0]

    commssl.set_alpn_select_callback(ctx, select)
    server = commssl_server(ctx, lambda s: s.read(1))
    with pytest.raises(commssl.SSLCondition):
        alpn_client(server.port, client_ctx)
    server.join()
    assert server.results == [] and len(server.errors) == 1
    assert isinstance(server.errors[0], ValueError), server.errors
    assert "inside the connection's own ALPN select callback" in str(server.errors[0])


def test_alpn_select_takes_long(server_ctx, client_ctx, commssl_server) -> None:
    ctx = server_ctx()

    def select(conn: Any, offered: List[str]) -> str:
        time.sleep(0.6)
        return offered[0]

    commssl.set_alpn_select_callback(ctx, select)
    server = commssl_server(ctx, handshake_timeout=0.3)
    with pytest.raises((commssl.SSLCondition, OSError)):
        with alpn_client(server.port, client_ctx) as stream:
            stream.write(b"x\n")
            stream.readline()
            stream.read(1)
            raise commssl.SSLCondition("no data")
    server.join()
    assert len(server.errors) == 1 and isinstance(server.errors[0], commssl.SSLHandshakeTimeout)


def test_alpn_select_raises_in_an_asyncio_server(pki: PKI, client_ctx,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, pki.server_chain)
    commssl.ssl_ctx_use_privatekey_file(ctx, pki.server_key)
    commssl.set_alpn_select_callback(ctx, lambda conn, offered: (_ for _ in ()).throw(Boom("async alpn")))

    async def main() -> None:
        async def handler(stream: Any) -> None:
            raise AssertionError("no handshake should complete")

        server = await commssl.start_ssl_server(handler, "127.0.0.1", 0, ssl_ctx=ctx,
                                                handshake_timeout=QUICK_HS)
        port = server.sockets[0].getsockname()[1]
        try:
            fut = in_thread(alpn_client, port, client_ctx)
            while not fut.done():
                await asyncio.sleep(0.02)
            with pytest.raises(commssl.SSLCondition):
                fut.result()
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.DEBUG, logger="commssl.aio"):
        try:
            asyncio.run(main())
        finally:
            commssl.destroy_ssl_ctx(ctx)
    assert any("Boom: async alpn" in r.getMessage() for r in caplog.records), caplog.records


def test_alpn_callback_unreachable_fails_closed(pki: PKI, server_ctx) -> None:
    """An SSL made outside commssl from a context with a Python select callback:
    the callable cannot be reached, so the handshake fails."""
    ctx = server_ctx()
    commssl.set_alpn_select_callback(ctx, lambda conn, offered: offered[0])
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def serve() -> int:
        conn, _ = lsock.accept()
        with conn:
            ssl = commssl.lib.SSL_new(ctx.cdata)
            try:
                commssl.lib.SSL_set_fd(ssl, conn.fileno())
                commssl.lib.SSL_set_accept_state(ssl)
                return int(commssl.lib.SSL_do_handshake(ssl))
            finally:
                commssl.lib.SSL_free(ssl)

    fut = in_thread(serve)
    out = openssl_client(port, cafile=pki.root_cert, extra_args=("-alpn", "h2"))
    assert fut.result(QUICK_HS) <= 0
    assert out.returncode != 0 or b"no application protocol" in out.stdout + out.stderr
    lsock.close()


# -- key log callable ------------------------------------------------------------------------


def keylog_ctx(client_ctx: Any, fn: Any) -> Any:
    ctx = client_ctx()
    commssl.set_keylog(ctx, fn)
    return ctx


def test_keylog_returns_junk_is_ignored(pki: PKI, client_ctx) -> None:
    ctx = keylog_ctx(client_ctx, lambda line: object())  # the return value is not used
    with openssl_server(pki.server_chain, pki.server_key) as server:
        with commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx, tlsext_host_name="localhost",
                                     handshake_timeout=QUICK_HS) as stream:
            stream.write(b"CLOSE\n")


@pytest.mark.parametrize("action", ["close", "write", "read"])
def test_keylog_uses_its_own_connection(pki: PKI, client_ctx, action: str) -> None:
    holder: List[Any] = []

    def log(line: str) -> None:
        stream = holder[0]
        if action == "close":
            stream.close()
        elif action == "write":
            stream.write(b"in clear?\n")
        else:
            stream.read(1)

    ctx = keylog_ctx(client_ctx, log)
    with openssl_server(pki.server_chain, pki.server_key) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=QUICK_HS)
        stream = commssl.SocketStream(sock)
        holder.append(stream)
        with pytest.raises(ValueError, match="inside the connection's own key log callback"):
            commssl.attach_ssl(stream, ssl_ctx=ctx, ssl_side="client", tlsext_host_name="localhost",
                               handshake_timeout=QUICK_HS)
        with pytest.raises(ValueError):
            stream.write(b"in clear?\n")
        stream.close()
    assert "in clear" not in server.output()


def test_keylog_takes_long(pki: PKI, client_ctx) -> None:
    ctx = keylog_ctx(client_ctx, lambda line: time.sleep(0.2))
    with openssl_server(pki.server_chain, pki.server_key) as server:
        with pytest.raises(commssl.SSLHandshakeTimeout):
            commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx, tlsext_host_name="localhost",
                                    handshake_timeout=0.3)


def test_alpn_select_io_inside_an_asyncio_server(pki: PKI, client_ctx,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, pki.server_chain)
    commssl.ssl_ctx_use_privatekey_file(ctx, pki.server_key)

    def select(conn: Any, offered: List[str]) -> str:
        conn.write(b"too early")
        return offered[0]

    commssl.set_alpn_select_callback(ctx, select)

    async def main() -> None:
        async def handler(stream: Any) -> None:
            raise AssertionError("no handshake should complete")

        server = await commssl.start_ssl_server(handler, "127.0.0.1", 0, ssl_ctx=ctx,
                                                handshake_timeout=QUICK_HS)
        try:
            fut = in_thread(alpn_client, server.sockets[0].getsockname()[1], client_ctx)
            while not fut.done():
                await asyncio.sleep(0.02)
            with pytest.raises(commssl.SSLCondition):
                fut.result()
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.DEBUG, logger="commssl.aio"):
        try:
            asyncio.run(main())
        finally:
            commssl.destroy_ssl_ctx(ctx)
    assert any("inside the connection's own ALPN select callback" in r.getMessage() for r in caplog.records)


def test_keylog_of_an_ssl_made_outside_commssl_logs_nothing(pki: PKI, client_ctx) -> None:
    got: List[str] = []
    ctx = keylog_ctx(client_ctx, got.append)
    with openssl_server(pki.server_chain, pki.server_key) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=QUICK_HS)
        sock.setblocking(True)
        ssl = commssl.lib.SSL_new(ctx.cdata)
        try:
            commssl.lib.SSL_set_fd(ssl, sock.fileno())
            commssl.lib.SSL_set_connect_state(ssl)
            commssl.lib.SSL_set_verify(ssl, commssl.lib.SSL_VERIFY_NONE, commssl.ffi.NULL)
            assert commssl.lib.SSL_do_handshake(ssl) == 1
        finally:
            commssl.lib.SSL_free(ssl)
            sock.close()
    assert got == []
