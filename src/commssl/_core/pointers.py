"""The typed wrappers of OpenSSL pointers: ``SSLCtxPointer``, ``SSLPointer``,
``X509StoreCtxPointer``, ``X509Pointer`` (from x509.py) and the base of
``Session`` and ``KeyPointer``, over the one lifetime rule of lifetime.py, whose
books they never touch themselves: ``_pin``/``_unpin`` around a use, ``_kill``
to end it.

Handles: a record OpenSSL keeps with each ``SSL`` and ``SSL_CTX`` (ex_data,
allocated and freed in C) holds an ``ffi.new_handle`` of a *weak reference* to
the wrapper, read and cleared only under the GIL: no wrapper <-> handle cycle,
and a trampoline that finds no wrapper fails closed.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple, TypeVar

from commssl._core.binding import ffi, lib
from commssl._core.lifetime import _BORROWED, _LOANED, _RELEASED, Life, made
from commssl._core.x509 import (
    X509Pointer,
    _checked,
    borrow_certificate,
    loan_certificate,
    outstanding_certificates,
    own_certificates,
    pin_certificate,
    release_certificate,
    release_vector,
)

_STATE = ffi.typeof("commssl_state *")
#: What a dead SSLPointer's ``_record`` points at (its verification results are read
#: only while it is pinned, so never after its death).
_BLANK_RECORD = ffi.new(_STATE, {"fail_depth": -1})
_NULL = ffi.NULL
_SSL = ffi.typeof("SSL *")
_SSL_CTX = ffi.typeof("SSL_CTX *")
_STORE_CTX = ffi.typeof("X509_STORE_CTX *")
_new = object.__new__
_T = TypeVar("_T")


def call_pinned(pointer: Life, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(cdata, *args)`` with ``pointer`` pinned for the call: its C object lives
    through it, whatever other threads release meanwhile."""
    cdata = pointer._pin()
    try:
        return fn(cdata, *args)
    finally:
        pointer._unpin()



class _Owned(Life):
    """Base of the wrappers a user releases with ``release()`` (``Session``,
    ``KeyPointer``): one reference, refused copies, a ``ResourceWarning`` when
    the collector finds one unreleased (then freed). Subclasses free in ``_dispose``."""

    __slots__ = ()
    _release_call = "release()"  # what the warning tells the user to call

    @property
    def released(self) -> bool:
        return self._dead

    def _refuse(self) -> NoReturn:
        raise ValueError(f"{self!r} was released")

    def release(self) -> None:
        """Drop the reference; a second release is a ``ValueError``."""
        if not self._kill():
            raise ValueError(f"{self!r} was already released")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 0x{self.address:x} {'released' if self._dead else 'owned'}>"

    def _warn_unreleased(self) -> bool:
        return True

    def __del__(self) -> None:
        if self._collected() < 0:
            return
        try:
            self._dispose()
            if self._warn_unreleased():
                warnings.warn(f"unreleased {self!r} garbage-collected; call {self._release_call}",
                              ResourceWarning, stacklevel=2)
        except Exception:  # interpreter shutdown
            pass


# -- X509_STORE_CTX -------------------------------------------------------------


class X509StoreCtxPointer(Life):
    """An ``X509_STORE_CTX*``, valid only inside the verify callback it was given to."""

    __slots__ = ("_ssl", "_loans")
    _ssl: Optional["SSLPointer"]  # the connection whose verification this is
    _loans: Optional[List[X509Pointer]]  # certificates lent from it, expired with it
    _waits = True

    def __init__(self, cdata: Any) -> None:
        """Wrap a raw ``X509_STORE_CTX*`` (borrowed: the caller vouches for it)."""
        self._start(_checked(cdata, _STORE_CTX), _BORROWED)
        self._ssl = None
        self._loans = None

    def _refuse(self) -> NoReturn:
        raise ValueError("store_ctx is only valid inside the verify callback it was passed to")


    def _end_loans(self) -> None:
        loans = self._loans
        if loans is not None:
            self._loans = None
            for cert in loans:
                cert._kill()


# -- SSL_CTX ----------------------------------------------------------------------


class SSLCtxPointer(Life):
    """An ``SSL_CTX*``. ``make_ssl_ctx`` makes them; ``destroy_ssl_ctx`` frees them."""

    # Every per-context Python value, in one record (the C side's is ``_record``): set by
    # the config modules, read by their trampolines through the connection's ``ctx``.
    __slots__ = ("verify", "conn_verify", "password", "_password_error", "alpn_select", "alpn_list", "keylog",
                 "cert_cb", "cert_request", "client_hello", "stapler", "session_ids", "_handle", "_record")
    verify: Optional[Callable[..., Any]]
    conn_verify: Optional[Callable[..., Any]]
    password: Optional[Callable[..., Any]]
    _password_error: Optional[BaseException]
    alpn_select: Optional[Callable[..., Any]]  # features.py
    alpn_list: bytes  # the server's ALPN preference list, wire format
    keylog: Optional[Callable[[str], Any]]
    cert_cb: Optional[Callable[..., Any]]  # lispworks_callbacks.py
    cert_request: Optional[Callable[..., Any]]
    client_hello: Optional[Callable[..., Any]]
    stapler: Any  # revocation.py: a server's OCSP staple callable
    session_ids: Optional[Tuple[bytes, Dict[Any, bytes]]]  # sessions.py: a server's session id contexts
    _record: Any  # commssl_ctx_state *: OpenSSL's (ex_data), freed with the SSL_CTX
    _handle: Any

    def __init__(self, cdata: Any) -> None:
        """Wrap an ``SSL_CTX*`` made elsewhere; commssl then takes one reference of its own."""
        _checked(cdata, _SSL_CTX)
        lib.SSL_CTX_up_ref(cdata)
        self._setup(cdata)

    def _setup(self, cdata: Any) -> None:
        self._start(cdata)
        self.verify = self.conn_verify = self.password = self._password_error = None
        self.alpn_select = self.keylog = self.cert_cb = self.cert_request = self.client_hello = None
        self.stapler = self.session_ids = None
        self.alpn_list = b""
        self._handle = ffi.new_handle(weakref.ref(self))
        self._record = lib.commssl_ctx_attach(cdata, self._handle)
        if self._record == _NULL:
            self._start(cdata, _RELEASED)
            lib.SSL_CTX_free(cdata)
            raise MemoryError("commssl_ctx_attach: out of memory")

    @classmethod
    def _adopt(cls, cdata: Any) -> "SSLCtxPointer":
        """Wrap a context whose one reference now belongs to the wrapper."""
        self = _new(cls)
        self._setup(cdata)
        return self

    def _refuse(self) -> NoReturn:
        raise ValueError(f"ctx {self!r} was destroyed")

    def _forget(self) -> None:
        rec = self._record
        if rec.py == self._handle:  # before any GIL release: no trampoline finds it now
            rec.py = _NULL

    def _dispose(self) -> None:
        self._forget()
        lib.SSL_CTX_free(self.cdata)

    def __del__(self) -> None:
        if self._collected() >= 0:
            try:
                self._dispose()
            except Exception:  # interpreter shutdown
                pass


_R = TypeVar("_R")


def context_of(cdata: Any) -> Optional[SSLCtxPointer]:
    """The live wrapper commssl has for an ``SSL_CTX*``, if any."""
    rec = lib.commssl_get_ctx_state(cdata)
    if rec == _NULL or rec.py == _NULL:
        return None
    ctx: Optional[SSLCtxPointer] = ffi.from_handle(rec.py)()
    return ctx if ctx is not None and not ctx._dead else None


# -- SSL --------------------------------------------------------------------------


class SSLPointer(Life):
    """An ``SSL*`` with commssl's per-connection record attached through ex_data.

    The record routes OpenSSL's verify callbacks to this wrapper, which knows
    the Python callable, the exception a callback raised, and the connection.
    """

    __slots__ = (
        "_record", "_handle", "ctx", "verify", "verifying", "_store",
        "exception", "_connection", "_claimed",
    )
    ctx: SSLCtxPointer
    verify: Optional[Callable[..., Any]]
    verifying: Any  # the X509_STORE_CTX* while a callback runs, else None
    _store: Optional[X509StoreCtxPointer]  # its wrapper (pinned by readers of the chain)
    exception: Optional[BaseException]
    _record: Any  # commssl_state *: OpenSSL's (ex_data) while alive, then a copy
    _handle: Any
    _connection: Optional["weakref.ReferenceType[Any]"]
    _claimed: bool  # a connection has it (ownership.claim_ssl)

    def __new__(cls, cdata: Any) -> "SSLPointer":
        """The wrapper of an ``SSL*``: the existing one if commssl knows it, else a new
        one holding a reference of its own."""
        _checked(cdata, _SSL)
        rec = lib.commssl_get_state(cdata)
        if rec != _NULL and rec.py != _NULL:
            existing: Optional[SSLPointer] = ffi.from_handle(rec.py)()
            if existing is not None:
                if existing._dead:  # its free is under way: no new reference to take
                    raise ValueError(f"cdata: the SSL of {existing!r} was freed")
                return existing
        lib.SSL_up_ref(cdata)
        self = _new(cls)
        ctx_cdata = lib.SSL_get_SSL_CTX(cdata)
        # The context's own wrapper knows its Python callbacks; without it, a record
        # that says Python must decide makes the trampolines fail closed.
        ctx = context_of(ctx_cdata)
        self._setup(cdata, ctx if ctx is not None else SSLCtxPointer(ctx_cdata))
        return self

    def _setup(self, cdata: Any, ctx: SSLCtxPointer, mode: int = 0) -> None:
        self._start(cdata)
        self.ctx = ctx  # keeps the context's Python callables alive
        self.verify = ctx.verify  # OpenSSL copies the context's callback at SSL_new
        self.verifying = None
        self._store = None
        self.exception = None
        self._connection = None
        self._claimed = False
        self._handle = ffi.new_handle(weakref.ref(self))
        # one C call makes, fills and attaches the record (fail_depth -1, fail_count 0;
        # it adds the context record's own py_verify and conn_verify)
        rec = self._record = lib.commssl_attach(
            cdata, self._handle, self.verify is not None, ctx.conn_verify is not None, mode)
        if rec == _NULL:
            self._start(cdata, _RELEASED)
            lib.SSL_free(cdata)
            raise MemoryError("commssl_attach: out of memory")

    @classmethod
    def _adopt(cls, cdata: Any, ctx: SSLCtxPointer, mode: int = 0) -> "SSLPointer":
        """Wrap a new SSL whose one reference now belongs to the wrapper (and set
        its ``SSL_MODE_*`` bits ``mode``)."""
        self = _new(cls)
        self._setup(cdata, ctx, mode)
        return self

    @classmethod
    def _lend(cls, cdata: Any, ctx: SSLCtxPointer) -> "SSLPointer":
        """A wrapper of an SSL made outside commssl, for one callback: it holds no
        reference, attaches no record, and ends (``_kill``, waiting for the
        operations inside) when the callback returns."""
        self = made(cls, cdata, _LOANED)
        self.ctx = ctx
        self.verify = ctx.verify
        self.verifying = None
        self._store = None
        self.exception = None
        self._connection = None
        self._claimed = False
        self._handle = None
        self._record = ffi.new(_STATE, {"fail_depth": -1})
        return self

    _waits = True  # only a lent SSL waits (an owned one has _OWNED life and defers its free)

    def _refuse(self) -> NoReturn:
        raise ValueError(f"ssl {self!r} was freed")

    @property
    def connection(self) -> Any:
        """The commssl connection (stream) using this SSL, or None."""
        ref = self._connection
        return ref() if ref is not None else None

    @connection.setter
    def connection(self, conn: Any) -> None:
        self._connection = weakref.ref(conn) if conn is not None else None

    def reset_verification(self) -> None:
        """Forget the last handshake's verification failure and pending exception."""
        rec = self._record
        rec.fail_depth = -1
        rec.fail_count = 0
        self.exception = None

    def take_exception(self) -> Optional[BaseException]:
        exc, self.exception = self.exception, None
        return exc

    def _forget(self) -> None:
        """Take the handle out of the record (under the GIL: a trampoline that runs
        later finds no wrapper and fails closed); the record, which OpenSSL frees
        with the SSL, is then never read again: a dead wrapper points at a blank one."""
        rec = self._record
        if self._handle is not None and rec.py == self._handle:
            rec.py = _NULL
        self._record = _BLANK_RECORD

    def _dispose(self) -> None:
        if self._handle is None:  # lent: nothing of ours to free
            return
        self._forget()
        lib.commssl_release_ssl(self.cdata)  # SSL_free: the record goes with the SSL

    def __del__(self) -> None:
        if self._collected() >= 0:
            try:
                self._dispose()  # the record's handle first, then SSL_free
            except Exception:  # interpreter shutdown
                pass


__all__ = [
    "SSLCtxPointer", "SSLPointer", "X509Pointer", "X509StoreCtxPointer",
    "borrow_certificate", "context_of", "loan_certificate", "outstanding_certificates",
    "own_certificates", "pin_certificate", "release_certificate", "release_vector",
]
