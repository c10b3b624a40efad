"""Abstract contexts (LispWorks 8): ``create_ssl_client_context`` and
``create_ssl_server_context`` make an ``SSLAbstractContext``, a reusable
configuration that stands for one ``SSL_CTX`` wherever ``ssl_ctx`` is accepted, and
``reset_ssl_abstract_context`` makes it re-read its files on its next use."""

from __future__ import annotations

import threading
from typing import Any, Callable, NoReturn, Optional, Union

from commssl._core.args import path_arg
from commssl._core.binding import ffi, lib
from commssl._core.pointers import SSLCtxPointer, SSLPointer, call_pinned
from commssl.config.ciphers import set_ciphers, set_ciphersuites
from commssl.config.contexts import (
    PasswordCallback,
    PathArg,
    default_trust,
    make_ssl_ctx,
    set_ssl_ctx_password_callback,
    ssl_ctx_load_verify_locations,
    ssl_ctx_use_certificate_chain_file,
    ssl_ctx_use_privatekey_file,
)
from commssl.config.keys import pem_read_key, set_ssl_ctx_dh
from commssl.config.lispworks_callbacks import set_cert_request_callback, set_client_hello_callback
from commssl.config.revocation import set_crl_checking, set_ocsp_stapling, ssl_ctx_load_crl
from commssl.config.verification import set_verification_mode


class SSLAbstractContext:
    """A reusable configuration for many connections (LispWorks' ``ssl-abstract-context``).

    Accepted wherever ``ssl_ctx`` is; ``ssl_ctx_pointer`` is its ``SSL_CTX``.
    """

    def __init__(self, side: str, pointer: SSLCtxPointer, name: Optional[str],
                 tlsext_host_name: Optional[str],
                 ssl_configure_callback: Optional[Callable[[SSLPointer], Any]]):
        self.side = side
        self._pointer = pointer
        self._rebuild: Optional[Callable[[], SSLCtxPointer]] = None
        self._stale = False
        self._lock = threading.Lock()
        self.name = name
        self.tlsext_host_name = tlsext_host_name
        self.ssl_configure_callback = ssl_configure_callback

    @property
    def ssl_ctx_pointer(self) -> SSLCtxPointer:
        """Its ``SSL_CTX``; after ``reset_ssl_abstract_context`` a new one, made from
        the files as they are now, on this first use."""
        if self._stale:
            with self._lock:
                if self._stale and self._rebuild is not None:
                    # The replaced wrapper is dropped: the connections made with it hold it
                    # (SSLPointer.ctx, and OpenSSL's own reference of each SSL), and its
                    # SSL_CTX is freed when the last of them goes.
                    self._pointer = self._rebuild()
                self._stale = False
        return self._pointer

    def __repr__(self) -> str:
        return f"<SSLAbstractContext {self.side} {self.name or ''}>".replace(" >", ">")

    def __copy__(self) -> NoReturn:
        raise TypeError("SSLAbstractContext cannot be copied (it stands for one SSL_CTX); "
                        "create another with create_ssl_client_context/create_ssl_server_context")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        self.__copy__()

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("SSLAbstractContext cannot be pickled (it stands for an SSL_CTX in this process)")


def reset_ssl_abstract_context(ctx: SSLAbstractContext) -> None:
    """Re-read the context's files (certificate, key, trusted file and directory, DH
    file, CRL file) on its next use: the next connection made with it gets a new
    ``SSL_CTX`` configured from them as they are then; connections made before keep
    the old one, which is freed when the last of them is closed."""
    if not isinstance(ctx, SSLAbstractContext):
        raise TypeError(f"ctx must be an SSLAbstractContext, not {type(ctx).__name__}")
    ctx._stale = True


_PROTOCOLS = {"tls-v1-2": "TLS1_2_VERSION", "tls-v1-3": "TLS1_3_VERSION"}


def _abstract(side: str, **kw: Any) -> SSLAbstractContext:
    ctx = _make(side, **kw)
    abstract = SSLAbstractContext(side, ctx, kw["name"], kw["tlsext_host_name"],
                                  kw["openssl_ssl_configure_callback"])
    abstract._rebuild = lambda: _make(side, **kw)
    return abstract


def _make(side: str, *, cert_file: Optional[PathArg], key_file: Optional[PathArg],
              password: Union[None, str, bytes], password_callback: Optional[PasswordCallback],
              openssl_trusted_file: Optional[PathArg], openssl_trusted_directory: Optional[PathArg],
              verify_callback: Optional[Callable[[Any], Any]],
              openssl_ctx_configure_callback: Optional[Callable[[SSLCtxPointer], Any]],
              openssl_ssl_configure_callback: Optional[Callable[[SSLPointer], Any]],
              tlsext_host_name: Optional[str], name: Optional[str],
              crl_file: Any = None, crl_checking: Any = "default",
              ocsp_stapling: Any = False, protocol_version: Any = None, dh_file: Any = None,
              client_hello_callback: Any = None, cert_request_callback: Any = None,
              fail_if_no_peer_cert: bool = False,
              # cipher knobs (ciphers.py)
              ciphers: Optional[str] = None, ciphersuites: Optional[str] = None) -> SSLCtxPointer:

    if protocol_version is not None and protocol_version is not True and protocol_version not in _PROTOCOLS:
        raise ValueError("protocol_version must be 'tls-v1-2', 'tls-v1-3', True or None, "
                         f"not {protocol_version!r}")
    for argument, cb in (("client_hello_callback", client_hello_callback),
                         ("cert_request_callback", cert_request_callback)):
        if cb is not None and not callable(cb):
            raise TypeError(f"{argument} must be callable or None, not {type(cb).__name__}")
    if dh_file is not None:
        path_arg(dh_file, "dh_file")
    if not isinstance(fail_if_no_peer_cert, bool):
        raise TypeError(f"fail_if_no_peer_cert must be a bool, not {type(fail_if_no_peer_cert).__name__}")
    if verify_callback is not None and not callable(verify_callback):
        raise TypeError(f"verify_callback must be callable or None, not {type(verify_callback).__name__}")
    if tlsext_host_name is not None and not isinstance(tlsext_host_name, str):
        raise TypeError(f"tlsext_host_name must be a str or None, not {type(tlsext_host_name).__name__}")
    for argument, value in (("cert_file", cert_file), ("key_file", key_file),
                            ("openssl_trusted_file", openssl_trusted_file),
                            ("openssl_trusted_directory", openssl_trusted_directory)):
        if value is not None:
            path_arg(value, argument)  # checked before anything is made, named as the caller knows it
    ctx = make_ssl_ctx(True, side)
    if protocol_version in _PROTOCOLS:
        call_pinned(ctx, lib.SSL_CTX_set_min_proto_version, getattr(lib, _PROTOCOLS[protocol_version]))
    if dh_file is not None:
        dh = pem_read_key("DHparams", dh_file, None, None, True)  # read now, not from the cache
        assert dh is not None
        try:
            set_ssl_ctx_dh(ctx, dh=dh)
        finally:
            dh.release()
    if client_hello_callback is not None:
        set_client_hello_callback(ctx, client_hello_callback)
    if cert_request_callback is not None:
        set_cert_request_callback(ctx, cert_request_callback)
    if password is not None or password_callback is not None:
        set_ssl_ctx_password_callback(ctx, password_callback, password)
    if cert_file is not None:
        ssl_ctx_use_certificate_chain_file(ctx, cert_file)
    if key_file is not None:
        ssl_ctx_use_privatekey_file(ctx, key_file)
    elif cert_file is not None:
        ssl_ctx_use_privatekey_file(ctx, cert_file)
    if openssl_trusted_file == "default":
        default_trust(ctx.cdata)
    elif openssl_trusted_file is not None or openssl_trusted_directory is not None:
        ssl_ctx_load_verify_locations(ctx, openssl_trusted_file, openssl_trusted_directory)
    if crl_file is not None:
        ssl_ctx_load_crl(ctx, crl_file)
    if crl_checking == "default":  # checking follows from giving CRLs
        crl_checking = "leaf" if crl_file is not None else None
    set_crl_checking(ctx, crl_checking)
    if ocsp_stapling is not False:
        set_ocsp_stapling(ctx, ocsp_stapling)
    if fail_if_no_peer_cert:  # a client without a certificate fails the handshake
        set_verification_mode(ctx, side, ["verify-peer", "fail-if-no-peer-cert"])
    if verify_callback is not None:
        # The callback decides after OpenSSL's own check; servers then ask for a
        # certificate, and the callback decides a client that sends none too (io/handshake.py).
        if not fail_if_no_peer_cert:
            set_verification_mode(ctx, side, "always")
        ctx.conn_verify = verify_callback
        # every SSL made from the context, in commssl or not, asks Python (fail closed)
        ctx._record.conn_verify = 1
        lib.SSL_CTX_set_cert_verify_callback(ctx.cdata, lib.commssl_cert_verify_cb, ffi.NULL)
    # cipher knobs (ciphers.py): before the user's configure callback, which may refine them
    if ciphers is not None:
        set_ciphers(ctx, ciphers)
    if ciphersuites is not None:
        set_ciphersuites(ctx, ciphersuites)
    if openssl_ctx_configure_callback is not None:
        openssl_ctx_configure_callback(ctx)
    return ctx


def create_ssl_client_context(
    *,
    cert_file: Optional[PathArg] = None,
    key_file: Optional[PathArg] = None,
    password: Union[None, str, bytes] = None, password_callback: Optional[PasswordCallback] = None,
    openssl_trusted_file: Optional[PathArg] = None, openssl_trusted_directory: Optional[PathArg] = None,
    verify_callback: Optional[Callable[[Any], Any]] = None,
    tlsext_host_name: Optional[str] = None,
    openssl_ctx_configure_callback: Optional[Callable[[SSLCtxPointer], Any]] = None,
    openssl_ssl_configure_callback: Optional[Callable[[SSLPointer], Any]] = None,
    name: Optional[str] = None,
    crl_file: Optional[Union[PathArg, bytes]] = None, crl_checking: Optional[str] = "default",
    ocsp_stapling: Union[bool, str] = False,
    protocol_version: Union[None, bool, str] = None,
    cert_request_callback: Optional[Callable[[Any], Any]] = None,
    ciphers: Optional[str] = None, ciphersuites: Optional[str] = None,
) -> SSLAbstractContext:
    """A client context (LispWorks 8 ``create-ssl-client-context``).

    Without ``verify_callback`` it verifies the server's chain against
    ``openssl_trusted_file``/``_directory`` (default: the system's) and its host
    name. With ``verify_callback(conn) -> bool`` OpenSSL checks first and the
    callback's answer decides. ``crl_file`` (a path or bytes: ``ssl_ctx_load_crl``)
    and ``crl_checking`` (``None``, ``"leaf"``, ``"chain"``; default ``"leaf"`` when
    ``crl_file`` is given, else ``None``: ``set_crl_checking``) check revocation;
    ``ocsp_stapling`` (``False``, ``True``, ``"if-present"``, ``"require"``) is
    ``set_ocsp_stapling``'s mode. ``protocol_version`` (``"tls-v1-2"``,
    ``"tls-v1-3"`` or ``True``) is the minimum version. ``cert_request_callback(conn)``
    is called when the server asks for a client certificate; a falsy answer aborts the
    handshake (``SSLFailure`` with ``ssl_code`` ``"cert-request-callback"``).
    ``ciphers`` (TLS 1.2) and ``ciphersuites`` (TLS 1.3) are ``set_ciphers``' and
    ``set_ciphersuites``' strings; a maximum version is ``set_protocol_versions``'.
    """
    return _abstract("client", **locals())


def create_ssl_server_context(
    *,
    cert_file: Optional[PathArg] = None,
    key_file: Optional[PathArg] = None,
    password: Union[None, str, bytes] = None, password_callback: Optional[PasswordCallback] = None,
    verify_callback: Optional[Callable[[Any], Any]] = None,
    fail_if_no_peer_cert: bool = False,
    openssl_trusted_file: Optional[PathArg] = None, openssl_trusted_directory: Optional[PathArg] = None,
    openssl_ctx_configure_callback: Optional[Callable[[SSLCtxPointer], Any]] = None,
    openssl_ssl_configure_callback: Optional[Callable[[SSLPointer], Any]] = None,
    name: Optional[str] = None,
    crl_file: Optional[Union[PathArg, bytes]] = None, crl_checking: Optional[str] = "default",
    protocol_version: Union[None, bool, str] = None,
    dh_file: Optional[PathArg] = None,
    client_hello_callback: Optional[Callable[[Any, Optional[str]], Any]] = None,
    ciphers: Optional[str] = None, ciphersuites: Optional[str] = None,
) -> SSLAbstractContext:
    """A server context (LispWorks 8 ``create-ssl-server-context``).

    ``cert_file`` holds the certificate and its chain; ``key_file`` (default:
    ``cert_file``) the key. With ``verify_callback(conn) -> bool`` the server asks
    for a client certificate and the callback decides every handshake: after
    OpenSSL's check of the certificate that came, or, when the client sent none,
    with an empty chain (``ssl_connection_copy_peer_certificates(conn) == []``,
    ``ssl_connection_verify(conn) == (False, X509_V_ERR_UNSPECIFIED)``) right after
    the handshake, before any data. A falsy answer fails the handshake
    (``SSLVerificationFailure``). Without ``verify_callback`` it asks for none.
    ``fail_if_no_peer_cert=True`` requires a client certificate (verify-peer and
    fail-if-no-peer-cert: OpenSSL ends the handshake of a client that sends none,
    ``SSLVerificationFailure``) and verifies it against ``openssl_trusted_file`` /
    ``_directory``; with ``verify_callback`` the callback then sees only clients
    with a certificate.
    ``crl_file`` and ``crl_checking`` check client certificates' revocation, as for
    ``create_ssl_client_context``. ``protocol_version``: the minimum version, as
    there. ``dh_file``: DH parameters (PEM or DER) for DHE ciphers.
    ``client_hello_callback(conn, server_name)`` is called with the client's SNI name
    (or ``None``) before the server picks its certificate: it may set the
    connection's own with ``ssl_connection_read_certificates``; a falsy answer aborts
    the handshake (``SSLFailure`` with ``ssl_code`` ``"client-hello-callback"``).
    ``ciphers`` and ``ciphersuites``: as for ``create_ssl_client_context``.
    """
    return _abstract("server", tlsext_host_name=None, **locals())
