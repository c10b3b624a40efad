"""TLS features the peers have: cipher, SNI and group accessors, groups (against
openssl s_server / s_client and CPython ssl; peers nobody here wrote)."""

from __future__ import annotations

import re
import ssl
import subprocess

import pytest

import commssl
from helpers import HS, connect_localhost
from peers import OPENSSL, PKI, in_thread, openssl_client, openssl_server


def has_mlkem() -> bool:
    return int(commssl.openssl_version()["loaded_number"]) >= 0x30500000


# -- accessors -----------------------------------------------------------------------------


def test_accessors_against_openssl_s_server(pki: PKI, client_ctx) -> None:
    with openssl_server(pki.server_chain, pki.server_key,
                        extra_args=("-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")) as server:
        with connect_localhost(server.port, client_ctx()) as stream:
            assert commssl.ssl_connection_cipher(stream) == "TLS_CHACHA20_POLY1305_SHA256"
            assert commssl.ssl_connection_server_name(stream) == "localhost"
            assert commssl.ssl_connection_group(stream) in ("x25519", "X25519", "X25519MLKEM768")
            stream.write(b"abc\n")
            assert stream.readline() == b"cba\n"


def test_accessors_tls12_cipher_and_ip_without_sni(pki: PKI, client_ctx) -> None:
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-tls1_2",)) as server:
        ctx = client_ctx()
        stream = commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx, handshake_timeout=HS,
                                         tlsext_host_name=False,
                                         ssl_configure_callback=lambda s: commssl.set_verification_mode(
                                             s, "client", "never"))
        with stream:
            assert re.fullmatch(r"ECDHE-(RSA|ECDSA)-[A-Z0-9-]+", commssl.ssl_connection_cipher(stream))
            assert commssl.ssl_connection_server_name(stream) is None
            assert commssl.ssl_connection_protocol_version(stream) == "tls-v1-2"
            assert commssl.ssl_connection_group(stream) == "x25519"  # ECDHE's group


def test_server_sees_sni_and_group_from_openssl_s_client(pki: PKI, server_ctx, commssl_server) -> None:
    ctx = server_ctx()

    def handler(stream: commssl.SocketStream) -> tuple:
        return (commssl.ssl_connection_server_name(stream), commssl.ssl_connection_group(stream),
                commssl.ssl_connection_cipher(stream), stream.readline())

    server = commssl_server(ctx, handler)
    out = openssl_client(server.port, cafile=pki.root_cert, servername="sni.example",
                         extra_args=("-groups", "P-256", "-verify_hostname", "localhost"), input=b"hi\n")
    server.join()
    assert server.errors == []
    assert server.results[0][:2] == ("sni.example", "secp256r1"), (server.results, out.stdout)
    assert server.results[0][2].startswith("TLS_")


def test_accessors_on_an_sslpointer_and_errors(pki: PKI, client_ctx) -> None:
    ctx = client_ctx()
    with openssl_server(pki.server_chain, pki.server_key) as server:
        with connect_localhost(server.port, ctx) as stream:
            sslp = commssl.ssl_connection_ssl_ref(stream)
            assert commssl.ssl_connection_cipher(sslp) == commssl.ssl_connection_cipher(stream)
    with pytest.raises(ValueError, match="closed"):
        commssl.ssl_connection_cipher(stream)
    with pytest.raises(TypeError, match="conn"):
        commssl.ssl_connection_group(object())


# -- groups ----------------------------------------------------------------------------------


@pytest.mark.parametrize("group,name", [("X25519", "x25519"), ("P-256", "secp256r1")])
def test_set_groups_with_openssl_s_server(pki: PKI, client_ctx, group: str, name: str) -> None:
    ctx = client_ctx()
    commssl.set_groups(ctx, [group])
    with openssl_server(pki.server_chain, pki.server_key) as server:
        with connect_localhost(server.port, ctx) as stream:
            assert commssl.ssl_connection_group(stream).lower() == name
            stream.write(b"CLOSE\n")


def test_set_groups_on_an_ssl_with_cpython_ssl(pki: PKI, server_ctx, commssl_server) -> None:
    server = commssl_server(server_ctx(), lambda s: commssl.ssl_connection_group(s),
                            ssl_configure_callback=lambda s: commssl.set_groups(s, ["P-384"]))
    cctx = ssl.create_default_context(cafile=str(pki.root_cert))

    def run() -> str:
        import socket
        with socket.create_connection(("127.0.0.1", server.port), timeout=HS) as sock:
            with cctx.wrap_socket(sock, server_hostname="localhost") as tls:
                return tls.cipher()[0]

    in_thread(run).result(HS)
    server.join()
    assert server.errors == [] and server.results == ["secp384r1"]


def test_mlkem_group_or_value_error(pki: PKI, client_ctx) -> None:
    """X25519MLKEM768 works with OpenSSL >= 3.5 and is a ValueError before: this test
    does something on every version."""
    ctx = client_ctx()
    if not has_mlkem():
        with pytest.raises(ValueError, match="groups"):
            commssl.set_groups(ctx, ["X25519MLKEM768"])
        return
    commssl.set_groups(ctx, ["X25519MLKEM768"])
    # The peer is the openssl command, whose OpenSSL may be older than commssl's (a wheel
    # carries 3.5 on a system with 3.0): then offering only the hybrid group fails cleanly.
    peer = subprocess.run([OPENSSL, "version"], capture_output=True, text=True, check=True).stdout
    with openssl_server(pki.server_chain, pki.server_key) as server:
        if tuple(int(n) for n in peer.split()[1].split(".")[:2]) < (3, 5):
            with pytest.raises(commssl.SSLCondition):
                connect_localhost(server.port, ctx)
            return
        with connect_localhost(server.port, ctx) as stream:
            assert commssl.ssl_connection_group(stream) == "X25519MLKEM768"


@pytest.mark.parametrize("groups,exc", [
    (["no-such-group"], ValueError), ([], ValueError), ("X25519", TypeError), ([b"X25519"], TypeError),
    (["X25519:P-256"], ValueError), (["X25519\x00"], ValueError),
])
def test_set_groups_refuses(client_ctx, groups: object, exc: type) -> None:
    with pytest.raises(exc, match="groups"):
        commssl.set_groups(client_ctx(), groups)  # type: ignore[arg-type]


def test_group_mismatch_is_a_mismatch_error(pki: PKI, client_ctx) -> None:
    ctx = client_ctx()
    commssl.set_groups(ctx, ["P-521"])
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-groups", "X25519")) as server:
        with pytest.raises(commssl.SSLCondition):
            connect_localhost(server.port, ctx)


# -- in-memory credentials --------------------------------------------------------------------


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def memory_server_ctx(pki: PKI, key: bytes | None = None, password: object = None) -> commssl.SSLCtxPointer:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain(ctx, pki.server_chain.read_bytes())
    commssl.ssl_ctx_use_privatekey(ctx, key if key is not None else pki.server_key.read_bytes(),
                                   password=password)  # type: ignore[arg-type]
    return ctx


def test_memory_credentials_serve_openssl_s_client(pki: PKI, commssl_server) -> None:
    ctx = memory_server_ctx(pki)
    try:
        server = commssl_server(ctx, lambda s: s.readline())
        out = openssl_client(server.port, cafile=pki.root_cert, servername="localhost",
                             extra_args=("-verify_hostname", "localhost", "-showcerts"), input=b"hi\n")
        server.join()
        assert server.errors == [] and server.results == [b"hi\n"], out.stdout
        text_out = out.stdout.decode()
        assert "Verify return code: 0 (ok)" in text_out
        assert text_out.count("BEGIN CERTIFICATE") == 2  # the leaf and the intermediate were sent
    finally:
        commssl.destroy_ssl_ctx(ctx)


@pytest.mark.parametrize("form", ["pem-pkcs8", "der-pkcs8", "der-traditional", "encrypted-pem",
                                  "encrypted-der", "encrypted-callback"])
def test_memory_private_key_forms(pki: PKI, tmp_path, form: str, commssl_server) -> None:
    import subprocess
    pw = pki.encrypted_key_password
    if form == "pem-pkcs8":
        key, password = pki.server_key.read_bytes(), None
    elif form == "der-pkcs8":
        key = subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in",
                              str(pki.server_key)], capture_output=True, check=True).stdout
        password = None
    elif form == "der-traditional":
        key = subprocess.run(["openssl", "ec", "-outform", "DER", "-in", str(pki.server_key)],
                             capture_output=True, check=True).stdout
        password = None
    elif form == "encrypted-der":
        key = subprocess.run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-outform", "DER",
                              "-passout", f"pass:{pw}", "-in", str(pki.server_key)],
                             capture_output=True, check=True).stdout
        password = pw
    else:
        key = subprocess.run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", f"pass:{pw}",
                              "-in", str(pki.server_key)], capture_output=True, check=True).stdout
        password = pw.encode() if form == "encrypted-pem" else None
    ctx = commssl.make_ssl_ctx(True, "server")
    try:
        if form == "encrypted-callback":
            commssl.set_ssl_ctx_password_callback(ctx, password=pw)
        commssl.ssl_ctx_use_certificate_chain(ctx, pki.server_chain.read_bytes())
        commssl.ssl_ctx_use_privatekey(ctx, key, password=password)
        server = commssl_server(ctx, lambda s: s.readline())
        out = openssl_client(server.port, cafile=pki.root_cert, input=b"x\n")
        server.join()
        assert server.errors == [] and server.results == [b"x\n"], out.stdout
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_memory_private_key_errors(pki: PKI) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    try:
        enc = pki.encrypted_key.read_bytes()
        with pytest.raises(commssl.SSLFailure, match="ssl_ctx_use_privatekey"):
            commssl.ssl_ctx_use_privatekey(ctx, enc)  # no password: fails, no prompt
        with pytest.raises(commssl.SSLFailure, match="ssl_ctx_use_privatekey"):
            commssl.ssl_ctx_use_privatekey(ctx, enc, password="wrong")
        with pytest.raises(commssl.SSLFailure, match="ssl_ctx_use_privatekey"):
            commssl.ssl_ctx_use_privatekey(ctx, b"not a key at all")
        with pytest.raises(TypeError, match="pem_or_der_bytes"):
            commssl.ssl_ctx_use_privatekey(ctx, str(pki.server_key))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="password"):
            commssl.ssl_ctx_use_privatekey(ctx, enc, password=123)  # type: ignore[arg-type]
        commssl.ssl_ctx_use_certificate_chain(ctx, pki.server_chain.read_bytes())
        with pytest.raises(commssl.SSLFailure, match="ssl_ctx_use_privatekey"):
            commssl.ssl_ctx_use_privatekey(ctx, pki.client_key.read_bytes())  # not the certificate's key
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_memory_certificate_chain_errors(pki: PKI) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    try:
        with pytest.raises(commssl.SSLFailure, match="no start line|PEM"):
            commssl.ssl_ctx_use_certificate_chain(ctx, b"garbage")
        damaged = pki.server_chain.read_bytes().replace(b"MII", b"MI!", 2)
        with pytest.raises(commssl.SSLFailure):
            commssl.ssl_ctx_use_certificate_chain(ctx, damaged)
        with pytest.raises(TypeError, match="pem_bytes"):
            commssl.ssl_ctx_use_certificate_chain(ctx, pki.server_chain)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="ctx"):
            commssl.ssl_ctx_use_certificate_chain(None, b"x")  # type: ignore[arg-type]
    finally:
        commssl.destroy_ssl_ctx(ctx)


@pytest.mark.parametrize("form", ["pem", "pem-several", "der"])
def test_cadata_verifies_cpython_ssl_server(pki: PKI, form: str) -> None:
    from peers import cpython_tls_server
    root = pki.root_cert.read_bytes()
    cadata = {"pem": root, "pem-several": pki.other_root_cert.read_bytes() + root, "der": _der(root)}[form]
    ctx = commssl.make_ssl_ctx(True, "client")
    try:
        commssl.ssl_ctx_load_verify_locations(ctx, cadata=cadata)
        with cpython_tls_server(pki.server_chain, pki.server_key) as server:
            with connect_localhost(server.port, ctx) as stream:
                assert commssl.ssl_connection_verify(stream) == (True, 0)
                stream.write(b"ping\n")
                assert stream.readline() == b"ping\n"
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_cadata_errors(client_ctx) -> None:
    ctx = client_ctx(cafile=None)
    with pytest.raises(commssl.SSLFailure, match="cadata"):
        commssl.ssl_ctx_load_verify_locations(ctx, cadata=b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    with pytest.raises(commssl.SSLFailure, match="cadata"):
        commssl.ssl_ctx_load_verify_locations(ctx, cadata=b"\x30\x03\x02\x01\x00")
    with pytest.raises(TypeError, match="cadata"):
        commssl.ssl_ctx_load_verify_locations(ctx, cadata="PEM text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cadata"):
        commssl.ssl_ctx_load_verify_locations(ctx, cadata=b"")
