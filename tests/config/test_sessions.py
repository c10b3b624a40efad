"""Session resumption against openssl s_server (TLS 1.2 session IDs, TLS 1.3 tickets) and
CPython ssl, and the safety rules: the verify decision runs again on resumption, and a
context other than the one that made a session does not resume it."""

from __future__ import annotations

import asyncio
import copy
import gc
import pickle
from typing import Any, List

import pytest

import commssl
from helpers import HS, connect_localhost
from peers import PKI, openssl_server


def first_session(port: int, ctx: Any) -> commssl.Session:
    with connect_localhost(port, ctx) as stream:
        assert not commssl.ssl_connection_session_reused(stream)
        stream.write(b"abc\n")
        assert stream.readline() == b"cba\n"  # a TLS 1.3 ticket has arrived by now
        session = commssl.ssl_connection_session(stream)
        stream.write(b"CLOSE\n")
    assert session.resumable
    return session


@pytest.mark.parametrize("args", [("-tls1_2", "-no_ticket"), ("-tls1_2",), ("-tls1_3",)],
                         ids=["tls12-session-id", "tls12-ticket", "tls13-ticket"])
def test_resumption_with_openssl_s_server(pki: PKI, client_ctx, args: tuple) -> None:
    ctx = client_ctx()
    with openssl_server(pki.server_chain, pki.server_key, extra_args=args) as server:
        session = first_session(server.port, ctx)
        try:
            with connect_localhost(server.port, ctx, session=session) as stream:
                assert commssl.ssl_connection_session_reused(stream)
                assert commssl.ssl_connection_verify(stream) == (True, 0)
                stream.write(b"xyz\n")
                assert stream.readline() == b"zyx\n"
                stream.write(b"CLOSE\n")
        finally:
            commssl.release_session(session)


def test_resumption_with_cpython_ssl_server_and_asyncio(pki: PKI, client_ctx) -> None:
    from peers import cpython_tls_server
    ctx = client_ctx()
    with cpython_tls_server(pki.server_chain, pki.server_key) as server:
        with connect_localhost(server.port, ctx) as stream:
            stream.write(b"one\n")
            assert stream.readline() == b"one\n"
            session = commssl.ssl_connection_session(stream)

        async def again() -> bool:
            s = await commssl.open_tcp_stream_async("127.0.0.1", server.port, ssl_ctx=ctx,
                                                    tlsext_host_name="localhost", handshake_timeout=HS,
                                                    session=session)
            try:
                s.write(b"two\n")
                assert await s.readexactly(4) == b"two\n"
                return commssl.ssl_connection_session_reused(s)
            finally:
                await s.close()

        try:
            assert asyncio.run(again())
        finally:
            session.release()


def test_verify_callback_runs_again_on_resumption(pki: PKI) -> None:
    seen: List[Any] = []

    def decide(conn: Any) -> bool:
        certs = commssl.ssl_connection_copy_peer_certificates(conn)
        try:
            seen.append([commssl.get_certificate_common_name(c) for c in certs])
        finally:
            commssl.release_certificates_vector(certs)
        return len(seen) < 3  # the third handshake is rejected

    ctx = commssl.create_ssl_client_context(openssl_trusted_file=pki.root_cert, verify_callback=decide)
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-tls1_3",)) as server:
        session = first_session(server.port, ctx)
        try:
            with connect_localhost(server.port, ctx, session=session) as stream:
                assert commssl.ssl_connection_session_reused(stream)
                stream.write(b"CLOSE\n")
            assert seen == [["localhost", "commssl test intermediate"]] * 2  # the session's chain
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                connect_localhost(server.port, ctx, session=session)
            assert info.value.ssl_code == "verify-callback"
        finally:
            session.release()
            commssl.destroy_ssl_ctx(ctx.ssl_ctx_pointer)


def test_per_certificate_callback_and_exception_on_resumption(pki: PKI, client_ctx) -> None:
    calls: List[int] = []
    ctx = client_ctx()

    def cb(ok: bool, store: Any) -> bool:
        calls.append(commssl.x509_store_ctx_get_error_depth(store))
        if len(calls) > 3:
            raise ZeroDivisionError("on resumption")
        return ok

    commssl.set_verification_mode(ctx, "client", "always", cb)
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-tls1_2", "-no_ticket")) as server:
        session = first_session(server.port, ctx)
        try:
            assert calls == [2, 1, 0]
            with pytest.raises(ZeroDivisionError, match="on resumption"):
                connect_localhost(server.port, ctx, session=session)
        finally:
            session.release()


def test_trust_store_checked_again_on_resumption(pki: PKI, client_ctx) -> None:
    """The name to check is part of the SSL's parameters: a session made for
    localhost does not pass for another name."""
    ctx = client_ctx()
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-tls1_3",)) as server:
        session = first_session(server.port, ctx)
        try:
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx,
                                        tlsext_host_name="other.example", handshake_timeout=HS,
                                        session=session)
            assert info.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
        finally:
            session.release()


def test_other_context_or_mode_does_not_resume(pki: PKI, client_ctx) -> None:
    ctx, other = client_ctx(), client_ctx()
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-tls1_3",)) as server:
        session = first_session(server.port, ctx)
        try:
            with connect_localhost(server.port, other, session=session) as stream:
                assert not commssl.ssl_connection_session_reused(stream)  # full handshake
                stream.write(b"CLOSE\n")
            commssl.set_verification_mode(ctx, "client", "never")
            with connect_localhost(server.port, ctx, session=session) as stream:
                assert not commssl.ssl_connection_session_reused(stream)
                stream.write(b"CLOSE\n")
            commssl.set_verification_mode(ctx, "client", "always")
            with connect_localhost(server.port, ctx, session=session) as stream:
                assert commssl.ssl_connection_session_reused(stream)
                stream.write(b"CLOSE\n")
        finally:
            session.release()


def test_session_object_rules(pki: PKI, client_ctx, recwarn: pytest.WarningsRecorder) -> None:
    ctx = client_ctx()
    with openssl_server(pki.server_chain, pki.server_key) as server:
        session = first_session(server.port, ctx)
        with pytest.raises(TypeError, match="copied"):
            copy.copy(session)
        with pytest.raises(TypeError, match="copied"):
            copy.deepcopy(session)
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(session)
        with pytest.raises(TypeError, match="ssl_connection_session"):
            commssl.Session()
        with pytest.raises(TypeError, match="session"):
            connect_localhost(server.port, ctx, session="ticket")
        session.release()
        assert session.released
        with pytest.raises(ValueError, match="already released"):
            session.release()
        with pytest.raises(ValueError, match="released"):
            connect_localhost(server.port, ctx, session=session)
        with pytest.raises(TypeError, match="session"):
            commssl.release_session(object())  # type: ignore[arg-type]
        lost = first_session(server.port, ctx)
        del lost
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and "Session" in str(w.message) for w in recwarn)


def test_session_before_handshake_is_a_value_error(client_ctx) -> None:
    ctx = client_ctx()
    sslp = commssl.SSLPointer(commssl.lib.SSL_new(ctx.cdata))
    try:
        with pytest.raises(ValueError, match="no session"):
            commssl.ssl_connection_session(sslp)
    finally:
        commssl.lib.SSL_free(sslp.cdata)


def test_resumption_against_a_commssl_server(pki: PKI, client_ctx, server_ctx, commssl_server) -> None:
    sctx, cctx = server_ctx(), client_ctx()

    def handler(s: commssl.SocketStream) -> bool:
        s.write(s.readline())
        return commssl.ssl_connection_session_reused(s)

    server = commssl_server(sctx, handler, count=2)
    with connect_localhost(server.port, cctx) as stream:
        stream.write(b"a\n")
        assert stream.readline() == b"a\n"
        session = commssl.ssl_connection_session(stream)
    try:
        with connect_localhost(server.port, cctx, session=session) as stream:
            stream.write(b"b\n")
            assert stream.readline() == b"b\n"
            assert commssl.ssl_connection_session_reused(stream)
    finally:
        session.release()
    server.join()
    assert server.errors == [] and server.results == [False, True]


def test_resumption_with_client_certificates_on_a_commssl_server(pki: PKI, client_ctx, server_ctx,
                                                                 commssl_server) -> None:
    """A server that verifies client certificates resumes (its sessions are bound to its
    context and verification mode); one whose mode changed since does not."""
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)

    def handler(s: commssl.SocketStream) -> Any:
        s.write(s.readline())
        return commssl.ssl_connection_session_reused(s), commssl.ssl_connection_verify(s)

    for version in (commssl.lib.TLS1_3_VERSION, commssl.lib.TLS1_2_VERSION):
        server = commssl_server(sctx, handler, count=3)
        commssl.lib.SSL_CTX_set_max_proto_version(cctx.cdata, version)
        with connect_localhost(server.port, cctx) as stream:
            stream.write(b"a\n")
            assert stream.readline() == b"a\n"
            session = commssl.ssl_connection_session(stream)
        try:
            with connect_localhost(server.port, cctx, session=session) as stream:
                stream.write(b"b\n")
                assert stream.readline() == b"b\n"
                assert commssl.ssl_connection_session_reused(stream)
            commssl.set_verification_mode(sctx, "server", "always")  # another mode: not resumed
            with connect_localhost(server.port, cctx, session=session) as stream:
                stream.write(b"c\n")
                assert stream.readline() == b"c\n"
                assert not commssl.ssl_connection_session_reused(stream)
        finally:
            session.release()
            commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
        server.join()
        assert server.errors == [], server.errors
        assert [r[0] for r in server.results] == [False, True, False]
        assert all(r[1] == (True, 0) for r in server.results)
