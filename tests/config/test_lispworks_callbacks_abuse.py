"""The LispWorks callbacks that misbehave: cert_cb (server and client), the
client_hello_callback and the cert_request_callback return junk, use their own
connection from inside (refused), take long. That an exception they raise comes out of
the call that drove the handshake, on every runtime, is tests/core/test_callback_rule.py's."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Optional

import pytest

import commssl
from helpers import QUICK_HS
from peers import PKI, in_thread, openssl_client, openssl_server

KINDS = ["cert_cb-server", "client_hello", "cert_request", "cert_cb-client"]
SERVER_KINDS = {"cert_cb-server", "client_hello"}
OK: Any = {"cert_cb-server": None, "client_hello": True, "cert_request": True}
WHAT = {"cert_cb-server": "cert_cb", "cert_cb-client": "cert_cb", "client_hello": "client hello",
        "cert_request": "cert request"}


class Boom(Exception):
    pass


@pytest.fixture(autouse=True)
def client_pair(pki: PKI) -> None:
    """What a well-behaved client cert_cb returns: the client's chain and key."""
    OK["cert_cb-client"] = (pki.client_chain.read_bytes(), pki.client_key.read_bytes())


def make_ctx(pki: PKI, kind: str, behave: Callable[[Any], Any]) -> Any:
    """A context whose callback of ``kind`` answers ``behave(conn)``."""
    if kind == "client_hello":
        return commssl.create_ssl_server_context(cert_file=str(pki.server_chain),
                                                 key_file=str(pki.server_key),
                                                 client_hello_callback=lambda conn, name: behave(conn))
    if kind == "cert_request":
        return commssl.create_ssl_client_context(cert_file=str(pki.client_chain),
                                                 key_file=str(pki.client_key),
                                                 openssl_trusted_file=str(pki.root_cert),
                                                 cert_request_callback=behave)
    side = "server" if kind == "cert_cb-server" else "client"
    ctx = commssl.make_ssl_ctx(True, side)
    if side == "server":
        commssl.ssl_ctx_use_certificate_chain_file(ctx, pki.server_chain)
        commssl.ssl_ctx_use_privatekey_file(ctx, pki.server_key)
    else:
        commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
    commssl.set_ssl_ctx_cert_cb(ctx, lambda ssl: behave(ssl.connection if ssl.connection is not None
                                                        else ssl))
    return ctx


def drive_blocking(pki: PKI, kind: str, behave: Callable[[Any], Any], commssl_server: Any,
                   handshake_timeout: float = QUICK_HS) -> Optional[BaseException]:
    """Run one handshake; the exception the commssl side's driving call raised (None: none)."""
    ctx = make_ctx(pki, kind, behave)
    if kind in SERVER_KINDS:
        server = commssl_server(ctx, handshake_timeout=handshake_timeout)
        out = openssl_client(server.port, servername="localhost", timeout=10)
        server.join()
        assert out is not None
        return server.errors[0] if server.errors else None

    def connect() -> None:
        with commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx, tlsext_host_name="localhost",
                                     handshake_timeout=handshake_timeout, timeout=QUICK_HS) as stream:
            stream.write(b"abc\n")
            assert stream.readline() == b"cba\n"

    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=1) as server:
        try:
            connect()
        except BaseException as exc:  # noqa: BLE001 - what the test asserts on
            return exc
    return None


@pytest.mark.parametrize("kind", KINDS)
def test_well_behaved(pki: PKI, commssl_server: Any, kind: str) -> None:
    assert drive_blocking(pki, kind, lambda conn: OK[kind], commssl_server) is None


@pytest.mark.parametrize("kind", KINDS)
def test_junk_return(pki: PKI, commssl_server: Any, kind: str) -> None:
    if kind.startswith("cert_cb"):
        for junk, expected in ((42, TypeError), ((1, 2, 3), TypeError), ((b"not pem", b"no key"),
                                                                         commssl.SSLFailure)):
            got = drive_blocking(pki, kind, lambda conn, junk=junk: junk, commssl_server)
            assert type(got) is expected, (junk, got)
        return
    got = drive_blocking(pki, kind, lambda conn: 0, commssl_server)
    assert isinstance(got, commssl.SSLFailure) and got.ssl_code == kind.replace("_", "-") + "-callback"

    class Weird:
        def __bool__(self) -> bool:
            raise Boom("__bool__")

    assert isinstance(drive_blocking(pki, kind, lambda conn: Weird(), commssl_server), Boom)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ["close", "write", "read"])
def test_uses_its_own_connection(pki: PKI, commssl_server: Any, kind: str, action: str) -> None:
    def behave(conn: Any) -> Any:
        assert isinstance(conn, commssl.SocketStream)
        if action == "close":
            conn.close()
        elif action == "write":
            conn.write(b"in the middle of a handshake")
        else:
            conn.read(1)
        return OK[kind]

    got = drive_blocking(pki, kind, behave, commssl_server)
    assert isinstance(got, ValueError), got
    assert f"inside the connection's own {WHAT[kind]} callback" in str(got)


@pytest.mark.parametrize("kind", KINDS)
def test_takes_long(pki: PKI, commssl_server: Any, kind: str) -> None:
    def behave(conn: Any) -> Any:
        time.sleep(0.6)
        return OK[kind]

    got = drive_blocking(pki, kind, behave, commssl_server, handshake_timeout=0.3)
    assert isinstance(got, commssl.SSLHandshakeTimeout), got


# -- asyncio ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cert_cb-server", "client_hello"])
@pytest.mark.parametrize("behaviour", ["raise", "write", "slow"])
def test_asyncio_server(pki: PKI, kind: str, behaviour: str, caplog: pytest.LogCaptureFixture) -> None:
    def behave(conn: Any) -> Any:
        if behaviour == "raise":
            raise Boom(f"async {kind}")
        if behaviour == "write":
            conn.write(b"too early")
        time.sleep(0.6)
        return OK[kind]

    ctx = make_ctx(pki, kind, behave)
    timeout = 0.3 if behaviour == "slow" else QUICK_HS

    async def main() -> None:
        async def handler(stream: Any) -> None:
            raise AssertionError("no handshake should complete")

        server = await commssl.start_ssl_server(handler, "127.0.0.1", 0, ssl_ctx=ctx,
                                                handshake_timeout=timeout)
        try:
            fut = in_thread(openssl_client, server.sockets[0].getsockname()[1], servername="localhost")
            while not fut.done():
                await asyncio.sleep(0.02)
            assert fut.result() is not None
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.DEBUG, logger="commssl.aio"):
        asyncio.run(main())
    expected = {"raise": f"Boom: async {kind}", "write": f"inside the connection's own {WHAT[kind]} callback",
                "slow": "SSLHandshakeTimeout"}[behaviour]
    assert any(expected in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("kind", ["cert_request", "cert_cb-client"])
@pytest.mark.parametrize("behaviour", ["write", "slow"])  # "raise": test_callback_rule.py
def test_asyncio_client(pki: PKI, kind: str, behaviour: str) -> None:
    def behave(conn: Any) -> Any:
        if behaviour == "write":
            conn.write(b"too early")
        time.sleep(0.6)
        return OK[kind]

    ctx = make_ctx(pki, kind, behave)

    async def main(port: int) -> None:
        stream = await commssl.open_tcp_stream_async("127.0.0.1", port, ssl_ctx=ctx,
                                                     tlsext_host_name="localhost",
                                                     handshake_timeout=(0.3 if behaviour == "slow"
                                                                        else QUICK_HS))
        stream.close()

    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=1) as server:
        with pytest.raises(BaseException) as info:
            asyncio.run(main(server.port))
    if behaviour == "write":
        assert isinstance(info.value, (ValueError, RuntimeError)), info.value
    else:
        assert isinstance(info.value, commssl.SSLHandshakeTimeout), info.value
