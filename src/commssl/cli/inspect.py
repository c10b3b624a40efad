"""``python -m commssl``'s inspection: the recording verify callback, the client context
from the arguments, connecting to a server (or running the demo) and filling the JSON
document, and what went wrong, as (kind, message, exit status). Through commssl's public
API only. Part of ``commssl.cli``."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
from typing import Any, List, Optional, Tuple, cast

from commssl._core.pointers import SSLCtxPointer, X509StoreCtxPointer, release_certificate
from commssl._core.types import ConnectionArg
from commssl.cli.args import (
    EXIT_CONNECTION,
    EXIT_OK,
    EXIT_UNVERIFIED,
    UsageError,
    _hostport,
    _is_ip,
    _readable,
)
from commssl.cli.render import Json, certificate_json, chain_json, new_document, new_view
from commssl.config import contexts
from commssl.config.certificates import get_certificate_common_name, get_certificate_data
from commssl.config.features import ssl_connection_cipher, ssl_connection_server_name
from commssl.config.revocation import set_ocsp_stapling
from commssl.config.verification import (
    set_verification_mode,
    x509_store_ctx_get_connection,
    x509_store_ctx_get_current_cert,
    x509_store_ctx_get_error,
    x509_store_ctx_get_error_depth,
    x509_verify_cert_error_string,
)
from commssl.errors import SSLCondition, SSLHandshakeTimeout, SSLVerificationFailure
from commssl.io.connection import (
    peer_certificates,
    ssl_connection_copy_verified_certificates,
    ssl_connection_get_peer_certificates_data,
    ssl_connection_ocsp_response,
    ssl_connection_ocsp_status,
    ssl_connection_protocol_version,
    ssl_connection_verify,
)
from commssl.streams import SocketStream, attach_ssl, open_tcp_stream

#: OpenSSL's X509_V_OK (0, part of its ABI): the verify callback's code for a passing call.
X509_V_OK = 0
#: How long to wait after a TLS 1.3 handshake for the server to reject the client.
REJECTION_WINDOW = 0.5


# -- what the verify callback sees ---------------------------------------------


class Recorder:
    """A Python verify callback that records each call and, on the first, copies
    the chain being verified (so it can be shown even when the handshake fails).

    ``accept_all``: answer True whatever OpenSSL found (``--verify never``);
    otherwise answer ``preverify_ok``.
    """

    def __init__(self, accept_all: bool = False) -> None:
        self.accept_all = accept_all
        self.trace: List[Json] = []
        self.chain: Optional[List[Json]] = None
        self.verified_chain: List[Json] = []
        self.sni: Optional[str] = None

    def __call__(self, preverify_ok: bool, store: X509StoreCtxPointer) -> bool:
        # When a certificate passes, the store may still hold an earlier error
        # (accepted by an earlier call): report "ok" for passing calls.
        code = X509_V_OK if preverify_ok else x509_store_ctx_get_error(store)
        cert = x509_store_ctx_get_current_cert(store)
        self.trace.append({
            "depth": x509_store_ctx_get_error_depth(store),
            "preverify_ok": bool(preverify_ok),
            "error": code,
            "error_text": x509_verify_cert_error_string(code),
            "subject_cn": None if cert is None else get_certificate_common_name(cert),
        })
        # a store ctx commssl lends to a callback always has its connection (None: outside one)
        conn = cast(ConnectionArg, x509_store_ctx_get_connection(store))
        # the chain being built; complete at the last call (the leaf's)
        built = ssl_connection_copy_verified_certificates(conn)
        try:
            self.verified_chain = [certificate_json(get_certificate_data(c)) for c in built]
        finally:
            for c in built:
                release_certificate(c)
        if self.chain is None:
            with peer_certificates(conn) as certs:
                self.chain = [certificate_json(get_certificate_data(c)) for c in certs if c is not None]
            self.sni = ssl_connection_server_name(conn)
        return True if self.accept_all else preverify_ok

    def first_failure(self) -> Optional[Json]:
        return next((step for step in self.trace if not step["preverify_ok"]), None)


def verify_json(mode: str, result: Optional[Tuple[bool, int]], recorder: Recorder,
                exc: Optional[BaseException] = None) -> Json:
    """The VIEW's ``verify`` object from ``ssl_connection_verify``'s answer, or from
    a verification failure that aborted the handshake."""
    if isinstance(exc, SSLVerificationFailure):
        depth = exc.depth
        if depth is None and recorder.first_failure() is not None:
            depth = recorder.first_failure()["depth"]  # type: ignore[index]
        return {"mode": mode, "ok": False, "code": exc.verify_code, "message": exc.verify_message,
                "depth": depth}
    if result is None:
        return {"mode": mode, "ok": False, "code": None, "message": None, "depth": None}
    ok, code = result
    failure = recorder.first_failure()
    return {"mode": mode, "ok": ok, "code": code, "message": x509_verify_cert_error_string(code),
            "depth": None if ok else (failure["depth"] if failure else 0)}


def ocsp_json(conn: Any) -> Json:
    """The VIEW's ``ocsp`` object for a connection that asked for a staple."""
    status = ssl_connection_ocsp_status(conn)
    response = ssl_connection_ocsp_response(conn)
    doc: Json = {"stapled": response is not None, "bytes": len(response) if response is not None else 0,
                 "status": None, "verified": False, "verify_code": None, "error": None,
                 "this_update": None, "next_update": None, "revocation_time": None, "revocation_reason": None}
    if status is not None:
        doc.update(status=status.status, verified=status.verified, verify_code=status.verify_code,
                   error=status.error, revocation_reason=status.revocation_reason,
                   **{key: (getattr(status, key).isoformat() if getattr(status, key) else None)
                      for key in ("this_update", "next_update", "revocation_time")})
    return doc


# -- errors -----------------------------------------------------------------------


def describe_error(exc: BaseException, host: str, port: int, timeout: float) -> Tuple[str, str, int]:
    """(kind, one-line message, exit status) for what connecting or the handshake raised."""
    where = _hostport(host, port)
    if isinstance(exc, SSLVerificationFailure):
        at = f" at depth {exc.depth}" if exc.depth is not None else ""
        return ("verification",
                f"certificate verification failed{at}: {exc.verify_message} (X509_V_ERR {exc.verify_code})",
                EXIT_UNVERIFIED)
    if isinstance(exc, SSLHandshakeTimeout):
        return ("timeout", f"no TLS handshake with {where} within {timeout:g} s (is it a TLS server?)",
                EXIT_CONNECTION)
    if isinstance(exc, SSLCondition):
        reason = str(exc).split(": ", 1)[-1]
        hint = ""
        if any(s in reason for s in ("wrong version number", "packet length too long", "record layer failure",
                                     "http request", "unexpected eof", "the peer closed")):
            hint = " (is it a TLS server?)"
        return "tls", f"TLS handshake with {where} failed: {reason}{hint}", EXIT_CONNECTION
    if isinstance(exc, socket.gaierror):
        return "resolve", f"cannot resolve host {host!r}: {exc.strerror or exc}", EXIT_CONNECTION
    if isinstance(exc, ConnectionRefusedError):
        return "refused", f"connection to {where} refused", EXIT_CONNECTION
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout", f"no connection to {where} within {timeout:g} s", EXIT_CONNECTION
    if isinstance(exc, OSError):
        return "connect", f"cannot connect to {where}: {exc.strerror or exc}", EXIT_CONNECTION
    raise exc


def _ask_password(max_length: int, rwflag: bool) -> str:
    if not sys.stdin.isatty():
        raise UsageError("the --key is encrypted and there is no terminal to ask for its pass phrase")
    return getpass.getpass("pass phrase of the --key: ")


def client_context(args: argparse.Namespace, recorder: Recorder) -> SSLCtxPointer:
    """The client context for ``args``; raises ``UsageError`` for unreadable files."""
    if args.key and not args.cert:
        raise UsageError("--key needs --cert")
    for path, option in ((args.cafile, "--cafile"), (args.cert, "--cert"), (args.key, "--key")):
        if path:
            _readable(path, option)
    if args.capath:
        _readable(args.capath, "--capath", directory=True)
    ctx = contexts.make_ssl_ctx(True, "client")
    try:
        if args.cafile or args.capath:
            try:
                contexts.ssl_ctx_load_verify_locations(ctx, args.cafile, args.capath)
            except SSLCondition as exc:
                raise UsageError(f"cannot use --cafile/--capath: {str(exc).split(': ', 1)[-1]}") from None
        if args.cert:
            contexts.set_ssl_ctx_password_callback(ctx, _ask_password)
            try:
                contexts.ssl_ctx_use_certificate_chain_file(ctx, args.cert)
                contexts.ssl_ctx_use_privatekey_file(ctx, args.key or args.cert)
            except SSLCondition as exc:
                raise UsageError(f"cannot use --cert/--key: {str(exc).split(': ', 1)[-1]}") from None
        set_verification_mode(ctx, "client", args.verify, recorder)
        if getattr(args, "ocsp", False):
            set_ocsp_stapling(ctx, True)  # ask and record; the verdict is ours, below
    except BaseException:
        contexts.destroy_ssl_ctx(ctx)
        raise
    return ctx


# -- inspecting a server ------------------------------------------------------------


def await_rejection(stream: SocketStream, seconds: float) -> Optional[SSLCondition]:
    """After a TLS 1.3 handshake, give the server ``seconds`` to reject the client
    (it checks a client certificate only after the client's Finished). Returns the
    failure, or None when the server sent data, nothing, or closed cleanly."""
    # One read bounded by ``seconds`` (the stream's own timeout, put back after).
    kept = stream.timeout
    stream.timeout = seconds
    try:
        stream.read1(1)
    except TimeoutError:
        return None
    except SSLCondition as exc:
        return exc
    finally:
        stream.timeout = kept
    return None


def inspect_server(args: argparse.Namespace, host: str, port: int) -> Json:
    """Connect to ``host:port`` and fill the JSON document (see the module docstring)."""
    servername = args.servername or (None if _is_ip(host) else host)
    doc = new_document("inspect", host, port, servername)
    doc["client_certificate"] = bool(args.cert)
    recorder = Recorder(accept_all=args.verify == "never")
    ctx = client_context(args, recorder)
    deadline = time.monotonic() + args.timeout
    verify: Optional[Tuple[bool, int]] = None
    failure: Optional[BaseException] = None
    try:
        try:
            stream = open_tcp_stream(host, port, timeout=args.timeout)
        except OSError as exc:
            failure = exc
        else:
            with stream:
                try:
                    # The handshake gets what is left of --timeout after the connect.
                    attach_ssl(stream, ssl_ctx=ctx, ssl_side="client",
                               tlsext_host_name=args.servername or host,
                               handshake_timeout=max(0.0, deadline - time.monotonic()))
                except OSError as exc:
                    failure = exc
                else:
                    doc["protocol"] = ssl_connection_protocol_version(stream)
                    doc["cipher"] = ssl_connection_cipher(stream) or None
                    doc["target"]["servername"] = ssl_connection_server_name(stream)
                    verify = ssl_connection_verify(stream)
                    doc["peer"]["chain"] = chain_json(ssl_connection_get_peer_certificates_data(stream))
                    if args.ocsp:
                        doc["peer"]["ocsp"] = ocsp_json(stream)
                    if doc["protocol"] == "tls-v1-3":
                        window = min(REJECTION_WINDOW, max(0.0, deadline - time.monotonic()))
                        failure = await_rejection(stream, window)
    finally:
        contexts.destroy_ssl_ctx(ctx)
    if verify is None and recorder.chain is not None:
        doc["peer"]["chain"] = recorder.chain
        doc["target"]["servername"] = recorder.sni
    doc["peer"]["trace"] = recorder.trace
    doc["peer"]["verified_chain"] = recorder.verified_chain
    doc["peer"]["verify"] = verify_json(args.verify, verify, recorder, failure)
    ocsp = doc["peer"]["ocsp"]
    if failure is not None:
        kind, message, status = describe_error(failure, host, port, args.timeout)
        if verify is not None and kind == "tls":
            kind, message = "rejected", f"the server rejected the connection after the handshake: " \
                                        f"{str(failure).split(': ', 1)[-1]}"
        doc["error"] = {"kind": kind, "message": message}
        doc["exit_status"] = status
    elif not doc["peer"]["verify"]["ok"]:
        v = doc["peer"]["verify"]
        doc["error"] = {"kind": "verification",
                        # worded as describe_error's: one message whatever --verify mode ran
                        "message": f"certificate verification failed at depth {v['depth']}: {v['message']} "
                                   f"(X509_V_ERR {v['code']})"}
        doc["exit_status"] = EXIT_UNVERIFIED
    elif ocsp is not None and ocsp["stapled"] and ocsp["verify_code"] != 0:
        problem = "revoked" if ocsp["status"] == "revoked" and ocsp["verified"] else \
            f"{ocsp['status']}, {ocsp['error'] or 'not verified'}"
        doc["error"] = {"kind": "ocsp", "message": f"the stapled OCSP response: {problem} "
                                                   f"(X509_V_ERR {ocsp['verify_code']})"}
        doc["exit_status"] = EXIT_UNVERIFIED
    else:
        doc["exit_status"] = EXIT_OK
    return doc


# -- the demo ------------------------------------------------------------------------


def demo(timeout: float) -> Json:
    """Run ``commssl.demo`` with recording callbacks and fill the JSON document."""
    from commssl.cli.local_demo import run_demo  # the demo's PKI code is only needed here

    client, server = Recorder(), Recorder()
    result = run_demo(client, server, timeout)
    doc = new_document("demo", "127.0.0.1", result.port, result.sni or client.sni)
    doc.update(protocol=result.protocol, cipher=result.cipher, client_certificate=True)
    for view, side, recorder, mode in ((doc["peer"], result.client, client, "always"),
                                       (None, result.server, server, "verify-peer,fail-if-no-peer-cert")):
        if view is None:
            view = doc["server_side"] = new_view()
        view["chain"] = chain_json(side.chain) if side.chain else (recorder.chain or [])
        view["trace"] = recorder.trace
        view["verified_chain"] = recorder.verified_chain
        view["verify"] = verify_json(mode, side.verify, recorder, side.error)
    if result.sent is not None and result.received is not None:
        doc["exchange"] = {"sent": result.sent.decode(errors="replace").rstrip("\n"),
                           "received": result.received.decode(errors="replace").rstrip("\n")}
    if result.error is not None:
        kind, message, status = describe_error(result.error, "127.0.0.1", result.port, timeout)
        doc["error"] = {"kind": kind, "message": f"demo: {message}"}
        doc["exit_status"] = status
    elif not (doc["peer"]["verify"]["ok"] and doc["server_side"]["verify"]["ok"]) or doc["exchange"] is None:
        doc["error"] = {"kind": "verification", "message": "demo: a side did not verify its peer"}
        doc["exit_status"] = EXIT_UNVERIFIED
    else:
        doc["exit_status"] = EXIT_OK
    return doc
