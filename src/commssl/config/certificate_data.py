"""Reading a certificate: ``get_certificate_data`` (LispWorks' keyword pairs and
OpenSSL's extras, decoded from the tagged records ``commssl_cert_info`` writes),
the serial number and the common name. Each pins the certificate for its C call.
"""

from __future__ import annotations

import binascii
import datetime
import ipaddress
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
_INFO_GUESS = 2048  # bytes of records most certificates fit in
_record_header = struct.Struct("<BI").unpack_from
_b64 = binascii.b2a_base64


def _utc(b: bytes) -> Optional[datetime.datetime]:
    # year (2 bytes, big-endian), month, day, hour, minute, second: commssl_cert_info's
    try:
        return datetime.datetime(b[0] << 8 | b[1], b[2], b[3], b[4], b[5], b[6], tzinfo=_UTC)
    except (ValueError, IndexError):  # year 0000: valid ASN.1 (a peer may send it), no datetime
        return None


def _records(cert: X509Pointer) -> bytes:
    """The tagged records ``commssl_cert_info`` writes (see chains.c)."""
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
    data = _records(cert)
    cn: Optional[str] = None
    issuer_cn: Optional[str] = None
    not_before: Optional[datetime.datetime] = None
    not_after: Optional[datetime.datetime] = None
    serial = 0
    subject = issuer = fingerprint = spki = ""
    emails: List[str] = []
    sans: List[Tuple[str, str]] = []
    header = _record_header
    i, end = 0, len(data)
    while i < end:
        tag, n = header(data, i)
        i += 5
        raw = data[i : i + n]
        i += n
        # by tag byte, in the order commssl_cert_info writes them (chains.c)
        if tag == 67:  # C
            cn = raw.decode("utf-8", "replace")
        elif tag == 83 or tag == 78:  # S, N (negative)
            serial = -int.from_bytes(raw, "big") if tag == 78 else int.from_bytes(raw, "big")
        elif tag == 69:  # E: as X509_get1_email, each address once
            email = raw.decode("utf-8", "replace")
            if email not in emails:
                emails.append(email)
        elif tag == 115:  # s
            subject = raw.decode("utf-8", "replace")
        elif tag == 105:  # i
            issuer = raw.decode("utf-8", "replace")
        elif tag == 99:  # c
            issuer_cn = raw.decode("utf-8", "replace")
        elif tag == 98:  # b
            not_before = _utc(raw)
        elif tag == 97:  # a
            not_after = _utc(raw)
        elif tag == 68:  # D
            sans.append(("DNS", raw.decode("utf-8", "replace")))
        elif tag == 73:  # I
            sans.append(("IP Address", _ip(raw)))
        elif tag == 77:  # M
            sans.append(("email", raw.decode("utf-8", "replace")))
        elif tag == 85:  # U
            sans.append(("URI", raw.decode("utf-8", "replace")))
        elif tag == 70:  # F
            fingerprint = raw.hex(":").upper()
        elif tag == 80:  # P
            spki = _b64(raw, newline=False).decode("ascii")
    out: CertificateData = [("subject-common-name", cn), ("serial-number", serial)]
    if emails:
        out.append(("emails", emails))
    out += [("subject", subject), ("issuer", issuer), ("issuer-common-name", issuer_cn),
            ("not-before", not_before), ("not-after", not_after), ("subject-alt-names", sans),
            ("sha256-fingerprint", fingerprint), ("spki-sha256", spki)]
    return out


def _ip(raw: bytes) -> str:
    if len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return raw.hex()
