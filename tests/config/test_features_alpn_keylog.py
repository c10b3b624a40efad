"""ALPN and key logging against peers nobody here wrote: openssl s_server/s_client,
CPython ssl and GnuTLS (gnutls-serv/gnutls-cli, when installed)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any, List

import pytest

import commssl
from helpers import HS, connect_localhost
from peers import PKI, in_thread, openssl_client, openssl_server

gnutls = pytest.mark.skipif(shutil.which("gnutls-serv") is None, reason="gnutls-bin not installed")


# -- ALPN: commssl client ------------------------------------------------------------------


def test_client_alpn_with_openssl_s_server(pki: PKI, client_ctx) -> None:
    ctx = client_ctx()
    commssl.set_alpn_protocols(ctx, ["h2", "http/1.1"])
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-alpn", "http/1.1,h2")) as server:
        with connect_localhost(server.port, ctx) as stream:
            assert commssl.ssl_connection_alpn_protocol(stream) == "http/1.1"  # the server's choice
            stream.write(b"CLOSE\n")


def test_client_alpn_none_agreed_and_none_offered(pki: PKI, client_ctx) -> None:
    ctx = client_ctx()
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-alpn", "h2")) as server:
        with connect_localhost(server.port, ctx) as stream:
            assert commssl.ssl_connection_alpn_protocol(stream) is None
            stream.write(b"CLOSE\n")
        commssl.set_alpn_protocols(ctx, ["spdy/1"])
        with pytest.raises(commssl.SSLCondition):  # s_server answers no_application_protocol
            connect_localhost(server.port, ctx)


def test_client_alpn_per_ssl_with_cpython_server(pki: PKI, client_ctx) -> None:
    from peers import cpython_tls_server

    def handler(tls: ssl.SSLSocket) -> None:
        tls.sendall((tls.selected_alpn_protocol() or "-").encode() + b"\n")

    with cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        # peers' CPython server offers no ALPN: none is selected
        with connect_localhost(server.port, client_ctx(),
                    ssl_configure_callback=lambda s: commssl.set_alpn_protocols(s, ["h2"])) as stream:
            assert stream.readline() == b"-\n"
            assert commssl.ssl_connection_alpn_protocol(stream) is None
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(pki.server_chain, pki.server_key)
    sctx.set_alpn_protocols(["h2", "http/1.1"])
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve() -> str:
        conn, _ = lsock.accept()
        with sctx.wrap_socket(conn, server_side=True) as tls:
            proto = tls.selected_alpn_protocol()
            tls.sendall(b"ok\n")
            return proto or "-"

    fut = in_thread(serve)
    with connect_localhost(lsock.getsockname()[1], client_ctx(),
                ssl_configure_callback=lambda s: commssl.set_alpn_protocols(s, ["http/1.1", "h2"])) as stream:
        assert stream.readline() == b"ok\n"
        assert commssl.ssl_connection_alpn_protocol(stream) == "h2"  # CPython's server preference
    assert fut.result(HS) == "h2"
    lsock.close()


# -- ALPN: commssl server --------------------------------------------------------------------


def test_server_preference_with_openssl_s_client(pki: PKI, server_ctx, commssl_server) -> None:
    ctx = server_ctx()
    commssl.set_alpn_protocols(ctx, ["h2", "http/1.1"])
    server = commssl_server(ctx, lambda s: (commssl.ssl_connection_alpn_protocol(s), s.readline()), count=2)
    out = openssl_client(server.port, cafile=pki.root_cert, extra_args=("-alpn", "http/1.1,h2"), input=b"a\n")
    assert "ALPN protocol: h2" in out.stdout.decode(), out.stdout
    out = openssl_client(server.port, cafile=pki.root_cert, extra_args=("-alpn", "spdy/1"), input=b"b\n")
    assert "No ALPN negotiated" in out.stdout.decode(), out.stdout  # no overlap: no ALPN
    server.join()
    assert server.errors == []
    assert server.results == [("h2", b"a\n"), (None, b"b\n")]


def test_server_select_callback_with_cpython_client(pki: PKI, server_ctx, commssl_server) -> None:
    seen: List[Any] = []

    def select(conn: Any, offered: List[str]) -> str:
        seen.append((type(conn).__name__, offered))
        return offered[-1]

    ctx = server_ctx()
    commssl.set_alpn_protocols(ctx, ["h2"])  # the callback takes precedence
    commssl.set_alpn_select_callback(ctx, select)
    server = commssl_server(ctx, lambda s: commssl.ssl_connection_alpn_protocol(s))
    cctx = ssl.create_default_context(cafile=str(pki.root_cert))
    cctx.set_alpn_protocols(["h2", "http/1.1", "acme-tls/1"])

    def run() -> str:
        with socket.create_connection(("127.0.0.1", server.port), timeout=HS) as sock:
            with cctx.wrap_socket(sock, server_hostname="localhost") as tls:
                return tls.selected_alpn_protocol()

    assert in_thread(run).result(HS) == "acme-tls/1"
    server.join()
    assert server.errors == [] and server.results == ["acme-tls/1"]
    assert seen == [("SocketStream", ["h2", "http/1.1", "acme-tls/1"])]


def test_select_callback_none_means_no_alpn_and_removal_restores_the_list(pki: PKI, server_ctx,
                                                                           commssl_server) -> None:
    ctx = server_ctx()
    commssl.set_alpn_protocols(ctx, ["http/1.1"])
    commssl.set_alpn_select_callback(ctx, lambda conn, offered: None)
    server = commssl_server(ctx, lambda s: commssl.ssl_connection_alpn_protocol(s), count=2)
    out = openssl_client(server.port, cafile=pki.root_cert, extra_args=("-alpn", "http/1.1"))
    assert "No ALPN negotiated" in out.stdout.decode()
    commssl.set_alpn_select_callback(ctx, None)
    out = openssl_client(server.port, cafile=pki.root_cert, extra_args=("-alpn", "http/1.1"))
    assert "ALPN protocol: http/1.1" in out.stdout.decode()
    server.join()
    assert server.results == [None, "http/1.1"]


@gnutls
def test_alpn_with_gnutls(pki: PKI, client_ctx, server_ctx, commssl_server) -> None:
    # commssl server, gnutls-cli client
    ctx = server_ctx()
    commssl.set_alpn_protocols(ctx, ["h2", "http/1.1"])
    server = commssl_server(ctx, lambda s: (commssl.ssl_connection_alpn_protocol(s),
                                             commssl.ssl_connection_server_name(s)))
    out = subprocess.run(["gnutls-cli", "--x509cafile", str(pki.root_cert), "--alpn", "http/1.1",
                          "--alpn", "h2", "--sni-hostname", "localhost", "--verify-hostname", "localhost",
                          "-p", str(server.port), "127.0.0.1"], input=b"", capture_output=True, timeout=HS)
    server.join()
    assert server.errors == [], out.stdout + out.stderr
    assert server.results == [("h2", "localhost")]
    assert b"h2" in out.stdout + out.stderr
    # gnutls-serv server, commssl client
    cctx = client_ctx()
    commssl.set_alpn_protocols(cctx, ["http/1.1"])
    port = _free_port()
    proc = subprocess.Popen(["gnutls-serv", "--x509certfile", str(pki.server_chain), "--x509keyfile",
                             str(pki.server_key), "--alpn", "http/1.1", "--echo", "-p", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        stream = _connect_retry(port, cctx)
        with stream:
            assert commssl.ssl_connection_alpn_protocol(stream) == "http/1.1"
            stream.write(b"gnutls\n")
            assert stream.readline() == b"gnutls\n"
    finally:
        proc.kill()
        proc.wait(5)
        assert proc.stdout is not None
        proc.stdout.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connect_retry(port: int, ctx: Any) -> commssl.SocketStream:
    deadline = time.monotonic() + HS
    while True:
        try:
            return connect_localhost(port, ctx)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("protocols,exc", [
    ("h2", TypeError), ([b"h2"], TypeError), ([""], ValueError), (["x" * 256], ValueError), (None, TypeError),
])
def test_set_alpn_protocols_refuses(client_ctx, protocols: Any, exc: type) -> None:
    with pytest.raises(exc, match="protocols"):
        commssl.set_alpn_protocols(client_ctx(), protocols)


def test_set_alpn_select_callback_refuses(client_ctx) -> None:
    ctx = client_ctx()
    with pytest.raises(TypeError, match="callback"):
        commssl.set_alpn_select_callback(ctx, "h2")  # type: ignore[arg-type]
    sslp = commssl.SSLPointer(commssl.lib.SSL_new(ctx.cdata))
    try:
        with pytest.raises(TypeError, match="ctx"):
            commssl.set_alpn_select_callback(sslp, lambda c, o: None)
    finally:
        commssl.lib.SSL_free(sslp.cdata)


# -- key logging -------------------------------------------------------------------------------


def _lines(text: str) -> set:
    return {line for line in text.splitlines() if line and not line.startswith("#")}


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_keylog_file_matches_openssl_s_server(pki: PKI, client_ctx, tmp_path: Path, version: str) -> None:
    ours, theirs = tmp_path / "ours.log", tmp_path / "theirs.log"
    ctx = client_ctx()
    commssl.set_keylog(ctx, ours)
    with openssl_server(pki.server_chain, pki.server_key,
                        extra_args=(version, "-keylogfile", str(theirs))) as server:
        with connect_localhost(server.port, ctx) as stream:
            stream.write(b"abc\n")
            assert stream.readline() == b"cba\n"
            stream.write(b"CLOSE\n")
        server.wait_for("CONNECTION CLOSED|DONE")
    mine, other = _lines(ours.read_text()), _lines(theirs.read_text())
    labels = {line.split()[0] for line in mine}
    if version == "-tls1_3":
        assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels
    else:
        assert labels == {"CLIENT_RANDOM"}
    assert mine and mine <= other, (mine, other)
    assert (ours.stat().st_mode & 0o777) == 0o600


def test_keylog_callable_matches_openssl_s_client(pki: PKI, server_ctx, commssl_server,
                                                  tmp_path: Path) -> None:
    got: List[str] = []
    theirs = tmp_path / "client.log"
    ctx = server_ctx()
    commssl.set_keylog(ctx, got.append)
    server = commssl_server(ctx, lambda s: s.readline())
    openssl_client(server.port, cafile=pki.root_cert, extra_args=("-keylogfile", str(theirs)), input=b"k\n")
    server.join()
    assert server.errors == []
    assert got and all(isinstance(line, str) and "\n" not in line for line in got)
    assert set(got) <= _lines(theirs.read_text())
    # None stops
    commssl.set_keylog(ctx, None)
    n = len(got)
    server = commssl_server(ctx, lambda s: s.readline())
    openssl_client(server.port, cafile=pki.root_cert, input=b"k\n")
    server.join()
    assert len(got) == n


def test_keylog_env_only_when_asked(pki: PKI, client_ctx, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "env.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(env_file))
    plain = client_ctx()
    with openssl_server(pki.server_chain, pki.server_key) as server:
        with connect_localhost(server.port, plain) as stream:
            stream.write(b"CLOSE\n")
        assert not env_file.exists()  # never honoured unless asked
        asked = client_ctx()
        commssl.set_keylog(asked, "env")
        with connect_localhost(server.port, asked) as stream:
            stream.write(b"CLOSE\n")
    assert "CLIENT_TRAFFIC_SECRET_0" in env_file.read_text()
    monkeypatch.delenv("SSLKEYLOGFILE")
    commssl.set_keylog(asked, "env")  # unset: nothing logged


def test_keylog_asyncio_client(pki: PKI, tmp_path: Path) -> None:
    got: List[str] = []
    ctx = commssl.make_ssl_ctx(True, "client")
    commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
    commssl.set_keylog(ctx, got.append)

    async def main(port: int) -> None:
        stream = await commssl.open_tcp_stream_async("127.0.0.1", port, ssl_ctx=ctx,
                                                     tlsext_host_name="localhost", handshake_timeout=HS)
        try:
            stream.write(b"CLOSE\n")
            await stream.drain()
        finally:
            await stream.close()

    try:
        with openssl_server(pki.server_chain, pki.server_key,
                            extra_args=("-keylogfile", str(tmp_path / "s.log"))) as server:
            asyncio.run(main(server.port))
            server.wait_for("CONNECTION CLOSED|DONE")
        assert got and set(got) <= _lines((tmp_path / "s.log").read_text())
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_set_keylog_refuses(client_ctx, tmp_path: Path) -> None:
    ctx = client_ctx()
    with pytest.raises(TypeError, match="target"):
        commssl.set_keylog(ctx, 42)  # type: ignore[arg-type]
    with pytest.raises(OSError):
        commssl.set_keylog(ctx, tmp_path / "missing-dir" / "x.log")
    with pytest.raises(TypeError, match="ctx"):
        commssl.set_keylog("ctx", None)  # type: ignore[arg-type]
