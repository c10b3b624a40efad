"""Typed wrappers of OpenSSL pointers, and the ownership of ``X509*``.

Every owned ``X509Pointer`` holds exactly one reference to its certificate.
Releasing it drops that reference once; a second release, or a release of a
borrowed pointer, raises and frees nothing. The released flag and the
process-wide outstanding count change together under one lock, so copies and
releases from several threads keep the books right.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from typing import Any, Callable, Iterable, List, NoReturn, Optional

from ._binding import ffi, lib
from .errors import CertificateReleasedError

_OWNED, _BORROWED, _RELEASED, _EXPIRED = 0, 1, 2, 3
_STATE = ffi.typeof("commssl_state *")

_lock = threading.Lock()
_outstanding = 0


class _Pointer:
    """Base of the pointer wrappers: ``.cdata`` is the cffi pointer."""

    __slots__ = ("cdata", "__weakref__")
    cdata: Any

    @property
    def address(self) -> int:
        """The C pointer as an integer, for other bindings of the same library."""
        return int(ffi.cast("uintptr_t", self.cdata))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 0x{self.address:x}>"


class X509Pointer(_Pointer):
    """An ``X509*``, either owned (release it) or borrowed (read it while lent)."""

    __slots__ = ("_state",)

    def __init__(self, cdata: Any) -> None:
        """Wrap a raw ``X509*`` as a borrowed pointer (commssl takes no reference)."""
        if not isinstance(cdata, ffi.CData) or ffi.typeof(cdata) is not ffi.typeof("X509 *"):
            raise TypeError(f"cdata must be an 'X509 *' cdata, not {cdata!r}")
        if cdata == ffi.NULL:
            raise ValueError("cdata must not be NULL")
        self.cdata = cdata
        self._state = _BORROWED

    @property
    def released(self) -> bool:
        """True once released (or, for a borrowed pointer, once OpenSSL took it back)."""
        return self._state >= _RELEASED

    @property
    def owned(self) -> bool:
        """True while this pointer holds a reference that must be released."""
        return self._state == _OWNED

    def __repr__(self) -> str:
        state = ("owned", "borrowed", "released", "expired")[self._state]
        return f"<X509Pointer 0x{self.address:x} {state}>"

    def __del__(self) -> None:
        try:
            if self._state != _OWNED:  # not getattr(): this runs for every pointer
                return
        except AttributeError:  # __init__ refused its argument
            return
        try:
            _release_one(self)
            warnings.warn(
                f"unreleased {self!r} garbage-collected; call release_certificate()",
                ResourceWarning,
                stacklevel=2,
            )
        except Exception:  # interpreter shutdown: modules may be gone
            pass


def own_certificates(cdatas: Iterable[Any]) -> List[X509Pointer]:
    """Wrap ``X509*`` values that each already carry one new reference."""
    global _outstanding
    new = object.__new__
    out = []
    for c in cdatas:
        p = new(X509Pointer)
        p.cdata = c
        p._state = _OWNED
        out.append(p)
    _lock.acquire()  # not `with`: half the cost on this hot path
    try:
        _outstanding += len(out)
    finally:
        _lock.release()
    return out


def borrow_certificate(cdata: Any) -> X509Pointer:
    p = object.__new__(X509Pointer)
    p.cdata = cdata
    p._state = _BORROWED
    return p


def expire(pointers: Iterable[X509Pointer]) -> None:
    """End the loan of borrowed pointers (their owner may now free them)."""
    for p in pointers:
        if p._state == _BORROWED:
            p._state = _EXPIRED


def live_certificate(cert: object, argument: str = "cert") -> Any:
    """The ``X509*`` of a usable pointer, or the documented exception."""
    if type(cert) is not X509Pointer:
        raise TypeError(f"{argument} must be an X509Pointer, not {type(cert).__name__}")
    if cert._state >= _RELEASED:
        raise CertificateReleasedError(f"{argument} {cert!r} was released")
    return cert.cdata


def _release_one(cert: X509Pointer) -> None:
    global _outstanding
    with _lock:
        state = cert._state
        if state == _OWNED:
            cert._state = _RELEASED
            _outstanding -= 1
    if state == _OWNED:
        lib.X509_free(cert.cdata)
    else:
        _not_releasable(cert, state)


def _not_releasable(cert: X509Pointer, state: int) -> NoReturn:
    if state == _BORROWED:
        raise CertificateReleasedError(f"{cert!r} is borrowed; only owned pointers can be released")
    raise CertificateReleasedError(f"{cert!r} was already released")


def release_in_order(certs: Iterable[Optional[X509Pointer]]) -> None:
    """``release_certificate`` on each pointer that is not ``None``, in order,
    stopping with its exception at the first that cannot be released: the same
    outcome as one call per pointer, with one lock round trip for all."""
    global _outstanding
    freed = []
    bad: Optional[X509Pointer] = None
    _lock.acquire()
    try:
        for cert in certs:
            if cert is None:
                continue
            if cert._state != _OWNED:
                bad = cert
                break
            cert._state = _RELEASED
            freed.append(cert.cdata)
        _outstanding -= len(freed)
    finally:
        _lock.release()
    free = lib.X509_free
    for cdata in freed:
        free(cdata)
    if bad is not None:
        _not_releasable(bad, bad._state)


def release_certificate(cert: X509Pointer) -> None:
    """Drop the reference an owned pointer holds (``X509_free``).

    Releasing it again, or releasing a borrowed pointer, raises
    ``CertificateReleasedError`` and frees nothing.
    """
    if type(cert) is not X509Pointer:
        raise TypeError(f"cert must be an X509Pointer, not {type(cert).__name__}")
    _release_one(cert)


def outstanding_certificates() -> int:
    """Owned pointers handed out and not yet released, process-wide."""
    return _outstanding


class X509StoreCtxPointer(_Pointer):
    """An ``X509_STORE_CTX*``, valid only inside the verify callback it was given to."""

    __slots__ = ("_valid", "_ssl")
    _valid: bool
    _ssl: SSLPointer  # the connection whose verification this is

    def _check(self) -> Any:
        if not self._valid:
            raise ValueError("store_ctx is only valid inside the verify callback it was passed to")
        return self.cdata


class SSLCtxPointer(_Pointer):
    """An ``SSL_CTX*``. ``make_ssl_ctx`` makes them; ``destroy_ssl_ctx`` frees them."""

    __slots__ = ("_freed", "verify", "conn_verify", "password", "_password_handle", "_password_error")

    def __init__(self, cdata: Any) -> None:
        """Wrap an ``SSL_CTX*`` made elsewhere; commssl then takes one reference of its own."""
        if not isinstance(cdata, ffi.CData) or ffi.typeof(cdata) is not ffi.typeof("SSL_CTX *"):
            raise TypeError(f"cdata must be an 'SSL_CTX *' cdata, not {cdata!r}")
        lib.SSL_CTX_up_ref(cdata)
        self._setup(cdata)

    def _setup(self, cdata: Any) -> None:
        self.cdata = cdata
        self._freed = False
        self.verify: Optional[Callable[..., Any]] = None
        self.conn_verify: Optional[Callable[..., Any]] = None
        self.password: Optional[Callable[..., Any]] = None
        self._password_handle: Any = None
        self._password_error: Optional[BaseException] = None

    @classmethod
    def _adopt(cls, cdata: Any) -> "SSLCtxPointer":
        """Wrap a context whose one reference now belongs to the wrapper."""
        self = object.__new__(cls)
        self._setup(cdata)
        _contexts[self.address] = self
        return self

    def _live(self) -> Any:
        if self._freed:
            raise ValueError(f"{self!r} was destroyed")
        return self.cdata

    def _free(self) -> None:
        if not self._freed:
            self._freed = True
            if _contexts.get(self.address) is self:
                del _contexts[self.address]
            lib.SSL_CTX_free(self.cdata)

    def __del__(self) -> None:
        try:
            self._free()
        except Exception:
            pass

    # Temporary: the pin interface the connection core uses; the pointers branch
    # replaces these with the real pin counting.
    def _pin(self) -> Any:
        return self._live()

    def _unpin(self) -> None:
        pass

    def _kill(self) -> None:
        self._free()


#: The contexts commssl made, by address, for SSLPointer(cdata) wrapping an SSL made
#: outside commssl from one of them (looked up only then, never on a callback's path).
_contexts: "weakref.WeakValueDictionary[int, SSLCtxPointer]" = weakref.WeakValueDictionary()


class SSLPointer(_Pointer):
    """An ``SSL*`` with commssl's per-connection record attached through ex_data.

    The record routes OpenSSL's verify callbacks to this wrapper, which knows
    the Python callable, the exception a callback raised, and the connection.
    """

    __slots__ = (
        "_record", "_handle", "ctx", "verify", "verifying", "borrowed",
        "exception", "_connection", "_freed", "_owns",
    )

    def __new__(cls, cdata: Any) -> "SSLPointer":
        """The wrapper of an ``SSL*``: the existing one if commssl knows it, else a new
        one holding a reference of its own."""
        if not isinstance(cdata, ffi.CData) or ffi.typeof(cdata) is not ffi.typeof("SSL *"):
            raise TypeError(f"cdata must be an 'SSL *' cdata, not {cdata!r}")
        if cdata == ffi.NULL:
            raise ValueError("cdata must not be NULL")
        rec = lib.commssl_get_state(cdata)
        if rec != ffi.NULL and rec.py != ffi.NULL:
            existing: SSLPointer = ffi.from_handle(rec.py)
            return existing
        lib.SSL_up_ref(cdata)
        self = object.__new__(cls)
        ctx_cdata = lib.SSL_get_SSL_CTX(cdata)
        ctx = _contexts.get(int(ffi.cast("uintptr_t", ctx_cdata)))
        # The context's own wrapper knows its Python callbacks (a new one would not,
        # and the SSL's Python verify callback would silently never run).
        self._setup(cdata, ctx if ctx is not None and not ctx._freed else SSLCtxPointer(ctx_cdata))
        return self

    def _setup(self, cdata: Any, ctx: SSLCtxPointer, mode: int = 0) -> None:
        self.cdata = cdata
        self.ctx = ctx  # keeps the context's Python callables alive
        self.verify = ctx.verify  # OpenSSL copies the context's callback at SSL_new
        self.verifying: Any = None  # the X509_STORE_CTX* while a callback runs
        self.borrowed: List[X509Pointer] = []
        self.exception: Optional[BaseException] = None
        self._connection: Any = None
        self._freed = False
        self._handle = ffi.new_handle(self)
        self._record = ffi.new(_STATE)
        # one C call fills the record and attaches it (fail_depth -1, fail_count 0)
        lib.commssl_attach(cdata, self._record, self._handle, self.verify is not None,
                           ctx.conn_verify is not None, mode)

    @classmethod
    def _adopt(cls, cdata: Any, ctx: SSLCtxPointer, mode: int = 0) -> "SSLPointer":
        """Wrap a new SSL whose one reference now belongs to the wrapper (and set
        its ``SSL_MODE_*`` bits ``mode``)."""
        self = object.__new__(cls)
        self._setup(cdata, ctx, mode)
        return self

    @property
    def connection(self) -> Any:
        """The commssl connection (stream) using this SSL, or None."""
        ref = self._connection
        return ref() if ref is not None else None

    @connection.setter
    def connection(self, conn: Any) -> None:
        self._connection = weakref.ref(conn) if conn is not None else None

    def _live(self) -> Any:
        if self._freed:
            raise ValueError(f"{self!r} was freed")
        return self.cdata

    def reset_verification(self) -> None:
        """Forget the last handshake's verification failure and pending exception."""
        self._record.fail_depth = -1
        self._record.fail_count = 0
        self.exception = None

    def take_exception(self) -> Optional[BaseException]:
        exc, self.exception = self.exception, None
        return exc

    def in_callback(self, what: str) -> None:
        """Raise ``ValueError`` while one of this SSL's verify callbacks runs:
        OpenSSL is then inside a handshake on it, and freeing it or starting
        another operation on it would pull the ground from under OpenSSL."""
        if self.verifying is not None:
            raise ValueError(f"{what} is not allowed inside the connection's own verify callback "
                             "(its handshake is running); return False from the callback to reject the peer")

    def _free(self) -> None:
        if not self._freed:
            self.in_callback("freeing the SSL")
            self._freed = True
            lib.commssl_release_ssl(self.cdata)  # detaches the record, then SSL_free
            # The record no longer points at the handle: dropping it ends the
            # wrapper <-> handle cycle, so refcounting frees the wrapper, not the GC.
            self._handle = None

    def __del__(self) -> None:
        try:
            self._free()
        except Exception:
            pass

    # Temporary: the pin interface the connection core uses; the pointers branch
    # replaces these with the real pin counting.
    def _pin(self) -> Any:
        return self._live()

    def _unpin(self) -> None:
        pass

    def _kill(self) -> None:
        self._free()
