"""TLS features every peer has: what a connection negotiated (cipher, SNI, key
exchange group, ALPN protocol), groups, ALPN, and key logging.

Python callbacks (the ALPN select callback, a key log callable) are reached from
OpenSSL through ``extern "Python"`` trampolines, via the SSL's commssl record,
and follow the verify callbacks' rule: an exception is parked on the connection,
aborts what OpenSSL was doing, and propagates from the call that drove the
handshake (blocking or asyncio, any thread). An SSL that commssl does not know
fails closed (ALPN: the handshake is aborted) or logs nothing (key log).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, List, Optional, Sequence, Union

from ._binding import drain, lib, text
from .connection import ssl_of
from .pointers import SSLCtxPointer
from .verification import ctx_or_ssl

lib.commssl_features_init()

AlpnSelect = Callable[[Any, List[str]], Optional[str]]
KeylogTarget = Union[None, str, "os.PathLike[str]", Callable[[str], Any]]


class _CtxFeatures:
    """The Python side of one context's features (kept per ``SSLCtxPointer``)."""

    __slots__ = ("alpn_select", "keylog", "keylog_lock")

    def __init__(self) -> None:
        self.alpn_select: Optional[AlpnSelect] = None
        self.keylog: Optional[Callable[[str], Any]] = None
        self.keylog_lock = threading.Lock()


_features: "weakref.WeakKeyDictionary[SSLCtxPointer, _CtxFeatures]" = weakref.WeakKeyDictionary()
_features_lock = threading.Lock()


def _features_of(ctx: SSLCtxPointer) -> _CtxFeatures:
    with _features_lock:
        f = _features.get(ctx)
        if f is None:
            f = _features[ctx] = _CtxFeatures()
        return f


def _ctx_pointer(obj: object, argument: str) -> SSLCtxPointer:
    target = ctx_or_ssl(obj, argument)
    if not isinstance(target, SSLCtxPointer):
        raise TypeError(f"{argument} must be an SSLCtxPointer or abstract context, not an SSLPointer")
    return target


# -- what a connection negotiated ------------------------------------------------------


def ssl_connection_cipher(conn: Any) -> str:
    """The negotiated cipher suite's OpenSSL name (``"TLS_AES_256_GCM_SHA384"``,
    ``"ECDHE-RSA-AES128-GCM-SHA256"``...); ``""`` before the handshake."""
    sslp = ssl_of(conn)
    ssl = sslp._pin()
    try:
        return text(lib.SSL_get_cipher_name(ssl)).replace("(NONE)", "")
    finally:
        sslp._unpin()


def ssl_connection_server_name(conn: Any) -> Optional[str]:
    """The SNI host name: on a server the one the client asked for, on a client the
    one it sent; ``None`` when there was none."""
    sslp = ssl_of(conn)
    ssl = sslp._pin()
    try:
        return text(lib.SSL_get_servername(ssl, lib.TLSEXT_NAMETYPE_host_name)) or None
    finally:
        sslp._unpin()


def ssl_connection_group(conn: Any) -> Optional[str]:
    """The key exchange group of the handshake (``"x25519"``, ``"secp256r1"``,
    ``"X25519MLKEM768"``...), as OpenSSL names it; ``None`` before the handshake or
    when there was none (a resumption without key exchange)."""
    sslp = ssl_of(conn)
    ssl = sslp._pin()
    try:
        group = lib.SSL_get_negotiated_group(ssl)
        if group <= 0:
            return None
        return text(lib.SSL_group_to_name(ssl, group)) or None
    finally:
        sslp._unpin()


def _names(value: object, argument: str) -> List[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{argument} must be a list of str, not {type(value).__name__}")
    names = list(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{argument} items must be str, not {type(name).__name__}")
    return names


def set_groups(ctx_or_ssl_: Any, groups: Sequence[str]) -> None:
    """The key exchange groups offered and accepted, most preferred first
    (``SSL_CTX_set1_groups_list``): names OpenSSL knows, such as ``"X25519"``,
    ``"P-256"``, ``"X25519MLKEM768"`` (OpenSSL >= 3.5). An empty list or a name
    this OpenSSL does not know is a ``ValueError`` naming ``groups``."""
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    names = _names(groups, "groups")
    if not names:
        raise ValueError("groups must name at least one group")
    for name in names:
        if not name or any(c in name for c in ":\x00") or not name.isascii():
            raise ValueError(f"groups: {name!r} is not a group name")
    joined = ":".join(names).encode()
    if isinstance(target, SSLCtxPointer):
        ok = lib.SSL_CTX_set1_groups_list(target._live(), joined)
    else:
        ssl = target._pin()
        try:
            ok = lib.SSL_set1_groups_list(ssl, joined)
        finally:
            target._unpin()
    if ok != 1:
        drain()
        raise ValueError(f"groups: OpenSSL {commssl_openssl_text()} does not know (all of) {names!r}")


def commssl_openssl_text() -> str:
    return text(lib.OpenSSL_version(lib.OPENSSL_VERSION))
