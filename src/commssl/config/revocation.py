"""Revocation: CRLs, OCSP stapling (both sides), and the OCSP status of a staple.

The work is in C (src/_cffi_src/revocation.c): CRLs are parsed and added
to the context's trust store in one call; the client's OCSP check runs inside
the handshake, in the status callback OpenSSL calls once the server's chain was
verified and its staple (or none) received, so a bad staple fails the handshake
itself (``SSLVerificationFailure``, raised by the call that drove it). A server
staples fixed bytes from C, or asks a Python callable per handshake through the
``extern "Python"`` trampoline below; the callable's exception is parked on the
connection as a verify callback's is, and the driving call raises it.

These functions take pointers and contexts, never streams (``connection.py``
has the ``ssl_connection_*`` ones).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from commssl._core.args import ctx_or_ssl, ctx_pointer
from commssl._core.binding import drain, ffi, lib, missing_file, raise_last, text
from commssl._core.callbacks import enter_feature_callback, exit_feature_callback, onerror, park
from commssl._core.ownership import ssl_held
from commssl._core.pointers import SSLCtxPointer, SSLPointer, call_pinned
from commssl._core.types import ContextArg, ContextOrSSLArg
from commssl.errors import SSLFailure

StapleCallback = Callable[[Any], Optional[bytes]]

#: ``set_ocsp_stapling`` modes, as the C status callback numbers them.
_OCSP_MODES = {False: 0, True: 1, "if-present": 2, "require": 3}
_CRL_MODES = {"leaf": lib.X509_V_FLAG_CRL_CHECK,
              "chain": lib.X509_V_FLAG_CRL_CHECK | lib.X509_V_FLAG_CRL_CHECK_ALL}
_STATUS = {0: "good", 1: "revoked", 2: "unknown"}

#: The Python staple callables, by context wrapper (weakly: they go with it).


# -- CRLs ---------------------------------------------------------------------------


def ssl_ctx_load_crl(ctx: ContextArg, crl: Union[str, bytes, "os.PathLike[str]"]) -> int:
    """Add certificate revocation lists to the context's trust store.

    ``crl``: a path (str or ``os.PathLike``) of a PEM or DER file, or the
    ``bytes`` of one; PEM may hold several CRLs one after the other. Returns how
    many were added. Checking them is ``set_crl_checking``'s (abstract contexts:
    ``crl_file=``). Input that is not a CRL raises ``SSLFailure`` naming the
    argument, and adds nothing.
    """
    pointer = ctx_pointer(ctx)
    if isinstance(crl, (bytes, bytearray, memoryview)):
        data, what = bytes(crl), "crl (bytes)"
    elif isinstance(crl, (str, os.PathLike)):
        what = f"crl {os.fsdecode(crl)!r}"
        try:
            with open(crl, "rb") as f:
                data = f.read()
        except FileNotFoundError as exc:
            raise missing_file(f"ssl_ctx_load_crl: cannot read {what}", crl) from exc
        except OSError as exc:
            raise SSLFailure(f"ssl_ctx_load_crl: cannot read {what}: {exc.strerror or exc}") from exc
    else:
        raise TypeError(f"crl must be a path or bytes, not {type(crl).__name__}")
    if not data:
        raise SSLFailure(f"ssl_ctx_load_crl: {what} is empty, not a CRL")
    n = call_pinned(pointer, lib.commssl_load_crls, data, len(data))
    if n <= 0:
        raise_last(f"ssl_ctx_load_crl: {what} is not a PEM or DER certificate revocation list")
    return int(n)


def set_crl_checking(ctx: ContextOrSSLArg, mode: Optional[str]) -> None:
    """Check certificates against the loaded CRLs: ``None`` (off), ``"leaf"`` (the
    peer's own certificate: ``X509_V_FLAG_CRL_CHECK``) or ``"chain"`` (every
    certificate below the trust anchor: ``..._CRL_CHECK_ALL``).

    A revoked certificate then fails the handshake with ``SSLVerificationFailure``
    (``verify_code`` 23, ``X509_V_ERR_CERT_REVOKED``, ``depth`` of that
    certificate); one whose issuer has no CRL loaded fails with 3
    (``X509_V_ERR_UNABLE_TO_GET_CRL``). Applies to connections made afterwards.
    """
    target = ctx_or_ssl(ctx, "ctx")
    if mode is not None and not isinstance(mode, str):
        raise TypeError(f"mode must be None, 'leaf' or 'chain', not {type(mode).__name__}")
    if mode is not None and mode not in _CRL_MODES:
        raise ValueError(f"mode must be None, 'leaf' or 'chain', not {mode!r}")
    with ssl_held(target) as cdata:
        if isinstance(target, SSLCtxPointer):
            param = lib.SSL_CTX_get0_param(cdata)
        else:
            param = lib.SSL_get0_param(cdata)
        lib.X509_VERIFY_PARAM_clear_flags(param, _CRL_MODES["chain"])
        if mode is not None:
            lib.X509_VERIFY_PARAM_set_flags(param, _CRL_MODES[mode])


# -- OCSP stapling: the client ----------------------------------------------------------


def set_ocsp_stapling(ctx_or_ssl_: ContextOrSSLArg, mode: Union[bool, str]) -> None:
    """Ask servers for a stapled OCSP response (the TLS status_request extension).

    ``mode``: ``False`` (off), ``True`` (ask, record what comes:
    ``ssl_connection_ocsp_response``), ``"if-present"`` (a staple that does not
    verify, or says revoked or unknown, fails the handshake) or ``"require"``
    (as ``"if-present"``, and no staple fails too). The check runs inside the
    handshake; failures are ``SSLVerificationFailure`` at depth 0 with
    ``verify_code`` 23 (``X509_V_ERR_CERT_REVOKED``), 73 (``..._OCSP_VERIFY_NEEDED``:
    no staple), 74 (``..._OCSP_VERIFY_FAILED``: bad signature, untrusted signer,
    not current, not a response) or 75 (``..._OCSP_CERT_UNKNOWN``: not for this
    certificate, or status unknown). A resumed session is not checked again.
    """
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    if not isinstance(mode, (bool, str)):
        raise TypeError(f"mode must be False, True, 'if-present' or 'require', not {type(mode).__name__}")
    if mode not in _OCSP_MODES:
        raise ValueError(f"mode must be False, True, 'if-present' or 'require', not {mode!r}")
    with ssl_held(target) as cdata:
        if isinstance(target, SSLCtxPointer):
            ok = lib.commssl_set_ocsp_mode(cdata, ffi.NULL, _OCSP_MODES[mode])
        else:
            ok = lib.commssl_set_ocsp_mode(ffi.NULL, cdata, _OCSP_MODES[mode])
    if not ok:
        raise MemoryError("set_ocsp_stapling: out of memory: " + repr(drain()))


@dataclass(frozen=True)
class OCSPStatus:
    """What a stapled OCSP response says of the peer's certificate, and whether
    it can be believed (``ssl_connection_ocsp_status``).

    ``status``: ``"good"``, ``"revoked"`` or ``"unknown"`` (also when the response
    has no answer for this certificate). ``verified``: signed by the issuer or
    its delegated responder (chaining to the context's trust store), about this
    certificate, and current (this/next update, 5 minutes of clock skew).
    ``error``: why not, else ``None``. Times are aware UTC datetimes or ``None``;
    ``revocation_reason`` is OpenSSL's name of the CRL reason (``"keyCompromise"``...).
    ``verify_code`` is what a handshake with ``"require"`` fails with (0: passes).
    """

    status: str
    verified: bool
    error: Optional[str]
    this_update: Optional[datetime.datetime]
    next_update: Optional[datetime.datetime]
    revocation_time: Optional[datetime.datetime]
    revocation_reason: Optional[str]
    verify_code: int = 0


def _utc(stamp: Any) -> Optional[datetime.datetime]:
    s = ffi.string(stamp)
    if len(s) != 14:
        return None
    try:
        return datetime.datetime(int(s[0:4]), int(s[4:6]), int(s[6:8]), int(s[8:10]), int(s[10:12]),
                                 int(s[12:14]), tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def ocsp_response(sslp: SSLPointer) -> Optional[bytes]:
    """The DER OCSP response stapled on ``sslp``'s handshake, or ``None``."""
    out = ffi.new("unsigned char **")
    with ssl_held(sslp) as ssl:
        n = lib.SSL_get_tlsext_status_ocsp_resp(ssl, out)
        return None if out[0] == ffi.NULL or n < 0 else ffi.buffer(out[0], n)[:]


def ocsp_status(sslp: SSLPointer, response: Optional[bytes] = None) -> Optional[OCSPStatus]:
    """Check the staple (or ``response``) against ``sslp``'s verified chain and
    its context's trust store; ``None`` when there is no staple."""
    r = ffi.new("commssl_ocsp_result *")
    der = ffi.NULL if response is None else response
    with ssl_held(sslp) as ssl:
        # under the operation lock: a verify callback's store is its own thread's (ssl_connection_verify)
        verifying = sslp.verifying if sslp.verifying is not None else ffi.NULL
        if not lib.commssl_ocsp_check(ssl, verifying, der, 0 if response is None else len(response), r):
            return None
    return OCSPStatus(
        status=_STATUS.get(r.status, "unknown"),
        verified=bool(r.verified),
        error=text(r.error) or None,
        this_update=_utc(r.this_update),
        next_update=_utc(r.next_update),
        revocation_time=_utc(r.revocation_time),
        revocation_reason=text(lib.OCSP_crl_reason_str(r.reason)) if r.reason >= 0 else None,
        verify_code=int(r.code),
    )


# -- OCSP stapling: the server ------------------------------------------------------------


def set_ocsp_staple(ctx: ContextArg, response: Union[None, bytes, StapleCallback]) -> None:
    """Staple an OCSP response for the clients that ask for one.

    ``response``: ``bytes`` (a DER OCSP response, sent as it is to every client
    that asks), a callable ``response(conn) -> bytes | None`` called per
    handshake (``None``: no staple this time), or ``None`` (stop stapling). What
    the response says is not checked (that is the client's job), but the bytes
    must be one DER OCSP response, nothing before or after it (``ValueError``;
    OpenSSL 3.6 decodes a staple and sends its re-encoding, or nothing, so other
    bytes could not be sent as they are on every OpenSSL). An exception in the
    callable, or a result that is not bytes (a ``str``, say: ``TypeError``) or is
    not a DER OCSP response (empty, say: ``ValueError``), aborts the handshake
    and propagates from the call that drove the server's side of it, as verify
    callbacks' exceptions do.
    """
    pointer = ctx_pointer(ctx)
    if response is None:
        mode, data = 0, b""
    elif isinstance(response, (bytes, bytearray, memoryview)):
        mode, data = 1, bytes(response)
        if not data:
            raise ValueError("response must be a DER OCSP response, not empty bytes (None stops stapling)")
    elif callable(response):
        mode, data = 2, b""
    else:
        raise TypeError(f"response must be bytes, a callable or None, not {type(response).__name__}")
    if mode == 2:
        pointer.stapler = response
    else:
        pointer.stapler = None
    ok = call_pinned(pointer, lib.commssl_set_staple, data, len(data), mode)
    if ok < 0:
        raise ValueError("response must be one DER OCSP response (nothing before or after it)")
    if not ok:
        raise MemoryError("set_ocsp_staple: out of memory: " + repr(drain()))


@ffi.def_extern(error=int(lib.SSL_TLSEXT_ERR_ALERT_FATAL), onerror=onerror)  # fail closed
def _commssl_staple_py(py: Any, ssl: Any) -> int:
    sslp: Optional[SSLPointer] = ffi.from_handle(py)()  # the record holds a weak reference's handle
    if sslp is None:  # the wrapper is gone: fail closed
        return int(lib.SSL_TLSEXT_ERR_ALERT_FATAL)
    try:
        fn = sslp.ctx.stapler
        if fn is None:  # the context's callable is gone (set_ocsp_staple(ctx, None) raced us)
            return int(lib.SSL_TLSEXT_ERR_NOACK)
        conn = sslp.connection
        enter_feature_callback(sslp, "OCSP staple")  # I/O on its own connection is refused in it
        try:
            value = fn(conn if conn is not None else sslp)
        finally:
            exit_feature_callback()
        if value is None:
            return int(lib.SSL_TLSEXT_ERR_NOACK)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("the OCSP staple callable must return bytes (a DER OCSP response) or None, "
                            f"not {type(value).__name__}")
        data = bytes(value)
        if not data:
            raise ValueError("the OCSP staple callable returned empty bytes; return None for no staple")
        ok = lib.commssl_staple_ssl(ssl, data, len(data))
        if ok < 0:
            raise ValueError("the OCSP staple callable must return one DER OCSP response (nothing before "
                             "or after it), or None")
        if not ok:
            raise MemoryError("set_ocsp_staple: out of memory")
        return int(lib.SSL_TLSEXT_ERR_OK)
    except BaseException as exc:
        park(sslp, exc)
        return int(lib.SSL_TLSEXT_ERR_ALERT_FATAL)
