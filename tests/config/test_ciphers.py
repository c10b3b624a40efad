"""Cipher list, TLS 1.3 ciphersuites and protocol versions (ciphers.py), against
``openssl s_server``/``s_client`` with ``-cipher``/``-ciphersuites`` and CPython ``ssl``:
what is negotiated follows the setting, and a disjoint set fails with
SSLVersionOrCipherMismatch."""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable, Optional, Tuple

import pytest

import commssl
from commssl import SSLVersionOrCipherMismatch
from helpers import connect, only_error, only_result
from peers import HOST, PKI, cpython_tls_server, in_thread, openssl_client, openssl_server

Factory = Callable[..., commssl.SSLCtxPointer]

AES128 = "ECDHE-ECDSA-AES128-GCM-SHA256"
AES256 = "ECDHE-ECDSA-AES256-GCM-SHA384"
CHACHA = "ECDHE-ECDSA-CHACHA20-POLY1305"


def negotiated(stream: commssl.SocketStream) -> Tuple[str, str]:
    return commssl.ssl_connection_protocol_version(stream), commssl.ssl_connection_cipher(stream)


def client_talk(port: int, ctx: Any, **kw: Any) -> Tuple[str, str]:
    with connect(port, ctx, **kw) as stream:
        stream.write(b"ping\n")
        assert stream.readline() in (b"ping\n", b"gnip\n")  # echo or s_server -rev
        return negotiated(stream)


def record(stream: commssl.SocketStream) -> Tuple[str, str]:
    """A commssl_server handler: echo one line, return what was negotiated."""
    stream.write(stream.readline())
    return negotiated(stream)


def cpython_client(port: int, pki: PKI, *, ciphers: Optional[str] = None,
                   minimum: Optional[ssl.TLSVersion] = None,
                   maximum: Optional[ssl.TLSVersion] = None) -> Tuple[Optional[str], Any]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.root_cert)
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    with socket.create_connection((HOST, port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"x\n")
            tls.recv(10)
            return tls.version(), tls.cipher()


# -- the cipher list (TLS 1.2) -----------------------------------------------------------------


@pytest.mark.parametrize("cipher", [AES128, AES256, CHACHA])
def test_client_cipher_list_against_s_server(pki: PKI, client_ctx: Factory, cipher: str) -> None:
    ctx = client_ctx()
    commssl.set_protocol_versions(ctx, maximum="tls-v1-2")
    commssl.set_ciphers(ctx, cipher)
    with openssl_server(pki.server_chain, pki.server_key) as server:
        assert client_talk(server.port, ctx) == ("tls-v1-2", cipher)


def test_s_server_cipher_is_followed_and_a_disjoint_client_fails(pki: PKI, client_ctx: Factory) -> None:
    only_aes256 = ["-tls1_2", "-cipher", AES256]
    with openssl_server(pki.server_chain, pki.server_key, extra_args=only_aes256) as server:
        assert client_talk(server.port, client_ctx()) == ("tls-v1-2", AES256)
        ctx = client_ctx()
        commssl.set_ciphers(ctx, f"{AES128}:{CHACHA}")
        with pytest.raises(commssl.SSLFailure, match="handshake failure"):
            connect(server.port, ctx)
        server.wait_for("no shared cipher")


def test_server_cipher_list_against_cpython_and_s_client(pki: PKI, server_ctx: Factory,
                                                         commssl_server: Any) -> None:
    ctx = server_ctx()
    commssl.set_ciphers(ctx, CHACHA)
    server = commssl_server(ctx, handler=record)
    version, cipher = in_thread(cpython_client, server.port, pki, maximum=ssl.TLSVersion.TLSv1_2).result(10)
    assert (version, cipher[0]) == ("TLSv1.2", CHACHA)
    assert only_result(server) == ("tls-v1-2", CHACHA)
    # a client offering none of the server's ciphers: the server sees the mismatch
    server = commssl_server(ctx, handler=record)
    done = openssl_client(server.port, extra_args=["-tls1_2", "-cipher", AES128])
    assert done.returncode != 0
    exc = only_error(server)
    assert isinstance(exc, SSLVersionOrCipherMismatch) and "no shared cipher" in str(exc)


def test_set_on_one_ssl_leaves_the_context(pki: PKI, client_ctx: Factory) -> None:
    ctx = client_ctx()
    commssl.set_protocol_versions(ctx, maximum="tls-v1-2")

    def configure(sslp: commssl.SSLPointer) -> None:
        commssl.set_ciphers(sslp, AES256)

    with openssl_server(pki.server_chain, pki.server_key) as server:
        commssl.set_ciphers(ctx, AES128)
        assert client_talk(server.port, ctx, ssl_configure_callback=configure) == ("tls-v1-2", AES256)
        assert client_talk(server.port, ctx) == ("tls-v1-2", AES128)  # the context's own
        # and the versions on one SSL
        assert client_talk(server.port, client_ctx(), ssl_configure_callback=lambda s: commssl.
                           set_protocol_versions(s, maximum="tls-v1-2"))[0] == "tls-v1-2"


# -- TLS 1.3 ciphersuites --------------------------------------------------------------------


@pytest.mark.parametrize("suite", ["TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"])
def test_client_ciphersuites_against_s_server(pki: PKI, client_ctx: Factory, suite: str) -> None:
    ctx = client_ctx()
    commssl.set_ciphersuites(ctx, suite)
    with openssl_server(pki.server_chain, pki.server_key) as server:
        assert client_talk(server.port, ctx) == ("tls-v1-3", suite)


def test_s_server_ciphersuites_disjoint_from_a_commssl_server(pki: PKI, server_ctx: Factory,
                                                                commssl_server: Any) -> None:
    ctx = server_ctx()
    commssl.set_ciphersuites(ctx, "TLS_AES_256_GCM_SHA384")
    commssl.set_protocol_versions(ctx, minimum="tls-v1-3")
    server = commssl_server(ctx, handler=record)
    version, cipher = in_thread(cpython_client, server.port, pki).result(10)
    assert (version, cipher[0]) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    assert only_result(server) == ("tls-v1-3", "TLS_AES_256_GCM_SHA384")
    server = commssl_server(ctx, handler=record)
    done = openssl_client(server.port, extra_args=["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"])
    assert done.returncode != 0
    assert isinstance(only_error(server), SSLVersionOrCipherMismatch)


def test_empty_ciphersuites_needs_a_tls_1_2_maximum(pki: PKI, client_ctx: Factory) -> None:
    ctx = client_ctx()
    commssl.set_ciphersuites(ctx, "")
    with openssl_server(pki.server_chain, pki.server_key) as server:
        with pytest.raises(SSLVersionOrCipherMismatch, match="no ciphers available"):
            connect(server.port, ctx)
        commssl.set_protocol_versions(ctx, maximum="tls-v1-2")
        assert client_talk(server.port, ctx)[0] == "tls-v1-2"


# -- protocol versions -----------------------------------------------------------------------


def test_maximum_and_minimum_versions(pki: PKI, client_ctx: Factory) -> None:
    ctx = client_ctx()
    assert commssl.get_protocol_versions(ctx) == ("tls-v1-2", None)
    with cpython_tls_server(pki.server_chain, pki.server_key) as server:
        assert client_talk(server.port, ctx)[0] == "tls-v1-3"
        commssl.set_protocol_versions(ctx, maximum="tls-v1-2")
        assert commssl.get_protocol_versions(ctx) == ("tls-v1-2", "tls-v1-2")
        assert client_talk(server.port, ctx)[0] == "tls-v1-2"
    ctx = client_ctx()
    commssl.set_protocol_versions(ctx, minimum="tls-v1-3")
    with openssl_server(pki.server_chain, pki.server_key, extra_args=["-tls1_2"]) as server:
        with pytest.raises(SSLVersionOrCipherMismatch, match="protocol version"):
            connect(server.port, ctx)


def test_server_maximum_against_a_tls13_only_client(pki: PKI, server_ctx: Factory,
                                                    commssl_server: Any) -> None:
    ctx = server_ctx()
    commssl.set_protocol_versions(ctx, maximum="tls-v1-2")
    server = commssl_server(ctx, handler=record)
    with pytest.raises(ssl.SSLError):
        in_thread(cpython_client, server.port, pki, minimum=ssl.TLSVersion.TLSv1_3).result(10)
    assert isinstance(only_error(server), SSLVersionOrCipherMismatch)


# -- abstract contexts -------------------------------------------------------------------------


def test_abstract_contexts_take_ciphers_and_ciphersuites(pki: PKI, commssl_server: Any) -> None:
    server_ctx = commssl.create_ssl_server_context(cert_file=pki.server_chain, key_file=pki.server_key,
                                                   ciphers=AES256, ciphersuites="TLS_AES_128_GCM_SHA256")
    client = commssl.create_ssl_client_context(openssl_trusted_file=pki.root_cert,
                                               ciphers=f"{AES128}:{AES256}")
    server = commssl_server(server_ctx, handler=record)
    assert client_talk(server.port, client) == ("tls-v1-3", "TLS_AES_128_GCM_SHA256")
    assert only_result(server) == ("tls-v1-3", "TLS_AES_128_GCM_SHA256")
    commssl.set_protocol_versions(client, maximum="tls-v1-2")  # an abstract context stands for its SSL_CTX
    server = commssl_server(server_ctx, handler=record)
    assert client_talk(server.port, client) == ("tls-v1-2", AES256)
    only_result(server)
    # kept by reset_ssl_abstract_context, which rebuilds from the same arguments
    commssl.reset_ssl_abstract_context(server_ctx)
    server = commssl_server(server_ctx, handler=record)
    assert client_talk(server.port, client) == ("tls-v1-2", AES256)
    only_result(server)
    with pytest.raises(ValueError, match="ciphers: .*'nope'"):
        commssl.create_ssl_client_context(ciphers="nope")
    with pytest.raises(ValueError, match="ciphersuites: .*'nope'"):
        commssl.create_ssl_server_context(ciphersuites="nope")
    with pytest.raises(TypeError, match="ciphers must be a str"):
        commssl.create_ssl_client_context(ciphers=["HIGH"])  # type: ignore[arg-type]


# -- refusals ------------------------------------------------------------------------------------


def test_bad_values_name_the_argument_and_change_nothing(pki: PKI, client_ctx: Factory) -> None:
    ctx = client_ctx()
    commssl.set_protocol_versions(ctx, maximum="tls-v1-2")
    commssl.set_ciphers(ctx, AES256)
    for bad, match in [("nope", "has no cipher 'nope'"), (f"{AES128}:RC4-MD5", "has no cipher 'RC4-MD5'"),
                       ("!ALL", "selects no cipher"), ("", "at least one cipher"),
                       ("TLS_AES_128_GCM_SHA256", "TLS 1.3 suites go to set_ciphersuites"),
                       ("HIGH\x00", "NUL")]:
        with pytest.raises(ValueError, match=f"^ciphers: .*{match}|^ciphers must .*{match}"):
            commssl.set_ciphers(ctx, bad)
    for bad in ("TLS_AES_128_GCM_SHA256:bogus", AES128, ":"):
        with pytest.raises(ValueError, match="^ciphersuites: .*has no TLS 1.3 suite"):
            commssl.set_ciphersuites(ctx, bad)
    with pytest.raises(TypeError, match="ciphers must be a str"):
        commssl.set_ciphers(ctx, b"HIGH")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ctx_or_ssl"):
        commssl.set_ciphers(object(), "HIGH")
    with pytest.raises(ValueError, match="maximum must be 'tls-v1-2', 'tls-v1-3' or None"):
        commssl.set_protocol_versions(ctx, maximum="tls-v1-1")
    with pytest.raises(TypeError, match="minimum must be a str or None"):
        commssl.set_protocol_versions(ctx, minimum=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs minimum or maximum"):
        commssl.set_protocol_versions(ctx)
    with pytest.raises(ValueError, match="minimum 'tls-v1-3' is above maximum 'tls-v1-2'"):
        commssl.set_protocol_versions(ctx, minimum="tls-v1-3")
    assert commssl.get_protocol_versions(ctx) == ("tls-v1-2", "tls-v1-2")
    # nothing changed: the earlier cipher is still the one negotiated
    with openssl_server(pki.server_chain, pki.server_key) as server:
        assert client_talk(server.port, ctx) == ("tls-v1-2", AES256)
    destroyed = commssl.make_ssl_ctx(True, "client")
    commssl.destroy_ssl_ctx(destroyed)
    with pytest.raises(ValueError):
        commssl.set_ciphers(destroyed, "HIGH")
