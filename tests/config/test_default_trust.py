"""A client context's default trust: the system's CA file and hashed directory
(``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), as ``SSL_CTX_set_default_verify_paths``
gives, but without the extra "store" lookup OpenSSL < 3.4 adds there (it read the
whole directory on every handshake; see ``contexts.default_trust``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

import commssl
import peers
from helpers import connect_localhost
from peers import PKI, WAIT


def _trust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: PKI, where: str) -> None:
    """Point the default CA file and directory at places that hold the test root only where asked."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_file = tmp_path / "none.pem"
    if where == "file":
        ca_file = pki.root_cert
    elif where == "dir":
        shutil.copy(pki.root_cert, certs / "root.pem")
        subprocess.run([peers.OPENSSL, "rehash", str(certs)], check=True, capture_output=True, timeout=WAIT)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(certs))


def _client(kind: str) -> Callable[[], Any]:
    if kind == "make_ssl_ctx":
        return lambda: commssl.make_ssl_ctx(True, "client")
    return lambda: commssl.create_ssl_client_context(openssl_trusted_file="default")


@pytest.mark.parametrize("kind", ["make_ssl_ctx", "abstract"])
@pytest.mark.parametrize("where", ["file", "dir"])
def test_client_trusts_the_default_ca_file_and_directory(pki: PKI, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         where: str, kind: str) -> None:
    _trust(monkeypatch, tmp_path, pki, where)
    ctx = _client(kind)()
    try:
        with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=lambda tls: None) as server:
            stream = connect_localhost(server.port, ctx)
            try:
                assert commssl.ssl_connection_verify(stream) == (True, 0)
            finally:
                stream.close()
    finally:
        commssl.destroy_ssl_ctx(ctx if kind == "make_ssl_ctx" else ctx.ssl_ctx_pointer)


@pytest.mark.parametrize("kind", ["make_ssl_ctx", "abstract"])
def test_without_the_root_in_the_defaults_the_server_is_refused(pki: PKI, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                kind: str) -> None:
    _trust(monkeypatch, tmp_path, pki, "neither")
    ctx = _client(kind)()
    try:
        with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=lambda tls: None) as server:
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                connect_localhost(server.port, ctx)
        assert info.value.ssl_code == ("verification", 20)  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    finally:
        commssl.destroy_ssl_ctx(ctx if kind == "make_ssl_ctx" else ctx.ssl_ctx_pointer)


# -- the CA-bundle fallback for an OpenSSL whose default file is missing here ---------


def test_fallback_bundle_only_when_the_default_file_is_missing(tmp_path: Path) -> None:
    from commssl.config.contexts import fallback_bundle

    present = tmp_path / "present.pem"
    present.write_text("x")
    absent = str(tmp_path / "absent.pem")
    candidates = [str(tmp_path / "nothing.pem"), str(present)]
    assert fallback_bundle(absent, {}, candidates) == str(present)          # first that exists
    assert fallback_bundle(str(present), {}, candidates) is None            # the default is there
    assert fallback_bundle(absent, {"SSL_CERT_FILE": "x"}, candidates) is None  # the user chose
    assert fallback_bundle(absent, {}, [str(tmp_path / "nothing.pem")]) is None


def test_client_trusts_a_system_bundle_when_the_default_file_is_missing(
        pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from commssl.config import contexts

    empty = tmp_path / "certs"
    empty.mkdir()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    monkeypatch.setattr(contexts, "default_cert_file", lambda: str(tmp_path / "missing.pem"))
    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=lambda tls: None) as server:
        for bundles, verified in (((str(tmp_path / "nothing.pem"),), False),
                                  ((str(tmp_path / "nothing.pem"), str(pki.root_cert)), True)):
            monkeypatch.setattr(contexts, "CA_BUNDLES", bundles)
            ctx = commssl.make_ssl_ctx(True, "client")
            try:
                commssl.set_verification_mode(ctx, "client", "never")  # see the verdict, not an error
                stream = connect_localhost(server.port, ctx)
                try:
                    assert commssl.ssl_connection_verify(stream)[0] is verified
                finally:
                    stream.close()
            finally:
                commssl.destroy_ssl_ctx(ctx)
