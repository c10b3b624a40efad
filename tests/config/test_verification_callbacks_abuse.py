"""Verify callbacks that misbehave: they raise, return odd values, keep the
certificates they are lent, call back into commssl, close or reconfigure the
connection being verified. Each case ends in its documented outcome, the peer
sees a clean failure, and every X509Pointer is accounted for (the autouse
``no_leaks`` fixture)."""

from __future__ import annotations

import gc
import socket
import threading
import time
from typing import Any, Callable, List

import pytest

import commssl
from helpers import QUICK_HS, connect_localhost
from peers import PKI, silent_server


class BoolRaises:
    """A value whose truth test raises."""

    def __bool__(self) -> bool:
        raise RuntimeError("__bool__ refused")


def connect_verifying(port: int, ctx: Any, callback: Any = None, mode: str = "always",
                      per_ssl: bool = False) -> commssl.SocketStream:
    """A commssl client to ``port``; ``callback`` on the context or (``per_ssl``) on the SSL only."""
    configure = None
    if callback is not None:
        if per_ssl:
            def configure(sslp: commssl.SSLPointer) -> None:
                commssl.set_verification_mode(sslp, "client", mode, callback)
        else:
            commssl.set_verification_mode(ctx, "client", mode, callback)
    return connect_localhost(port, ctx, wait=QUICK_HS, ssl_configure_callback=configure)


def echo_once(stream: commssl.SocketStream) -> bytes:
    line = stream.readline()
    stream.write(line)
    return line


def assert_server_saw_failure(server: Any) -> None:
    """The commssl server's handshake failed cleanly (an alert or a closed connection)."""
    server.join()
    assert server.results == []
    assert len(server.errors) == 1 and isinstance(server.errors[0], commssl.SSLCondition), server.errors


@pytest.mark.parametrize("per_ssl", [False, True], ids=["ctx", "ssl"])
@pytest.mark.parametrize("exc", [ZeroDivisionError("boom"), KeyboardInterrupt(), commssl.SSLFailure("mine")],
                         ids=["ZeroDivisionError", "KeyboardInterrupt", "SSLFailure"])
def test_raising_callback_exception_comes_out(server_ctx, client_ctx, commssl_server, exc: BaseException,
                                              per_ssl: bool) -> None:
    server = commssl_server(server_ctx(), echo_once)
    calls: List[int] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        calls.append(commssl.x509_store_ctx_get_error_depth(store))
        raise exc

    with pytest.raises(type(exc)) as info:
        connect_verifying(server.port, client_ctx(), callback, per_ssl=per_ssl)
    assert info.value is exc  # the callback's own exception object, with its traceback
    assert any(f.name == "callback" for f in info.traceback)
    assert calls == [2]  # verification stopped at the first (root) call
    assert_server_saw_failure(server)


def test_raising_callback_on_never_context_still_raises(server_ctx, client_ctx, commssl_server) -> None:
    """"never" lets a rejected chain through, but not a callback's exception."""
    server = commssl_server(server_ctx(), echo_once)
    with pytest.raises(LookupError):
        connect_verifying(server.port, client_ctx(), lambda ok, store: {}["missing"], mode="never")
    server.join()


@pytest.mark.parametrize("value,accepted", [
    ("yes", True), (1, True), (2, True), ([0], True), (PKI, True),
    (None, False), (0, False), ("", False), ([], False), (0.0, False),
], ids=lambda v: repr(v)[:20])
def test_non_bool_results_are_truth_tested(server_ctx, client_ctx, commssl_server, value: object,
                                           accepted: bool) -> None:
    server = commssl_server(server_ctx(), echo_once)
    callback = lambda ok, store: value  # noqa: E731
    if accepted:
        with connect_verifying(server.port, client_ctx(), callback) as stream:
            stream.write(b"ping\n")
            assert stream.readline() == b"ping\n"
        server.join()
        assert server.errors == []
    else:
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect_verifying(server.port, client_ctx(), callback)
        assert info.value.ssl_code == "verify-callback"
        assert info.value.verify_code == commssl.lib.X509_V_ERR_APPLICATION_VERIFICATION
        assert info.value.depth == 2
        assert_server_saw_failure(server)


def test_callback_result_whose_bool_raises(server_ctx, client_ctx, commssl_server) -> None:
    server = commssl_server(server_ctx(), echo_once)
    with pytest.raises(RuntimeError, match="__bool__ refused"):
        connect_verifying(server.port, client_ctx(), lambda ok, store: BoolRaises())
    assert_server_saw_failure(server)


def test_callback_keeps_certificates_and_releases_later(pki: PKI, server_ctx, client_ctx,
                                                        commssl_server) -> None:
    server = commssl_server(server_ctx(), echo_once)
    borrowed: List[commssl.X509Pointer] = []
    kept: List[commssl.X509Pointer] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        cert = commssl.x509_store_ctx_get_current_cert(store)
        borrowed.append(cert)
        kept.append(commssl.copy_certificate(cert))
        kept.append(commssl.copy_certificate(kept[-1]))  # a copy of an owned copy
        return ok

    start = commssl.outstanding_certificates()
    with connect_verifying(server.port, client_ctx(), callback) as stream:
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"
    server.join()
    assert commssl.outstanding_certificates() == start + 6
    # The loans ended with the callbacks; the copies outlive the connection and the GC.
    assert all(b.released and not b.owned for b in borrowed)
    with pytest.raises(commssl.CertificateReleasedError):
        commssl.get_certificate_common_name(borrowed[0])
    with pytest.raises(commssl.CertificateReleasedError):
        commssl.release_certificate(borrowed[0])
    borrowed.clear()
    gc.collect()
    names = [commssl.get_certificate_common_name(c) for c in kept]
    assert names == [pki.root_cn] * 2 + [pki.intermediate_cn] * 2 + [pki.server_cn] * 2
    commssl.release_certificates_vector(kept)
    assert commssl.outstanding_certificates() == start
    with pytest.raises(commssl.CertificateReleasedError):
        commssl.release_certificates_vector(kept)


def test_callback_releasing_a_borrowed_certificate_fails_the_handshake(server_ctx, client_ctx,
                                                                        commssl_server) -> None:
    server = commssl_server(server_ctx(), echo_once)

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        commssl.release_certificate(commssl.x509_store_ctx_get_current_cert(store))
        return True

    with pytest.raises(commssl.CertificateReleasedError, match="borrowed"):
        connect_verifying(server.port, client_ctx(), callback)
    assert_server_saw_failure(server)


def test_reentrant_commssl_calls_inside_callback(pki: PKI, server_ctx, client_ctx, commssl_server) -> None:
    server = commssl_server(server_ctx(), echo_once)
    seen: List[Any] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        conn = commssl.x509_store_ctx_get_connection(store)
        sslp = commssl.ssl_connection_ssl_ref(conn)
        certs = commssl.ssl_connection_copy_peer_certificates(conn)
        try:
            seen.append((
                commssl.x509_store_ctx_get_error_depth(store),
                commssl.get_verification_mode(sslp),
                commssl.get_verification_mode(commssl.socket_stream_ctx(conn)),
                [commssl.get_certificate_common_name(c) for c in certs],
                commssl.get_certificate_data(commssl.x509_store_ctx_get_current_cert(store))[0],
                len(commssl.ssl_connection_get_peer_certificates_data(conn)),
                commssl.ssl_connection_verify(conn),
            ))
        finally:
            commssl.release_certificates_vector(certs)
        return ok

    with connect_verifying(server.port, client_ctx(), callback) as stream:
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"
    server.join()
    chain = [pki.server_cn, pki.intermediate_cn]
    assert seen == [
        (2, ["verify-peer"], ["verify-peer"], chain, ("subject-common-name", pki.root_cn), 2, (True, 0)),
        (1, ["verify-peer"], ["verify-peer"], chain, ("subject-common-name", pki.intermediate_cn), 2,
         (True, 0)),
        (0, ["verify-peer"], ["verify-peer"], chain, ("subject-common-name", pki.server_cn), 2, (True, 0)),
    ]


def test_nested_handshake_inside_callback(pki: PKI, server_ctx, client_ctx, commssl_server) -> None:
    """A callback may run a whole other commssl connection, with its own callback."""
    outer_server = commssl_server(server_ctx(), echo_once)
    inner_server = commssl_server(server_ctx(), echo_once)
    inner_ctx = client_ctx()
    inner_depths: List[int] = []
    replies: List[bytes] = []

    def inner(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        inner_depths.append(commssl.x509_store_ctx_get_error_depth(store))
        return ok

    def outer(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        if commssl.x509_store_ctx_get_error_depth(store) == 0:
            with connect_verifying(inner_server.port, inner_ctx, inner) as other:
                other.write(b"inner\n")
                replies.append(other.readline())
        # The outer store context is still the current one after the nested handshake.
        assert commssl.get_certificate_common_name(commssl.x509_store_ctx_get_current_cert(store))
        return ok

    with connect_verifying(outer_server.port, client_ctx(), outer) as stream:
        stream.write(b"outer\n")
        assert stream.readline() == b"outer\n"
    outer_server.join()
    inner_server.join()
    assert replies == [b"inner\n"] and inner_depths == [2, 1, 0]


CloseAction = Callable[[commssl.SocketStream], Any]


@pytest.mark.parametrize("action", [
    lambda s: s.close(),
    lambda s: commssl.detach_ssl(s),
    lambda s: commssl.detach_ssl(s, retry_count=None),
    lambda s: s.write(b"early\n"),
    lambda s: s.read(1),
    lambda s: commssl.socket_stream_handshake(s, 1.0),
], ids=["close", "detach_ssl", "detach_ssl_nowait", "write", "read", "handshake"])
@pytest.mark.parametrize("side", ["client", "server"])
def test_closing_or_driving_the_connection_inside_its_callback(pki: PKI, server_ctx, client_ctx,
                                                               commssl_server, action: CloseAction,
                                                               side: str) -> None:
    """OpenSSL is mid-handshake on the connection: closing it (which would free the
    SSL under OpenSSL's feet) or starting another operation on it raises a clean
    ValueError inside the callback, which then comes out of the handshake."""
    attempts: List[str] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        conn = commssl.x509_store_ctx_get_connection(store)
        assert isinstance(conn, commssl.SocketStream)
        try:
            action(conn)
        except ValueError as exc:
            attempts.append(str(exc))
            raise
        return ok

    if side == "client":
        server = commssl_server(server_ctx(), echo_once)
        with pytest.raises(ValueError, match="inside the connection's own verify callback"):
            connect_verifying(server.port, client_ctx(), callback)
        assert_server_saw_failure(server)
    else:
        ctx = server_ctx(cafile=pki.root_cert)
        commssl.set_verification_mode(ctx, "server", ["verify-peer", "fail-if-no-peer-cert"], callback)
        server = commssl_server(ctx, echo_once)
        with pytest.raises(commssl.SSLCondition):
            cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
            with connect_verifying(server.port, cctx) as stream:
                stream.write(b"x\n")  # TLS 1.3: the client learns of the rejection on its first read
                stream.read()
        server.join()
        assert len(server.errors) == 1 and isinstance(server.errors[0], ValueError), server.errors
    assert len(attempts) == 1


def test_abstract_context_callback_closing_its_connection(pki: PKI, server_ctx, commssl_server) -> None:
    server = commssl_server(server_ctx(), echo_once)

    def verify(conn: Any) -> bool:
        conn.close()
        return True

    ctx = commssl.create_ssl_client_context(openssl_trusted_file=pki.root_cert, verify_callback=verify)
    try:
        with pytest.raises(ValueError, match="close"):
            commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx, tlsext_host_name="localhost",
                                    handshake_timeout=QUICK_HS)
    finally:
        commssl.destroy_ssl_ctx(ctx.ssl_ctx_pointer)
    assert_server_saw_failure(server)


def test_callback_destroying_the_context_in_use(server_ctx, client_ctx, commssl_server) -> None:
    """destroy_ssl_ctx drops commssl's reference only; the SSL keeps its own."""
    server = commssl_server(server_ctx(), echo_once)
    ctx = client_ctx()

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        commssl.destroy_ssl_ctx(ctx)
        return ok

    with connect_verifying(server.port, ctx, callback) as stream:
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"
        assert commssl.get_verification_mode(commssl.socket_stream_ssl(stream)) == ["verify-peer"]
    server.join()
    with pytest.raises(ValueError, match="destroyed"):
        commssl.get_verification_mode(ctx)


def test_callback_switching_its_own_ssl_to_never(server_ctx, client_ctx, commssl_server) -> None:
    """The mode OpenSSL consults is the one in force when the chain's result is
    judged: a callback that sets its own SSL to "never" (and drops itself) and
    rejects lets the handshake go on, with the rejection recorded."""
    server = commssl_server(server_ctx(), echo_once)
    depths: List[int] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        depths.append(commssl.x509_store_ctx_get_error_depth(store))
        sslp = commssl.ssl_connection_ssl_ref(commssl.x509_store_ctx_get_connection(store))
        commssl.set_verification_mode(sslp, "client", "never")
        return False

    with connect_verifying(server.port, client_ctx(), callback) as stream:
        assert commssl.get_verification_mode(commssl.socket_stream_ssl(stream)) == []
        assert commssl.ssl_connection_verify(stream) == (
            False, commssl.lib.X509_V_ERR_APPLICATION_VERIFICATION)
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"
    server.join()
    assert depths == [2]  # OpenSSL stops at the first rejection; the callback was dropped anyway


def test_callback_switching_its_own_ssl_to_always_rejects(server_ctx, client_ctx, commssl_server) -> None:
    """The other way round: on a "never" context a callback that makes its SSL
    "always" and rejects fails the handshake."""
    server = commssl_server(server_ctx(), echo_once)

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        sslp = commssl.ssl_connection_ssl_ref(commssl.x509_store_ctx_get_connection(store))
        commssl.set_verification_mode(sslp, "client", "always", callback)
        return False

    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect_verifying(server.port, client_ctx(), callback, mode="never")
    assert info.value.ssl_code == "verify-callback"
    assert_server_saw_failure(server)


def test_store_ctx_and_borrowed_cert_kept_past_the_callback(server_ctx, client_ctx, commssl_server) -> None:
    server = commssl_server(server_ctx(), echo_once)
    leaked: List[Any] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        leaked.append((store, commssl.x509_store_ctx_get_current_cert(store)))
        return ok

    with connect_verifying(server.port, client_ctx(), callback) as stream:
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"
    server.join()
    gc.collect()
    for store, cert in leaked:
        with pytest.raises(ValueError):
            commssl.x509_store_ctx_get_error(store)
        with pytest.raises(commssl.CertificateReleasedError):
            commssl.get_certificate_data(cert)
        with pytest.raises(commssl.CertificateReleasedError):
            commssl.copy_certificate(cert)


# -- closing from another thread ------------------------------------------------------------
# The same hazard from elsewhere: a thread blocked inside OpenSSL on a stream while
# another thread closes it. close() wakes it (shuts the socket down under it) and
# waits for it to leave OpenSSL before freeing the SSL; it gets a clean condition.


def _blocked(fn: Callable[[], Any]) -> "tuple[threading.Thread, List[Any]]":
    out: List[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.3)  # let it block inside OpenSSL's poll
    return thread, out


@pytest.mark.parametrize("op", ["read", "write"])
def test_close_from_another_thread_during_io(op: str, server_ctx, client_ctx, commssl_server) -> None:
    release = threading.Event()
    server = commssl_server(server_ctx(), lambda s: release.wait(QUICK_HS * 2))  # neither reads nor writes
    stream = connect_verifying(server.port, client_ctx())
    thread, out = _blocked(lambda: stream.read(10) if op == "read" else stream.write(b"w" * (32 << 20)))
    assert thread.is_alive()
    started = time.monotonic()
    stream.close()
    thread.join(QUICK_HS)
    release.set()
    assert time.monotonic() - started < QUICK_HS and not thread.is_alive()
    assert len(out) == 1 and isinstance(out[0], commssl.SSLCondition), out
    with pytest.raises(ValueError, match="closed"):
        stream.read(1)
    server.join()


def test_close_from_another_thread_during_handshake(client_ctx) -> None:
    with silent_server(hold=QUICK_HS * 2) as server:
        stream = commssl.SocketStream(socket.create_connection(("127.0.0.1", server.port), timeout=QUICK_HS))
        ctx = client_ctx()
        thread, out = _blocked(lambda: commssl.attach_ssl(stream, ssl_ctx=ctx, ssl_side="client",
                                                          handshake_timeout=QUICK_HS * 2,
                                                          tlsext_host_name="localhost"))
        assert thread.is_alive()
        started = time.monotonic()
        stream.close()
        thread.join(QUICK_HS)
        assert time.monotonic() - started < QUICK_HS and not thread.is_alive()
    assert len(out) == 1 and isinstance(out[0], commssl.SSLCondition), out
    assert stream.closed and commssl.socket_stream_ssl(stream) is None


def test_detach_from_another_thread_during_a_read_is_refused(server_ctx, client_ctx, commssl_server) -> None:
    server = commssl_server(server_ctx(), echo_once)
    with connect_verifying(server.port, client_ctx()) as stream:
        thread, out = _blocked(lambda: stream.readline())
        with pytest.raises(ValueError, match="another thread"):
            commssl.detach_ssl(stream)
        assert commssl.socket_stream_ssl(stream) is not None
        stream.write(b"still there\n")
        thread.join(QUICK_HS)
        assert out == [b"still there\n"]
    server.join()
