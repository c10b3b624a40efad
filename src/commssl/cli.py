"""``python -m commssl``: show a TLS peer's certificate chain and how it verified.

Usage::

    python -m commssl                      # the embedded demo (no network needed)
    python -m commssl HOST[:PORT]          # inspect a server (port 443 by default)
    python -m commssl [::1]:8443 --cafile root.pem --servername localhost --json

Every view also shows the chain OpenSSL built (``ssl_connection_copy_verified_certificates``,
ending at the trust anchor) and each certificate's SPKI pin (``spki-sha256``, curl's
``--pinnedpubkey sha256//`` form). ``--ocsp`` asks the server for a stapled OCSP response
(``set_ocsp_stapling(ctx, True)``) and shows what ``ssl_connection_ocsp_status`` makes of
it; a staple that says revoked or does not verify makes the exit status 1 (kind "ocsp").

With a HOST it connects with ``make_ssl_ctx(True, "client")`` (the system's trusted
certificates, plus ``--cafile``/``--capath``), a Python verify callback recording
every call OpenSSL makes (``set_verification_mode``), and prints, leaf first, every
certificate the server sent, the verification trace, the result
(``ssl_connection_verify``), the protocol version and the SNI sent. Without HOST
it runs the embedded demo (``commssl.demo``): a throwaway root -> intermediate ->
leaf chain made in memory, a commssl server on 127.0.0.1 requiring a client
certificate, a commssl client, one line each way, and both sides' chains and traces.

``--verify always`` (default) aborts the handshake at the first certificate that
fails; the chain and trace are still shown (the callback copied them with
``ssl_connection_copy_peer_certificates``). ``--verify never`` accepts everything
but still records, so every problem of the chain shows in the trace. ``--timeout``
bounds the TCP connect and the TLS handshake together. With TLS 1.3 a server
checks a client certificate after the client's side of the handshake is done, so
the inspector waits up to half a second (within ``--timeout``) for such a rejection.

Exit status
-----------
0  the peer's chain verified (demo: both sides verified and the exchange worked)
1  the peer's chain did not verify (handshake aborted, or ``--verify never``), or with
   ``--ocsp`` the stapled response says revoked or does not verify
2  usage: bad arguments or ``HOST[:PORT]``, unreadable ``--cafile``/``--capath``/``--cert``/``--key``
3  connection or TLS error: unknown host, refused, timed out, not TLS, handshake
   failure, the server rejecting the client certificate

Errors print one line on stderr (``commssl: ...``). Colour is used only on a
terminal, without ``--no-color`` and with ``NO_COLOR`` unset or empty.

JSON (``--json``, schema 2)
---------------------------
One document on stdout, for every exit status except 2. Its schema is the JSON
Schema ``cli_schema.json`` beside this module (shipped with the package); the
documentation's command-line page explains each key. New keys come only with a
new ``schema`` number.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import ipaddress
import json
import math
import os
import socket
import sys
import time
from typing import Any, Dict, List, NoReturn, Optional, Sequence, TextIO, Tuple

from . import __version__, openssl_version
from ._binding import lib
from .certificates import CertificateData, get_certificate_common_name, get_certificate_data
from .connection import (
    peer_certificates,
    ssl_connection_copy_verified_certificates,
    ssl_connection_get_peer_certificates_data,
    ssl_connection_ocsp_response,
    ssl_connection_ocsp_status,
    ssl_connection_protocol_version,
    ssl_connection_verify,
)
from .contexts import (
    destroy_ssl_ctx,
    make_ssl_ctx,
    set_ssl_ctx_password_callback,
    ssl_ctx_load_verify_locations,
    ssl_ctx_use_certificate_chain_file,
    ssl_ctx_use_privatekey_file,
)
from .errors import SSLCondition, SSLHandshakeTimeout, SSLVerificationFailure
from .features import ssl_connection_cipher, ssl_connection_server_name
from .pointers import SSLCtxPointer, X509StoreCtxPointer, outstanding_certificates, release_certificate
from .revocation import set_ocsp_stapling
from .streams import SocketStream, attach_ssl, open_tcp_stream
from .verification import (
    set_verification_mode,
    x509_store_ctx_get_connection,
    x509_store_ctx_get_current_cert,
    x509_store_ctx_get_error,
    x509_store_ctx_get_error_depth,
    x509_verify_cert_error_string,
)

SCHEMA = 2
EXIT_OK, EXIT_UNVERIFIED, EXIT_USAGE, EXIT_CONNECTION = 0, 1, 2, 3
DEFAULT_PORT = 443
DEFAULT_TIMEOUT = 10.0
#: How long to wait after a TLS 1.3 handshake for the server to reject the client.
REJECTION_WINDOW = 0.5

Json = Dict[str, Any]


class UsageError(Exception):
    """Bad command-line input: exit status 2, one line on stderr."""


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
        code = lib.X509_V_OK if preverify_ok else x509_store_ctx_get_error(store)
        cert = x509_store_ctx_get_current_cert(store)
        self.trace.append({
            "depth": x509_store_ctx_get_error_depth(store),
            "preverify_ok": bool(preverify_ok),
            "error": code,
            "error_text": x509_verify_cert_error_string(code),
            "subject_cn": None if cert is None else get_certificate_common_name(cert),
        })
        conn = x509_store_ctx_get_connection(store)
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


def certificate_json(data: CertificateData, now: Optional[datetime.datetime] = None) -> Json:
    """A ``get_certificate_data`` list as the JSON schema's CERT object."""
    d = dict(data)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    not_after: Optional[datetime.datetime] = d.get("not-after")
    not_before: Optional[datetime.datetime] = d.get("not-before")
    serial: int = d["serial-number"]
    return {
        "subject": d.get("subject", ""),
        "issuer": d.get("issuer", ""),
        "subject_common_name": d.get("subject-common-name"),
        "issuer_common_name": d.get("issuer-common-name"),
        "serial_number": serial,
        "serial_hex": ("-" if serial < 0 else "") + f"0x{abs(serial):X}",
        "not_before": not_before.isoformat() if not_before else None,
        "not_after": not_after.isoformat() if not_after else None,
        "days_left": math.floor((not_after - now).total_seconds() / 86400) if not_after else None,
        "subject_alt_names": [{"type": t, "value": v} for t, v in d.get("subject-alt-names", [])],
        "emails": list(d.get("emails", [])),
        "sha256_fingerprint": d.get("sha256-fingerprint", ""),
        "spki_sha256": d.get("spki-sha256", ""),
    }


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


def chain_json(data: List[CertificateData]) -> List[Json]:
    return [certificate_json(d) for d in data]


def new_view() -> Json:
    return {"chain": [], "verified_chain": [], "trace": [], "verify": None, "ocsp": None}


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


def new_document(mode: str, host: str, port: int, servername: Optional[str]) -> Json:
    return {
        "schema": SCHEMA, "mode": mode,
        "target": {"host": host, "port": port, "servername": servername},
        "ok": False, "exit_status": EXIT_CONNECTION, "error": None,
        "protocol": None, "cipher": None, "client_certificate": False,
        "peer": new_view(),
        "server_side": None, "exchange": None, "outstanding_certificates": 0,
    }


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


# -- arguments ----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m commssl",
        description="Show a TLS server's certificate chain, leaf first, and how it verified "
                    "(the verify callback's trace). Without HOST: a self-contained demo of a "
                    "commssl server and client with an in-memory certificate chain.",
        epilog="exit status: 0 verified; 1 verification failed; 2 usage or unreadable file; "
               "3 connection or TLS error (unknown host, refused, timeout, not TLS). "
               "--json prints one document (schema: commssl/cli_schema.json).",
    )
    parser.add_argument("target", nargs="?", metavar="HOST[:PORT]",
                        help=f"server to inspect (port {DEFAULT_PORT} by default; IPv6 as [::1]:443)")
    parser.add_argument("--cafile", help="also trust the certificates in this PEM file")
    parser.add_argument("--capath", help="also trust this hashed certificate directory")
    parser.add_argument("--cert", help="client certificate (PEM, leaf first, chain may follow)")
    parser.add_argument("--key", help="client private key (PEM; default: --cert)")
    parser.add_argument("--servername", help="SNI and name to check (default: HOST when it is a name)")
    parser.add_argument("--verify", choices=("always", "never"), default="always",
                        help="always: abort the handshake when verification fails (default); "
                             "never: go on and report")
    parser.add_argument("--ocsp", action="store_true",
                        help="ask for a stapled OCSP response and check it (exit 1 when it says revoked "
                             "or does not verify)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds for connect + handshake (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours")
    parser.add_argument("--version", action="version",
                        version=f"commssl {__version__} ({openssl_version()['loaded']})")
    return parser


def parse_target(target: str) -> Tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]``, ``[IPv6]:PORT`` or a bare IPv6 address."""
    host, port_text = target, None
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            raise UsageError(f"bad target {target!r}: missing ']' after the IPv6 address")
        host, rest = target[1:end], target[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"bad target {target!r}: expected [IPv6]:PORT")
            port_text = rest[1:]
    elif target.count(":") == 1:
        host, port_text = target.split(":")
    elif target.count(":") > 1:
        try:
            ipaddress.IPv6Address(target)
        except ValueError:
            raise UsageError(f"bad target {target!r}: write IPv6 addresses as [ADDRESS]:PORT") from None
    if not host:
        raise UsageError(f"bad target {target!r}: no host")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"bad port {port_text!r} in {target!r}: expected a number from 1 to 65535")
    return host, int(port_text)


def _readable(path: str, option: str, directory: bool = False) -> None:
    if directory:
        if not os.path.isdir(path):
            raise UsageError(f"cannot read {option} {path!r}: not a directory")
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {option} {path!r}: {exc.strerror or exc}") from None


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
    ctx = make_ssl_ctx(True, "client")
    try:
        if args.cafile or args.capath:
            try:
                ssl_ctx_load_verify_locations(ctx, args.cafile, args.capath)
            except SSLCondition as exc:
                raise UsageError(f"cannot use --cafile/--capath: {str(exc).split(': ', 1)[-1]}") from None
        if args.cert:
            set_ssl_ctx_password_callback(ctx, _ask_password)
            try:
                ssl_ctx_use_certificate_chain_file(ctx, args.cert)
                ssl_ctx_use_privatekey_file(ctx, args.key or args.cert)
            except SSLCondition as exc:
                raise UsageError(f"cannot use --cert/--key: {str(exc).split(': ', 1)[-1]}") from None
        set_verification_mode(ctx, "client", args.verify, recorder)
        if getattr(args, "ocsp", False):
            set_ocsp_stapling(ctx, True)  # ask and record; the verdict is ours, below
    except BaseException:
        destroy_ssl_ctx(ctx)
        raise
    return ctx


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


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
        destroy_ssl_ctx(ctx)
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
                        "message": f"certificate not verified (depth {v['depth']}): {v['message']} "
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
    from .demo import run_demo  # the demo's PKI code is only needed here

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


# -- text output ---------------------------------------------------------------------


class Style:
    """ANSI styles, or none."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, s: str) -> str:
        return f"\033[{code}m{s}\033[0m" if self.enabled else s

    def bold(self, s: str) -> str:
        return self._wrap("1", s)

    def dim(self, s: str) -> str:
        return self._wrap("2", s)

    def good(self, s: str) -> str:
        return self._wrap("32", s)

    def bad(self, s: str) -> str:
        return self._wrap("1;31", s)

    def warn(self, s: str) -> str:
        return self._wrap("33", s)


def _when(iso: Optional[str]) -> str:
    if not iso:
        return "?"
    return datetime.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def render_certificate(out: List[str], i: int, cert: Json, st: Style) -> None:
    role = "leaf" if i == 0 else ("self-signed" if cert["subject"] == cert["issuer"] else "CA")
    name = cert["subject_common_name"] or cert["subject"] or "(no subject)"
    out.append(f"  {st.bold(f'[{i}] {name}')}  {st.dim(role)}")

    def row(label: str, value: str) -> None:
        out.append(f"      {st.dim(f'{label:<9}')} {value}")

    row("subject", cert["subject"])
    row("issuer", cert["issuer"])
    serial = cert["serial_number"]
    row("serial", f"{serial} ({cert['serial_hex']})" if abs(serial) < 1 << 64 else cert["serial_hex"])
    days = cert["days_left"]
    if days is None:
        left = ""
    elif days < 0:
        left = st.bad(f"expired {-days} days ago")
    else:
        left = (st.warn if days < 14 else st.good)(f"{days} days left")
    row("valid", f"{_when(cert['not_before'])} .. {_when(cert['not_after'])}  {left}")
    if cert["subject_alt_names"]:
        row("SANs", ", ".join(f"{'IP' if s['type'] == 'IP Address' else s['type']}:{s['value']}"
                              for s in cert["subject_alt_names"]))
    if cert["emails"]:
        row("emails", ", ".join(cert["emails"]))
    fp = cert["sha256_fingerprint"]
    half = len(fp) // 2 + 1 if len(fp) > 48 else len(fp)  # two lines of 16 bytes
    row("SHA-256", fp[:half].rstrip(":"))
    if fp[half:]:
        row("", fp[half:])
    row("SPKI pin", f"sha256//{cert['spki_sha256']}")


def render_view(out: List[str], title: str, view: Json, st: Style) -> None:
    chain = view["chain"]
    out.append(st.bold(f"{title}: {len(chain)} certificate{'s' if len(chain) != 1 else ''}, leaf first"))
    for i, cert in enumerate(chain):
        render_certificate(out, i, cert, st)
    out.append(st.bold("  verify callback calls (OpenSSL's order, root first):"))
    if not view["trace"]:
        out.append("      (none: verification never ran)")
    for step in view["trace"]:
        mark = st.good("ok  ") if step["preverify_ok"] else st.bad("FAIL")
        line = f"      depth {step['depth']}  {mark}  {step['subject_cn'] or '(no CN)'}"
        if not step["preverify_ok"]:
            line += f"  {st.bad(step['error_text'])} ({step['error']})"
        out.append(line)
    built = view["verified_chain"]
    if built:
        names = [c["subject_common_name"] or c["subject"] or "(no subject)" for c in built]
        out.append(st.bold("  chain OpenSSL built: ") + " -> ".join(names))
    ocsp = view["ocsp"]
    if ocsp is not None:
        out.append("  " + st.bold("OCSP staple: ") + render_ocsp(ocsp, st))
    v = view["verify"]
    if v is None or v["code"] is None:
        out.append(f"  result: {st.warn('not verified: the handshake stopped before verification')}")
    elif v["ok"]:
        out.append(f"  result: {st.good('verified')} ({v['message']}; mode {v['mode']})")
    else:
        out.append(f"  result: {st.bad('NOT verified')} at depth {v['depth']}: {v['message']} "
                   f"(X509_V_ERR {v['code']}; mode {v['mode']})")


def render_ocsp(ocsp: Json, st: Style) -> str:
    if not ocsp["stapled"]:
        return st.warn("none (the server stapled no response)")
    status = ocsp["status"]
    if ocsp["verified"]:
        word = st.good(status) if status == "good" else st.bad(status)
        text_ = f"{word}, verified"
    else:
        text_ = st.bad(f"{status}, NOT verified") + f": {ocsp['error']}"
    if ocsp["this_update"]:
        text_ += f" (this update {_when(ocsp['this_update'])}, next update {_when(ocsp['next_update'])})"
    if ocsp["revocation_time"]:
        text_ += f"; revoked {_when(ocsp['revocation_time'])}"
        if ocsp["revocation_reason"]:
            text_ += f" ({ocsp['revocation_reason']})"
    return text_


def render_text(doc: Json, st: Style) -> str:
    out: List[str] = []
    t = doc["target"]
    sni = t["servername"] or "none"
    tls = doc["protocol"] or "handshake not completed"
    if doc["cipher"]:
        tls += f", {doc['cipher']}"
    if doc["mode"] == "demo":
        from .demo import CLIENT_CN, INTERMEDIATE_CN, ROOT_CN, SERVER_CN

        out.append(st.bold("commssl demo") + f" ({openssl_version()['loaded']}): a commssl server and client "
                   "in this process")
        out.append(f"  PKI made in memory: {ROOT_CN!r} -> {INTERMEDIATE_CN!r} -> server {SERVER_CN!r}, "
                   f"client {CLIENT_CN!r}")
        out.append(f"  server: {_hostport(t['host'], t['port'])}, verify-peer + fail-if-no-peer-cert, "
                   "Python verify callback")
        out.append(f"  client: SNI {sni}, verify always, Python verify callback; {tls}")
        if doc["exchange"]:
            out.append(f"  client sent:     {doc['exchange']['sent']!r}")
            out.append(f"  server answered: {doc['exchange']['received']!r}")
        out.append("")
        render_view(out, "The client's view of the server", doc["peer"], st)
        out.append("")
        render_view(out, "The server's view of the client", doc["server_side"], st)
        out.append("")
        out.append(f"X509Pointers still owned after the releases: {doc['outstanding_certificates']}")
    else:
        out.append(st.bold(f"{_hostport(t['host'], t['port'])}") + f"  SNI {sni}  {tls}"
                   + ("  client certificate sent" if doc["client_certificate"] and doc["protocol"] else ""))
        out.append("")
        render_view(out, "Peer certificates", doc["peer"], st)
    status = doc["exit_status"]
    verdict = st.good("OK") if status == EXIT_OK else st.bad(f"FAILED (exit {status})")
    out.append(verdict + (f": {doc['error']['message']}" if doc["error"] else ""))
    return "\n".join(out) + "\n"


# -- main ------------------------------------------------------------------------------


def use_color(no_color: bool, stream: TextIO) -> bool:
    if no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")  # odd names must not crash the report
    try:
        args = build_parser().parse_args(argv)
        if not (args.timeout > 0 and math.isfinite(args.timeout)):
            raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
        if args.target is None:
            if args.cafile or args.capath or args.cert or args.key or args.servername or args.ocsp:
                raise UsageError("--cafile, --capath, --cert, --key, --servername and --ocsp need HOST")
            doc = demo(min(args.timeout, 5.0))
        else:
            host, port = parse_target(args.target)
            doc = inspect_server(args, host, port)
    except UsageError as exc:
        print(f"commssl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return 130
    doc["outstanding_certificates"] = outstanding_certificates()
    doc["ok"] = doc["exit_status"] == EXIT_OK
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif doc["protocol"] or doc["peer"]["chain"] or doc["peer"]["trace"] or doc["mode"] == "demo":
        # (When nothing came back from the peer at all, the stderr line says it all.)
        sys.stdout.write(render_text(doc, Style(use_color(args.no_color, sys.stdout))))
    sys.stdout.flush()
    if doc["error"]:
        print(f"commssl: {doc['error']['message']}", file=sys.stderr)
    return int(doc["exit_status"])
