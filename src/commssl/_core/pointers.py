# Over 400 lines: the four pointer wrappers and the one lifetime rule (pin, kill, exactly one free)
# they share; the rule's invariants are read together here rather than across modules.
"""Typed wrappers of OpenSSL pointers, and the one lifetime rule they share.

The rule (shared/API.md, "Lifetimes and threads"): every operation *pins* the C
object for its whole duration and unpins it at the end; releasing, destroying or
expiring a wrapper *kills* it at once (operations that start afterwards raise
the documented exception), and the C object is freed by whoever ends last: the
killer when nobody is inside, else the last operation's unpin. Exactly one free.

Every wrapper has the same three internal methods:

- ``_pin() -> cdata``: the C pointer, counted as one user; raises if dead.
- ``_unpin()``: the end of that use; frees when it was the last of a dead wrapper.
- ``_kill() -> bool``: marks dead; True for the call that killed it; frees now
  when nobody is inside. Wrappers of memory that OpenSSL owns and frees on its
  own schedule (a verify callback's ``X509_STORE_CTX``, an ``SSL`` lent to a
  callback) cannot defer that free: their ``_kill`` waits for the operations
  inside to end (they are short reads), and frees nothing.

The books are one int per wrapper, ``_state``: the low three bits are its life
(``_OWNED``, ``_BORROWED``, ``_LOANED``, then the dead ``_RELEASED`` and
``_EXPIRED``), the rest counts the operations inside (``_USER`` each). It
changes only under one module-level lock, held for a few bytecodes; the lock is
reentrant, because a garbage collection (and the finalizers it runs) can start
inside the one region that loops (release_vector), and a finalizer that uses
commssl then takes the lock its own thread holds. A finalizer never takes that
lock blocking: ``__del__``
runs when no reference is left, so no operation can be inside and nobody else
can see the wrapper; it changes ``_state`` unlocked and defers its one shared
update (the outstanding count) to a list when the lock is busy (GC can run on
a thread that holds it).

Handles: a record OpenSSL keeps with each ``SSL`` and ``SSL_CTX`` (ex_data,
allocated and freed in C) holds an ``ffi.new_handle`` of a *weak reference* to
the wrapper, read and cleared only under the GIL: no wrapper <-> handle cycle,
and a trampoline that finds no wrapper fails closed.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from typing import Any, Callable, Generic, Iterable, List, NoReturn, Optional, TypeVar

from commssl._core.binding import ffi, lib
from commssl.errors import CertificateReleasedError

# lives (the low three bits of _state); >= _RELEASED is dead
_OWNED, _BORROWED, _LOANED, _RELEASED, _EXPIRED = 0, 1, 2, 3, 4
_LIFE = 7
_USER = 8  # one operation inside

_STATE = ffi.typeof("commssl_state *")
#: What a dead SSLPointer's ``_record`` points at (its verification results are read
#: only while it is pinned, so never after its death).
_BLANK_RECORD = ffi.new(_STATE, {"fail_depth": -1})
_NULL = ffi.NULL
_X509 = ffi.typeof("X509 *")
_SSL = ffi.typeof("SSL *")
_SSL_CTX = ffi.typeof("SSL_CTX *")
_STORE_CTX = ffi.typeof("X509_STORE_CTX *")

# Reentrant: a finalizer that the garbage collector runs inside a locked region (a
# loop's backward jump or an allocation can start a collection) may pin or release
# pointers itself; with a plain lock its thread would wait for itself forever. The
# regions that can be entered that way (release_vector's loop) stay consistent for it.
_lock = threading.RLock()
_acquire = _lock.acquire  # bound once: the pin is on every hot path
_release = _lock.release
_outstanding = 0
_uncounted: List[int] = []  # releases by finalizers that found the lock busy
# Set (``n``, a count) by a CertificateVector's finalizer while it drops the elements
# made from it: their finalizers count themselves here instead of warning, so a vector
# collected unreleased warns once for all it held (certvector.py).
_hushed = threading.local()


def _checked(cdata: object, ctype: Any) -> Any:
    """``cdata`` when it is a non-NULL ``ctype`` cdata, else the documented exception."""
    if not isinstance(cdata, ffi.CData) or ffi.typeof(cdata) is not ctype:
        raise TypeError(f"cdata must be an {ctype.cname!r} cdata, not {cdata!r}")
    if cdata == _NULL:
        raise ValueError(f"cdata must not be NULL (an {ctype.cname!r} is needed)")
    return cdata


class _Pointer:
    """Base of the pointer wrappers: ``.cdata`` is the cffi pointer."""

    __slots__ = ("cdata", "_state", "__weakref__")
    cdata: Any
    _state: int

    @property
    def address(self) -> int:
        """The C pointer as an integer, for other bindings of the same library."""
        return int(ffi.cast("uintptr_t", self.cdata))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 0x{self.address:x}{' dead' if self._dead else ''}>"

    @property
    def _dead(self) -> bool:
        return (self._state & _LIFE) >= _RELEASED

    # -- the lifetime rule ------------------------------------------------------

    def _refuse(self) -> NoReturn:
        raise ValueError(f"{self!r} was freed")

    def _pin(self) -> Any:
        """The C pointer, held alive until the matching ``_unpin``; raises if dead."""
        _acquire()
        s = self._state
        if (s & _LIFE) >= _RELEASED:
            _release()
            self._refuse()
        self._state = s + _USER
        _release()
        return self.cdata

    def _unpin(self) -> None:
        """End one use; the last use of a dead wrapper frees its C object."""
        _acquire()
        s = self._state = self._state - _USER
        _release()
        if _RELEASED <= s < _USER:  # dead, and that was the last user: exactly once
            self._dispose()

    def _kill(self) -> bool:
        """Mark dead (True for the call that did); free now when nobody is inside."""
        _acquire()
        s = self._state
        life = s & _LIFE
        if life >= _RELEASED or life == _BORROWED:  # dead already, or not ours to end
            _release()
            return False
        self._state = s - life + (_RELEASED if life == _OWNED else _EXPIRED)
        _release()
        if s < _USER:
            self._dispose()
        elif life == _LOANED and self._waits:
            self._drain()
        return True

    #: True where the C object is OpenSSL's to free whenever it likes: the end of
    #: the loan must wait for the operations inside instead of deferring a free.
    _waits = False

    def _drain(self) -> None:
        while self._state >= _USER:  # a read of one int: no lock needed to watch it
            time.sleep(0.0002)

    def _dispose(self) -> None:
        """Free the C object (called once, outside the lock, with nobody inside)."""

    def _collected(self) -> bool:
        """For ``__del__``: True when this wrapper owned its object and must free it
        now (it is marked released). No lock: nobody else can see the wrapper."""
        try:
            s = self._state
        except AttributeError:  # __init__ refused its argument
            return False
        if s & _LIFE != _OWNED:
            return False
        self._state = s + _RELEASED
        return True

    # -- no copies: a copy would be a second owner of one reference ---------------

    def __copy__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be copied (it stands for one C object)")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be copied (it stands for one C object)")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be pickled (it stands for a C object in this process)")



class _Owned(_Pointer):
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
        try:
            if self._dead:
                return
        except AttributeError:  # __init__ refused
            return
        try:
            self._state = _RELEASED  # nobody else holds it: no lock needed
            self._dispose()
            if self._warn_unreleased():
                warnings.warn(f"unreleased {self!r} garbage-collected; call {self._release_call}",
                              ResourceWarning, stacklevel=2)
        except Exception:  # interpreter shutdown
            pass


# -- X509 ---------------------------------------------------------------------------


class X509Pointer(_Pointer):
    """An ``X509*``, either owned (release it) or borrowed (read it while lent).

    A pointer lent by a verify callback holds a reference of its own until its
    loan ends, so a thread reading it then finishes on a live certificate.
    """

    __slots__ = ()

    def __init__(self, cdata: Any) -> None:
        """Wrap a raw ``X509*`` as a borrowed pointer (commssl takes no reference)."""
        self.cdata = _checked(cdata, _X509)
        self._state = _BORROWED

    @property
    def released(self) -> bool:
        """True once released (or, for a borrowed pointer, once OpenSSL took it back)."""
        return (self._state & _LIFE) >= _RELEASED

    @property
    def owned(self) -> bool:
        """True while this pointer holds a reference that must be released."""
        return (self._state & _LIFE) == _OWNED

    def __repr__(self) -> str:
        state = ("owned", "borrowed", "borrowed", "released", "expired")[self._state & _LIFE]
        return f"<X509Pointer 0x{self.address:x} {state}>"

    def __copy__(self) -> NoReturn:
        raise TypeError("X509Pointer cannot be copied: use copy_certificate() for a new owned reference")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError("X509Pointer cannot be copied: use copy_certificate() for a new owned reference")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("X509Pointer cannot be pickled: use copy_certificate() for a new owned reference "
                        "in this process, or the certificate's DER bytes")

    def _refuse(self) -> NoReturn:
        raise CertificateReleasedError(f"cert {self!r} was released")

    def _kill(self) -> bool:
        """Release an owned pointer or end a loan (an owned one leaves the count)."""
        global _outstanding
        _acquire()
        s = self._state
        life = s & _LIFE
        if life >= _RELEASED or life == _BORROWED:
            _release()
            return False
        if life == _OWNED:
            self._state = s + (_RELEASED - _OWNED)
            _outstanding -= 1
        else:
            self._state = s + (_EXPIRED - _LOANED)
        _release()
        if s < _USER:
            lib.X509_free(self.cdata)
        return True

    def _dispose(self) -> None:
        lib.X509_free(self.cdata)

    def __del__(self) -> None:
        global _outstanding
        try:
            s = self._state  # not getattr(): this runs for every pointer
        except AttributeError:  # __init__ refused its argument
            return
        life = s & _LIFE
        if life != _OWNED and life != _LOANED:
            return
        # Nobody else holds this wrapper: no operation is inside, nobody sees _state.
        self._state = s + (_RELEASED - life)
        try:
            lib.X509_free(self.cdata)
            if life == _OWNED:
                if _acquire(False):  # never wait: GC may run inside a locked region
                    _outstanding -= 1
                    _release()
                else:
                    _uncounted.append(1)
                hushed = _hushed.__dict__
                if "n" in hushed:  # the vector it came from warns for it
                    hushed["n"] += 1
                    return
                described = f"<X509Pointer 0x{self.address:x} owned>"
                warnings.warn(f"unreleased {described} garbage-collected; call release_certificate()",
                              ResourceWarning, stacklevel=2)
        except Exception:  # interpreter shutdown: modules may be gone
            pass


_new = object.__new__


def own_certificates(cdatas: Iterable[Any]) -> List[X509Pointer]:
    """Wrap ``X509*`` values that each already carry one new reference."""
    global _outstanding
    out = []
    for c in cdatas:
        p = _new(X509Pointer)
        p.cdata = c
        p._state = _OWNED
        out.append(p)
    n = len(out)
    _acquire()
    _outstanding += n
    _release()
    return out


def borrow_certificate(cdata: Any) -> X509Pointer:
    """A borrowed pointer that holds no reference (the caller vouches for it)."""
    p = _new(X509Pointer)
    p.cdata = cdata
    p._state = _BORROWED
    return p


def loan_certificate(cdata: Any) -> X509Pointer:
    """A borrowed pointer for ``cdata``, whose one new reference (taken by the
    caller) it drops when its loan ends (``_kill``) or when it is collected."""
    p = _new(X509Pointer)
    p.cdata = cdata
    p._state = _LOANED
    return p


def expire(pointers: Iterable[X509Pointer]) -> None:
    """End the loan of lent pointers (their owner may now free them)."""
    for p in pointers:
        p._kill()


def live_certificate(cert: object, argument: str = "cert") -> Any:
    """The ``X509*`` of a usable pointer, or the documented exception (unpinned:
    for callers that pin themselves or only check)."""
    if type(cert) is not X509Pointer:
        raise TypeError(f"{argument} must be an X509Pointer, not {type(cert).__name__}")
    if (cert._state & _LIFE) >= _RELEASED:
        raise CertificateReleasedError(f"{argument} {cert!r} was released")
    return cert.cdata


def pin_certificate(cert: object, argument: str = "cert") -> Any:
    """``cert._pin()`` with the documented exceptions naming ``argument``."""
    if type(cert) is not X509Pointer:
        raise TypeError(f"{argument} must be an X509Pointer, not {type(cert).__name__}")
    _acquire()
    s = cert._state
    if (s & _LIFE) >= _RELEASED:
        _release()
        raise CertificateReleasedError(f"{argument} {cert!r} was released")
    cert._state = s + _USER
    _release()
    return cert.cdata


def _not_releasable(cert: X509Pointer, state: int) -> NoReturn:
    if state & _LIFE in (_BORROWED, _LOANED):
        raise CertificateReleasedError(f"{cert!r} is borrowed; only owned pointers can be released")
    raise CertificateReleasedError(f"{cert!r} was already released")


def release_vector(vec: Iterable[Optional[X509Pointer]]) -> None:
    """``release_certificate`` on each pointer of ``vec`` that is not ``None``, all
    or nothing: in one pass under the lock (one round trip for all), each is
    checked and marked released; at the first that cannot be released (not an
    X509Pointer, not owned, or listed twice) the marks are undone and the
    exception names it. A pointer that an operation is reading is freed by that
    operation's end."""
    global _outstanding
    marked: List[X509Pointer] = []
    free_now: List[Any] = []
    refused = False
    _acquire()
    try:
        for cert in vec:
            if cert is None:
                continue
            # borrowed, released, or listed twice (marked just now): refused, as is a non-pointer
            if type(cert) is not X509Pointer or cert._state & _LIFE != _OWNED:
                for done in marked:
                    done._state -= _RELEASED
                refused = True
                break
            s = cert._state
            cert._state = s + _RELEASED
            marked.append(cert)
            if s < _USER:
                free_now.append(cert.cdata)
        else:
            _outstanding -= len(marked)
    finally:
        _release()
    if refused:
        _refuse_vector(vec)
    free = lib.X509_free
    for cdata in free_now:
        free(cdata)


def _refuse_vector(vec: Iterable[Optional[X509Pointer]]) -> NoReturn:
    seen = set()
    for i, cert in enumerate(vec):
        if cert is None:
            continue
        argument = f"vec[{i}]"
        if type(cert) is not X509Pointer:
            raise TypeError(f"{argument} must be an X509Pointer, not {type(cert).__name__}")
        if id(cert) in seen:
            raise CertificateReleasedError(f"{argument} {cert!r} is in vec twice")
        seen.add(id(cert))
        life = cert._state & _LIFE
        if life == _BORROWED or life == _LOANED:
            raise CertificateReleasedError(
                f"{argument} {cert!r} is borrowed; only owned pointers can be released")
        if life != _OWNED:
            raise CertificateReleasedError(f"{argument} {cert!r} was released")
    raise CertificateReleasedError("vec changed while it was being released; nothing was released")


def release_certificate(cert: X509Pointer) -> None:
    """Drop the reference an owned pointer holds (``X509_free``).

    Releasing it again, or releasing a borrowed pointer, raises
    ``CertificateReleasedError`` and frees nothing.
    """
    global _outstanding
    if type(cert) is not X509Pointer:
        raise TypeError(f"cert must be an X509Pointer, not {type(cert).__name__}")
    _acquire()
    s = cert._state
    if s & _LIFE == _OWNED:
        cert._state = s + _RELEASED
        _outstanding -= 1
    _release()
    if s & _LIFE != _OWNED:
        _not_releasable(cert, s)
    if s < _USER:
        lib.X509_free(cert.cdata)


def outstanding_certificates() -> int:
    """Owned pointers handed out and not yet released, process-wide."""
    global _outstanding
    with _lock:
        n = len(_uncounted)
        if n:
            del _uncounted[:n]
            _outstanding -= n
        return _outstanding


# -- X509_STORE_CTX -------------------------------------------------------------


class X509StoreCtxPointer(_Pointer):
    """An ``X509_STORE_CTX*``, valid only inside the verify callback it was given to."""

    __slots__ = ("_ssl", "_loans")
    _ssl: Optional["SSLPointer"]  # the connection whose verification this is
    _loans: Optional[List[X509Pointer]]  # certificates lent from it, expired with it
    _waits = True

    def __init__(self, cdata: Any) -> None:
        """Wrap a raw ``X509_STORE_CTX*`` (borrowed: the caller vouches for it)."""
        self.cdata = _checked(cdata, _STORE_CTX)
        self._state = _BORROWED
        self._ssl = None
        self._loans = None

    def _refuse(self) -> NoReturn:
        raise ValueError("store_ctx is only valid inside the verify callback it was passed to")

    def _end(self) -> None:
        """The callback returned: refuse new operations, wait for those inside,
        then end the loans of the certificates it lent (``_kill``, inlined: this
        runs per certificate per handshake)."""
        _acquire()
        s = self._state
        self._state = s + (_EXPIRED - _LOANED)
        _release()
        if s >= _USER:
            self._drain()
        if self._loans is not None:
            self._end_loans()

    def _end_loans(self) -> None:
        loans = self._loans
        if loans is not None:
            self._loans = None
            for cert in loans:
                cert._kill()


def lend_store_ctx(cdata: Any, sslp: "SSLPointer") -> X509StoreCtxPointer:
    sp = _new(X509StoreCtxPointer)
    sp.cdata, sp._state, sp._ssl, sp._loans = cdata, _LOANED, sslp, None
    return sp


# -- SSL_CTX ----------------------------------------------------------------------


class SSLCtxPointer(_Pointer):
    """An ``SSL_CTX*``. ``make_ssl_ctx`` makes them; ``destroy_ssl_ctx`` frees them."""

    __slots__ = ("verify", "conn_verify", "password", "_password_error", "_handle", "_record")
    verify: Optional[Callable[..., Any]]
    conn_verify: Optional[Callable[..., Any]]
    password: Optional[Callable[..., Any]]
    _password_error: Optional[BaseException]
    _record: Any  # commssl_ctx_state *: OpenSSL's (ex_data), freed with the SSL_CTX
    _handle: Any

    def __init__(self, cdata: Any) -> None:
        """Wrap an ``SSL_CTX*`` made elsewhere; commssl then takes one reference of its own."""
        _checked(cdata, _SSL_CTX)
        lib.SSL_CTX_up_ref(cdata)
        self._setup(cdata)

    def _setup(self, cdata: Any) -> None:
        self.cdata = cdata
        self._state = _OWNED
        self.verify = None
        self.conn_verify = None
        self.password = None
        self._password_error = None
        self._handle = ffi.new_handle(weakref.ref(self))
        self._record = lib.commssl_ctx_attach(cdata, self._handle)
        if self._record == _NULL:
            self._state = _RELEASED
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
        if self._collected():
            try:
                self._dispose()
            except Exception:  # interpreter shutdown
                pass


_R = TypeVar("_R")


class ContextRecords(Generic[_R]):
    """What a module keeps beside each ``SSLCtxPointer`` (its Python callbacks, say):
    one record per context wrapper, made by ``make(ctx)`` on first use, gone with the
    wrapper (weakly keyed). ``get`` is the lock-free read of trampolines and handshakes."""

    __slots__ = ("_make", "_records", "_lock")

    def __init__(self, make: Callable[[SSLCtxPointer], _R]) -> None:
        self._make = make
        self._records: "weakref.WeakKeyDictionary[SSLCtxPointer, _R]" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, ctx: SSLCtxPointer) -> Optional[_R]:
        return self._records.get(ctx)

    def of(self, ctx: SSLCtxPointer) -> _R:
        """The record of ``ctx``, made (once, under the lock) if it has none."""
        record = self._records.get(ctx)
        if record is None:
            with self._lock:
                record = self._records.get(ctx)
                if record is None:
                    record = self._records[ctx] = self._make(ctx)
        return record


def context_of(cdata: Any) -> Optional[SSLCtxPointer]:
    """The live wrapper commssl has for an ``SSL_CTX*``, if any."""
    rec = lib.commssl_get_ctx_state(cdata)
    if rec == _NULL or rec.py == _NULL:
        return None
    ctx: Optional[SSLCtxPointer] = ffi.from_handle(rec.py)()
    return ctx if ctx is not None and not ctx._dead else None


# -- SSL --------------------------------------------------------------------------


class SSLPointer(_Pointer):
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
        self.cdata = cdata
        self._state = _OWNED
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
            self._state = _RELEASED
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
        self = _new(cls)
        self.cdata = cdata
        self._state = _LOANED
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

    def in_callback(self, what: str) -> None:
        """Raise ``ValueError`` while one of this SSL's verify callbacks runs:
        OpenSSL is then inside a handshake on it, and freeing it or starting
        another operation on it would pull the ground from under OpenSSL."""
        if self.verifying is not None:
            raise ValueError(f"{what} is not allowed inside the connection's own verify callback "
                             "(its handshake is running); return False from the callback to reject the peer")

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
        if self._collected():
            try:
                self._dispose()  # the record's handle first, then SSL_free
            except Exception:  # interpreter shutdown
                pass
