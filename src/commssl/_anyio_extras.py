"""anyio's ``TLSAttribute`` extras for ``commssl.anyio.TLSStream``.

Each value is read from the connection's ``SSL`` when asked for, in the form
anyio's own ``TLSStream`` gives (the forms of CPython's ``ssl.SSLObject``).
Omitted (``extra()`` raises ``anyio.TypedAttributeLookupError``, or returns its
default): ``ssl_object`` (commssl has no ``ssl.SSLObject``: use ``.ssl`` and the
``ssl_connection_*`` functions), ``channel_binding_tls_unique`` and
``shared_ciphers`` (commssl's binding does not expose ``SSL_get_finished`` nor
the client's cipher list; anyio's documentation allows an omitted attribute).
"""

from __future__ import annotations

import os
import re
import ssl as _pyssl
import tempfile
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from anyio.streams.tls import TLSAttribute

from ._binding import ffi, lib, raise_last, text
from .connection import ssl_of
from .features import ssl_connection_alpn_protocol, ssl_connection_cipher

__all__ = ["tls_attributes"]


def tls_attributes(stream: Any) -> Dict[Any, Callable[[], Any]]:
    """The ``TLSAttribute`` extras of ``stream`` (a ``commssl.anyio.TLSStream``)."""
    return {
        TLSAttribute.alpn_protocol: lambda: ssl_connection_alpn_protocol(stream),
        TLSAttribute.cipher: lambda: cipher(stream),
        TLSAttribute.peer_certificate: lambda: peer_certificate(stream),
        TLSAttribute.peer_certificate_binary: lambda: peer_certificate_binary(stream),
        TLSAttribute.server_side: lambda: stream.ssl_side == "server",
        TLSAttribute.standard_compatible: lambda: stream.standard_compatible,
        TLSAttribute.tls_version: lambda: tls_version(stream),
    }


def tls_version(conn: Any) -> Optional[str]:
    """OpenSSL's name of the negotiated version (``"TLSv1.3"``), as ``SSLObject.version()``."""
    sslp = ssl_of(conn)
    ssl = sslp._pin()
    try:
        if not lib.SSL_is_init_finished(ssl):
            return None
        return text(lib.SSL_get_version(ssl))
    finally:
        sslp._unpin()


def peer_certificate_binary(conn: Any) -> Optional[bytes]:
    """The peer's certificate in DER, or ``None`` when it sent none."""
    sslp = ssl_of(conn)
    ssl = sslp._pin()
    try:
        x509 = lib.SSL_get0_peer_certificate(ssl)
        if x509 == ffi.NULL:
            return None
        size = lib.i2d_X509(x509, ffi.NULL)
        if size <= 0:
            raise_last("peer_certificate_binary")
        buf = ffi.new("unsigned char[]", size)
        out = ffi.new("unsigned char **", buf)  # i2d_X509 advances this pointer, not buf
        if lib.i2d_X509(x509, out) != size:
            raise_last("peer_certificate_binary")
        return ffi.buffer(buf, size)[:]
    finally:
        sslp._unpin()


def peer_certificate(conn: Any) -> Optional[Dict[str, Any]]:
    """The peer's certificate in the dictionary form of ``SSLSocket.getpeercert()``
    (decoded by CPython's ``ssl`` module), or ``None`` when it sent none. Unlike
    CPython, which gives ``{}`` for a certificate it did not verify, the
    certificate is decoded whatever the verification mode."""
    der = peer_certificate_binary(conn)
    if der is None:
        return None
    return _decode(der)


def _decode(der: bytes) -> Dict[str, Any]:
    # CPython decodes a certificate into this form only from a file
    # (ssl._ssl._test_decode_cert, what its own test suite uses).
    decode = getattr(getattr(_pyssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:  # not CPython's ssl: the form cannot be made faithfully
        raise NotImplementedError("TLSAttribute.peer_certificate needs CPython's ssl module "
                                  "(use TLSAttribute.peer_certificate_binary)")
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(_pyssl.DER_cert_to_PEM_cert(der))
        decoded: Dict[str, Any] = decode(path)
        return decoded
    finally:
        os.unlink(path)


def cipher(conn: Any) -> Optional[Tuple[str, str, int]]:
    """``(name, protocol version, secret bits)`` as ``SSLObject.cipher()``, or
    ``None`` before the handshake. The version and bits come from the table of
    CPython's ``ssl`` (``SSLContext.get_ciphers``); a suite it does not know gets
    ``"TLSv1.3"`` for TLS 1.3 names and else the connection's version, and the
    bits the name states (``AES_128`` -> 128, ``CHACHA20`` -> 256)."""
    name = ssl_connection_cipher(conn)
    if not name:
        return None
    known = _cipher_table().get(name)
    if known is not None:
        return name, known[0], known[1]
    version = "TLSv1.3" if name.startswith("TLS_") else (tls_version(conn) or "")
    return name, version, _bits_from_name(name)


_table: Optional[Dict[str, Tuple[str, int]]] = None
_table_lock = threading.Lock()


def _cipher_table() -> Dict[str, Tuple[str, int]]:
    global _table
    with _table_lock:
        if _table is None:
            table: Dict[str, Tuple[str, int]] = {}
            try:
                ctx = _pyssl.SSLContext(_pyssl.PROTOCOL_TLS_CLIENT)
                ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
                for entry in ctx.get_ciphers():
                    table[str(entry["name"])] = (str(entry["protocol"]), int(entry["strength_bits"]))
            except (_pyssl.SSLError, KeyError, ValueError):  # an ssl without the table: names alone
                pass
            _table = table
        return _table


def _bits_from_name(name: str) -> int:
    if "CHACHA20" in name:
        return 256
    if "3DES" in name or "DES-CBC3" in name:
        return 112
    match = re.search(r"(?:AES|CAMELLIA|ARIA|SM4)[_-]?(\d+)", name)
    if match:
        return int(match.group(1))
    return 128 if "SM4" in name else 0
