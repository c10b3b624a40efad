"""Peer certificates as X509* pointers, and checking a connection (API.md
"Peer certificates (seed page)" and "Checking a connection"), against real
peers: commssl, ``openssl s_server``/``s_client`` and CPython ``ssl``."""

from __future__ import annotations

import datetime
import gc
import subprocess
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import commssl
from commssl import CertificateReleasedError, SSLFailure, X509Pointer, lib
from helpers import connect, der, fingerprint, libcrypto
from peers import (
    OPENSSL,
    PKI,
    cpython_tls_client,
    cpython_tls_server,
    openssl_client,
    openssl_server,
)

# -- helpers -------------------------------------------------------------------------


CRYPTO = libcrypto()


def openssl_x509(path: Path, *options: str) -> str:
    return subprocess.run([OPENSSL, "x509", "-in", str(path), "-noout", *options],
                          capture_output=True, text=True, timeout=10, check=True).stdout


def released_all(certs: List[Optional[X509Pointer]]) -> None:
    commssl.release_certificates_vector(certs)


@pytest.fixture
def leaf(pki: PKI) -> Iterator[X509Pointer]:
    """The server's leaf, read from its file (owned; released after the test)."""
    cert = commssl.pem_read("X509", pki.server_cert)
    assert cert is not None
    yield cert
    if not cert.released:
        commssl.release_certificate(cert)


# -- copying the peer's chain ----------------------------------------------------------


@pytest.mark.parametrize("peer", ["commssl", "openssl", "cpython"])
def test_client_copies_leaf_first_as_sent(peer: str, pki: PKI, server_ctx: Callable[..., Any],
                                          client_ctx: Callable[..., Any],
                                          commssl_server: Callable[..., Any]) -> None:
    def run(port: int) -> None:
        with connect(port, client_ctx()) as stream:
            start = commssl.outstanding_certificates()
            certs = commssl.ssl_connection_copy_peer_certificates(stream)
            assert commssl.outstanding_certificates() == start + 2
            assert all(type(c) is X509Pointer and c.owned and not c.released for c in certs)
            assert [der(c) for c in certs] == [pki.der(pki.server_cert), pki.der(pki.intermediate_cert)]
            data = [dict(commssl.get_certificate_data(c)) for c in certs]
            assert [d["sha256-fingerprint"] for d in data] == [
                fingerprint(pki.der(pki.server_cert)), fingerprint(pki.der(pki.intermediate_cert))]
            # a second copy is a new list of new references to the same certificates
            again = commssl.ssl_connection_copy_peer_certificates(stream)
            assert [c.address for c in again] == [c.address for c in certs]
            assert all(a is not b for a, b in zip(again, certs))
            released_all(certs + again)
            assert commssl.outstanding_certificates() == start
            stream.write(b"abc\n")
            assert stream.readline() in (b"abc\n", b"cba\n")

    if peer == "commssl":
        server = commssl_server(server_ctx())
        run(server.port)
        server.join()
        assert server.errors == []
    elif peer == "openssl":
        with openssl_server(pki.server_chain, pki.server_key) as s:
            run(s.port)
    else:
        with cpython_tls_server(pki.server_chain, pki.server_key) as s:
            run(s.port)
            s.wait_finished(1)
            assert s.errors == []


def _client_chain_server(server_ctx: Callable[..., Any], pki: PKI, commssl_server: Callable[..., Any],
                         mode: Any = "always") -> Any:
    """A commssl server asking for a client certificate that reports what it copied."""
    ctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(ctx, "server", mode)

    def handler(stream: commssl.SocketStream) -> Any:
        with commssl.peer_certificates(stream) as certs:
            return ([der(c) for c in certs if c is not None], commssl.ssl_connection_verify(stream),
                    commssl.ssl_connection_get_peer_certificates_data(stream))

    return commssl_server(ctx, handler)


@pytest.mark.parametrize("peer", ["commssl", "openssl", "cpython"])
def test_server_copy_includes_client_leaf(peer: str, pki: PKI, server_ctx: Callable[..., Any],
                                          client_ctx: Callable[..., Any],
                                          commssl_server: Callable[..., Any]) -> None:
    server = _client_chain_server(server_ctx, pki, commssl_server)
    if peer == "commssl":
        connect(server.port, client_ctx(chain=pki.client_chain, key=pki.client_key)).close()
    elif peer == "openssl":
        r = openssl_client(server.port, cafile=pki.root_cert, cert=pki.client_chain,
                           key=pki.client_key)
        assert r.returncode == 0, r.stderr
    else:
        cpython_tls_client(server.port, cafile=pki.root_cert, certfile=pki.client_chain,
                           keyfile=pki.client_key).close()
    server.join()
    assert server.errors == []
    ders, verified, data = server.results[0]
    # OpenSSL's SSL_get_peer_cert_chain leaves the client's leaf out on the server side
    assert ders == [pki.der(pki.client_cert), pki.der(pki.intermediate_cert)]
    assert verified == (True, lib.X509_V_OK)
    assert [dict(d)["subject-common-name"] for d in data] == [pki.client_cn, pki.intermediate_cn]


@pytest.mark.parametrize("case", ["server-never", "client-without-cert"])
def test_server_copies_nothing_when_client_sent_none(case: str, pki: PKI,
                                                     server_ctx: Callable[..., Any],
                                                     client_ctx: Callable[..., Any],
                                                     commssl_server: Callable[..., Any]) -> None:
    # "never": the server does not ask, so even a client with a certificate sends none
    server = _client_chain_server(server_ctx, pki, commssl_server,
                                  "never" if case == "server-never" else "always")
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key) if case == "server-never" \
        else client_ctx()
    connect(server.port, cctx).close()
    server.join()
    assert server.errors == []
    assert server.results == [([], (False, lib.X509_V_ERR_UNSPECIFIED), [])]


def test_copies_outlive_stream_and_context(pki: PKI, server_ctx: Callable[..., Any],
                                           commssl_server: Callable[..., Any]) -> None:
    """The copies hold real references: they survive SSL_free and SSL_CTX_free."""
    server = commssl_server(server_ctx())
    ctx = commssl.make_ssl_ctx(True, "client")
    commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
    stream = connect(server.port, ctx)
    certs = commssl.ssl_connection_copy_peer_certificates(stream)
    sslp = commssl.ssl_connection_ssl_ref(stream)
    stream.close()
    commssl.destroy_ssl_ctx(ctx)
    assert sslp._dead
    del stream, sslp, ctx
    gc.collect()
    server.join()
    # scribble over freed memory so a dangling pointer would read garbage
    junk = [bytes(range(256)) * 64 for _ in range(200)]
    assert [der(c) for c in certs] == [pki.der(pki.server_cert), pki.der(pki.intermediate_cert)]
    assert [CRYPTO.X509_get_version(c.address) for c in certs] == [2, 2]  # X509 v3
    assert commssl.get_certificate_common_name(certs[0]) == "localhost"
    assert commssl.get_certificate_serial_number(certs[0]) == pki.server_serial
    del junk
    released_all(certs)


def test_ssl_pointer_stands_for_its_connection(pki: PKI, server_ctx: Callable[..., Any],
                                               client_ctx: Callable[..., Any],
                                               commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx())
    with connect(server.port, client_ctx()) as stream:
        ref = commssl.ssl_connection_ssl_ref(stream)
        assert isinstance(ref, commssl.SSLPointer)
        assert ref is commssl.socket_stream_ssl(stream)
        assert ref.address == int(commssl.ffi.cast("uintptr_t", ref.cdata)) != 0
        assert lib.SSL_get_fd(ref.cdata) == stream.fileno()
        assert lib.SSL_is_server(ref.cdata) == 0
        assert commssl.SSLPointer(ref.cdata) is ref  # the wrapper commssl already has
        with commssl.peer_certificates(ref) as certs:
            assert [der(c) for c in certs if c] == [pki.der(pki.server_cert),
                                                    pki.der(pki.intermediate_cert)]
        assert commssl.ssl_connection_verify(ref) == commssl.ssl_connection_verify(stream)
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"


# -- release, ownership and the outstanding count ----------------------------------------


def test_release_one_and_vector_with_kept_slots(pki: PKI, server_ctx: Callable[..., Any],
                                                client_ctx: Callable[..., Any],
                                                commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx())
    with connect(server.port, client_ctx()) as stream:
        start = commssl.outstanding_certificates()
        certs: List[Optional[X509Pointer]] = list(commssl.ssl_connection_copy_peer_certificates(stream))
        more = commssl.ssl_connection_copy_peer_certificates(stream)
        assert commssl.outstanding_certificates() == start + 4
        commssl.release_certificate(more[1])
        assert more[1].released and not more[1].owned
        assert commssl.outstanding_certificates() == start + 3
        kept = certs[0]
        certs[0] = None  # LispWorks idiom: clear the slot to keep that certificate
        commssl.release_certificates_vector(certs)
        assert certs[1] is not None and certs[1].released
        assert kept is not None and not kept.released
        assert commssl.outstanding_certificates() == start + 2
        # the kept one (and the other copy of the leaf) still read correctly
        assert der(kept) == der(more[0]) == pki.der(pki.server_cert)
        assert commssl.get_certificate_common_name(kept) == "localhost"
        commssl.release_certificate(kept)
        commssl.release_certificate(more[0])
        assert commssl.outstanding_certificates() == start
        commssl.release_certificates_vector([])
        commssl.release_certificates_vector((None, None))
        assert commssl.outstanding_certificates() == start


def test_double_release_frees_nothing(leaf: X509Pointer) -> None:
    extra = commssl.copy_certificate(leaf)
    commssl.release_certificate(extra)
    count = commssl.outstanding_certificates()
    with pytest.raises(CertificateReleasedError, match="already released"):
        commssl.release_certificate(extra)
    with pytest.raises(CertificateReleasedError):
        commssl.release_certificates_vector([extra])
    assert commssl.outstanding_certificates() == count
    # the certificate's own reference (held by ``leaf``) was not dropped a second time
    assert commssl.get_certificate_common_name(leaf) == "localhost"
    assert CRYPTO.X509_get_version(leaf.address) == 2


def test_vector_with_a_bad_element_releases_nothing(leaf: X509Pointer) -> None:
    other = commssl.copy_certificate(leaf)
    gone = commssl.copy_certificate(leaf)
    commssl.release_certificate(gone)
    count = commssl.outstanding_certificates()
    with pytest.raises(TypeError, match=r"vec\[1\]"):
        commssl.release_certificates_vector([other, "junk"])
    with pytest.raises(CertificateReleasedError, match=r"vec\[2\]"):
        commssl.release_certificates_vector([other, None, gone])
    borrowed = commssl.X509Pointer(leaf.cdata)
    with pytest.raises(CertificateReleasedError, match=r"vec\[1\].*borrowed"):
        commssl.release_certificates_vector([other, borrowed])
    with pytest.raises(CertificateReleasedError, match=r"vec\[1\].*twice"):
        commssl.release_certificates_vector([other, other])
    assert commssl.outstanding_certificates() == count and other.owned
    commssl.release_certificate(other)


def test_borrowed_pointers(pki: PKI, server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                           commssl_server: Callable[..., Any]) -> None:
    """A verify callback's current cert is borrowed: readable, copyable, never
    releasable, and expired once the callback returns."""
    seen: List[Any] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        cert = commssl.x509_store_ctx_get_current_cert(store)
        assert cert is not None and not cert.owned and not cert.released
        count = commssl.outstanding_certificates()
        with pytest.raises(CertificateReleasedError, match="borrowed"):
            commssl.release_certificate(cert)
        with pytest.raises(CertificateReleasedError, match="borrowed"):
            commssl.release_certificates_vector([cert])
        assert commssl.outstanding_certificates() == count
        seen.append((cert, commssl.copy_certificate(cert), commssl.get_certificate_common_name(cert)))
        return ok

    server = commssl_server(server_ctx())
    ctx = client_ctx()
    commssl.set_verification_mode(ctx, "client", "always", callback)
    with connect(server.port, ctx) as stream:
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"
    assert [s[2] for s in seen] == [pki.root_cn, pki.intermediate_cn, "localhost"]
    for borrowed, kept, _ in seen:
        assert borrowed.released and not borrowed.owned  # the loan ended
        with pytest.raises(CertificateReleasedError):
            commssl.get_certificate_data(borrowed)
        with pytest.raises(CertificateReleasedError):
            commssl.release_certificate(borrowed)
        assert kept.owned and CRYPTO.X509_get_version(kept.address) == 2
    assert [der(s[1]) for s in seen] == [pki.der(pki.root_cert), pki.der(pki.intermediate_cert),
                                         pki.der(pki.server_cert)]
    released_all([s[1] for s in seen])


def test_wrapping_a_raw_pointer_borrows_it(leaf: X509Pointer) -> None:
    borrowed = X509Pointer(leaf.cdata)
    assert borrowed.address == leaf.address and not borrowed.owned
    assert commssl.get_certificate_common_name(borrowed) == "localhost"
    count = commssl.outstanding_certificates()
    with pytest.raises(CertificateReleasedError):
        commssl.release_certificate(borrowed)
    assert commssl.outstanding_certificates() == count and not borrowed.released
    with pytest.raises(TypeError, match="cdata"):
        X509Pointer(42)
    with pytest.raises(TypeError, match="cdata"):
        X509Pointer(commssl.ffi.NULL)
    with pytest.raises(ValueError, match="NULL"):
        X509Pointer(commssl.ffi.cast("X509 *", 0))


@pytest.mark.parametrize("use", [
    commssl.get_certificate_data, commssl.get_certificate_common_name,
    commssl.get_certificate_serial_number, commssl.copy_certificate, commssl.release_certificate,
    lambda c: commssl.release_certificates_vector([c]),
], ids=["data", "common_name", "serial_number", "copy", "release", "release_vector"])
def test_use_after_release(use: Callable[[X509Pointer], Any], leaf: X509Pointer) -> None:
    commssl.release_certificate(leaf)
    count = commssl.outstanding_certificates()
    with pytest.raises(CertificateReleasedError, match="released"):
        use(leaf)
    assert commssl.outstanding_certificates() == count
    assert isinstance(CertificateReleasedError("x"), ValueError)


def test_garbage_collected_pointer_warns_and_is_freed(pki: PKI, server_ctx: Callable[..., Any],
                                                      client_ctx: Callable[..., Any],
                                                      commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx())
    with connect(server.port, client_ctx()) as stream:
        # a list of the vector's elements: each pointer is then collected on its own
        certs = list(commssl.ssl_connection_copy_peer_certificates(stream))
    count = commssl.outstanding_certificates()
    with pytest.warns(ResourceWarning, match="unreleased"):
        del certs[1]
        gc.collect()
    assert commssl.outstanding_certificates() == count - 1
    assert der(certs[0]) == pki.der(pki.server_cert)  # the other copy is untouched
    # released and borrowed pointers are dropped silently
    last = certs.pop()
    borrowed = X509Pointer(last.cdata)
    commssl.release_certificate(last)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del last, borrowed
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert commssl.outstanding_certificates() == count - 2


def test_outstanding_counts_copies(leaf: X509Pointer, pki: PKI) -> None:
    start = commssl.outstanding_certificates()
    copies = [commssl.copy_certificate(leaf) for _ in range(5)]
    read = commssl.pem_read("X509", pki.root_cert)
    assert commssl.outstanding_certificates() == start + 6
    released_all([*copies, read])
    assert commssl.outstanding_certificates() == start


def test_peer_certificates_context_manager(pki: PKI, server_ctx: Callable[..., Any],
                                           client_ctx: Callable[..., Any],
                                           commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx())
    with connect(server.port, client_ctx()) as stream:
        start = commssl.outstanding_certificates()
        with commssl.peer_certificates(stream) as certs:
            assert commssl.outstanding_certificates() == start + 2
            first, second = certs
            kept = certs[1]
            certs[1] = None
        assert first is not None and first.released
        assert kept is not None and kept.owned and der(kept) == pki.der(pki.intermediate_cert)
        assert commssl.outstanding_certificates() == start + 1
        commssl.release_certificate(kept)
        # released on the way out of an exception too, and a slot released by hand is skipped
        with pytest.raises(ZeroDivisionError):
            with commssl.peer_certificates(stream) as certs:
                commssl.release_certificate(certs[0])  # type: ignore[arg-type]
                1 / 0  # noqa: B018 (raises)
        assert all(c is not None and c.released for c in certs)
        assert commssl.outstanding_certificates() == start
        stream.write(b"x\n")
        assert stream.readline() == b"x\n"


def test_copy_certificate(leaf: X509Pointer, pki: PKI) -> None:
    copy = commssl.copy_certificate(leaf)
    assert copy is not leaf and copy.address == leaf.address and copy.owned
    commssl.release_certificate(leaf)
    assert der(copy) == pki.der(pki.server_cert)
    assert commssl.get_certificate_common_name(copy) == "localhost"
    again = commssl.copy_certificate(copy)
    commssl.release_certificate(copy)
    assert commssl.get_certificate_serial_number(again) == PKI.server_serial
    commssl.release_certificate(again)


# -- reading certificates ------------------------------------------------------------------


def _openssl_date(text: str, key: str) -> datetime.datetime:
    line = next(x for x in text.splitlines() if x.startswith(key + "="))
    return datetime.datetime.strptime(" ".join(line.split("=", 1)[1].split()),
                                      "%b %d %H:%M:%S %Y %Z").replace(tzinfo=datetime.timezone.utc)


def test_certificate_data_of_server_leaf(pki: PKI, server_ctx: Callable[..., Any],
                                         client_ctx: Callable[..., Any],
                                         commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx())
    with connect(server.port, client_ctx()) as stream:
        everything = commssl.ssl_connection_get_peer_certificates_data(stream)
        with commssl.peer_certificates(stream) as certs:
            assert everything == [commssl.get_certificate_data(c) for c in certs if c]
    data = everything[0]
    assert [k for k, _ in data] == [
        "subject-common-name", "serial-number", "subject", "issuer", "issuer-common-name",
        "not-before", "not-after", "subject-alt-names", "sha256-fingerprint", "spki-sha256"]  # no "emails"
    d = dict(data)
    assert d["subject-common-name"] == "localhost"
    assert d["serial-number"] == pki.server_serial
    assert d["serial-number"].bit_length() > 128  # 17 bytes: more than any C integer
    assert d["subject"] == "CN=localhost" and d["issuer"] == f"CN={pki.intermediate_cn}"
    assert d["issuer-common-name"] == pki.intermediate_cn
    dates = openssl_x509(pki.server_cert, "-dates")
    for key, name in (("not-before", "notBefore"), ("not-after", "notAfter")):
        assert d[key].tzinfo is datetime.timezone.utc
        assert d[key] == _openssl_date(dates, name)
    assert d["subject-alt-names"] == [("DNS", "localhost"), ("IP Address", "127.0.0.1")]
    assert d["sha256-fingerprint"] == fingerprint(pki.der(pki.server_cert))
    cli = openssl_x509(pki.server_cert, "-fingerprint", "-sha256").strip()
    assert cli.split("=", 1)[1] == d["sha256-fingerprint"]
    inter = dict(everything[1])
    assert inter["subject-common-name"] == pki.intermediate_cn
    assert inter["issuer-common-name"] == pki.root_cn and inter["subject-alt-names"] == []


def test_certificate_data_of_client_leaf_has_emails(pki: PKI) -> None:
    cert = commssl.pem_read("X509", pki.client_chain)  # the first certificate: the leaf
    assert cert is not None
    try:
        data = commssl.get_certificate_data(cert)
        keys = [k for k, _ in data]
        assert keys[:3] == ["subject-common-name", "serial-number", "emails"]
        d = dict(data)
        # the subject's emailAddress first, then the subjectAltName rfc822Name
        assert d["emails"] == [pki.client_email, pki.client_alt_email]
        assert d["serial-number"] == pki.client_serial == commssl.get_certificate_serial_number(cert)
        assert d["subject"] == f"emailAddress={pki.client_email},CN={pki.client_cn}"
        assert d["subject-alt-names"] == [("email", pki.client_alt_email)]
    finally:
        commssl.release_certificate(cert)


def test_common_name_absent(pki: PKI) -> None:
    cert = commssl.pem_read("X509", pki.nocn_cert)
    assert cert is not None
    try:
        assert commssl.get_certificate_common_name(cert) is None
        d = dict(commssl.get_certificate_data(cert))
        assert d["subject-common-name"] is None and d["subject"] == "O=NoCN"
        assert d["issuer-common-name"] == pki.intermediate_cn
    finally:
        commssl.release_certificate(cert)


@pytest.mark.parametrize("serial", ["0", "1", "-5", "0xff", "0x7f" + "ab" * 19,
                                    "0x80" + "cd" * 19, "0x0123456789abcdef"])
def test_serial_numbers(serial: str, pki: PKI, tmp_path: Path) -> None:
    path = tmp_path / "serial.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-new", "-key", str(pki.selfsigned_key),
                    "-subj", "/CN=serial", "-days", "1", "-set_serial", serial, "-out", str(path)],
                   check=True, capture_output=True, timeout=10)
    # what OpenSSL parsed, e.g. "serial=-05" or "serial=80CDCD..."
    text = openssl_x509(path, "-serial").strip().split("=", 1)[1]
    parsed = -int(text[1:], 16) if text.startswith("-") else int(text, 16)
    assert parsed == int(serial, 0)  # the CLI kept the sign and all 20 bytes
    cert = commssl.pem_read("X509", path)
    assert cert is not None
    try:
        assert commssl.get_certificate_serial_number(cert) == parsed
        assert dict(commssl.get_certificate_data(cert))["serial-number"] == parsed
    finally:
        commssl.release_certificate(cert)


# -- checking a connection ----------------------------------------------------------------


def test_verify_results(pki: PKI, server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
                        commssl_server: Callable[..., Any]) -> None:
    good = commssl_server(server_ctx())
    with connect(good.port, client_ctx()) as stream:
        assert commssl.ssl_connection_verify(stream) == (True, lib.X509_V_OK)
        stream.write(b"x\n")
        stream.readline()
    # an untrusted chain with "never": the handshake goes on, the result is recorded
    untrusted = commssl_server(server_ctx(chain=pki.other_chain, key=pki.other_key))
    ctx = client_ctx()
    commssl.set_verification_mode(ctx, "client", "never")
    with connect(untrusted.port, ctx) as stream:
        assert commssl.ssl_connection_verify(stream) == (False, lib.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN)
        data = commssl.ssl_connection_get_peer_certificates_data(stream)
        assert [dict(d)["subject-common-name"] for d in data] == ["localhost", pki.other_root_cn]
        stream.write(b"x\n")
        stream.readline()
    good.join()
    untrusted.join()
    assert good.errors == untrusted.errors == []


@pytest.mark.parametrize("peer", ["commssl", "openssl"])
def test_protocol_version(peer: str, pki: PKI, server_ctx: Callable[..., Any],
                          client_ctx: Callable[..., Any],
                          commssl_server: Callable[..., Any]) -> None:
    if peer == "openssl":
        with openssl_server(pki.server_chain, pki.server_key) as s13, \
                openssl_server(pki.server_chain, pki.server_key, extra_args=["-tls1_2"]) as s12:
            with connect(s13.port, client_ctx()) as a, connect(s12.port, client_ctx()) as b:
                assert commssl.ssl_connection_protocol_version(a) == "tls-v1-3"
                assert commssl.ssl_connection_protocol_version(b) == "tls-v1-2"
                # the 1.2 connection carries the same chain and verification result
                assert commssl.ssl_connection_verify(b) == (True, 0)
                assert len(commssl.ssl_connection_get_peer_certificates_data(b)) == 2
        return
    capped = server_ctx()
    lib.SSL_CTX_set_max_proto_version(capped.cdata, lib.TLS1_2_VERSION)
    report = lambda s: commssl.ssl_connection_protocol_version(s)  # noqa: E731
    s13, s12 = commssl_server(server_ctx(), report), commssl_server(capped, report)
    with connect(s13.port, client_ctx()) as a, connect(s12.port, client_ctx()) as b:
        assert commssl.ssl_connection_protocol_version(a) == "tls-v1-3"
        assert commssl.ssl_connection_protocol_version(b) == "tls-v1-2"
    s13.join()
    s12.join()
    assert (s13.results, s12.results) == (["tls-v1-3"], ["tls-v1-2"])


# -- pem_read ---------------------------------------------------------------------------


def test_pem_read(pki: PKI, tmp_path: Path) -> None:
    cert = commssl.pem_read("X509", pki.root_cert)
    assert cert is not None and cert.owned
    assert der(cert) == pki.der(pki.root_cert)
    commssl.release_certificate(cert)
    by_str = commssl.pem_read("X509", str(pki.intermediate_cert))
    assert by_str is not None and der(by_str) == pki.der(pki.intermediate_cert)
    commssl.release_certificate(by_str)

    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"this is not PEM\n" * 10)
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    key_only = pki.server_key
    missing = tmp_path / "missing.pem"
    count = commssl.outstanding_certificates()
    with pytest.raises(SSLFailure, match="missing.pem") as info:
        commssl.pem_read("X509", missing)
    assert "No such file" in str(info.value) or "system lib" in str(info.value)
    for bad in (garbage, empty, key_only):
        with pytest.raises(SSLFailure, match="no start line"):
            commssl.pem_read("X509", bad)
        assert commssl.pem_read("X509", bad, errorp=False) is None
    assert commssl.pem_read("X509", missing, errorp=False) is None
    assert lib.ERR_peek_last_error() == 0  # the error queue was drained either way
    assert commssl.outstanding_certificates() == count
    with pytest.raises(ValueError, match="'X509'"):
        commssl.pem_read("X509_CRL", pki.root_cert)
    with pytest.raises(TypeError, match="thing"):
        commssl.pem_read(b"X509", pki.root_cert)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="filename"):
        commssl.pem_read("X509", 42)  # type: ignore[arg-type]


# -- wrong types ----------------------------------------------------------------------------


@pytest.mark.parametrize("call, argument", [
    (lambda: commssl.release_certificate(None), "cert"),  # type: ignore[arg-type]
    (lambda: commssl.release_certificate("cert"), "cert"),  # type: ignore[arg-type]
    (lambda: commssl.release_certificates_vector("abc"), "vec"),  # type: ignore[arg-type]
    (lambda: commssl.release_certificates_vector(None), "vec"),  # type: ignore[arg-type]
    (lambda: commssl.release_certificates_vector([1]), r"vec\[0\]"),  # type: ignore[list-item]
    (lambda: commssl.get_certificate_data(b"der"), "cert"),  # type: ignore[arg-type]
    (lambda: commssl.get_certificate_common_name(None), "cert"),  # type: ignore[arg-type]
    (lambda: commssl.get_certificate_serial_number(7), "cert"),  # type: ignore[arg-type]
    (lambda: commssl.copy_certificate(object()), "cert"),  # type: ignore[arg-type]
    (lambda: commssl.ssl_connection_copy_peer_certificates(None), "conn"),
    (lambda: commssl.ssl_connection_get_peer_certificates_data("stream"), "conn"),
    (lambda: commssl.ssl_connection_verify(3), "conn"),
    (lambda: commssl.ssl_connection_protocol_version(object()), "conn"),
    (lambda: commssl.ssl_connection_ssl_ref([]), "conn"),
    (lambda: commssl.peer_certificates(1.5).__enter__(), "conn"),
    (lambda: commssl.pem_read(None, "x.pem"), "thing"),  # type: ignore[arg-type]
    (lambda: commssl.pem_read("X509", None), "filename"),  # type: ignore[arg-type]
], ids=lambda v: v if isinstance(v, str) else "")
def test_wrong_types(call: Callable[[], Any], argument: str) -> None:
    with pytest.raises(TypeError, match=argument):
        call()


def test_connection_functions_on_a_plain_stream(commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(None)  # plain TCP
    with commssl.open_tcp_stream("127.0.0.1", server.port, timeout=5) as stream:
        for fn in (commssl.ssl_connection_copy_peer_certificates, commssl.ssl_connection_verify,
                   commssl.ssl_connection_protocol_version, commssl.ssl_connection_ssl_ref,
                   commssl.ssl_connection_get_peer_certificates_data):
            with pytest.raises(ValueError, match="no SSL"):
                fn(stream)
        stream.write(b"plain\n")
        assert stream.readline() == b"plain\n"


def _self_signed_data(tmp_path: Path, key: Any, name: Any, serial: int,
                      sans: List[Any]) -> Tuple[Any, Dict[str, Any]]:
    """A self-signed certificate (cryptography's builder) valid for 2026-01-01 only, with
    ``sans`` as its subjectAltName, and commssl's data of it read back from PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    now = datetime.datetime(2026, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), False).sign(key, hashes.SHA256()))
    path = tmp_path / "self-signed.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pointer = commssl.pem_read("X509", path)
    try:
        return cert, dict(commssl.get_certificate_data(pointer))
    finally:
        commssl.release_certificate(pointer)


def test_emails_skip_an_address_with_a_nul_and_keep_the_certificates_order(tmp_path: Path) -> None:
    """As X509_get1_email: an rfc822Name with a NUL inside is left out (not cut short at the
    NUL, which would show "evil"); duplicates once; the subject's first, then the SAN's."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "emails.test"),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, "z@x.test")])
    sans = ["b@x.test", "evil\x00@good.test", "a@x.test", "z@x.test", "b@x.test"]
    data = _self_signed_data(tmp_path, key, name, 7, [x509.RFC822Name(s) for s in sans])[1]
    assert data["emails"] == ["z@x.test", "b@x.test", "a@x.test"]
    # the subjectAltName list itself is what the certificate holds, NUL included
    assert ("email", "evil\x00@good.test") in data["subject-alt-names"]


def test_data_of_a_certificate_larger_than_the_first_buffer(tmp_path: Path) -> None:
    """300 subjectAltName entries (far past the first 2 KiB buffer), no common name: every
    entry in the certificate's order, addresses as ``ipaddress`` prints them, and both hashes
    as cryptography computes them."""
    import base64
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "no common name")])
    ips = [ipaddress.ip_address(a) for a in ("10.0.0.1", "::1", "2001:db8::8:800:200c:417a",
                                            "::ffff:1.2.3.4")]
    entries: List[x509.GeneralName] = [x509.DNSName(f"host{i}.example.test") for i in range(300)]
    entries += [x509.IPAddress(ip) for ip in ips]
    entries.append(x509.UniformResourceIdentifier("https://example.test/x"))
    cert, data = _self_signed_data(tmp_path, key, name, 2**158 + 5, entries)
    assert data["subject-common-name"] is None and data["issuer-common-name"] is None
    assert data["serial-number"] == 2**158 + 5
    assert data["subject-alt-names"] == ([("DNS", f"host{i}.example.test") for i in range(300)]
                                         + [("IP Address", str(ip)) for ip in ips]
                                         + [("URI", "https://example.test/x")])
    assert data["not-after"] == datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)
    assert data["sha256-fingerprint"] == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    assert data["spki-sha256"] == base64.b64encode(digest.finalize()).decode("ascii")
