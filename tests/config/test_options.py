"""set_ssl_ctx_options: LispWorks' keywords and every SSL_OP_* name, against
openssl s_server (a client context with no_tlsv1_3 negotiates TLS 1.2)."""

from __future__ import annotations

import pytest

import commssl
from commssl.config.options import OPTIONS
from helpers import HS
from peers import PKI, openssl_server

LISPWORKS_KEYWORDS = (
    "microsoft_sess_id_bug netscape_challenge_bug netscape_reuse_cipher_change_bug "
    "sslref2_reuse_cert_type_bug microsoft_big_sslv3_buffer msie_sslv2_rsa_padding "
    "ssleay_080_client_dh_bug tls_d5_bug tls_block_padding_bug dont_insert_empty_fragments all "
    "no_session_resumption_on_renegotiation single_dh_use ephemeral_rsa cipher_server_preference "
    "tls_rollback_bug no_sslv2 no_sslv3 no_tlsv1 pkcs1_check_1 pkcs1_check_2 netscape_ca_dn_bug "
    "netscape_demo_cipher_change_bug").split()


def test_every_lispworks_keyword_is_accepted(client_ctx) -> None:
    ctx = client_ctx()
    before = commssl.set_ssl_ctx_options(ctx)
    after = commssl.set_ssl_ctx_options(ctx, **{name: True for name in LISPWORKS_KEYWORDS})
    assert after & before == before  # only ever added
    assert after & OPTIONS["no_tlsv1"] and after & OPTIONS["cipher_server_preference"]
    assert OPTIONS["ephemeral_rsa"] == 0 and OPTIONS["no_sslv2"] == 0  # gone in OpenSSL 3


def test_openssl_names_and_bits(client_ctx) -> None:
    for name in ("no_tlsv1_3", "no_tlsv1_2", "no_renegotiation", "no_ticket", "ignore_unexpected_eof",
                 "no_compression", "prioritize_chacha", "allow_no_dhe_kex"):
        assert OPTIONS[name] != 0, name
    ctx = client_ctx()
    options = commssl.set_ssl_ctx_options(ctx, no_renegotiation=True, no_ticket=False)
    assert options & OPTIONS["no_renegotiation"]


def test_false_options_add_nothing(client_ctx) -> None:
    ctx = client_ctx()
    before = commssl.set_ssl_ctx_options(ctx)
    assert commssl.set_ssl_ctx_options(ctx, no_tlsv1_3=False, no_tlsv1_2=False) == before


def test_unknown_name_and_non_bool_are_type_errors(client_ctx) -> None:
    ctx = client_ctx()
    with pytest.raises(TypeError, match="no_such_option"):
        commssl.set_ssl_ctx_options(ctx, no_such_option=True)
    with pytest.raises(TypeError, match="no_tlsv1_3.*int"):
        commssl.set_ssl_ctx_options(ctx, no_tlsv1_3=1)
    with pytest.raises(TypeError, match="ctx_or_ssl"):
        commssl.set_ssl_ctx_options("ctx", all=True)


def test_no_tlsv1_3_on_a_context_against_openssl_s_server(pki: PKI, client_ctx) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        ctx = client_ctx()
        commssl.set_ssl_ctx_options(ctx, no_tlsv1_3=True)
        with commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx, tlsext_host_name="localhost",
                                     handshake_timeout=HS, timeout=HS) as stream:
            assert commssl.ssl_connection_protocol_version(stream) == "tls-v1-2"
            stream.write(b"abc\n")
            assert stream.readline() == b"cba\n"


def test_no_tlsv1_3_on_one_ssl_and_on_an_abstract_context(pki: PKI, client_ctx) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        ctx = client_ctx()
        with commssl.open_tcp_stream(
                "127.0.0.1", server.port, ssl_ctx=ctx, tlsext_host_name="localhost", handshake_timeout=HS,
                timeout=HS, ssl_configure_callback=lambda ssl: commssl.set_ssl_ctx_options(
                    ssl, no_tlsv1_3=True)) as stream:
            assert commssl.ssl_connection_protocol_version(stream) == "tls-v1-2"
        abstract = commssl.create_ssl_client_context(openssl_trusted_file=str(pki.root_cert))
        try:
            commssl.set_ssl_ctx_options(abstract, no_tlsv1_3=True)
            with commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=abstract,
                                         tlsext_host_name="localhost", handshake_timeout=HS,
                                         timeout=HS) as stream:
                assert commssl.ssl_connection_protocol_version(stream) == "tls-v1-2"
        finally:
            commssl.destroy_ssl_ctx(abstract.ssl_ctx_pointer)


def test_released_context_refused() -> None:
    ctx = commssl.make_ssl_ctx(True, "client")
    commssl.destroy_ssl_ctx(ctx)
    with pytest.raises(ValueError, match="destroyed"):
        commssl.set_ssl_ctx_options(ctx, all=True)
