"""LispWorks' certificate callbacks: ``set_ssl_ctx_cert_cb`` (``SSL_CTX_set_cert_cb``),
the abstract contexts' ``client_hello_callback`` (``SSL_CTX_set_client_hello_cb``) and
``cert_request_callback`` (a client's cert_cb, which OpenSSL calls when the server
asks for a certificate), and ``ssl_connection_read_certificates``.

Every callback follows the verify callbacks' rule: it is reached from OpenSSL
through an ``extern "Python"`` trampoline via the SSL's commssl record (an SSL
commssl does not know fails closed); an exception (or a falsy answer where one
aborts) is parked on the connection, aborts the handshake, and propagates from
the call that drove it (blocking or asyncio, any thread); I/O on its own
connection inside it is refused.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

from commssl._core.args import ctx_pointer, ssl_of
from commssl._core.binding import drain, ffi, lib, raise_last
from commssl._core.callbacks import enter_feature_callback, exit_feature_callback, onerror, park
from commssl._core.ownership import ssl_held
from commssl._core.pointers import (
    SSLCtxPointer,
    SSLPointer,
    X509Pointer,
    call_pinned,
    pin_certificate,
)
from commssl._core.types import ConnectionArg, ContextArg
from commssl.config.keys import KeyPointer, PassCallback, PassPhrase, PathArg, _Phrase, load_key
from commssl.errors import SSLFailure

CertCallback = Callable[[SSLPointer], Optional[Tuple[Union[X509Pointer, bytes], Union[KeyPointer, bytes]]]]




def _install_cert_cb(pointer: SSLCtxPointer) -> None:
    c = pointer
    call_pinned(pointer, lib.commssl_lw_ctx_set_cert_cb, c.cert_cb is not None or c.cert_request is not None)


def set_ssl_ctx_cert_cb(ctx: ContextArg, function: Optional[CertCallback]) -> None:
    """Choose the certificate per handshake (``SSL_CTX_set_cert_cb``): ``function(ssl)``
    gets the connection's ``SSLPointer`` and returns ``(cert, key)`` or ``None`` (no
    change: the context's certificate, if any). ``cert``: an ``X509Pointer`` or PEM
    bytes of the certificate followed by its chain (sent with it); ``key``: a
    ``KeyPointer`` or PEM/DER bytes. A server calls it on every handshake, a client
    when the server asks for a certificate. An exception, or a return of anything
    else, aborts the handshake and propagates from the call that drove it.
    ``None`` removes the callback. Connections made before keep what they had."""
    pointer = ctx_pointer(ctx, "ctx")
    if function is not None and not callable(function):
        raise TypeError(f"function must be callable or None, not {type(function).__name__}")
    pointer.cert_cb = function
    _install_cert_cb(pointer)


def set_cert_request_callback(ctx: SSLCtxPointer, callback: Optional[Callable[[Any], Any]]) -> None:
    ctx.cert_request = callback
    _install_cert_cb(ctx)


def set_client_hello_callback(ctx: SSLCtxPointer, callback: Optional[Callable[[Any, Optional[str]], Any]]
                              ) -> None:
    ctx.client_hello = callback
    call_pinned(ctx, lib.commssl_lw_ctx_set_client_hello_cb, callback is not None)


def _use(sslp: SSLPointer, result: object) -> None:
    """Install a cert_cb's ``(cert, key)`` on the SSL."""
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"the cert_cb function must return (cert, key) or None, not {type(result).__name__}")
    cert, key = result
    owned_key: Optional[KeyPointer] = None
    if isinstance(key, (bytes, bytearray, memoryview)):
        key = owned_key = load_key(bytes(key), "cert_cb key")
    if not isinstance(key, KeyPointer):
        raise TypeError(f"the cert_cb key must be a KeyPointer or bytes, not {type(key).__name__}")
    try:
        pkey = key._pin()
        try:
            if isinstance(cert, (bytes, bytearray, memoryview)):
                pem = bytes(cert)
                x: Any = ffi.NULL
                pinned: Optional[X509Pointer] = None
            elif isinstance(cert, X509Pointer):
                pem = b""
                x = pin_certificate(cert, "cert")
                pinned = cert
            else:
                raise TypeError("the cert_cb cert must be an X509Pointer or PEM bytes, "
                                f"not {type(cert).__name__}")
            try:
                with ssl_held(sslp) as ssl:
                    ok = lib.commssl_lw_use_cert_and_key(ssl, pem if pem else ffi.NULL, len(pem), x, pkey)
            finally:
                if pinned is not None:
                    pinned._unpin()
        finally:
            key._unpin()
    finally:
        if owned_key is not None:
            owned_key.release()
    if not ok:
        raise_last("cert_cb: the certificate and key cannot be used", SSLFailure)


@ffi.def_extern(error=0, onerror=onerror)
def _commssl_lw_cert_cb_py(py: Any) -> int:
    sslp: Optional[SSLPointer] = ffi.from_handle(py)()  # the record holds a weak reference's handle
    if sslp is None:
        return 0
    try:
        c = sslp.ctx
        if c is None:
            raise RuntimeError("cert_cb: this connection's context's callbacks cannot be reached")
        with ssl_held(sslp) as ssl:
            server = bool(lib.SSL_is_server(ssl))
        if c.cert_request is not None and not server:
            conn = sslp.connection
            enter_feature_callback(sslp, "cert request")
            try:
                answer = c.cert_request(conn if conn is not None else sslp)
            finally:
                exit_feature_callback()
            if not answer:
                raise SSLFailure("the cert_request_callback refused the server's certificate request",
                                 "cert-request-callback")
        if c.cert_cb is not None:
            enter_feature_callback(sslp, "cert_cb")
            try:
                result = c.cert_cb(sslp)
            finally:
                exit_feature_callback()
            if result is not None:
                _use(sslp, result)
        return 1
    except BaseException as exc:
        park(sslp, exc)
        return 0


@ffi.def_extern(error=0, onerror=onerror)
def _commssl_lw_client_hello_py(py: Any, name: Any) -> int:
    sslp: Optional[SSLPointer] = ffi.from_handle(py)()
    if sslp is None:
        return 0
    try:
        c = sslp.ctx
        callback = c.client_hello if c is not None else None
        if callback is None:
            raise RuntimeError("client hello: this connection's context's callback cannot be reached")
        server_name = ffi.string(name).decode("utf-8", "replace") if name != ffi.NULL else None
        conn = sslp.connection
        enter_feature_callback(sslp, "client hello")
        try:
            answer = callback(conn if conn is not None else sslp, server_name)
        finally:
            exit_feature_callback()
        if not answer:
            raise SSLFailure("the client_hello_callback refused the handshake", "client-hello-callback")
        return 1
    except BaseException as exc:
        park(sslp, exc)
        return 0


def ssl_connection_read_certificates(conn: ConnectionArg, key_file: PathArg, *,
                                     cert_file: Optional[PathArg] = None,
                                     password: PassPhrase = None,
                                     password_callback: Optional[PassCallback] = None) -> None:
    """This connection's certificate (with its chain, from ``cert_file``, default
    ``key_file``) and private key (``key_file``), replacing the context's
    (``SSL_use_certificate_chain_file``, ``SSL_use_PrivateKey_file``): typically from
    a ``client_hello_callback``, by the server name the client asked for. An
    encrypted key takes ``password`` or ``password_callback(max_length, rwflag)``
    (no terminal prompt). A failure raises ``SSLFailure``."""
    import os

    sslp = ssl_of(conn)
    for argument, value in (("key_file", key_file), ("cert_file", cert_file)):
        if value is not None and not isinstance(value, (str, bytes, os.PathLike)):
            raise TypeError(f"{argument} must be a path (str or os.PathLike), not {type(value).__name__}")
    key_path = os.fsencode(key_file)
    cert_path = os.fsencode(cert_file) if cert_file is not None else key_path
    phrase = _Phrase(password, password_callback)
    with ssl_held(sslp) as ssl:
        ok = lib.commssl_lw_use_files(ssl, cert_path, key_path, phrase.phrase, phrase.userdata)
    phrase.check()
    if not ok:
        raise_last(f"ssl_connection_read_certificates({os.fsdecode(key_path)!r})", SSLFailure,
                   files=(cert_path, key_path))
    drain()
