"""Error conditions of blocking connections: each bad peer gets the documented
condition with OpenSSL's reason, and nothing leaks (certificates, file
descriptors, unclosed sockets)."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import socket
import ssl
import threading
import time
import warnings
from typing import Any, Callable, Iterator, List

import pytest

import commssl
from commssl import (
    SSLClosed,
    SSLCondition,
    SSLError,
    SSLFailure,
    SSLHandshakeTimeout,
    SSLVersionOrCipherMismatch,
    lib,
)
from helpers import connect
from peers import (
    HOST,
    PKI,
    Listener,
    garbage_client,
    openssl_client,
    openssl_server,
    plaintext_server,
    reset_server,
    silent_server,
)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def no_fd_leak() -> Iterator[None]:
    """The block closes every descriptor it opens by itself: the garbage collector is
    off and exceptions are kept alive (with their frames), so only explicit closes
    count, and no "unclosed socket" ResourceWarning may appear."""
    gc.collect()
    gc.disable()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            before = fd_count()
            yield
            after = fd_count()
    finally:
        gc.enable()
    assert after == before, f"{after - before} file descriptor(s) leaked"
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def assert_openssl_code(exc: SSLCondition, reason: str) -> None:
    """``ssl_code`` is the ERR_get_error() value whose reason is in the message."""
    assert isinstance(exc.ssl_code, int) and exc.ssl_code > 0
    assert lib.ERR_GET_LIB(exc.ssl_code) == lib.ERR_LIB_SSL
    text = commssl.ffi.string(lib.ERR_reason_error_string(exc.ssl_code)).decode()
    assert text == reason and reason in str(exc)


# -- the hierarchy ----------------------------------------------------------------------


def test_conditions_are_os_errors() -> None:
    for cls in (SSLClosed, SSLError, SSLFailure, SSLVersionOrCipherMismatch, SSLHandshakeTimeout,
                commssl.SSLVerificationFailure):
        assert issubclass(cls, SSLCondition) and issubclass(cls, OSError)
    assert issubclass(SSLVersionOrCipherMismatch, SSLFailure)
    assert issubclass(commssl.CertificateReleasedError, ValueError)
    exc = SSLFailure("handshake: boom", 42)
    assert str(exc) == "handshake: boom" and exc.ssl_code == 42
    with pytest.raises(OSError):  # code catching socket errors catches these too
        raise SSLHandshakeTimeout("handshake: timed out")


# -- bad servers, seen by a commssl client ----------------------------------------------------


def test_silent_peer_times_out(client_ctx: Callable[..., Any]) -> None:
    ctx = client_ctx()
    with no_fd_leak():
        with silent_server() as server:
            for timeout in (0.3, 0.6):
                start = time.monotonic()
                with pytest.raises(SSLHandshakeTimeout, match="timed out") as info:
                    connect(server.port, ctx, handshake_timeout=timeout)
                elapsed = time.monotonic() - start
                # poll() counts whole milliseconds: allow it to end a few of them early
                assert timeout - 0.005 <= elapsed < timeout + 0.5, elapsed
                assert isinstance(info.value, SSLCondition) and info.value.ssl_code is None
    assert lib.ERR_peek_last_error() == 0


def test_silent_client_times_out_a_commssl_server(server_ctx: Callable[..., Any],
                                                  commssl_server: Callable[..., Any]) -> None:
    with no_fd_leak():
        server = commssl_server(server_ctx(), handshake_timeout=0.3)
        with socket.create_connection((HOST, server.port)) as sock:
            start = time.monotonic()
            server.join()
            assert time.monotonic() - start < 0.3 + 0.5
            assert sock.recv(10) == b""  # the server closed its socket
    assert [type(e) for e in server.errors] == [SSLHandshakeTimeout]


def test_plaintext_peer(client_ctx: Callable[..., Any]) -> None:
    ctx = client_ctx()
    with no_fd_leak():
        with plaintext_server() as server:
            with pytest.raises(SSLFailure) as info:
                connect(server.port, ctx)
    assert type(info.value) is SSLFailure
    assert_openssl_code(info.value, "wrong version number")


@pytest.mark.parametrize("read_first", [True, False], ids=["after-client-hello", "before"])
def test_reset_mid_handshake(read_first: bool, client_ctx: Callable[..., Any]) -> None:
    ctx = client_ctx()
    with no_fd_leak():
        with reset_server(read_first=read_first) as server:
            if read_first:  # the reset answers our ClientHello
                with pytest.raises(SSLCondition) as info:
                    connect(server.port, ctx)
            else:  # the reset is already there when the handshake starts
                for _ in range(5):  # connect() itself may see the reset first: try again
                    try:
                        sock = socket.create_connection((HOST, server.port), timeout=5)
                        break
                    except ConnectionResetError:
                        continue
                time.sleep(0.1)
                with pytest.raises(SSLCondition) as info:
                    commssl.create_ssl_socket_stream(sock, ctx, ssl_side="client",
                                                     tlsext_host_name="localhost", handshake_timeout=5)
                assert sock.fileno() == -1  # closed by create_ssl_socket_stream
    # a reset is a system call failure, not a protocol one: SSLError, errno in the message
    assert type(info.value) is SSLError
    assert info.value.ssl_code is None
    assert str(info.value).startswith("handshake: ")
    assert f"errno {errno.ECONNRESET}" in str(info.value)


def _close_without_close_notify(tls: ssl.SSLSocket) -> None:
    tls.sendall(b"partial")
    tls.shutdown(socket.SHUT_RDWR)  # CPython: TCP FIN only, the TLS layer is dropped


@pytest.mark.parametrize("peer", ["cpython", "commssl"])
def test_peer_closes_without_close_notify(peer: str, pki: PKI, server_ctx: Callable[..., Any],
                                          client_ctx: Callable[..., Any],
                                          commssl_server: Callable[..., Any]) -> None:
    ctx = client_ctx()
    with no_fd_leak():
        if peer == "cpython":
            sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sctx.load_cert_chain(pki.server_chain, pki.server_key)

            def serve(_: Listener, conn: socket.socket) -> None:
                with sctx.wrap_socket(conn, server_side=True) as tls:
                    _close_without_close_notify(tls)

            listener = Listener(serve)
            port = listener.port
        else:
            def handler(stream: commssl.SocketStream) -> None:
                stream.write(b"partial")
                stream.socket.shutdown(socket.SHUT_RDWR)  # FIN before any close_notify

            server = commssl_server(server_ctx(), handler)
            port = server.port
        try:
            with connect(port, ctx) as stream:
                assert stream.read(7) == b"partial"
                with pytest.raises(SSLError) as info:
                    stream.read(1)
        finally:
            if peer == "cpython":
                listener.stop()
            else:
                server.join()
    assert_openssl_code(info.value, "unexpected eof while reading")
    assert lib.ERR_GET_REASON(info.value.ssl_code) == lib.SSL_R_UNEXPECTED_EOF_WHILE_READING


def test_clean_close_then_write(server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                                commssl_server: Callable[..., Any]) -> None:
    ctx = client_ctx()
    with no_fd_leak():
        server = commssl_server(server_ctx(), lambda s: s.write(b"bye"))  # then close_notify
        with connect(server.port, ctx) as stream:
            assert stream.read() == b"bye"
            assert stream.read() == b""
            server.join()
            # TLS allows writing after the peer's close_notify, but the peer is gone: the
            # first write may still reach the kernel; the next ones see the reset
            outcomes: List[Any] = []
            for _ in range(5):
                try:
                    outcomes.append(stream.write(b"more"))
                except SSLCondition as exc:
                    outcomes.append(exc)
                    break
                time.sleep(0.05)
    last = outcomes[-1]
    assert isinstance(last, SSLClosed), outcomes
    assert last.ssl_code == "closed" and "closed" in str(last)
    assert outcomes[:-1] in ([], [4])
    assert server.errors == []


# -- bad clients, seen by a commssl server -------------------------------------------------------


@pytest.mark.parametrize("data, cls, reason, alert", [
    (b"GET / HTTP/1.0\r\n\r\n", SSLFailure, "http request", None),
    (b"\x00" * 64, SSLFailure, "wrong version number", None),
    # a record holding a handshake message of the wrong type
    (b"\x16\x03\x01\x00\x05hello", SSLFailure, "unexpected message", 10),
    # a ClientHello cut short, then EOF
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", SSLError, "unexpected eof while reading", None),
    (b"", SSLError, "unexpected eof while reading", None),
], ids=["http", "zeros", "wrong-message", "truncated", "eof"])
def test_garbage_to_a_commssl_server(data: bytes, cls: type, reason: str, alert: Any,
                                     server_ctx: Callable[..., Any],
                                     commssl_server: Callable[..., Any]) -> None:
    with no_fd_leak():
        server = commssl_server(server_ctx())
        reply = garbage_client(server.port, data)
        server.join()
    assert [type(e) for e in server.errors] == [cls], server.errors
    assert_openssl_code(server.errors[0], reason)
    if alert is not None:  # a fatal alert went back first (record type 21)
        assert reply[:1] == b"\x15" and reply[-1] == alert


def test_server_survives_bad_clients(pki: PKI, server_ctx: Callable[..., Any],
                                     client_ctx: Callable[..., Any],
                                     commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx(), count=3)
    garbage_client(server.port, b"\x00" * 10)
    with pytest.raises(SSLCondition):
        connect(server.port, client_ctx(cafile=pki.other_root_cert))  # untrusted: we abort
    with connect(server.port, client_ctx()) as stream:
        stream.write(b"still here\n")
        assert stream.readline() == b"still here\n"
    server.join()
    assert [type(e) for e in server.errors] == [SSLFailure, SSLFailure]
    assert "unknown ca" in str(server.errors[1])


# -- protocol version mismatch -------------------------------------------------------------------


def test_client_capped_below_openssl_s_server(pki: PKI, client_ctx: Callable[..., Any]) -> None:
    ctx = client_ctx()
    lib.SSL_CTX_set_max_proto_version(ctx.cdata, lib.TLS1_2_VERSION)
    with no_fd_leak():
        with openssl_server(pki.server_chain, pki.server_key, extra_args=["-tls1_3"]) as s:
            with pytest.raises(SSLVersionOrCipherMismatch) as info:
                connect(s.port, ctx)
            s.wait_for("CONNECTION FAILURE")
    assert_openssl_code(info.value, "tlsv1 alert protocol version")


def test_server_capped_below_openssl_s_client(pki: PKI, server_ctx: Callable[..., Any],
                                              commssl_server: Callable[..., Any]) -> None:
    ctx = server_ctx()
    lib.SSL_CTX_set_max_proto_version(ctx.cdata, lib.TLS1_2_VERSION)
    server = commssl_server(ctx)
    r = openssl_client(server.port, cafile=pki.root_cert, extra_args=["-tls1_3"])
    server.join()
    assert r.returncode != 0 and b"alert protocol version" in r.stderr
    assert [type(e) for e in server.errors] == [SSLVersionOrCipherMismatch]
    assert_openssl_code(server.errors[0], "unsupported protocol")


def test_commssl_version_mismatch_both_sides(server_ctx: Callable[..., Any],
                                             client_ctx: Callable[..., Any],
                                             commssl_server: Callable[..., Any]) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    lib.SSL_CTX_set_max_proto_version(sctx.cdata, lib.TLS1_2_VERSION)
    lib.SSL_CTX_set_min_proto_version(cctx.cdata, lib.TLS1_3_VERSION)
    with no_fd_leak():
        server = commssl_server(sctx)
        with pytest.raises(SSLVersionOrCipherMismatch) as info:
            connect(server.port, cctx)
        server.join()
    assert "protocol version" in str(info.value)
    assert [type(e) for e in server.errors] == [SSLVersionOrCipherMismatch]


# -- many failures in a row ----------------------------------------------------------------------


def test_repeated_failures_leak_nothing(pki: PKI, client_ctx: Callable[..., Any]) -> None:
    """A batch of every client-side failure, with the peers started and stopped
    inside: descriptors, certificates and the error queue all come back."""
    ctx = client_ctx()
    mismatch = client_ctx()
    lib.SSL_CTX_set_max_proto_version(mismatch.cdata, lib.TLS1_2_VERSION)
    kept: List[BaseException] = []
    start = commssl.outstanding_certificates()
    with no_fd_leak():
        with silent_server() as silent, plaintext_server() as plain, reset_server() as reset, \
                openssl_server(pki.server_chain, pki.server_key, extra_args=["-tls1_3"]) as s13:
            for _ in range(3):
                for port, c, kw in ((silent.port, ctx, {"handshake_timeout": 0.05}),
                                    (plain.port, ctx, {}), (reset.port, ctx, {}),
                                    (s13.port, mismatch, {}),
                                    (s13.port, client_ctx(cafile=pki.other_root_cert), {})):
                    with pytest.raises(SSLCondition) as info:
                        connect(port, c, **kw)
                    kept.append(info.value)  # keeps the frames (and any socket in them) alive
                    assert lib.ERR_peek_last_error() == 0
    assert [type(e).__name__ for e in kept[:5]] == [
        "SSLHandshakeTimeout", "SSLFailure", "SSLError", "SSLVersionOrCipherMismatch",
        "SSLVerificationFailure"]
    assert [type(e) for e in kept] == [type(e) for e in kept[:5]] * 3
    assert commssl.outstanding_certificates() == start


def test_errors_in_other_threads_stay_there(client_ctx: Callable[..., Any]) -> None:
    """OpenSSL's error queue is per thread: a failure in one thread does not
    leak its reasons into another thread's next error."""
    ctx = client_ctx()
    failures: List[BaseException] = []
    with plaintext_server() as plain:
        def fail() -> None:
            try:
                connect(plain.port, ctx)
            except SSLCondition as exc:
                failures.append(exc)

        threads = [threading.Thread(target=fail) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(failures) == 4
    for exc in failures:
        assert str(exc) == "handshake: wrong version number"
