"""Test PKI and real TLS peers (``openssl`` CLI, CPython ``ssl``, raw sockets).

Everything listens on / connects to 127.0.0.1 with OS-chosen ports, and every
peer is a context manager that stops itself on exit with bounded waits.
Spawned ``openssl`` processes additionally get a parent-death signal (via
``setpriv`` when available) so that a crashed test worker leaves no strays.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
HOST = "127.0.0.1"
#: Upper bound for every wait in this module (seconds).
WAIT = 10.0

_PEM_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----\r?\n?", re.S
)

# --------------------------------------------------------------------------- PKI

_LEAF = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
_CA = """\
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
_OPENSSL_CNF = f"""\
[req]
distinguished_name = dn
[dn]
[ca_root]
basicConstraints = critical, CA:TRUE
{_CA}
[ca_intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
{_CA}
[leaf_localhost]
subjectAltName = DNS:localhost, IP:127.0.0.1
{_LEAF}
[leaf_client]
subjectAltName = email:alt@example.test
{_LEAF}
[leaf_nocn]
subjectAltName = DNS:localhost
{_LEAF}
[leaf_wrongname]
subjectAltName = DNS:wrong.example
{_LEAF}
[leaf_selfsigned]
basicConstraints = critical, CA:FALSE
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
"""


@dataclass(frozen=True)
class PKI:
    """Paths of the generated PEM files plus the facts tests assert on."""

    directory: Path
    root_cert: Path
    root_key: Path
    intermediate_cert: Path
    intermediate_key: Path
    server_cert: Path
    server_chain: Path
    server_key: Path
    client_cert: Path
    client_chain: Path
    client_key: Path
    other_root_cert: Path
    other_root_key: Path
    other_cert: Path
    other_chain: Path
    other_key: Path
    selfsigned_cert: Path
    selfsigned_key: Path
    nocn_cert: Path
    nocn_chain: Path
    nocn_key: Path
    wrongname_cert: Path
    wrongname_chain: Path
    wrongname_key: Path
    encrypted_key: Path
    encrypted_key_password: str = "s3cret"
    root_cn: str = "commssl test root"
    intermediate_cn: str = "commssl test intermediate"
    server_cn: str = "localhost"
    client_cn: str = "commssl client"
    client_email: str = "client@example.test"
    client_alt_email: str = "alt@example.test"
    other_root_cn: str = "commssl other root"
    selfsigned_cn: str = "selfsigned"
    wrongname_cn: str = "wrong.example"
    server_serial: int = 0x0123456789ABCDEF0123456789ABCDEF01
    client_serial: int = 4242

    @staticmethod
    def der(path: Path | str) -> bytes:
        """DER of the first certificate in a PEM file (leaf of a chain file)."""
        return ssl.PEM_cert_to_DER_cert(pem_certs(path)[0])


def pem_certs(path: Path | str) -> list[str]:
    """All PEM certificate blocks of a file, in file order."""
    return [m.decode() for m in _PEM_RE.findall(Path(path).read_bytes())]


def _openssl(*args: str | Path) -> None:
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=WAIT)


def make_pki(directory: Path | str) -> PKI:
    """Generate the whole test PKI (EC P-256) into ``directory`` with the openssl CLI."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cnf = d / "openssl.cnf"
    cnf.write_text(_OPENSSL_CNF)
    serials = iter(range(1000, 2000))

    def key(name: str) -> Path:
        p = d / f"{name}.key.pem"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p)
        return p

    def root(name: str, cn: str) -> tuple[Path, Path]:
        k, c = key(name), d / f"{name}.pem"
        _openssl("req", "-x509", "-new", "-key", k, "-subj", f"/CN={cn}", "-days", "3650",
                 "-set_serial", str(next(serials)), "-config", cnf, "-extensions", "ca_root",
                 "-sha256", "-out", c)
        return c, k

    def issue(name: str, subj: str, ext: str, ca: tuple[Path, Path], serial: int | None = None,
              ) -> tuple[Path, Path, Path]:
        """Returns (cert, chain = cert + issuer, key)."""
        k, csr, c, chain = key(name), d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.chain.pem"
        _openssl("req", "-new", "-key", k, "-subj", subj, "-config", cnf, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-days", "3650",
                 "-set_serial", hex(serial if serial is not None else next(serials)),
                 "-extfile", cnf, "-extensions", ext, "-sha256", "-out", c)
        chain.write_text(c.read_text() + ca[0].read_text())
        return c, chain, k

    root_ca = root("root", PKI.root_cn)
    inter_cert, _, inter_key = issue("intermediate", f"/CN={PKI.intermediate_cn}",
                                     "ca_intermediate", root_ca)
    inter = (inter_cert, inter_key)
    server = issue("server", "/CN=localhost", "leaf_localhost", inter, PKI.server_serial)
    client = issue("client", f"/CN={PKI.client_cn}/emailAddress={PKI.client_email}",
                   "leaf_client", inter, PKI.client_serial)
    other_root = root("other_root", PKI.other_root_cn)
    other = issue("other", "/CN=localhost", "leaf_localhost", other_root)
    nocn = issue("nocn", "/O=NoCN", "leaf_nocn", inter)
    wrong = issue("wrongname", f"/CN={PKI.wrongname_cn}", "leaf_wrongname", inter)
    ss_key, ss_cert = key("selfsigned"), d / "selfsigned.pem"
    _openssl("req", "-x509", "-new", "-key", ss_key, "-subj", f"/CN={PKI.selfsigned_cn}",
             "-days", "3650", "-set_serial", str(next(serials)), "-config", cnf,
             "-extensions", "leaf_selfsigned", "-sha256", "-out", ss_cert)
    enc = d / "server.key.encrypted.pem"
    _openssl("pkcs8", "-topk8", "-in", server[2], "-v2", "aes-256-cbc",
             "-passout", f"pass:{PKI.encrypted_key_password}", "-out", enc)
    return PKI(
        directory=d, root_cert=root_ca[0], root_key=root_ca[1],
        intermediate_cert=inter_cert, intermediate_key=inter_key,
        server_cert=server[0], server_chain=server[1], server_key=server[2],
        client_cert=client[0], client_chain=client[1], client_key=client[2],
        other_root_cert=other_root[0], other_root_key=other_root[1],
        other_cert=other[0], other_chain=other[1], other_key=other[2],
        selfsigned_cert=ss_cert, selfsigned_key=ss_key,
        nocn_cert=nocn[0], nocn_chain=nocn[1], nocn_key=nocn[2],
        wrongname_cert=wrong[0], wrongname_chain=wrong[1], wrongname_key=wrong[2],
        encrypted_key=enc,
    )


def issue_leaf(pki: PKI, directory: Path | str, name: str, san: str) -> tuple[Path, Path]:
    """A server leaf issued by the test intermediate (so trusted through the test root) whose
    subjectAltName is ``san`` (``"DNS:other.example"``, say), for tests about names.
    Returns (chain = leaf + intermediate, key), written into ``directory``."""
    d = Path(directory)
    cnf = d / f"{name}.cnf"
    cnf.write_text("[req]\ndistinguished_name = dn\n[dn]\n[leaf]\n"
                   f"subjectAltName = {san}\n{_LEAF}")
    k, csr, c, chain = (d / f"{name}.key.pem", d / f"{name}.csr", d / f"{name}.pem",
                        d / f"{name}.chain.pem")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", k)
    _openssl("req", "-new", "-key", k, "-subj", f"/O={name}", "-config", cnf, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", pki.intermediate_cert, "-CAkey", pki.intermediate_key,
             "-days", "3650", "-set_serial", str(zlib.crc32(san.encode()) + 5000), "-extfile", cnf,
             "-extensions", "leaf", "-sha256", "-out", c)
    chain.write_text(c.read_text() + pki.intermediate_cert.read_text())
    return chain, k


# ------------------------------------------------------------------ openssl CLI


def _cmd(*args: str | Path) -> list[str]:
    """openssl command line; dies with its parent (thread!) if setpriv exists."""
    prefix = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
    return [*prefix, OPENSSL, *map(str, args)]


def _cert_args(cert: Path | str, tmp: Path) -> list[str]:
    """``-cert LEAF [-cert_chain REST]`` for a PEM file holding leaf (+ chain)."""
    certs = pem_certs(cert)
    if len(certs) <= 1:
        return ["-cert", str(cert)]
    rest = tmp / f"{Path(cert).stem}.rest.pem"
    rest.write_text("".join(certs[1:]))
    return ["-cert", str(cert), "-cert_chain", str(rest)]


class OpenSSLProcess:
    """A running ``openssl`` process whose stdout+stderr is collected by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            with self._cond:
                self._buf += chunk
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self) -> str:
        """Everything printed (stdout and stderr interleaved) so far."""
        with self._cond:
            return self._buf.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Wait until ``pattern`` (regex) appears in the output; raise if it does not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if m := re.search(pattern, self._buf.decode(errors="replace")):
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (not self._reader.is_alive()):
                    raise TimeoutError(f"{pattern!r} not seen from {self.args}:\n{self.output()}")
                self._cond.wait(min(left, 0.1))

    def send(self, data: bytes) -> None:
        """Write to the process' stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def wait(self, timeout: float = WAIT) -> int:
        """Wait for exit (raises subprocess.TimeoutExpired) and for all output."""
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        return rc

    def stop(self) -> None:
        """Close stdin, terminate, then kill; bounded waits only."""
        self.close_stdin()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(2)
        self._reader.join(2)
        if self.proc.stdout:
            self.proc.stdout.close()


# "Peer certificate: <subject>", one line per connection that sent a certificate.
_PEER_CERT_RE = r"Peer certificate: ([^\r\n]*)\r?\n"
# A comma that starts the next attribute (", emailAddress=..."), not one inside a value.
_RDN_SPLIT_RE = re.compile(r"\s*,\s*(?=[A-Za-z][A-Za-z0-9.]*\s*=)")


def parse_subject(text: str) -> dict[str, str]:
    """An X.509 subject name as ``openssl`` prints it, read by meaning, not spacing:
    OpenSSL 3.0's ``CN = a, emailAddress = b``, 3.2+'s ``CN=a, emailAddress=b`` and the
    legacy ``/CN=a/emailAddress=b`` all give ``{"CN": "a", "emailAddress": "b"}``."""
    text = text.strip()
    if text.startswith("/"):
        parts = [p for p in re.split(r"/(?=[A-Za-z][A-Za-z0-9.]*=)", text) if p]
    else:
        parts = _RDN_SPLIT_RE.split(text)
    subject: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"not a subject name: {text!r}")
        subject[key.strip()] = value.strip()
    return subject


class OpenSSLServer(OpenSSLProcess):
    port: int

    def wait_for_peer_subject(self, timeout: float = WAIT) -> dict[str, str]:
        """Wait for s_server's "Peer certificate: <subject>" line (the first in its
        output) and return that subject, parsed (:func:`parse_subject`)."""
        return parse_subject(self.wait_for(_PEER_CERT_RE, timeout).group(1))


@contextlib.contextmanager
def openssl_server(cert_chain: Path | str, key: Path | str, *, cafile: Path | str | None = None,
                   verify: int | None = None, Verify: int | None = None,
                   verify_return_error: bool = True, extra_args: Sequence[str] = (),
                   www: bool = False, relay_stdin: bool = False) -> Iterator[OpenSSLServer]:
    """``openssl s_server`` on 127.0.0.1, any port, serving connections (one at a
    time) until exit.

    Sends leaf + rest of ``cert_chain``. Default mode ``-rev``: each line is
    echoed back reversed, a line starting with ``CLOSE`` makes it close that
    connection (cleanly), and the output shows "Peer certificate: <subject>"
    or "No peer certificate" per connection. With ``www``: ``-www``, ``GET /``
    gets a status page (which includes the client certificate, if any). With
    ``relay_stdin``: neither, what is written to stdin (``send``) goes to the
    client as application data.
    ``verify``/``Verify`` request/require a client certificate;
    ``-verify_return_error`` is added with them unless disabled (otherwise
    s_server accepts any client certificate). ``extra_args=("-naccept", "1")``
    makes it exit by itself after one connection.
    """
    with tempfile.TemporaryDirectory(prefix="commssl-s_server-") as tmp:
        args = ["s_server", "-accept", f"{HOST}:0", *_cert_args(cert_chain, Path(tmp)),
                "-key", str(key)]
        if not relay_stdin:
            args.append("-www" if www else "-rev")
        if cafile is not None:
            args += ["-CAfile", str(cafile)]
        if verify is not None:
            args += ["-verify", str(verify)]
        if Verify is not None:
            args += ["-Verify", str(Verify)]
        if verify_return_error and (verify is not None or Verify is not None):
            args.append("-verify_return_error")
        server = OpenSSLServer(_cmd(*args, *extra_args))
        try:
            server.port = int(server.wait_for(r"ACCEPT [^\n]*:(\d+)\r?\n").group(1))
            yield server
        finally:
            server.stop()


def _client_args(port: int, cafile: Path | str | None, cert: Path | str | None,
                 key: Path | str | None, servername: str | None,
                 verify_return_error: bool | None, tmp: Path) -> list[str]:
    args = ["s_client", "-connect", f"{HOST}:{port}"]
    if cafile is not None:
        args += ["-CAfile", str(cafile)]
    if verify_return_error if verify_return_error is not None else cafile is not None:
        args.append("-verify_return_error")
    if cert is not None:
        args += _cert_args(cert, tmp)
    if key is not None:
        args += ["-key", str(key)]
    if servername is not None:
        args += ["-servername", servername]
    return args


def openssl_client(port: int, *, cafile: Path | str | None = None,
                   cert: Path | str | None = None, key: Path | str | None = None,
                   servername: str | None = None, verify_return_error: bool | None = None,
                   extra_args: Sequence[str] = (), input: bytes = b"",
                   timeout: float = WAIT) -> subprocess.CompletedProcess[bytes]:
    """Run ``openssl s_client`` to completion: send ``input``, then stdin EOF.

    ``cert`` may be a chain file (leaf first; the rest goes to ``-cert_chain``).
    ``-verify_return_error`` defaults to on iff ``cafile`` is given.
    On stdin EOF s_client closes at once (it may miss the reply); add
    ``-ign_eof`` to ``extra_args`` to read until the server closes instead.
    Returns stdout/stderr as bytes; returncode 0 means the session worked.
    """
    with tempfile.TemporaryDirectory(prefix="commssl-s_client-") as tmp:
        args = _client_args(port, cafile, cert, key, servername, verify_return_error, Path(tmp))
        return subprocess.run(_cmd(*args, *extra_args), input=input, capture_output=True,
                              timeout=timeout)


@contextlib.contextmanager
def openssl_client_async(port: int, *, cafile: Path | str | None = None,
                         cert: Path | str | None = None, key: Path | str | None = None,
                         servername: str | None = None,
                         verify_return_error: bool | None = None,
                         extra_args: Sequence[str] = ()) -> Iterator[OpenSSLProcess]:
    """Start ``openssl s_client`` in the background (for servers run in the test thread).

    Yields an :class:`OpenSSLProcess` (``.proc`` is the Popen; ``.send()``,
    ``.close_stdin()``, ``.wait()``, ``.output()``, ``.wait_for()``). Killed on exit.
    """
    with tempfile.TemporaryDirectory(prefix="commssl-s_client-") as tmp:
        args = _client_args(port, cafile, cert, key, servername, verify_return_error, Path(tmp))
        client = OpenSSLProcess(_cmd(*args, *extra_args))
        try:
            yield client
        finally:
            client.stop()


# ------------------------------------------------------------------ CPython ssl


def in_thread(fn: Callable[..., object], *args: object, **kwargs: object) -> Future:
    """Run ``fn`` in a daemon thread; get its result with ``.result(timeout)``."""
    fut: Future = Future()

    def run() -> None:
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            fut.set_exception(e)

    threading.Thread(target=run, daemon=True).start()
    return fut


def echo(sock: ssl.SSLSocket) -> None:
    """Default handler: send back everything received until EOF."""
    while data := sock.recv(65536):
        sock.sendall(data)


class Listener:
    """Accept loop on 127.0.0.1:0 in a thread; ``serve(self, conn)`` runs per connection
    in its own daemon thread. ``.port``; ``.errors``: exceptions raised by ``serve``;
    ``.peer_certs``: filled by :func:`cpython_tls_server`; ``.finished``: count of
    connections fully handled."""

    def __init__(self, serve: Callable[[Listener, socket.socket], None],
                 conn_timeout: float = WAIT) -> None:
        self.sock = socket.create_server((HOST, 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.errors: list[BaseException] = []
        self.peer_certs: list[bytes | None] = []
        self.finished = 0
        self._done = threading.Condition()
        self.stopping = threading.Event()
        self._serve, self._timeout = serve, conn_timeout
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:  # TimeoutError on 3.10+
                continue
            except OSError:
                return
            conn.settimeout(self._timeout)
            self._conns.append(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self._serve(self, conn)
        except Exception as e:  # noqa: BLE001 - recorded for the test
            if not self.stopping.is_set():
                self.errors.append(e)
        finally:
            conn.close()
            with self._done:
                self.finished += 1
                self._done.notify_all()

    def wait_finished(self, n: int = 1, timeout: float = WAIT) -> None:
        """Wait until ``n`` connections have been handled completely (else TimeoutError)."""
        with self._done:
            if not self._done.wait_for(lambda: self.finished >= n, timeout):
                raise TimeoutError(f"{self.finished} of {n} connections finished")

    def stop(self) -> None:
        """Stop accepting, shut down open connections, join threads (bounded)."""
        self.stopping.set()
        self._thread.join(2)
        self.sock.close()
        for c in list(self._conns):
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            t.join(2)


@contextlib.contextmanager
def _serving(serve: Callable[[Listener, socket.socket], None], conn_timeout: float = WAIT,
             ) -> Iterator[Listener]:
    listener = Listener(serve, conn_timeout)
    try:
        yield listener
    finally:
        listener.stop()


@contextlib.contextmanager
def cpython_tls_server(certfile_chain: Path | str, keyfile: Path | str, *,
                       cafile: Path | str | None = None, require_client_cert: bool = False,
                       handler: Callable[[ssl.SSLSocket], None] = echo, tickets: bool = True,
                       ) -> Iterator[Listener]:
    """CPython ``ssl`` server; each connection handled by ``handler(sslsock)``.

    With ``cafile`` client certificates are requested (CERT_OPTIONAL) or, with
    ``require_client_cert``, required; ``tickets=False`` sends no TLS 1.3 session
    tickets. Yields ``.port``, ``.errors`` (exceptions
    from handshakes and handlers) and ``.peer_certs`` (DER or None per
    completed handshake).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile_chain, keyfile)
    if cafile is not None:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    if not tickets:  # TLS 1.3 session tickets: unread by a client that only writes (see its users)
        ctx.num_tickets = 0

    def serve(server: Listener, conn: socket.socket) -> None:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            server.peer_certs.append(tls.getpeercert(binary_form=True))
            handler(tls)

    with _serving(serve) as server:
        yield server


def cpython_tls_client(port: int, *, cafile: Path | str | None,
                       certfile: Path | str | None = None, keyfile: Path | str | None = None,
                       server_hostname: str | None = "localhost",
                       timeout: float = WAIT) -> ssl.SSLSocket:
    """Connect with CPython ``ssl`` (verifying against ``cafile``) and handshake.

    ``server_hostname=None`` disables the hostname check. Caller closes the socket.
    Use ``in_thread(cpython_tls_client, ...)`` when the server runs in the test thread.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if server_hostname is None:
        ctx.check_hostname = False
    if cafile is not None:
        ctx.load_verify_locations(cafile)
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise


def bio_step(sock: socket.socket, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
             op: Callable[[], Any], flush: bool = True) -> Any:
    """Run ``op``, a step of an ``ssl.SSLObject`` over ``incoming``/``outgoing``, to its end
    on ``sock``: at each want-read what the object wrote goes out and what the socket has comes
    in (the socket's end is a ``ConnectionError``). ``flush``: send what it wrote last too;
    ``False`` leaves that in ``outgoing``, for the test to send together with more."""
    try:
        while True:
            try:
                return op()
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the peer closed the connection") from None
                incoming.write(data)
    finally:
        if flush:
            sock.sendall(outgoing.read())


class MemoryBioPeer:
    """A CPython ``ssl`` server over memory BIOs on an accepted socket: the test decides
    exactly which record bytes go out in which segment."""

    def __init__(self, pki: PKI) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(pki.server_chain), str(pki.server_key))
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept_and_handshake(self) -> "MemoryBioPeer":
        conn, _ = self.listener.accept()
        conn.settimeout(5)
        self.conn = conn
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = self.ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.step(self.tls.do_handshake)
        return self

    def step(self, op: Callable[[], object]) -> object:
        assert self.conn is not None
        return bio_step(self.conn, self.incoming, self.outgoing, op)

    def record(self, data: bytes) -> bytes:
        """The TLS record bytes of ``data`` (not sent)."""
        self.tls.write(data)
        return self.outgoing.read()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


# ------------------------------------------------------------------ raw sockets


def _drain(conn: socket.socket, timeout: float) -> None:
    """Read until EOF, error or timeout."""
    conn.settimeout(timeout)
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


@contextlib.contextmanager
def silent_server(hold: float = 5.0) -> Iterator[Listener]:
    """Accepts TCP connections and never sends; each is closed after ``hold`` s or on exit."""
    def serve(_: Listener, conn: socket.socket) -> None:
        _drain(conn, hold)

    with _serving(serve) as server:
        yield server


@contextlib.contextmanager
def plaintext_server(payload: bytes = b"HTTP/1.0 200 OK\r\n\r\nhello\n",
                     ) -> Iterator[Listener]:
    """Reads the client's first bytes, answers ``payload`` in clear, then closes."""
    def serve(_: Listener, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        with contextlib.suppress(OSError):
            conn.recv(65536)
        with contextlib.suppress(OSError):  # the client may give up at any point
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            _drain(conn, 2.0)  # so that close() does not turn into a RST

    with _serving(serve) as server:
        yield server


@contextlib.contextmanager
def reset_server(read_first: bool = True) -> Iterator[Listener]:
    """Accepts, optionally reads the ClientHello, then resets (SO_LINGER 0)."""
    def serve(_: Listener, conn: socket.socket) -> None:
        if read_first:
            with contextlib.suppress(OSError):
                conn.recv(65536)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with _serving(serve, conn_timeout=2.0) as server:
        yield server


@contextlib.contextmanager
def recording_server() -> Iterator[Listener]:
    """Accepts TCP connections and sends nothing; ``.received`` gets, per connection, every
    byte the client sent before it closed (``b""``: it sent none, not even a ClientHello)."""
    received: list[bytes] = []

    def serve(_: Listener, conn: socket.socket) -> None:
        data = b""
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                data += chunk
        received.append(data)

    with _serving(serve) as server:
        server.received = received  # type: ignore[attr-defined]
        yield server


def starttls_relay(target: int) -> int:
    """A plain SMTP-like preamble in Python in front of a TLS server on port ``target``
    (``openssl s_server``, say): greets, takes STARTTLS, answers 220, then relays bytes both
    ways. One connection; returns the port to connect to."""
    lsock = socket.create_server((HOST, 0))

    def pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        conn, _ = lsock.accept()
        lsock.close()
        conn.sendall(b"220 relay ready\r\n")
        buf = b""
        while not buf.endswith(b"\n"):
            buf += conn.recv(1)
        assert buf == b"STARTTLS\r\n"
        conn.sendall(b"220 go ahead\r\n")
        upstream = socket.create_connection((HOST, target))
        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)

    threading.Thread(target=serve, daemon=True).start()
    return int(lsock.getsockname()[1])


def garbage_client(port: int, data: bytes, *, timeout: float = 2.0) -> bytes:
    """Connect, send ``data``, half-close; return whatever came back before EOF/timeout.

    Resets and timeouts are swallowed; only a refused connection raises.
    """
    received = bytearray()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
    except ConnectionRefusedError:
        raise
    except OSError:
        pass
    return bytes(received)


# ------------------------------------------------------------------------ nginx

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
_NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
{user}
events {{ worker_connections 16; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl{http2};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        {extra}
        location / {{ return 200 "hello from nginx\\n"; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(chain: Path | str, key: Path | str, *, http2: bool = False, extra: str = "",
          directory: Path | str | None = None) -> Iterator[int]:
    """nginx (``ci/setup`` installs nginx-light) serving TLS on 127.0.0.1 with ``chain``/``key``,
    answering every request with 200 "hello from nginx"; ``http2`` turns HTTP/2 on (ALPN h2),
    ``extra`` is more ``server`` directives. Yields the port; stopped on exit."""
    assert NGINX is not None, "nginx is not installed (ci/setup installs it)"
    with contextlib.ExitStack() as stack:
        d = Path(directory) if directory is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="commssl-nginx-")))
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        user = "user root;" if os.geteuid() == 0 else ""
        conf = d / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(d=d, port=port, chain=chain, key=key, user=user, extra=extra,
                                           http2=" http2" if http2 else ""))
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # ci/asan: only Python's
        proc = subprocess.Popen([NGINX, "-p", str(d), "-c", str(conf)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    socket.create_connection((HOST, port), 0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log = (d / "error.log").read_text() if (d / "error.log").exists() else ""
                        out = proc.stdout.read() if proc.poll() is not None else b""  # type: ignore[union-attr]
                        raise AssertionError(f"nginx did not start: {out!r} {log}") from None
                    time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(WAIT)
            if proc.stdout:
                proc.stdout.close()
