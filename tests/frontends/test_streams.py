"""Blocking socket streams: opening, attaching and detaching SSL, the handshake,
the binary stream interface, SNI and host names, timeouts; against commssl,
``openssl s_server`` and CPython ``ssl`` peers."""

from __future__ import annotations

import hashlib
import os
import random
import re
import select
import socket
import ssl
import threading
import time
from typing import Any, Callable, List, Optional

import pytest

import commssl
from commssl import SSLVerificationFailure, lib
from helpers import connect
from peers import HOST, PKI, Listener, MemoryBioPeer, bio_step, in_thread, openssl_server, silent_server

# -- opening streams ---------------------------------------------------------------------


def test_plain_tcp_stream(commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(None)  # plain TCP echo of one line
    with commssl.open_tcp_stream(HOST, server.port, timeout=5) as stream:
        assert commssl.socket_stream_ssl(stream) is None
        assert commssl.socket_stream_ctx(stream) is None
        assert commssl.socket_stream_ssl_side(stream) is None
        stream.write(b"plain text\n")
        assert stream.readline() == b"plain text\n"
        assert stream.read() == b""
    assert stream.closed


def test_default_context_verifies_against_the_system(pki: PKI, server_ctx: Callable[..., Any],
                                                      commssl_server: Callable[..., Any]) -> None:
    """ssl_ctx=True verifies: our test root is not one the system trusts."""
    server = commssl_server(server_ctx())
    with pytest.raises(SSLVerificationFailure) as info:
        connect(server.port, True, host="localhost")
    assert info.value.verify_code == lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert info.value.ssl_code == ("verification", info.value.verify_code)
    assert info.value.depth == 1  # the intermediate's issuer is unknown
    server.join()
    assert len(server.errors) == 1 and isinstance(server.errors[0], commssl.SSLFailure)
    assert "unknown ca" in str(server.errors[0])


def test_ctx_pointer_stays_the_callers(pki: PKI, server_ctx: Callable[..., Any],
                                       commssl_server: Callable[..., Any]) -> None:
    ctx = commssl.make_ssl_ctx(True, "client")
    commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
    server = commssl_server(server_ctx(), count=2)
    for _ in range(2):  # the first stream's close must not free the caller's context
        with connect(server.port, ctx) as stream:
            assert commssl.socket_stream_ctx(stream) is ctx
            assert commssl.socket_stream_ssl_side(stream) == "client"
            stream.write(b"again\n")
            assert stream.readline() == b"again\n"
    assert not ctx._dead
    commssl.destroy_ssl_ctx(ctx)
    server.join()
    assert server.errors == []


def test_abstract_contexts(pki: PKI, commssl_server: Callable[..., Any]) -> None:
    sctx = commssl.create_ssl_server_context(cert_file=pki.server_chain, key_file=pki.server_key)
    cctx = commssl.create_ssl_client_context(openssl_trusted_file=pki.root_cert)
    server = commssl_server(sctx)
    try:
        with connect(server.port, cctx, host="localhost") as stream:
            assert commssl.socket_stream_ctx(stream) is cctx.ssl_ctx_pointer
            assert commssl.ssl_connection_verify(stream) == (True, 0)
            stream.write(b"abstract\n")
            assert stream.readline() == b"abstract\n"
        server.join()
        assert server.errors == []
    finally:
        commssl.destroy_ssl_ctx(sctx.ssl_ctx_pointer)
        commssl.destroy_ssl_ctx(cctx.ssl_ctx_pointer)


def test_create_ssl_socket_stream_on_both_sides(pki: PKI, server_ctx: Callable[..., Any],
                                                client_ctx: Callable[..., Any]) -> None:
    a, b = socket.socketpair()
    sctx, cctx = server_ctx(), client_ctx()
    fut = in_thread(commssl.create_ssl_socket_stream, a, sctx, handshake_timeout=5)
    client = commssl.create_ssl_socket_stream(b, cctx, ssl_side="client", handshake_timeout=5,
                                              tlsext_host_name="localhost", timeout=5)
    server = fut.result(5)
    with server, client:
        assert commssl.socket_stream_ssl_side(server) == "server"
        assert commssl.socket_stream_ssl_side(client) == "client"
        assert commssl.ssl_connection_verify(client) == (True, 0)
        client.write(b"over a socketpair\n")
        assert server.readline() == b"over a socketpair\n"
    assert a.fileno() == -1 and b.fileno() == -1  # the streams own their sockets


def test_create_ssl_socket_stream_closes_socket_on_failure(server_ctx: Callable[..., Any]) -> None:
    a, b = socket.socketpair()
    try:
        with pytest.raises(commssl.SSLHandshakeTimeout):
            commssl.create_ssl_socket_stream(a, server_ctx(), handshake_timeout=0.2)
        assert a.fileno() == -1
    finally:
        b.close()


# -- attach / detach / handshake ------------------------------------------------------------


def test_starttls_attach_then_detach(pki: PKI, server_ctx: Callable[..., Any],
                                     client_ctx: Callable[..., Any],
                                     commssl_server: Callable[..., Any]) -> None:
    """Plain bytes, then TLS on both sides, then clean close_notify both ways and
    plain bytes again on the same TCP connection."""
    sctx = server_ctx()

    def handler(stream: commssl.SocketStream) -> List[Any]:
        seen = [stream.readline()]
        stream.write(b"go ahead\n")
        sslp = commssl.attach_ssl(stream, ssl_ctx=sctx, ssl_side="server", handshake_timeout=5)
        seen += [sslp is commssl.socket_stream_ssl(stream), stream.readline()]
        stream.write(b"secret reply\n")
        commssl.detach_ssl(stream)
        seen += [commssl.socket_stream_ssl(stream), stream.readline()]
        stream.write(b"plain again, server\n")
        return seen

    server = commssl_server(None, handler)
    with commssl.open_tcp_stream(HOST, server.port, timeout=5) as stream:
        stream.write(b"STARTTLS\n")
        assert stream.readline() == b"go ahead\n"
        sslp = commssl.attach_ssl(stream, ssl_ctx=client_ctx(), ssl_side="client",
                                  handshake_timeout=5, tlsext_host_name="localhost")
        assert isinstance(sslp, commssl.SSLPointer)
        assert commssl.socket_stream_ssl_side(stream) == "client"
        assert commssl.ssl_connection_verify(stream) == (True, 0)
        stream.write(b"secret\n")
        assert stream.readline() == b"secret reply\n"
        commssl.detach_ssl(stream)
        assert commssl.socket_stream_ssl(stream) is None
        assert commssl.socket_stream_ssl_side(stream) is None
        assert sslp._dead  # attaching made it, detaching freed it
        stream.write(b"plain again, client\n")
        assert stream.readline() == b"plain again, server\n"
        with pytest.raises(ValueError, match="no SSL"):
            commssl.ssl_connection_verify(stream)
    server.join()
    assert server.errors == []
    assert server.results == [[b"STARTTLS\n", True, b"secret\n", None, b"plain again, client\n"]]


def test_detach_against_openssl_s_server(pki: PKI, client_ctx: Callable[..., Any]) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as s:
        stream = connect(s.port, client_ctx())
        with stream:
            stream.write(b"hello\n")
            assert stream.readline() == b"olleh\n"
            commssl.detach_ssl(stream)  # raises unless s_server answered close_notify
            assert commssl.socket_stream_ssl(stream) is None
            # s_server ends the connection after close_notify: a plain, clean EOF
            assert stream.read() == b""
        s.wait_for("CONNECTION CLOSED")
        assert "error" not in s.output().lower()


def test_detach_keeps_clear_bytes_that_came_with_the_close_notify(pki: PKI,
                                                                   client_ctx: Callable[..., Any]) -> None:
    """The peer (CPython ssl over memory BIOs) sends its close_notify and then clear
    bytes in one segment. The stream reads through a buffer (one recv() serves a
    record's header and body), which then holds those clear bytes too: a detach hands
    them to the plain stream instead of losing them."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(pki.server_chain), str(pki.server_key))
    listener = socket.create_server((HOST, 0))

    def serve() -> bytes:
        conn, _ = listener.accept()
        conn.settimeout(5)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = server_ctx.wrap_bio(incoming, outgoing, server_side=True)

        def step(op: Callable[[], Any]) -> Any:
            return bio_step(conn, incoming, outgoing, op)

        with conn:
            step(tls.do_handshake)
            request = step(lambda: tls.read(100))
            try:
                tls.unwrap()  # reads nothing yet: writes close_notify, wants the client's
            except ssl.SSLWantReadError:
                pass
            conn.sendall(outgoing.read() + b"clear after close_notify\n")  # one segment
            step(tls.unwrap)  # the client's close_notify
            assert conn.recv(100) == b"plain reply\n"
            return bytes(request)

    fut = in_thread(serve)
    with listener, connect(listener.getsockname()[1], client_ctx(), tlsext_host_name="localhost") as stream:
        stream.write(b"detach now\n")
        # the close_notify and the clear line are both waiting before the detach reads
        deadline = time.monotonic() + 5
        while not stream.socket.recv(1 << 16, socket.MSG_PEEK).endswith(b"close_notify\n"):
            assert time.monotonic() < deadline, "the peer's close_notify never came"
            time.sleep(0.01)
        commssl.detach_ssl(stream)
        assert commssl.socket_stream_ssl(stream) is None
        assert stream.readline() == b"clear after close_notify\n"
        stream.write(b"plain reply\n")
        assert fut.result(timeout=10) == b"detach now\n"


def test_detach_errors(commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(None)
    with commssl.open_tcp_stream(HOST, server.port, timeout=5) as stream:
        commssl.detach_ssl(stream)  # nothing attached: nothing to do
        with pytest.raises(TypeError, match="retry_count"):
            commssl.detach_ssl(stream, retry_count="5")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="retry_count"):
            commssl.detach_ssl(stream, retry_count=-1)
        with pytest.raises(TypeError, match="retry_timeout"):
            commssl.detach_ssl(stream, retry_timeout="0.1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="stream"):
            commssl.detach_ssl(socket.socket())  # type: ignore[arg-type]
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"


def test_handshake_with_side_both(pki: PKI, server_ctx: Callable[..., Any]) -> None:
    """ssl_side="both" attaches without a handshake; the user picks the role."""
    a, b = socket.socketpair()
    fut = in_thread(commssl.create_ssl_socket_stream, a, server_ctx(), handshake_timeout=5)
    both = commssl.make_ssl_ctx(True, "both")
    try:
        with commssl.SocketStream(b, timeout=5) as stream:
            sslp = commssl.attach_ssl(stream, ssl_ctx=both, ssl_side="both")
            assert commssl.socket_stream_ssl_side(stream) == "both"
            assert not lib.SSL_is_init_finished(sslp.cdata)
            lib.SSL_set_connect_state(sslp.cdata)
            assert commssl.socket_stream_handshake(stream, timeout=5) is True
            assert commssl.socket_stream_handshake(stream) is True  # done: nothing to do
            assert commssl.ssl_connection_protocol_version(stream) == "tls-v1-3"
            with fut.result(5) as server:
                stream.write(b"both\n")
                assert server.readline() == b"both\n"
    finally:
        commssl.destroy_ssl_ctx(both)


def test_handshake_false_on_timeout() -> None:
    both = commssl.make_ssl_ctx(True, "both")
    try:
        with silent_server() as server:
            with commssl.open_tcp_stream(HOST, server.port, timeout=5) as stream:
                sslp = commssl.attach_ssl(stream, ssl_ctx=both, ssl_side="both")
                lib.SSL_set_accept_state(sslp.cdata)  # a server waits for a ClientHello
                start = time.monotonic()
                assert commssl.socket_stream_handshake(stream, timeout=0.2) is False
                assert 0.15 <= time.monotonic() - start < 1.5
                with pytest.raises(TypeError, match="timeout"):
                    commssl.socket_stream_handshake(stream, timeout="1")  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="timeout"):
                    commssl.socket_stream_handshake(stream, timeout=-1)
    finally:
        commssl.destroy_ssl_ctx(both)


def test_attach_errors(server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                       commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(None)
    with commssl.open_tcp_stream(HOST, server.port, timeout=5) as stream:
        with pytest.raises(TypeError, match="stream"):
            commssl.attach_ssl("stream")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ssl_side"):
            commssl.attach_ssl(stream, ssl_side="middle")
        with pytest.raises(TypeError, match="ssl_ctx"):
            commssl.attach_ssl(stream, ssl_ctx=42, ssl_side="client")
        with pytest.raises(TypeError, match="handshake_timeout"):
            commssl.attach_ssl(stream, ssl_ctx=server_ctx(), handshake_timeout="5")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="tlsext_host_name"):
            commssl.attach_ssl(stream, ssl_ctx=client_ctx(), ssl_side="client", tlsext_host_name=5)
        assert commssl.socket_stream_ssl(stream) is None  # none of that attached anything
        for accessor in (commssl.socket_stream_ssl, commssl.socket_stream_ctx,
                         commssl.socket_stream_ssl_side, commssl.socket_stream_handshake):
            with pytest.raises(TypeError, match="stream"):
                accessor(object())  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="no SSL"):
            commssl.socket_stream_handshake(stream)
        stream.write(b"still plain\n")
        assert stream.readline() == b"still plain\n"


def test_open_tcp_stream_argument_errors() -> None:
    with pytest.raises(TypeError, match="host"):
        commssl.open_tcp_stream(b"127.0.0.1", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="port"):
        commssl.open_tcp_stream(HOST, "443")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        commssl.open_tcp_stream(HOST, 0)
    with pytest.raises(TypeError, match="timeout"):
        commssl.open_tcp_stream(HOST, 1, timeout="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sock"):
        commssl.SocketStream("not a socket")  # type: ignore[arg-type]


# -- the stream interface ------------------------------------------------------------------

PAYLOAD = b"".join(b"line %d\n" % i for i in range(100))


def test_stream_interface(server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                          commssl_server: Callable[..., Any]) -> None:
    def handler(stream: commssl.SocketStream) -> bytes:
        stream.write(PAYLOAD)
        stream.flush()
        return stream.read()  # until the client's close_notify

    server = commssl_server(server_ctx(), handler)
    stream = connect(server.port, client_ctx())
    with stream:
        assert stream.readable() and stream.writable() and not stream.closed
        assert stream.fileno() == stream.socket.fileno() >= 0
        assert stream.readline() == b"line 0\n"
        assert stream.readline(3) == b"lin"
        assert stream.readline(None) == b"e 1\n"
        assert stream.read(7) == b"line 2\n"
        buf = bytearray(7)
        assert stream.readinto(buf) == 7 and bytes(buf) == b"line 3\n"
        got = stream.read1(5)
        assert 1 <= len(got) <= 5 and PAYLOAD[28:].startswith(got)
        assert stream.read(0) == b"" and stream.read1(0) == b""
        rest = PAYLOAD[28 + len(got):]
        assert stream.read(len(rest)) == rest
    assert stream.closed
    with pytest.raises(ValueError, match="closed"):
        stream.read(1)
    with pytest.raises(ValueError, match="closed"):
        stream.write(b"x")
    stream.close()  # closing twice is fine
    server.join()
    assert server.errors == [] and server.results == [b""]  # it saw our close_notify


def test_read_variants_until_eof(server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                                 commssl_server: Callable[..., Any]) -> None:
    def handler(stream: commssl.SocketStream) -> bytes:
        stream.write(PAYLOAD)
        return b""  # closing sends close_notify: a clean end of stream

    server = commssl_server(server_ctx(), handler)
    with connect(server.port, client_ctx()) as stream:
        assert stream.read(10) == PAYLOAD[:10]
        assert stream.readline() == PAYLOAD[10:].split(b"\n")[0] + b"\n"
        lines = list(stream)  # iteration reads lines up to the end of stream
        assert b"".join(lines) == PAYLOAD[PAYLOAD.index(b"\n", 10) + 1:]
        assert lines[-1] == b"line 99\n"
        # at the end every read reports it, without raising
        assert stream.read() == b"" and stream.read(5) == b"" and stream.read1() == b""
        assert stream.readline() == b"" and stream.readinto(bytearray(3)) == 0
    server.join()
    assert server.errors == []


def test_read_all_and_write_sizes(server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                                  commssl_server: Callable[..., Any]) -> None:
    def handler(stream: commssl.SocketStream) -> int:
        n = len(stream.readline())
        stream.write(PAYLOAD)
        return n

    server = commssl_server(server_ctx(), handler)
    with connect(server.port, client_ctx()) as stream:
        assert stream.write(bytearray(b"x" * 9) + b"\n") == 10
        assert stream.write(memoryview(b"")) == 0
        assert stream.read() == PAYLOAD  # read(-1): everything up to the close_notify
    server.join()
    assert server.results == [10]


def test_large_transfer_both_ways(server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                                  commssl_server: Callable[..., Any]) -> None:
    size = 8 * 1024 * 1024
    upload, download = os.urandom(size), os.urandom(size)

    def handler(stream: commssl.SocketStream) -> str:
        digest = hashlib.sha256(stream.read(size)).hexdigest()
        # half as one big write, half in odd-sized pieces from a memoryview
        stream.write(download[: size // 2])
        view = memoryview(download)
        for i in range(size // 2, size, 100_003):
            stream.write(view[i: i + 100_003])
        return digest

    server = commssl_server(server_ctx(), handler)
    with connect(server.port, client_ctx(), timeout=20) as stream:
        assert stream.write(upload) == size  # one call: SSL_write_ex over a full socket buffer
        received = bytearray()
        while len(received) < size:
            chunk = stream.read1(1 << 20)
            assert chunk
            received += chunk
        assert stream.read() == b""
    server.join(20)
    assert server.errors == []
    assert server.results == [hashlib.sha256(upload).hexdigest()]
    assert hashlib.sha256(received).digest() == hashlib.sha256(download).digest()


# -- SNI and host names -------------------------------------------------------------------------


def _s_server_sni(output: str) -> List[str]:
    """The host names in ``s_server -tlsextdebug``'s dumps of the server_name extension."""
    names = []
    for m in re.finditer(r'TLS client extension "server name" \(id=0\), len=\d+\n0000 - (.{48})',
                         output):
        raw = bytes.fromhex(m.group(1).replace("-", " "))
        names.append(raw[5: 5 + raw[4]].decode())
    return names


@pytest.mark.parametrize("host, kw, sent", [
    ("localhost", {}, "localhost"),
    ("localhost", {"tlsext_host_name": True}, "localhost"),
    (HOST, {"tlsext_host_name": "localhost"}, "localhost"),
    (HOST, {}, None),  # an IP literal is never sent as SNI
    ("localhost", {"tlsext_host_name": False}, None),
])
def test_sni_seen_by_openssl_s_server(host: str, kw: dict, sent: Optional[str], pki: PKI,
                                      client_ctx: Callable[..., Any]) -> None:
    with openssl_server(pki.server_chain, pki.server_key, extra_args=["-tlsextdebug"]) as s:
        with connect(s.port, client_ctx(), host=host, **kw) as stream:
            stream.write(b"sni\n")
            assert stream.readline() == b"ins\n"
        s.wait_for("CONNECTION CLOSED")
        assert _s_server_sni(s.output()) == ([sent] if sent else [])


def test_sni_mismatch_fatal_at_openssl_s_server(pki: PKI, client_ctx: Callable[..., Any]) -> None:
    extra = ["-servername", "localhost", "-servername_fatal", "-cert2", str(pki.server_cert),
             "-key2", str(pki.server_key)]
    ctx = client_ctx()
    commssl.set_verification_mode(ctx, "client", "never")
    with openssl_server(pki.server_chain, pki.server_key, extra_args=extra) as s:
        with pytest.raises(commssl.SSLFailure, match="unrecognized name"):
            connect(s.port, ctx, tlsext_host_name="other.example")
        with connect(s.port, ctx, host="localhost") as stream:  # matching SNI: accepted
            stream.write(b"ok\n")
            assert stream.readline() == b"ko\n"


@pytest.fixture
def cpython_sni_server(pki: PKI) -> Any:
    """A CPython TLS server recording the SNI of each connection (``.names``)."""
    names: List[Optional[str]] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_chain, pki.server_key)
    ctx.sni_callback = lambda sock, name, c: names.append(name)  # type: ignore[assignment]

    def serve(_: Listener, conn: socket.socket) -> None:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(100))

    listener = Listener(serve)
    listener.names = names  # type: ignore[attr-defined]
    yield listener
    listener.stop()


@pytest.mark.parametrize("host, kw, sent", [
    ("localhost", {}, "localhost"),
    (HOST, {"tlsext_host_name": "localhost"}, "localhost"),
    (HOST, {}, None),
    ("localhost", {"tlsext_host_name": False}, None),
])
def test_sni_seen_by_cpython_server(host: str, kw: dict, sent: Optional[str],
                                    cpython_sni_server: Any, client_ctx: Callable[..., Any]) -> None:
    with connect(cpython_sni_server.port, client_ctx(), host=host, **kw) as stream:
        stream.write(b"ping")
        assert stream.read(4) == b"ping"
    cpython_sni_server.wait_finished(1)
    assert cpython_sni_server.errors == []
    assert cpython_sni_server.names == [sent]


def test_host_checks(pki: PKI, server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                     commssl_server: Callable[..., Any]) -> None:
    """The name checked is tlsext_host_name when a str, else host; IP literals too."""
    ip_ok = commssl_server(server_ctx(), count=1)
    with connect(ip_ok.port, client_ctx(), host=HOST) as stream:  # SAN IP:127.0.0.1
        assert commssl.ssl_connection_verify(stream) == (True, 0)
        stream.write(b"ip\n")
        assert stream.readline() == b"ip\n"
    # nocn's certificate names DNS:localhost only: 127.0.0.1 does not match it
    nocn = commssl_server(server_ctx(chain=pki.nocn_chain, key=pki.nocn_key), count=2)
    with pytest.raises(SSLVerificationFailure) as info:
        connect(nocn.port, client_ctx(), host=HOST)
    assert info.value.verify_code == 64  # X509_V_ERR_IP_ADDRESS_MISMATCH
    assert info.value.depth == 0
    with connect(nocn.port, client_ctx(), host=HOST, tlsext_host_name="localhost") as stream:
        stream.write(b"name\n")
        assert stream.readline() == b"name\n"
    wrong = commssl_server(server_ctx(chain=pki.wrongname_chain, key=pki.wrongname_key))
    with pytest.raises(SSLVerificationFailure) as info:
        connect(wrong.port, client_ctx(), host="localhost")
    assert info.value.verify_code == lib.X509_V_ERR_HOSTNAME_MISMATCH and info.value.depth == 0


# -- timeouts --------------------------------------------------------------------------------


def test_read_timeout(server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                      commssl_server: Callable[..., Any]) -> None:
    done = threading.Event()
    server = commssl_server(server_ctx(), lambda s: done.wait(5))
    with connect(server.port, client_ctx(), timeout=0.2) as stream:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            stream.read(1)
        assert 0.15 <= time.monotonic() - start < 1.5
        with pytest.raises(TimeoutError):
            stream.readline()
        done.set()
    server.join()
    assert server.errors == []


def test_write_timeout(server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                       commssl_server: Callable[..., Any]) -> None:
    done = threading.Event()
    server = commssl_server(server_ctx(), lambda s: done.wait(5))  # never reads
    with connect(server.port, client_ctx(), timeout=0.3) as stream:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            stream.write(b"x" * (64 * 1024 * 1024))  # far beyond the socket buffers
        assert 0.25 <= time.monotonic() - start < 2
        done.set()
    server.join()


def test_detach_when_the_peer_does_not_answer(server_ctx: Callable[..., Any],
                                              client_ctx: Callable[..., Any],
                                              commssl_server: Callable[..., Any]) -> None:
    done = threading.Event()
    server = commssl_server(server_ctx(), lambda s: done.wait(5))  # never reads our close_notify
    with connect(server.port, client_ctx()) as stream:
        start = time.monotonic()
        with pytest.raises(commssl.SSLClosed, match="did not answer close_notify"):
            commssl.detach_ssl(stream, retry_count=2, retry_timeout=0.05)
        assert 0.12 <= time.monotonic() - start < 1.5  # close_notify, then 3 waits of 0.05 s
        assert commssl.socket_stream_ssl(stream) is None  # detached all the same
        done.set()
    server.join()
    assert server.errors == []


def test_a_socket_made_from_a_non_blocking_descriptor_reads_blocking() -> None:
    """socket.socket(fileno=) on an O_NONBLOCK descriptor can say gettimeout() None while
    the descriptor stays non-blocking: the stream sets the mode itself, so a plain read
    waits for data instead of raising BlockingIOError."""
    a, b = socket.socketpair()
    b.setblocking(False)
    sock = socket.socket(fileno=b.detach())
    timer = threading.Timer(0.2, a.sendall, (b"late\n",))
    timer.start()
    try:
        with commssl.SocketStream(sock, timeout=5) as stream:
            assert stream.read1(10) == b"late\n"
    finally:
        timer.join()
        a.close()


def test_kernel_tls_option_keeps_the_socket_unbuffered(pki: PKI, server_ctx: Callable[..., Any],
                                                      client_ctx: Callable[..., Any],
                                                      commssl_server: Callable[..., Any]) -> None:
    """With enable_ktls OpenSSL may hand the socket's records to the kernel: the stream then
    reads the socket directly (no read buffer holding ciphertext the kernel would never
    see), and data still flows whether or not this kernel does TLS."""
    server = commssl_server(server_ctx())  # echoes one line
    ctx = client_ctx()
    commssl.set_ssl_ctx_options(ctx, enable_ktls=True)
    with connect(server.port, ctx, tlsext_host_name="localhost") as stream:
        ssl = commssl.socket_stream_ssl(stream)
        assert ssl is not None
        rbio = lib.SSL_get_rbio(ssl.cdata)
        assert rbio == lib.SSL_get_wbio(ssl.cdata)  # one socket BIO both ways, as SSL_set_fd makes
        stream.write(b"through the kernel or not\n")
        assert stream.readline() == b"through the kernel or not\n"
    server.join()
    assert server.errors == []


# -- the read buffer in front of the socket (commssl_set_socket), attacked -------------------


def _mixed_pieces(seed: int, count: int) -> List[bytes]:
    """Many tiny writes (one small record each) and some big ones (several full records),
    back to back, random bytes (so newlines fall anywhere)."""
    rng = random.Random(seed)
    pieces = []
    for _ in range(count):
        roll = rng.random()
        n = rng.randint(1, 40) if roll < 0.75 else rng.randint(100, 6000) if roll < 0.95 \
            else rng.randint(16_000, 150_000)
        pieces.append(rng.getrandbits(8 * n).to_bytes(n, "little"))
    return pieces


def _read_mixed(stream: commssl.SocketStream, seed: int) -> bytes:
    """Read to the end of stream with a random mix of read(1), read1(3), readline, readinto
    into odd-size memoryviews of a bigger buffer, and read(n)."""
    rng = random.Random(seed)
    got = bytearray()
    while True:
        roll = rng.randrange(6)
        if roll == 0:
            chunk = stream.read(1)
        elif roll == 1:
            chunk = stream.read1(3)
        elif roll == 2:
            chunk = stream.readline()
        elif roll == 3:
            k = rng.choice((1, 3, 7, 13, 4093, 16_385, 70_001))
            backing = bytearray(k + 11)
            view = memoryview(backing)[5: 5 + k]
            n = stream.readinto(view)
            assert 0 <= n <= k
            chunk = bytes(view[:n])
            assert backing[:5] == bytes(5) and backing[5 + k:] == bytes(6)  # nothing written outside
        elif roll == 4:
            chunk = stream.read(rng.randint(1, 70_000))
        else:
            chunk = stream.read1(rng.randint(1, 100_000))
        if not chunk:
            # every kind of read sees the end, and keeps seeing it
            assert stream.read(1) == b"" and stream.read1(3) == b"" and stream.readline() == b""
            return bytes(got)
        got += chunk


@pytest.mark.parametrize("peer", ["commssl", "cpython"])
def test_interleaved_small_reads_over_small_and_big_records_lose_nothing(
        peer: str, pki: PKI, server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
        commssl_server: Callable[..., Any]) -> None:
    """Bytes beyond what one read returns stay in the 64 KiB read buffer (or decrypted in
    the SSL): thousands of tiny records and some records of several 16 KiB, read with every
    read method in random sizes, arrive each once and in order (SHA-256 of the stream)."""
    pieces = _mixed_pieces(7, 3000)
    whole = b"".join(pieces)

    def send_all(write: Callable[[bytes], Any]) -> None:
        for piece in pieces:
            write(piece)

    if peer == "commssl":
        server = commssl_server(server_ctx(), lambda s: send_all(s.write))
        port = server.port
        ctx = None
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.server_chain), str(pki.server_key))
        listener = socket.create_server((HOST, 0))
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(10)
                send_all(tls.sendall)
                tls.unwrap()  # close_notify: a clean end of stream

        fut = in_thread(serve)
    try:
        with connect(port, client_ctx(), timeout=10) as stream:
            got = _read_mixed(stream, 11)
    finally:
        if peer == "commssl":
            server.join()
            assert server.errors == []
        else:
            fut.result(10)
            listener.close()
    assert len(got) == len(whole)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(whole).hexdigest()


def _pulled_from_socket(sock: socket.socket, timeout: float = 5.0) -> None:
    """Wait until the kernel holds nothing for ``sock``: what was sent is in the stream's
    read buffer (or in its SSL) now."""
    deadline = time.monotonic() + timeout
    while select.select([sock], [], [], 0)[0]:
        assert time.monotonic() < deadline, "the stream never read what was sent"
        time.sleep(0.005)


def test_read_timeout_with_part_of_a_record_buffered_then_the_rest_comes(
        pki: PKI, client_ctx: Callable[..., Any]) -> None:
    """A read times out (timeout=0.05) while the read buffer holds a partial record: the
    header's first bytes, then the header and part of the body, then whole records
    followed by a partial one. Each time the rest arrives, the next read returns the data
    intact, in order, and nothing twice."""
    peer = MemoryBioPeer(pki)
    fut = in_thread(peer.accept_and_handshake)
    try:
        with connect(peer.port, client_ctx(), tlsext_host_name="localhost", timeout=0.05) as stream:
            fut.result(5)
            conn = peer.conn
            assert conn is not None
            messages = [bytes([65 + i]) * (1000 + 997 * i) for i in range(6)]
            records = [peer.record(m) for m in messages]
            # 1: three bytes of the header only
            conn.sendall(records[0][:3])
            with pytest.raises(TimeoutError):
                stream.read(len(messages[0]))
            _pulled_from_socket(stream.socket)
            conn.sendall(records[0][3:])
            stream.timeout = 5
            assert stream.read(len(messages[0])) == messages[0]
            # 2: the header and part of the body; a readline times out too
            stream.timeout = 0.05
            conn.sendall(records[1][:300])
            with pytest.raises(TimeoutError):
                stream.readline()
            _pulled_from_socket(stream.socket)
            with pytest.raises(TimeoutError):
                stream.read1(10)
            conn.sendall(records[1][300:])
            stream.timeout = 5
            assert stream.read(len(messages[1])) == messages[1]
            # 3: two whole records and a third cut inside its body, in one segment: the
            # whole ones are returned, the read for more times out with the data kept
            stream.timeout = 0.05
            cut = len(records[4]) // 2
            conn.sendall(records[2] + records[3] + records[4][:cut])
            want = messages[2] + messages[3] + messages[4]
            with pytest.raises(TimeoutError):
                stream.read(len(want))
            _pulled_from_socket(stream.socket)
            conn.sendall(records[4][cut:] + records[5][:1])
            stream.timeout = 5
            assert stream.read(len(want)) == want
            conn.sendall(records[5][1:])
            view = memoryview(bytearray(len(messages[5]) + 3))[1:-2]
            assert stream.readinto(view) == len(messages[5]) and bytes(view) == messages[5]
            stream.timeout = 0.05
            with pytest.raises(TimeoutError):
                stream.read1(1)  # nothing more was sent: nothing more comes
    finally:
        peer.close()


@pytest.mark.parametrize("before_detach", ["read-exactly-the-data", "read-past-the-data", "nothing"])
def test_detach_after_app_data_close_notify_and_clear_bytes_in_one_segment(
        before_detach: str, pki: PKI, client_ctx: Callable[..., Any]) -> None:
    """The peer (CPython ssl over memory BIOs) sends, in one TCP segment, application data
    records (a few small ones and one of 16 KiB), its close_notify and then clear bytes;
    the client detaches.

    When the client read the application data first (exactly its length, or with a read1
    that also met the close_notify), the detach succeeds and the clear bytes are the plain
    stream's first bytes, exactly once, with nothing of the TLS records in front of them.

    When the client detaches without reading the application data, the detach reads it
    on its way to the peer's close_notify (OpenSSL's SSL_shutdown would take it for an
    error, "application data after close notify"): the plain stream returns it, then the
    clear bytes (tests/io/test_detach.py: the same for detach_ssl_async, beyond 64 KiB,
    and past the 1 MiB limit).
    Within the buffer's 64 KiB nothing of the ciphertext reaches the plain stream."""
    peer = MemoryBioPeer(pki)
    fut = in_thread(peer.accept_and_handshake)
    clear = b"CLEAR-AFTER-CLOSE-NOTIFY\n" * 3
    try:
        with connect(peer.port, client_ctx(), tlsext_host_name="localhost") as stream:
            fut.result(5)
            conn = peer.conn
            assert conn is not None
            stream.write(b"hello\n")
            assert peer.step(lambda: peer.tls.read(100)) == b"hello\n"
            app = [b"app record %d\n" % i for i in range(5)] + [b"Z" * 16384]
            data = b"".join(app)
            segment = b"".join(peer.record(m) for m in app)
            try:
                peer.tls.unwrap()  # writes close_notify, wants the client's
            except ssl.SSLWantReadError:
                pass
            segment += peer.outgoing.read()
            conn.sendall(segment + clear)  # one segment
            deadline = time.monotonic() + 5
            while not stream.socket.recv(1 << 17, socket.MSG_PEEK).endswith(clear):
                assert time.monotonic() < deadline, "the segment never arrived"
                time.sleep(0.01)
            if before_detach == "read-exactly-the-data":
                assert stream.read(len(data)) == data
            elif before_detach == "read-past-the-data":
                got = bytearray()
                while len(got) < len(data):
                    chunk = stream.read1(1 << 20)
                    assert chunk
                    got += chunk
                assert got == data
            commssl.detach_ssl(stream)
            assert commssl.socket_stream_ssl(stream) is None
            peer.step(peer.tls.unwrap)  # the client's close_notify came
            conn.shutdown(socket.SHUT_WR)
            plain = stream.read()  # everything to the peer's FIN
            assert b"\x17\x03\x03" not in plain and b"\x15\x03\x03" not in plain
            if before_detach == "nothing":
                assert plain == data + clear, plain[:200]
            else:
                assert plain == clear, plain[:200]
    finally:
        peer.close()


def test_one_reader_and_one_writer_thread_on_one_stream_megabytes_both_ways(
        server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
        commssl_server: Callable[..., Any]) -> None:
    """A reader thread and a writer thread share one stream (the read buffer belongs to the
    reader, OpenSSL calls are serialised per SSL) against a commssl echo server: 4 MiB go
    out in random-sized writes while the reader takes them back with every read method;
    the echo is identical (SHA-256), and the server read exactly what was sent."""
    size = 4 * 1024 * 1024
    upload = os.urandom(size)

    def echo(stream: commssl.SocketStream) -> str:
        digest = hashlib.sha256()
        while True:
            chunk = stream.read1(1 << 16)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)
            stream.write(chunk)

    server = commssl_server(server_ctx(), echo)
    errors: List[BaseException] = []
    with connect(server.port, client_ctx(), timeout=20) as stream:
        def writer() -> None:
            rng = random.Random(3)
            view = memoryview(upload)
            i = 0
            try:
                while i < size:
                    n = rng.choice((1, 17, 1000, 16_384, 16_385, 65_537, 300_000))
                    assert stream.write(view[i: i + n]) == len(view[i: i + n])
                    i += n
            except BaseException as exc:  # handed to the test
                errors.append(exc)

        received = bytearray()

        def reader() -> None:
            rng = random.Random(5)
            try:
                while len(received) < size:
                    left = size - len(received)
                    roll = rng.randrange(4)
                    if roll == 0:
                        chunk = stream.read1(rng.randint(1, 200_000))
                    elif roll == 1:
                        chunk = stream.read(min(left, rng.randint(1, 100_000)))
                    elif roll == 2:
                        buf = bytearray(min(left, rng.randint(1, 50_000)))
                        chunk = bytes(buf[: stream.readinto(memoryview(buf))])
                    else:
                        chunk = stream.read(1)
                    assert chunk, "end of stream before the echo was complete"
                    received.extend(chunk)
            except BaseException as exc:  # handed to the test
                errors.append(exc)

        threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "reader or writer hung"
        assert errors == []
    server.join(20)
    assert server.errors == []
    assert server.results == [hashlib.sha256(upload).hexdigest()]
    assert len(received) == size
    assert hashlib.sha256(received).digest() == hashlib.sha256(upload).digest()


def test_detach_reads_more_than_the_buffer_of_unread_data_then_the_clear_bytes(
        pki: PKI, client_ctx: Callable[..., Any]) -> None:
    """The peer sends over 64 KiB of application data the client never read, its
    close_notify and clear bytes, in one go. detach_ssl reads that data (it is the
    reader's: it came before the close_notify) into the plain stream, in order, then the
    clear bytes; nothing of the TLS records is ever returned as plain data."""
    peer = MemoryBioPeer(pki)
    fut = in_thread(peer.accept_and_handshake)
    clear = b"CLEAR-AFTER-CLOSE-NOTIFY\n"
    try:
        with connect(peer.port, client_ctx(), tlsext_host_name="localhost") as stream:
            fut.result(5)
            conn = peer.conn
            assert conn is not None
            app = [b"app %d\n" % i for i in range(3)] + [bytes([65 + i]) * 16384 for i in range(6)]
            segment = b"".join(peer.record(m) for m in app)
            try:
                peer.tls.unwrap()  # writes close_notify, wants the client's
            except ssl.SSLWantReadError:
                pass
            conn.sendall(segment + peer.outgoing.read() + clear)
            commssl.detach_ssl(stream)
            assert commssl.socket_stream_ssl(stream) is None
            peer.step(peer.tls.unwrap)  # the client's close_notify came
            conn.shutdown(socket.SHUT_WR)
            plain = stream.read()
            assert b"\x17\x03\x03" not in plain and b"\x15\x03\x03" not in plain
            assert plain == b"".join(app) + clear
    finally:
        peer.close()
