"""Reading a certificate: ``get_certificate_data`` (LispWorks' keyword pairs and
OpenSSL's extras, decoded from the tagged records ``commssl_cert_info`` writes),
the serial number and the common name. Each pins the certificate for its C call.
"""

from __future__ import annotations

import binascii
import datetime
import ipaddress
import socket
import struct
import threading
from typing import Any, Dict, List, Optional, Tuple

from commssl._core.binding import drain, ffi, lib, raise_last
from commssl._core.pointers import X509Pointer, pin_certificate

CertificateData = List[Tuple[str, Any]]

_per_thread = threading.local()

_serial20 = lib.commssl_serial20
_serial_into = lib.commssl_serial_into
_from_bytes = int.from_bytes
_spare: Dict[str, Any] = {}  # one serial buffer, taken out (atomically) while a call uses it


def get_certificate_serial_number(cert: X509Pointer) -> int:
    """The serial number, of any size (negative ones as OpenSSL parsed them)."""
    # The spare 20-byte buffer, taken out until read (the C call runs without the GIL):
    # another thread, or a finalizer, that reads a serial meanwhile makes its own.
    mine = _spare.pop("serial", None)
    if mine is None:
        data = bytearray(20)
        mine = (data, ffi.from_buffer("unsigned char[]", data))
    cdata = pin_certificate(cert)
    try:
        r = _serial20(cdata, mine[1])  # the sign, or minus the size of a longer serial
        if r >= 0:
            value = _from_bytes(mine[0], "big")
        else:  # longer than RFC 5280 allows (a peer may send it): into a buffer of its size
            data = bytearray(-r)
            r = _serial_into(cdata, ffi.from_buffer("unsigned char[]", data), -r)
            value = _from_bytes(data[: r >> 1], "big")
            r &= 1
    finally:
        cert._unpin()
        _spare["serial"] = mine
    return -value if r else value


def get_certificate_common_name(cert: X509Pointer) -> Optional[str]:
    """The subject's common name, or ``None`` when it has none."""
    out = ffi.new("unsigned char **")
    cdata = pin_certificate(cert)
    try:
        n = lib.commssl_common_name(cdata, out)
    finally:
        cert._unpin()
    if n < 0:
        return None
    try:
        return ffi.unpack(ffi.cast("char *", out[0]), n).decode("utf-8", "replace")
    finally:
        lib.OPENSSL_free(out[0])


_UTC = datetime.timezone.utc
_datetime = datetime.datetime
_INFO_GUESS = 2048  # bytes most certificates' data fit in
# commssl_cert_info's header (chains.c): offsets and lengths into the same bytes
_header = struct.Struct(f"={lib.COMMSSL_INFO_SLOTS}i").unpack_from
_entry_length = struct.Struct("=i").unpack_from
_b64 = binascii.b2a_base64
_inet_ntop, _AF_INET = socket.inet_ntop, socket.AF_INET
_SAN_TYPES = {68: "DNS", 73: "IP Address", 77: "email", 85: "URI"}  # D I M U


def _utc(b: bytes, at: int) -> Optional[datetime.datetime]:
    # year (2 bytes, big-endian), month, day, hour, minute, second: commssl_cert_info's
    if at < 0:
        return None
    try:
        return _datetime(b[at] << 8 | b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5], b[at + 6],
                         0, _UTC)
    except ValueError:  # year 0000: valid ASN.1 (a peer may send it), no datetime
        return None


def _info(cert: X509Pointer) -> bytes:
    """What ``commssl_cert_info`` writes (see chains.c)."""
    # This thread's buffer (the C call runs without the GIL), taken out until its
    # bytes are copied: a finalizer that reads a certificate meanwhile gets its own.
    mine = _per_thread.__dict__.pop("info", None)
    if mine is None:
        mine = ffi.new("unsigned char[]", _INFO_GUESS)
    buf = mine
    try:
        cdata = pin_certificate(cert)
        try:
            n = lib.commssl_cert_info(cdata, buf, _INFO_GUESS)
            if n > _INFO_GUESS:
                buf = ffi.new("unsigned char[]", n)
                n = lib.commssl_cert_info(cdata, buf, n)
        finally:
            cert._unpin()
        if n < 0:
            raise_last("get_certificate_data")
        if lib.ERR_peek_error():
            # An undecodable optional extension (a malformed subjectAltName, say) is
            # left out, not a failure; its errors must not linger in the queue.
            drain()
        return ffi.buffer(buf, n)[:]
    finally:
        _per_thread.info = mine


def get_certificate_data(cert: X509Pointer) -> CertificateData:
    """``(keyword, value)`` pairs, as LispWorks' ``(keyword value)`` lists.

    Always ``"subject-common-name"`` (str or None) and ``"serial-number"`` (int);
    ``"emails"`` (list of str) only when the certificate has addresses; then the
    OpenSSL extras ``"subject"``, ``"issuer"`` (RFC 2253 strings),
    ``"issuer-common-name"``, ``"not-before"``, ``"not-after"`` (aware UTC
    datetimes; None for year 0000, which no datetime holds),
    ``"subject-alt-names"`` (list of ``(type, value)`` with types ``"DNS"``,
    ``"IP Address"``, ``"email"``, ``"URI"``) and
    ``"sha256-fingerprint"`` (colon-separated upper-case hex) and
    ``"spki-sha256"`` (base64 of the SHA-256 of the DER SubjectPublicKeyInfo:
    the pin curl's ``--pinnedpubkey sha256//...`` takes, without the prefix).
    """
    b = _info(cert)
    (cn, cn_len, serial, serial_len, negative, subject, subject_len, issuer, issuer_len,
     issuer_cn, issuer_cn_len, not_before, not_after, fingerprint, fingerprint_len, spki,
     spki_len, at, entries) = _header(b)
    value = _from_bytes(b[serial : serial + serial_len], "big")
    emails: List[str] = []
    sans: List[Tuple[str, str]] = []
    while entries:  # the e-mail addresses, then the subjectAltName entries
        entries -= 1
        tag = b[at]
        n = _entry_length(b, at + 1)[0]
        at += 5 + n
        text = b[at - n : at]
        if tag == 69:  # E: as X509_get1_email, each address once
            email = text.decode("utf-8", "replace")
            if email not in emails:
                emails.append(email)
        elif tag == 73:  # I
            sans.append(("IP Address", _ip(text)))
        else:
            sans.append((_SAN_TYPES[tag], text.decode("utf-8", "replace")))
    out: CertificateData = [
        ("subject-common-name", b[cn : cn + cn_len].decode("utf-8", "replace") if cn_len >= 0 else None),
        ("serial-number", -value if negative else value)]
    if emails:
        out.append(("emails", emails))
    out += [("subject", b[subject : subject + subject_len].decode("utf-8", "replace")),
            ("issuer", b[issuer : issuer + issuer_len].decode("utf-8", "replace")),
            ("issuer-common-name", b[issuer_cn : issuer_cn + issuer_cn_len].decode("utf-8", "replace")
             if issuer_cn_len >= 0 else None),
            ("not-before", _utc(b, not_before)), ("not-after", _utc(b, not_after)),
            ("subject-alt-names", sans),
            ("sha256-fingerprint", b[fingerprint : fingerprint + fingerprint_len].hex(":").upper()),
            ("spki-sha256", _b64(b[spki : spki + spki_len], newline=False).decode("ascii"))]
    return out


def _ip(raw: bytes) -> str:
    if len(raw) == 4:
        return _inet_ntop(_AF_INET, raw)  # what ipaddress prints, at a tenth of its cost
    if len(raw) == 16:
        return str(ipaddress.ip_address(raw))
    return raw.hex()
