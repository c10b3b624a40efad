"""anyio's ``TLSAttribute`` extras for ``commssl.anyio.TLSStream``.

Each value is read from the connection's ``SSL`` when asked for (the SSL pinned,
and its operation lock held while OpenSSL is read), in the form anyio's own
``TLSStream`` gives: the forms of CPython's ``ssl.SSLObject`` (``cipher()``,
``version()``, ``getpeercert()``, ``get_channel_binding("tls-unique")``,
``shared_ciphers()`` on a server, ``None`` on a client), computed as CPython's
``_ssl`` computes them. Omitted (``extra()`` raises
``anyio.TypedAttributeLookupError``, or returns its default): ``ssl_object``
(commssl has no ``ssl.SSLObject``: use ``.ssl`` and the ``ssl_connection_*``
functions).
"""

from __future__ import annotations

import os
import ssl as _pyssl
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

from anyio.streams.tls import TLSAttribute

from commssl._core.args import ssl_of
from commssl._core.binding import ffi, lib, text
from commssl._core.ownership import ssl_held
from commssl._core.pointers import borrow_certificate
from commssl.config.certificate_bytes import dump_certificate
from commssl.config.features import ssl_connection_alpn_protocol

__all__ = ["tls_attributes"]


def tls_attributes(stream: Any) -> Dict[Any, Callable[[], Any]]:
    """The ``TLSAttribute`` extras of ``stream`` (a ``commssl.anyio.TLSStream``)."""
    return {
        TLSAttribute.alpn_protocol: lambda: ssl_connection_alpn_protocol(stream),
        TLSAttribute.channel_binding_tls_unique: lambda: channel_binding_tls_unique(stream),
        TLSAttribute.cipher: lambda: cipher(stream),
        TLSAttribute.peer_certificate: lambda: peer_certificate(stream),
        TLSAttribute.peer_certificate_binary: lambda: peer_certificate_binary(stream),
        TLSAttribute.server_side: lambda: stream.ssl_side == "server",
        # as anyio's: the server's view only (a client was never sent the list)
        TLSAttribute.shared_ciphers: lambda: shared_ciphers(stream) if stream.ssl_side == "server" else None,
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
    with ssl_held(sslp) as ssl:
        # the SSL owns the certificate: read it while the lock keeps a renegotiation
        # or a post-handshake step of another thread from replacing it
        x509 = lib.SSL_get0_peer_certificate(ssl)
        if x509 == ffi.NULL:
            return None
        return dump_certificate(borrow_certificate(x509), "der")


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
    """``(name, protocol version, secret bits)`` of the negotiated suite, as
    ``SSLObject.cipher()``; ``None`` before the handshake."""
    sslp = ssl_of(conn)
    with ssl_held(sslp) as ssl:
        current = lib.SSL_get_current_cipher(ssl)
        return None if current == ffi.NULL else _cipher_tuple(current)


def shared_ciphers(conn: Any) -> Optional[List[Tuple[str, str, int]]]:
    """On a server, the suites it has enabled that the client also offered, in the
    server's order, each as ``cipher()`` gives it: ``SSLObject.shared_ciphers()``.
    ``None`` on a client, before the client's hello, and in a TLS 1.2 resumption
    (OpenSSL keeps no client list then), as CPython's."""
    sslp = ssl_of(conn)
    with ssl_held(sslp) as ssl:
        ours = lib.SSL_get_ciphers(ssl)
        theirs = lib.SSL_get_client_ciphers(ssl)  # NULL on a client
        if ours == ffi.NULL or theirs == ffi.NULL:
            return None
        # CPython's algorithm (not SSL_get_shared_ciphers, whose string can be truncated)
        return [_cipher_tuple(c) for c in
                (lib.sk_SSL_CIPHER_value(ours, i) for i in range(lib.sk_SSL_CIPHER_num(ours)))
                if lib.sk_SSL_CIPHER_find(theirs, c) >= 0]


# CPython's PySSL_CB_MAXLEN: a Finished is at most a hash long (64 bytes for SHA-512)
_FINISHED_MAX = 128


def channel_binding_tls_unique(conn: Any) -> Optional[bytes]:
    """The ``tls-unique`` channel binding (RFC 5929), as
    ``SSLObject.get_channel_binding("tls-unique")``: the first Finished message of
    the latest handshake (the client's in a full handshake, the server's in a
    resumption); ``None`` before the handshake. Under TLS 1.3, where RFC 9266 leaves
    ``tls-unique`` undefined, the same rule on OpenSSL's Finished messages, as CPython
    gives it."""
    sslp = ssl_of(conn)
    buf = ffi.new("unsigned char[]", _FINISHED_MAX)
    with ssl_held(sslp) as ssl:
        client = not lib.SSL_is_server(ssl)
        if bool(lib.SSL_session_reused(ssl)) != client:  # resumed XOR client: ours came first
            n = lib.SSL_get_finished(ssl, buf, _FINISHED_MAX)
        else:
            n = lib.SSL_get_peer_finished(ssl, buf, _FINISHED_MAX)
    return ffi.buffer(buf, min(n, _FINISHED_MAX))[:] if n else None


def _cipher_tuple(c: Any) -> Tuple[str, str, int]:
    return (text(lib.SSL_CIPHER_get_name(c)), text(lib.SSL_CIPHER_get_version(c)),
            int(lib.SSL_CIPHER_get_bits(c, ffi.NULL)))
