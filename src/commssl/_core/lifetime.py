"""The one lifetime rule of commssl's C pointers: the only module that reads or writes their
books, with the hot paths that need them (the certificates' count, the peer chain's copy and
release, the verify callback's store loan). The wrapper classes are in pointers.py.

The rule (docs/guide/threads.md): every operation *pins* the C object for its whole duration
and unpins it at the end; releasing, destroying or expiring a wrapper *kills* it at once
(operations that start afterwards raise), and whoever ends last frees the C object: the killer
when nobody is inside, else the last unpin. Exactly one free. Memory OpenSSL frees on its own
schedule (a verify callback's ``X509_STORE_CTX``, an ``SSL`` lent to a callback) cannot wait:
a loan's end waits for those inside instead.

The books are one int per wrapper, ``_state``: the low three bits are its life (``_OWNED``,
``_BORROWED``, ``_LOANED``, then the dead ``_RELEASED`` and ``_EXPIRED``), the rest counts the
operations inside (``_USER`` each). It changes only under one reentrant lock (a collection
may start inside a locked region, and a finalizer may use commssl), held for a few bytecodes
and never across a C call (the chain copy waits for an SSL's operation lock, whose holder's
verify callback may take this one). A finalizer never waits for it: ``__del__`` runs when
nobody else sees the wrapper, so it changes ``_state`` unlocked and defers the count's update
when the lock is busy.
"""

from __future__ import annotations

import sys
import sysconfig
import threading
import time
from collections import deque
from typing import Any, Iterable, List, NoReturn, Type, TypeVar

from commssl._core.binding import ffi, lib
from commssl._core.unique import Unique

# lives (the low three bits of _state); >= _RELEASED is dead
_OWNED, _BORROWED, _LOANED, _RELEASED, _EXPIRED = 0, 1, 2, 3, 4
_LIFE = 7
_USER = 8  # one operation inside

_lock = threading.RLock()
_acquire = _lock.acquire  # bound once: the pin is on every hot path
_release = _lock.release
_outstanding = 0  # owned certificates (counted wrappers) handed out and not released
_uncounted: List[int] = []  # releases by finalizers that found the lock busy

_new = object.__new__
_NULL = ffi.NULL
_ARRAY = ffi.typeof("X509 *[]")
_X509_free = lib.X509_free
_free_certs = lib.commssl_free_certs
_copy_peer_chain = lib.commssl_copy_peer_chain
_spares: Any = deque(maxlen=64)  # verify_with_store's spare store ctx wrappers (atomic pop, append)
_spare_pop, _spare_push = _spares.pop, _spares.append
_refs: Any = getattr(sys, "getrefcount", None)
_SOLE = _refs is not None and not sysconfig.get_config_var("Py_GIL_DISABLED")


class Life(Unique):
    """Base of the pointer wrappers: ``.cdata`` is the cffi pointer, ``_state`` its books."""

    __slots__ = ("cdata", "_state", "__weakref__")
    cdata: Any
    _state: int
    _counted = False  # certificates: an owned one is in the outstanding count, a loan holds a reference
    _waits = False  # a loan of memory OpenSSL frees when it likes: its end waits for those inside

    def _start(self, cdata: Any, life: int = _OWNED) -> None:
        """Open the books of a new wrapper (nobody else sees it yet)."""
        self.cdata, self._state = cdata, life

    @property
    def address(self) -> int:
        """The C pointer as an integer, for other bindings of the same library."""
        return int(ffi.cast("uintptr_t", self.cdata))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 0x{self.address:x}{' dead' if self._dead else ''}>"

    @property
    def _life(self) -> int:
        return self._state & _LIFE

    @property
    def _dead(self) -> bool:
        return (self._state & _LIFE) >= _RELEASED

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
        """Mark dead (True for the call that did); free now when nobody is inside.
        A borrowed wrapper is not ours to end; a loan's end waits when ``_waits``."""
        global _outstanding
        _acquire()
        s = self._state
        life = s & _LIFE
        if life >= _RELEASED or life == _BORROWED:
            _release()
            return False
        if life == _OWNED:
            self._state = s + _RELEASED
            if self._counted:
                _outstanding -= 1
        else:
            self._state = s + (_EXPIRED - _LOANED)
        _release()
        if s < _USER:
            self._dispose()
        elif life == _LOANED and self._waits:
            self._drain()
        return True

    def _drain(self) -> None:
        while self._state >= _USER:  # a read of one int: no lock needed to watch it
            time.sleep(0.0002)

    def _dispose(self) -> None:
        """Free the C object (called once, outside the lock, with nobody inside)."""

    def _collected(self) -> int:
        """For ``__del__`` (no lock: nobody else sees the wrapper): its life, now marked
        dead, when it holds a reference to free now (owned, or a counted loan); else -1."""
        try:
            s = self._state
        except AttributeError:  # __init__ refused its argument
            return -1
        life = s & _LIFE
        if life != _OWNED and (life != _LOANED or not self._counted):
            return -1
        self._state = s + (_RELEASED - life)
        if life == _OWNED and self._counted:
            _uncount(1)
        return life


def _uncount(n: int) -> None:
    """A finalizer's ``_outstanding -= n``: never waits (GC may run inside a locked region)."""
    global _outstanding
    if _acquire(False):
        _outstanding -= n
        _release()
    else:
        _uncounted.extend([1] * n)


_L = TypeVar("_L", bound=Life)


def made(cls: Type[_L], cdata: Any, life: int) -> _L:
    """A new ``cls`` wrapper of ``cdata`` with ``life`` (not counted: see ``own``)."""
    p = _new(cls)
    p.cdata, p._state = cdata, life
    return p


def own(cls: Type[_L], cdatas: Iterable[Any]) -> List[_L]:
    """Owned, counted wrappers of ``cdatas``, each already carrying one new reference."""
    global _outstanding
    out = [made(cls, c, _OWNED) for c in cdatas]
    _acquire()
    _outstanding += len(out)
    _release()
    return out


def release_owned(p: Life) -> int:
    """Release an owned counted pointer (freed now unless one is inside); its life before."""
    global _outstanding
    _acquire()
    s = p._state
    if s & _LIFE == _OWNED:
        p._state = s + _RELEASED
        _outstanding -= 1
    _release()
    if s & _LIFE == _OWNED and s < _USER:
        p._dispose()
    return s & _LIFE


def verify_with_store(sslp: Any, cls: Any, store: Any, decide: Any, ok: int, whole_chain: bool) -> Any:
    """``decide(preverify_ok, store_ctx)`` (``decide(conn)``: the whole chain) with the store
    lent as a ``cls`` (the one caller's, reused); then the loan ends: new reads refused, other
    threads' reads waited for (OpenSSL frees the store next), the certificates it lent ended."""
    try:
        sp = _spare_pop()  # a wrapper nobody else can reach (see the end)
    except IndexError:
        sp = _new(cls)
    sp.cdata, sp._state, sp._ssl, sp._loans = store, _LOANED, sslp, None
    alone = _refs(sp)  # our references only: nobody else sees it yet
    outer, outer_sp = sslp.verifying, sslp._store
    sslp.verifying, sslp._store = store, sp
    ended = False
    try:
        if whole_chain:
            verdict = decide(conn if (conn := sslp.connection) is not None else sslp)
        else:
            verdict = decide(ok != 0, sp)
        sslp.verifying, sslp._store = outer, outer_sp  # unpublished: found only by those who hold it
        # No lock when nothing can be pinned: every pin, and every reader of sslp._store, holds a
        # strong reference throughout; so our references alone (the count is exact and read at
        # once under the GIL), no weak reference and no loan mean nobody is inside or can get in,
        # now or later: it becomes a spare. Free-threaded builds split the count in two fields
        # another thread may move a reference between as we read: they always take the lock.
        if _SOLE and _refs(sp) == alone and sp._state == _LOANED and sp._loans is None \
                and sp.__weakref__ is None:
            sp._state, sp._ssl, ended = _EXPIRED, None, True
            _spare_push(sp)
    finally:
        if not ended:  # kept, pinned or raised: the locked end (waits), and never reused
            sslp.verifying, sslp._store = outer, outer_sp
            sp._kill()
            sp._end_loans()
    return verdict


def outstanding_certificates() -> int:
    """Owned counted pointers handed out and not yet released, process-wide."""
    global _outstanding
    with _lock:
        n = len(_uncounted)
        if n:
            del _uncounted[:n]
            _outstanding -= n
        return _outstanding


# -- a CertificateVector's books (certvector.py): a slot is HELD (the vector's reference, no object
# yet), a pointer or None, changed only under the lock (so an element's making and the vector's
# release never both take one reference). Held slots are never pinned.
HELD: Any = object()  # a slot whose reference the vector still holds (no object made)
_KEEP: Any = object()


def copy_peer_chain(sslp: Any, vec: Any, size: int) -> None:
    """Fill ``vec``, a new CertificateVector with ``size`` slots, with the chain the peer sent (during
    a verify callback: the one being verified): one reference each, owned by the vector, counted."""
    global _outstanding
    vec._n, vec._items, vec._state = 0, None, _OWNED
    sslp._pin()
    # Pinned, not under the lock: the C copy may wait for the SSL's operation lock, held by a
    # handshake in another thread whose verify callback takes this lock (a deadlock).
    try:
        sp = sslp._store  # a verify callback runs: its store holds the chain
        n = _copy_peer_chain(sslp.cdata, _NULL, vec._array, size) if sp is None else -1
        if not 0 <= n <= size:
            n = _copy_pinned(sslp, sp, vec, size)
    except BaseException:
        sslp._unpin()
        raise
    _acquire()
    vec._n = n
    s = sslp._state = sslp._state - _USER
    _outstanding += n
    _release()
    if _RELEASED <= s < _USER:  # freed meanwhile: this was its last user
        sslp._dispose()


def _copy_pinned(sslp: Any, sp: Any, vec: Any, size: int) -> int:
    """``copy_peer_chain`` from ``sp``, a running verify callback's store, or of a longer chain."""
    store = _NULL
    if sp is not None:
        try:
            store = sp._pin()
        except ValueError:  # the callback just returned: the SSL holds the chain
            sp = None
    try:
        n = _copy_peer_chain(sslp.cdata, store, vec._array, size)
        while n > size:  # copied nothing: a longer chain than guessed
            size = n
            vec._array = ffi.new(_ARRAY, size)
            n = _copy_peer_chain(sslp.cdata, store, vec._array, size)
    finally:
        if sp is not None:
            sp._unpin()
    return int(n)


def vector_slot(vec: Any, i: int, cls: Type[_L], put: Any = _KEEP) -> _L:
    """Slot ``i`` of a CertificateVector, made now (a ``cls``) if only its reference is held (the
    reference moves to it, owned while the vector is). With ``put``, the slot holds ``put`` then."""
    _acquire()
    try:
        items = vec._items
        if items is None:
            items = vec._items = [HELD] * vec._n
        got = items[i]
        if got is HELD:
            got = items[i] = made(cls, vec._array[i], vec._state)
        if put is not _KEEP:
            items[i] = put
    finally:
        _release()
    return got  # type: ignore[no-any-return]


def release_unread(vec: Any) -> bool:
    """Release a CertificateVector nobody read a slot of with one C call; else False (nothing done)."""
    global _outstanding
    _acquire()
    if vec._items is not None or vec._state != _OWNED:
        _release()
        return False
    vec._state = _RELEASED
    _outstanding -= vec._n
    _release()
    _free_certs(vec._array, vec._n)
    return True


def release_all(vec: Any, cls: Type[Life], vector: bool, strict: bool = True) -> bool:
    """Release each ``cls`` of ``vec`` (a list or tuple; with ``vector``, a CertificateVector's slots)
    but ``None``, all or nothing: one locked pass marks each; at the first that cannot be (not a
    ``cls``, not owned, listed twice, released with its vector) the marks are undone and False
    returned (``strict`` false: skipped). Frees outside."""
    global _outstanding
    marked: List[Any] = []
    free_now: List[Any] = []
    held = 0
    _acquire()
    try:
        items, alive = vec, False
        if vector:
            alive = vec._state == _OWNED
            items = vec._items
            if items is None:
                items = vec._items = [HELD] * vec._n
        for k, got in enumerate(items):
            if got is None:
                continue
            if got is HELD:
                if alive:
                    free_now.append(vec._array[k])
                    held += 1
                    continue
            elif type(got) is cls and got._state & _LIFE == _OWNED:
                s = got._state
                got._state = s + _RELEASED
                marked.append(got)
                if s < _USER:
                    free_now.append(got.cdata)
                continue
            if strict:  # released, borrowed, or listed twice (marked just now)
                for done in marked:
                    done._state -= _RELEASED
                return False
        _outstanding -= len(marked) + held
        if vector:
            vec._state = _RELEASED
    finally:
        _release()
    for cdata in free_now:
        _X509_free(cdata)
    return True


def collect_vector(vec: Any) -> int:
    """For the ``__del__`` of a CertificateVector still owned: how many held slots it freed."""
    vec._state = _RELEASED  # nobody else holds the vector: no lock for its own books
    items, n, array = vec._items, vec._n, vec._array
    freed = 0
    if items is None:
        freed = n
        if n:
            _free_certs(array, n)
    else:
        for k in range(n):
            if items[k] is HELD:
                _X509_free(array[k])
                freed += 1
    if freed:
        _uncount(freed)
    return freed

