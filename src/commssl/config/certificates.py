"""Peer certificates as owned ``X509*`` pointers, and reading them.

These functions take pointers, never streams: ``copy_peer_certificates`` takes
the connection's ``SSLPointer``.
"""

from __future__ import annotations

import binascii
import contextlib
import datetime
import ipaddress
import os
import struct
import threading
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

from commssl._core import pointers as _p
from commssl._core.binding import drain, ffi, lib, raise_last
from commssl._core.ownership import ssl_held
from commssl._core.pointers import (
    _LIFE,
    _OWNED,
    _RELEASED,
    _USER,
    SSLPointer,
    X509Pointer,
    live_certificate,
    own_certificates,
    pin_certificate,
    release_certificate,
    release_vector,
)
from commssl._core.types import ConnectionArg
from commssl.config.certvector import _ARRAYS, CertificateVector
from commssl.errors import CertificateReleasedError, SSLFailure

if TYPE_CHECKING:  # keys imports this module
    from commssl.config.keys import KeyPointer

CertificateData = List[Tuple[str, Any]]

_CHAIN_GUESS = 16  # the length of the arrays in certvector._ARRAYS


_per_thread = threading.local()
# bound once: lib.NAME is an attribute lookup per call on these per-call paths
_copy_peer_chain = lib.commssl_copy_peer_chain
_new_array = ffi.new
_free_certs = lib.commssl_free_certs
_pool_pop = _ARRAYS.pop
_ARRAY = ffi.typeof("X509 *[]")
_NULL = ffi.NULL
_serial_into = lib.commssl_serial_into
_acquire = _p._acquire
_release = _p._release
_new = object.__new__


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
    vec = _new(CertificateVector)  # allocations before the lock, where a collection may start
    try:
        array = _pool_pop()  # an array a collected vector left (see CertificateVector.__del__)
    except IndexError:
        array = _new_array(_ARRAY, _CHAIN_GUESS)
    vec._array = array
    vec._n = 0
    vec._items = None
    vec._state = _OWNED
    _acquire()
    try:
        if sslp._state & _LIFE >= _RELEASED:
            sslp._refuse()
        if sslp._store is not None:  # a verify callback runs: copy pinned, from its store
            n = -1
        else:
            # The lock is the SSL's pin for this one short C call (up-refs, no callback,
            # no Python): a release of the SSL waits for it to end. One lock round trip
            # instead of a pin's and an unpin's.
            n = _copy_peer_chain(sslp.cdata, _NULL, array, _CHAIN_GUESS)
            if n <= _CHAIN_GUESS:
                vec._n = n
                _p._outstanding += n
    finally:
        _release()
    if n < 0 or n > _CHAIN_GUESS:
        return _copy_pinned(sslp, vec)
    return vec


def _copy_pinned(sslp: SSLPointer, vec: CertificateVector) -> CertificateVector:
    """``copy_peer_certificates`` of a chain longer than guessed, or while a verify
    callback runs (from the store context, pinned): the SSL and the store pinned
    for the copies, the unpin and the count in one lock round trip."""
    _acquire()
    s = sslp._state
    if (s & _LIFE) >= _RELEASED:
        _release()
        sslp._refuse()
    sslp._state = s + _USER
    _release()
    n = 0
    try:
        sp = sslp._store
        verifying = _NULL
        if sp is not None:
            try:
                verifying = sp._pin()
            except ValueError:  # the callback just returned: the session holds the chain
                sp = None
        size = _CHAIN_GUESS
        array = vec._array
        try:
            n = _copy_peer_chain(sslp.cdata, verifying, array, size)
            while n > size:  # copied nothing: a longer chain than guessed
                size = n
                array = _new_array(_ARRAY, size)
                n = _copy_peer_chain(sslp.cdata, verifying, array, size)
        finally:
            if sp is not None:
                sp._unpin()
        vec._array = array
    except BaseException:
        sslp._unpin()
        raise
    _acquire()
    vec._n = n
    s = sslp._state = sslp._state - _USER
    _p._outstanding += n
    _release()
    if _RELEASED <= s < _USER:  # freed meanwhile: this was its last user
        sslp._dispose()
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
        vec._release_all()
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


# -- reading certificates -------------------------------------------------------

# One 20-byte buffer for every thread, used only under the pointers' lock,
# which pins the certificate for the short C call (a memcpy of at most 20
# bytes: no callback, no Python, nothing the garbage collector tracks). That
# one lock round trip is the pin and the buffer's guard at once: cheaper than
# a pin, an unpin and a per-thread buffer.
_serial_data = bytearray(20)
_serial_buf = ffi.from_buffer("unsigned char[]", _serial_data)
_serial20 = lib.commssl_serial20
_from_bytes = int.from_bytes


def get_certificate_serial_number(cert: X509Pointer) -> int:
    """The serial number, of any size (negative ones as OpenSSL parsed them)."""
    value = 0
    _acquire()
    try:
        if type(cert) is not X509Pointer or (cert._state & _LIFE) >= _RELEASED:
            live_certificate(cert)  # raises the documented exception
        r = _serial20(cert.cdata, _serial_buf)
        if r >= 0:
            value = _from_bytes(_serial_data, "big")
    finally:
        _release()
    if r < 0:  # longer than RFC 5280 allows (a peer may send it): pinned, into a buffer of its size
        cdata = pin_certificate(cert)
        try:
            data = bytearray(-r)
            r = _serial_into(cdata, ffi.from_buffer("unsigned char[]", data), -r)
        finally:
            cert._unpin()
        value = _from_bytes(data[: r >> 1], "big")
        r &= 1
    return -value if r else value


def get_certificate_common_name(cert: X509Pointer) -> Optional[str]:
    """The subject's common name, or ``None`` when it has none."""
    out = ffi.new("unsigned char **")
    cdata = pin_certificate(cert)
    try:
        n = lib.commssl_common_name(cdata, out)
    finally:
        cert._unpin()
    if n < 0:
        return None
    try:
        return ffi.unpack(ffi.cast("char *", out[0]), n).decode("utf-8", "replace")
    finally:
        lib.OPENSSL_free(out[0])


_UTC = datetime.timezone.utc
_INFO_GUESS = 2048  # bytes of records most certificates fit in
_record_header = struct.Struct("<BI").unpack_from
_b64 = binascii.b2a_base64


def _utc(b: bytes) -> Optional[datetime.datetime]:
    # year (2 bytes, big-endian), month, day, hour, minute, second: commssl_cert_info's
    try:
        return datetime.datetime(b[0] << 8 | b[1], b[2], b[3], b[4], b[5], b[6], tzinfo=_UTC)
    except (ValueError, IndexError):  # year 0000: valid ASN.1 (a peer may send it), no datetime
        return None


def _records(cert: X509Pointer) -> bytes:
    """The tagged records ``commssl_cert_info`` writes (see chains.c)."""
    # This thread's buffer (the C call runs without the GIL), taken out until its
    # bytes are copied: a finalizer that reads a certificate meanwhile gets its own.
    mine = _per_thread.__dict__.pop("info", None)
    if mine is None:
        mine = ffi.new("unsigned char[]", _INFO_GUESS)
    buf = mine
    try:
        cdata = pin_certificate(cert)
        try:
            n = lib.commssl_cert_info(cdata, buf, _INFO_GUESS)
            if n > _INFO_GUESS:
                buf = ffi.new("unsigned char[]", n)
                n = lib.commssl_cert_info(cdata, buf, n)
        finally:
            cert._unpin()
        if n < 0:
            raise_last("get_certificate_data")
        if lib.ERR_peek_error():
            # An undecodable optional extension (a malformed subjectAltName, say) is
            # left out, not a failure; its errors must not linger in the queue.
            drain()
        return ffi.buffer(buf, n)[:]
    finally:
        _per_thread.info = mine


def get_certificate_data(cert: X509Pointer) -> CertificateData:
    """``(keyword, value)`` pairs, as LispWorks' ``(keyword value)`` lists.

    Always ``"subject-common-name"`` (str or None) and ``"serial-number"`` (int);
    ``"emails"`` (list of str) only when the certificate has addresses; then the
    OpenSSL extras ``"subject"``, ``"issuer"`` (RFC 2253 strings),
    ``"issuer-common-name"``, ``"not-before"``, ``"not-after"`` (aware UTC
    datetimes; None for year 0000, which no datetime holds),
    ``"subject-alt-names"`` (list of ``(type, value)`` with types ``"DNS"``,
    ``"IP Address"``, ``"email"``, ``"URI"``) and
    ``"sha256-fingerprint"`` (colon-separated upper-case hex) and
    ``"spki-sha256"`` (base64 of the SHA-256 of the DER SubjectPublicKeyInfo:
    the pin curl's ``--pinnedpubkey sha256//...`` takes, without the prefix).
    """
    data = _records(cert)
    cn: Optional[str] = None
    issuer_cn: Optional[str] = None
    not_before: Optional[datetime.datetime] = None
    not_after: Optional[datetime.datetime] = None
    serial = 0
    subject = issuer = fingerprint = spki = ""
    emails: List[str] = []
    sans: List[Tuple[str, str]] = []
    header = _record_header
    i, end = 0, len(data)
    while i < end:
        tag, n = header(data, i)
        i += 5
        raw = data[i : i + n]
        i += n
        # by tag byte, in the order commssl_cert_info writes them (chains.c)
        if tag == 67:  # C
            cn = raw.decode("utf-8", "replace")
        elif tag == 83 or tag == 78:  # S, N (negative)
            serial = -int.from_bytes(raw, "big") if tag == 78 else int.from_bytes(raw, "big")
        elif tag == 69:  # E: as X509_get1_email, each address once
            email = raw.decode("utf-8", "replace")
            if email not in emails:
                emails.append(email)
        elif tag == 115:  # s
            subject = raw.decode("utf-8", "replace")
        elif tag == 105:  # i
            issuer = raw.decode("utf-8", "replace")
        elif tag == 99:  # c
            issuer_cn = raw.decode("utf-8", "replace")
        elif tag == 98:  # b
            not_before = _utc(raw)
        elif tag == 97:  # a
            not_after = _utc(raw)
        elif tag == 68:  # D
            sans.append(("DNS", raw.decode("utf-8", "replace")))
        elif tag == 73:  # I
            sans.append(("IP Address", _ip(raw)))
        elif tag == 77:  # M
            sans.append(("email", raw.decode("utf-8", "replace")))
        elif tag == 85:  # U
            sans.append(("URI", raw.decode("utf-8", "replace")))
        elif tag == 70:  # F
            fingerprint = raw.hex(":").upper()
        elif tag == 80:  # P
            spki = _b64(raw, newline=False).decode("ascii")
    out: CertificateData = [("subject-common-name", cn), ("serial-number", serial)]
    if emails:
        out.append(("emails", emails))
    out += [("subject", subject), ("issuer", issuer), ("issuer-common-name", issuer_cn),
            ("not-before", not_before), ("not-after", not_after), ("subject-alt-names", sans),
            ("sha256-fingerprint", fingerprint), ("spki-sha256", spki)]
    return out


def _ip(raw: bytes) -> str:
    if len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return raw.hex()
