"""The embedded demo of ``python -m commssl``: a throwaway PKI in memory, a commssl
server that requires a client certificate, and a commssl client talking to it.

The certificates come from one C helper (``commssl_demo_cert``, EC P-256 keys,
SHA-256 signatures) in its own small extension, ``commssl._demo``, which only this
module loads (its X509/EVP_PKEY pointers become ``_openssl``'s by ``ffi.cast``), and
go into the contexts straight from memory (``SSL_CTX_use_certificate``,
``SSL_CTX_add1_chain_cert``, ``SSL_CTX_use_PrivateKey``, ``X509_STORE_add_cert``): no
files, nothing beyond the package. The verify callbacks and what the output shows are the
caller's (``commssl.cli``); this module only runs the two sides.
"""

from __future__ import annotations

import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

from commssl import _demo
from commssl._core.binding import check, ffi, lib, raise_last, text
from commssl._core.pointers import SSLCtxPointer, X509Pointer, own_certificates, release_certificate
from commssl.config.certificates import CertificateData
from commssl.config.contexts import destroy_ssl_ctx, make_ssl_ctx
from commssl.config.verification import set_verification_mode
from commssl.errors import SSLVerificationFailure
from commssl.io.connection import (
    ssl_connection_get_peer_certificates_data,
    ssl_connection_protocol_version,
    ssl_connection_ssl_ref,
    ssl_connection_verify,
)
from commssl.streams import SocketStream, create_ssl_socket_stream, open_tcp_stream

ROOT_CN = "commssl demo root"
INTERMEDIATE_CN = "commssl demo intermediate"
SERVER_CN = "localhost"
CLIENT_CN = "commssl demo client"
CLIENT_EMAIL = "demo-client@example.test"
SERVER_SAN = "DNS:localhost,IP:127.0.0.1"
#: Validity of every demo certificate: from 5 minutes ago (clock skew) for 30 days.
NOT_BEFORE, NOT_AFTER = -300, 30 * 86400
CLIENT_LINE = b"hello from the commssl client\n"

VerifyCallback = Callable[[bool, Any], Any]


@dataclass
class Issued:
    """One demo certificate (an owned ``X509Pointer``) and its private key (``EVP_PKEY*``)."""

    cert: X509Pointer
    key: Any


def _issue(cn: str, *, san: Optional[str] = None, ca: bool = False, pathlen: int = -1,
           issuer: Optional[Issued] = None) -> Issued:
    dffi = _demo.ffi
    cert_out, key_out = dffi.new("X509 **"), dffi.new("EVP_PKEY **")
    ok = _demo.lib.commssl_demo_cert(
        cn.encode(), dffi.NULL if san is None else san.encode(), int(ca), pathlen,
        # random positive 63-bit serials: distinct per run, as a real CA's would be
        secrets.randbits(63) or 1, NOT_BEFORE, NOT_AFTER,
        dffi.NULL if issuer is None else dffi.cast("X509 *", issuer.cert.cdata),
        dffi.NULL if issuer is None else dffi.cast("EVP_PKEY *", issuer.key), cert_out, key_out)
    if not ok:
        raise_last(f"making the demo certificate {cn!r}")
    cert, key = ffi.cast("X509 *", cert_out[0]), ffi.cast("EVP_PKEY *", key_out[0])
    return Issued(own_certificates((cert,))[0], key)


class DemoPKI:
    """root -> intermediate -> server leaf (``localhost``, 127.0.0.1) and client leaf,
    made in memory. Use as a context manager: ``close`` releases every certificate and key."""

    def __init__(self) -> None:
        self._made: List[Issued] = []
        try:
            self.root = self._add(_issue(ROOT_CN, ca=True))
            self.intermediate = self._add(_issue(INTERMEDIATE_CN, ca=True, pathlen=0, issuer=self.root))
            self.server = self._add(_issue(SERVER_CN, san=SERVER_SAN, issuer=self.intermediate))
            self.client = self._add(_issue(CLIENT_CN, san=f"email:{CLIENT_EMAIL}", issuer=self.intermediate))
        except BaseException:
            self.close()
            raise

    def _add(self, issued: Issued) -> Issued:
        self._made.append(issued)
        return issued

    def close(self) -> None:
        while self._made:
            issued = self._made.pop()
            release_certificate(issued.cert)
            lib.EVP_PKEY_free(issued.key)

    def __enter__(self) -> "DemoPKI":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def context(self, side: str, leaf: Issued) -> SSLCtxPointer:
        """A ``make_ssl_ctx`` context for ``side`` presenting ``leaf`` + the
        intermediate and trusting the demo root. Destroy it with ``destroy_ssl_ctx``."""
        ctx = make_ssl_ctx(True, side)
        try:
            c = ctx.cdata
            # OpenSSL takes its own references (use_certificate/add1/add_cert up-ref,
            # use_PrivateKey too), so the PKI can be released independently.
            check(lib.SSL_CTX_use_certificate(c, leaf.cert.cdata), "SSL_CTX_use_certificate")
            check(lib.SSL_CTX_add1_chain_cert(c, self.intermediate.cert.cdata), "SSL_CTX_add1_chain_cert")
            check(lib.SSL_CTX_use_PrivateKey(c, leaf.key), "SSL_CTX_use_PrivateKey")
            check(lib.SSL_CTX_check_private_key(c), "SSL_CTX_check_private_key")
            check(lib.X509_STORE_add_cert(lib.SSL_CTX_get_cert_store(c), self.root.cert.cdata),
                  "X509_STORE_add_cert")
        except BaseException:
            destroy_ssl_ctx(ctx)
            raise
        return ctx


@dataclass
class SideResult:
    """What one side saw of its peer after the handshake (``chain`` leaf first)."""

    chain: List[CertificateData] = field(default_factory=list)
    verify: Optional[Tuple[bool, int]] = None
    error: Optional[BaseException] = None


@dataclass
class DemoResult:
    """The outcome of one demo run; ``error`` is the first failure, if any."""

    port: int = 0
    protocol: Optional[str] = None
    cipher: Optional[str] = None
    sni: Optional[str] = None
    sent: Optional[bytes] = None
    received: Optional[bytes] = None
    client: SideResult = field(default_factory=SideResult)
    server: SideResult = field(default_factory=SideResult)
    error: Optional[BaseException] = None


def _side_result(stream: SocketStream, into: SideResult) -> None:
    into.chain = ssl_connection_get_peer_certificates_data(stream)
    into.verify = ssl_connection_verify(stream)


def run_demo(client_callback: VerifyCallback, server_callback: VerifyCallback,
             timeout: float = 5.0) -> DemoResult:
    """Run the demo: the server (in a thread, on 127.0.0.1 with an OS-chosen port)
    verifies with ``["verify-peer", "fail-if-no-peer-cert"]`` and
    ``server_callback``; the client verifies ``localhost`` with ``"always"`` and
    ``client_callback``; they exchange one line. Every wait is bounded by
    ``timeout``; failures are returned in the result, not raised."""
    result = DemoResult()
    with DemoPKI() as pki:
        server_ctx = pki.context("server", pki.server)
        client_ctx = None
        try:
            set_verification_mode(server_ctx, "server", ["verify-peer", "fail-if-no-peer-cert"],
                                  server_callback)
            client_ctx = pki.context("client", pki.client)
            set_verification_mode(client_ctx, "client", "always", client_callback)
            _run(result, server_ctx, client_ctx, timeout)
        finally:
            destroy_ssl_ctx(server_ctx)
            if client_ctx is not None:
                destroy_ssl_ctx(client_ctx)
    return result


def _run(result: DemoResult, server_ctx: SSLCtxPointer, client_ctx: SSLCtxPointer, timeout: float) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(timeout)
    result.port = listener.getsockname()[1]

    def serve() -> None:
        try:
            sock, _ = listener.accept()
        except OSError as exc:
            result.server.error = exc
            return
        try:
            with create_ssl_socket_stream(sock, server_ctx, ssl_side="server",
                                          handshake_timeout=timeout, timeout=timeout) as stream:
                _side_result(stream, result.server)
                line = stream.readline(1024)
                cn = dict(result.server.chain[0]).get("subject-common-name") if result.server.chain else None
                stream.write(f"hello, {cn}; you sent {len(line)} bytes over "
                             f"{ssl_connection_protocol_version(stream)}\n".encode())
        except BaseException as exc:  # handed to the main thread, which reports it
            result.server.error = exc

    thread = threading.Thread(target=serve, name="commssl-demo-server", daemon=True)
    try:
        thread.start()
        try:
            with open_tcp_stream("127.0.0.1", result.port, ssl_ctx=client_ctx, tlsext_host_name="localhost",
                                 handshake_timeout=timeout, timeout=timeout) as stream:
                result.protocol = ssl_connection_protocol_version(stream)
                ssl = ssl_connection_ssl_ref(stream).cdata
                result.cipher = text(lib.SSL_get_cipher_name(ssl)) or None
                result.sni = text(lib.SSL_get_servername(ssl, lib.TLSEXT_NAMETYPE_host_name)) or None
                _side_result(stream, result.client)
                stream.write(CLIENT_LINE)
                result.sent = CLIENT_LINE
                result.received = stream.readline(1024)
        except BaseException as exc:
            result.client.error = exc
    finally:
        thread.join(timeout + 1.0)
        listener.close()
    if thread.is_alive() and result.server.error is None:
        result.server.error = TimeoutError("the demo server did not finish in time")
    # The side that rejected a certificate explains the failure best; the other
    # side only saw the alert.
    errors = [e for e in (result.server.error, result.client.error) if e is not None]
    rejected = [e for e in errors if isinstance(e, SSLVerificationFailure)]
    result.error = (rejected or errors or [None])[0]
