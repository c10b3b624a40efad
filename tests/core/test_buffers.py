"""The fast paths that the benchmark (bench/) measured and made cheaper keep the
documented behaviour: per-thread buffers never mix threads' results, serials
longer than the buffer still read, a vector release stops where one release
per element would, and host names still reach SNI and the name check."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

import commssl
from commssl import CertificateReleasedError, X509Pointer
from commssl.io.connection import _is_ip
from peers import OPENSSL, PKI, cpython_tls_server


def _cert_with_serial(pki: PKI, tmp_path: Path, serial: str) -> X509Pointer:
    path = tmp_path / f"serial-{abs(hash(serial))}.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-new", "-key", str(pki.selfsigned_key), "-subj", "/CN=serial",
                    "-days", "1", "-set_serial", serial, "-out", str(path)],
                   check=True, capture_output=True, timeout=10)
    cert = commssl.pem_read("X509", path)
    assert cert is not None
    return cert


def test_serial_longer_than_the_per_thread_buffer(pki: PKI, tmp_path: Path) -> None:
    for serial in ("0x7f" + "ab" * 69, "-0x" + "cd" * 80):  # 70 and 80 bytes: past the 64-byte buffer
        cert = _cert_with_serial(pki, tmp_path, serial)
        try:
            assert commssl.get_certificate_serial_number(cert) == int(serial, 0)
            short = _cert_with_serial(pki, tmp_path, "0x1234")  # the thread's buffer is still right
            try:
                assert commssl.get_certificate_serial_number(short) == 0x1234
            finally:
                commssl.release_certificate(short)
        finally:
            commssl.release_certificate(cert)


def test_serials_read_on_many_threads_do_not_mix(pki: PKI, tmp_path: Path) -> None:
    serials = [int("0x7e" + f"{i:02x}" * 19, 16) for i in range(4)] + [-5, 0, 1, 255]
    certs = [_cert_with_serial(pki, tmp_path, str(s)) for s in serials]
    wrong: List[Any] = []
    start = threading.Barrier(len(certs))

    def read(cert: X509Pointer, expected: int) -> None:
        start.wait(10)
        for _ in range(2000):
            got = commssl.get_certificate_serial_number(cert)
            if got != expected:
                wrong.append((expected, got))
                return

    threads = [threading.Thread(target=read, args=(c, s)) for c, s in zip(certs, serials)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not any(t.is_alive() for t in threads)
        assert wrong == []
    finally:
        commssl.release_certificates_vector(certs)


def test_serial_of_a_released_or_wrong_pointer_raises(pki: PKI) -> None:
    cert = commssl.pem_read("X509", pki.server_cert)
    assert cert is not None
    commssl.release_certificate(cert)
    with pytest.raises(CertificateReleasedError):
        commssl.get_certificate_serial_number(cert)
    with pytest.raises(TypeError, match="cert must be an X509Pointer"):
        commssl.get_certificate_serial_number("cert")  # type: ignore[arg-type]


def test_vector_release_with_a_bad_element_releases_nothing(pki: PKI) -> None:
    first = commssl.pem_read("X509", pki.server_cert)
    assert first is not None
    second, third = commssl.copy_certificate(first), commssl.copy_certificate(first)
    borrowed = X509Pointer(first.cdata)
    count = commssl.outstanding_certificates()
    # a borrowed pointer, or the same pointer twice, anywhere in the vector: nothing is released
    with pytest.raises(CertificateReleasedError, match="borrowed"):
        commssl.release_certificates_vector([first, None, borrowed, second])
    assert first.owned and not borrowed.released and second.owned
    with pytest.raises(CertificateReleasedError, match="twice"):
        commssl.release_certificates_vector([second, second, third])
    assert second.owned and third.owned
    assert commssl.outstanding_certificates() == count
    commssl.release_certificates_vector((first, second, third))
    assert commssl.outstanding_certificates() == count - 3


def test_copies_on_many_threads_keep_the_count(pki: PKI, server_ctx: Callable[..., Any],
                                               client_ctx: Callable[..., Any],
                                               commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx())
    stream = commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=client_ctx(), timeout=10,
                                     handshake_timeout=10, tlsext_host_name="localhost")
    try:
        start_count = commssl.outstanding_certificates()
        names: Dict[int, List[str]] = {}
        start = threading.Barrier(4)

        def copy_release(k: int) -> None:
            start.wait(10)
            for _ in range(500):
                certs = commssl.ssl_connection_copy_peer_certificates(stream)
                names[k] = [commssl.get_certificate_common_name(c) or "" for c in certs]
                commssl.release_certificates_vector(certs)

        threads = [threading.Thread(target=copy_release, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert names == {k: ["localhost", "commssl test intermediate"] for k in range(4)}
        assert commssl.outstanding_certificates() == start_count
    finally:
        stream.close()


@pytest.mark.parametrize("name, expected", [
    ("localhost", False), ("example.com", False), ("127.0.0.1", True), ("::1", True),
    ("fe80::1%eth0", True), ("1.2.3", False), ("1.2.3.4.5", False), ("", False), ("1..2.3", False),
    ("01.2.3.4", False), ("1e.2.3.4", False), ("[::1]", False), ("\uff10.1.2.3", False),
    ("\u0661.\u0661.\u0661.\u0661", False),
])
def test_ip_literal_check(name: str, expected: bool) -> None:
    assert _is_ip(name) is expected


# -- SocketStream.readinto: straight into the caller's buffer, several records per C call --


def _stream_to(port: int, ctx: Any) -> commssl.SocketStream:
    return commssl.open_tcp_stream("127.0.0.1", port, ssl_ctx=ctx, tlsext_host_name="localhost",
                                   timeout=10, handshake_timeout=10)


@pytest.mark.parametrize("size", [1, 16384, 16385, 200_000])
def test_readinto_fills_the_buffer_across_records(pki: PKI, client_ctx: Callable[..., Any],
                                                  size: int) -> None:
    payload = os.urandom(size)

    def handler(tls: ssl.SSLSocket) -> None:
        for i in range(0, size, 5000):  # many small records
            tls.sendall(payload[i:i + 5000])
        tls.recv(1)

    with cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        stream = _stream_to(server.port, client_ctx())
        try:
            buf = bytearray(size)
            assert stream.readinto(buf) == size
            assert bytes(buf) == payload
            stream.write(b"x")
        finally:
            stream.close()


def test_readinto_refuses_read_only_buffers_before_reading(pki: PKI, client_ctx: Callable[..., Any]) -> None:
    def handler(tls: ssl.SSLSocket) -> None:
        tls.sendall(b"hello")
        tls.recv(1)

    with cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        stream = _stream_to(server.port, client_ctx())
        try:
            target = b"xxxxx"
            with pytest.raises(TypeError, match="writable"):
                stream.readinto(target)
            assert target == b"xxxxx"
            assert stream.read(5) == b"hello"  # nothing was consumed
            stream.write(b"x")
        finally:
            stream.close()


def test_readinto_returns_the_data_then_zero_after_close_notify(pki: PKI,
                                                                 client_ctx: Callable[..., Any]) -> None:
    payload = os.urandom(50_000)

    def handler(tls: ssl.SSLSocket) -> None:
        tls.sendall(payload)
        tls.unwrap()  # close_notify right behind the data

    with cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        stream = _stream_to(server.port, client_ctx())
        try:
            time.sleep(0.3)  # data and close_notify wait together: one read meets both
            buf = bytearray(len(payload) + 100)
            assert stream.readinto(buf) == len(payload)
            assert bytes(buf[:len(payload)]) == payload
            assert stream.readinto(buf) == 0
            assert stream.read(10) == b""
        finally:
            stream.close()


def test_truncation_after_data_keeps_the_data_and_raises_sslerror(pki: PKI,
                                                                   client_ctx: Callable[..., Any]) -> None:
    payload = os.urandom(50_000)

    def handler(tls: ssl.SSLSocket) -> None:
        tls.sendall(payload)
        tls.shutdown(socket.SHUT_RDWR)  # TCP FIN, no close_notify: a truncation

    with cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        stream = _stream_to(server.port, client_ctx())
        try:
            time.sleep(0.3)  # the data and the FIN wait together: one read meets both
            first = bytearray(20_000)
            assert stream.readinto(first) == len(first)  # the error waits behind the data
            assert bytes(first) == payload[:20_000]
            rest = bytearray(len(payload))  # more than is left: the read meets the truncation
            with pytest.raises(commssl.SSLError, match="unexpected eof"):
                stream.readinto(rest)
            # what arrived before the error is still there, in order, then the error again
            assert stream.read(len(payload) - 20_000) == payload[20_000:]
            with pytest.raises(commssl.SSLError):
                stream.read1(10)
        finally:
            stream.close()


_CYCLE_CHILD = r"""
import gc, socket, ssl, sys, threading, time
import commssl
root, chain, key, what = sys.argv[1:5]
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(chain, key)
lsock = socket.create_server(("127.0.0.1", 0))
def serve():
    conn, _ = lsock.accept()
    tls = sctx.wrap_socket(conn, server_side=True)
    if what == "read":
        tls.sendall(b"x" * 50000)
    tls.shutdown(socket.SHUT_RDWR)  # no close_notify: the client's next I/O fails
    tls.close()
t = threading.Thread(target=serve)
t.start()
ctx = commssl.make_ssl_ctx(True, "client")
commssl.ssl_ctx_load_verify_locations(ctx, root)
s = commssl.open_tcp_stream("127.0.0.1", lsock.getsockname()[1], ssl_ctx=ctx,
                            tlsext_host_name="localhost", timeout=10, handshake_timeout=10)
t.join(10)
time.sleep(0.2)
class Holder:
    pass
h = Holder()
s.holder = h
data = bytearray(1 << 20)
try:
    for _ in range(50):
        if what == "write":
            s.write(memoryview(data)[1:])
        else:
            s.readinto(memoryview(data)[1:])
except commssl.SSLCondition as exc:
    h.err = exc  # holder -> exception -> traceback -> frame -> stream -> holder: a cycle
del s, h, data
gc.collect()
print("ok")
"""


@pytest.mark.parametrize("what", ["write", "read"])
def test_io_error_kept_in_a_cycle_does_not_crash_the_gc(pki: PKI, tmp_path: Path, what: str) -> None:
    # The buffer handed to OpenSSL is released when the call ends, not when its frame dies:
    # a memoryview still exported when the GC cleared the cycle crashed the interpreter.
    script = tmp_path / "child.py"
    script.write_text(_CYCLE_CHILD)
    done = subprocess.run([sys.executable, str(script), str(pki.root_cert), str(pki.server_chain),
                           str(pki.server_key), what], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])
