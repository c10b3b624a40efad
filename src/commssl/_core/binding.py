"""The thin layer over the compiled module: initialisation, return-code checks,
and the one path that turns OpenSSL's error queue into exceptions."""

from __future__ import annotations

import errno
import os
from typing import Any, List, NoReturn, Optional, Sequence, Type

from commssl._openssl import ffi, lib
from commssl.errors import (
    SSLClosed,
    SSLCondition,
    SSLError,
    SSLFailure,
    SSLFileNotFound,
    SSLVersionOrCipherMismatch,
)

if lib.OpenSSL_version_num() < 0x30000000:
    raise ImportError(
        "commssl needs OpenSSL >= 3.0 at run time; loaded "
        + ffi.string(lib.OpenSSL_version(lib.OPENSSL_VERSION)).decode()
    )
if not lib.commssl_init():  # the one C init: ex_data slots of the SSL, SSL_CTX and SSL_SESSION records
    raise ImportError("commssl: OpenSSL refused an ex_data index (out of memory)")

_MISMATCH_REASONS = frozenset(
    (
        lib.SSL_R_NO_SHARED_CIPHER,
        lib.SSL_R_NO_SHARED_GROUPS,
        lib.SSL_R_NO_CIPHERS_AVAILABLE,
        lib.SSL_R_NO_PROTOCOLS_AVAILABLE,
        lib.SSL_R_UNSUPPORTED_PROTOCOL,
        lib.SSL_R_TLSV1_ALERT_PROTOCOL_VERSION,
        lib.SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY,
        lib.SSL_R_NO_SUITABLE_KEY_SHARE,
        lib.SSL_R_DH_KEY_TOO_SMALL,
        lib.SSL_R_VERSION_TOO_LOW,
        lib.SSL_R_VERSION_TOO_HIGH,
        lib.SSL_R_INAPPROPRIATE_FALLBACK,
    )
)


def text(p: object) -> str:
    """A C string from OpenSSL as ``str`` (``""`` for NULL)."""
    return "" if p == ffi.NULL else ffi.string(p).decode("utf-8", "replace")


def error_text(code: int) -> str:
    buf = ffi.new("char[256]")
    lib.ERR_error_string_n(code, buf, 256)
    return ffi.string(buf).decode("utf-8", "replace")


def drain() -> List[int]:
    """Empty this thread's OpenSSL error queue, oldest first."""
    codes: List[int] = []
    while True:
        code = lib.ERR_get_error()
        if not code:
            return codes
        codes.append(code)


def _not_found(codes: List[int]) -> bool:
    """Whether OpenSSL's queue holds a failed ``fopen`` for a missing file."""
    return any(lib.ERR_GET_LIB(c) == lib.ERR_LIB_SYS and lib.ERR_GET_REASON(c) == errno.ENOENT for c in codes)


def missing_file(what: str, path: Any, ssl_code: Optional[int] = None) -> SSLFileNotFound:
    """The one ``SSLFileNotFound`` for a path that does not exist, naming it."""
    shown = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    where = "" if repr(shown) in what else f": {shown!r}"
    return SSLFileNotFound(f"{what}: No such file or directory{where}", shown, ssl_code)


def raise_last(what: str, exc: Type[SSLCondition] = SSLFailure,
               files: Sequence[Any] = ()) -> NoReturn:
    """Raise ``exc`` for a failed call, with OpenSSL's reason strings; or, when the
    call opened one of ``files`` and that failed for a missing file,
    ``SSLFileNotFound`` naming the first of them that does not exist."""
    codes = drain()
    if files and _not_found(codes):
        gone = [f for f in files if f is not None and not os.path.exists(f)]
        raise missing_file(what, (gone or list(files))[0], codes[-1])
    reasons = "; ".join(text(lib.ERR_reason_error_string(c)) or error_text(c) for c in codes)
    raise exc(f"{what}: {reasons or 'unknown OpenSSL error'}", codes[-1] if codes else None)


def check(ok: int, what: str, files: Sequence[Any] = ()) -> None:
    """Raise ``SSLFailure`` with the error queue when an OpenSSL call returned <= 0
    (``SSLFileNotFound`` when it could not open one of ``files``: see ``raise_last``)."""
    if ok <= 0:
        raise_last(what, files=files)


def raise_io_error(err: int, what: str, os_errno: int = 0) -> NoReturn:
    """Map an ``SSL_get_error`` result, with the error queue, to the condition classes."""
    codes = drain()
    last: Optional[int] = codes[-1] if codes else None
    reasons = "; ".join(text(lib.ERR_reason_error_string(c)) or error_text(c) for c in codes)
    if err == lib.SSL_ERROR_ZERO_RETURN:
        raise SSLClosed(f"{what}: the peer closed the TLS connection", "closed")
    # The peer left without close_notify: OpenSSL 3.5+ may queue the EPIPE of the
    # alert it then tried to send after the "unexpected eof" (look at every code).
    eof = lib.SSL_R_UNEXPECTED_EOF_WHILE_READING
    if err == lib.SSL_ERROR_SYSCALL or any(
        lib.ERR_GET_LIB(c) == lib.ERR_LIB_SSL and lib.ERR_GET_REASON(c) == eof for c in codes
    ):
        detail = reasons or (f"{os.strerror(os_errno)} (errno {os_errno})" if os_errno
                             else "the peer closed the connection")
        raise SSLError(f"{what}: {detail}", last)
    if err == lib.SSL_ERROR_SSL:
        exc: Type[SSLCondition] = SSLFailure
        if last is not None and lib.ERR_GET_REASON(last) in _MISMATCH_REASONS:
            exc = SSLVersionOrCipherMismatch
        raise exc(f"{what}: {reasons or 'protocol failure'}", last)
    raise SSLCondition(f"{what}: SSL error {err} {reasons}".rstrip(), last)


__all__ = ["ffi", "lib", "check", "drain", "raise_last", "raise_io_error", "text"]
