"""Revocation, pinning and diagnostics (API.md Part 2), against real peers on 127.0.0.1:
``openssl s_server -status_file`` stapling responses the tests made, ``openssl s_client
-status`` reading what a commssl server staples, nginx with ``ssl_stapling_file``, and CRLs
made with ``openssl ca -gencrl``."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import commssl
from commssl._core.args import ssl_of
from commssl.config.revocation import ocsp_status
from helpers import connect
from peers import NGINX, OPENSSL, PKI, WAIT, nginx, openssl_client, openssl_server
from revocation_pki import der_crl, make_crl, ocsp_response, unauthorized_response

REVOKED = commssl.lib.X509_V_ERR_CERT_REVOKED
NEEDED = commssl.lib.X509_V_ERR_OCSP_VERIFY_NEEDED
FAILED = commssl.lib.X509_V_ERR_OCSP_VERIFY_FAILED
UNKNOWN = commssl.lib.X509_V_ERR_OCSP_CERT_UNKNOWN
NOW = datetime.datetime.now(datetime.timezone.utc)
#: OpenSSL 3.6's libssl decodes staples, and a server staples only responses about its certificate
OPENSSL_36 = commssl.openssl_version()["loaded_number"] >= 0x30600000


def test_the_codes_are_openssls() -> None:
    assert (REVOKED, NEEDED, FAILED, UNKNOWN, commssl.lib.X509_V_ERR_UNABLE_TO_GET_CRL) == (23, 73, 74, 75, 3)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rv(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """CRLs (openssl ca) and OCSP responses (cryptography) for the test PKI."""
    d = tmp_path_factory.mktemp("revocation")

    class RV:
        directory = d
        crl_none = make_crl(d, pki.intermediate_cert, pki.intermediate_key, name="inter-none")
        crl_server = make_crl(d, pki.intermediate_cert, pki.intermediate_key, [pki.server_cert],
                              name="inter-server")
        crl_client = make_crl(d, pki.intermediate_cert, pki.intermediate_key, [pki.client_cert],
                              name="inter-client")
        root_none = make_crl(d, pki.root_cert, pki.root_key, name="root-none")
        root_inter = make_crl(d, pki.root_cert, pki.root_key, [pki.intermediate_cert], name="root-inter")

        @staticmethod
        def file(name: str, data: bytes) -> Path:
            p = d / name
            p.write_bytes(data)
            return p

    return RV


def client(pki: PKI, **kw: Any) -> Any:
    kw.setdefault("openssl_trusted_file", pki.root_cert)
    return commssl.create_ssl_client_context(**kw)


@pytest.fixture
def stapling_server(pki: PKI, rv: Any, commssl_server: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``openssl s_server -status_file`` stapling ``response`` (bytes), TLS 1.3 unless ``tls12``.

    ``connections=N``: a commssl server (``set_ocsp_staple``) for N connections instead. For
    the responses OpenSSL 3.6's s_server does not staple: it staples (multi-stapling) only a
    response it matches to a certificate of its chain, so not one naming the leaf by a SHA-256
    CertID, nor one about another certificate, nor one without single responses; libssl
    itself (3.0 to 3.6) staples every DER OCSP response it is given."""
    with contextlib_exit_stack() as stack:
        def start(response: bytes | None, tls12: bool = False, connections: int = 0) -> Any:
            if connections:
                ctx = _server_ctx(pki)
                stack.callback(commssl.destroy_ssl_ctx, ctx)
                if tls12:
                    commssl.lib.SSL_CTX_set_max_proto_version(ctx.cdata, commssl.lib.TLS1_2_VERSION)
                commssl.set_ocsp_staple(ctx, response)
                return commssl_server(ctx, handler=lambda s: None, count=connections)
            extra = ["-tls1_2"] if tls12 else []
            if response is not None:
                extra += ["-status_file", str(rv.file(f"staple{time.monotonic_ns()}.der", response))]
            return stack.enter_context(openssl_server(pki.server_chain, pki.server_key, extra_args=extra))
        yield start


def contextlib_exit_stack() -> Any:
    import contextlib
    return contextlib.ExitStack()


# -- pinning and serials -----------------------------------------------------------------


def test_spki_sha256_is_curls_pin(pki: PKI) -> None:
    for path in (pki.server_cert, pki.root_cert, pki.selfsigned_cert):
        cert = commssl.pem_read("X509", path)
        try:
            pin = dict(commssl.get_certificate_data(cert))["spki-sha256"]
        finally:
            commssl.release_certificate(cert)
        spki = x509.load_pem_x509_certificate(path.read_bytes()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert pin == base64.b64encode(hashlib.sha256(spki).digest()).decode()
        # and as the openssl CLI computes curl's sha256// pin
        pub = subprocess.run([OPENSSL, "x509", "-in", path, "-pubkey", "-noout"], capture_output=True,
                             check=True).stdout
        der = subprocess.run([OPENSSL, "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                             check=True).stdout
        assert der == spki


@pytest.mark.parametrize("nbytes", [1, 20, 64, 65, 100, 300])
def test_any_serial_size_in_every_certificate_function(pki: PKI, tmp_path: Path, nbytes: int) -> None:
    serial = int.from_bytes(bytes([0x5A]) * nbytes, "big")
    out = tmp_path / "big.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-new", "-key", pki.selfsigned_key, "-subj", "/CN=big",
                    "-days", "1", "-set_serial", hex(serial), "-out", out],
                   check=True, capture_output=True, timeout=WAIT)
    cert = commssl.pem_read("X509", out)
    try:
        assert commssl.get_certificate_serial_number(cert) == serial
        data = dict(commssl.get_certificate_data(cert))
        assert data["serial-number"] == serial and data["subject-common-name"] == "big"
        assert data["spki-sha256"]
    finally:
        commssl.release_certificate(cert)


# -- the verified chain ---------------------------------------------------------------------


def test_verified_chain_ends_at_the_trust_anchor(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as srv:
        with connect(srv.port, client(pki)) as s:
            sent = commssl.ssl_connection_copy_peer_certificates(s)
            built = commssl.ssl_connection_copy_verified_certificates(s)
            try:
                assert [commssl.get_certificate_common_name(c) for c in sent] == [
                    "localhost", pki.intermediate_cn]
                assert [commssl.get_certificate_common_name(c) for c in built] == [
                    "localhost", pki.intermediate_cn, pki.root_cn]
                assert all(c.owned for c in built)
            finally:
                commssl.release_certificates_vector(sent + built)


def test_verified_chain_inside_verify_callback_whether_or_not_it_verified(pki: PKI) -> None:
    seen: list[Any] = []

    def decide(conn: Any) -> bool:
        certs = commssl.ssl_connection_copy_verified_certificates(conn)
        seen.append((commssl.ssl_connection_verify(conn),
                     [commssl.get_certificate_common_name(c) for c in certs]))
        commssl.release_certificates_vector(certs)
        return True

    with openssl_server(pki.server_chain, pki.server_key) as srv:
        for trusted in (pki.root_cert, pki.other_root_cert):
            ctx = commssl.create_ssl_client_context(openssl_trusted_file=trusted, verify_callback=decide)
            with connect(srv.port, ctx) as s:
                after = commssl.ssl_connection_copy_verified_certificates(s)
                n = len(after)
                commssl.release_certificates_vector(after)
            assert n == len(seen[-1][1])
    assert seen[0] == ((True, 0), ["localhost", pki.intermediate_cn, pki.root_cn])
    assert seen[1][0] == (False, 20) and seen[1][1][:2] == ["localhost", pki.intermediate_cn]


def test_no_chain_is_an_empty_list(pki: PKI) -> None:
    ctx = commssl.make_ssl_ctx(True, "client")
    try:
        sslp = _new_ssl(ctx)  # no handshake yet: no chain, no staple
        assert commssl.ssl_connection_copy_verified_certificates(sslp) == []
        assert commssl.ssl_connection_ocsp_response(sslp) is None
        assert commssl.ssl_connection_ocsp_status(sslp) is None
        del sslp
    finally:
        commssl.destroy_ssl_ctx(ctx)


def _new_ssl(ctx: commssl.SSLCtxPointer) -> commssl.SSLPointer:
    cdata = commssl.lib.SSL_new(ctx.cdata)
    sslp = commssl.SSLPointer(cdata)  # takes a reference of its own
    commssl.lib.SSL_free(cdata)
    return sslp


# -- CRLs -------------------------------------------------------------------------------------


def test_crl_good_revoked_and_missing(pki: PKI, rv: Any) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as srv:
        with connect(srv.port, client(pki, crl_file=rv.crl_none)) as s:
            assert commssl.ssl_connection_verify(s) == (True, 0)
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect(srv.port, client(pki, crl_file=rv.crl_server))
        e = info.value
        assert (e.verify_code, e.depth) == (REVOKED, 0)
        assert e.errors == [(0, REVOKED, "CN=localhost")]
        assert [dict(d)["subject-common-name"] for d in e.chain] == ["localhost", pki.intermediate_cn]
        # CRL checking with no CRL of the issuer: UNABLE_TO_GET_CRL
        ctx = client(pki)
        commssl.set_crl_checking(ctx, "leaf")
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect(srv.port, ctx)
        assert (info.value.verify_code, info.value.depth) == (3, 0)
        # "chain": the intermediate needs the root's CRL too
        ctx = client(pki, crl_file=rv.crl_none, crl_checking="chain")
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect(srv.port, ctx)
        assert (info.value.verify_code, info.value.depth) == (3, 1)
        commssl.ssl_ctx_load_crl(ctx, rv.root_none)
        with connect(srv.port, ctx) as s:
            assert commssl.ssl_connection_verify(s) == (True, 0)
        # the intermediate revoked by the root: depth 1, and only with "chain"
        both = rv.crl_none.read_bytes() + rv.root_inter.read_bytes()
        with connect(srv.port, client(pki, crl_file=both)) as s:
            assert commssl.ssl_connection_verify(s) == (True, 0)
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect(srv.port, client(pki, crl_file=both, crl_checking="chain"))
        assert (info.value.verify_code, info.value.depth) == (REVOKED, 1)
        assert (1, REVOKED, f"CN={pki.intermediate_cn}") in info.value.errors
        # off again
        ctx = client(pki, crl_file=rv.crl_server, crl_checking=None)
        with connect(srv.port, ctx) as s:
            assert commssl.ssl_connection_verify(s) == (True, 0)


def test_crl_forms(pki: PKI, rv: Any) -> None:
    ctx = commssl.make_ssl_ctx(True, "client")
    try:
        assert commssl.ssl_ctx_load_crl(ctx, rv.crl_none) == 1
        assert commssl.ssl_ctx_load_crl(ctx, str(rv.crl_server)) == 1
        assert commssl.ssl_ctx_load_crl(ctx, der_crl(rv.crl_client)) == 1
        assert commssl.ssl_ctx_load_crl(ctx, rv.file("crl.der", der_crl(rv.root_none))) == 1
        two = rv.crl_server.read_bytes() + b"\n" + rv.root_inter.read_bytes()
        assert commssl.ssl_ctx_load_crl(ctx, two) == 2
        assert commssl.ssl_ctx_load_crl(ctx, bytearray(two)) == 2
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_crl_bad_input(pki: PKI, rv: Any) -> None:
    ctx = commssl.make_ssl_ctx(True, "client")
    der = der_crl(rv.crl_server)
    try:
        for bad in (pki.server_cert, rv.file("truncated.der", der[:-7]), rv.file("junk", os.urandom(300)),
                    der[: len(der) // 2], der + b"x", b"not a crl", PKI.der(pki.server_cert),
                    rv.crl_none.read_bytes()[:-40],
                    b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"):
            with pytest.raises(commssl.SSLFailure, match="ssl_ctx_load_crl: crl") as info:
                commssl.ssl_ctx_load_crl(ctx, bad)
            assert "not a PEM or DER certificate revocation list" in str(info.value)
            assert commssl.lib.ERR_peek_last_error() == 0
        with pytest.raises(commssl.SSLFailure, match="empty"):
            commssl.ssl_ctx_load_crl(ctx, b"")
        with pytest.raises(commssl.SSLFailure, match="cannot read crl"):
            commssl.ssl_ctx_load_crl(ctx, rv.directory / "missing.pem")
        with pytest.raises(TypeError, match="crl must be a path or bytes"):
            commssl.ssl_ctx_load_crl(ctx, 42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="mode"):
            commssl.set_crl_checking(ctx, True)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="'leaf' or 'chain'"):
            commssl.set_crl_checking(ctx, "all")
        with pytest.raises(commssl.SSLFailure):
            commssl.create_ssl_client_context(crl_file=pki.server_cert)
    finally:
        commssl.destroy_ssl_ctx(ctx)


def test_crl_on_the_server_side(pki: PKI, rv: Any, commssl_server: Callable[..., Any]) -> None:
    server = commssl.create_ssl_server_context(cert_file=pki.server_chain, key_file=pki.server_key,
                                               openssl_trusted_file=pki.root_cert,
                                               verify_callback=lambda c: commssl.ssl_connection_verify(c)[0],
                                               crl_file=rv.crl_client)
    srv = commssl_server(server)
    r = openssl_client(srv.port, cafile=pki.root_cert, cert=pki.client_chain, key=pki.client_key,
                       extra_args=["-tls1_2"])
    srv.join()
    assert r.returncode != 0
    [e] = srv.errors
    assert isinstance(e, commssl.SSLVerificationFailure) and e.verify_code == REVOKED
    assert e.errors[0] == (0, REVOKED, f"emailAddress={pki.client_email},CN={pki.client_cn}")
    assert dict(e.chain[0])["subject-common-name"] == pki.client_cn


# -- OCSP stapling: the client, against openssl s_server ---------------------------------------


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_good_staple(pki: PKI, stapling_server: Callable[..., Any], tls12: bool) -> None:
    der = ocsp_response(pki, "good")
    srv = stapling_server(der, tls12)
    for mode in (True, "if-present", "require"):
        with connect(srv.port, client(pki, ocsp_stapling=mode)) as s:
            assert commssl.ssl_connection_protocol_version(s) == ("tls-v1-2" if tls12 else "tls-v1-3")
            assert commssl.ssl_connection_ocsp_response(s) == der
            st = commssl.ssl_connection_ocsp_status(s)
            assert st is not None
            assert (st.status, st.verified, st.error, st.verify_code) == ("good", True, None, 0)
            assert st.this_update < NOW < st.next_update  # type: ignore[operator]
            assert st.this_update.tzinfo is datetime.timezone.utc  # type: ignore[union-attr]
            assert st.revocation_time is None and st.revocation_reason is None
    # a response naming the certificate by SHA-256 hashes (not SHA-1) is found as well
    srv = stapling_server(ocsp_response(pki, "good", algorithm=hashes.SHA256()), tls12, connections=2)
    with connect(srv.port, client(pki, ocsp_stapling="require")) as s:
        assert commssl.ssl_connection_ocsp_status(s).verified  # type: ignore[union-attr]
    # not asked: nothing stapled
    with connect(srv.port, client(pki)) as s:
        assert commssl.ssl_connection_ocsp_response(s) is None
        assert commssl.ssl_connection_ocsp_status(s) is None


def _bad_staples(pki: PKI) -> list[tuple[str, bytes, int, str, int]]:
    """(name, response, verify_code, status, connections): connections for a commssl server
    (0: s_server, which OpenSSL 3.6 has staple only responses about its own chain)."""
    old = NOW - datetime.timedelta(days=3)
    return [
        ("revoked", ocsp_response(pki, "revoked"), REVOKED, "revoked", 0),
        ("unknown", ocsp_response(pki, "unknown"), UNKNOWN, "unknown", 0),
        ("expired", ocsp_response(pki, "good", this_update=old, next_update=old + datetime.timedelta(days=1)),
         FAILED, "good", 0),
        ("wrong key", ocsp_response(pki, "good", signer=pki.other_root_cert, signer_key=pki.other_root_key),
         FAILED, "good", 0),
        ("another certificate", ocsp_response(pki, "good", cert=pki.client_cert), UNKNOWN, "unknown", 3),
        ("unauthorized", unauthorized_response(), FAILED, "unknown", 3),
    ]


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_bad_staples_fail_the_handshake(pki: PKI, stapling_server: Callable[..., Any], tls12: bool) -> None:
    for name, der, code, status, connections in _bad_staples(pki):
        if connections and OPENSSL_36 and name == "another certificate":
            # OpenSSL 3.6's libssl staples no response about another certificate than its
            # own: no server at hand sends one. What the client makes of one (from a server
            # on another OpenSSL): the check the handshake runs, on a connection's chain.
            srv = stapling_server(ocsp_response(pki, "good"), tls12, connections=1)
            with connect(srv.port, client(pki, ocsp_stapling="require")) as s:
                st = ocsp_status(ssl_of(s), der)
                assert st is not None and (st.status, st.verified, st.verify_code) == (status, False, code)
                assert st.error == "the OCSP response is not for this certificate"
            continue
        srv = stapling_server(der, tls12, connections=connections)
        for mode in ("if-present", "require"):
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                connect(srv.port, client(pki, ocsp_stapling=mode))
            e = info.value
            assert (e.verify_code, e.depth) == (code, 0), name
            assert e.errors[-1] == (0, code, "CN=localhost"), name
            assert [dict(d)["subject-common-name"] for d in e.chain] == ["localhost", pki.intermediate_cn]
            assert e.ssl_code == ("verification", code)
        # True only records: the handshake passes, the status tells
        with connect(srv.port, client(pki, ocsp_stapling=True)) as s:
            assert commssl.ssl_connection_ocsp_response(s) == der
            st = commssl.ssl_connection_ocsp_status(s)
            assert st is not None and st.status == status and st.verify_code == code, name
            assert st.verified == (code == REVOKED or name == "unknown"), name
            if code != REVOKED and name != "unknown":
                assert st.error, name
            if name == "revoked":
                assert st.revocation_reason == "keyCompromise"
                assert st.revocation_time < NOW  # type: ignore[operator]
            if name == "expired":
                assert "not current" in st.error  # type: ignore[operator]


def test_require_without_a_staple(pki: PKI, stapling_server: Callable[..., Any]) -> None:
    srv = stapling_server(None)
    with connect(srv.port, client(pki, ocsp_stapling="if-present")) as s:
        assert commssl.ssl_connection_ocsp_response(s) is None
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(srv.port, client(pki, ocsp_stapling="require"))
    assert (info.value.verify_code, info.value.depth) == (NEEDED, 0)


def test_per_connection_mode_and_off(pki: PKI, stapling_server: Callable[..., Any]) -> None:
    srv = stapling_server(ocsp_response(pki, "revoked"))
    ctx = client(pki, ocsp_stapling="require")
    with connect(srv.port, ctx, ssl_configure_callback=lambda p: commssl.set_ocsp_stapling(p, False)) as s:
        assert commssl.ssl_connection_ocsp_response(s) is None
    commssl.set_ocsp_stapling(ctx, False)
    with connect(srv.port, ctx) as s:
        assert commssl.ssl_connection_ocsp_response(s) is None
    with pytest.raises(commssl.SSLVerificationFailure):
        connect(srv.port, ctx, ssl_configure_callback=lambda ssl: commssl.set_ocsp_stapling(ssl, "require"))
    for bad, exc in ((None, TypeError), ("yes", ValueError), (1, TypeError)):
        with pytest.raises(exc, match="mode must be False, True, 'if-present' or 'require'"):
            commssl.set_ocsp_stapling(ctx, bad)  # type: ignore[arg-type]


def test_staple_inside_verify_callback_on_tls13(pki: PKI, stapling_server: Callable[..., Any]) -> None:
    seen: list[Any] = []

    def decide(conn: Any) -> bool:
        st = commssl.ssl_connection_ocsp_status(conn)
        seen.append(st and (st.status, st.verified))
        return st is not None and st.status == "good"

    der = ocsp_response(pki, "good")
    srv = stapling_server(der)
    with connect(srv.port, client(pki, ocsp_stapling=True, verify_callback=decide)):
        pass
    assert seen == [("good", True)]
    srv = stapling_server(ocsp_response(pki, "revoked"))
    with pytest.raises(commssl.SSLVerificationFailure) as info:
        connect(srv.port, client(pki, ocsp_stapling=True, verify_callback=decide))
    assert seen[-1] == ("revoked", True) and info.value.ssl_code == "verify-callback"


def test_asyncio_client_fails_inside_the_handshake(pki: PKI, stapling_server: Callable[..., Any]) -> None:
    srv = stapling_server(ocsp_response(pki, "revoked"))
    ctx = client(pki, ocsp_stapling="require")

    async def main() -> None:
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            await commssl.open_tcp_stream_async("127.0.0.1", srv.port, ssl_ctx=ctx, handshake_timeout=WAIT)
        assert (info.value.verify_code, info.value.depth) == (REVOKED, 0)
        stream = await commssl.open_tcp_stream_async(
            "127.0.0.1", srv.port, ssl_ctx=client(pki, ocsp_stapling=True), handshake_timeout=WAIT)
        assert commssl.ssl_connection_ocsp_status(stream).status == "revoked"  # type: ignore[union-attr]
        await stream.close()

    asyncio.run(main())


# -- OCSP stapling and resumption ----------------------------------------------------------------


def _session_of(port: int, ctx: Any, **kw: Any) -> Any:
    """A full handshake, a line through s_server (so a TLS 1.3 ticket arrives), its Session."""
    with connect(port, ctx, **kw) as s:
        assert not commssl.ssl_connection_session_reused(s)
        s.write(b"ping\n")
        assert s.readline() == b"gnip\n"
        return commssl.ssl_connection_session(s)


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_a_session_resumes_under_require(pki: PKI, stapling_server: Callable[..., Any], tls12: bool) -> None:
    """The full handshake checked the staple; the resumed one (no staple comes) resumes."""
    srv = stapling_server(ocsp_response(pki, "good"), tls12)
    ctx = client(pki, ocsp_stapling="require")
    session = _session_of(srv.port, ctx)
    try:
        for _ in range(2):  # and the session of a resumed handshake resumes in its turn
            with connect(srv.port, ctx, session=session) as s:
                assert commssl.ssl_connection_session_reused(s)
                assert commssl.ssl_connection_ocsp_response(s) is None  # nothing stapled to it
                s.write(b"ping\n")
                assert s.readline() == b"gnip\n"
                newer = commssl.ssl_connection_session(s)
            session.release()
            session = newer
    finally:
        session.release()


@pytest.mark.skipif(shutil.which("gnutls-serv") is None, reason="gnutls-bin not installed")
def test_a_session_resumes_under_require_with_gnutls_serv(pki: PKI, rv: Any) -> None:
    staple = rv.file("gnutls-staple.der", ocsp_response(pki, "good"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["gnutls-serv", "--x509certfile", str(pki.server_chain), "--x509keyfile",
                             str(pki.server_key), "--ocsp-response", str(staple), "--echo",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = client(pki, ocsp_stapling="require")
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with connect(port, ctx) as s:
                    s.write(b"ping\n")
                    assert s.readline() == b"ping\n"  # the TLS 1.3 ticket came before it
                    assert commssl.ssl_connection_ocsp_status(s).verified  # type: ignore[union-attr]
                    session = commssl.ssl_connection_session(s)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "gnutls-serv did not start"
                time.sleep(0.05)
        try:
            with connect(port, ctx, session=session) as s:
                assert commssl.ssl_connection_session_reused(s)
                s.write(b"ping\n")
                assert s.readline() == b"ping\n"
        finally:
            session.release()
    finally:
        proc.kill()
        proc.wait(WAIT)


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_a_session_without_a_checked_staple_does_not_resume_under_require(
        pki: PKI, stapling_server: Callable[..., Any], tls12: bool) -> None:
    """A session made while stapling was off (or "if-present" and nothing came) is not
    offered under "require": a full handshake runs, and checks the staple."""
    srv = stapling_server(ocsp_response(pki, "good"), tls12)
    ctx = client(pki)
    session = _session_of(srv.port, ctx)
    try:
        commssl.set_ocsp_stapling(ctx, "require")
        with connect(srv.port, ctx, session=session) as s:
            assert not commssl.ssl_connection_session_reused(s)
            assert commssl.ssl_connection_ocsp_status(s).verified  # type: ignore[union-attr]
    finally:
        session.release()
    bare = stapling_server(None, tls12)  # staples nothing
    for made_with in (False, "if-present"):
        ctx = client(pki, ocsp_stapling=made_with)
        session = _session_of(bare.port, ctx)
        try:
            commssl.set_ocsp_stapling(ctx, "require")
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                connect(bare.port, ctx, session=session)
            assert (info.value.verify_code, info.value.depth) == (NEEDED, 0)
        finally:
            session.release()


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_require_fails_a_forced_resumption_of_an_unchecked_session(
        pki: PKI, stapling_server: Callable[..., Any], tls12: bool) -> None:
    """Below the Session rules (SSL_set_session called directly): the resumed handshake
    itself fails under "require" when its session's full handshake checked no staple
    (TLS 1.3: in the status callback OpenSSL runs; TLS 1.2: after the handshake)."""
    srv = stapling_server(ocsp_response(pki, "good"), tls12)
    ctx = client(pki)
    session = _session_of(srv.port, ctx)

    def force(sslp: Any) -> None:
        commssl.set_ocsp_stapling(sslp, "require")
        assert commssl.lib.SSL_set_session(sslp.cdata, session.cdata) == 1

    try:
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect(srv.port, ctx, ssl_configure_callback=force)
        assert info.value.verify_code == NEEDED
    finally:
        session.release()


# -- OCSP stapling: the server, to openssl s_client and to commssl ------------------------------


def _server_ctx(pki: PKI) -> commssl.SSLCtxPointer:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, pki.server_chain)
    commssl.ssl_ctx_use_privatekey_file(ctx, pki.server_key)
    return ctx


def _serve_one(commssl_server: Callable[..., Any], ctx: Any) -> Any:
    return commssl_server(ctx, handler=lambda s: s.write(s.readline()))


def no_staple_seen(s_client_output: str) -> bool:
    """s_client -status saw no staple, in any OpenSSL's words: 3.0's "OCSP response: no
    response sent", 3.6's "OCSP responses: no responses sent" (TLS 1.3) and "OCSP response: no
    OCSP response received" (TLS 1.2)."""
    said_none = re.search(r"OCSP responses?: no (OCSP )?responses? (sent|received)", s_client_output)
    return said_none is not None and "Cert Status:" not in s_client_output


@pytest.mark.parametrize("tls", ["-tls1_3", "-tls1_2"])
def test_commssl_staples_to_s_client(pki: PKI, commssl_server: Callable[..., Any], tls: str) -> None:
    ctx = _server_ctx(pki)
    der = ocsp_response(pki, "revoked")
    commssl.set_ocsp_staple(ctx, der)
    srv = _serve_one(commssl_server, ctx)
    r = openssl_client(srv.port, cafile=pki.root_cert, extra_args=["-status", tls], input=b"hi\n")
    srv.join()
    out = r.stdout.decode()
    assert "OCSP Response Status: successful" in out and "Cert Status: revoked" in out, out
    assert "Revocation Reason: keyCompromise" in out
    # per handshake, from a callable, which sees the connection
    calls: list[Any] = []

    def staple(conn: Any) -> bytes | None:
        calls.append(conn)
        return ocsp_response(pki, "good") if len(calls) == 1 else None

    commssl.set_ocsp_staple(ctx, staple)
    srv = commssl_server(ctx, count=2)
    first = openssl_client(srv.port, cafile=pki.root_cert, extra_args=["-status", tls], input=b"hi\n")
    second = openssl_client(srv.port, cafile=pki.root_cert, extra_args=["-status", tls], input=b"hi\n")
    srv.join()
    assert "Cert Status: good" in first.stdout.decode()
    assert no_staple_seen(second.stdout.decode())
    assert len(calls) == 2 and all(isinstance(c, commssl.SocketStream) for c in calls)
    # stop stapling; a client that does not ask never calls the callable
    commssl.set_ocsp_staple(ctx, None)
    srv = _serve_one(commssl_server, ctx)
    r = openssl_client(srv.port, cafile=pki.root_cert, extra_args=["-status", tls], input=b"hi\n")
    srv.join()
    assert no_staple_seen(r.stdout.decode())
    commssl.destroy_ssl_ctx(ctx)


class Boom(Exception):
    pass


@pytest.mark.parametrize("result, exc", [(Boom("staple"), Boom), ("a str", TypeError), (42, TypeError),
                                         ([b"x"], TypeError), (b"", ValueError), (b"not DER", ValueError)])
def test_staple_callable_errors_propagate_from_the_server_handshake(
        pki: PKI, commssl_server: Callable[..., Any], result: Any, exc: type) -> None:
    def staple(conn: Any) -> Any:
        if isinstance(result, BaseException):
            raise result
        return result

    ctx = _server_ctx(pki)
    commssl.set_ocsp_staple(ctx, staple)
    srv = _serve_one(commssl_server, ctx)
    r = openssl_client(srv.port, cafile=pki.root_cert, extra_args=["-status"], input=b"hi\n")
    srv.join()
    assert r.returncode != 0
    [e] = srv.errors
    assert type(e) is exc, repr(e)
    if exc is TypeError:
        assert "must return bytes (a DER OCSP response) or None" in str(e)
    if exc is ValueError:
        assert ("returned empty bytes" if result == b"" else "must return one DER OCSP response") in str(e)
    commssl.destroy_ssl_ctx(ctx)


def test_staple_callable_error_in_an_asyncio_server(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    ctx = _server_ctx(pki)
    commssl.set_ocsp_staple(ctx, lambda conn: "not bytes")
    errors: list[BaseException] = []
    caplog.set_level("INFO", logger="commssl.aio")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler_ran = asyncio.Event()

        async def handler(stream: Any) -> None:
            handler_ran.set()

        def on_error(loop: Any, context: Any) -> None:
            errors.append(context.get("exception"))

        loop.set_exception_handler(on_error)
        server = await commssl.start_ssl_server(handler, "127.0.0.1", 0, ssl_ctx=ctx, handshake_timeout=WAIT)
        port = server.sockets[0].getsockname()[1]
        r = await loop.run_in_executor(None, lambda: openssl_client(port, cafile=pki.root_cert,
                                                                    extra_args=["-status"]))
        server.close()
        await server.wait_closed()
        assert r.returncode != 0 and not handler_ran.is_set()

    asyncio.run(main())
    commssl.destroy_ssl_ctx(ctx)
    # start_ssl_server's handshake failures (the callable's TypeError) go to its logger
    assert "TypeError: the OCSP staple callable must return bytes" in caplog.text
    assert errors == []


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_commssl_to_commssl_staples(pki: PKI, commssl_server: Callable[..., Any], tls12: bool) -> None:
    ctx = _server_ctx(pki)
    if tls12:
        commssl.lib.SSL_CTX_set_max_proto_version(ctx.cdata, commssl.lib.TLS1_2_VERSION)
    # bytes that are not one DER OCSP response are refused: OpenSSL 3.6 would staple their
    # re-encoding or nothing (3.0 and 3.5: the bytes as they are)
    for garbage in os.urandom(64), ocsp_response(pki, "good") + b"\0", b"\x30\x03\x0a\x01":
        with pytest.raises(ValueError, match="one DER OCSP response"):
            commssl.set_ocsp_staple(ctx, garbage)
    empty = b"\x30\x03\x0a\x01\x00"  # "successful", but no response in it
    for staple, code in [(empty, FAILED), (ocsp_response(pki, "good"), 0),
                         (ocsp_response(pki, "revoked"), REVOKED)]:
        commssl.set_ocsp_staple(ctx, staple)
        srv = _serve_one(commssl_server, ctx)
        try:
            if code:
                with pytest.raises(commssl.SSLVerificationFailure) as info:
                    connect(srv.port, client(pki, ocsp_stapling="require"))
                assert (info.value.verify_code, info.value.depth) == (code, 0)
            else:
                with connect(srv.port, client(pki, ocsp_stapling="require")) as s:
                    s.write(b"x\n")
                    assert s.readline() == b"x\n"
                    assert commssl.ssl_connection_ocsp_status(s).verified  # type: ignore[union-attr]
        finally:
            srv.join()
        assert len(srv.errors) == (1 if code else 0)  # the server sees the client's alert
    # what the client made of it
    commssl.set_ocsp_staple(ctx, empty)
    srv = _serve_one(commssl_server, ctx)
    with connect(srv.port, client(pki, ocsp_stapling=True)) as s:
        st = commssl.ssl_connection_ocsp_status(s)
        assert st is not None and (st.status, st.verified, st.verify_code) == ("unknown", False, FAILED)
        assert st.error is not None and st.error.startswith("the OCSP response has no basic response")
        # and of bytes that are none (a server on OpenSSL before 3.6 can staple them)
        st = ocsp_status(ssl_of(s), b"\x01" + os.urandom(63))
        assert st is not None and (st.status, st.verified, st.verify_code) == ("unknown", False, FAILED)
        assert st.error is not None and st.error.startswith("the staple is not a DER OCSP response")
        s.write(b"x\n")
        s.readline()
    srv.join()
    # an empty staple is refused by lib as well (-1: not a DER OCSP response)
    assert commssl.lib.commssl_set_staple(ctx.cdata, b"", 0, 1) == -1
    assert commssl.lib.commssl_set_staple(ctx.cdata, b"\x30\x03\x0a\x01", 4, 1) == -1
    with pytest.raises(ValueError, match="not empty bytes"):
        commssl.set_ocsp_staple(ctx, b"")
    with pytest.raises(TypeError, match="response must be bytes, a callable or None"):
        commssl.set_ocsp_staple(ctx, "str")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        commssl.set_ocsp_staple(_new_ssl(ctx), b"")  # type: ignore[arg-type]
    commssl.destroy_ssl_ctx(ctx)


# -- nginx ----------------------------------------------------------------------------------------

@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (ci/setup installs it for the tests)")
@pytest.mark.parametrize("status", ["good", "revoked"])
def test_nginx_ssl_stapling_file(pki: PKI, status: str) -> None:
    with tempfile.TemporaryDirectory(prefix="commssl-nginx-") as tmp:
        d = Path(tmp)
        staple = d / "staple.der"
        staple.write_bytes(ocsp_response(pki, status))
        extra = f"ssl_stapling on;\n        ssl_stapling_file {staple};"
        with nginx(pki.server_chain, pki.server_key, extra=extra, directory=d) as port:
            if status == "good":
                with connect(port, client(pki, ocsp_stapling="require"), tlsext_host_name="localhost") as s:
                    s.write(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    assert b"hello from nginx" in s.read()
                    st = commssl.ssl_connection_ocsp_status(s)
                    assert st is not None and (st.status, st.verified) == ("good", True)
            else:
                with pytest.raises(commssl.SSLVerificationFailure) as info:
                    connect(port, client(pki, ocsp_stapling="require"), tlsext_host_name="localhost")
                assert (info.value.verify_code, info.value.depth) == (REVOKED, 0)


# -- diagnostics ---------------------------------------------------------------------------------


def test_errors_lists_every_failure_in_order(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as srv:
        ctx = commssl.make_ssl_ctx(True, "client")
        commssl.ssl_ctx_load_verify_locations(ctx, pki.other_root_cert)
        accepted: list[int] = []

        def accept_some(ok: bool, store: Any) -> bool:  # accept the first failure only
            if not ok:
                accepted.append(commssl.x509_store_ctx_get_error(store))
            return len(accepted) < 2

        commssl.set_verification_mode(ctx, "client", "always", accept_some)
        try:
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                connect(srv.port, ctx, tlsext_host_name="wrong.example")
        finally:
            commssl.destroy_ssl_ctx(ctx)
    e = info.value
    assert len(e.errors) == 2 and e.errors[0][:2] == (1, 20)
    assert e.errors[0][2] == f"CN={pki.intermediate_cn}"
    assert e.errors[1] == (0, commssl.lib.X509_V_ERR_HOSTNAME_MISMATCH, "CN=localhost")
    assert [dict(d)["subject-common-name"] for d in e.chain] == ["localhost", pki.intermediate_cn]
    assert all(dict(d)["spki-sha256"] for d in e.chain)


def test_errors_of_a_rejecting_verify_callback(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as srv:
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect(srv.port, client(pki, verify_callback=lambda conn: False))
    e = info.value
    assert e.errors == [(0, commssl.lib.X509_V_ERR_APPLICATION_VERIFICATION, "CN=localhost")]
    assert len(e.chain) == 2


def test_nothing_outstanding_after_failures(pki: PKI, rv: Any, stapling_server: Callable[..., Any]) -> None:
    start = commssl.outstanding_certificates()
    srv = stapling_server(ocsp_response(pki, "revoked"))
    for _ in range(20):
        with pytest.raises(commssl.SSLVerificationFailure):
            connect(srv.port, client(pki, ocsp_stapling="require", crl_file=rv.crl_none))
    assert commssl.outstanding_certificates() == start
