"""What blocking and asyncio SSL connections share: making the ``SSL`` for a
connection, and the ``ssl_connection_*`` functions, which accept either kind of
connection. The connection state itself lives in ``commssl.io.tls``."""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any, Callable, Iterator, List, Optional, Tuple

from commssl._core.args import SIDES, side_arg, ssl_of
from commssl._core.binding import drain, ffi, lib
from commssl._core.ownership import claim_ssl, ssl_held
from commssl._core.pointers import SSLCtxPointer, SSLPointer, X509Pointer, release_certificate
from commssl._core.types import ConnectionArg, ConnectionBase
from commssl.config import certificates as _certificates
from commssl.config.abstract import SSLAbstractContext
from commssl.config.certificates import (
    CertificateData,
    certificates_released,
    copy_peer_certificates,
    copy_verified_certificates,
    get_certificate_data,
)
from commssl.config.certvector import CertificateVector
from commssl.config.contexts import check_method_side, make_ssl_ctx, wants_new_ctx
from commssl.config.revocation import OCSPStatus, ocsp_response, ocsp_status
from commssl.config.sessions import apply_session, bind_server_sessions
from commssl.io.handshake import release_new_ssl
from commssl.io.policy import check_hostname_arg, client_name, encode_host_name
from commssl.io.state import CLOSED, HANDSHAKING, OPEN
from commssl.io.tls import TLSConnection

CtxCallback = Optional[Callable[[SSLCtxPointer], Any]]
SSLCallback = Optional[Callable[[SSLPointer], Any]]

_VERSIONS = {
    lib.TLS1_3_VERSION: "tls-v1-3",
    lib.TLS1_2_VERSION: "tls-v1-2",
    lib.TLS1_1_VERSION: "tls-v1-1",
    lib.TLS1_VERSION: "tls-v1",
    lib.SSL3_VERSION: "v3",
}


class Connection(ConnectionBase):
    """Base of the SSL connection kinds (``SocketStream``, ``AsyncSSLStream``):
    ``_tls`` is the connection core (``io.tls.TLSConnection``) that owns the state."""

    __slots__ = ()
    _tls: TLSConnection

    @property
    def ssl(self) -> Optional[SSLPointer]:
        """The connection's ``SSLPointer`` (``None`` while plain, and once closed)."""
        tls = self._tls
        return tls.sslp if tls.state in (HANDSHAKING, OPEN) else None

    @property
    def ssl_ctx(self) -> Optional[SSLCtxPointer]:
        """The ``SSLCtxPointer`` the SSL was made from (``None`` when ``ssl`` is)."""
        sslp = self.ssl
        return None if sslp is None else sslp.ctx

    def _ssl_pointer(self) -> SSLPointer:
        tls = self._tls
        sslp = tls.sslp
        if sslp is None:
            if tls.state == CLOSED:
                raise ValueError(f"{self!r} is closed")
            raise ValueError(f"{self!r} has no SSL attached")
        return sslp



_IPV4_CHARS = "0123456789."


def _is_ip(name: str) -> bool:
    # An IPv4 literal has only digits and dots, an IPv6 one a colon: a host name
    # skips ipaddress's parse and the exception it raises (2 us per handshake).
    if ":" not in name and name.strip(_IPV4_CHARS):
        return False
    if ":" not in name and any(len(o) > 1 and o[0] == "0" for o in name.split(".")):
        return False  # a leading zero (octal to some parsers): Python before 3.9.5 took it as an IP
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _callback_arg(value: object, argument: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{argument} must be callable or None, not {type(value).__name__}")


def new_ssl(
    ssl_ctx: Any,
    ssl_side: str,
    *,
    host: Optional[str] = None,
    tlsext_host_name: Any = None,
    ctx_configure_callback: CtxCallback = None, ssl_configure_callback: SSLCallback = None,
    session: Any = None,
    check_hostname: bool = True,
    name_argument: str = "tlsext_host_name",
) -> Tuple[SSLPointer, bool, Optional[SSLCtxPointer]]:
    """The ``SSL`` for a new connection, from any accepted ``ssl_ctx`` value.

    Returns the pointer, whether the connection owns it, and the context the
    connection made for itself (to free with it), if any. On the client side
    SNI is ``tlsext_host_name`` (``True``: ``host``; ``None``: ``host`` when it
    is a DNS name; ``False``: none) and the name checked against the
    certificate is ``tlsext_host_name`` when a string, else ``host``, as
    ``policy.client_name`` decides (``check_hostname``; ``name_argument``: the
    argument its ``ValueError`` names).
    ``ctx_configure_callback`` is called only with a context made here, and
    ``ssl_configure_callback`` only with an SSL made here (as in LispWorks);
    passing either where it would not be called is a ``ValueError``.
    ``session``: a ``Session`` to resume (client side; see ``sessions.py`` for
    when it is skipped). An ``SSLPointer`` is claimed for the connection here
    (``ValueError`` naming ``ssl_ctx`` when another connection has it);
    ``release_new_ssl`` or the connection's detach or close gives it back.
    """
    side_arg(ssl_side, SIDES)
    if tlsext_host_name is not None and not isinstance(tlsext_host_name, (str, bool)):
        raise TypeError("tlsext_host_name must be a str, True, False or None, "
                        f"not {type(tlsext_host_name).__name__}")
    check_hostname_arg(check_hostname)
    if ctx_configure_callback is not None:  # (None, the usual case, skips the call)
        _callback_arg(ctx_configure_callback, "ctx_configure_callback")
    if ssl_configure_callback is not None:
        _callback_arg(ssl_configure_callback, "ssl_configure_callback")
    # OpenSSL takes C strings: "good.test\0.evil" would be checked as "good.test".
    if isinstance(tlsext_host_name, str) and "\x00" in tlsext_host_name:
        raise ValueError(f"tlsext_host_name must not contain NUL characters: {tlsext_host_name!r}")
    if isinstance(host, str) and "\x00" in host:
        raise ValueError(f"host must not contain NUL characters: {host!r}")
    if ctx_configure_callback is not None and not wants_new_ctx(ssl_ctx):
        raise ValueError("ctx_configure_callback is called only with a context made for the connection "
                         "(ssl_ctx True, 'default' or 'v23'); configure your own context before passing it")
    own_ctx = None
    if isinstance(ssl_ctx, SSLCtxPointer):  # the common case first
        ctx = ssl_ctx
    elif isinstance(ssl_ctx, SSLPointer):
        if ssl_configure_callback is not None:
            raise ValueError("ssl_configure_callback is called only with an SSL made for the connection; "
                             "ssl_ctx is an SSLPointer: configure it before passing it")
        ctx = None
    elif isinstance(ssl_ctx, SSLAbstractContext):
        if ssl_ctx.side != ssl_side and ssl_side != "both":
            raise ValueError(f"ssl_ctx is a {ssl_ctx.side} context, used on the {ssl_side} side")
        if tlsext_host_name is None:
            tlsext_host_name = ssl_ctx.tlsext_host_name
        ssl_configure_callback = ssl_configure_callback or ssl_ctx.ssl_configure_callback
        ctx = ssl_ctx.ssl_ctx_pointer
    elif wants_new_ctx(ssl_ctx):
        ctx = own_ctx = make_ssl_ctx(ssl_ctx, ssl_side)
    else:
        # A str of the wrong spelling is a value error, as in make_ssl_ctx.
        raise (ValueError if isinstance(ssl_ctx, str) else TypeError)(
            "ssl_ctx must be True, 'default', 'v23', an SSLCtxPointer, an SSLPointer "
            f"or an abstract context, not {ssl_ctx!r}"
        )
    if ctx is None:
        # Before anything changes on it: a stream's own SSL, or one attached elsewhere,
        # would be reset under that connection's reader (ownership.py).
        claim_ssl(ssl_ctx)
        sslp, owns_ssl = ssl_ctx, False
    else:
        try:
            if ctx_configure_callback is not None:
                ctx_configure_callback(ctx)
            ctx_cdata = ctx._pin()  # held while SSL_new takes its own reference
            try:
                cdata = lib.SSL_new(ctx_cdata)
            finally:
                ctx._unpin()
            if cdata == ffi.NULL:
                raise MemoryError("SSL_new failed: " + repr(drain()))
            sslp, owns_ssl = SSLPointer._adopt(cdata, ctx, lib.SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), True
            sslp._claimed = True  # this connection's from the start (ownership.py)
        except BaseException:
            if own_ctx is not None:
                own_ctx._kill()
            raise
    try:
        if owns_ssl and ssl_configure_callback is not None:
            ssl_configure_callback(sslp)
        # An SSL made here is held by this frame alone (no one can kill it); one
        # passed in may belong to a stream another thread closes: pin it.
        ssl = sslp.cdata if owns_ssl else sslp._pin()
        try:
            check_method_side(ssl, ssl_side)
            _set_side(ssl, ssl_side, host, tlsext_host_name, check_hostname, name_argument)
            if session is not None:
                apply_session(sslp, ssl, session, ssl_side)
            elif ssl_side != "client":
                bind_server_sessions(sslp, ssl)
        finally:
            if not owns_ssl:
                sslp._unpin()
    except BaseException:
        release_new_ssl(sslp, owns_ssl, own_ctx)
        raise
    if not owns_ssl:  # a new SSL's record starts reset (commssl_attach)
        sslp.reset_verification()
    return sslp, owns_ssl, own_ctx


def _set_side(ssl: Any, ssl_side: str, host: Optional[str], tlsext_host_name: Any, check_hostname: bool,
              argument: str) -> None:
    if ssl_side == "client":
        sni = host if tlsext_host_name is True or tlsext_host_name is None else tlsext_host_name
        # what an encoding error calls a name that came from host (commssl.anyio: server_hostname)
        host_argument = "host" if argument == "tlsext_host_name" else argument
        sni_argument = host_argument if sni is host else "tlsext_host_name"
        # after ssl_configure_callback: the verify mode the handshake will use
        name = client_name(ssl, host=host, tlsext_host_name=tlsext_host_name, check_hostname=check_hostname,
                           argument=argument)
        name_argument = "tlsext_host_name" if isinstance(tlsext_host_name, str) else host_argument
        name_c, name_ip = ffi.NULL, False
        if name:
            name_ip = _is_ip(name)
            name_c = name.encode() if name_ip else encode_host_name(name, name_argument)
        sni_c = ffi.NULL
        if sni is name:  # the usual case: one check, one encoding
            if not name_ip and name:
                sni_c = name_c
        elif isinstance(sni, str) and sni and not _is_ip(sni):
            sni_c = encode_host_name(sni, sni_argument)
        # one C call: connect state, SNI, and the name to check (SSL_set1_host or the IP)
        if not lib.commssl_client_names(ssl, sni_c, name_c, name_ip):
            # fail closed: without it no name at all would be checked
            drain()
            raise ValueError(f"cannot check the peer's certificate against {name_argument} {name!r}: OpenSSL "
                             "refused the name (an IP address with a zone, say)")
    elif ssl_side == "server":
        lib.SSL_set_accept_state(ssl)


# -- the ssl_connection_* functions ------------------------------------------


# certificates.py's own function (one call less on this per-call path); it finds the SSL
# of a stream with ssl_of, handed to it here.
_certificates.ssl_of = ssl_of
ssl_connection_copy_peer_certificates = copy_peer_certificates


def ssl_connection_get_peer_certificates_data(conn: ConnectionArg) -> List[CertificateData]:
    """``get_certificate_data`` of each certificate the peer sent, leaf first."""
    certs = copy_peer_certificates(ssl_of(conn))
    try:
        return [get_certificate_data(c) for c in certs]
    finally:
        for c in certs:
            release_certificate(c)


def ssl_connection_verify(conn: ConnectionArg) -> Tuple[bool, int]:
    """Whether the peer's chain verified, and the ``X509_V_ERR_*`` code. During
    a verify callback: OpenSSL's result so far. No peer certificate is never a
    success (``X509_V_ERR_UNSPECIFIED``)."""
    sslp = ssl_of(conn)
    with ssl_held(sslp) as ssl:
        # Read under the operation lock: a verify callback's store (freed by OpenSSL when the
        # callback returns) is only seen by its own thread, which holds that lock already.
        store = sslp.verifying
        if store is not None:
            code = int(lib.X509_STORE_CTX_get_error(store))
            return code == lib.X509_V_OK, code
        if lib.SSL_get0_peer_certificate(ssl) == ffi.NULL:
            return False, int(lib.X509_V_ERR_UNSPECIFIED)
        code = int(lib.SSL_get_verify_result(ssl))
    return code == lib.X509_V_OK, code


def ssl_connection_protocol_version(conn: ConnectionArg) -> str:
    """``"tls-v1-3"``, ``"tls-v1-2"``, ``"tls-v1-1"``, ``"tls-v1"``, ``"v3"`` or ``"unknown"``."""
    sslp = ssl_of(conn)
    with ssl_held(sslp) as ssl:
        return _VERSIONS.get(lib.SSL_version(ssl), "unknown")


def ssl_connection_ssl_ref(conn: ConnectionArg) -> SSLPointer:
    """The connection's ``SSLPointer``."""
    return ssl_of(conn)


@contextlib.contextmanager
def peer_certificates(conn: ConnectionArg) -> Iterator[CertificateVector]:
    """Copy the peer's certificates (a ``CertificateVector``); on exit release the
    elements still owned and not set to ``None`` (set a slot to ``None`` to keep
    that certificate)."""
    with certificates_released(copy_peer_certificates(ssl_of(conn))) as held:
        yield held


# -- revocation and the verified chain (revocation.py, certificates.py) ---------------


def ssl_connection_copy_verified_certificates(conn: ConnectionArg) -> List[X509Pointer]:
    """The chain OpenSSL built for the peer, leaf first, ending at the trust anchor
    (when it verified), as owned pointers (release them); ``[]`` when no chain was
    built. Inside ``verify_callback(conn)``: the chain of the attempt that just ran,
    whether or not it verified. (``ssl_connection_copy_peer_certificates``: what
    the peer *sent*.)"""
    return copy_verified_certificates(ssl_of(conn))


def ssl_connection_ocsp_response(conn: ConnectionArg) -> Optional[bytes]:
    """The DER OCSP response the server stapled (``set_ocsp_stapling`` asks for
    one), or ``None``. Also inside ``verify_callback(conn)`` on TLS 1.3; on TLS 1.2
    the staple comes after the certificate, so it is not there yet."""
    return ocsp_response(ssl_of(conn))


def ssl_connection_ocsp_status(conn: ConnectionArg) -> Optional[OCSPStatus]:
    """The stapled response checked against the verified chain and the context's
    trust store (an ``OCSPStatus``), or ``None`` when nothing was stapled."""
    return ocsp_status(ssl_of(conn))
