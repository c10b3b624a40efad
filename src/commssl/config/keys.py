"""Keys and DH parameters as owned ``EVP_PKEY*`` pointers (``KeyPointer``), and
LispWorks' DH functions: ``read_dhparams``, ``set_ssl_ctx_dh``,
``ssl_connection_read_dh_params_file``; ``read_certificate_key_pairs``.

Pass phrases: ``pass_phrase`` (str or bytes) or ``callback(max_length, rwflag)``
returning str or bytes, never both; without either an encrypted key fails at
once (no terminal prompt). An exception from the callback propagates from the
call that read the file.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union, overload

from commssl._core.args import ctx_or_ssl
from commssl._core.binding import drain, ffi, lib, missing_file, raise_last
from commssl._core.callbacks import copy_pass_phrase
from commssl._core.ownership import ssl_held
from commssl._core.pointers import (
    SSLCtxPointer,
    X509Pointer,
    _Owned,
    call_pinned,
    own_certificates,
    release_vector,
)
from commssl._core.types import ConnectionArg, ContextOrSSLArg
from commssl.errors import SSLFailure

PassPhrase = Union[None, str, bytes]
PassCallback = Callable[[int, bool], Union[str, bytes]]
PathArg = Union[str, "os.PathLike[str]"]

class KeyPointer(_Owned):
    """An owned ``EVP_PKEY*``: a private key (``pem_read("PrivateKey", ...)``,
    ``read_certificate_key_pairs``) or DH parameters (``read_dhparams``,
    ``pem_read("DHparams", ...)``). ``release()`` frees it; one the collector finds
    unreleased is freed with a ``ResourceWarning``. Copying and pickling are
    refused. It follows the pointers' lifetime rule: a release racing a use frees
    it when that use ends."""

    __slots__ = ("_cached",)
    _cached: bool

    def __init__(self) -> None:
        raise TypeError("KeyPointer objects come from pem_read, read_dhparams or read_certificate_key_pairs")

    @classmethod
    def _own(cls, cdata: Any) -> "KeyPointer":
        self = object.__new__(cls)
        self._start(cdata)
        self._cached = False
        return self

    @property
    def is_dh(self) -> bool:
        """Whether these are DH parameters (or a DH key)."""
        return bool(call_pinned(self, lib.commssl_lw_key_is_dh))

    @property
    def bits(self) -> int:
        """The size in bits (of the DH prime, of the RSA modulus...)."""
        return int(call_pinned(self, lib.EVP_PKEY_get_bits))

    def _dispose(self) -> None:
        lib.EVP_PKEY_free(self.cdata)

    def _warn_unreleased(self) -> bool:
        return not self._cached  # read_dhparams' cache let go of it: nobody was to release it


# -- pass phrases ----------------------------------------------------------------------


class _Phrase:
    """What the C side needs for one read: (phrase argument, userdata), and the
    callback's exception, raised by ``check`` after the read."""

    def __init__(self, pass_phrase: PassPhrase, callback: Optional[PassCallback]) -> None:
        if pass_phrase is not None and callback is not None:
            raise ValueError("give pass_phrase or callback, not both")
        self.callback = callback
        self.error: Optional[BaseException] = None
        self._keep: List[Any] = []
        if callback is not None:
            if not callable(callback):
                raise TypeError(f"callback must be callable, not {type(callback).__name__}")
            handle = ffi.new_handle(self)
            self._keep.append(handle)
            self.phrase: Any = ffi.cast("const char *", lib.COMMSSL_LW_PASSWORD_PY)
            self.userdata: Any = handle
        elif pass_phrase is not None:
            if isinstance(pass_phrase, str):
                pass_phrase = pass_phrase.encode("utf-8")
            if not isinstance(pass_phrase, bytes):
                raise TypeError(f"pass_phrase must be str or bytes, not {type(pass_phrase).__name__}")
            if b"\x00" in pass_phrase:
                raise ValueError("pass_phrase must not contain NUL")
            self.phrase = pass_phrase
            self.userdata = ffi.NULL
        else:
            self.phrase = b""  # an empty phrase: an encrypted key fails, no prompt
            self.userdata = ffi.NULL

    def check(self) -> None:
        if self.error is not None:
            drain()
            exc, self.error = self.error, None
            raise exc


@ffi.def_extern(error=-1)
def _commssl_lw_password_py(buf: Any, size: int, rwflag: int, userdata: Any) -> int:
    phrase: _Phrase = ffi.from_handle(userdata)
    if phrase.error is not None:  # it raised: OpenSSL's next decoder asks again, but the load is over
        return -1
    try:
        assert phrase.callback is not None
        return copy_pass_phrase(phrase.callback(size, bool(rwflag)), buf, size, "pass phrase")
    except BaseException as exc:
        phrase.error = exc
        return -1


def _read_bytes(filename: object, argument: str = "filename") -> Tuple[bytes, str]:
    if not isinstance(filename, (str, bytes, os.PathLike)):
        raise TypeError(f"{argument} must be a path (str or os.PathLike), not {type(filename).__name__}")
    path = os.fsdecode(filename)
    try:
        with open(path, "rb") as f:
            return f.read(), path
    except FileNotFoundError as exc:
        raise missing_file(f"cannot open {path!r}", path) from exc
    except OSError as exc:
        raise SSLFailure(f"cannot open {path!r}: {exc.strerror}") from exc


def load_key(data: bytes, what: str, pass_phrase: PassPhrase = None,
             callback: Optional[PassCallback] = None) -> KeyPointer:
    """A private key from PEM or DER bytes (encrypted or not)."""
    phrase = _Phrase(pass_phrase, callback)
    pkey = lib.commssl_lw_read_key(data, len(data), phrase.phrase, phrase.userdata)
    phrase.check()
    if pkey == ffi.NULL:
        raise_last(f"{what}: no private key (or a wrong pass phrase)", SSLFailure)
    return KeyPointer._own(pkey)


def load_dhparams(data: bytes, what: str) -> KeyPointer:
    pkey = lib.commssl_lw_read_params(data, len(data))
    if pkey == ffi.NULL:
        raise_last(f"{what}: no DH parameters", SSLFailure)
    return KeyPointer._own(pkey)


def pem_read_key(thing: str, filename: object, pass_phrase: PassPhrase,
                 callback: Optional[PassCallback], errorp: bool) -> Optional[KeyPointer]:
    """``pem_read("PrivateKey" | "DHparams", ...)``."""
    try:
        data, path = _read_bytes(filename)
        if thing == "DHparams":
            _Phrase(pass_phrase, callback)  # the arguments are checked all the same
            return load_dhparams(data, f"pem_read: {path!r}")
        return load_key(data, f"pem_read: {path!r}", pass_phrase, callback)
    except SSLFailure:
        if errorp:
            raise
        drain()
        return None


# -- DH ------------------------------------------------------------------------------


_dh_cache: Dict[str, KeyPointer] = {}
_dh_lock = threading.Lock()


@overload
def read_dhparams(filename: PathArg, *, pass_phrase: PassPhrase = None,
                  callback: Optional[PassCallback] = None, errorp: Literal[True] = True,
                  force: bool = False) -> KeyPointer: ...


@overload
def read_dhparams(filename: PathArg, *, pass_phrase: PassPhrase = None,
                  callback: Optional[PassCallback] = None, errorp: bool,
                  force: bool = False) -> Optional[KeyPointer]: ...


def read_dhparams(filename: PathArg, *, pass_phrase: PassPhrase = None,
                  callback: Optional[PassCallback] = None, errorp: bool = True,
                  force: bool = False) -> Optional[KeyPointer]:
    """DH parameters from a file (PEM ``DH PARAMETERS`` or DER) as a ``KeyPointer``.

    As in LispWorks the result is cached per file name: the same pointer is
    returned again until ``force=True`` re-reads the file (the cache then holds the
    new one). The cache owns what it returns: do not release it (a released one is
    read again next time). A failure raises ``SSLFailure``, or returns ``None`` when
    ``errorp`` is false."""
    data, path = None, None
    try:
        if not isinstance(filename, (str, bytes, os.PathLike)):
            raise TypeError(f"filename must be a path (str or os.PathLike), not {type(filename).__name__}")
        key = os.path.abspath(os.fsdecode(filename))
        _Phrase(pass_phrase, callback)
        with _dh_lock:
            cached = _dh_cache.get(key)
            if cached is not None and not cached._dead and not force:
                return cached
        data, path = _read_bytes(filename)
        dh = load_dhparams(data, f"read_dhparams: {path!r}")
    except SSLFailure:
        if errorp:
            raise
        drain()
        return None
    dh._cached = True
    with _dh_lock:
        _dh_cache[key] = dh  # an older one stays alive while someone holds it (then GC frees it)
    return dh


def set_ssl_ctx_dh(ctx_or_ssl_: ContextOrSSLArg, *, dh: Optional[KeyPointer] = None,
                   filename: Optional[PathArg] = None, pass_phrase: PassPhrase = None,
                   callback: Optional[PassCallback] = None) -> bool:
    """The DH parameters of DHE key exchange (TLS 1.2 ``DHE-*`` ciphers) on a
    context or a connection's SSL: ``dh`` (a ``KeyPointer`` of DH parameters; the
    context takes its own reference, so ``dh`` stays yours) or else ``filename``
    (through ``read_dhparams``). Returns True. Neither: ``ValueError``."""
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    if dh is None:
        if filename is None:
            raise ValueError("set_ssl_ctx_dh needs dh or filename")
        dh = read_dhparams(filename, pass_phrase=pass_phrase, callback=callback)
        assert dh is not None
    if not isinstance(dh, KeyPointer):
        raise TypeError(f"dh must be a KeyPointer, not {type(dh).__name__}")
    if not dh.is_dh:
        raise ValueError(f"dh: {dh!r} is not DH parameters")
    pkey = dh._pin()
    try:
        with ssl_held(target) as cdata:
            on_ctx = isinstance(target, SSLCtxPointer)
            ok = lib.commssl_lw_set_dh(cdata if on_ctx else ffi.NULL, ffi.NULL if on_ctx else cdata, pkey)
    finally:
        dh._unpin()
    if not ok:
        raise_last("set_ssl_ctx_dh", SSLFailure)
    return True


def ssl_connection_read_dh_params_file(conn: ConnectionArg, filename: PathArg) -> None:
    """Read DH parameters (PEM or DER) for this connection alone (a server's
    ``SSL_set0_tmp_dh_pkey``)."""
    from commssl._core.args import ssl_of

    sslp = ssl_of(conn)
    data, path = _read_bytes(filename)
    dh = load_dhparams(data, f"ssl_connection_read_dh_params_file: {path!r}")
    try:
        set_ssl_ctx_dh(sslp, dh=dh)
    finally:
        dh.release()


# -- certificate and key pairs ----------------------------------------------------------


def _pem_certificate(block: bytes) -> Any:
    bio = lib.BIO_new_mem_buf(block, len(block))
    if bio == ffi.NULL:
        raise MemoryError("BIO_new_mem_buf")
    try:
        return lib.PEM_read_bio_X509(bio, ffi.NULL, ffi.NULL, ffi.NULL)
    finally:
        lib.BIO_free(bio)


def read_certificate_key_pairs(filename: PathArg, *, pass_phrase: PassPhrase = None,
                               callback: Optional[PassCallback] = None
                               ) -> List[Tuple[X509Pointer, KeyPointer]]:
    """The (certificate, private key) pairs of a PEM file in which each certificate
    is next to its key (either order; keys encrypted or not, with ``pass_phrase`` or
    ``callback`` as for ``pem_read``): owned ``X509Pointer`` s and ``KeyPointer`` s
    (release them). A certificate without its matching key is skipped; a block that
    cannot be read raises ``SSLFailure`` (nothing is returned)."""
    data, path = _read_bytes(filename)
    pairs: List[Tuple[X509Pointer, KeyPointer]] = []
    cert: Optional[X509Pointer] = None
    key: Optional[KeyPointer] = None
    try:
        for match in _PEM_BLOCK.finditer(data):
            label, block = match.group(1), match.group(0)
            if label == b"CERTIFICATE":
                x = _pem_certificate(block)
                if x == ffi.NULL:
                    raise_last(f"read_certificate_key_pairs: {path!r}: a certificate", SSLFailure)
                if cert is not None:
                    release_vector([cert])
                cert = own_certificates((x,))[0]
            elif label.endswith(b"PRIVATE KEY"):
                if key is not None:
                    key.release()
                key = load_key(block, f"read_certificate_key_pairs: {path!r}", pass_phrase, callback)
            else:
                continue
            if cert is not None and key is not None:
                xc, kc = cert._pin(), key._pin()
                try:
                    match_ok = lib.X509_check_private_key(xc, kc) == 1
                finally:
                    cert._unpin()
                    key._unpin()
                drain()
                if match_ok:
                    pairs.append((cert, key))
                    cert = key = None
    except BaseException:
        for c, k in pairs:
            release_vector([c])
            k.release()
        raise
    finally:
        if cert is not None:
            release_vector([cert])
        if key is not None:
            key.release()
    return pairs


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
