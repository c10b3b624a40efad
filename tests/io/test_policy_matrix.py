"""The policy matrix (issue 22): every entry point × every rule, each failing closed, against
real peers (``openssl s_server``/``s_client``, ``gnutls-cli``, CPython ``ssl``) and commssl
itself, with a positive control per row: the same setup with the rule satisfied connects, so a
failure of the negative half means the rule, not a broken setup.

The matrix is data: ``CLIENT_ENTRIES`` × ``CLIENT_RULES`` × server peers, and
``SERVER_ENTRIES`` × ``SERVER_RULES`` × client peers. A new entry point or rule is one line.
Adapters and peers live in ``policy_peers.py``."""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

httpx = pytest.importorskip("httpx")
anyio = pytest.importorskip("anyio")
pytest.importorskip("trio")

import commssl  # noqa: E402
import commssl.anyio  # noqa: E402
import policy_peers as pp  # noqa: E402
from peers import HOST, PKI, recording_server  # noqa: E402
from revocation_pki import make_crl  # noqa: E402

REVOKED = 23  # X509_V_ERR_CERT_REVOKED
HOSTNAME_MISMATCH = 62
OCSP_VERIFY_NEEDED = 73


# -- shared material (one PKI, CRLs and pins per session) -------------------------------------------


@dataclass(frozen=True)
class Material:
    pki: PKI
    crl_none: Path  # the intermediate's CRL, nothing revoked
    crl_server: Path  # ... revoking the server's leaf
    crl_client: Path  # ... revoking the client's leaf
    server_pin: str  # spki-sha256 of the server's leaf
    wrong_pin: str  # spki-sha256 of another key (the client's leaf)


def pin_of(cert: commssl.X509Pointer) -> str:
    """The certificate's SPKI pin (curl's --pinnedpubkey sha256// value without the prefix)."""
    return str(dict(commssl.get_certificate_data(cert))["spki-sha256"])


def _pin(path: Path) -> str:
    cert = commssl.pem_read("X509", str(path))
    try:
        return pin_of(cert)
    finally:
        commssl.release_certificate(cert)


@pytest.fixture(scope="session")
def material(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Material:
    d = tmp_path_factory.mktemp("policy")

    def crl(name: str, revoked: List[Path]) -> Path:
        return make_crl(d, pki.intermediate_cert, pki.intermediate_key, revoked, name=name)
    return Material(pki, crl("none", []), crl("server", [pki.server_cert]), crl("client", [pki.client_cert]),
                    _pin(pki.server_cert), _pin(pki.client_cert))


@pytest.fixture(scope="session")
def server_peers(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[pp.ServerPeers]:
    peers = pp.ServerPeers(pki, tmp_path_factory.mktemp("policy-servers"))
    yield peers
    peers.close()


def commssl_failure(exc: BaseException, wrapper: Optional[type] = None, may_wrap: bool = False,
                    ) -> commssl.SSLCondition:
    """The commssl exception an entry point raised: ``exc`` itself; with ``wrapper`` (httpx)
    an exception of that type whose ``__cause__`` it is; with ``may_wrap`` (anyio) either."""
    group = getattr(exc, "exceptions", None)  # an ExceptionGroup of a task group (3.11+ or backport)
    if isinstance(group, tuple) and len(group) == 1:
        exc = group[0]
    if wrapper is not None:
        assert isinstance(exc, wrapper), repr(exc)
        exc = exc.__cause__  # type: ignore[assignment]
    elif may_wrap and not isinstance(exc, commssl.SSLCondition) and exc.__cause__ is not None:
        exc = exc.__cause__
    assert isinstance(exc, commssl.SSLCondition), repr(exc)
    return exc


# -- client side --------------------------------------------------------------------------------------


def trusting(**kw: Any) -> Callable[[Material], Any]:
    """A client abstract context trusting the test root, with ``kw``."""
    return lambda m: commssl.create_ssl_client_context(openssl_trusted_file=m.pki.root_cert, **kw)


def pinning(pin: Callable[[Material], str]) -> Callable[[Material], Any]:
    """A client context whose verify_callback(conn) accepts the leaf with that SPKI pin only."""
    def make(m: Material) -> Any:
        expected = pin(m)

        def check(conn: Any) -> bool:
            with commssl.peer_certificates(conn) as certs:
                leaf = certs[0] if certs else None
                return leaf is not None and pin_of(leaf) == expected
        return commssl.create_ssl_client_context(openssl_trusted_file=m.pki.root_cert, verify_callback=check)
    return make


@dataclass(frozen=True)
class ClientRule:
    """Refused: a server in ``refused_server`` config met with ``refused_ctx`` fails with
    SSLVerificationFailure ``code``. Control: ``accepted_server`` with ``accepted_ctx`` connects."""

    refused_server: str
    refused_ctx: Callable[[Material], Any]
    accepted_server: str
    accepted_ctx: Callable[[Material], Any]
    code: Optional[int]


STAPLE = trusting(ocsp_stapling="require")
CLIENT_RULES: Dict[str, ClientRule] = {
    "host-name": ClientRule("wrongname", trusting(), "good", trusting(), HOSTNAME_MISMATCH),
    "pin": ClientRule("good", pinning(lambda m: m.wrong_pin), "good", pinning(lambda m: m.server_pin), None),
    "ocsp-require-no-staple": ClientRule("good", STAPLE, "staple-good", STAPLE, OCSP_VERIFY_NEEDED),
    "ocsp-require-revoked": ClientRule("staple-revoked", STAPLE, "staple-good", STAPLE, REVOKED),
    "crl-revoked-server": ClientRule("good", lambda m: trusting(crl_file=m.crl_server)(m),
                                     "good", lambda m: trusting(crl_file=m.crl_none)(m), REVOKED),
}

CLIENT_ENTRIES: Dict[str, pp.ClientEntry] = {
    "open_tcp_stream": pp.ClientEntry(pp.open_tcp_stream),
    "create_ssl_socket_stream": pp.ClientEntry(pp.create_ssl_socket_stream),
    "attach_ssl": pp.ClientEntry(pp.attach_ssl),
    "open_tcp_stream_async": pp.ClientEntry(pp.open_tcp_stream_async),
    "attach_ssl_async": pp.ClientEntry(pp.attach_ssl_async),
    "anyio.wrap-asyncio": pp.ClientEntry(pp.anyio_wrap, may_wrap=True),
    "anyio.connect-asyncio": pp.ClientEntry(pp.anyio_connect, may_wrap=True),
    "anyio.connect-trio": pp.ClientEntry(functools.partial(pp.anyio_connect, backend="trio"), may_wrap=True),
    "httpx.HTTPTransport": pp.ClientEntry(pp.httpx_sync, wrapper=httpx.ConnectError),
    "httpx.AsyncHTTPTransport-asyncio": pp.ClientEntry(pp.httpx_async, wrapper=httpx.ConnectError),
    "httpx.AsyncHTTPTransport-trio": pp.ClientEntry(functools.partial(pp.httpx_async, backend="trio"),
                                                    wrapper=httpx.ConnectError),
}


def _client_rows() -> List[Any]:
    rows = []
    for entry in CLIENT_ENTRIES:
        for name, rule in CLIENT_RULES.items():
            for peer, serves in pp.SERVER_PEERS.items():
                if serves(rule.refused_server) and serves(rule.accepted_server):
                    rows.append(pytest.param(entry, name, peer, id=f"{entry}-{name}-{peer}"))
    return rows


def _served(status: bytes) -> None:
    assert status.startswith(b"HTTP/1.") and status.split()[1] == b"200", status


@pytest.mark.parametrize("entry,rule,peer", _client_rows())
def test_client_rule(entry: str, rule: str, peer: str, material: Material,
                     server_peers: pp.ServerPeers) -> None:
    e, r = CLIENT_ENTRIES[entry], CLIENT_RULES[rule]
    # control: the same entry point, peer and kind of context, the rule satisfied
    _served(e.fetch(server_peers.port(peer, r.accepted_server), r.accepted_ctx(material)))
    with pytest.raises(Exception) as info:
        e.fetch(server_peers.port(peer, r.refused_server), r.refused_ctx(material))
    failure = commssl_failure(info.value, e.wrapper, e.may_wrap)
    assert isinstance(failure, commssl.SSLVerificationFailure), repr(failure)
    if r.code is not None:
        assert failure.verify_code == r.code, repr(failure)


def _opt_out_rows() -> List[Any]:
    return [pytest.param(entry, peer, id=f"{entry}-{peer}")
            for entry in CLIENT_ENTRIES for peer in pp.SERVER_PEERS]


@pytest.mark.parametrize("entry,peer", _opt_out_rows())
def test_client_check_hostname_false(entry: str, peer: str, material: Material,
                                     server_peers: pp.ServerPeers) -> None:
    """The one opt-out: check_hostname=False accepts a wrong name whose chain verifies, and
    still refuses a chain that does not."""
    e = CLIENT_ENTRIES[entry]
    _served(e.fetch(server_peers.port(peer, "wrongname"), trusting()(material), check_hostname=False))
    with pytest.raises(Exception) as info:
        e.fetch(server_peers.port(peer, "untrusted"), trusting()(material), check_hostname=False)
    assert isinstance(commssl_failure(info.value, e.wrapper, e.may_wrap), commssl.SSLVerificationFailure)


# A client with no name at all: a ValueError naming the argument, before any byte is sent.


def _blocking_no_name(ctx: Any, address: Any, **kw: Any) -> None:
    with socket.create_connection(address, timeout=pp.HS) as sock:
        commssl.create_ssl_socket_stream(sock, ctx, ssl_side="client", handshake_timeout=1, **kw).close()


def _attach_no_name(ctx: Any, address: Any, **kw: Any) -> None:
    sock = socket.create_connection(address, timeout=pp.HS)
    with commssl.create_ssl_socket_stream(sock, None, timeout=1) as stream:  # a socket: no host
        commssl.attach_ssl(stream, ssl_ctx=ctx, ssl_side="client", handshake_timeout=1, **kw)


def _anyio_no_name(ctx: Any, address: Any, **kw: Any) -> None:
    async def main() -> None:
        async with await anyio.connect_tcp(*address) as tcp:
            tls = await commssl.anyio.wrap(tcp, ssl_ctx=ctx, ssl_side="client", handshake_timeout=1, **kw)
            await tls.aclose()
    anyio.run(main)


NO_NAME: Dict[str, Any] = {
    # entry: (call(ctx, address, **kw), the argument the ValueError names, keywords giving a name)
    "create_ssl_socket_stream": (_blocking_no_name, "tlsext_host_name", {"tlsext_host_name": pp.DIAL}),
    "attach_ssl-on-a-socket": (_attach_no_name, "tlsext_host_name", {"tlsext_host_name": pp.DIAL}),
    "anyio.wrap-asyncio": (_anyio_no_name, "server_hostname", {"server_hostname": pp.DIAL}),
}


@pytest.mark.parametrize("entry", list(NO_NAME))
def test_client_without_a_name(entry: str, material: Material, server_peers: pp.ServerPeers) -> None:
    call, argument, named = NO_NAME[entry]
    # control: given a name, the same call connects and verifies (commssl server)
    call(trusting()(material), (HOST, server_peers.port("commssl", "good")), **named)
    # no name: refused before a byte reaches the peer (which records what each client sent)
    with recording_server() as recorder:
        with pytest.raises(ValueError, match=argument):
            call(trusting()(material), (HOST, recorder.port))
        recorder.wait_finished(1)
        assert recorder.received == [b""], recorder.received  # type: ignore[attr-defined]


# -- server side --------------------------------------------------------------------------------------


class Calls:
    """What a server verify_callback saw: the number of certificates of each chain."""

    def __init__(self) -> None:
        self.chains: List[int] = []


def _ctx_pointer(m: Material, mode: List[str], crl: Optional[Path] = None) -> commssl.SSLCtxPointer:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, m.pki.server_chain)
    commssl.ssl_ctx_use_privatekey_file(ctx, m.pki.server_key)
    commssl.ssl_ctx_load_verify_locations(ctx, m.pki.root_cert)
    commssl.set_verification_mode(ctx, "server", mode)
    if crl is not None:
        commssl.ssl_ctx_load_crl(ctx, crl)
        commssl.set_crl_checking(ctx, "leaf")
    return ctx


def _deciding(m: Material, calls: Calls) -> Any:
    """A server abstract context whose callback accepts a verified client certificate only."""
    def decide(conn: Any) -> bool:
        with commssl.peer_certificates(conn) as certs:
            calls.chains.append(len(certs))
            return bool(certs) and commssl.ssl_connection_verify(conn)[0]
    return commssl.create_ssl_server_context(cert_file=m.pki.server_chain, key_file=m.pki.server_key,
                                             openssl_trusted_file=m.pki.root_cert, verify_callback=decide)


@dataclass(frozen=True)
class ServerRule:
    """``ctx(material, calls)`` refuses a client presenting ``refused`` (CLIENT_CERTS key) with
    SSLVerificationFailure ``code`` and serves one presenting ``accepted``.
    ``sees_empty_chain``: the refusal was the callback's, called with an empty chain."""

    ctx: Callable[[Material, Calls], Any]
    refused: Optional[str]
    accepted: str
    code: Optional[int] = None
    sees_empty_chain: bool = False


SERVER_RULES: Dict[str, ServerRule] = {
    "mode-fail-if-no-peer-cert": ServerRule(
        lambda m, c: _ctx_pointer(m, ["verify-peer", "fail-if-no-peer-cert"]), None, "client"),
    "context-fail_if_no_peer_cert": ServerRule(
        lambda m, c: commssl.create_ssl_server_context(  # type: ignore[call-arg]
            cert_file=m.pki.server_chain, key_file=m.pki.server_key, openssl_trusted_file=m.pki.root_cert,
            fail_if_no_peer_cert=True), None, "client"),
    "callback-no-cert": ServerRule(_deciding, None, "client", sees_empty_chain=True),
    "callback-untrusted-cert": ServerRule(_deciding, "other", "client"),
    "crl-revoked-client": ServerRule(
        lambda m, c: _ctx_pointer(m, ["verify-peer", "fail-if-no-peer-cert"], m.crl_client), "client", "nocn",
        REVOKED),
}

SERVER_ENTRIES: Dict[str, Callable[[Any], Any]] = {
    "create_ssl_socket_stream": pp.serve_create_ssl_socket_stream,
    "attach_ssl": pp.serve_attach_ssl,
    "start_ssl_server": pp.serve_start_ssl_server,
    "attach_ssl_async": pp.serve_attach_ssl_async,
    "anyio.wrap-asyncio": pp.serve_anyio("asyncio"),
    "anyio.wrap-trio": pp.serve_anyio("trio"),
}


def _server_rows() -> List[Any]:
    return [pytest.param(entry, rule, peer, id=f"{entry}-{rule}-{peer}")
            for entry in SERVER_ENTRIES for rule in SERVER_RULES for peer in pp.CLIENT_PEERS]


@pytest.mark.parametrize("entry,rule,peer", _server_rows())
def test_server_rule(entry: str, rule: str, peer: str, material: Material) -> None:
    r, calls = SERVER_RULES[rule], Calls()
    ctx = r.ctx(material, calls)
    try:
        with SERVER_ENTRIES[entry](ctx) as server:
            # control: the same server serves the accepted client
            received = pp.client_peer(peer, material.pki, server.port, r.accepted)
            outcome = server.next()
            assert outcome[0] == "served", outcome
            assert pp.SECRET in received, received
            # refused: the server's handshake fails, the client gets no application data
            calls.chains.clear()
            received = pp.client_peer(peer, material.pki, server.port, r.refused)
            outcome = server.next()
            assert outcome[0] == "failed", (outcome, received)
            assert pp.SECRET not in received, received
            failure = commssl_failure(outcome[1], may_wrap=entry.startswith("anyio"))
            assert isinstance(failure, commssl.SSLVerificationFailure), repr(failure)
            if r.code is not None:
                assert failure.verify_code == r.code, repr(failure)
            if r.sees_empty_chain:
                assert calls.chains == [0], calls.chains
    finally:
        if isinstance(ctx, commssl.SSLCtxPointer):
            commssl.destroy_ssl_ctx(ctx)
