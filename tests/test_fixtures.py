"""Tests of the test helpers themselves: stdlib ``ssl`` and the openssl CLI only."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509.oid import ExtensionOID, NameOID

from peers import (
    OPENSSL,
    PKI,
    cpython_tls_client,
    cpython_tls_server,
    garbage_client,
    in_thread,
    openssl_client,
    openssl_client_async,
    openssl_server,
    parse_subject,
    pem_certs,
    plaintext_server,
    reset_server,
    silent_server,
)


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(cert: x509.Certificate) -> list[str]:
    return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def openssl_verify(cafile, cert, untrusted=None) -> subprocess.CompletedProcess[str]:
    args = [OPENSSL, "verify", "-CAfile", str(cafile)]
    if untrusted:
        args += ["-untrusted", str(untrusted)]
    return subprocess.run([*args, str(cert)], capture_output=True, text=True, timeout=10)


# ----------------------------------------------------------------------------- PKI


@pytest.mark.parametrize("leaf", ["server_cert", "client_cert", "nocn_cert", "wrongname_cert"])
def test_leaves_chain_to_root(pki: PKI, leaf: str) -> None:
    r = openssl_verify(pki.root_cert, getattr(pki, leaf), pki.intermediate_cert)
    assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), r.stdout + r.stderr
    # without the intermediate the chain cannot be built
    assert openssl_verify(pki.root_cert, getattr(pki, leaf)).returncode != 0


def test_untrusted_certs_do_not_verify(pki: PKI) -> None:
    assert openssl_verify(pki.root_cert, pki.other_cert, pki.intermediate_cert).returncode != 0
    assert openssl_verify(pki.root_cert, pki.selfsigned_cert).returncode != 0
    assert openssl_verify(pki.other_root_cert, pki.other_cert).returncode == 0
    assert openssl_verify(pki.selfsigned_cert, pki.selfsigned_cert).returncode == 0


def test_names_serials_and_extensions(pki: PKI) -> None:
    root, inter = load(pki.root_cert), load(pki.intermediate_cert)
    server, client = load(pki.server_cert), load(pki.client_cert)
    assert cn(root) == [pki.root_cn] and cn(inter) == [pki.intermediate_cn]
    assert inter.issuer == root.subject
    bc = inter.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    assert cn(server) == ["localhost"] and server.issuer == inter.subject
    assert server.serial_number == pki.server_serial == 0x0123456789ABCDEF0123456789ABCDEF01
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cn(client) == [pki.client_cn] and client.serial_number == pki.client_serial == 4242
    assert [a.value for a in client.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)] == [
        "client@example.test"]
    csan = client.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert csan.get_values_for_type(x509.RFC822Name) == ["alt@example.test"]
    nocn = load(pki.nocn_cert)
    assert cn(nocn) == [] and nocn.subject.rfc4514_string() == "O=NoCN"
    wrong = load(pki.wrongname_cert).extensions.get_extension_for_oid(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert wrong.get_values_for_type(x509.DNSName) == ["wrong.example"]
    assert cn(load(pki.other_root_cert)) == ["commssl other root"]
    ss = load(pki.selfsigned_cert)
    assert cn(ss) == ["selfsigned"] and ss.issuer == ss.subject
    # the CLI agrees on the 17-byte serial
    out = subprocess.run([OPENSSL, "x509", "-in", str(pki.server_cert), "-noout", "-serial"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert out.strip() == "serial=0123456789ABCDEF0123456789ABCDEF01"


def test_chain_files_and_der(pki: PKI) -> None:
    for leaf, chain in [(pki.server_cert, pki.server_chain), (pki.client_cert, pki.client_chain),
                        (pki.nocn_cert, pki.nocn_chain), (pki.wrongname_cert, pki.wrongname_chain)]:
        certs = pem_certs(chain)
        assert certs == pem_certs(leaf) + pem_certs(pki.intermediate_cert)
        assert PKI.der(chain) == PKI.der(leaf)
    assert pem_certs(pki.other_chain) == pem_certs(pki.other_cert) + pem_certs(pki.other_root_cert)
    assert pki.der(pki.server_cert) == load(pki.server_cert).public_bytes(Encoding.DER)


def test_encrypted_key(pki: PKI) -> None:
    assert pki.encrypted_key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):
        load_pem_private_key(pki.encrypted_key.read_bytes(), None)
    key = load_pem_private_key(pki.encrypted_key.read_bytes(), pki.encrypted_key_password.encode())
    assert key.public_key() == load(pki.server_cert).public_key()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # CPython can use it via a password too
    ctx.load_cert_chain(pki.server_chain, pki.encrypted_key, password="s3cret")
    with pytest.raises(ssl.SSLError):
        ctx.load_cert_chain(pki.server_chain, pki.encrypted_key, password="wrong")


# ----------------------------------------------------------------- openssl s_server


def test_cpython_client_against_openssl_server(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        # only the root is trusted: success proves the intermediate was sent
        with cpython_tls_client(server.port, cafile=pki.root_cert) as tls:
            assert tls.getpeercert(binary_form=True) == pki.der(pki.server_cert)
            tls.sendall(b"hello\n")
            assert tls.recv(100) == b"olleh\n"  # -rev echoes lines reversed
        with pytest.raises(ssl.SSLCertVerificationError):
            cpython_tls_client(server.port, cafile=pki.other_root_cert)
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            cpython_tls_client(server.port, cafile=pki.root_cert, server_hostname="wrong.example")
        # still serving after failed handshakes
        with cpython_tls_client(server.port, cafile=pki.root_cert) as tls:
            tls.sendall(b"abc\n")
            assert tls.recv(100) == b"cba\n"
    assert server.proc.poll() is not None


@pytest.mark.parametrize("printed", [
    "CN = commssl client, emailAddress = client@example.test",  # OpenSSL 3.0, 3.1
    "CN=commssl client, emailAddress=client@example.test",      # OpenSSL 3.2 and later
    "/CN=commssl client/emailAddress=client@example.test",      # -nameopt compat
])
def test_parse_subject_reads_every_openssl_spelling(printed: str) -> None:
    assert parse_subject(printed) == {"CN": "commssl client", "emailAddress": "client@example.test"}


def test_parse_subject_keeps_commas_inside_values() -> None:
    assert parse_subject("O=Acme, Inc., CN=a") == {"O": "Acme, Inc.", "CN": "a"}
    with pytest.raises(ValueError):
        parse_subject("No peer certificate")


def test_openssl_server_requires_and_reports_client_cert(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=1) as server:
        with cpython_tls_client(server.port, cafile=pki.root_cert, certfile=pki.client_chain,
                                keyfile=pki.client_key) as tls:
            tls.sendall(b"ping\n")
            assert tls.recv(100) == b"gnip\n"
        assert server.wait_for_peer_subject() == {"CN": pki.client_cn, "emailAddress": pki.client_email}
        # no client certificate: the server aborts (TLS 1.3: seen on the first read)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with cpython_tls_client(server.port, cafile=pki.root_cert) as tls:
                tls.sendall(b"ping\n")
                tls.recv(100)
        server.wait_for("peer did not return a certificate")


def test_openssl_client_against_openssl_server_www(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, verify=1,
                        www=True) as server:
        r = openssl_client(server.port, cafile=pki.root_cert, cert=pki.client_chain,
                           key=pki.client_key, servername="localhost",
                           input=b"GET / HTTP/1.0\r\n\r\n", extra_args=["-ign_eof"])
        out = r.stdout.decode()
        assert r.returncode == 0, r.stderr
        assert "Verify return code: 0 (ok)" in out and "HTTP/1.0 200 ok" in out
        assert "Client certificate" in out and "commssl client" in out  # the status page
        r = openssl_client(server.port, cafile=pki.other_root_cert)
        assert r.returncode != 0 and b"certificate verify failed" in r.stderr


def test_garbage_client_does_not_kill_openssl_server(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        # a TLS record with a truncated handshake message: s_server answers with an alert
        reply = garbage_client(server.port, b"\x16\x03\x01\x00\x04\x01\x00\x00\xff")
        assert reply[:1] == b"\x15", reply
        with cpython_tls_client(server.port, cafile=pki.root_cert) as tls:
            tls.sendall(b"ok\n")
            assert tls.recv(10) == b"ko\n"


# --------------------------------------------------------------- CPython ssl server


def test_openssl_client_against_cpython_server_with_client_cert(pki: PKI) -> None:
    def pong(tls: ssl.SSLSocket) -> None:
        assert tls.recv(100) == b"ping\n"
        tls.sendall(b"pong\n")
        tls.unwrap()

    with cpython_tls_server(pki.server_chain, pki.server_key, cafile=pki.root_cert,
                            require_client_cert=True, handler=pong) as server:
        r = openssl_client(server.port, cafile=pki.root_cert, cert=pki.client_chain,
                           key=pki.client_key, input=b"ping\n", extra_args=["-ign_eof"])
        assert r.returncode == 0, r.stderr
        assert b"Verify return code: 0 (ok)" in r.stdout and b"pong\n" in r.stdout
        server.wait_finished(1)
        assert server.peer_certs == [pki.der(pki.client_cert)] and server.errors == []

        # without a client certificate the CPython server refuses the handshake
        r = openssl_client(server.port, cafile=pki.root_cert, input=b"ping\n",
                           extra_args=["-ign_eof"])
        server.wait_finished(2)
        assert r.returncode != 0
        assert len(server.errors) == 1 and isinstance(server.errors[0], ssl.SSLError)
        assert len(server.peer_certs) == 1


def test_openssl_client_async_with_echo_server(pki: PKI) -> None:
    with cpython_tls_server(pki.server_chain, pki.server_key) as server:
        with openssl_client_async(server.port, cafile=pki.root_cert) as client:
            client.send(b"first line\n")
            client.wait_for("first line")
            client.send(b"second line\n")
            client.wait_for("second line")
            client.close_stdin()  # s_client closes the connection on stdin EOF
            assert client.wait() == 0
        server.wait_finished(1)
        assert server.errors == [] and server.peer_certs == [None]


def test_cpython_client_in_thread(pki: PKI) -> None:
    with cpython_tls_server(pki.server_chain, pki.server_key) as server:
        fut = in_thread(cpython_tls_client, server.port, cafile=pki.root_cert)
        with fut.result(timeout=10) as tls:
            tls.sendall(b"x")
            assert tls.recv(1) == b"x"
        fut = in_thread(cpython_tls_client, server.port, cafile=pki.other_root_cert)
        assert isinstance(fut.exception(timeout=10), ssl.SSLCertVerificationError)


# ------------------------------------------------------------------- raw sockets


def test_silent_server_times_out_handshake(pki: PKI) -> None:
    with silent_server() as server:
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            cpython_tls_client(server.port, cafile=pki.root_cert, timeout=0.5)
        assert 0.4 < time.monotonic() - start < 3


def test_plaintext_server_fails_handshake(pki: PKI) -> None:
    with plaintext_server() as server:
        with pytest.raises(ssl.SSLError) as exc:
            cpython_tls_client(server.port, cafile=pki.root_cert, timeout=5)
        assert not isinstance(exc.value, ssl.SSLCertVerificationError)
        assert garbage_client(server.port, b"hi") == b"HTTP/1.0 200 OK\r\n\r\nhello\n"
        server.wait_finished(2)
        assert server.errors == []


@pytest.mark.parametrize("read_first", [True, False])
def test_reset_server_resets(pki: PKI, read_first: bool) -> None:
    with reset_server(read_first=read_first) as server:
        start = time.monotonic()
        with pytest.raises(OSError) as exc:
            cpython_tls_client(server.port, cafile=pki.root_cert, timeout=5)
        assert not isinstance(exc.value, socket.timeout)
        assert time.monotonic() - start < 3
        assert garbage_client(server.port, b"x") == b""  # errors are swallowed
