"""Peer certificates as owned ``X509*`` pointers, and reading them.

These functions take pointers, never streams: ``copy_peer_certificates`` takes
the connection's ``SSLPointer``.
"""

from __future__ import annotations

import contextlib
import os
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterator,
    List,
    Literal,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from commssl._core.binding import drain, ffi, lib, raise_last
from commssl._core.lifetime import copy_peer_chain, release_unread
from commssl._core.ownership import ssl_held
from commssl._core.pointers import (
    SSLPointer,
    X509Pointer,
    own_certificates,
    pin_certificate,
    release_certificate,
    release_vector,
)
from commssl._core.types import ConnectionArg
from commssl.config.certificate_data import (
    CertificateData,
    get_certificate_common_name,
    get_certificate_data,
    get_certificate_serial_number,
)
from commssl.config.certvector import _ARRAYS, CertificateVector
from commssl.errors import CertificateReleasedError, SSLFailure

if TYPE_CHECKING:  # keys imports this module
    from commssl.config.keys import KeyPointer

_CHAIN_GUESS = 16  # the length of the arrays in certvector._ARRAYS
_new_array = ffi.new
_pool_pop = _ARRAYS.pop
_ARRAY = ffi.typeof("X509 *[]")


def _no_ssl_of(conn: Any) -> SSLPointer:
    raise TypeError(f"conn must be an SSLPointer, not {type(conn).__name__}")


#: connection.ssl_of, the SSL of any connection (set by connection.py, which imports this module)
ssl_of: Callable[[Any], SSLPointer] = _no_ssl_of


def copy_peer_certificates(conn: ConnectionArg) -> CertificateVector:
    """The certificates the peer sent, leaf first, as a ``CertificateVector`` of
    owned pointers (release it with ``release_certificates_vector``). On the
    server side the client's leaf is included. Empty (``== []``) when none.
    While a verify callback runs, these are the certificates being verified."""
    sslp = conn if type(conn) is SSLPointer else ssl_of(conn)
    vec = CertificateVector()  # the class's own call: cheaper than object.__new__(cls)
    try:
        vec._array = _pool_pop()  # an array a collected vector left (see CertificateVector.__del__)
    except IndexError:
        vec._array = _new_array(_ARRAY, _CHAIN_GUESS)
    copy_peer_chain(sslp, vec, _CHAIN_GUESS)
    return vec


def copy_verified_certificates(sslp: SSLPointer) -> List[X509Pointer]:
    """The chain OpenSSL built for the peer, leaf first, ending at the trust
    anchor when it verified, each an owned pointer; ``[]`` when none was built.
    While a verify callback runs: the chain of the verification that just ran."""
    with ssl_held(sslp) as ssl:
        verifying = sslp.verifying if sslp.verifying is not None else ffi.NULL
        n = lib.commssl_copy_verified_chain(ssl, verifying, ffi.NULL, 0)
        while True:
            buf = ffi.new("X509 *[]", max(n, 1))
            got = lib.commssl_copy_verified_chain(ssl, verifying, buf, n)
            if got <= n:
                return own_certificates(buf[0:got])
            n = got


def verification_errors(sslp: SSLPointer) -> List[Tuple[int, int, Optional[str]]]:
    """Every ``(depth, X509_V_ERR code, subject)`` the verify callbacks (and the
    OCSP check) reported during ``sslp``'s last handshake, in order."""
    depth, code, subject = ffi.new("int *"), ffi.new("int *"), ffi.new("char **")
    with ssl_held(sslp) as ssl:
        out = []
        n = lib.commssl_verify_errors(ssl, -1, depth, code, subject)
        for i in range(n):
            lib.commssl_verify_errors(ssl, i, depth, code, subject)
            name = None if subject[0] == ffi.NULL else ffi.string(subject[0]).decode("utf-8", "replace")
            out.append((int(depth[0]), int(code[0]), name))
        return out


def failure_chain_data(sslp: SSLPointer) -> List[CertificateData]:
    """``get_certificate_data`` of each certificate the peer sent, leaf first, as
    kept at the handshake's first verification failure (else as the SSL has them)."""
    with ssl_held(sslp) as ssl:
        n = lib.commssl_failure_chain(ssl, ffi.NULL, 0)
        buf = ffi.new("X509 *[]", max(n, 1))
        n = lib.commssl_failure_chain(ssl, buf, n)
        certs = own_certificates(buf[0:n])
    if not certs:
        vec = copy_peer_certificates(sslp)
        try:
            return [get_certificate_data(c) for c in vec]
        finally:
            vec._release_all()
    try:
        return [get_certificate_data(c) for c in certs]
    finally:
        release_vector(certs)


def release_certificates_vector(vec: Sequence[Optional[X509Pointer]]) -> None:
    """``release_certificate`` on every element that is not ``None``: of a
    ``CertificateVector`` (what ``ssl_connection_copy_peer_certificates``
    returns), a list or a tuple.

    All or nothing, even against other threads: a bad element (not an
    X509Pointer, borrowed, released, or listed twice) releases nothing.
    """
    if isinstance(vec, CertificateVector):  # the one owner of every reference: one C call frees them
        if not release_unread(vec):
            release_vector(vec, True)
    elif isinstance(vec, (list, tuple)):
        release_vector(vec)
    else:
        raise TypeError(f"vec must be a CertificateVector or a list of X509Pointer or None, "
                        f"not {type(vec).__name__}")


def copy_certificate(cert: X509Pointer) -> X509Pointer:
    """A new owned reference (``X509_up_ref``) to a live pointer, owned or borrowed."""
    cdata = pin_certificate(cert)
    try:
        lib.X509_up_ref(cdata)
    finally:
        cert._unpin()
    return own_certificates((cdata,))[0]


_Certs = TypeVar("_Certs", CertificateVector, List[Optional[X509Pointer]])


@contextlib.contextmanager
def certificates_released(certs: _Certs) -> Iterator[_Certs]:
    """Yield ``certs``; on exit release the elements that are still owned and not ``None``."""
    try:
        yield certs
    finally:
        if isinstance(certs, CertificateVector):
            certs._release_rest()
        else:
            for cert in certs:
                if cert is not None and cert.owned:
                    try:
                        release_certificate(cert)
                    except CertificateReleasedError:  # another thread released it meanwhile
                        pass


@overload
def pem_read(thing: Literal["X509"], filename: "os.PathLike[str] | str", *,
             pass_phrase: Union[None, str, bytes] = None,
             callback: Optional[Callable[[int, bool], Union[str, bytes]]] = None,
             errorp: Literal[True] = True) -> X509Pointer: ...


@overload
def pem_read(thing: Literal["PrivateKey", "DHparams"], filename: "os.PathLike[str] | str", *,
             pass_phrase: Union[None, str, bytes] = None,
             callback: Optional[Callable[[int, bool], Union[str, bytes]]] = None,
             errorp: Literal[True] = True) -> KeyPointer: ...


@overload
def pem_read(thing: Literal["X509"], filename: "os.PathLike[str] | str", *,
             pass_phrase: Union[None, str, bytes] = None,
             callback: Optional[Callable[[int, bool], Union[str, bytes]]] = None,
             errorp: bool) -> Optional[X509Pointer]: ...


@overload
def pem_read(thing: Literal["PrivateKey", "DHparams"], filename: "os.PathLike[str] | str", *,
             pass_phrase: Union[None, str, bytes] = None,
             callback: Optional[Callable[[int, bool], Union[str, bytes]]] = None,
             errorp: bool) -> Optional[KeyPointer]: ...


@overload
def pem_read(thing: str, filename: "os.PathLike[str] | str", *, pass_phrase: Union[None, str, bytes] = None,
             callback: Optional[Callable[[int, bool], Union[str, bytes]]] = None,
             errorp: bool = True) -> Union[X509Pointer, KeyPointer, None]: ...


def pem_read(thing: str, filename: "os.PathLike[str] | str", *, pass_phrase: Union[None, str, bytes] = None,
             callback: Optional[Callable[[int, bool], Union[str, bytes]]] = None,
             errorp: bool = True) -> Union[X509Pointer, KeyPointer, None]:
    """Read the first PEM ``thing`` of a file as an owned pointer: ``"X509"`` (a
    certificate: ``X509Pointer``), ``"PrivateKey"`` (a private key, PEM or DER,
    encrypted or not: ``KeyPointer``) or ``"DHparams"`` (DH parameters, PEM or
    DER: ``KeyPointer``). An encrypted key takes ``pass_phrase`` (str or bytes) or
    ``callback(max_length, rwflag)`` returning one, not both; without either it
    fails (no terminal prompt), and an exception from the callback propagates.

    On failure raises ``SSLFailure`` with OpenSSL's reason, or returns ``None`` when
    ``errorp`` is false (LispWorks' default).
    """
    if not isinstance(thing, str):
        raise TypeError(f"thing must be a str, not {type(thing).__name__}")
    if thing not in ("X509", "PrivateKey", "DHparams"):
        raise ValueError(f"pem_read reads thing 'X509', 'PrivateKey' or 'DHparams', not {thing!r}")
    if thing != "X509":
        from commssl.config.keys import pem_read_key

        return pem_read_key(thing, filename, pass_phrase, callback, errorp)
    if pass_phrase is not None and callback is not None:
        raise ValueError("give pass_phrase or callback, not both")
    if not isinstance(filename, (str, bytes, os.PathLike)):
        raise TypeError(f"filename must be a path (str or os.PathLike), not {type(filename).__name__}")
    path = os.fsencode(filename)
    bio = lib.BIO_new_file(path, b"r")
    if bio == ffi.NULL:
        if errorp:
            raise_last(f"pem_read: cannot open {os.fsdecode(path)!r}", files=(filename,))
        drain()  # leave no stale errors for the next call's message
        return None
    try:
        x = lib.PEM_read_bio_X509(bio, ffi.NULL, ffi.NULL, ffi.NULL)
    finally:
        lib.BIO_free(bio)
    if x == ffi.NULL:
        if errorp:
            raise_last(f"pem_read: no certificate in {os.fsdecode(path)!r}", SSLFailure)
        drain()
        return None
    return own_certificates((x,))[0]


__all__ = [
    "CertificateData", "certificates_released", "copy_certificate", "copy_peer_certificates",
    "copy_verified_certificates", "failure_chain_data", "get_certificate_common_name",
    "get_certificate_data", "get_certificate_serial_number", "pem_read", "release_certificates_vector",
    "ssl_of", "verification_errors",
]
