"""Revocation material for the test PKI (``peers.make_pki``): CRLs made by ``openssl ca
-gencrl`` (a real CA database, real revocations) and OCSP responses made with
cryptography's OCSP builder (any status, validity, signer, or certificate)."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Iterable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from peers import OPENSSL, PKI, WAIT

_CA_CNF = """\
[ca]
default_ca = this
[this]
dir = {dir}
database = $dir/index.txt
crlnumber = $dir/crlnumber
certificate = {cert}
private_key = {key}
default_md = sha256
default_crl_days = {days}
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
"""


def _run(*args: object) -> None:
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=WAIT)


def make_crl(directory: Path, ca_cert: Path, ca_key: Path, revoked: Iterable[Path] = (),
             name: str = "crl", days: int = 30, reason: str = "keyCompromise") -> Path:
    """A PEM CRL of the CA ``ca_cert``, listing ``revoked`` (certificates it issued),
    made with ``openssl ca -revoke`` then ``openssl ca -gencrl``."""
    d = directory / f"ca-{name}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "index.txt").write_text("")
    (d / "crlnumber").write_text("01\n")
    cnf = d / "ca.cnf"
    cnf.write_text(_CA_CNF.format(dir=d, cert=ca_cert, key=ca_key, days=days))
    for cert in revoked:
        _run("ca", "-config", cnf, "-revoke", cert, "-crl_reason", reason)
    out = directory / f"{name}.pem"
    _run("ca", "-config", cnf, "-gencrl", "-out", out)
    return out


def der_crl(pem: Path) -> bytes:
    return x509.load_pem_x509_crl(pem.read_bytes()).public_bytes(serialization.Encoding.DER)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _key(path: Path):  # type: ignore[no-untyped-def]
    return serialization.load_pem_private_key(path.read_bytes(), None)


def ocsp_response(pki: PKI, status: str = "good", *, cert: Optional[Path] = None,
                  issuer: Optional[Path] = None, signer: Optional[Path] = None,
                  signer_key: Optional[Path] = None, this_update: Optional[datetime.datetime] = None,
                  next_update: Optional[datetime.datetime] = None,
                  algorithm: Optional[hashes.HashAlgorithm] = None) -> bytes:
    """DER of a successful OCSP response about ``cert`` (default: the server's leaf)
    issued by ``issuer`` (default: the intermediate), signed by ``signer`` with
    ``signer_key`` (default: the issuer itself). ``status``: good, revoked, unknown."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cert_obj = _cert(cert or pki.server_cert)
    issuer_obj = _cert(issuer or pki.intermediate_cert)
    signer_obj = _cert(signer or issuer or pki.intermediate_cert)
    key = _key(signer_key or (pki.intermediate_key if signer is None and issuer is None else pki.root_key))
    cert_status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                   "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
    revoked = status == "revoked"
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert_obj, issuer=issuer_obj, algorithm=algorithm or hashes.SHA1(), cert_status=cert_status,
        this_update=this_update or now - datetime.timedelta(hours=1),
        next_update=next_update or now + datetime.timedelta(days=7),
        revocation_time=now - datetime.timedelta(days=1) if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer_obj).certificates([signer_obj])
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def unauthorized_response() -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(serialization.Encoding.DER)
