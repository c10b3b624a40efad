"""Contexts: ``make_ssl_ctx``, ``destroy_ssl_ctx``, the configuration functions (bad files,
pass phrases), the LispWorks 8 abstract contexts with ``verify_callback(conn)``, the secure
defaults, and mutual TLS with CPython's ``ssl`` in both directions."""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

import commssl
from commssl import ffi, lib
from helpers import (
    assert_alert,
    connect,
    only_error,
    only_result,
    peer_cns,
    serve_report,
    talk,
)
from peers import (
    HOST,
    OPENSSL,
    PKI,
    WAIT,
    cpython_tls_client,
    cpython_tls_server,
    in_thread,
    openssl_client,
    openssl_server,
)

INTER_CN = PKI.intermediate_cn
UNSPECIFIED = lib.X509_V_ERR_UNSPECIFIED
UNABLE_TO_GET_ISSUER_CERT_LOCALLY = lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
DEPTH_ZERO_SELF_SIGNED = lib.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
APPLICATION_VERIFICATION = lib.X509_V_ERR_APPLICATION_VERIFICATION
HOSTNAME_MISMATCH = lib.X509_V_ERR_HOSTNAME_MISMATCH
IP_ADDRESS_MISMATCH = 64  # X509_V_ERR_IP_ADDRESS_MISMATCH

Factory = Callable[..., commssl.SSLCtxPointer]


# -- helpers -------------------------------------------------------------------


def new_sslp(ctx: commssl.SSLCtxPointer) -> commssl.SSLPointer:
    """An SSLPointer for a fresh SSL of ``ctx`` (the wrapper holds the only reference)."""
    cdata = lib.SSL_new(ctx.cdata)
    try:
        return commssl.SSLPointer(cdata)
    finally:
        lib.SSL_free(cdata)


@pytest.fixture
def abstract(pki: PKI) -> Iterator[Callable[..., commssl.SSLAbstractContext]]:
    """Factory of abstract contexts: ``abstract("server"|"client", **kw)``; freed after the test."""
    made: List[commssl.SSLAbstractContext] = []

    def make(side: str, **kw: Any) -> commssl.SSLAbstractContext:
        if side == "server":
            kw.setdefault("cert_file", pki.server_chain)
            kw.setdefault("key_file", pki.server_key)
            ctx = commssl.create_ssl_server_context(**kw)
        else:
            ctx = commssl.create_ssl_client_context(**kw)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        commssl.destroy_ssl_ctx(ctx.ssl_ctx_pointer)


# -- make_ssl_ctx ----------------------------------------------------------------


@pytest.mark.parametrize("side", ["server", "client", "both"])
def test_make_ssl_ctx_makes_a_new_context(side: str) -> None:
    for ssl_ctx in (True, "default", "v23"):
        ctx = commssl.make_ssl_ctx(ssl_ctx, side)
        try:
            assert type(ctx) is commssl.SSLCtxPointer
            assert ctx.address == int(ffi.cast("uintptr_t", ctx.cdata)) != 0
            assert ffi.typeof(ctx.cdata) is ffi.typeof("SSL_CTX *")
            # secure defaults: clients verify the server, servers ask for no certificate
            assert commssl.get_verification_mode(ctx) == (["verify-peer"] if side == "client" else [])
            assert lib.SSL_CTX_get_options(ctx.cdata) & lib.SSL_OP_NO_RENEGOTIATION
            other = commssl.make_ssl_ctx(ssl_ctx, side)
            assert other.address != ctx.address
            commssl.destroy_ssl_ctx(other)
        finally:
            commssl.destroy_ssl_ctx(ctx)


def test_make_ssl_ctx_defaults_to_a_server_context() -> None:
    ctx = commssl.make_ssl_ctx()
    try:
        assert commssl.get_verification_mode(ctx) == []
        sslp = new_sslp(ctx)
        lib.SSL_set_accept_state(sslp.cdata)  # a TLS_server_method context: the SSL can accept
        assert lib.SSL_is_server(sslp.cdata) == 1
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_make_ssl_ctx_returns_a_context_pointer_as_is(client_ctx: Factory) -> None:
    ctx = client_ctx()
    for side in ("server", "client", "both"):
        assert commssl.make_ssl_ctx(ctx, side) is ctx
    assert commssl.get_verification_mode(ctx) == ["verify-peer"]  # untouched


def test_make_ssl_ctx_refuses_an_ssl_pointer(server_ctx: Factory) -> None:
    sslp = new_sslp(server_ctx())
    with pytest.raises(TypeError, match="ssl_ctx.*SSLPointer"):
        commssl.make_ssl_ctx(sslp, "server")


def test_make_ssl_ctx_bad_arguments() -> None:
    for ssl_ctx, exc in [("v24", ValueError), ("", ValueError), ("DEFAULT", ValueError), ("tls", ValueError),
                         (None, TypeError), (False, TypeError), (1, TypeError), (b"default", TypeError),
                         (object(), TypeError), (["default"], TypeError)]:
        with pytest.raises(exc) as info:
            commssl.make_ssl_ctx(ssl_ctx, "client")
        message = str(info.value)
        assert "ssl_ctx" in message and "True" in message and "'default'" in message and "'v23'" in message
    for side, exc in [("middle", ValueError), ("Server", ValueError), ("", ValueError), (None, TypeError),
                      (1, TypeError), (b"server", TypeError)]:
        with pytest.raises(exc) as info:
            commssl.make_ssl_ctx(True, side)
        message = str(info.value)
        assert "ssl_side" in message and all(f"'{s}'" in message for s in ("server", "client", "both"))


# -- destroy_ssl_ctx -----------------------------------------------------------------


def test_destroy_ssl_ctx(pki: PKI) -> None:
    ctx = commssl.make_ssl_ctx(True, "client")
    commssl.destroy_ssl_ctx(ctx)
    commssl.destroy_ssl_ctx(ctx)  # a second destroy frees nothing more
    with pytest.raises(ValueError, match="destroyed"):
        commssl.get_verification_mode(ctx)
    with pytest.raises(ValueError, match="destroyed"):
        commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
    with pytest.raises(ValueError, match="destroyed"):
        commssl.set_verification_mode(ctx, "client", "never")
    for junk in (None, "ctx", 42):
        with pytest.raises(TypeError, match="ctx"):
            commssl.destroy_ssl_ctx(junk)  # type: ignore[arg-type]


def test_destroy_ssl_ctx_keeps_live_connections(server_ctx: Factory, commssl_server: Any,
                                                pki: PKI) -> None:
    server = commssl_server(server_ctx())
    ctx = commssl.make_ssl_ctx(True, "client")
    commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
    with connect(server.port, ctx) as stream:
        commssl.destroy_ssl_ctx(ctx)  # OpenSSL keeps the SSL_CTX while the SSL uses it
        stream.write(b"still here\n")
        assert stream.readline() == b"still here\n"
        assert commssl.ssl_connection_verify(stream) == (True, 0)
    only_result(server)


# -- configuration with bad files ------------------------------------------------------


@pytest.fixture
def bad_files(tmp_path: Path) -> dict:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("this is not PEM\n")
    return {"missing": tmp_path / "missing.pem", "not-pem": not_pem, "directory": tmp_path}


@pytest.mark.parametrize("fn", [commssl.ssl_ctx_use_certificate_chain_file,
                                commssl.ssl_ctx_use_privatekey_file])
def test_configuration_bad_files(fn: Callable[..., None], bad_files: dict, pki: PKI, client_ctx: Factory,
                                 commssl_server: Any) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    try:
        for which, path in bad_files.items():
            with pytest.raises(commssl.SSLFailure) as info:
                fn(ctx, path)
            exc, message = info.value, str(info.value)
            assert message.startswith(f"{fn.__name__}({str(path)!r}): "), message
            # ssl_code is the last queued OpenSSL error; its reason text is in the message
            assert isinstance(exc.ssl_code, int) and lib.ERR_GET_REASON(exc.ssl_code) != 0
            assert len(message) > len(f"{fn.__name__}({str(path)!r}): ") + 3
            if which == "missing":
                assert "No such file or directory" in message
            if which == "not-pem" and fn is commssl.ssl_ctx_use_certificate_chain_file:
                assert "no start line" in message
        # the error queue was drained: the context still configures and serves
        commssl.ssl_ctx_use_certificate_chain_file(ctx, pki.server_chain)
        commssl.ssl_ctx_use_privatekey_file(ctx, pki.server_key)
        server = commssl_server(ctx)
        assert talk(server.port, client_ctx()) == (b"ping\n", (True, 0))
        only_result(server)
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_mismatched_key(pki: PKI, server_ctx: Factory) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    try:
        commssl.ssl_ctx_use_certificate_chain_file(ctx, pki.server_chain)
        with pytest.raises(commssl.SSLFailure, match="key values mismatch"):
            commssl.ssl_ctx_use_privatekey_file(ctx, pki.client_key)
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_load_verify_locations(pki: PKI, bad_files: dict, client_ctx: Factory) -> None:
    ctx = client_ctx(cafile=None)
    with pytest.raises(ValueError, match="cafile or capath"):
        commssl.ssl_ctx_load_verify_locations(ctx)
    with pytest.raises(ValueError, match="cafile or capath"):
        commssl.ssl_ctx_load_verify_locations(ctx, None, None)
    with pytest.raises(commssl.SSLFailure, match="No such file or directory"):
        commssl.ssl_ctx_load_verify_locations(ctx, bad_files["missing"])
    with pytest.raises(commssl.SSLFailure, match="no certificate or crl found"):
        commssl.ssl_ctx_load_verify_locations(ctx, bad_files["not-pem"])
    with pytest.raises(TypeError, match="cafile"):
        commssl.ssl_ctx_load_verify_locations(ctx, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capath"):
        commssl.ssl_ctx_load_verify_locations(ctx, capath=42)  # type: ignore[arg-type]
    commssl.ssl_ctx_load_verify_locations(ctx, str(pki.root_cert))  # str and PathLike both work


def test_configuration_bad_argument_types(pki: PKI, server_ctx: Factory) -> None:
    for fn in (commssl.ssl_ctx_use_certificate_chain_file, commssl.ssl_ctx_use_privatekey_file):
        with pytest.raises(TypeError, match="path"):
            fn(server_ctx(), 42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="ctx"):
            fn("ctx", pki.server_chain)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="ctx"):
            fn(new_sslp(server_ctx()), pki.server_chain)  # type: ignore[arg-type]


# -- pass phrases ------------------------------------------------------------------------


def loaded_server(pki: PKI, **password: Any) -> commssl.SSLCtxPointer:
    """A server context whose key is the encrypted one, given the password arguments."""
    ctx = commssl.make_ssl_ctx(True, "server")
    try:
        commssl.ssl_ctx_use_certificate_chain_file(ctx, pki.server_chain)
        commssl.set_ssl_ctx_password_callback(ctx, **password)
        commssl.ssl_ctx_use_privatekey_file(ctx, pki.encrypted_key)
    except BaseException:
        commssl.destroy_ssl_ctx(ctx)
        raise
    return ctx


@pytest.mark.parametrize("password", ["s3cret", b"s3cret"])
def test_fixed_password_loads_the_encrypted_key(password: Any, pki: PKI, client_ctx: Factory,
                                                commssl_server: Any) -> None:
    ctx = loaded_server(pki, password=password)
    try:
        assert lib.SSL_CTX_check_private_key(ctx.cdata) == 1
        server = commssl_server(ctx)
        assert talk(server.port, client_ctx()) == (b"ping\n", (True, 0))
        only_result(server)
    finally:
        commssl.destroy_ssl_ctx(ctx)


_PROMPT_CHILD = r"""
import fcntl, os, sys, termios
import commssl
# A session of our own whose controlling terminal is a fresh pty nobody types into:
# OpenSSL's default pass phrase prompt (reading /dev/tty) would block here for ever.
os.setsid()
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
ctx = commssl.make_ssl_ctx(True, "server")
try:
    commssl.ssl_ctx_use_privatekey_file(ctx, sys.argv[1])
except commssl.SSLFailure as exc:
    print("SSLFailure:", exc)
"""


def test_encrypted_key_without_password_fails_without_prompting(pki: PKI) -> None:
    """A context given no password refuses the key at once instead of asking the terminal."""
    r = subprocess.run([sys.executable, "-c", _PROMPT_CHILD, str(pki.encrypted_key)], capture_output=True,
                       text=True, timeout=WAIT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("SSLFailure: ssl_ctx_use_privatekey_file("), r.stdout
    assert "PEM lib" in r.stdout


def test_password_callback_is_asked(pki: PKI) -> None:
    asked: List[Tuple[Any, Any]] = []

    def password(max_length: int, rwflag: bool) -> str:
        asked.append((max_length, rwflag))
        return PKI.encrypted_key_password

    ctx = loaded_server(pki, callback=password)
    commssl.destroy_ssl_ctx(ctx)
    assert len(asked) == 1
    max_length, rwflag = asked[0]
    assert type(max_length) is int and max_length >= len(PKI.encrypted_key_password)
    assert rwflag is False  # reading a key, not writing one


@pytest.mark.parametrize("password", [dict(password="wrong"), dict(callback=lambda n, w: b"wrong"),
                                      dict(callback=lambda n, w: "")])
def test_wrong_password_is_an_ssl_failure(password: Any, pki: PKI) -> None:
    with pytest.raises(commssl.SSLFailure) as info:
        loaded_server(pki, **password)
    # Usually "bad decrypt"; a wrong key passes the padding check about once in 256
    # (the salt is new each session) and then fails decoding instead.
    assert str(info.value).startswith(f"ssl_ctx_use_privatekey_file({str(pki.encrypted_key)!r}): ")
    assert "PEM lib" in str(info.value) and isinstance(info.value.ssl_code, int)


class Refused(Exception):
    pass


def test_password_callback_exception_propagates(pki: PKI) -> None:
    boom = Refused("no pass phrase for you")

    def password(max_length: int, rwflag: bool) -> str:
        raise boom

    with pytest.raises(Refused) as info:
        loaded_server(pki, callback=password)
    assert info.value is boom
    # and the next attempt on a fresh context, with the right password, works
    commssl.destroy_ssl_ctx(loaded_server(pki, password=PKI.encrypted_key_password))


def test_password_callback_junk_result(pki: PKI) -> None:
    for value, exc, words in [(42, TypeError, "str or bytes"), (None, TypeError, "str or bytes"),
                              (["s3cret"], TypeError, "str or bytes"), ("x" * 100_000, ValueError, "longer")]:
        with pytest.raises(exc, match=words):
            loaded_server(pki, callback=lambda max_length, rwflag, value=value: value)


def test_set_password_callback_bad_arguments(server_ctx: Factory) -> None:
    ctx = server_ctx()
    with pytest.raises(ValueError, match="exactly one"):
        commssl.set_ssl_ctx_password_callback(ctx)
    with pytest.raises(ValueError, match="exactly one"):
        commssl.set_ssl_ctx_password_callback(ctx, lambda n, w: "x", "x")
    with pytest.raises(TypeError, match="password"):
        commssl.set_ssl_ctx_password_callback(ctx, password=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callback"):
        commssl.set_ssl_ctx_password_callback(ctx, callback="s3cret")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ctx"):
        commssl.set_ssl_ctx_password_callback(None, password="x")  # type: ignore[arg-type]


# -- abstract contexts ---------------------------------------------------------------------


def test_abstract_contexts_connect(pki: PKI, abstract: Any, commssl_server: Any) -> None:
    sctx = abstract("server", name="srv")
    cctx = abstract("client", openssl_trusted_file=pki.root_cert)
    assert isinstance(sctx, commssl.SSLAbstractContext) and isinstance(cctx, commssl.SSLAbstractContext)
    assert isinstance(sctx.ssl_ctx_pointer, commssl.SSLCtxPointer)
    assert commssl.get_verification_mode(sctx) == []
    assert commssl.get_verification_mode(cctx) == ["verify-peer"]
    server = commssl_server(sctx, serve_report)
    assert talk(server.port, cctx) == (b"ping\n", (True, 0))
    assert only_result(server) == ([], (False, UNSPECIFIED))


def test_abstract_server_key_in_the_cert_file(tmp_path: Path, pki: PKI, abstract: Any,
                                              commssl_server: Any) -> None:
    both = tmp_path / "server+key.pem"
    both.write_text(pki.server_chain.read_text() + pki.server_key.read_text())
    server = commssl_server(abstract("server", cert_file=both, key_file=None))
    assert talk(server.port, abstract("client", openssl_trusted_file=pki.root_cert))[1] == (True, 0)
    only_result(server)


@pytest.mark.parametrize("how", ["password", "bytes", "password_callback"])
def test_abstract_server_with_encrypted_key(how: str, pki: PKI, abstract: Any, commssl_server: Any) -> None:
    secret = PKI.encrypted_key_password
    kw = {"password": {"password": secret}, "bytes": {"password": secret.encode()},
          "password_callback": {"password_callback": lambda n, w: secret}}[how]
    server = commssl_server(abstract("server", key_file=pki.encrypted_key, **kw))
    assert talk(server.port, abstract("client", openssl_trusted_file=pki.root_cert))[1] == (True, 0)
    only_result(server)
    with pytest.raises(commssl.SSLFailure, match="ssl_ctx_use_privatekey_file"):
        commssl.create_ssl_server_context(cert_file=pki.server_chain, key_file=pki.encrypted_key,
                                          password="wrong")


def test_abstract_trusted_file_default_is_the_system_store(pki: PKI, abstract: Any,
                                                           commssl_server: Any) -> None:
    server = commssl_server(abstract("server"))
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, abstract("client", openssl_trusted_file="default"))
    assert info.value.verify_code == UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert_alert(only_error(server), "unknown ca")


def test_abstract_trusted_directory(tmp_path: Path, pki: PKI, abstract: Any, commssl_server: Any) -> None:
    hashed = tmp_path / "trusted"
    hashed.mkdir()
    shutil.copy(pki.root_cert, hashed / "root.pem")
    # not hashed yet: OpenSSL looks certificates up by subject hash, so it finds nothing
    server = commssl_server(abstract("server"), count=2)
    with pytest.raises(commssl.SSLVerificationFailure):
        connect(server.port, abstract("client", openssl_trusted_directory=hashed))
    subprocess.run([OPENSSL, "rehash", str(hashed)], check=True, capture_output=True, timeout=WAIT)
    assert any(p.name.endswith(".0") for p in hashed.iterdir())
    assert talk(server.port, abstract("client", openssl_trusted_directory=str(hashed)))[1] == (True, 0)
    server.join()


def test_abstract_client_with_certificate_and_server_verify_callback(
        pki: PKI, abstract: Any, commssl_server: Any) -> None:
    seen: List[Tuple[Any, Tuple[bool, int], List[Optional[str]]]] = []

    def verify(conn: Any) -> bool:
        seen.append((conn, commssl.ssl_connection_verify(conn), peer_cns(conn)))
        return True

    sctx = abstract("server", openssl_trusted_file=pki.root_cert, verify_callback=verify)
    assert commssl.get_verification_mode(sctx) == ["verify-peer"]  # it asks for a certificate
    server = commssl_server(sctx, lambda s: (s, serve_report(s)))
    cctx = abstract("client", openssl_trusted_file=pki.root_cert, cert_file=pki.client_chain,
                    key_file=pki.client_key)
    assert talk(server.port, cctx) == (b"ping\n", (True, 0))
    stream, report = only_result(server)
    assert report == ([PKI.client_cn, INTER_CN], (True, 0))
    assert len(seen) == 1  # once per handshake
    conn, verified, cns = seen[0]
    assert conn is stream and verified == (True, 0) and cns == [PKI.client_cn, INTER_CN]


def test_abstract_server_verify_callback_rejects(pki: PKI, abstract: Any, commssl_server: Any) -> None:
    calls: List[Tuple[bool, int]] = []

    def verify(conn: Any) -> bool:
        calls.append(commssl.ssl_connection_verify(conn))
        return False

    server = commssl_server(abstract("server", openssl_trusted_file=pki.root_cert, verify_callback=verify))
    cctx = abstract("client", openssl_trusted_file=pki.root_cert, cert_file=pki.client_chain,
                    key_file=pki.client_key)
    with pytest.raises(commssl.SSLCondition) as client_info:
        with connect(server.port, cctx) as stream:
            stream.readline()  # TLS 1.3: the server's verdict arrives after the client's handshake
    exc = only_error(server)
    assert isinstance(exc, commssl.SSLVerificationFailure)
    assert exc.ssl_code == "verify-callback" and exc.verify_code == APPLICATION_VERIFICATION
    assert calls == [(True, 0)]
    assert_alert(client_info.value)


def test_abstract_server_verify_callback_accepts_an_untrusted_client(pki: PKI, abstract: Any,
                                                                     commssl_server: Any) -> None:
    calls: List[Tuple[bool, int]] = []

    def verify(conn: Any) -> bool:
        calls.append(commssl.ssl_connection_verify(conn))
        return True

    server = commssl_server(abstract("server", openssl_trusted_file=pki.root_cert, verify_callback=verify),
                            serve_report)
    cctx = abstract("client", openssl_trusted_file=pki.root_cert, cert_file=pki.other_chain,
                    key_file=pki.other_key)
    talk(server.port, cctx)
    assert only_result(server)[0] == [PKI.server_cn, PKI.other_root_cn]
    assert calls == [(False, lib.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN)]


def test_abstract_server_verify_callback_and_a_client_without_certificate(
        pki: PKI, abstract: Any, commssl_server: Any) -> None:
    """The callback decides a client that sends no certificate too: it sees an empty
    chain (test_policy_server.py has the rejections, against real peers)."""
    calls: List[Any] = []

    def verify(conn: Any) -> bool:
        calls.append((conn, peer_cns(conn), commssl.ssl_connection_verify(conn)))
        return True

    server = commssl_server(abstract("server", openssl_trusted_file=pki.root_cert, verify_callback=verify),
                            lambda s: (s, serve_report(s)))
    talk(server.port, abstract("client", openssl_trusted_file=pki.root_cert))
    stream, report = only_result(server)
    assert report == ([], (False, UNSPECIFIED))
    assert calls == [(stream, [], (False, UNSPECIFIED))]


def sha256_fingerprint(path: Path) -> str:
    """As ``get_certificate_data`` gives it: colon-separated upper-case hex."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(PKI.der(path)).digest())


def test_abstract_client_verify_callback_pins_a_self_signed_server(pki: PKI, abstract: Any,
                                                                   commssl_server: Any) -> None:
    pin = sha256_fingerprint(pki.selfsigned_cert)
    seen: List[Tuple[Tuple[bool, int], List[Any]]] = []

    def verify(conn: Any) -> bool:
        with commssl.peer_certificates(conn) as certs:
            prints = [dict(commssl.get_certificate_data(c))["sha256-fingerprint"] for c in certs]
        seen.append((commssl.ssl_connection_verify(conn), prints))
        return prints[0] == pin

    server = commssl_server(abstract("server", cert_file=pki.selfsigned_cert, key_file=pki.selfsigned_key))
    cctx = abstract("client", verify_callback=verify)  # trusts only the system store
    assert talk(server.port, cctx)[0] == b"ping\n"
    assert seen == [((False, DEPTH_ZERO_SELF_SIGNED), [pin])]
    # the same callback refuses a good server whose key is not the pinned one
    other = commssl_server(abstract("server"))
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(other.port, abstract("client", openssl_trusted_file=pki.root_cert, verify_callback=verify))
    assert info.value.ssl_code == "verify-callback"
    assert seen[-1][0] == (True, 0)
    server.join()
    other.join()


def test_abstract_client_verify_callback_rejects_a_good_server(pki: PKI, abstract: Any,
                                                               commssl_server: Any) -> None:
    seen: List[Any] = []

    def verify(conn: Any) -> int:
        seen.append((conn, commssl.ssl_connection_verify(conn), peer_cns(conn)))
        return 0

    server = commssl_server(abstract("server"))
    cctx = abstract("client", openssl_trusted_file=pki.root_cert, verify_callback=verify)
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, cctx)
    exc = info.value
    assert (exc.ssl_code, exc.verify_code) == ("verify-callback", APPLICATION_VERIFICATION)
    assert exc.verify_message == commssl.x509_verify_cert_error_string(APPLICATION_VERIFICATION)
    assert len(seen) == 1
    conn, verified, cns = seen[0]
    assert isinstance(conn, commssl.SocketStream)
    assert verified == (True, 0) and cns == [PKI.server_cn, INTER_CN]
    assert_alert(only_error(server))


def test_abstract_verify_callback_exception_propagates(pki: PKI, abstract: Any, commssl_server: Any) -> None:
    boom = Refused("verify_callback says no")

    def verify(conn: Any) -> bool:
        raise boom

    server = commssl_server(abstract("server"))
    with pytest.raises(Refused) as info:
        connect(server.port, abstract("client", openssl_trusted_file=pki.root_cert, verify_callback=verify))
    assert info.value is boom
    assert "verify" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    server.join()
    # and on the server side, from the call that drove its handshake
    server = commssl_server(abstract("server", openssl_trusted_file=pki.root_cert, verify_callback=verify))
    cctx = abstract("client", openssl_trusted_file=pki.root_cert, cert_file=pki.client_chain,
                    key_file=pki.client_key)
    with pytest.raises(commssl.SSLCondition):
        with connect(server.port, cctx) as stream:
            stream.readline()
    assert only_error(server) is boom


def servername(stream: commssl.SocketStream) -> Optional[str]:
    """The SNI name the client sent, read on the server's SSL."""
    name = lib.SSL_get_servername(commssl.socket_stream_ssl(stream).cdata, lib.TLSEXT_NAMETYPE_host_name)
    return None if name == ffi.NULL else ffi.string(name).decode()


def test_abstract_client_tlsext_host_name(pki: PKI, abstract: Any, commssl_server: Any) -> None:
    def handler(stream: commssl.SocketStream) -> Optional[str]:
        stream.write(stream.readline())
        return servername(stream)

    wrongname = abstract("server", cert_file=pki.wrongname_chain, key_file=pki.wrongname_key)
    good = abstract("server")
    cctx = abstract("client", openssl_trusted_file=pki.root_cert, tlsext_host_name="wrong.example")
    assert cctx.tlsext_host_name == "wrong.example"
    server = commssl_server(wrongname, handler)
    assert talk(server.port, cctx) == (b"ping\n", (True, 0))  # the name checked is the context's
    assert only_result(server) == "wrong.example"  # and it went out as SNI
    server = commssl_server(good, handler, count=2)
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(server.port, cctx)
    assert (info.value.verify_code, info.value.depth) == (HOSTNAME_MISMATCH, 0)
    # a name given to the call wins over the context's
    assert talk(server.port, cctx, tlsext_host_name="localhost")[1] == (True, 0)
    server.join()
    assert server.results == ["localhost"]


def test_abstract_configure_callbacks(pki: PKI, abstract: Any, commssl_server: Any) -> None:
    got: List[Any] = []
    cctx = abstract("client", openssl_trusted_file=pki.root_cert,
                    openssl_ctx_configure_callback=lambda ctx: got.append(("ctx", ctx)),
                    openssl_ssl_configure_callback=lambda sslp: got.append(("ssl", sslp)))
    assert got == [("ctx", cctx.ssl_ctx_pointer)]
    server = commssl_server(abstract("server"))
    talk(server.port, cctx)
    only_result(server)
    assert len(got) == 2 and got[1][0] == "ssl" and isinstance(got[1][1], commssl.SSLPointer)


def test_abstract_contexts_bad_arguments(pki: PKI, abstract: Any) -> None:
    with pytest.raises(TypeError, match="verify_callback"):
        commssl.create_ssl_client_context(verify_callback=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tlsext_host_name"):
        commssl.create_ssl_client_context(tlsext_host_name=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        commssl.create_ssl_client_context(no_such_option=1)  # type: ignore[call-arg]
    with pytest.raises(commssl.SSLFailure, match="No such file or directory"):
        commssl.create_ssl_server_context(cert_file=pki.directory / "missing.pem")
    with pytest.raises(commssl.SSLFailure, match="No such file or directory"):
        commssl.create_ssl_client_context(openssl_trusted_file=pki.directory / "missing.pem")
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ValueError, match="server context"):
            commssl.create_ssl_socket_stream(a, abstract("server"), ssl_side="client")
        with pytest.raises(ValueError, match="client context"):
            commssl.create_ssl_socket_stream(b, abstract("client"), ssl_side="server")


# -- secure defaults ----------------------------------------------------------------


def test_client_context_without_arguments_refuses_an_untrusted_server(
        pki: PKI, abstract: Any, commssl_server: Any) -> None:
    server = commssl_server(abstract("server"), count=3)
    for ctx in (abstract("client"), True, "default"):
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect(server.port, ctx)
        assert info.value.verify_code == UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    server.join()
    assert len(server.errors) == 3


def test_client_context_refuses_a_wrong_host_name_by_default(pki: PKI, abstract: Any, client_ctx: Factory,
                                                            commssl_server: Any) -> None:
    server = commssl_server(abstract("server", cert_file=pki.wrongname_chain, key_file=pki.wrongname_key),
                            count=3)
    made = commssl.make_ssl_ctx(True, "client")
    try:
        commssl.ssl_ctx_load_verify_locations(made, pki.root_cert)
        for ctx in (abstract("client", openssl_trusted_file=pki.root_cert), made):
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                connect(server.port, ctx)  # to 127.0.0.1: the certificate names only wrong.example
            assert (info.value.verify_code, info.value.depth) == (IP_ADDRESS_MISMATCH, 0)
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect(server.port, made, tlsext_host_name="localhost")
        assert (info.value.verify_code, info.value.depth) == (HOSTNAME_MISMATCH, 0)
    finally:
        commssl.destroy_ssl_ctx(made)
    server.join()


def tls11_allowed_here(pki: PKI) -> bool:
    """Whether this system's OpenSSL still speaks TLS 1.1 at all (a control)."""
    with openssl_server(pki.server_chain, pki.server_key,
                        extra_args=["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]) as srv:
        r = openssl_client(srv.port, cafile=pki.root_cert,
                           extra_args=["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], input=b"x\n")
        return r.returncode == 0 and b"TLSv1.1" in r.stdout


def assert_refused_version(exc: BaseException, allowed: bool) -> None:
    assert isinstance(exc, commssl.SSLCondition), repr(exc)
    if allowed:  # then the refusal is commssl's own minimum
        assert isinstance(exc, commssl.SSLVersionOrCipherMismatch), repr(exc)
        assert "protocol" in str(exc)


def test_client_contexts_refuse_tls_1_1(pki: PKI, abstract: Any, client_ctx: Factory) -> None:
    allowed = tls11_allowed_here(pki)
    with openssl_server(pki.server_chain, pki.server_key,
                        extra_args=["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]) as srv:
        for ctx in (client_ctx(), abstract("client", openssl_trusted_file=pki.root_cert), True):
            with pytest.raises(commssl.SSLCondition) as info:
                connect(srv.port, ctx)
            assert_refused_version(info.value, allowed)


def tls11_client(port: int, pki: PKI) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.root_cert)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 itself is deprecated
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    try:
        return ctx.wrap_socket(sock, server_hostname="localhost")
    except BaseException:
        sock.close()
        raise


def test_server_contexts_refuse_tls_1_1(pki: PKI, abstract: Any, server_ctx: Factory,
                                        commssl_server: Any) -> None:
    allowed = tls11_allowed_here(pki)
    for sctx in (server_ctx(), abstract("server")):
        server = commssl_server(sctx)
        with pytest.raises((ssl.SSLError, OSError)):
            in_thread(tls11_client, server.port, pki).result(WAIT)
        assert_refused_version(only_error(server), allowed)


# -- mutual TLS with CPython's ssl -----------------------------------------------------


@pytest.mark.parametrize("kind", ["abstract", "make_ssl_ctx"])
def test_cpython_client_to_commssl_server_mutual_tls(kind: str, pki: PKI, abstract: Any, server_ctx: Factory,
                                                     commssl_server: Any) -> None:
    if kind == "abstract":
        sctx: Any = abstract("server", openssl_trusted_file=pki.root_cert)
    else:
        sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    server = commssl_server(sctx, serve_report, count=2)
    with cpython_tls_client(server.port, cafile=pki.root_cert, certfile=pki.client_chain,
                            keyfile=pki.client_key) as sock:
        sock.sendall(b"mutual\n")
        assert sock.recv(100) == b"mutual\n"
        assert sock.getpeercert(binary_form=True) == PKI.der(pki.server_cert)
        assert sock.version() == "TLSv1.3"
    # without a certificate: refused by the commssl server
    with pytest.raises((ssl.SSLError, OSError)):
        with cpython_tls_client(server.port, cafile=pki.root_cert) as sock:
            sock.recv(100)
    server.join()
    assert server.results == [([PKI.client_cn, INTER_CN], (True, 0))]
    assert len(server.errors) == 1 and isinstance(server.errors[0], commssl.SSLVerificationFailure)


@pytest.mark.parametrize("kind", ["abstract", "make_ssl_ctx"])
def test_commssl_client_to_cpython_server_mutual_tls(kind: str, pki: PKI, abstract: Any,
                                                     client_ctx: Factory) -> None:
    if kind == "abstract":
        cctx: Any = abstract("client", openssl_trusted_file=pki.root_cert, cert_file=pki.client_chain,
                             key_file=pki.client_key)
    else:
        cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
    with cpython_tls_server(pki.server_chain, pki.server_key, cafile=pki.root_cert,
                            require_client_cert=True) as srv:
        with connect(srv.port, cctx, tlsext_host_name="localhost") as stream:
            stream.write(b"mutual\n")
            assert stream.readline() == b"mutual\n"
            assert peer_cns(stream) == [PKI.server_cn, INTER_CN]
            assert commssl.ssl_connection_verify(stream) == (True, 0)
            assert commssl.ssl_connection_protocol_version(stream) == "tls-v1-3"
        srv.wait_finished(1)
        assert srv.peer_certs == [PKI.der(pki.client_cert)] and srv.errors == []
        # without a client certificate the CPython server refuses (alert after our handshake)
        with pytest.raises(commssl.SSLCondition) as info:
            with connect(srv.port, client_ctx()) as stream:
                stream.readline()
        assert_alert(info.value, "certificate required")
        srv.wait_finished(2)
        assert len(srv.errors) == 1 and isinstance(srv.errors[0], ssl.SSLError)
