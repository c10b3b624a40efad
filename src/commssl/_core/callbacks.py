"""The callback runner's shared state: what every trampoline (verify, ALPN, key log,
OCSP, the LispWorks callbacks, pass phrases) uses when the Python side runs.

One rule for every callback kind: an exception a callback raises is parked on its
connection (``park``), the trampoline returns OpenSSL's failure value, and the call
that drove the handshake re-raises it. ``park_from_traceback`` is every trampoline's
``onerror``, for exceptions that hit before the callback's own ``try``.

While a callback runs, its thread is inside the connection's handshake: I/O, detach
and close on that connection from inside it are refused (they would wait for the
handshake that waits for them). ``sslp.verifying`` says so for verify callbacks; a
thread-local stack says it for the others, and ``_feature_active`` counts them
process-wide so the common case costs one read.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from commssl._core.binding import ffi
from commssl._core.pointers import SSLPointer


def park(sslp: SSLPointer, exc: BaseException) -> None:
    """Keep a callback's exception on its connection (the first one wins)."""
    if sslp.exception is None:
        sslp.exception = exc


def copy_pass_phrase(value: object, buf: Any, size: int, what: str) -> int:
    """Copy a pass phrase callback's result into OpenSSL's buffer: its length, or
    ``TypeError``/``ValueError`` naming ``what`` (the callback) for a bad result."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise TypeError(f"the {what} callback must return str or bytes, not {type(value).__name__}")
    if len(value) > size:
        raise ValueError(f"the {what} is longer than OpenSSL's limit of {size} bytes")
    ffi.memmove(buf, value, len(value))
    return len(value)


def park_from_traceback(exc: BaseException, tb: Any) -> None:
    """For every trampoline's ``onerror``, reached only when an exception hits
    before the callback's own try (a signal, say): park it on the connection the
    frame names (``sslp``, or the record's handle ``py`` of a weak reference);
    the trampoline's error result then fails what OpenSSL was doing (closed)."""
    while tb is not None:
        frame_locals = tb.tb_frame.f_locals
        sslp = frame_locals.get("sslp")
        if not isinstance(sslp, SSLPointer) and frame_locals.get("py") is not None:
            try:
                sslp = ffi.from_handle(frame_locals["py"])()
            except Exception:  # not a handle (a NULL, or another function's "py")
                sslp = None
        if isinstance(sslp, SSLPointer):
            park(sslp, exc)
            return
        tb = tb.tb_next


def onerror(exc_type: Any, exc: BaseException, tb: Any) -> None:
    """Every trampoline's ``onerror``: park, then cffi returns the extern's ``error`` value,
    which fails what OpenSSL was doing (closed)."""
    park_from_traceback(exc, tb)


def in_callback_error(what: str, sslp: Optional[SSLPointer] = None) -> ValueError:
    if sslp is not None and sslp.verifying is None and in_feature_callback(sslp):
        return ValueError(f"{what} is not allowed inside the connection's own {_feature_kind(sslp)} callback "
                          "(its handshake is running); raise from the callback to abort the handshake")
    return ValueError(f"{what} is not allowed inside the connection's own verify callback (its handshake is "
                      "running); return False from the callback to reject the peer")


_feature_local = threading.local()
_feature_active = 0
_feature_lock = threading.Lock()


def enter_feature_callback(sslp: SSLPointer, kind: str) -> None:
    global _feature_active
    stack = getattr(_feature_local, "stack", None)
    if stack is None:
        stack = _feature_local.stack = []
    stack.append((sslp, kind))
    with _feature_lock:
        _feature_active += 1


def exit_feature_callback() -> None:
    global _feature_active
    _feature_local.stack.pop()
    with _feature_lock:
        _feature_active -= 1


def in_feature_callback(sslp: SSLPointer) -> bool:
    return bool(_feature_active) and any(s is sslp for s, _ in getattr(_feature_local, "stack", ()))


def _feature_kind(sslp: SSLPointer) -> str:
    for s, kind in reversed(getattr(_feature_local, "stack", ())):
        if s is sslp:
            return str(kind)
    return "TLS"


def in_callback(sslp: SSLPointer) -> bool:
    """True inside one of the connection's own callbacks, in this thread."""
    return sslp.verifying is not None or (bool(_feature_active) and in_feature_callback(sslp))
