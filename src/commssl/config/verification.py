"""Verification modes, verify callbacks, and the ``X509_STORE_CTX`` helpers.

Python callbacks reach OpenSSL through one C trampoline (``commssl_verify_cb``)
that finds the connection's record through ex_data and calls the single
``extern "Python"`` function below. A callback's exception is parked on the
connection, verification fails closed, and the call that drove the handshake
re-raises it.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Union

from commssl._core.args import ctx_or_ssl, side_arg
from commssl._core.binding import ffi, lib, text
from commssl._core.callbacks import onerror, park
from commssl._core.lifetime import verify_with_store
from commssl._core.ownership import ssl_held
from commssl._core.pointers import (
    SSLCtxPointer,
    SSLPointer,
    X509Pointer,
    X509StoreCtxPointer,
    borrow_certificate,
    call_pinned,
    loan_certificate,
)
from commssl._core.types import ConnectionArg, ContextOrSSLArg

VerifyCallback = Callable[[bool, X509StoreCtxPointer], Any]
Mode = Union[int, str, Sequence[str]]

_FLAG_KEYWORDS = (
    ("verify-peer", lib.SSL_VERIFY_PEER),
    ("fail-if-no-peer-cert", lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT),
    ("verify-client-once", lib.SSL_VERIFY_CLIENT_ONCE),
)
_FLAGS = dict(_FLAG_KEYWORDS)
_SYMBOLS = {
    "server": {
        "never": lib.SSL_VERIFY_NONE,
        "always": lib.SSL_VERIFY_PEER,
        "once": lib.SSL_VERIFY_PEER | lib.SSL_VERIFY_CLIENT_ONCE,
    },
    "client": {"never": lib.SSL_VERIFY_NONE, "always": lib.SSL_VERIFY_PEER},
}
_C_CALLBACK = ffi.typeof("int(*)(int, X509_STORE_CTX *)")
_APPLICATION_VERIFICATION = lib.X509_V_ERR_APPLICATION_VERIFICATION


def mode_flags(ssl_side: str, mode: Mode) -> int:
    """The ``SSL_VERIFY_*`` bits for a LispWorks mode on one side."""
    side_arg(ssl_side, ("server", "client"))
    if isinstance(mode, bool):
        raise TypeError("mode must be an int, a keyword or a list of keywords, not bool")
    if isinstance(mode, int):
        if not 0 <= mode <= 0x7FFFFFFF:
            raise ValueError(f"mode must be a non-negative C int, not {mode}")
        return mode
    if isinstance(mode, str):
        symbols = _SYMBOLS[ssl_side]
        if mode not in symbols:
            accepted = ", ".join(repr(k) for k in symbols)
            raise ValueError(f"mode {mode!r} is not accepted on the {ssl_side} side; use {accepted}, "
                             "an int, or a list of keywords")
        return symbols[mode]
    if isinstance(mode, (list, tuple)):
        flags = 0
        for keyword in mode:
            if not isinstance(keyword, str):
                raise TypeError(f"mode list items must be keyword strings, not {type(keyword).__name__}")
            if keyword not in _FLAGS:
                accepted = ", ".join(repr(k) for k in _FLAGS)
                raise ValueError(f"unknown mode keyword {keyword!r}; use {accepted}")
            flags |= _FLAGS[keyword]
        return flags
    raise TypeError(f"mode must be an int, a keyword or a list of keywords, not {type(mode).__name__}")


def _c_callback(callback: Any) -> Any:
    """A cffi function pointer of type ``int(*)(int, X509_STORE_CTX *)``, as this ffi's type."""
    ctype = ffi.typeof(callback)
    if ctype is _C_CALLBACK:
        return callback
    if ctype.kind == "function" and ctype.cname == _C_CALLBACK.cname:  # another ffi's same type
        return ffi.cast(_C_CALLBACK, callback)
    raise TypeError(f"callback cdata must be of type '{_C_CALLBACK.cname}', not '{ctype.cname}'")


def set_verification_mode(
    ssl_ctx: Any, ssl_side: str, mode: Mode, callback: Union[None, VerifyCallback, Any] = None
) -> None:
    """Set the verification mode of a context (``SSL_CTX_set_verify``) or of one
    connection (``SSL_set_verify``), as LispWorks' ``set-verification-mode``.

    ``mode``: an int passed as is; ``"never"``, ``"always"``, ``"once"`` (server
    only); or a list of ``"verify-peer"``, ``"fail-if-no-peer-cert"``,
    ``"verify-client-once"``. ``callback``: ``None`` (OpenSSL's own checks;
    clears an earlier callback), a cffi ``int(*)(int, X509_STORE_CTX *)``
    installed as it is, or ``callback(preverify_ok, store_ctx) -> bool`` called
    per certificate from the root's depth down to the leaf.
    """
    target = ctx_or_ssl(ssl_ctx, "ssl_ctx")
    flags = mode_flags(ssl_side, mode)
    py_callback: Optional[VerifyCallback] = None
    if callback is None:
        c_callback = lib.commssl_verify_cb
    elif isinstance(callback, ffi.CData):
        c_callback = _c_callback(callback)
    elif callable(callback):
        py_callback, c_callback = callback, lib.commssl_verify_cb
    else:
        raise TypeError(
            "callback must be None, a callable or a cffi function pointer, "
            f"not {type(callback).__name__}"
        )
    with ssl_held(target) as cdata:
        if isinstance(target, SSLCtxPointer):
            lib.SSL_CTX_set_verify(cdata, flags, c_callback)
            target.verify = py_callback
            # every SSL made from the context, in commssl or not, asks Python (fail closed)
            target._record.py_verify = py_callback is not None
        else:
            lib.SSL_set_verify(cdata, flags, c_callback)
            target.verify = py_callback
            target._record.py_verify = py_callback is not None


def get_verification_mode(ssl_or_ssl_ctx: ContextOrSSLArg) -> List[str]:
    """The verify flags as keywords, in the order ``"verify-peer"``,
    ``"fail-if-no-peer-cert"``, ``"verify-client-once"``; ``[]`` for none."""
    target = ctx_or_ssl(ssl_or_ssl_ctx, "ssl_or_ssl_ctx")
    with ssl_held(target) as cdata:
        if isinstance(target, SSLCtxPointer):
            flags = lib.SSL_CTX_get_verify_mode(cdata)
        else:
            flags = lib.SSL_get_verify_mode(cdata)
    return [keyword for keyword, bit in _FLAG_KEYWORDS if flags & bit]


def set_verification_depth(ctx_or_ssl_: ContextOrSSLArg, depth: int) -> None:
    """Limit the chain length OpenSSL accepts (``SSL[_CTX]_set_verify_depth``)."""
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int, not {type(depth).__name__}")
    if not 0 <= depth <= 0x7FFFFFFF:
        raise ValueError(f"depth must be a non-negative C int, not {depth}")
    with ssl_held(target) as cdata:
        if isinstance(target, SSLCtxPointer):
            lib.SSL_CTX_set_verify_depth(cdata, depth)
        else:
            lib.SSL_set_verify_depth(cdata, depth)


# -- the trampolines' Python side -------------------------------------------


_from_handle = ffi.from_handle  # bound once: the trampoline runs per certificate per handshake
_NULL = ffi.NULL


def _wrapper(st: Any) -> Optional[SSLPointer]:
    """The wrapper a record names, read under the GIL (None: gone, fail closed)."""
    py = st.py
    if py == _NULL:
        return None
    sslp: Optional[SSLPointer] = _from_handle(py)()
    return sslp


def _run_verify(sslp: SSLPointer, decide: Any, whole_chain: bool, ok: int, store: Any) -> int:
    """Run a Python verify decision with the store context lent to it: per
    certificate ``decide(preverify_ok, store_ctx)``, or for the whole chain
    ``decide(conn)``."""
    try:
        return 1 if verify_with_store(sslp, X509StoreCtxPointer, store, decide, ok, whole_chain) else 0
    except BaseException as exc:
        return _rejected(sslp, exc, store)


def _rejected(sslp: SSLPointer, exc: BaseException, store: Any) -> int:
    """A verify callback raised: park the exception, fail the verification (closed)."""
    park(sslp, exc)
    lib.X509_STORE_CTX_set_error(store, _APPLICATION_VERIFICATION)
    return 0


@ffi.def_extern(onerror=onerror)
def _commssl_verify_py(st: Any, ok: int, store: Any) -> int:
    try:
        # st.py is read under the GIL, as the wrapper's end clears it; NULL raises
        sslp: Optional[SSLPointer] = _from_handle(st.py)()
    except RuntimeError:
        return 0  # the wrapper is gone: fail closed
    if sslp is None:
        return 0
    decide = sslp.verify
    if decide is None:  # the record says Python decides, but no callable is known: closed
        return 0
    try:  # _run_verify, inline: this runs per certificate per handshake
        return 1 if verify_with_store(sslp, X509StoreCtxPointer, store, decide, ok, False) else 0
    except BaseException as exc:
        return _rejected(sslp, exc, store)


@ffi.def_extern(onerror=onerror)
def _commssl_conn_verify_py(st: Any, ok: int, store: Any) -> int:
    sslp = _wrapper(st)
    if sslp is None:
        return 0
    decide = sslp.ctx.conn_verify
    if decide is None:
        return 0
    return _run_verify(sslp, decide, True, ok, store)


@ffi.def_extern(error=0)
def _commssl_foreign_verify_py(cs: Any, ssl: Any, kind: int, ok: int, store: Any) -> int:
    """An SSL made outside commssl (``lib.SSL_new(ctx.cdata)``) from a context with a
    Python callback: the context's callback decides, with the SSL lent for the call.
    Nobody in commssl drove this handshake, so an exception the callback raises
    fails it and is reported (cffi prints it), not re-raised."""
    py = cs.py
    ctx: Optional[SSLCtxPointer] = _from_handle(py)() if py != _NULL else None
    if ctx is None or ctx._dead:
        return 0
    decide = ctx.verify if kind == 0 else ctx.conn_verify
    if decide is None:
        return 0
    sslp = SSLPointer._lend(ssl, ctx)
    try:
        accepted = _run_verify(sslp, decide, kind != 0, ok, store)
    finally:
        sslp._kill()
    exc = sslp.take_exception()
    if exc is not None:
        raise exc
    return accepted


# -- X509_STORE_CTX helpers ---------------------------------------------------


def _pin_store(store_ctx: object) -> Any:
    if type(store_ctx) is not X509StoreCtxPointer:
        raise TypeError(f"store_ctx must be an X509StoreCtxPointer, not {type(store_ctx).__name__}")
    return store_ctx._pin()


def x509_store_ctx_get_current_cert(store_ctx: X509StoreCtxPointer) -> Optional[X509Pointer]:
    """The certificate being checked, borrowed: valid until the callback returns
    (keep it with ``copy_certificate``). It holds a reference of its own while
    lent, so another thread reading it then finishes on a live certificate."""
    store = _pin_store(store_ctx)
    try:
        cdata = lib.X509_STORE_CTX_get_current_cert(store)
        if cdata == _NULL:
            return None
        if store_ctx._ssl is None:  # a store ctx the caller wrapped: the caller vouches
            return borrow_certificate(cdata)
        lib.X509_up_ref(cdata)
        cert = loan_certificate(cdata)
        # while the store ctx is pinned: its end (which waits for us) ends this loan
        loans = store_ctx._loans
        if loans is None:
            store_ctx._loans = [cert]
        else:
            loans.append(cert)
        return cert
    finally:
        store_ctx._unpin()


def _store_int(store_ctx: X509StoreCtxPointer, getter: Callable[[Any], int]) -> int:
    """``getter(X509_STORE_CTX *)`` as an int, the store pinned for the call."""
    store = _pin_store(store_ctx)
    try:
        return int(getter(store))
    finally:
        store_ctx._unpin()


def x509_store_ctx_get_error(store_ctx: X509StoreCtxPointer) -> int:
    """The ``X509_V_ERR_*`` code of the certificate being checked (0 is OK)."""
    return _store_int(store_ctx, lib.X509_STORE_CTX_get_error)


def x509_store_ctx_get_error_depth(store_ctx: X509StoreCtxPointer) -> int:
    """The depth of the certificate being checked (0 is the peer's own)."""
    return _store_int(store_ctx, lib.X509_STORE_CTX_get_error_depth)


def x509_store_ctx_set_error(store_ctx: X509StoreCtxPointer, code: int) -> None:
    """Set the verification error that OpenSSL records for this check."""
    if type(store_ctx) is not X509StoreCtxPointer:
        raise TypeError(f"store_ctx must be an X509StoreCtxPointer, not {type(store_ctx).__name__}")
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"code must be an int, not {type(code).__name__}")
    if not 0 <= code <= 0x7FFFFFFF:
        raise ValueError(f"code must be an X509_V_ERR_* value (a non-negative int), not {code}")
    call_pinned(store_ctx, lib.X509_STORE_CTX_set_error, code)


def x509_verify_cert_error_string(code: int) -> str:
    """OpenSSL's text for an ``X509_V_ERR_*`` code."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"code must be an int, not {type(code).__name__}")
    if not 0 <= code <= 0x7FFFFFFF:  # OpenSSL's codes are C ints; a wider one would be truncated
        raise ValueError(f"code must be an X509_V_ERR_* value (a non-negative C int), not {code}")
    return text(lib.X509_verify_cert_error_string(code))


def x509_store_ctx_get_connection(store_ctx: X509StoreCtxPointer) -> Optional[ConnectionArg]:
    """The commssl connection being verified (a stream), or its ``SSLPointer``
    when no stream owns it yet."""
    _pin_store(store_ctx)
    store_ctx._unpin()
    sslp = store_ctx._ssl
    if sslp is None:
        return None
    conn = sslp.connection
    return conn if conn is not None else sslp
