"""The fast paths that the benchmark (bench/) measured and made cheaper keep the
documented behaviour: per-thread buffers never mix threads' results, serials
longer than the buffer still read, a vector release stops where one release
per element would, and host names still reach SNI and the name check."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

import commssl
from commssl import CertificateReleasedError, X509Pointer
from commssl.connection import _is_ip
from peers import OPENSSL, PKI


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


def test_vector_release_stops_where_one_release_per_element_would(pki: PKI) -> None:
    first = commssl.pem_read("X509", pki.server_cert)
    assert first is not None
    second, third = commssl.copy_certificate(first), commssl.copy_certificate(first)
    borrowed = X509Pointer(first.cdata)
    count = commssl.outstanding_certificates()
    # a borrowed pointer passes the type/released check, then refuses its release:
    # what came before it is released, what comes after is not
    with pytest.raises(CertificateReleasedError, match="borrowed"):
        commssl.release_certificates_vector([first, None, borrowed, second])
    assert first.released and not borrowed.released and second.owned
    assert commssl.outstanding_certificates() == count - 1
    # the same pointer twice: released once, then "already released"
    with pytest.raises(CertificateReleasedError, match="already released"):
        commssl.release_certificates_vector([second, second, third])
    assert second.released and third.owned
    assert commssl.outstanding_certificates() == count - 2
    commssl.release_certificates_vector((third,))
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
