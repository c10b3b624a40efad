"""A server abstract context's ``verify_callback(conn)`` decides every handshake, a
client that sent no certificate included (issue 22), and ``fail_if_no_peer_cert``
requires one. Real peers: ``openssl s_client`` with and without ``-cert``, CPython's
``ssl`` client, commssl; servers: blocking ``create_ssl_socket_stream`` and asyncio
``start_ssl_server``. The server's handler writes a marker only after the handshake:
a rejected client must never read it."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

import commssl
from commssl import lib
from helpers import connect, only_error, only_result, peer_cns
from peers import PKI, WAIT, cpython_tls_client, in_thread, openssl_client

MARKER = b"served-after-the-handshake"
UNSPECIFIED = lib.X509_V_ERR_UNSPECIFIED
INTER_CN = PKI.intermediate_cn

Seen = Tuple[List[Optional[str]], Tuple[bool, int]]


class Recorder:
    """A verify_callback(conn) that records the chain and the verify result it saw,
    and answers ``answer`` (a value, or an exception to raise)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.seen: List[Seen] = []

    def __call__(self, conn: Any) -> Any:
        self.seen.append((peer_cns(conn), commssl.ssl_connection_verify(conn)))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


@pytest.fixture
def server_context(pki: PKI) -> Iterator[Callable[..., commssl.SSLAbstractContext]]:
    made: List[commssl.SSLAbstractContext] = []

    def make(**kw: Any) -> commssl.SSLAbstractContext:
        ctx = commssl.create_ssl_server_context(cert_file=pki.server_chain, key_file=pki.server_key,
                                                openssl_trusted_file=pki.root_cert, **kw)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        commssl.destroy_ssl_ctx(ctx.ssl_ctx_pointer)


def serve_marker(stream: commssl.SocketStream) -> bool:
    stream.write(MARKER + b"\n")
    stream.flush()
    return True


def s_client(pki: PKI, port: int, with_cert: bool, version: str) -> bytes:
    """What ``openssl s_client`` read (it reads until the server closes)."""
    kw: Any = {"cert": pki.client_chain, "key": pki.client_key} if with_cert else {}
    done = openssl_client(port, cafile=pki.root_cert, extra_args=("-ign_eof", version), **kw)
    return done.stdout


def cpython_reads(pki: PKI, port: int, with_cert: bool) -> bytes:
    """What a CPython ``ssl`` client reads until the end (or an error) after its handshake."""
    kw: Any = {"certfile": pki.client_chain, "keyfile": pki.client_key} if with_cert else {}
    try:
        sock = cpython_tls_client(port, cafile=pki.root_cert, **kw)
    except (ssl.SSLError, OSError):
        return b""  # TLS 1.2: the handshake itself fails
    got = b""
    with sock:
        sock.settimeout(WAIT)
        try:
            while data := sock.recv(65536):
                got += data
        except (ssl.SSLError, OSError):
            pass
    return got


CLIENT_CHAIN = [PKI.client_cn, INTER_CN]


# -- blocking create_ssl_socket_stream server ------------------------------------------


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_s_client_without_certificate_is_decided_by_the_callback(
        pki: PKI, server_context: Any, commssl_server: Any, version: str) -> None:
    refuse = Recorder(False)
    server = commssl_server(server_context(verify_callback=refuse), serve_marker)
    out = s_client(pki, server.port, False, version)
    assert MARKER not in out
    exc = only_error(server)
    assert isinstance(exc, commssl.SSLVerificationFailure), repr(exc)
    assert exc.verify_code == UNSPECIFIED and "no certificate" in str(exc)
    assert refuse.seen == [([], (False, UNSPECIFIED))]

    accept = Recorder(True)
    server = commssl_server(server_context(verify_callback=accept), serve_marker)
    assert MARKER in s_client(pki, server.port, False, version)
    assert only_result(server) is True
    assert accept.seen == [([], (False, UNSPECIFIED))]


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_s_client_with_certificate_is_decided_by_the_callback(
        pki: PKI, server_context: Any, commssl_server: Any, version: str) -> None:
    refuse = Recorder(False)
    server = commssl_server(server_context(verify_callback=refuse), serve_marker)
    assert MARKER not in s_client(pki, server.port, True, version)
    assert isinstance(only_error(server), commssl.SSLVerificationFailure)
    assert refuse.seen == [(CLIENT_CHAIN, (True, 0))]  # once: inside the handshake

    accept = Recorder(True)
    server = commssl_server(server_context(verify_callback=accept), serve_marker)
    assert MARKER in s_client(pki, server.port, True, version)
    only_result(server)
    assert accept.seen == [(CLIENT_CHAIN, (True, 0))]


def test_cpython_client_without_certificate(pki: PKI, server_context: Any, commssl_server: Any) -> None:
    refuse = Recorder(False)
    server = commssl_server(server_context(verify_callback=refuse), serve_marker)
    assert MARKER not in cpython_reads(pki, server.port, False)
    assert isinstance(only_error(server), commssl.SSLVerificationFailure)
    assert refuse.seen == [([], (False, UNSPECIFIED))]

    accept = Recorder(True)
    server = commssl_server(server_context(verify_callback=accept), serve_marker)
    assert MARKER in cpython_reads(pki, server.port, False)
    only_result(server)
    assert accept.seen == [([], (False, UNSPECIFIED))]


def test_cpython_client_with_certificate(pki: PKI, server_context: Any, commssl_server: Any) -> None:
    refuse = Recorder(False)
    server = commssl_server(server_context(verify_callback=refuse), serve_marker)
    assert MARKER not in cpython_reads(pki, server.port, True)
    assert isinstance(only_error(server), commssl.SSLVerificationFailure)
    assert refuse.seen == [(CLIENT_CHAIN, (True, 0))]


class Refused(Exception):
    pass


def test_an_exception_in_the_callback_propagates(pki: PKI, server_context: Any,
                                                 commssl_server: Any) -> None:
    boom = Refused("no certificate, no entry")
    raising = Recorder(boom)
    server = commssl_server(server_context(verify_callback=raising), serve_marker)
    assert MARKER not in s_client(pki, server.port, False, "-tls1_3")
    assert only_error(server) is boom
    assert raising.seen == [([], (False, UNSPECIFIED))]


def test_the_callback_may_not_do_io_on_the_connection(pki: PKI, server_context: Any,
                                                      commssl_server: Any) -> None:
    """As inside the handshake: its own I/O is refused (not a deadlock)."""
    errors: List[BaseException] = []

    def verify(conn: Any) -> bool:
        try:
            conn.write(b"from the callback\n")
        except ValueError as exc:
            errors.append(exc)
        return True

    server = commssl_server(server_context(verify_callback=verify), serve_marker)
    assert MARKER in s_client(pki, server.port, False, "-tls1_3")
    only_result(server)
    assert len(errors) == 1 and "verify callback" in str(errors[0])


def test_a_resumed_session_without_certificate_is_decided_again(
        pki: PKI, server_context: Any, commssl_server: Any) -> None:
    """The session of a client accepted without a certificate resumes only when
    the callback accepts again: an empty stored chain goes through the same decision."""
    answers = [True, False]
    reused: List[bool] = []

    def verify(conn: Any) -> bool:
        reused.append(commssl.ssl_connection_session_reused(conn))
        assert peer_cns(conn) == [] and commssl.ssl_connection_verify(conn) == (False, UNSPECIFIED)
        return answers.pop(0)

    server = commssl_server(server_context(verify_callback=verify), serve_marker, count=2)
    client = commssl.create_ssl_client_context(openssl_trusted_file=pki.root_cert)
    try:
        with connect(server.port, client) as stream:
            assert stream.readline() == MARKER + b"\n"  # the TLS 1.3 ticket came before it
            session = commssl.ssl_connection_session(stream)
        try:
            with pytest.raises(commssl.SSLCondition):
                with connect(server.port, client, session=session) as stream:
                    stream.readline()
        finally:
            session.release()
        server.join()
        assert reused == [False, True]
        assert len(server.results) == 1 and len(server.errors) == 1
        assert isinstance(server.errors[0], commssl.SSLVerificationFailure)
    finally:
        commssl.destroy_ssl_ctx(client.ssl_ctx_pointer)


# -- fail_if_no_peer_cert ------------------------------------------------------------


def test_fail_if_no_peer_cert_requires_a_certificate(pki: PKI, server_context: Any,
                                                     commssl_server: Any) -> None:
    ctx = server_context(fail_if_no_peer_cert=True)
    assert commssl.get_verification_mode(ctx) == ["verify-peer", "fail-if-no-peer-cert"]
    server = commssl_server(ctx, serve_marker)
    assert MARKER not in s_client(pki, server.port, False, "-tls1_3")
    exc = only_error(server)
    assert isinstance(exc, commssl.SSLVerificationFailure), repr(exc)
    assert exc.verify_code == UNSPECIFIED and "no certificate" in str(exc)

    server = commssl_server(ctx, serve_marker)
    assert MARKER in s_client(pki, server.port, True, "-tls1_3")
    only_result(server)


def test_fail_if_no_peer_cert_with_a_callback(pki: PKI, server_context: Any, commssl_server: Any) -> None:
    """OpenSSL refuses the client without a certificate: the callback sees only the others."""
    accept = Recorder(True)
    ctx = server_context(fail_if_no_peer_cert=True, verify_callback=accept)
    assert commssl.get_verification_mode(ctx) == ["verify-peer", "fail-if-no-peer-cert"]
    server = commssl_server(ctx, serve_marker, count=2)
    assert MARKER not in s_client(pki, server.port, False, "-tls1_3")
    assert MARKER in s_client(pki, server.port, True, "-tls1_3")
    server.join()
    assert len(server.errors) == 1 and isinstance(server.errors[0], commssl.SSLVerificationFailure)
    assert accept.seen == [(CLIENT_CHAIN, (True, 0))]


def test_always_mode_without_callback_still_serves_a_client_without_certificate(
        pki: PKI, server_context: Any, commssl_server: Any) -> None:
    """LispWorks' "always" on a server: ask, check what comes; no certificate is allowed."""
    ctx = server_context()
    commssl.set_verification_mode(ctx, "server", "always")
    server = commssl_server(ctx, serve_marker)
    assert MARKER in s_client(pki, server.port, False, "-tls1_3")
    only_result(server)


def test_fail_if_no_peer_cert_type() -> None:
    with pytest.raises(TypeError, match="fail_if_no_peer_cert"):
        commssl.create_ssl_server_context(fail_if_no_peer_cert="yes")  # type: ignore[arg-type]


# -- asyncio start_ssl_server ---------------------------------------------------------


def run_async_server(ctx: Any, client: Callable[[int], bytes]) -> Tuple[bytes, List[Any]]:
    """Serve one connection with start_ssl_server; the client runs in a thread.
    Returns what the client read and the streams the handler was called with."""
    handled: List[Any] = []

    async def handler(stream: Any) -> None:
        handled.append(stream)
        stream.write(MARKER + b"\n")
        await stream.drain()

    async def main() -> bytes:
        server = await commssl.start_ssl_server(handler, "127.0.0.1", 0, ssl_ctx=ctx, handshake_timeout=WAIT)
        try:
            port = server.sockets[0].getsockname()[1]
            future = in_thread(client, port)
            return await asyncio.wait_for(asyncio.wrap_future(future), 30)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), handled


@pytest.mark.parametrize("peer", ["s_client", "cpython"])
def test_asyncio_server_without_certificate(pki: PKI, server_context: Any, peer: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    def client(port: int) -> bytes:
        if peer == "s_client":
            return s_client(pki, port, False, "-tls1_3")
        return cpython_reads(pki, port, False)

    refuse = Recorder(False)
    with caplog.at_level(logging.INFO, logger="commssl.aio"):
        out, handled = run_async_server(server_context(verify_callback=refuse), client)
    assert MARKER not in out and handled == []
    assert refuse.seen == [([], (False, UNSPECIFIED))]
    assert any("SSLVerificationFailure" in r.getMessage() and "no certificate" in r.getMessage()
               for r in caplog.records)

    accept = Recorder(True)
    out, handled = run_async_server(server_context(verify_callback=accept), client)
    assert MARKER in out and len(handled) == 1
    assert accept.seen == [([], (False, UNSPECIFIED))]


def test_asyncio_server_with_certificate(pki: PKI, server_context: Any) -> None:
    refuse = Recorder(False)
    out, handled = run_async_server(server_context(verify_callback=refuse),
                                    lambda port: s_client(pki, port, True, "-tls1_3"))
    assert MARKER not in out and handled == []
    assert refuse.seen == [(CLIENT_CHAIN, (True, 0))]


def test_asyncio_server_fail_if_no_peer_cert(pki: PKI, server_context: Any) -> None:
    ctx = server_context(fail_if_no_peer_cert=True)
    out, handled = run_async_server(ctx, lambda port: s_client(pki, port, False, "-tls1_3"))
    assert MARKER not in out and handled == []
    out, handled = run_async_server(ctx, lambda port: s_client(pki, port, True, "-tls1_3"))
    assert MARKER in out and len(handled) == 1


def test_raw_socket_never_sees_the_marker(pki: PKI, server_context: Any, commssl_server: Any) -> None:
    """A commssl client without a certificate: its handshake completes (TLS 1.3), then
    its first read ends with the server's close, never with data."""
    refuse = Recorder(False)
    server = commssl_server(server_context(verify_callback=refuse), serve_marker)
    client = commssl.create_ssl_client_context(openssl_trusted_file=pki.root_cert)
    try:
        with pytest.raises((commssl.SSLCondition, socket.error)):
            with connect(server.port, client) as stream:
                assert stream.readline() != MARKER + b"\n"
                raise commssl.SSLCondition("read ended without data", "closed")
    finally:
        commssl.destroy_ssl_ctx(client.ssl_ctx_pointer)
    assert isinstance(only_error(server), commssl.SSLVerificationFailure)
    assert refuse.seen == [([], (False, UNSPECIFIED))]


# -- commssl.anyio server side --------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_server_without_certificate(pki: PKI, server_context: Any, backend: str) -> None:
    anyio = pytest.importorskip("anyio")
    pytest.importorskip("trio")
    import commssl.anyio as tls_anyio

    refuse = Recorder(False)
    ctx = server_context(verify_callback=refuse)
    failures: List[BaseException] = []
    served: List[bool] = []

    async def handle(tcp: Any) -> None:
        try:
            stream = await tls_anyio.wrap(tcp, ssl_ctx=ctx, ssl_side="server", handshake_timeout=WAIT)
        except commssl.SSLCondition as exc:
            failures.append(exc)
            await tcp.aclose()
            return
        async with stream:
            served.append(True)
            await stream.send(MARKER + b"\n")

    async def main() -> bytes:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            out: bytes = await anyio.to_thread.run_sync(s_client, pki, port, False, "-tls1_3")
            tg.cancel_scope.cancel()
        return out

    out = anyio.run(main, backend=backend)
    assert MARKER not in out and served == []
    assert len(failures) == 1 and isinstance(failures[0], commssl.SSLVerificationFailure), failures
    assert refuse.seen == [([], (False, UNSPECIFIED))]
