"""What a failed or finished handshake means, for every connection kind: the failure
mapping (a callback's own exception first, then timeouts, verification failures, I/O
errors) and the checks OpenSSL leaves to commssl after a handshake it completed
(a resumed session verified again, a server's decision on a client without a
certificate, the deadline)."""

from __future__ import annotations

import time
from typing import Any, Callable, NoReturn, Optional, Type

from commssl._core.binding import drain, ffi, lib, raise_io_error
from commssl._core.ownership import release_ssl_claim
from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl.config.certificates import failure_chain_data, verification_errors
from commssl.config.sessions import decide_without_certificate, reverify_resumed
from commssl.config.verification import x509_verify_cert_error_string
from commssl.errors import SSLClosed, SSLHandshakeTimeout, SSLVerificationFailure


def raise_failure(sslp: SSLPointer, err: int, what: str,
                  timeout_exc: Type[Exception] = SSLHandshakeTimeout) -> NoReturn:
    """Raise what a failed operation on ``sslp`` (pinned) means: a callback's own
    exception first, then a timeout, a verification failure, or the I/O error."""
    exc = sslp.take_exception()
    if exc is not None:
        drain()
        raise exc
    if err == lib.COMMSSL_TIMEOUT:
        drain()
        raise timeout_exc(f"{what}: timed out")
    os_errno = ffi.errno
    last = lib.ERR_peek_last_error()
    if last and lib.ERR_GET_LIB(last) == lib.ERR_LIB_SSL:
        reason = lib.ERR_GET_REASON(last)
        # INVALID_STATUS_RESPONSE: the OCSP status callback failed the staple; (OpenSSL 3.6,
        # which decodes a staple before that callback) BAD_CERTIFICATE_STATUS_RESPONSE: it
        # was no DER OCSP response (src/_cffi_src/revocation.c, commssl_ocsp_unreadable)
        if reason == lib.SSL_R_CERTIFICATE_VERIFY_FAILED or (
                reason == lib.SSL_R_INVALID_STATUS_RESPONSE and lib.commssl_ocsp_failed(sslp.cdata)) or (
                reason == lib.SSL_R_TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE
                and lib.commssl_ocsp_unreadable(sslp.cdata)):
            drain()
            raise verification_failure(sslp, what)
        if reason == lib.SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            drain()
            raise SSLVerificationFailure(
                f"{what}: the peer sent no certificate", ("verification", lib.X509_V_ERR_UNSPECIFIED),
                lib.X509_V_ERR_UNSPECIFIED, "peer did not return a certificate", None)
    if (err == lib.SSL_ERROR_SYSCALL and (not last or lib.ERR_GET_LIB(last) == lib.ERR_LIB_SYS)
            and lib.SSL_get_shutdown(sslp.cdata) & lib.SSL_RECEIVED_SHUTDOWN):
        # The peer's close_notify came first: whatever the OpenSSL version then says
        # of a write (3.0: the closed state; 3.5+: EPIPE, queued as a system error),
        # the answer is the clean close.
        drain()
        raise SSLClosed(f"{what}: the peer closed the TLS connection", "closed")
    raise_io_error(err, what, os_errno)


def verification_failure(sslp: SSLPointer, what: str) -> SSLVerificationFailure:
    rec = sslp._record
    code = int(lib.SSL_get_verify_result(sslp.cdata))
    if rec.fail_count and (code == lib.X509_V_OK or code == lib.X509_V_ERR_APPLICATION_VERIFICATION):
        code = rec.fail_error
    depth = rec.fail_depth if rec.fail_count else None
    message = x509_verify_cert_error_string(code)
    ssl_code: Any = ("verification", code)
    if code == lib.X509_V_ERR_APPLICATION_VERIFICATION:
        ssl_code = "verify-callback"
    at = f" at depth {depth}" if depth is not None else ""
    # the diagnostics, read while the SSL is still pinned (src/_cffi_src/revocation.c)
    return SSLVerificationFailure(f"{what}: certificate verify failed{at}: {message}",
                                  ssl_code, code, message, depth, verification_errors(sslp),
                                  failure_chain_data(sslp))


def _raise_taken(sslp: SSLPointer) -> NoReturn:
    exc = sslp.take_exception()
    assert exc is not None  # the caller saw it set, in this thread
    raise exc


def check_after_handshake(sslp: SSLPointer, due: Optional[float] = None,
                          clock: Callable[[], float] = time.monotonic) -> None:
    """After a handshake that OpenSSL completed: re-raise a callback's exception
    (a ``"never"`` client still calls callbacks: a raising callback never passes),
    verify a resumed session again, let a server's ``verify_callback(conn)`` decide
    a client that sent no certificate, and enforce the deadline ``due``, time spent in callbacks included."""
    # (each check reads the field first: take_exception is a call, on every handshake)
    if sslp.exception is not None:
        _raise_taken(sslp)
    if lib.SSL_session_reused(sslp.cdata):  # OpenSSL verified nothing: commssl does (sessions.py)
        verified = reverify_resumed(sslp)
        exc = sslp.take_exception()
        if exc is not None:
            drain()
            raise exc
        if verified is False:
            raise verification_failure(sslp, "handshake (resumed session)")
    # a server's verify_callback(conn) decides a client without a certificate too (sessions.py)
    accepted = decide_without_certificate(sslp)
    if sslp.exception is not None:
        _raise_taken(sslp)
    if accepted is False:
        raise SSLVerificationFailure(
            "handshake: the peer sent no certificate and the verify callback rejected it",
            ("verification", lib.X509_V_ERR_UNSPECIFIED), lib.X509_V_ERR_UNSPECIFIED,
            "peer did not return a certificate", None)
    if due is not None and clock() > due:
        raise SSLHandshakeTimeout("handshake: timed out (the handshake_timeout passed during the handshake)")


def release_new_ssl(sslp: SSLPointer, owns: bool, own_ctx: Optional[SSLCtxPointer]) -> None:
    """Free what ``new_ssl`` made for a connection that did not take it (an
    ``SSLPointer`` passed in is given back: another connection may claim it)."""
    if owns:
        sslp._kill()
    else:
        release_ssl_claim(sslp)
    if own_ctx is not None:
        own_ctx._kill()
