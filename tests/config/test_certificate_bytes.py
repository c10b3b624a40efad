"""Certificates as bytes both ways (``dump_certificate``, ``load_certificate``),
checked against ``openssl x509 -outform DER/PEM`` and CPython's
``getpeercert(binary_form=True)`` for the same certificates."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

import commssl
from commssl import CertificateReleasedError, X509Pointer
from helpers import connect
from peers import OPENSSL, PKI, cpython_tls_client, cpython_tls_server, in_thread, pem_certs


def openssl_x509_out(path: Path, form: str) -> bytes:
    """The first certificate of ``path`` as ``openssl x509`` writes it."""
    return subprocess.run([OPENSSL, "x509", "-in", str(path), "-outform", form],
                          capture_output=True, timeout=10, check=True).stdout


@pytest.mark.parametrize("name", ["server_cert", "client_cert", "root_cert", "nocn_cert"])
def test_dump_matches_openssl_x509(pki: PKI, name: str) -> None:
    path = getattr(pki, name)
    cert = commssl.pem_read("X509", path)
    try:
        assert commssl.dump_certificate(cert, "der") == openssl_x509_out(path, "DER")
        assert commssl.dump_certificate(cert, "pem") == openssl_x509_out(path, "PEM")
        assert commssl.dump_certificate(cert) == commssl.dump_certificate(cert, "PEM")  # default, any case
    finally:
        commssl.release_certificate(cert)


def test_round_trip_both_encodings(pki: PKI) -> None:
    der = PKI.der(pki.server_chain)
    for data, encoding in [(der, "der"), (der, None), (bytearray(der), None), (memoryview(der), "der")]:
        cert = commssl.load_certificate(data, encoding)  # type: ignore[arg-type]
        try:
            assert cert.owned
            assert commssl.dump_certificate(cert, "der") == der
            assert commssl.get_certificate_serial_number(cert) == pki.server_serial
        finally:
            commssl.release_certificate(cert)
    pem = pem_certs(pki.server_chain)[0].encode()
    # a chain file: the first certificate, text before it skipped
    chain = pem_certs(pki.server_chain)
    for data in [pem, b"leaf:\n" + pem + chain[1].encode(), pki.server_chain.read_bytes()]:
        cert = commssl.load_certificate(data)
        try:
            assert commssl.dump_certificate(cert, "der") == der
            assert commssl.dump_certificate(cert) == ssl.DER_cert_to_PEM_cert(der).encode()
        finally:
            commssl.release_certificate(cert)


def test_loaded_certificate_is_counted_and_verifiable(pki: PKI) -> None:
    before = commssl.outstanding_certificates()
    cert = commssl.load_certificate(openssl_x509_out(pki.client_cert, "DER"), "der")
    assert commssl.outstanding_certificates() == before + 1
    data: Dict[str, Any] = dict(commssl.get_certificate_data(cert))
    assert data["subject-common-name"] == pki.client_cn
    commssl.release_certificate(cert)
    assert commssl.outstanding_certificates() == before


def test_peer_leaf_equals_cpython_binary_form(pki: PKI, client_ctx: Callable[..., Any]) -> None:
    """The same server's leaf, as CPython's getpeercert(binary_form=True) and as commssl dumps it."""
    with cpython_tls_server(pki.server_chain, pki.server_key) as server:
        sock = in_thread(cpython_tls_client, server.port, cafile=pki.root_cert).result(10)
        try:
            cpython_der = sock.getpeercert(binary_form=True)
        finally:
            sock.close()
        with connect(server.port, client_ctx()) as stream:
            with commssl.peer_certificates(stream) as certs:
                leaf = certs[0]
                assert leaf is not None
                assert commssl.dump_certificate(leaf, "der") == cpython_der
                assert commssl.dump_certificate(leaf, "pem").decode() == ssl.DER_cert_to_PEM_cert(cpython_der)
    assert cpython_der == PKI.der(pki.server_chain)


def test_borrowed_certificate_in_a_callback(pki: PKI, server_ctx: Callable[..., Any],
                                            client_ctx: Callable[..., Any],
                                            commssl_server: Callable[..., Any]) -> None:
    seen: List[bytes] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        cert = commssl.x509_store_ctx_get_current_cert(store)
        assert cert is not None and not cert.owned
        seen.append(commssl.dump_certificate(cert, "der"))
        return ok

    server = commssl_server(server_ctx())
    ctx = client_ctx()
    commssl.set_verification_mode(ctx, "client", "always", callback)
    with connect(server.port, ctx) as stream:
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"
    server.join()
    # depth 2, 1, 0: root, intermediate, leaf
    assert seen == [PKI.der(pki.root_cert), PKI.der(pki.intermediate_cert), PKI.der(pki.server_cert)]


def test_released_and_wrong_types(pki: PKI) -> None:
    cert = commssl.pem_read("X509", pki.server_cert)
    commssl.release_certificate(cert)
    with pytest.raises(CertificateReleasedError, match="released"):
        commssl.dump_certificate(cert)
    with pytest.raises(TypeError, match="cert must be an X509Pointer"):
        commssl.dump_certificate(b"not a pointer")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be bytes"):
        commssl.load_certificate("-----BEGIN CERTIFICATE-----")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="encoding"):
        commssl.load_certificate(b"x", 1)  # type: ignore[arg-type]
    live = commssl.pem_read("X509", pki.server_cert)
    try:
        with pytest.raises(ValueError, match="encoding must be 'pem' or 'der', not 'txt'"):
            commssl.dump_certificate(live, "txt")
        with pytest.raises(TypeError, match="encoding must be str"):
            commssl.dump_certificate(live, None)  # type: ignore[arg-type]
    finally:
        commssl.release_certificate(live)


def test_garbage_is_value_error_naming_data(pki: PKI) -> None:
    der = PKI.der(pki.server_cert)
    pem = pem_certs(pki.server_cert)[0].encode()
    before = commssl.outstanding_certificates()
    for data, encoding, match in [
        (b"", None, "data is empty"),
        (b"garbage", None, "data is not a DER certificate"),
        (der[:-10], "der", "data is not a DER certificate"),
        (der + b"\x00", None, "data holds bytes after its DER certificate"),
        (pem, "der", "data is not a DER certificate"),
        (der, "pem", "data is not a PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", None,
         "data is not a PEM certificate"),
        (pki.server_key.read_bytes(), None, "data is not a PEM certificate"),
    ]:
        with pytest.raises(ValueError, match=match):
            commssl.load_certificate(data, encoding)
    assert commssl.outstanding_certificates() == before
    assert commssl.lib.ERR_peek_error() == 0  # no stale errors for the next call's message


def test_exported(pki: PKI) -> None:
    assert {"dump_certificate", "load_certificate"} <= set(commssl.__all__)
    cert = commssl.load_certificate(PKI.der(pki.server_cert))
    assert type(cert) is X509Pointer
    commssl.release_certificate(cert)
