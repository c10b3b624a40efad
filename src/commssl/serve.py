"""``python -m commssl serve``: the certificate set and the local server the documentation's
examples use.

``python -m commssl serve [--dir DIR] [--port 8443] [--duration SECONDS]`` writes into ``DIR``
(default: the current directory; the files below are overwritten, nothing else is touched):

- ``root.pem``: the root the examples' clients trust (``commssl test root``);
- ``server.pem``, ``server-chain.pem`` (leaf then intermediate), ``server.key``: the server's
  certificate for ``localhost`` and 127.0.0.1, issued by ``commssl test intermediate``;
- ``client.pem``, ``client-chain.pem``, ``client.key``: a client certificate (``commssl client``);
- ``crl.pem``: the intermediate's and the root's CRLs, nothing revoked; ``revoked-crl.pem``: the
  intermediate's CRL revoking the server's certificate;
- ``staple.der``: a good OCSP response for the server's certificate (valid for 7 days);

then serves TLS on 127.0.0.1:PORT with ``server-chain.pem``, stapling ``staple.der`` to clients
that ask: each connection's first line comes back in upper case, and HTTP/1.1 ``GET`` requests
(keep-alive) get ``200`` with the body ``hello <path>``. A connection that fails (some examples
are rejected on purpose) prints one line on stderr. It stops after ``--duration`` seconds
(default 600) or on Ctrl-C. ``--port 0`` picks a free port; the line printed when it is ready
names it.

The certificates are made with ``cryptography`` (EC P-256, SHA-256), which is not one of
commssl's own dependencies: ``pip install commssl[serve]`` (the ``test`` extra has it too).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from commssl.config.contexts import (
    destroy_ssl_ctx,
    make_ssl_ctx,
    ssl_ctx_use_certificate_chain_file,
    ssl_ctx_use_privatekey_file,
)
from commssl.config.revocation import set_ocsp_staple
from commssl.streams import create_ssl_socket_stream

__all__ = ["DEFAULT_DURATION", "DEFAULT_PORT", "FILES", "ExampleServer", "main", "write_example_files"]

DEFAULT_PORT = 8443
DEFAULT_DURATION = 600.0
#: The file names written, as the documentation's examples use them.
FILES = ("root.pem", "server.pem", "server-chain.pem", "server.key", "client.pem", "client-chain.pem",
         "client.key", "crl.pem", "revoked-crl.pem", "staple.der")
ROOT_CN, INTERMEDIATE_CN, SERVER_CN, CLIENT_CN = (
    "commssl test root", "commssl test intermediate", "localhost", "commssl client")
CLIENT_EMAIL, CLIENT_ALT_EMAIL = "client@example.test", "alt@example.test"
#: The serial numbers the guide's examples print.
ROOT_SERIAL, INTERMEDIATE_SERIAL, SERVER_SERIAL, CLIENT_SERIAL = (
    1000, 1001, 0x0123456789ABCDEF0123456789ABCDEF01, 4242)


def _need_cryptography() -> None:
    try:
        import cryptography.x509  # noqa: F401
    except ImportError:
        raise ImportError("python -m commssl serve makes its certificates with the 'cryptography' "
                          "package: pip install commssl[serve]") from None


def write_example_files(directory: "str | Path") -> Dict[str, Path]:
    """Write the examples' certificate set (see the module docstring) into ``directory``
    (made if missing); returns ``{file name: path}``. Needs ``cryptography``."""
    _need_cryptography()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import ocsp
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    pem = serialization.Encoding.PEM

    def name(cn: str, email: Optional[str] = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if email is not None:
            attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
        return x509.Name(attrs)

    def issue(subject: x509.Name, serial: int, key: Any, issuer: Optional[tuple[x509.Certificate, Any]],
              ca: Optional[int], san: Optional[List[x509.GeneralName]] = None) -> x509.Certificate:
        """``ca``: None for a leaf, -1 for a root (no path length), else the path length."""
        issuer_name = subject if issuer is None else issuer[0].subject
        signer = key if issuer is None else issuer[1]
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
             .public_key(key.public_key()).serial_number(serial)
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=3650)))
        path_length = None if ca in (None, -1) else ca
        b = b.add_extension(x509.BasicConstraints(ca=ca is not None, path_length=path_length), critical=True)
        if ca is not None:
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                critical=True)
        else:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                critical=True)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                       ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        if san is not None:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                            critical=False)
        return b.sign(signer, hashes.SHA256())

    def new_key() -> Any:
        return ec.generate_private_key(ec.SECP256R1())

    def key_pem(key: Any) -> bytes:
        data: bytes = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return data

    root_key, inter_key, server_key, client_key = new_key(), new_key(), new_key(), new_key()
    root = issue(name(ROOT_CN), ROOT_SERIAL, root_key, None, -1)
    inter = issue(name(INTERMEDIATE_CN), INTERMEDIATE_SERIAL, inter_key, (root, root_key), 0)
    server = issue(name(SERVER_CN), SERVER_SERIAL, server_key, (inter, inter_key), None,
                   [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = issue(name(CLIENT_CN, CLIENT_EMAIL), CLIENT_SERIAL, client_key, (inter, inter_key), None,
                   [x509.RFC822Name(CLIENT_ALT_EMAIL)])

    def crl(ca: x509.Certificate, key: Any, revoked: Sequence[x509.Certificate] = ()) -> bytes:
        b = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
             .last_update(now - datetime.timedelta(hours=1)).next_update(now + datetime.timedelta(days=30))
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
             .add_extension(x509.CRLNumber(1), False))
        for cert in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                .revocation_date(now - datetime.timedelta(hours=1))
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), False).build())
        return b.sign(key, hashes.SHA256()).public_bytes(pem)

    staple = (ocsp.OCSPResponseBuilder()
              .add_response(cert=server, issuer=inter, algorithm=hashes.SHA1(),
                            cert_status=ocsp.OCSPCertStatus.GOOD,
                            this_update=now - datetime.timedelta(hours=1),
                            next_update=now + datetime.timedelta(days=7),
                            revocation_time=None, revocation_reason=None)
              .responder_id(ocsp.OCSPResponderEncoding.HASH, inter).certificates([inter])
              .sign(inter_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    contents = {
        "root.pem": root.public_bytes(pem),
        "server.pem": server.public_bytes(pem),
        "server-chain.pem": server.public_bytes(pem) + inter.public_bytes(pem),
        "server.key": key_pem(server_key),
        "client.pem": client.public_bytes(pem),
        "client-chain.pem": client.public_bytes(pem) + inter.public_bytes(pem),
        "client.key": key_pem(client_key),
        "crl.pem": crl(inter, inter_key) + crl(root, root_key),
        "revoked-crl.pem": crl(inter, inter_key, [server]),
        "staple.der": staple,
    }
    paths = {}
    for file_name in FILES:
        path = d / file_name
        path.write_bytes(contents[file_name])
        if file_name.endswith(".key"):
            path.chmod(0o600)
        paths[file_name] = path
    return paths


class ExampleServer:
    """The examples' server on 127.0.0.1:``port`` (0: a free one) with the files of ``directory``
    (``write_example_files``), each connection in its own thread, until ``stop()``.
    ``errors`` holds what failed connections raised (clients the examples reject on purpose);
    ``log`` also prints one line each on stderr."""

    def __init__(self, directory: "str | Path", port: int = DEFAULT_PORT, *, log: bool = False,
                 listener: Optional[socket.socket] = None) -> None:
        d = Path(directory)
        self._log = log
        try:
            self.ctx = make_ssl_ctx(True, "server")
        except BaseException:
            if listener is not None:
                listener.close()
            raise
        try:
            ssl_ctx_use_certificate_chain_file(self.ctx, str(d / "server-chain.pem"))
            ssl_ctx_use_privatekey_file(self.ctx, str(d / "server.key"))
            set_ocsp_staple(self.ctx, (d / "staple.der").read_bytes())
            self.listener = listener if listener is not None else socket.create_server(("127.0.0.1", port))
        except BaseException:
            if listener is not None:
                listener.close()
            destroy_ssl_ctx(self.ctx)
            raise
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.errors: List[BaseException] = []
        self._handlers: List[threading.Thread] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="commssl-serve", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:  # the timeout: look at the stop flag again
                continue
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()
            self._handlers = [h for h in self._handlers if h.is_alive()] + [t]

    def _serve(self, sock: socket.socket) -> None:
        try:
            with create_ssl_socket_stream(sock, self.ctx, handshake_timeout=10, timeout=30) as stream:
                line = stream.readline()
                while line.startswith(b"GET "):  # HTTP/1.1 keep-alive, for the httpx examples
                    path = line.split()[1]
                    while line not in (b"\r\n", b""):
                        line = stream.readline()
                    body = b"hello " + path
                    stream.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    stream.flush()
                    line = stream.readline()
                if line:
                    stream.write(line.upper())
        except BaseException as exc:  # noqa: BLE001  # a client the examples reject, or that left
            self.errors.append(exc)
            if self._log:
                print(f"commssl serve: a connection failed: {type(exc).__name__}: {exc}", file=sys.stderr,
                      flush=True)

    def stop(self) -> None:
        """Stop accepting, wait (10 s at most in all) for the connections in progress, free the
        context (a connection still open keeps its own reference to it)."""
        deadline = time.monotonic() + 10
        self._stop.set()
        self._thread.join(10)
        self.listener.close()
        for t in list(self._handlers):
            t.join(max(0.0, deadline - time.monotonic()))
        destroy_ssl_ctx(self.ctx)

    def __enter__(self) -> "ExampleServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m commssl serve",
        description="Write the certificate set the documentation's examples use (root.pem, "
                    "server-chain.pem, server.key, client-chain.pem, client.key, crl.pem, "
                    "revoked-crl.pem, staple.der...) into DIR and serve TLS on 127.0.0.1:PORT: "
                    "a line comes back in upper case, an HTTP GET gets 'hello PATH'. "
                    "Needs cryptography (pip install commssl[serve]).")
    parser.add_argument("--dir", default=".",
                        help="where to write the files (default: the current directory)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: a free one, printed)")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION,
                        help=f"stop after this many seconds (default {DEFAULT_DURATION:g}); Ctrl-C stops too")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``python -m commssl serve``; returns the exit status (0; 2 for a usage error;
    3 when the port cannot be listened on)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not 0 <= args.port < 65536:
        print(f"commssl serve: --port must be from 0 to 65535, not {args.port}", file=sys.stderr)
        return 2
    if not 0 < args.duration < float("inf"):
        print(f"commssl serve: --duration must be a positive number of seconds, not {args.duration:g}",
              file=sys.stderr)
        return 2
    try:
        return _serve(args)
    except KeyboardInterrupt:  # before the server was up
        return 130


def _serve(args: argparse.Namespace) -> int:
    try:  # the port first: a port in use leaves the directory as it was
        listener = socket.create_server(("127.0.0.1", args.port))
    except OSError as exc:
        print(f"commssl serve: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 3
    try:
        paths = write_example_files(args.dir)
    except BaseException as exc:
        listener.close()
        if isinstance(exc, ImportError):
            print(f"commssl serve: {exc}", file=sys.stderr)
            return 2
        raise
    directory = Path(args.dir).resolve()
    with ExampleServer(directory, args.port, log=True, listener=listener) as server:
        print(f"wrote {', '.join(paths)} in {directory}", flush=True)
        print(f"serving TLS on 127.0.0.1:{server.port} for {args.duration:g} s (Ctrl-C stops)", flush=True)
        try:
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        except KeyboardInterrupt:
            pass
    print("stopped", flush=True)
    return 0
