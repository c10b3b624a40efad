"""Certificates as bytes, both ways: DER or PEM out of an ``X509Pointer``
(``dump_certificate``) and an owned ``X509Pointer`` in from such bytes
(``load_certificate``). The names are pyOpenSSL's (``OpenSSL.crypto``); the DER
form is what CPython's ``SSLSocket.getpeercert(binary_form=True)`` returns.
"""

from __future__ import annotations

import binascii
from typing import Optional

from commssl._core.binding import drain, ffi, lib, text
from commssl._core.pointers import X509Pointer, own_certificates, pin_certificate

_ENCODINGS = ("pem", "der")
_MAX = 2**31 - 1
_PEM_BEGIN = b"-----BEGIN "


def _encoding(encoding: object, allow_none: bool) -> Optional[str]:
    if encoding is None and allow_none:
        return None
    if not isinstance(encoding, str):
        accepted = "str or None" if allow_none else "str"
        raise TypeError(f"encoding must be {accepted}, not {type(encoding).__name__}")
    low = encoding.lower()
    if low not in _ENCODINGS:
        extra = " or None (detect)" if allow_none else ""
        raise ValueError(f"encoding must be 'pem' or 'der'{extra}, not {encoding!r}")
    return low


def dump_certificate(cert: X509Pointer, encoding: str = "pem") -> bytes:
    """The certificate as bytes: ``encoding="pem"`` (the default) gives one
    ``-----BEGIN CERTIFICATE-----`` block, as ``openssl x509`` writes it;
    ``"der"`` gives the DER bytes (what CPython's ``getpeercert(binary_form=True)``
    returns). ``cert`` may be owned or borrowed (inside a callback), and must be live:
    a released one raises ``CertificateReleasedError``; anything else ``TypeError``.
    """
    enc = _encoding(encoding, allow_none=False)
    cdata = pin_certificate(cert)
    try:
        # i2d_X509 returns the encoding OpenSSL keeps from parsing (or made when
        # signing): no callback, no Python; two calls, the size then the bytes
        n = lib.i2d_X509(cdata, ffi.NULL)
        if n <= 0:
            drain()
            raise ValueError(f"cert {cert!r} cannot be encoded as DER")
        buf = ffi.new("unsigned char[]", n)
        out = ffi.new("unsigned char **", buf)  # i2d_X509 advances this pointer
        m = lib.i2d_X509(cdata, out)
    finally:
        cert._unpin()
    if m != n:
        drain()
        raise ValueError(f"cert {cert!r} cannot be encoded as DER")
    der = ffi.buffer(buf, n)[:]
    if enc == "der":
        return der
    # PEM is base64 of the DER in 64-character lines between the two markers:
    # the same bytes PEM_write_bio_X509 writes, without a BIO round trip
    b64 = binascii.b2a_base64(der, newline=False)
    lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def load_certificate(data: bytes, encoding: Optional[str] = None) -> X509Pointer:
    """An owned ``X509Pointer`` (release it with ``release_certificate``) from the
    bytes of one certificate: ``encoding="pem"`` (the first ``CERTIFICATE`` block;
    text before it is skipped, as ``pem_read`` does), ``"der"`` (exactly one DER
    certificate, nothing after it), or ``None`` (the default) to tell them apart by
    the PEM marker. ``data`` is ``bytes``, ``bytearray`` or ``memoryview`` (else
    ``TypeError``); bytes that hold no such certificate raise ``ValueError``.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    enc = _encoding(encoding, allow_none=True)
    if not data:
        raise ValueError("data is empty: no certificate to load")
    if len(data) > _MAX:
        raise ValueError("data is too large for a certificate")
    if enc is None:
        enc = "pem" if _PEM_BEGIN in data else "der"
    drain()
    bio = lib.BIO_new_mem_buf(data, len(data))
    if bio == ffi.NULL:
        drain()
        raise MemoryError("load_certificate: no memory for a BIO")
    try:
        if enc == "pem":
            x = lib.PEM_read_bio_X509(bio, ffi.NULL, ffi.NULL, ffi.NULL)
        else:
            x = lib.d2i_X509_bio(bio, ffi.NULL)
            # bytes after the certificate: refused, not ignored (a DER file is one object)
            if x != ffi.NULL and lib.BIO_ctrl_pending(bio) > 0:
                lib.X509_free(x)
                drain()
                raise ValueError(f"data holds bytes after its DER certificate "
                                 f"({int(lib.BIO_ctrl_pending(bio))} of {len(data)})")
    finally:
        lib.BIO_free(bio)
    if x == ffi.NULL:
        codes = drain()
        reason = "; ".join(text(lib.ERR_reason_error_string(c)) for c in codes) or "not parsable"
        raise ValueError(f"data is not a {enc.upper()} certificate: {reason}")
    return own_certificates((x,))[0]


__all__ = ["dump_certificate", "load_certificate"]
