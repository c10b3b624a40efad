"""The peer's certificates as one owned object: ``CertificateVector``.

``ssl_connection_copy_peer_certificates`` copies the chain with one C call into
one C array of ``X509*``, each with a reference of its own. The vector owns
those references until an element is read: ``vec[i]`` then makes the
``X509Pointer`` for that slot (once; later reads return the same object), and the
reference moves to it. So copying and releasing a chain makes one Python object
and runs one finalizer, not one per certificate, while every element a caller
sees is an ordinary owned ``X509Pointer``.

The books (pointers.py's rule): a slot is ``_HELD`` (the vector's reference, no
object yet), an ``X509Pointer`` (whose own ``_state`` says who owns what) or
``None``. Slots change only under the pointers' lock, so making an element and
releasing the vector never both take one reference. A held slot is never
pinned (nothing can read it without making its object first), so the vector
needs no count of users: its elements carry their own. The outstanding count
counts each unreleased certificate once, held or made.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Iterator, List, NoReturn, Optional, Union, overload

from commssl._core import pointers as _p
from commssl._core.binding import ffi, lib
from commssl._core.pointers import _LIFE, _OWNED, _RELEASED, _USER, X509Pointer

_acquire = _p._acquire
_release = _p._release
_new = object.__new__
_free_certs = lib.commssl_free_certs
_X509_free = lib.X509_free


#: Arrays of 16 ``X509*`` (``_CHAIN_GUESS``) that collected vectors leave for the next
#: copy: one allocation less per copy. Appended and popped under the GIL only (atomic).
_ARRAYS: List[Any] = []
_POOL = 64
_GUESS = 16


class _Held:
    """The mark of a slot whose reference the vector still holds (no object made)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<held>"


_HELD: Any = _Held()


class CertificateVector(Sequence[X509Pointer]):
    """The certificates the peer sent, leaf first, as LispWorks' vector of ``X509*``.

    It indexes (ints and slices), iterates, has a length, compares equal to a
    list of the same pointers, and each element is an owned ``X509Pointer``
    (made when first read; the same object on every read). Release it with
    ``release_certificates_vector(vec)`` (every element not set to ``None``, all
    or nothing), or elements one by one with ``release_certificate(vec[i])``.
    ``vec[i] = None`` keeps that certificate out of the vector's release: take it
    out first (``c = vec[i]; vec[i] = None``) and ``c`` stays yours to release.
    Collected unreleased, it frees what it still owns with one ``ResourceWarning``.
    It cannot be copied or pickled (a copy would be a second owner): ``list(vec)``
    gives a plain list of its elements.
    """

    __slots__ = ("_array", "_n", "_items", "_state")
    _array: Any  # X509 *[] (owned by cffi): the addresses, readable after the frees
    _n: int
    _items: Optional[List[Any]]  # None until a slot is read or set: then one entry per slot
    _state: int  # _OWNED until released (or collected), then _RELEASED

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> X509Pointer: ...

    @overload
    def __getitem__(self, index: slice) -> List[X509Pointer]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[X509Pointer, List[X509Pointer]]:
        if type(index) is int:
            items = self._items
            if items is not None:
                got = items[index]
                if got is not _HELD:
                    return got  # type: ignore[no-any-return]
            return self._make(self._slot(index))
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(self._n))]
        return self[self._slot(index)]

    def _slot(self, index: object) -> int:
        """``index`` as a slot number, or the exceptions a list raises."""
        if isinstance(index, slice) or not hasattr(index, "__index__"):
            raise TypeError(f"CertificateVector indices must be integers, not {type(index).__name__}")
        i: int = index.__index__()
        n = self._n
        if not -n <= i < n:
            raise IndexError("CertificateVector index out of range")
        return i + n if i < 0 else i

    def _items_locked(self) -> List[Any]:
        items = self._items
        if items is None:
            items = self._items = [_HELD] * self._n
        return items

    def _make(self, i: int) -> X509Pointer:
        """The element of slot ``i``, made now if only its reference is held: owned
        (the reference moves to it) while the vector is, else released."""
        _acquire()
        try:
            items = self._items_locked()
            got = items[i]
            if got is _HELD:
                got = _new(X509Pointer)
                got.cdata = self._array[i]
                got._state = self._state  # _OWNED, or _RELEASED: the vector freed it
                items[i] = got
        finally:
            _release()
        return got  # type: ignore[no-any-return]

    def __setitem__(self, index: int, value: Optional[X509Pointer]) -> None:
        """``vec[i] = None`` (or another pointer) as with a list: the element that was
        there is dropped from the vector, and collected if nothing else holds it."""
        if value is not None and type(value) is not X509Pointer:
            raise TypeError(f"a CertificateVector holds X509Pointer or None, not {type(value).__name__}")
        i = self._slot(index)
        _acquire()
        try:
            items = self._items_locked()
            old = items[i]
            if old is _HELD:  # as a list's element would be: an owned pointer nobody holds
                old = _new(X509Pointer)
                old.cdata = self._array[i]
                old._state = self._state
            items[i] = value
        finally:
            _release()
        # Outside the lock: dropped unreleased, its finalizer frees it with a warning.
        del old

    def __iter__(self) -> Iterator[X509Pointer]:
        for i in range(self._n):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, CertificateVector)):
            return len(other) == self._n and all(a is b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __add__(self, other: "Sequence[Optional[X509Pointer]]") -> List[Optional[X509Pointer]]:
        """A list of this vector's elements then ``other``'s (as ``list + list``)."""
        if not isinstance(other, (list, CertificateVector)):
            return NotImplemented
        return [*self, *other]

    def __radd__(self, other: "Sequence[Optional[X509Pointer]]") -> List[Optional[X509Pointer]]:
        if not isinstance(other, list):
            return NotImplemented
        return [*other, *self]

    def __repr__(self) -> str:
        items = self._items
        alive = "owned" if self._state == _OWNED else "released"
        shown = []
        for i in range(self._n):
            got = items[i] if items is not None else _HELD
            if got is _HELD:
                shown.append(f"<X509Pointer 0x{int(ffi.cast('uintptr_t', self._array[i])):x} {alive}>")
            else:
                shown.append(repr(got))
        return f"CertificateVector([{', '.join(shown)}])"

    def __copy__(self) -> NoReturn:
        raise TypeError("CertificateVector cannot be copied (it owns its certificates): use list(vec)")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError("CertificateVector cannot be copied (it owns its certificates): use list(vec)")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("CertificateVector cannot be pickled: use the certificates' DER bytes")

    # -- release ---------------------------------------------------------------------

    def _release_all(self) -> None:
        """``release_certificates_vector(self)``: all or nothing."""
        _acquire()
        if self._items is None and self._state == _OWNED:  # nothing read: every slot held
            self._state = _RELEASED
            _p._outstanding -= self._n
            _release()
            _free_certs(self._array, self._n)
            return
        _release()
        self._release_slots(True)

    def _release_rest(self) -> None:
        """Release every element still owned, skipping ``None``, released and
        borrowed ones (the exit of ``peer_certificates``)."""
        self._release_slots(False)

    def _release_slots(self, strict: bool) -> None:
        marked: List[X509Pointer] = []
        free_now: List[Any] = []
        held: List[int] = []
        refused = False
        _acquire()
        try:
            alive = self._state == _OWNED
            items = self._items_locked()
            for k in range(self._n):
                got = items[k]
                if got is None:
                    continue
                if got is _HELD:
                    if alive:
                        held.append(k)
                    elif strict:  # released with the vector before
                        refused = True
                        break
                    continue
                # released, borrowed, or in the vector twice (marked just now)
                s = got._state
                if type(got) is not X509Pointer or s & _LIFE != _OWNED:
                    if strict:
                        refused = True
                        break
                    continue
                got._state = s + _RELEASED
                marked.append(got)
                if s < _USER:
                    free_now.append(got.cdata)
            if refused:
                for done in marked:
                    done._state -= _RELEASED
            else:
                self._state = _RELEASED
                _p._outstanding -= len(marked) + len(held)
        finally:
            _release()
        if refused:
            _p._refuse_vector(self)
        array = self._array
        for k in held:
            _X509_free(array[k])
        for cdata in free_now:
            _X509_free(cdata)

    def __del__(self) -> None:
        try:
            if self._state != _OWNED:
                # nothing of it is read again: its array serves the next copy
                if len(_ARRAYS) < _POOL and len(self._array) == _GUESS:
                    _ARRAYS.append(self._array)
                return
        except AttributeError:  # never filled in
            return
        # Nobody else holds the vector: no lock for its own books (its elements have theirs).
        self._state = _RELEASED
        try:
            items, n, array = self._items, self._n, self._array
            if items is None:
                freed = n
                if n:
                    _free_certs(array, n)
            else:
                freed = 0
                for k in range(n):
                    if items[k] is _HELD:
                        _X509_free(array[k])
                        freed += 1
            if freed:
                if _acquire(False):  # never wait: GC may run inside a locked region
                    _p._outstanding -= freed
                    _release()
                else:
                    _p._uncounted.extend([1] * freed)
            dropped = 0
            if items is not None:
                # Elements only the vector holds go now; they free and count themselves,
                # and this one warning speaks for them.
                hushed = _p._hushed.__dict__
                outer = hushed.get("n")
                hushed["n"] = 0
                try:
                    self._items = items = None
                    dropped = hushed["n"]
                finally:
                    if outer is None:
                        del hushed["n"]
                    else:
                        hushed["n"] = outer
            if freed or dropped:
                warnings.warn(f"unreleased CertificateVector of {n} certificates garbage-collected ("
                              f"{freed + dropped} still owned, freed); call release_certificates_vector()",
                              ResourceWarning, stacklevel=2)
        except Exception:  # interpreter shutdown: modules may be gone
            pass

