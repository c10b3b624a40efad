"""Errors a user can act on: a missing file is a FileNotFoundError naming the path, a
context used on the wrong side names both sides, an optional extra imported without
it says what to install, and set_groups names only the unknown groups."""

from __future__ import annotations

import asyncio
import errno
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

import commssl
from commssl import SSLFailure, SSLFileNotFound, lib
from helpers import connect
from peers import PKI

# -- a missing file -------------------------------------------------------------------------

CALLS: Dict[str, Callable[[commssl.SSLCtxPointer, Path, PKI], Any]] = {
    "ssl_ctx_use_certificate_chain_file":
        lambda c, p, pki: commssl.ssl_ctx_use_certificate_chain_file(c, p),
    "ssl_ctx_use_privatekey_file": lambda c, p, pki: commssl.ssl_ctx_use_privatekey_file(c, p),
    "ssl_ctx_load_verify_locations cafile": lambda c, p, pki: commssl.ssl_ctx_load_verify_locations(c, p),
    "ssl_ctx_load_verify_locations capath":
        lambda c, p, pki: commssl.ssl_ctx_load_verify_locations(c, capath=p),
    "pem_read X509": lambda c, p, pki: commssl.pem_read("X509", p),
    "pem_read PrivateKey": lambda c, p, pki: commssl.pem_read("PrivateKey", p),
    "pem_read DHparams": lambda c, p, pki: commssl.pem_read("DHparams", p),
    "read_dhparams": lambda c, p, pki: commssl.read_dhparams(p),
    "read_certificate_key_pairs": lambda c, p, pki: commssl.read_certificate_key_pairs(p),
    "set_ssl_ctx_dh filename": lambda c, p, pki: commssl.set_ssl_ctx_dh(c, filename=p),
    "ssl_ctx_load_crl": lambda c, p, pki: commssl.ssl_ctx_load_crl(c, p),
    "server context cert_file": lambda c, p, pki: commssl.create_ssl_server_context(cert_file=p),
    "server context key_file": lambda c, p, pki: commssl.create_ssl_server_context(
        cert_file=pki.server_chain, key_file=p),
    "server context dh_file": lambda c, p, pki: commssl.create_ssl_server_context(dh_file=p),
    "client context openssl_trusted_file": lambda c, p, pki: commssl.create_ssl_client_context(
        openssl_trusted_file=p),
    "client context openssl_trusted_directory": lambda c, p, pki: commssl.create_ssl_client_context(
        openssl_trusted_directory=p),
    "client context crl_file": lambda c, p, pki: commssl.create_ssl_client_context(crl_file=p),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_missing_file_is_file_not_found_naming_the_path(call: str, pki: PKI, tmp_path: Path) -> None:
    missing = tmp_path / "no such dir" / "missing.pem"
    ctx = commssl.make_ssl_ctx(True, "server")
    try:
        with pytest.raises(FileNotFoundError) as info:
            CALLS[call](ctx, missing, pki)
    finally:
        commssl.destroy_ssl_ctx(ctx)
    exc = info.value
    assert type(exc) is SSLFileNotFound
    assert isinstance(exc, SSLFailure)  # `except SSLFailure` still catches it
    assert exc.errno == errno.ENOENT and exc.filename == str(missing)
    assert repr(str(missing)) in str(exc)
    assert "No such file or directory" in str(exc) and "system lib" not in str(exc)
    assert lib.ERR_peek_error() == 0  # the queue was drained


def test_missing_file_errorp_false_and_not_pem_unchanged(pki: PKI, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    assert commssl.pem_read("X509", missing, errorp=False) is None
    assert commssl.read_dhparams(missing, errorp=False) is None
    # a file that is there but wrong is not a FileNotFoundError
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not PEM\n")
    ctx = commssl.make_ssl_ctx(True, "server")
    try:
        with pytest.raises(SSLFailure) as info:
            commssl.ssl_ctx_use_certificate_chain_file(ctx, not_pem)
        assert not isinstance(info.value, FileNotFoundError)
    finally:
        commssl.destroy_ssl_ctx(ctx)


# -- a context used on the wrong side -------------------------------------------------------


@pytest.mark.parametrize("made, used", [("server", "client"), ("client", "server")])
def test_context_used_on_the_wrong_side(made: str, used: str) -> None:
    ctx = commssl.make_ssl_ctx(True, made)
    a, b = socket.socketpair()
    try:
        with pytest.raises(ValueError) as info:
            commssl.create_ssl_socket_stream(a, ctx, ssl_side=used, handshake_timeout=2)
        message = str(info.value)
        assert f"is a {made} context" in message and f"used on the {used} side" in message
        assert "should not call" not in message
        b.settimeout(0.5)
        try:  # refused before any byte was sent
            assert b.recv(1) == b""
        except socket.timeout:
            pass
    finally:
        a.close()
        b.close()
        commssl.destroy_ssl_ctx(ctx)


def test_server_context_used_by_a_client_of_a_real_server(
        server_ctx: Callable[..., Any], commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx(), accept_timeout=3)
    with pytest.raises(ValueError, match="is a server context .*used on the client side"):
        connect(server.port, server_ctx())
    server.join()


def test_both_context_serves_either_side(server_ctx: Callable[..., Any],
                                         commssl_server: Callable[..., Any], pki: PKI) -> None:
    ctx = commssl.make_ssl_ctx(True, "both")
    try:
        commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
        commssl.set_verification_mode(ctx, "client", "always")
        server = commssl_server(server_ctx())
        with connect(server.port, ctx) as stream:
            stream.write(b"x\n")
            assert stream.readline() == b"x\n"
        server.join()
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_start_ssl_server_refuses_a_client_context_before_listening() -> None:
    ctx = commssl.make_ssl_ctx(True, "client")

    async def main() -> None:
        with pytest.raises(ValueError, match="is a client context .*used on the server side"):
            await commssl.start_ssl_server(lambda stream: None, "127.0.0.1", 0, ssl_ctx=ctx)

    try:
        asyncio.run(main())
    finally:
        commssl.destroy_ssl_ctx(ctx)


# -- an optional extra not installed ---------------------------------------------------------


@pytest.mark.parametrize("module, blocked, extra", [
    ("commssl.anyio", "anyio", "anyio"),
    ("commssl.httpx", "httpx", "httpx"),
    ("commssl.httpx", "httpcore", "httpx"),
    ("commssl.httpx", "anyio", "httpx"),
])
def test_extra_not_installed_says_what_to_install(module: str, blocked: str, extra: str) -> None:
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"  # as if not installed
            f"try:\n    import {module}\n"
            "except ImportError as e:\n    print(type(e).__name__, e.name, '|', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True).stdout.strip()
    assert out == (f"ModuleNotFoundError {blocked} | {module} needs {blocked!r}, which is not "
                   f"installed: pip install 'commssl[{extra}]'")


# -- set_groups ------------------------------------------------------------------------------


def test_set_groups_names_only_the_unknown_groups() -> None:
    ctx = commssl.make_ssl_ctx(True, "client")
    try:
        with pytest.raises(ValueError) as info:
            commssl.set_groups(ctx, ["X25519", "no-such-group", "P-256", "bogus"])
        message = str(info.value)
        assert message.count("OpenSSL") == 1 and "OpenSSL OpenSSL" not in message
        assert message.endswith("does not know 'no-such-group', 'bogus'")
        assert "X25519" not in message and "P-256" not in message
        commssl.set_groups(ctx, ["X25519", "P-256"])  # the context still takes good names
    finally:
        commssl.destroy_ssl_ctx(ctx)
