"""Seed corpora for the fuzz targets, generated at run time (nothing is checked in).

``python fuzz/seeds.py certificate DIR`` writes DER and PEM certificates with the
awkward corners of certificate data: serials 0, negative, 20 bytes and beyond,
non-minimal; no CN, several CNs, non-ASCII, BMPString and embedded-NUL names;
hundreds of SANs of every type, e-mail addresses in the subject and the SANs,
extreme validity dates. ``python fuzz/seeds.py tls_server DIR`` writes the bytes
real clients (CPython ``ssl``, TLS 1.2 and 1.3, with and without client
certificates, some of them from the odd set above) send to a commssl server:
whole client flights, so a mutated input reaches the server's certificate
parsing and verify callback.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_KEY = ec.derive_private_key(0x5EED, ec.SECP256R1())  # fixed: seeds carry no secret
_NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


# -- DER surgery: what cryptography refuses to build -------------------------------------


def _tlv(buf: bytes, i: int) -> Tuple[int, int, int]:
    """(tag, header length, content length) of the element at ``buf[i]``."""
    tag, first = buf[i], buf[i + 1]
    if first < 0x80:
        return tag, 2, first
    n = first & 0x7F
    return tag, 2 + n, int.from_bytes(buf[i + 2 : i + 2 + n], "big")


def _enc(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def with_serial(der: bytes, content: bytes) -> bytes:
    """``der`` with the TBSCertificate's serial INTEGER content replaced (signature not redone)."""
    _, h, n = _tlv(der, 0)
    body = der[h : h + n]
    _, h2, n2 = _tlv(body, 0)
    tbs, rest = body[h2 : h2 + n2], body[h2 + n2 :]
    _, h3, n3 = _tlv(tbs, 0)  # [0] version
    version, after = tbs[: h3 + n3], tbs[h3 + n3 :]
    _, h4, n4 = _tlv(after, 0)  # serialNumber
    return _enc(0x30, _enc(0x30, version + _enc(0x02, content) + after[h4 + n4 :]) + rest)


def twos(value: int) -> bytes:
    """Minimal two's complement big-endian bytes of ``value``."""
    size = max(1, (value.bit_length() + 8) // 8)
    return value.to_bytes(size, "big", signed=True)


# -- certificates ------------------------------------------------------------------------


def _name(*attrs: Tuple[x509.ObjectIdentifier, str], bmp: bool = False) -> x509.Name:
    kind = {"_type": x509.name._ASN1Type.BMPString} if bmp else {}
    return x509.Name([x509.NameAttribute(oid, value, **kind) if oid == NameOID.COMMON_NAME  # type: ignore[arg-type]
                      else x509.NameAttribute(oid, value) for oid, value in attrs])


def certificate(subject: x509.Name, *, serial: int = 1, sans: Optional[List[x509.GeneralName]] = None,
                not_before: datetime.datetime = _NOW, not_after: Optional[datetime.datetime] = None,
                issuer: Optional[x509.Name] = None,
                extensions: Iterable[x509.ExtensionType] = ()) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
               .public_key(_KEY.public_key()).serial_number(serial)
               .not_valid_before(not_before)
               .not_valid_after(not_after or not_before + datetime.timedelta(days=365)))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(_KEY, hashes.SHA256())


def _utc(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=datetime.timezone.utc)


def odd_certificates() -> Dict[str, x509.Certificate]:
    """The certificates the seeds are made of, by name."""
    cn = NameOID.COMMON_NAME
    many = ([x509.DNSName(f"host{i}.example.test") for i in range(200)]
            + [x509.IPAddress(ipaddress.ip_address(f"10.0.{i // 250}.{i % 250}")) for i in range(50)]
            + [x509.IPAddress(ipaddress.ip_address(f"2001:db8::{i:x}")) for i in range(20)]
            + [x509.RFC822Name(f"user{i}@example.test") for i in range(20)]
            + [x509.UniformResourceIdentifier(f"https://example.test/{i}") for i in range(20)]
            + [x509.DirectoryName(_name((cn, "dir name"))),
               x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4"))])
    return {
        "plain": certificate(_name((cn, "plain.example.test")), serial=0x1234),
        "serial_20_bytes": certificate(_name((cn, "serial20")), serial=(1 << 159) - 1),
        "no_cn": certificate(_name((NameOID.ORGANIZATION_NAME, "No CN Inc"))),
        "empty_subject": certificate(x509.Name([]), sans=[x509.DNSName("empty.example.test")]),
        "two_cns": certificate(_name((cn, "first"), (cn, "second"))),
        "non_ascii_cn": certificate(_name((cn, "Zertifikat für Ünïcødé 証明書 🔐"))),
        "bmp_cn": certificate(_name((cn, "BMP Ünïcødé 証明書"), bmp=True)),
        "nul_cn": certificate(_name((cn, "evil.example\x00.good.test"))),
        "long_cn": certificate(x509.Name([x509.NameAttribute(cn, "x" * 64)])),
        "email_subject": certificate(_name((cn, "mail"), (NameOID.EMAIL_ADDRESS, "subject@example.test")),
                                     sans=[x509.RFC822Name("san@example.test"),
                                           x509.RFC822Name._init_without_validation("ünï@example.test")]),
        "many_sans": certificate(_name((cn, "many")), sans=many),
        "old_dates": certificate(_name((cn, "old")), not_before=_utc(1950, 1, 1), not_after=_utc(1951, 1, 1)),
        "far_dates": certificate(_name((cn, "far")), not_before=_utc(2049, 12, 31, 23, 59, 59),
                                 not_after=_utc(9999, 12, 31, 23, 59, 59)),
        "issuer_differs": certificate(_name((cn, "leaf")), issuer=_name((cn, "someone else"))),
        "bad_san": certificate(_name((cn, "bad san")), extensions=[x509.UnrecognizedExtension(
            x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x99\x01\x00")]),
        "odd_ip_san": certificate(_name((cn, "odd ip")), extensions=[x509.UnrecognizedExtension(
            x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x05\x87\x03\x0a\x00\x01")]),
    }


def certificate_seeds() -> Dict[str, bytes]:
    """DER and PEM seeds for the certificate target, by file name."""
    certs = odd_certificates()
    out: Dict[str, bytes] = {}
    for name, cert in certs.items():
        out[f"{name}.der"] = cert.public_bytes(serialization.Encoding.DER)
    plain = out["plain.der"]
    for name, content in {
        "serial_0": b"\x00",
        "serial_minus_1": twos(-1),
        "serial_negative_64bit": twos(-(1 << 63) - 5),
        "serial_21_bytes": twos((1 << 167) - 3),
        "serial_huge_64_bytes": b"\x7f" + b"\xab" * 63,
        "serial_huge_negative_70_bytes": b"\x80" + b"\x01" * 69,
        "serial_non_minimal": b"\x00\x00\x01",
        "serial_empty": b"",
    }.items():
        out[f"{name}.der"] = with_serial(plain, content)
    # year 0000 (GeneralizedTime allows it; Python's datetime does not)
    out["year_zero.der"] = out["far_dates.der"].replace(b"99991231235959Z", b"00001231235959Z", 1)
    for name in ("plain", "many_sans", "nul_cn", "email_subject"):
        out[f"{name}.pem"] = certs[name].public_bytes(serialization.Encoding.PEM)
    out["two_certs.pem"] = out["plain.pem"] + out["nul_cn.pem"]
    out["pem_garbage_around.pem"] = b"junk\n" + out["plain.pem"] + b"\ntrailing junk"
    return out


# -- TLS client flights --------------------------------------------------------------------


def _client_flight(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bytes:
    """Everything a CPython client sends in a handshake with a CPython server, over memory BIOs."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    sent = bytearray()
    done = [False, False]
    for _ in range(20):
        for i, end in enumerate((client, server)):
            if not done[i]:
                try:
                    end.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:  # the server refusing an odd client certificate:
                    done[i] = True  # the client's flight is complete by then
        data = c_out.read()
        sent += data
        s_in.write(data)
        c_in.write(s_out.read())
        if all(done):
            break
    try:
        client.write(b"GET / HTTP/1.0\r\n\r\n")
        sent += c_out.read()
    except ssl.SSLError:
        pass
    return bytes(sent)


def tls_seeds(pki_dir: Path) -> Dict[str, bytes]:
    """Client flights against the fuzz target's PKI (see ``tls_pki``)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki_dir / "server_chain.pem", pki_dir / "server_key.pem")
    server_ctx.verify_mode = ssl.CERT_OPTIONAL
    server_ctx.load_verify_locations(pki_dir / "root.pem")
    out: Dict[str, bytes] = {}
    certs = odd_certificates()
    key_pem = _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "key.pem"
        key_file.write_bytes(key_pem)
        for version in ("1.2", "1.3"):
            for client_cert in (None, "plain", "many_sans", "nul_cn", "serial_20_bytes", "chain"):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
                ctx.minimum_version = ctx.maximum_version
                if client_cert is not None:
                    cert_file = Path(tmp) / f"{client_cert}.pem"
                    if client_cert == "chain":  # a leaf followed by every odd certificate
                        cert_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                                       for c in certs.values()))
                    else:
                        cert_file.write_bytes(certs[client_cert].public_bytes(serialization.Encoding.PEM))
                    ctx.load_cert_chain(cert_file, key_file)
                out[f"tls{version}_{client_cert or 'nocert'}.bin"] = _client_flight(server_ctx, ctx)
    return out


def tls_pki(directory: Path) -> Path:
    """A root -> intermediate -> localhost server PKI for the TLS target (EC, fixed keys)."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "server_key.pem").exists():
        return directory
    root_key = ec.derive_private_key(0xA11CE, ec.SECP256R1())
    inter_key = ec.derive_private_key(0xB0B, ec.SECP256R1())
    leaf_key = ec.derive_private_key(0xCAFE, ec.SECP256R1())
    cn = NameOID.COMMON_NAME

    def make(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
             ca: bool, serial: int) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(_name((cn, subject))).issuer_name(_name((cn, issuer)))
             .public_key(key.public_key()).serial_number(serial).not_valid_before(_NOW)
             .not_valid_after(_NOW + datetime.timedelta(days=3650))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        return b.sign(signer, hashes.SHA256())

    root = make("fuzz root", root_key, "fuzz root", root_key, True, 1)
    inter = make("fuzz intermediate", inter_key, "fuzz root", root_key, True, 2)
    leaf = make("localhost", leaf_key, "fuzz intermediate", inter_key, False, 3)
    pem = serialization.Encoding.PEM
    (directory / "root.pem").write_bytes(root.public_bytes(pem))
    (directory / "server_chain.pem").write_bytes(leaf.public_bytes(pem) + inter.public_bytes(pem))
    (directory / "server_key.pem").write_bytes(leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory


def write(seeds: Dict[str, bytes], directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (directory / name).write_bytes(data)
    return len(seeds)


def seeds_for(target: str, pki_dir: Path) -> Dict[str, bytes]:
    if target == "certificate":
        return certificate_seeds()
    if target == "tls_server":
        return tls_seeds(tls_pki(pki_dir))
    raise SystemExit(f"unknown target {target!r}; use certificate or tls_server")


def main(argv: Iterable[str]) -> None:
    target, directory = list(argv)
    pki_dir = Path(os.environ.get("COMMSSL_FUZZ_PKI", Path(directory).parent / "pki"))
    n = write(seeds_for(target, pki_dir), Path(directory))
    print(f"{n} seeds for {target} in {directory}")


if __name__ == "__main__":
    main(sys.argv[1:])
