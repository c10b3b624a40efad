"""Context knobs every TLS peer has: the cipher list (TLS 1.2 and older), the TLS 1.3
ciphersuites, and the minimum and maximum protocol version, on a context
(``SSLCtxPointer`` or abstract context: every later connection) or on one ``SSL``
(before its handshake).

LispWorks has no names for these (its abstract contexts have ``protocol-version``, the
minimum, which commssl's also take); these follow OpenSSL's and CPython's
(``SSLContext.set_ciphers``, ``minimum_version``/``maximum_version``).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from commssl._core.args import ctx_or_ssl
from commssl._core.binding import drain, ffi, lib, text
from commssl._core.pointers import SSLCtxPointer
from commssl._core.types import ContextOrSSLArg

#: The version keywords (as ``ssl_connection_protocol_version`` returns them) these accept.
PROTOCOL_VERSIONS: Dict[str, int] = {"tls-v1-2": lib.TLS1_2_VERSION, "tls-v1-3": lib.TLS1_3_VERSION}
_KEYWORDS = {number: keyword for keyword, number in PROTOCOL_VERSIONS.items()}
_ACCEPTED = "'tls-v1-2', 'tls-v1-3' or None (unchanged)"


def _spec(value: object, argument: str, allow_empty: bool) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str, not {type(value).__name__}")
    if not value and not allow_empty:
        raise ValueError(f"{argument} must name at least one cipher")
    if "\x00" in value or not value.isascii():
        raise ValueError(f"{argument} must be ASCII without NUL characters: {value!r}")
    return value.encode("ascii")


def _openssl() -> str:
    return text(lib.OpenSSL_version(lib.OPENSSL_VERSION))


def _selects_nothing(tokens: List[str], ciphersuites: bool) -> List[str]:
    """The tokens a scratch context refuses one at a time: cipher names or aliases this
    OpenSSL does not have (the target is left as it was)."""
    scratch = lib.SSL_CTX_new(lib.TLS_method())
    if scratch == ffi.NULL:
        drain()
        return []
    try:
        setter = lib.SSL_CTX_set_ciphersuites if ciphersuites else lib.SSL_CTX_set_cipher_list
        bad = [t for t in tokens if setter(scratch, t.encode("ascii")) != 1]
    finally:
        lib.SSL_CTX_free(scratch)
    drain()
    return bad


def _apply(target: Any, ctx_setter: Any, ssl_setter: Any, spec: bytes) -> int:
    cdata = target._pin()
    try:
        return int((ctx_setter if isinstance(target, SSLCtxPointer) else ssl_setter)(cdata, spec))
    finally:
        target._unpin()


def set_ciphers(ctx_or_ssl_: ContextOrSSLArg, ciphers: str) -> None:
    """The ciphers of TLS 1.2 (``SSL_CTX_set_cipher_list``): an OpenSSL cipher string
    such as ``"ECDHE+AESGCM:!aNULL"`` or ``"ECDHE-ECDSA-AES128-GCM-SHA256"`` (see
    ``openssl ciphers -v``). TLS 1.3 suites are ``set_ciphersuites``'. On an
    ``SSLCtxPointer`` or abstract context (every later connection) or an ``SSLPointer``
    (before its handshake).

    A string that selects no cipher, or that names a cipher or alias this OpenSSL does
    not have (which OpenSSL itself would skip silently), is a ``ValueError`` naming
    ``ciphers`` and the unknown names; the target is then left as it was.
    """
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    spec = _spec(ciphers, "ciphers", allow_empty=False)
    # the words that add ciphers ("!X", "-X", "+X" and "@STRENGTH" remove, move or sort)
    tokens = [t for t in re.split(r"[:, ]+", ciphers) if t and t[0] not in "!-+@"]
    unknown = _selects_nothing([w for t in tokens for w in t.split("+") if w], ciphersuites=False)
    if unknown:
        hint = ("; TLS 1.3 suites go to set_ciphersuites" if any(u.startswith("TLS_") for u in unknown)
                else "")
        raise ValueError(f"ciphers: {_openssl()} has no cipher {', '.join(map(repr, unknown))} "
                         f"(in {ciphers!r}; see `openssl ciphers -v`){hint}")
    # OpenSSL replaces the list before it finds it empty: try the whole string aside first
    if _selects_nothing([ciphers], ciphersuites=False) or \
            _apply(target, lib.SSL_CTX_set_cipher_list, lib.SSL_set_cipher_list, spec) != 1:
        drain()
        raise ValueError(f"ciphers: {ciphers!r} selects no cipher {_openssl()} has")


def set_ciphersuites(ctx_or_ssl_: ContextOrSSLArg, ciphersuites: str) -> None:
    """The TLS 1.3 ciphersuites, most preferred first (``SSL_CTX_set_ciphersuites``):
    names joined by ``":"``, such as ``"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"``.
    ``""`` offers no TLS 1.3 suite: pair it with ``set_protocol_versions(ctx,
    maximum="tls-v1-2")``, as OpenSSL then refuses to start a handshake that could
    reach TLS 1.3 ("no ciphers available": ``SSLVersionOrCipherMismatch``). On an
    ``SSLCtxPointer`` or abstract context, or an ``SSLPointer`` before its handshake.
    An unknown name is a ``ValueError`` naming ``ciphersuites`` and that name.
    """
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    spec = _spec(ciphersuites, "ciphersuites", allow_empty=True)
    names = [n for n in ciphersuites.split(":") if n]
    unknown = _selects_nothing(names, ciphersuites=True)
    if not unknown and ciphersuites and _selects_nothing([ciphersuites], ciphersuites=True):
        unknown = [ciphersuites]
    if unknown:
        raise ValueError(f"ciphersuites: {_openssl()} has no TLS 1.3 suite "
                         f"{', '.join(map(repr, unknown))} (in {ciphersuites!r})")
    if _apply(target, lib.SSL_CTX_set_ciphersuites, lib.SSL_set_ciphersuites, spec) != 1:
        drain()
        raise ValueError(f"ciphersuites: {_openssl()} refused {ciphersuites!r}")


def _version(value: object, argument: str) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str or None, not {type(value).__name__}")
    if value not in PROTOCOL_VERSIONS:
        raise ValueError(f"{argument} must be {_ACCEPTED}, not {value!r}")
    return PROTOCOL_VERSIONS[value]


def set_protocol_versions(ctx_or_ssl_: ContextOrSSLArg, minimum: Optional[str] = None,
                          maximum: Optional[str] = None) -> None:
    """The lowest and highest protocol version to negotiate, each ``"tls-v1-2"`` or
    ``"tls-v1-3"`` (``ssl_connection_protocol_version``'s keywords), or ``None`` to
    leave that bound as it is (commssl's contexts start at minimum ``"tls-v1-2"``, no
    maximum). On an ``SSLCtxPointer`` or abstract context, or an ``SSLPointer`` before
    its handshake. Giving neither, or a minimum above the maximum (the one given and
    the other as set), is a ``ValueError``.
    """
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    low = _version(minimum, "minimum")
    high = _version(maximum, "maximum")
    if low is None and high is None:
        raise ValueError("set_protocol_versions needs minimum or maximum")
    ctx = isinstance(target, SSLCtxPointer)
    cdata = target._pin()
    try:
        now_low, now_high = _get(cdata, ctx)
        new_low = low if low is not None else now_low
        new_high = high if high is not None else now_high
        if new_low and new_high and new_low > new_high:
            raise ValueError(f"minimum {_name(new_low)!r} is above maximum {_name(new_high)!r}")
        ok = 1
        if low is not None:
            ok &= (lib.SSL_CTX_set_min_proto_version if ctx else lib.SSL_set_min_proto_version)(cdata, low)
        if high is not None:
            ok &= (lib.SSL_CTX_set_max_proto_version if ctx else lib.SSL_set_max_proto_version)(cdata, high)
    finally:
        target._unpin()
    if ok != 1:
        drain()
        raise ValueError(f"{_openssl()} refused the protocol versions {minimum!r}..{maximum!r}")


def _get(cdata: Any, ctx: bool) -> Tuple[int, int]:
    if ctx:
        return int(lib.SSL_CTX_get_min_proto_version(cdata)), int(lib.SSL_CTX_get_max_proto_version(cdata))
    return int(lib.SSL_get_min_proto_version(cdata)), int(lib.SSL_get_max_proto_version(cdata))


def _name(version: int) -> Optional[str]:
    if version == 0:
        return None
    return _KEYWORDS.get(version, f"0x{version:04x}")


def get_protocol_versions(ctx_or_ssl_: ContextOrSSLArg) -> Tuple[Optional[str], Optional[str]]:
    """``(minimum, maximum)`` as set: keywords as ``set_protocol_versions`` takes
    them, ``None`` for no bound (OpenSSL's lowest or highest)."""
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    cdata = target._pin()
    try:
        low, high = _get(cdata, isinstance(target, SSLCtxPointer))
    finally:
        target._unpin()
    return _name(low), _name(high)


__all__ = ["set_ciphers", "set_ciphersuites", "set_protocol_versions", "get_protocol_versions"]
