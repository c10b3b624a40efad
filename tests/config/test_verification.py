"""Verification modes (seed page ``set-verification-mode``), verify callbacks and the
``x509_store_ctx_*`` helpers, against real peers: commssl <-> commssl, the ``openssl``
programs, and CPython's ``ssl``.

PKI: root (depth 2) -> intermediate (depth 1) -> leaf (depth 0); servers send leaf +
intermediate, clients trust the root (``client_ctx()``) or nothing from the test PKI
(``client_ctx(cafile=None)``: the system store only).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import sys
import threading
import traceback
from types import ModuleType
from typing import Any, Callable, List, Optional, Tuple

import pytest
from cffi import FFI

import commssl
from commssl import lib
from helpers import (
    assert_alert,
    connect,
    only_error,
    only_result,
    peer_cns,
    rejected_by_server,
    serve_report,
    talk,
)
from peers import PKI, WAIT, in_thread, openssl_client, openssl_server

ROOT_CN = PKI.root_cn
INTER_CN = PKI.intermediate_cn
CHAIN_CNS = [ROOT_CN, INTER_CN]  # the CA part, as callbacks see it from the root down
X509_V_OK = 0
UNSPECIFIED = lib.X509_V_ERR_UNSPECIFIED  # 1
UNABLE_TO_GET_ISSUER_CERT_LOCALLY = lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY  # 20
SELF_SIGNED_CERT_IN_CHAIN = lib.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN  # 19
CERT_CHAIN_TOO_LONG = 22
CERT_REVOKED = 23
APPLICATION_VERIFICATION = lib.X509_V_ERR_APPLICATION_VERIFICATION  # 50
HOSTNAME_MISMATCH = lib.X509_V_ERR_HOSTNAME_MISMATCH  # 62

Factory = Callable[..., commssl.SSLCtxPointer]


# -- helpers -------------------------------------------------------------------


class Recorder:
    """A Python verify callback recording (preverify, depth, error, CN of the current cert)."""

    def __init__(self, answer: Callable[[bool, int], Any] = lambda ok, depth: True) -> None:
        self.answer = answer
        self.calls: List[Tuple[bool, int, int, Optional[str]]] = []
        self.threads: List[str] = []

    def __call__(self, ok: bool, store_ctx: commssl.X509StoreCtxPointer) -> Any:
        assert isinstance(ok, bool) and isinstance(store_ctx, commssl.X509StoreCtxPointer)
        depth = commssl.x509_store_ctx_get_error_depth(store_ctx)
        cert = commssl.x509_store_ctx_get_current_cert(store_ctx)
        assert cert is not None and not cert.owned and not cert.released
        self.calls.append((ok, depth, commssl.x509_store_ctx_get_error(store_ctx),
                           commssl.get_certificate_common_name(cert)))
        self.threads.append(threading.current_thread().name)
        return self.answer(ok, depth)

    @property
    def depths(self) -> List[int]:
        return [c[1] for c in self.calls]


# -- server modes ----------------------------------------------------------------


def test_server_never_requests_no_certificate(pki: PKI, server_ctx: Factory, client_ctx: Factory,
                                              commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", "never")
    assert commssl.get_verification_mode(sctx) == []
    server = commssl_server(sctx, serve_report)
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
    assert talk(server.port, cctx) == (b"ping\n", (True, X509_V_OK))
    # the client had a certificate but was not asked for it
    assert only_result(server) == ([], (False, UNSPECIFIED))


def test_server_never_is_the_default(pki: PKI, server_ctx: Factory, client_ctx: Factory,
                                     commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    assert commssl.get_verification_mode(sctx) == []
    server = commssl_server(sctx, serve_report)
    talk(server.port, client_ctx(chain=pki.client_chain, key=pki.client_key))
    assert only_result(server)[0] == []


@pytest.mark.parametrize("mode", ["always", "once", ["verify-peer"], 1, 5])
def test_server_requesting_modes_accept_a_client_without_certificate(
        mode: Any, server_ctx: Factory, client_ctx: Factory, pki: PKI, commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", mode)
    server = commssl_server(sctx, serve_report)
    assert talk(server.port, client_ctx())[0] == b"ping\n"
    assert only_result(server) == ([], (False, UNSPECIFIED))


@pytest.mark.parametrize("mode", ["always", "once", ["verify-peer", "fail-if-no-peer-cert"], 3, 7])
def test_server_requesting_modes_verify_a_client_certificate(
        mode: Any, server_ctx: Factory, client_ctx: Factory, pki: PKI, commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", mode)
    server = commssl_server(sctx, serve_report)
    talk(server.port, client_ctx(chain=pki.client_chain, key=pki.client_key))
    assert only_result(server) == ([PKI.client_cn, INTER_CN], (True, X509_V_OK))


@pytest.mark.parametrize("mode", ["always", "once", ["verify-peer", "verify-client-once"], 1])
def test_server_rejects_an_untrusted_client_certificate(
        mode: Any, server_ctx: Factory, client_ctx: Factory, pki: PKI, commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", mode)
    server = commssl_server(sctx)
    # other_chain: a leaf and the root that signed it, which the server does not trust
    client_exc = rejected_by_server(server.port, client_ctx(chain=pki.other_chain, key=pki.other_key))
    exc = only_error(server)
    assert isinstance(exc, commssl.SSLVerificationFailure)
    assert (exc.verify_code, exc.depth) == (SELF_SIGNED_CERT_IN_CHAIN, 1)
    assert exc.ssl_code == ("verification", SELF_SIGNED_CERT_IN_CHAIN)
    assert exc.verify_message == commssl.x509_verify_cert_error_string(SELF_SIGNED_CERT_IN_CHAIN)
    assert exc.verify_message in str(exc)
    assert_alert(client_exc, "unknown ca")


@pytest.mark.parametrize("mode", [["verify-peer", "fail-if-no-peer-cert"],
                                  ["fail-if-no-peer-cert", "verify-peer"],
                                  lib.SSL_VERIFY_PEER | lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT])
def test_server_fail_if_no_peer_cert_rejects_a_client_without_certificate(
        mode: Any, server_ctx: Factory, client_ctx: Factory, pki: PKI, commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", mode)
    assert commssl.get_verification_mode(sctx) == ["verify-peer", "fail-if-no-peer-cert"]
    server = commssl_server(sctx)
    client_exc = rejected_by_server(server.port, client_ctx())
    exc = only_error(server)
    assert isinstance(exc, commssl.SSLVerificationFailure)
    assert (exc.verify_code, exc.depth, exc.ssl_code) == (UNSPECIFIED, None, ("verification", UNSPECIFIED))
    assert_alert(client_exc, "certificate required")


def test_server_int_mode_is_passed_as_is(server_ctx: Factory) -> None:
    ctx = server_ctx()
    flags = lib.SSL_VERIFY_PEER | lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT | lib.SSL_VERIFY_POST_HANDSHAKE
    commssl.set_verification_mode(ctx, "server", flags)
    assert lib.SSL_CTX_get_verify_mode(ctx.cdata) == flags  # the bit with no keyword kept too
    assert commssl.get_verification_mode(ctx) == ["verify-peer", "fail-if-no-peer-cert"]
    commssl.set_verification_mode(ctx, "server", 0)
    assert lib.SSL_CTX_get_verify_mode(ctx.cdata) == 0


# -- client modes ----------------------------------------------------------------


@pytest.mark.parametrize("chain,code", [("server_chain", UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
                                        ("other_chain", SELF_SIGNED_CERT_IN_CHAIN),
                                        ("selfsigned_cert", lib.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)])
def test_client_never_connects_to_an_untrusted_server_and_records_the_result(
        chain: str, code: int, pki: PKI, server_ctx: Factory, client_ctx: Factory,
        commssl_server: Any) -> None:
    key = {"server_chain": pki.server_key, "other_chain": pki.other_key,
           "selfsigned_cert": pki.selfsigned_key}[chain]
    server = commssl_server(server_ctx(getattr(pki, chain), key))
    cctx = client_ctx(cafile=None)  # trusts nothing of the test PKI
    commssl.set_verification_mode(cctx, "client", "never")
    assert commssl.get_verification_mode(cctx) == []
    assert talk(server.port, cctx) == (b"ping\n", (False, code))
    only_result(server)


@pytest.mark.parametrize("mode", ["always", ["verify-peer"], 1])
def test_client_verifying_modes_reject_an_untrusted_server(
        mode: Any, pki: PKI, server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    cctx = client_ctx(cafile=None)
    commssl.set_verification_mode(cctx, "client", mode)
    assert commssl.get_verification_mode(cctx) == ["verify-peer"]
    server = commssl_server(server_ctx())
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, cctx)
    exc = info.value
    assert (exc.verify_code, exc.depth) == (UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 1)
    assert exc.verify_message == "unable to get local issuer certificate"
    assert exc.ssl_code == ("verification", UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
    assert "depth 1" in str(exc) and exc.verify_message in str(exc)
    assert_alert(only_error(server), "unknown ca")


@pytest.mark.parametrize("mode", ["always", ["verify-peer"], 1])
def test_client_verifying_modes_accept_a_trusted_server(
        mode: Any, server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", mode)
    server = commssl_server(server_ctx())
    assert talk(server.port, cctx) == (b"ping\n", (True, X509_V_OK))
    only_result(server)


def test_client_once_is_a_value_error(client_ctx: Factory) -> None:
    ctx = client_ctx()
    with pytest.raises(ValueError, match="'once'.*client"):
        commssl.set_verification_mode(ctx, "client", "once")
    assert commssl.get_verification_mode(ctx) == ["verify-peer"]  # unchanged


# -- get_verification_mode ---------------------------------------------------------

ROUND_TRIPS = [
    ("server", "never", []),
    ("server", "always", ["verify-peer"]),
    ("server", "once", ["verify-peer", "verify-client-once"]),
    ("server", [], []),
    ("server", ["fail-if-no-peer-cert", "verify-peer"], ["verify-peer", "fail-if-no-peer-cert"]),
    ("server", ("verify-client-once", "fail-if-no-peer-cert", "verify-peer"),
     ["verify-peer", "fail-if-no-peer-cert", "verify-client-once"]),
    ("server", ["verify-peer", "verify-peer"], ["verify-peer"]),
    ("server", 0, []),
    ("server", 7, ["verify-peer", "fail-if-no-peer-cert", "verify-client-once"]),
    ("client", "never", []),
    ("client", "always", ["verify-peer"]),
    ("client", ["verify-peer"], ["verify-peer"]),
    ("client", 1, ["verify-peer"]),
]


@pytest.mark.parametrize("side,mode,expected", ROUND_TRIPS)
def test_get_verification_mode_round_trips_in_fixed_order(
        side: str, mode: Any, expected: List[str], pki: PKI, client_ctx: Factory, server_ctx: Factory,
        commssl_server: Any) -> None:
    ctx = server_ctx(cafile=pki.root_cert) if side == "server" else client_ctx()
    commssl.set_verification_mode(ctx, side, mode)
    assert commssl.get_verification_mode(ctx) == expected
    # the same on a single connection's SSL (SSL_set_verify), leaving the context as it is
    commssl.set_verification_mode(ctx, side, "never")
    seen: List[List[str]] = []

    def configure(sslp: commssl.SSLPointer) -> None:
        seen.append(commssl.get_verification_mode(sslp))
        commssl.set_verification_mode(sslp, side, mode)
        seen.append(commssl.get_verification_mode(sslp))

    if side == "client":
        server = commssl_server(server_ctx())
        talk(server.port, ctx, ssl_configure_callback=configure)
    else:
        server = commssl_server(ctx, ssl_configure_callback=configure)
        talk(server.port, client_ctx(chain=pki.client_chain, key=pki.client_key))
    only_result(server)
    assert seen == [[], expected]
    assert commssl.get_verification_mode(ctx) == []


BAD_MODES = [
    ("client", "once", ValueError, ["'once'", "'never'", "'always'"]),
    ("server", "sometimes", ValueError, ["'sometimes'", "'never'", "'always'", "'once'"]),
    ("server", ["verify-peer", "verify-always"], ValueError, ["'verify-always'", "'verify-peer'"]),
    ("server", ["verify-peer", 1], TypeError, ["int"]),
    ("server", -1, ValueError, ["-1"]),
    ("server", 2 ** 31, ValueError, ["mode"]),
    ("server", True, TypeError, ["bool"]),
    ("server", 1.0, TypeError, ["float"]),
    ("server", None, TypeError, ["NoneType"]),
    ("server", {"verify-peer"}, TypeError, ["set"]),
    ("both", "never", ValueError, ["ssl_side", "'both'"]),
    ("Server", "never", ValueError, ["ssl_side"]),
    (1, "never", TypeError, ["ssl_side"]),
]


def test_set_verification_mode_bad_arguments(server_ctx: Factory) -> None:
    ctx = server_ctx()
    commssl.set_verification_mode(ctx, "server", "once")
    for side, mode, exc, words in BAD_MODES:
        with pytest.raises(exc) as info:
            commssl.set_verification_mode(ctx, side, mode)
        for word in words:
            assert word in str(info.value), (side, mode, str(info.value))
    assert commssl.get_verification_mode(ctx) == ["verify-peer", "verify-client-once"]  # untouched
    for target in (None, 42, "ctx", object()):
        with pytest.raises(TypeError, match="ssl_ctx"):
            commssl.set_verification_mode(target, "server", "never")
        with pytest.raises(TypeError, match="ssl_or_ssl_ctx"):
            commssl.get_verification_mode(target)
    for callback in (42, "callback", [lambda ok, s: True]):
        with pytest.raises(TypeError, match="callback"):
            commssl.set_verification_mode(ctx, "server", "never", callback)


def test_mode_set_on_one_connection(pki: PKI, server_ctx: Factory, client_ctx: Factory,
                                    commssl_server: Any) -> None:
    """SSL_set_verify through ssl_configure_callback: the server context asks for nothing,
    one connection requires a certificate; the context is unchanged."""
    sctx = server_ctx(cafile=pki.root_cert)

    def require(sslp: commssl.SSLPointer) -> None:
        assert isinstance(sslp, commssl.SSLPointer)
        commssl.set_verification_mode(sslp, "server", ["verify-peer", "fail-if-no-peer-cert"])

    server = commssl_server(sctx, serve_report, count=2, ssl_configure_callback=require)
    client_exc = rejected_by_server(server.port, client_ctx())
    talk(server.port, client_ctx(chain=pki.client_chain, key=pki.client_key))
    server.join()
    assert len(server.errors) == 1 and isinstance(server.errors[0], commssl.SSLVerificationFailure)
    assert server.results == [([PKI.client_cn, INTER_CN], (True, X509_V_OK))]
    assert_alert(client_exc, "certificate required")
    assert commssl.get_verification_mode(sctx) == []


def test_client_mode_set_on_one_connection(server_ctx: Factory, client_ctx: Factory,
                                           commssl_server: Any) -> None:
    cctx = client_ctx(cafile=None)  # "always" and untrusted: would fail
    server = commssl_server(server_ctx())
    reply = talk(server.port, cctx,
                 ssl_configure_callback=lambda s: commssl.set_verification_mode(s, "client", "never"))
    assert reply == (b"ping\n", (False, UNABLE_TO_GET_ISSUER_CERT_LOCALLY))
    assert commssl.get_verification_mode(cctx) == ["verify-peer"]
    only_result(server)


def test_context_mode_does_not_affect_ssls_already_made(server_ctx: Factory, client_ctx: Factory,
                                                       commssl_server: Any) -> None:
    cctx = client_ctx(cafile=None)
    modes: List[Tuple[List[str], List[str]]] = []

    def relax_context(sslp: commssl.SSLPointer) -> None:
        # This SSL exists now (with "always"); relaxing the context must not change it.
        commssl.set_verification_mode(cctx, "client", "never", lambda ok, s: True)
        modes.append((commssl.get_verification_mode(sslp), commssl.get_verification_mode(cctx)))

    server = commssl_server(server_ctx(), count=2)
    with pytest.raises(commssl.SSLVerificationFailure):
        connect(server.port, cctx, ssl_configure_callback=relax_context)
    assert modes == [(["verify-peer"], [])]
    # a connection made afterwards takes the context's new mode
    assert talk(server.port, cctx)[1] == (False, UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
    server.join()
    assert len(server.errors) == 1 and len(server.results) == 1


# -- Python callbacks ------------------------------------------------------------


def test_client_callback_called_from_root_depth_down_to_the_leaf(
        server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    cctx = client_ctx()
    rec = Recorder()
    commssl.set_verification_mode(cctx, "client", "always", rec)
    server = commssl_server(server_ctx())
    assert talk(server.port, cctx) == (b"ping\n", (True, X509_V_OK))
    assert rec.calls == [(True, 2, X509_V_OK, ROOT_CN), (True, 1, X509_V_OK, INTER_CN),
                         (True, 0, X509_V_OK, PKI.server_cn)]
    only_result(server)


def test_server_callback_called_from_root_depth_down_to_the_leaf(
        pki: PKI, server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    rec = Recorder()
    commssl.set_verification_mode(sctx, "server", "always", rec)
    server = commssl_server(sctx, serve_report)
    talk(server.port, client_ctx(chain=pki.client_chain, key=pki.client_key))
    assert only_result(server) == ([PKI.client_cn, INTER_CN], (True, X509_V_OK))
    assert rec.calls == [(True, 2, X509_V_OK, ROOT_CN), (True, 1, X509_V_OK, INTER_CN),
                         (True, 0, X509_V_OK, PKI.client_cn)]
    assert set(rec.threads) == {server.thread.name}  # the thread that drove the handshake


def test_callback_sees_preverify_failures(server_ctx: Factory, client_ctx: Factory,
                                          commssl_server: Any) -> None:
    """Accepting every failure: OpenSSL goes on and reports each problem it finds."""
    cctx = client_ctx(cafile=None)
    rec = Recorder()
    commssl.set_verification_mode(cctx, "client", "always", rec)
    server = commssl_server(server_ctx())
    assert talk(server.port, cctx) == (b"ping\n", (False, UNABLE_TO_GET_ISSUER_CERT_LOCALLY))
    assert rec.calls[0] == (False, 1, UNABLE_TO_GET_ISSUER_CERT_LOCALLY, INTER_CN)
    assert rec.depths[-1] == 0 and rec.calls[-1][3] == PKI.server_cn
    only_result(server)


@pytest.mark.parametrize("reject_at", [2, 1, 0])
def test_client_callback_rejecting_fails_the_handshake(
        reject_at: int, server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    cctx = client_ctx()
    rec = Recorder(lambda ok, depth: depth != reject_at)
    commssl.set_verification_mode(cctx, "client", "always", rec)
    server = commssl_server(server_ctx())
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, cctx)
    exc = info.value
    assert (exc.verify_code, exc.depth, exc.ssl_code) == (APPLICATION_VERIFICATION, reject_at,
                                                          "verify-callback")
    assert exc.verify_message == commssl.x509_verify_cert_error_string(APPLICATION_VERIFICATION)
    assert rec.depths == list(range(2, reject_at - 1, -1))  # stops at the rejection
    assert_alert(only_error(server))


def test_server_callback_rejecting_fails_the_handshake(
        pki: PKI, server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", "always", Recorder(lambda ok, depth: depth != 0))
    server = commssl_server(sctx)
    client_exc = rejected_by_server(server.port, client_ctx(chain=pki.client_chain, key=pki.client_key))
    exc = only_error(server)
    assert isinstance(exc, commssl.SSLVerificationFailure)
    assert (exc.verify_code, exc.depth, exc.ssl_code) == (APPLICATION_VERIFICATION, 0, "verify-callback")
    assert_alert(client_exc)


def test_callback_accepts_an_untrusted_chain(pki: PKI, server_ctx: Factory, client_ctx: Factory,
                                             commssl_server: Any) -> None:
    cctx = client_ctx()
    rec = Recorder()
    commssl.set_verification_mode(cctx, "client", "always", rec)
    server = commssl_server(server_ctx(pki.selfsigned_cert, pki.selfsigned_key))
    assert talk(server.port, cctx) == (b"ping\n", (False, lib.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT))
    assert rec.calls[0] == (False, 0, lib.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, PKI.selfsigned_cn)
    only_result(server)


class Boom(Exception):
    """Raised by callbacks under test."""


def raising_callback(ok: bool, store_ctx: commssl.X509StoreCtxPointer) -> bool:
    if commssl.x509_store_ctx_get_error_depth(store_ctx) == 1:
        raise Boom("from the verify callback")
    return True


def assert_raised_here(exc: BaseException) -> None:
    assert type(exc) is Boom and str(exc) == "from the verify callback"
    names = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    assert names[-1] == "raising_callback", names


@pytest.mark.parametrize("mode", ["always", "never"])
def test_client_callback_exception_propagates(mode: str, server_ctx: Factory, client_ctx: Factory,
                                              commssl_server: Any) -> None:
    """Also from a "never" context, where the handshake itself goes on."""
    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", mode, raising_callback)
    server = commssl_server(server_ctx())
    with pytest.raises(Boom) as info:
        connect(server.port, cctx)
    assert_raised_here(info.value)
    server.join()
    assert len(server.errors) == 1 and isinstance(server.errors[0], commssl.SSLCondition)


def test_client_callback_exception_propagates_from_another_thread(
        server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", raising_callback)
    server = commssl_server(server_ctx(), count=2)
    futures = [in_thread(connect, server.port, cctx) for _ in range(2)]
    for fut in futures:
        with pytest.raises(Boom) as info:
            fut.result(WAIT)
        assert_raised_here(info.value)
    server.join()
    assert len(server.errors) == 2


def test_server_callback_exception_propagates(pki: PKI, server_ctx: Factory, client_ctx: Factory,
                                              commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", "always", raising_callback)
    server = commssl_server(sctx)
    client_exc = rejected_by_server(server.port, client_ctx(chain=pki.client_chain, key=pki.client_key))
    assert_raised_here(only_error(server))  # from create_ssl_socket_stream, in the server thread
    assert_alert(client_exc)


def test_per_connection_callback_exception_propagates(server_ctx: Factory, client_ctx: Factory,
                                                      commssl_server: Any) -> None:
    server = commssl_server(server_ctx())
    with pytest.raises(Boom) as info:
        connect(server.port, client_ctx(), ssl_configure_callback=lambda s: commssl.set_verification_mode(
            s, "client", "always", raising_callback))
    assert_raised_here(info.value)


class Truthy:
    def __bool__(self) -> bool:
        return True


class BadBool:
    def __bool__(self) -> bool:
        raise Boom("from __bool__")


@pytest.mark.parametrize("value", [None, 0, "", [], False, 0.0, Truthy, BadBool],
                         ids=["None", "0", "empty-str", "empty-list", "False", "0.0", "truthy-object",
                              "raising-bool"])
def test_callback_junk_return_values(value: Any, server_ctx: Factory, client_ctx: Factory,
                                     commssl_server: Any) -> None:
    if isinstance(value, type):
        value = value()
    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", lambda ok, s: value)
    server = commssl_server(server_ctx())
    if isinstance(value, Truthy):
        assert talk(server.port, cctx) == (b"ping\n", (True, X509_V_OK))
        only_result(server)
        return
    expected = Boom if isinstance(value, BadBool) else commssl.SSLVerificationFailure
    with pytest.raises(expected) as info:
        connect(server.port, cctx)
    if isinstance(value, BadBool):
        assert str(info.value) == "from __bool__"
    else:
        assert info.value.ssl_code == "verify-callback" and info.value.depth == 2
    server.join()


@pytest.mark.parametrize("answer", ["object", "list", "int"])
def test_callback_truthy_junk_accepts_an_untrusted_chain(answer: str, server_ctx: Factory,
                                                         client_ctx: Factory, commssl_server: Any) -> None:
    value = {"object": object(), "list": [0], "int": -7}[answer]
    cctx = client_ctx(cafile=None)
    commssl.set_verification_mode(cctx, "client", "always", lambda ok, s: value)
    server = commssl_server(server_ctx())
    assert talk(server.port, cctx)[0] == b"ping\n"
    only_result(server)


def test_per_connection_callback_overrides_the_contexts(server_ctx: Factory, client_ctx: Factory,
                                                        commssl_server: Any) -> None:
    cctx = client_ctx(cafile=None)
    ctx_rec = Recorder(lambda ok, depth: False)
    conn_rec = Recorder()
    commssl.set_verification_mode(cctx, "client", "always", ctx_rec)
    server = commssl_server(server_ctx(), count=2)
    talk(server.port, cctx, ssl_configure_callback=lambda s: commssl.set_verification_mode(
        s, "client", "always", conn_rec))
    assert ctx_rec.calls == [] and conn_rec.depths[-1] == 0
    n = len(conn_rec.calls)
    # the next connection uses the context's callback again
    with pytest.raises(commssl.SSLVerificationFailure):
        connect(server.port, cctx)
    assert len(ctx_rec.calls) == 1 and len(conn_rec.calls) == n
    server.join()


def test_per_connection_none_clears_the_contexts_callback(server_ctx: Factory, client_ctx: Factory,
                                                          commssl_server: Any) -> None:
    cctx = client_ctx()
    ctx_rec = Recorder(lambda ok, depth: False)
    commssl.set_verification_mode(cctx, "client", "always", ctx_rec)
    server = commssl_server(server_ctx())
    assert talk(server.port, cctx, ssl_configure_callback=lambda s: commssl.set_verification_mode(
        s, "client", "always", None)) == (b"ping\n", (True, X509_V_OK))
    assert ctx_rec.calls == []
    only_result(server)


def test_callback_of_the_context_runs_for_an_ssl_made_outside_commssl(
        pki: PKI, server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    """SSL_new by hand, wrapped with SSLPointer(cdata): OpenSSL copied the context's C
    trampoline into the SSL, so the context's Python callback must be found and run
    (it once was silently skipped: a rejecting callback let the connection through)."""
    cctx = client_ctx()
    rec = Recorder(lambda ok, depth: False)
    commssl.set_verification_mode(cctx, "client", "always", rec)
    cdata = lib.SSL_new(cctx.cdata)
    sslp = commssl.SSLPointer(cdata)
    lib.SSL_free(cdata)  # the wrapper holds its own reference
    assert commssl.SSLPointer(sslp.cdata) is sslp
    server = commssl_server(server_ctx())
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, sslp)
    assert info.value.ssl_code == "verify-callback" and rec.depths == [2]
    server.join()


def test_callback_none_clears_an_earlier_callback(server_ctx: Factory, client_ctx: Factory,
                                                  commssl_server: Any) -> None:
    cctx = client_ctx(cafile=None)
    rec = Recorder()  # accepts everything: the untrusted server would pass
    commssl.set_verification_mode(cctx, "client", "always", rec)
    commssl.set_verification_mode(cctx, "client", "always", None)
    server = commssl_server(server_ctx())
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, cctx)
    assert info.value.verify_code == UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert rec.calls == []
    server.join()


# -- cffi C function pointers ----------------------------------------------------

# The module links no OpenSSL: an installed wheel carries its own libssl, and a test module
# linked against the system's would read commssl's SSL_CTX through another OpenSSL's struct
# layout (a Debian 13 system libssl 3.5 beside a wheel's 3.0 gives garbage).
_C_SOURCE = r"""
typedef struct x509_store_ctx_st X509_STORE_CTX;
int calls = 0;
int cb(int ok, X509_STORE_CTX *s) { (void)ok; (void)s; calls++; return 1; }
int cb_reject(int ok, X509_STORE_CTX *s) { (void)ok; (void)s; calls++; return 0; }
"""
_C_CDEF = """
typedef ... X509_STORE_CTX;
extern int calls;
int cb(int, X509_STORE_CTX *);
int cb_reject(int, X509_STORE_CTX *);
"""


@functools.cache
def _commssl_libssl() -> ctypes.CDLL:
    """The OpenSSL commssl itself uses: dladdr names the shared object behind one of
    commssl.lib's functions (cffi's module, or libssl), and dlsym through that handle
    searches it and the libraries it links, so it finds commssl's libssl."""
    if sys.platform == "win32":
        pytest.skip("reading a verify callback back needs dladdr")

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    address = address_of(commssl.ffi.addressof(lib, "SSL_CTX_get_verify_mode"))
    info = DlInfo()
    assert ctypes.CDLL(None).dladdr(ctypes.c_void_p(address), ctypes.byref(info)), "dladdr failed"
    libssl = ctypes.CDLL(info.dli_fname.decode())  # already loaded: the same object
    for name in ("SSL_CTX_get_verify_callback", "SSL_get_verify_callback"):
        getattr(libssl, name).restype = ctypes.c_void_p
        getattr(libssl, name).argtypes = [ctypes.c_void_p]
    return libssl


def ctx_verify_callback(ctx_address: int) -> int:
    """SSL_CTX_get_verify_callback, through commssl's own libssl."""
    return _commssl_libssl().SSL_CTX_get_verify_callback(ctx_address) or 0


def ssl_verify_callback(ssl_address: int) -> int:
    """SSL_get_verify_callback, through commssl's own libssl."""
    return _commssl_libssl().SSL_get_verify_callback(ssl_address) or 0


@pytest.fixture(scope="module")
def cmod(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """A separate small cffi module (own ffi, no OpenSSL of its own) with C verify callbacks."""
    builder = FFI()
    builder.cdef(_C_CDEF)
    builder.set_source("_commssl_test_verify_cb", _C_SOURCE)
    so = builder.compile(tmpdir=str(tmp_path_factory.mktemp("cffi_cb")))
    spec = importlib.util.spec_from_file_location("_commssl_test_verify_cb", so)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def c_pointer(cmod: ModuleType, name: str, how: str) -> Any:
    """The C function as a cffi function pointer, made in one of the ways a user would."""
    if how == "addressof":
        return cmod.ffi.addressof(cmod.lib, name)
    address = int(cmod.ffi.cast("uintptr_t", cmod.ffi.addressof(cmod.lib, name)))
    return commssl.ffi.cast("int(*)(int, X509_STORE_CTX *)", address)


def address_of(pointer: Any) -> int:
    return int(commssl.ffi.cast("uintptr_t", pointer))


@pytest.mark.parametrize("how", ["addressof", "cast"])
def test_c_callback_accepting_everything_is_installed_as_is(
        how: str, cmod: ModuleType, server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    cctx = client_ctx(cafile=None)
    py = Recorder()
    commssl.set_verification_mode(cctx, "client", "always", py)
    pointer = c_pointer(cmod, "cb", how)
    commssl.set_verification_mode(cctx, "client", "always", pointer)
    assert ctx_verify_callback(cctx.address) == address_of(pointer)
    seen: List[int] = []
    server = commssl_server(server_ctx())
    before = cmod.lib.calls
    assert talk(server.port, cctx, ssl_configure_callback=lambda s: seen.append(
        ssl_verify_callback(s.address))) == (b"ping\n", (False, UNABLE_TO_GET_ISSUER_CERT_LOCALLY))
    assert seen == [address_of(pointer)]  # the SSL inherited the very function
    assert cmod.lib.calls - before >= 2  # the C function ran for the untrusted chain ...
    assert py.calls == []  # ... and no Python did
    only_result(server)


def test_c_callback_rejecting_fails_a_good_chain(cmod: ModuleType, server_ctx: Factory,
                                                 client_ctx: Factory, commssl_server: Any) -> None:
    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", c_pointer(cmod, "cb_reject", "addressof"))
    server = commssl_server(server_ctx())
    before = cmod.lib.calls
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, cctx)
    assert cmod.lib.calls - before == 1  # called at the root's depth, and rejected there
    assert info.value.verify_code != X509_V_OK
    assert_alert(only_error(server))


def test_c_callback_per_connection_and_on_the_server(
        pki: PKI, cmod: ModuleType, server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    reject = c_pointer(cmod, "cb_reject", "cast")
    installed: List[int] = []

    def configure(sslp: commssl.SSLPointer) -> None:
        commssl.set_verification_mode(sslp, "server", "always", reject)
        installed.append(ssl_verify_callback(sslp.address))

    server = commssl_server(sctx, ssl_configure_callback=configure)
    client_exc = rejected_by_server(server.port, client_ctx(chain=pki.client_chain, key=pki.client_key))
    assert installed == [address_of(reject)]
    assert isinstance(only_error(server), commssl.SSLVerificationFailure)
    assert_alert(client_exc)
    assert ctx_verify_callback(sctx.address) != address_of(reject)


def test_c_callback_of_the_wrong_type_is_a_type_error(cmod: ModuleType, client_ctx: Factory) -> None:
    ctx = client_ctx()
    for wrong in (cmod.ffi.cast("int(*)(int)", 0), cmod.ffi.new("int *"), commssl.ffi.NULL):
        with pytest.raises(TypeError, match="callback"):
            commssl.set_verification_mode(ctx, "client", "always", wrong)


# -- host names ------------------------------------------------------------------


@pytest.mark.parametrize("case", ["tlsext_host_name", "wrongname_chain"])
def test_host_name_mismatch_seen_at_depth_zero(case: str, pki: PKI, server_ctx: Factory,
                                               client_ctx: Factory, commssl_server: Any) -> None:
    if case == "tlsext_host_name":
        sctx, name = server_ctx(), "wrong.example"
    else:
        sctx, name = server_ctx(pki.wrongname_chain, pki.wrongname_key), "localhost"
    cctx = client_ctx()
    rec = Recorder()
    commssl.set_verification_mode(cctx, "client", "always", rec)
    server = commssl_server(sctx, count=3)
    assert talk(server.port, cctx, tlsext_host_name=name)[1] == (False, HOSTNAME_MISMATCH)
    assert (False, 0, HOSTNAME_MISMATCH) in [c[:3] for c in rec.calls]
    assert all(c[1] == 0 for c in rec.calls if not c[0])
    # without a callback the mismatch is fatal, reported at depth 0
    commssl.set_verification_mode(cctx, "client", "always")
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, cctx, tlsext_host_name=name)
    assert (info.value.verify_code, info.value.depth) == (HOSTNAME_MISMATCH, 0)
    assert "hostname mismatch" in str(info.value)
    # and in "never" mode the name is still checked: recorded, not fatal
    commssl.set_verification_mode(cctx, "client", "never")
    assert talk(server.port, cctx, tlsext_host_name=name) == (b"ping\n", (False, HOSTNAME_MISMATCH))
    server.join()


# -- x509_store_ctx helpers --------------------------------------------------------


def test_set_error_makes_a_good_chain_fail_with_that_code(server_ctx: Factory, client_ctx: Factory,
                                                          commssl_server: Any) -> None:
    def revoke_leaf(ok: bool, store_ctx: commssl.X509StoreCtxPointer) -> bool:
        if commssl.x509_store_ctx_get_error_depth(store_ctx) == 0:
            commssl.x509_store_ctx_set_error(store_ctx, CERT_REVOKED)
            assert commssl.x509_store_ctx_get_error(store_ctx) == CERT_REVOKED
            return False
        return ok

    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", revoke_leaf)
    server = commssl_server(server_ctx())
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, cctx)
    exc = info.value
    assert (exc.verify_code, exc.depth, exc.ssl_code) == (CERT_REVOKED, 0, ("verification", CERT_REVOKED))
    assert exc.verify_message == "certificate revoked"
    assert_alert(only_error(server), "certificate revoked")  # OpenSSL's alert for that code


def test_store_ctx_helpers_bad_arguments(server_ctx: Factory, client_ctx: Factory,
                                         commssl_server: Any) -> None:
    problems: List[str] = []

    def check(ok: bool, store_ctx: commssl.X509StoreCtxPointer) -> bool:
        for bad in (-1, 2 ** 31):
            with pytest.raises(ValueError, match="code"):
                commssl.x509_store_ctx_set_error(store_ctx, bad)
        for junk in ("20", 2.0, True, None):
            with pytest.raises(TypeError, match="code"):
                commssl.x509_store_ctx_set_error(store_ctx, junk)  # type: ignore[arg-type]
        problems.append("checked")
        return ok

    for fn in (commssl.x509_store_ctx_get_error, commssl.x509_store_ctx_get_error_depth,
               commssl.x509_store_ctx_get_current_cert, commssl.x509_store_ctx_get_connection):
        with pytest.raises(TypeError, match="store_ctx"):
            fn(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="code"):
        commssl.x509_verify_cert_error_string("20")  # type: ignore[arg-type]
    assert commssl.x509_verify_cert_error_string(0) == "ok"
    assert commssl.x509_verify_cert_error_string(HOSTNAME_MISMATCH) == "hostname mismatch"
    assert commssl.x509_verify_cert_error_string(UNABLE_TO_GET_ISSUER_CERT_LOCALLY) == \
        "unable to get local issuer certificate"
    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", check)
    server = commssl_server(server_ctx())
    talk(server.port, cctx)
    assert problems == ["checked"] * 3
    only_result(server)


def test_get_connection_is_the_stream_being_verified(pki: PKI, server_ctx: Factory, client_ctx: Factory,
                                                     commssl_server: Any) -> None:
    seen: List[Any] = []

    def note(ok: bool, store_ctx: commssl.X509StoreCtxPointer) -> bool:
        seen.append(commssl.x509_store_ctx_get_connection(store_ctx))
        return ok

    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", "always", note)
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
    commssl.set_verification_mode(cctx, "client", "always", note)
    server = commssl_server(sctx, lambda stream: (stream, stream.write(stream.readline()))[0])
    with connect(server.port, cctx) as client_stream:
        client_stream.write(b"ping\n")
        assert client_stream.readline() == b"ping\n"
        server_stream = only_result(server)
        assert isinstance(server_stream, commssl.SocketStream)
        ids = {id(s) for s in seen}
        assert len(seen) == 6 and ids == {id(client_stream), id(server_stream)}
        assert [s is client_stream for s in seen].count(True) == 3
        assert commssl.ssl_connection_ssl_ref(client_stream) is commssl.socket_stream_ssl(client_stream)


def test_store_ctx_and_borrowed_certs_expire_after_the_callback(
        server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    kept: List[Tuple[commssl.X509StoreCtxPointer, commssl.X509Pointer]] = []
    inside: List[str] = []

    def keep(ok: bool, store_ctx: commssl.X509StoreCtxPointer) -> bool:
        cert = commssl.x509_store_ctx_get_current_cert(store_ctx)
        assert cert is not None
        with pytest.raises(commssl.CertificateReleasedError, match="borrowed"):
            commssl.release_certificate(cert)  # borrowed: not the caller's to release
        inside.append(commssl.get_certificate_common_name(cert) or "")  # still usable
        kept.append((store_ctx, cert))
        return ok

    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", keep)
    server = commssl_server(server_ctx())
    talk(server.port, cctx)
    only_result(server)
    assert inside == [ROOT_CN, INTER_CN, PKI.server_cn]
    for store_ctx, cert in kept:
        for fn in (commssl.x509_store_ctx_get_error, commssl.x509_store_ctx_get_error_depth,
                   commssl.x509_store_ctx_get_current_cert, commssl.x509_store_ctx_get_connection):
            with pytest.raises(ValueError, match="callback"):
                fn(store_ctx)
        with pytest.raises(ValueError, match="callback"):
            commssl.x509_store_ctx_set_error(store_ctx, 0)
        assert cert.released and not cert.owned
        with pytest.raises(commssl.CertificateReleasedError):
            commssl.get_certificate_common_name(cert)
        with pytest.raises(commssl.CertificateReleasedError):
            commssl.copy_certificate(cert)
        with pytest.raises(commssl.CertificateReleasedError):
            commssl.release_certificate(cert)


def test_copied_borrowed_cert_is_kept_after_the_callback(server_ctx: Factory, client_ctx: Factory,
                                                         commssl_server: Any) -> None:
    start = commssl.outstanding_certificates()
    copies: List[commssl.X509Pointer] = []

    def keep(ok: bool, store_ctx: commssl.X509StoreCtxPointer) -> bool:
        cert = commssl.x509_store_ctx_get_current_cert(store_ctx)
        assert cert is not None
        copies.append(commssl.copy_certificate(cert))
        return ok

    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", keep)
    server = commssl_server(server_ctx())
    talk(server.port, cctx)
    only_result(server)
    assert commssl.outstanding_certificates() == start + 3
    assert all(c.owned for c in copies)
    assert [commssl.get_certificate_common_name(c) for c in copies] == [ROOT_CN, INTER_CN, PKI.server_cn]
    assert commssl.get_certificate_serial_number(copies[2]) == PKI.server_serial
    commssl.release_certificates_vector(copies)
    assert commssl.outstanding_certificates() == start
    assert all(c.released for c in copies)


def test_copy_peer_certificates_inside_a_callback(pki: PKI, server_ctx: Factory, client_ctx: Factory,
                                                  commssl_server: Any) -> None:
    """Inside the callback the chain being verified is what the peer sent, on both sides."""
    seen: dict = {"client": [], "server": []}

    def look(side: str) -> Callable[[bool, commssl.X509StoreCtxPointer], bool]:
        def callback(ok: bool, store_ctx: commssl.X509StoreCtxPointer) -> bool:
            conn = commssl.x509_store_ctx_get_connection(store_ctx)
            certs = commssl.ssl_connection_copy_peer_certificates(conn)
            assert all(c.owned for c in certs)
            seen[side].append([commssl.get_certificate_common_name(c) for c in certs])
            commssl.release_certificates_vector(certs)
            assert commssl.ssl_connection_verify(conn) == (True, X509_V_OK)
            return ok
        return callback

    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", "always", look("server"))
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
    commssl.set_verification_mode(cctx, "client", "always", look("client"))
    server = commssl_server(sctx, serve_report)
    talk(server.port, cctx)
    assert only_result(server)[0] == [PKI.client_cn, INTER_CN]
    assert seen == {"client": [[PKI.server_cn, INTER_CN]] * 3, "server": [[PKI.client_cn, INTER_CN]] * 3}


# -- set_verification_depth --------------------------------------------------------


def test_verification_depth(server_ctx: Factory, client_ctx: Factory, commssl_server: Any) -> None:
    cctx = client_ctx()
    commssl.set_verification_depth(cctx, 0)
    assert lib.SSL_CTX_get_verify_depth(cctx.cdata) == 0
    server = commssl_server(server_ctx(), count=3)
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, cctx)
    assert info.value.verify_code == CERT_CHAIN_TOO_LONG
    # per connection: raise the limit on this SSL only
    assert talk(server.port, cctx, ssl_configure_callback=lambda s: commssl.set_verification_depth(s, 1))[1] \
        == (True, X509_V_OK)
    commssl.set_verification_depth(cctx, 2)
    assert talk(server.port, cctx)[1] == (True, X509_V_OK)
    server.join()


def test_verification_depth_bad_arguments(client_ctx: Factory) -> None:
    ctx = client_ctx()
    commssl.set_verification_depth(ctx, 5)
    with pytest.raises(ValueError, match="depth"):
        commssl.set_verification_depth(ctx, -1)
    for junk in ("2", 2.0, None, True):
        with pytest.raises(TypeError, match="depth"):
            commssl.set_verification_depth(ctx, junk)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        commssl.set_verification_depth("ctx", 1)  # type: ignore[arg-type]
    assert lib.SSL_CTX_get_verify_depth(ctx.cdata) == 5


# -- interop with the openssl programs -----------------------------------------------


@pytest.mark.parametrize("mode", ["never", "always", ["verify-peer"], 1, 0])
def test_client_modes_against_openssl_s_server(mode: Any, pki: PKI, client_ctx: Factory) -> None:
    verifies = mode not in ("never", 0)
    trusted, untrusted = client_ctx(), client_ctx(cafile=None)
    for ctx in (trusted, untrusted):
        commssl.set_verification_mode(ctx, "client", mode)
    with openssl_server(pki.server_chain, pki.server_key) as srv:
        assert talk(srv.port, trusted, b"hello\n") == (b"olleh\n", (True, X509_V_OK))
        if verifies:
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                connect(srv.port, untrusted)
            assert (info.value.verify_code, info.value.depth) == (UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 1)
        else:
            assert talk(srv.port, untrusted, b"hello\n") == (b"olleh\n",
                                                             (False, UNABLE_TO_GET_ISSUER_CERT_LOCALLY))
        with connect(srv.port, trusted) as stream:
            assert peer_cns(stream) == [PKI.server_cn, INTER_CN]  # -cert_chain sent the intermediate


@pytest.mark.parametrize("flag", ["verify", "Verify"])
def test_client_certificate_to_openssl_s_server(flag: str, pki: PKI, client_ctx: Factory) -> None:
    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, **{flag: 2}) as srv:
        with_cert = client_ctx(chain=pki.client_chain, key=pki.client_key)
        assert talk(srv.port, with_cert, b"abc\n")[0] == b"cba\n"
        assert srv.wait_for_peer_subject()["CN"] == pki.client_cn
        without = client_ctx()
        if flag == "Verify":
            assert_alert(rejected_by_server(srv.port, without), "certificate required")
        else:
            assert talk(srv.port, without, b"abc\n")[0] == b"cba\n"
            srv.wait_for(r"No peer certificate")
        untrusted = client_ctx(chain=pki.other_chain, key=pki.other_key)
        assert_alert(rejected_by_server(srv.port, untrusted), "unknown ca")


@pytest.mark.parametrize("mode,client_cert,outcome", [
    ("never", True, "none"),
    ("always", True, "chain"),
    ("once", True, "chain"),
    (["verify-peer", "fail-if-no-peer-cert"], True, "chain"),
    ("always", False, "none"),
    (["verify-peer", "fail-if-no-peer-cert"], False, "rejected"),
    (3, False, "rejected"),
    ("always", "untrusted", "rejected"),
])
def test_server_modes_against_openssl_s_client(mode: Any, client_cert: Any, outcome: str, pki: PKI,
                                               server_ctx: Factory, commssl_server: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", mode)
    server = commssl_server(sctx, serve_report)
    cert = {True: (pki.client_chain, pki.client_key), False: (None, None),
            "untrusted": (pki.other_chain, pki.other_key)}[client_cert]
    r = openssl_client(server.port, cafile=pki.root_cert, cert=cert[0], key=cert[1],
                       servername="localhost", input=b"hello\n", extra_args=("-ign_eof",))
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    server.join()
    if outcome == "rejected":
        assert len(server.errors) == 1, out
        assert isinstance(server.errors[0], commssl.SSLVerificationFailure)
        assert "alert" in out
        return
    assert r.returncode == 0 and "hello" in out and "Verify return code: 0 (ok)" in out, out
    expected = [PKI.client_cn, INTER_CN] if outcome == "chain" else []
    assert only_result(server) == (expected, (True, X509_V_OK) if expected else (False, UNSPECIFIED))
