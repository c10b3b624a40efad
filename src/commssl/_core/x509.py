"""``X509Pointer`` and the certificate functions over lifetime.py's rule: owned
pointers (counted: ``outstanding_certificates``), borrowed ones, and the loans a
verify callback makes. Re-exported by pointers.py, where the other wrappers are.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any, Iterable, List, NoReturn, Optional, Sequence

from commssl._core import lifetime as _life
from commssl._core.binding import ffi, lib
from commssl._core.lifetime import _BORROWED, _LOANED, _OWNED, Life, outstanding_certificates
from commssl.errors import CertificateReleasedError

_NULL = ffi.NULL
_X509 = ffi.typeof("X509 *")
_made = _life.made
# Set (``n``, a count) by a CertificateVector's finalizer while it drops the elements
# made from it: they count themselves here instead of warning, so a vector collected
# unreleased warns once for all it held.
_hushed = threading.local()


def _checked(cdata: object, ctype: Any) -> Any:
    """``cdata`` when it is a non-NULL ``ctype`` cdata, else the documented exception."""
    if not isinstance(cdata, ffi.CData) or ffi.typeof(cdata) is not ctype:
        raise TypeError(f"cdata must be an {ctype.cname!r} cdata, not {cdata!r}")
    if cdata == _NULL:
        raise ValueError(f"cdata must not be NULL (an {ctype.cname!r} is needed)")
    return cdata


class X509Pointer(Life):
    """An ``X509*``, either owned (release it) or borrowed (read it while lent).

    A pointer lent by a verify callback holds a reference of its own until its
    loan ends, so a thread reading it then finishes on a live certificate.
    """

    __slots__ = ()
    _counted = True
    _copy_hint = ": use copy_certificate() for a new owned reference"
    _pickle_hint = _copy_hint + " in this process, or the certificate's DER bytes"

    def __init__(self, cdata: Any) -> None:
        """Wrap a raw ``X509*`` as a borrowed pointer (commssl takes no reference)."""
        self._start(_checked(cdata, _X509), _BORROWED)

    @property
    def released(self) -> bool:
        """True once released (or, for a borrowed pointer, once OpenSSL took it back)."""
        return self._dead

    @property
    def owned(self) -> bool:
        """True while this pointer holds a reference that must be released."""
        return self._life == _OWNED

    def __repr__(self) -> str:
        state = ("owned", "borrowed", "borrowed", "released", "expired")[self._life]
        return f"<X509Pointer 0x{self.address:x} {state}>"

    def _refuse(self) -> NoReturn:
        raise CertificateReleasedError(f"cert {self!r} was released")

    def _dispose(self) -> None:
        lib.X509_free(self.cdata)

    def __del__(self) -> None:
        life = self._collected()  # not getattr(): this runs for every pointer
        if life < 0:
            return
        try:
            lib.X509_free(self.cdata)
            if life == _OWNED and not _collected_quietly():
                described = f"<X509Pointer 0x{self.address:x} owned>"
                warnings.warn(f"unreleased {described} garbage-collected; call release_certificate()",
                              ResourceWarning, stacklevel=2)
        except Exception:  # interpreter shutdown: modules may be gone
            pass


def _collected_quietly() -> bool:
    """Whether a collected owned certificate's warning is left to the vector it came from."""
    hushed = _hushed.__dict__
    if "n" in hushed:
        hushed["n"] += 1
        return True
    return False


def drop_quietly(vec: Any) -> int:
    """Drop a collected CertificateVector's elements (``_items``): those only it held are
    collected now, freeing and counting themselves instead of warning; returns how many."""
    hushed = _hushed.__dict__
    outer = hushed.get("n")
    hushed["n"] = 0
    try:
        vec._items = None
        return int(hushed["n"])
    finally:
        if outer is None:
            del hushed["n"]
        else:
            hushed["n"] = outer


def own_certificates(cdatas: Iterable[Any]) -> List[X509Pointer]:
    """Wrap ``X509*`` values that each already carry one new reference."""
    return _life.own(X509Pointer, cdatas)


def borrow_certificate(cdata: Any) -> X509Pointer:
    """A borrowed pointer that holds no reference (the caller vouches for it)."""
    return _made(X509Pointer, cdata, _BORROWED)


def loan_certificate(cdata: Any) -> X509Pointer:
    """A borrowed pointer for ``cdata``, whose one new reference (taken by the
    caller) it drops when its loan ends (``_kill``) or when it is collected."""
    return _made(X509Pointer, cdata, _LOANED)


def pin_certificate(cert: object, argument: str = "cert") -> Any:
    """``cert._pin()`` with the documented exceptions naming ``argument``."""
    if type(cert) is not X509Pointer:
        raise TypeError(f"{argument} must be an X509Pointer, not {type(cert).__name__}")
    try:
        return cert._pin()
    except CertificateReleasedError:
        if argument == "cert":
            raise
        raise CertificateReleasedError(f"{argument} {cert!r} was released") from None


def release_certificate(cert: X509Pointer) -> None:
    """Drop the reference an owned pointer holds (``X509_free``).

    Releasing it again, or releasing a borrowed pointer, raises
    ``CertificateReleasedError`` and frees nothing.
    """
    if type(cert) is not X509Pointer:
        raise TypeError(f"cert must be an X509Pointer, not {type(cert).__name__}")
    life = _life.release_owned(cert)
    if life == _BORROWED or life == _LOANED:
        raise CertificateReleasedError(f"{cert!r} is borrowed; only owned pointers can be released")
    if life != _OWNED:
        raise CertificateReleasedError(f"{cert!r} was already released")


def release_vector(vec: Sequence[Optional[X509Pointer]], vector: bool = False, strict: bool = True) -> None:
    """``release_certificate`` on each pointer of ``vec`` that is not ``None``, all
    or nothing (lifetime.release_all): at the first that cannot be released (not
    an X509Pointer, not owned, or listed twice) nothing is, and the exception names
    it. With ``vector``, ``vec`` is a CertificateVector (its held slots too)."""
    if not _life.release_all(vec, X509Pointer, vector, strict):
        refuse_vector(vec)


def refuse_vector(vec: Sequence[Optional[X509Pointer]]) -> NoReturn:
    """The exception for the first element of ``vec`` that cannot be released."""
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
        if cert.released:
            raise CertificateReleasedError(f"{argument} {cert!r} was released")
        if not cert.owned:
            raise CertificateReleasedError(
                f"{argument} {cert!r} is borrowed; only owned pointers can be released")
    raise CertificateReleasedError("vec changed while it was being released; nothing was released")


__all__ = [
    "X509Pointer", "borrow_certificate", "loan_certificate", "outstanding_certificates", "own_certificates",
    "pin_certificate", "refuse_vector", "release_certificate", "release_vector",
]
