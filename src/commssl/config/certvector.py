"""The peer's certificates as one owned object: ``CertificateVector``.

``ssl_connection_copy_peer_certificates`` copies the chain with one C call into
one C array of ``X509*``, each with a reference of its own. The vector owns
those references until an element is read: ``vec[i]`` then makes the
``X509Pointer`` for that slot (once; later reads return the same object), and the
reference moves to it. So copying and releasing a chain makes one Python object
and runs one finalizer, not one per certificate, while every element a caller
sees is an ordinary owned ``X509Pointer``.

The books are lifetime.py's (``vector_slot``, ``release_all``, ``collect_vector``):
a slot is held (the vector's reference, no object yet), an ``X509Pointer`` (whose
own books say who owns what) or ``None``. A held slot is never pinned (nothing
can read it without making its object first), so the vector needs no count of
users: its elements carry their own. The outstanding count counts each
unreleased certificate once, held or made.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Sequence
from typing import Any, Iterator, List, NoReturn, Optional, Union, overload

from commssl._core.binding import ffi
from commssl._core.lifetime import HELD, collect_vector, release_unread, vector_slot
from commssl._core.pointers import X509Pointer, release_vector
from commssl._core.x509 import drop_quietly

#: Arrays of 16 ``X509*`` (``_CHAIN_GUESS``) that collected vectors leave for the next
#: copy: one allocation less per copy. A deque: its appends and pops are atomic (with the
#: GIL or without) and, unlike a list's between 0 and 1 items, never reallocate.
_POOL = 64
_ARRAYS: Any = deque(maxlen=_POOL)
_GUESS = 16


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
    _state: int  # lifetime.py's: owned until released (or collected)

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
                if got is not HELD:
                    return got  # type: ignore[no-any-return]
            return vector_slot(self, self._slot(index), X509Pointer)
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

    def __setitem__(self, index: int, value: Optional[X509Pointer]) -> None:
        """``vec[i] = None`` (or another pointer) as with a list: the element that was
        there is dropped from the vector, and collected if nothing else holds it."""
        if value is not None and type(value) is not X509Pointer:
            raise TypeError(f"a CertificateVector holds X509Pointer or None, not {type(value).__name__}")
        old = vector_slot(self, self._slot(index), X509Pointer, value)
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
        alive = "released" if self._state else "owned"  # lifetime.py's books: 0 is owned
        shown = []
        for i in range(self._n):
            got = items[i] if items is not None else HELD
            if got is HELD:
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
        if not release_unread(self):
            release_vector(self, True)

    def _release_rest(self) -> None:
        """Release every element still owned, skipping ``None``, released and
        borrowed ones (the exit of ``peer_certificates``)."""
        release_vector(self, True, False)

    def __del__(self) -> None:
        try:
            # Released (_state is lifetime.py's; non-zero is anything but owned): nothing of it is
            # read again, its array serves the next copy. Read here, not through a call (4% of a
            # copy and release).
            if self._state:
                if len(self._array) == _GUESS:
                    _ARRAYS.append(self._array)  # full: the oldest is dropped
                return
            freed = collect_vector(self)
            if self._items is not None:  # one warning (below) speaks for the elements dropped now
                freed += drop_quietly(self)
            if freed:
                warnings.warn(f"unreleased CertificateVector of {self._n} certificates garbage-collected ("
                              f"{freed} still owned, freed); call release_certificates_vector()",
                              ResourceWarning, stacklevel=2)
        except Exception:  # interpreter shutdown: modules may be gone
            pass
