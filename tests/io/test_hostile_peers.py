"""Hostile peers on 127.0.0.1: random bytes, truncated records, a ClientHello then
silence, resets at every point of a handshake (through a cutting proxy), a
100-certificate chain, an oversized certificate, renegotiation attempts, a
record cut in half, and a close in the middle of a large write.

Every case must end, within the handshake timeout, in a clean ``SSLCondition``
subclass (or, where documented, ``b""``), on whichever side commssl is, with
every X509Pointer accounted for (the autouse ``no_leaks`` fixture). The plain
cases (garbage, plain text, a reset after the ClientHello, a close without
close_notify) are in test_connection_errors.py; these are the systematic ones.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import select
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import commssl
import peers
from helpers import connect_localhost
from peers import HOST, PKI, Listener, cpython_tls_server, openssl_client_async

GIVE_UP = 3.0  # the handshake timeout of every commssl end here (what a silent peer runs into)
SLACK = 2.0  # what a timed-out handshake may take beyond GIVE_UP


def client_hello(version: Optional[ssl.TLSVersion] = None) -> bytes:
    """A real ClientHello, as CPython's ssl (OpenSSL) writes it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.maximum_version = version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def raw_client(port: int, data: bytes, *, then: str = "close", hold: float = 0.0) -> bytes:
    """Connect, send ``data``, then "close" (FIN), "reset" (RST) or "silence" for ``hold`` s."""
    with socket.create_connection((HOST, port), timeout=GIVE_UP + SLACK) as sock:
        if data:
            sock.sendall(data)
        if then == "silence":
            time.sleep(hold)
        if then == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                got += chunk
        return bytes(got)


def run_server_case(commssl_server: Callable[..., Any], ctx: Any, clients: List[Callable[[int], Any]],
                    ) -> List[BaseException]:
    """A commssl server for ``len(clients)`` connections, each client run in turn;
    returns what each server-side handshake raised (all must be SSLConditions)."""
    server = commssl_server(ctx, lambda s: s.write(s.readline()), count=len(clients),
                            handshake_timeout=GIVE_UP)
    for client in clients:
        started = time.monotonic()
        client(server.port)
        assert time.monotonic() - started < GIVE_UP + SLACK
    server.join(timeout=GIVE_UP + SLACK)
    assert server.results == []
    assert len(server.errors) == len(clients)
    for exc in server.errors:
        assert isinstance(exc, commssl.SSLCondition), repr(exc)
    return server.errors


# -- random bytes and truncated records ----------------------------------------------------


@pytest.mark.parametrize("size", [1, 5, 6, 64, 1500, 20000])
def test_random_bytes_to_a_commssl_server(size: int, server_ctx: Callable[..., Any],
                                          commssl_server: Callable[..., Any]) -> None:
    rng = random.Random(size)
    blobs = [bytes(rng.randrange(256) for _ in range(size)) for _ in range(4)]
    # and random bytes behind a valid record header, so the record layer takes them in
    blobs.append(b"\x16\x03\x01" + struct.pack(">H", min(size, 16384)) + blobs[0][: min(size, 16384)])
    clients: List[Callable[[int], Any]] = [lambda port, b=b: raw_client(port, b) for b in blobs]
    errors = run_server_case(commssl_server, server_ctx(), clients)
    assert all(type(e) in (commssl.SSLFailure, commssl.SSLError, commssl.SSLVersionOrCipherMismatch)
               for e in errors), errors


@pytest.mark.parametrize("size", [1, 7, 100, 5000])
def test_random_bytes_to_a_commssl_client(size: int, client_ctx: Callable[..., Any]) -> None:
    payload = random.Random(size).randbytes(size) if hasattr(random.Random, "randbytes") else b"\x99" * size

    def serve(_: Listener, conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(payload)
        time.sleep(GIVE_UP + SLACK)  # no close: the client must give up on its own

    listener = Listener(serve)
    try:
        started = time.monotonic()
        with pytest.raises(commssl.SSLCondition) as info:
            connect_localhost(listener.port, client_ctx(), wait=GIVE_UP)
        assert time.monotonic() - started < GIVE_UP + SLACK
    finally:
        listener.stop()
    # A short blob leaves the record incomplete: the handshake waits for the rest, then times out.
    assert type(info.value) in (commssl.SSLFailure, commssl.SSLHandshakeTimeout), repr(info.value)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1.2", "tls1.3"])
def test_truncated_client_hello_then_close(version: ssl.TLSVersion, server_ctx: Callable[..., Any],
                                           commssl_server: Callable[..., Any]) -> None:
    """The first N bytes of a real ClientHello, then FIN: every N gives a clean
    end-of-file error (SSLError), not a hang or a crash."""
    hello = client_hello(version)
    cuts = sorted({0, 1, 2, 4, 5, 6, 9, 10, 43, 44, 100, len(hello) // 2, len(hello) - 1})
    clients: List[Callable[[int], Any]] = [lambda port, n=n: raw_client(port, hello[:n]) for n in cuts]
    errors = run_server_case(commssl_server, server_ctx(), clients)
    assert [type(e) for e in errors] == [commssl.SSLError] * len(cuts), errors


def test_client_hello_then_silence(server_ctx: Callable[..., Any],
                                   commssl_server: Callable[..., Any]) -> None:
    """Whole or partial ClientHello, then nothing: SSLHandshakeTimeout after GIVE_UP seconds."""
    hello = client_hello()
    server = commssl_server(server_ctx(), count=2, handshake_timeout=1.0)
    for data in (hello, hello[:20]):
        started = time.monotonic()
        raw_client(server.port, data, then="silence", hold=1.0 + SLACK)
        assert time.monotonic() - started < 1.0 + 2 * SLACK
    server.join(timeout=GIVE_UP)
    assert [type(e) for e in server.errors] == [commssl.SSLHandshakeTimeout] * 2, server.errors


@pytest.mark.parametrize("then", ["close", "reset"])
def test_client_hello_then_close_or_reset(then: str, server_ctx: Callable[..., Any],
                                          commssl_server: Callable[..., Any]) -> None:
    hello = client_hello()
    errors = run_server_case(commssl_server, server_ctx(), [lambda port: raw_client(port, hello, then=then)])
    assert type(errors[0]) is commssl.SSLError


# -- a proxy that cuts the connection after K bytes -----------------------------------------


class CuttingProxy:
    """Forwards between a client and ``target_port`` until ``limit`` bytes (both
    directions together) have passed, then resets both connections. ``total``
    counts what passed; ``limit=None`` forwards everything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sock = socket.create_server((HOST, 0))
        self.sock.settimeout(GIVE_UP + SLACK)
        self.port = self.sock.getsockname()[1]
        self.limit: Optional[int] = None
        self.total = 0

    def serve_one(self, limit: Optional[int]) -> threading.Thread:
        self.limit, self.total = limit, 0
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        client, _ = self.sock.accept()
        server = socket.create_connection((HOST, self.target_port), timeout=GIVE_UP)
        ends = {client: server, server: client}
        open_ends = set(ends)
        deadline = time.monotonic() + GIVE_UP + SLACK
        cut = False
        try:
            while open_ends and time.monotonic() < deadline:
                if self.limit is not None and self.total >= self.limit:
                    cut = True
                    break
                ready, _, _ = select.select(list(open_ends), [], [], 0.05)
                for src in ready:
                    data = src.recv(65536)
                    if not data:  # pass a FIN on as a FIN
                        open_ends.discard(src)
                        ends[src].shutdown(socket.SHUT_WR)
                        continue
                    if self.limit is not None:
                        data = data[: self.limit - self.total]
                    self.total += len(data)
                    ends[src].sendall(data)
        except OSError:
            pass
        finally:
            for s in ends:
                if cut:  # the cut is a reset of both connections
                    with contextlib.suppress(OSError):
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()

    def close(self) -> None:
        self.sock.close()


OK = "ok"


def _client_session(port: int, ctx: Any) -> Any:
    """Handshake, one echo; the outcome (OK, b"" at EOF, the SSLCondition's type, or
    "tcp" when the reset beat the TCP connect itself, a plain OSError)."""
    try:
        sock = socket.create_connection((HOST, port), timeout=GIVE_UP)
    except ConnectionError:
        return "tcp"
    try:
        with commssl.create_ssl_socket_stream(sock, ctx, ssl_side="client", tlsext_host_name="localhost",
                                              handshake_timeout=GIVE_UP, timeout=GIVE_UP) as stream:
            stream.write(b"ping\n")
            line = stream.readline()
            return OK if line == b"ping\n" else line
    except commssl.SSLCondition as exc:
        return type(exc)


@pytest.mark.parametrize("version", ["tls1.2", "tls1.3"])
def test_reset_at_every_handshake_step(version: str, pki: PKI, server_ctx: Callable[..., Any],
                                       client_ctx: Callable[..., Any],
                                       commssl_server: Callable[..., Any]) -> None:
    """commssl client -> proxy -> commssl server (mutual TLS, callbacks on both
    sides). A full session is measured first; then the proxy resets after K bytes,
    for K across every record of it. Both ends end cleanly every time."""
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"], lambda ok, s: ok)
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
    commssl.set_verification_mode(cctx, "client", "always", lambda ok, s: ok)
    if version == "tls1.2":
        commssl.lib.SSL_CTX_set_max_proto_version(cctx.cdata, commssl.lib.TLS1_2_VERSION)
    proxy = CuttingProxy(0)
    try:
        full = commssl_server(sctx, lambda s: s.write(s.readline()), handshake_timeout=GIVE_UP)
        proxy.target_port = full.port
        proxy.serve_one(None)
        assert _client_session(proxy.port, cctx) == OK
        full.join()
        total = proxy.total
        assert total > 1000
        cuts = sorted(set(range(0, 40, 7)) | set(range(40, total + 1, max(1, total // 24))) | {total - 1})
        server = commssl_server(sctx, lambda s: s.write(s.readline()), count=len(cuts),
                                handshake_timeout=GIVE_UP)
        proxy.target_port = server.port
        outcomes = []
        for k in cuts:
            started = time.monotonic()
            thread = proxy.serve_one(k)
            outcomes.append((k, _client_session(proxy.port, cctx)))
            thread.join(GIVE_UP + SLACK)
            assert time.monotonic() - started < GIVE_UP + SLACK, k
        server.join(timeout=GIVE_UP + SLACK)
    finally:
        proxy.close()
    allowed = {commssl.SSLError, commssl.SSLFailure, commssl.SSLClosed, b"", "tcp"}
    assert all(o in allowed for k, o in outcomes if k < total - 1), outcomes
    assert all(isinstance(e, commssl.SSLCondition) for e in server.errors), server.errors
    # every connection that did not get through failed on the server side too, cleanly
    assert len(server.results) + len(server.errors) == len(cuts)


# -- long chains and big certificates ------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_chain(directory: Path, intermediates: int, leaf_sans: Optional[List[x509.GeneralName]] = None,
               ) -> Tuple[Path, Path, Path]:
    """root -> ``intermediates`` CAs -> leaf "localhost" (EC P-256, one key for
    all: only the signatures matter). Returns (root PEM, leaf + chain PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)

    def cert(subject: str, issuer: str, ca: bool, serial: int, sans: Optional[List[x509.GeneralName]] = None,
             ) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
             .public_key(key.public_key()).serial_number(serial).not_valid_before(now)
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    names = ["hostile root"] + [f"hostile intermediate {i}" for i in range(intermediates)]
    certs = [cert(names[0], names[0], True, 1)]
    for i, name in enumerate(names[1:]):
        certs.append(cert(name, names[i], True, i + 2))
    leaf = cert("localhost", names[-1], False, 10_000, (leaf_sans or []) + [x509.DNSName("localhost")])
    root_file, chain_file, key_file = directory / "root.pem", directory / "chain.pem", directory / "key.pem"
    root_file.write_bytes(certs[0].public_bytes(pem))
    intermediates = b"".join(c.public_bytes(pem) for c in reversed(certs[1:]))
    chain_file.write_bytes(leaf.public_bytes(pem) + intermediates)
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return root_file, chain_file, key_file


def _context_trusting(root: Path) -> commssl.SSLCtxPointer:
    ctx = commssl.make_ssl_ctx(True, "client")
    commssl.ssl_ctx_load_verify_locations(ctx, root)
    return ctx


def test_100_certificate_chain(tmp_path: Path) -> None:
    """A server sending 102 certificates: leaf + 101 intermediates, one more than
    OpenSSL's default verification depth (100) allows."""
    root, chain, key = make_chain(tmp_path, 101)
    with cpython_tls_server(chain, key) as server:
        ctx = _context_trusting(root)
        try:
            # OpenSSL's default depth is exceeded: a clean verification failure.
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                connect_localhost(server.port, ctx, wait=GIVE_UP)
            assert info.value.verify_code == 22  # X509_V_ERR_CERT_CHAIN_TOO_LONG
            assert info.value.verify_message == "certificate chain too long"
            # With room for it, and a callback that copies what it is verifying:
            commssl.set_verification_depth(ctx, 200)
            seen: List[int] = []

            def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
                if commssl.x509_store_ctx_get_error_depth(store) == 0:
                    conn = commssl.x509_store_ctx_get_connection(store)
                    with commssl.peer_certificates(conn) as certs:
                        seen.append(len(certs))
                return True

            commssl.set_verification_mode(ctx, "client", "always", callback)
            with connect_localhost(server.port, ctx, wait=GIVE_UP) as stream:
                assert commssl.ssl_connection_verify(stream) == (True, 0)
                certs = commssl.ssl_connection_copy_peer_certificates(stream)
                try:
                    names = [commssl.get_certificate_common_name(c) for c in certs]
                finally:
                    commssl.release_certificates_vector(certs)
                stream.write(b"x")
                assert stream.read(1) == b"x"
        finally:
            commssl.destroy_ssl_ctx(ctx)
    assert seen == [102]
    assert names == ["localhost"] + [f"hostile intermediate {i}" for i in reversed(range(101))]


def test_oversized_certificate(tmp_path: Path, server_ctx: Callable[..., Any],
                               commssl_server: Callable[..., Any]) -> None:
    """A leaf with ~100 KiB of subjectAltNames exceeds OpenSSL's certificate list
    limit on the receiving side: a clean SSLFailure, as a client and as a server."""
    sans: List[x509.GeneralName] = [x509.DNSName(f"{i:05d}.{'x' * 40}.example.test") for i in range(2000)]
    root, chain, key = make_chain(tmp_path, 1, sans)
    assert chain.stat().st_size > 100 * 1024
    with cpython_tls_server(chain, key) as server:
        ctx = _context_trusting(root)
        try:
            started = time.monotonic()
            with pytest.raises(commssl.SSLFailure) as info:
                connect_localhost(server.port, ctx, wait=GIVE_UP)
            assert time.monotonic() - started < GIVE_UP + SLACK
        finally:
            commssl.destroy_ssl_ctx(ctx)
    assert "excessive message size" in str(info.value)
    # The same certificate sent by a client to a commssl server that asks for one.
    sctx = server_ctx(cafile=root)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(root)
    cctx.load_cert_chain(chain, key)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE

    def client(port: int) -> None:
        with socket.create_connection((HOST, port), timeout=GIVE_UP + SLACK) as sock:
            with contextlib.suppress(ssl.SSLError, OSError):
                with cctx.wrap_socket(sock) as tls:
                    tls.recv(1)  # TLS 1.3: the server's verdict arrives after the handshake

    errors = run_server_case(commssl_server, sctx, [client])
    assert type(errors[0]) is commssl.SSLFailure and "excessive message size" in str(errors[0])


# -- renegotiation -------------------------------------------------------------------------


def test_server_initiated_renegotiation_is_refused(pki: PKI, client_ctx: Callable[..., Any],
                                                   tmp_path: Path) -> None:
    """openssl s_server (TLS 1.2) asks for a renegotiation ('R' on its stdin):
    commssl refuses it (SSL_OP_NO_RENEGOTIATION, a no_renegotiation alert) and
    goes on with the session, or ends in a clean condition if the server gives up."""
    server = peers.OpenSSLServer(peers._cmd("s_server", "-accept", f"{HOST}:0",
                                            *peers._cert_args(pki.server_chain, tmp_path),
                                            "-key", str(pki.server_key), "-tls1_2"))
    try:
        server.port = int(server.wait_for(r"ACCEPT [^\n]*:(\d+)\r?\n").group(1))
        with connect_localhost(server.port, client_ctx(), wait=GIVE_UP) as stream:
            stream.write(b"before\n")
            server.wait_for("before")
            server.send(b"R\n")  # s_server sends a HelloRequest
            time.sleep(0.5)
            try:
                stream.write(b"after\n")
                server.wait_for("after")
                server.send(b"reply\n")
                outcome: Any = stream.read1(100)
            except commssl.SSLCondition as exc:
                outcome = type(exc)
        server.wait_for("no renegotiation", timeout=GIVE_UP)  # s_server got commssl's refusal
    finally:
        server.stop()
    assert outcome in (b"reply\n", b"", commssl.SSLFailure, commssl.SSLError), outcome


def test_client_initiated_renegotiation_is_refused(pki: PKI, server_ctx: Callable[..., Any],
                                                   commssl_server: Callable[..., Any]) -> None:
    """openssl s_client (TLS 1.2) renegotiates ('R'): the commssl server refuses with
    a no_renegotiation alert; s_client's renegotiation fails, the server ends cleanly."""
    lines: List[bytes] = []

    def handler(stream: commssl.SocketStream) -> None:
        try:
            while line := stream.readline():
                lines.append(line)
                stream.write(line)
        except commssl.SSLCondition as exc:
            lines.append(type(exc).__name__.encode())

    server = commssl_server(server_ctx(), handler, handshake_timeout=GIVE_UP)
    with openssl_client_async(server.port, cafile=pki.root_cert, servername="localhost",
                              extra_args=("-tls1_2",)) as client:
        client.wait_for("Verify return code: 0", timeout=GIVE_UP)
        client.send(b"hello\n")
        client.wait_for("hello", timeout=GIVE_UP)
        client.send(b"R\n")
        client.wait_for(r"RENEGOTIATING", timeout=GIVE_UP)
        with contextlib.suppress(TimeoutError):
            client.wait_for(r"no renegotiation|alert|error", timeout=GIVE_UP)
        output = client.output()
        client.stop()
    server.join(timeout=GIVE_UP + SLACK)
    assert server.errors == []
    assert lines[0] == b"hello\n"
    assert all(line in (b"hello\n", b"SSLFailure", b"SSLError") for line in lines), lines
    assert "no renegotiation" in output or "alert" in output, output


# -- closes in the middle of things --------------------------------------------------------


def test_record_cut_in_half(pki: PKI, client_ctx: Callable[..., Any]) -> None:
    """The peer sends half of an application-data record and closes: SSLError
    (unexpected EOF), not a partial read or a hang."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(pki.server_chain, pki.server_key)

    def serve(_: Listener, conn: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = sctx.wrap_bio(incoming, outgoing, server_side=True)
        conn.settimeout(GIVE_UP)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                conn.sendall(outgoing.read())
                incoming.write(conn.recv(65536))
        conn.sendall(outgoing.read())
        obj.write(b"z" * 1000)
        record = outgoing.read()
        conn.sendall(record[: len(record) // 2])
        conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            conn.recv(65536)

    listener = Listener(serve)
    try:
        with connect_localhost(listener.port, client_ctx(), wait=GIVE_UP) as stream:
            with pytest.raises(commssl.SSLError, match="unexpected eof"):
                stream.read(1000)
    finally:
        listener.stop()


def test_client_leaves_without_close_notify(pki: PKI, server_ctx: Callable[..., Any],
                                            commssl_server: Callable[..., Any]) -> None:
    """The server side of test_connection_errors' close-without-close_notify: a CPython client
    sends a line and drops the TCP connection without close_notify; the commssl
    server gets the line, then SSLError (unexpected EOF), not b"" (truncation
    must not look like a clean end)."""
    seen: List[Any] = []

    def handler(stream: commssl.SocketStream) -> None:
        seen.append(stream.readline())
        try:
            seen.append(stream.read(1))
        except commssl.SSLCondition as exc:
            seen.append(exc)

    server = commssl_server(server_ctx(), handler, handshake_timeout=GIVE_UP)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(pki.root_cert)
    with cctx.wrap_socket(socket.create_connection((HOST, server.port), timeout=GIVE_UP),
                          server_hostname="localhost") as tls:
        tls.sendall(b"line\n")
        tls.shutdown(socket.SHUT_RDWR)  # CPython drops the TLS layer first: TCP FIN, no close_notify
    server.join()
    assert server.errors == []
    assert seen[0] == b"line\n"
    assert type(seen[1]) is commssl.SSLError and "unexpected eof" in str(seen[1]), seen


@pytest.mark.parametrize("how", ["close", "reset"])
def test_peer_goes_away_during_a_large_write(how: str, server_ctx: Callable[..., Any],
                                             client_ctx: Callable[..., Any],
                                             commssl_server: Callable[..., Any]) -> None:
    """A 64 MiB write to a server that reads 100 KiB and closes (FIN or RST):
    the write raises SSLError (EPIPE / ECONNRESET) promptly, nothing hangs."""
    def handler(stream: commssl.SocketStream) -> int:
        got = len(stream.read(100 * 1024))
        if how == "reset":
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.shutdown(socket.SHUT_RDWR) if how == "close" else None
        return got

    server = commssl_server(server_ctx(), handler, handshake_timeout=GIVE_UP)
    with connect_localhost(server.port, client_ctx(), timeout=10, wait=GIVE_UP) as stream:
        started = time.monotonic()
        with pytest.raises(commssl.SSLError):
            stream.write(b"w" * (64 << 20))
        assert time.monotonic() - started < 10
    server.join()
    assert server.results == [100 * 1024]


@pytest.mark.parametrize("cut", [0, 1, 5, 100])
def test_commssl_client_against_truncated_server_flight(cut: int, pki: PKI, client_ctx: Callable[..., Any],
                                                        ) -> None:
    """A server that sends only the first ``cut`` bytes of its real first flight,
    then closes: the commssl client ends with SSLError (EOF) within the timeout."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(pki.server_chain, pki.server_key)

    def serve(_: Listener, conn: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = sctx.wrap_bio(incoming, outgoing, server_side=True)
        conn.settimeout(GIVE_UP)
        incoming.write(conn.recv(65536))
        with contextlib.suppress(ssl.SSLWantReadError):
            obj.do_handshake()
        conn.sendall(outgoing.read()[:cut])
        conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            conn.recv(65536)

    listener = Listener(serve)
    try:
        started = time.monotonic()
        with pytest.raises(commssl.SSLError):
            connect_localhost(listener.port, client_ctx(), wait=GIVE_UP)
        assert time.monotonic() - started < GIVE_UP + SLACK
    finally:
        listener.stop()



# -- security defaults audit: what a peer can and cannot talk commssl into -----------------

WEAK = ("NULL", "RC4", "DES", "EXP", "MD5", "ADH", "AECDH", "anon", "PSK", "SRP")


def _s_server(pki: PKI, tmp_path: Path, *args: str) -> peers.OpenSSLServer:
    server = peers.OpenSSLServer(peers._cmd("s_server", "-accept", f"{HOST}:0",
                                            *peers._cert_args(pki.server_chain, tmp_path),
                                            "-key", str(pki.server_key), "-rev", *args))
    server.port = int(server.wait_for(r"ACCEPT [^\n]*:(\d+)\r?\n").group(1))
    return server


def test_default_client_offers_no_weak_cipher_or_old_protocol(pki: PKI, client_ctx: Callable[..., Any],
                                                              tmp_path: Path) -> None:
    """What a default commssl client offers, as s_server (TLS 1.2) reports it."""
    server = _s_server(pki, tmp_path, "-tls1_2")
    try:
        with connect_localhost(server.port, client_ctx(), wait=GIVE_UP) as stream:
            assert commssl.ssl_connection_protocol_version(stream) == "tls-v1-2"
        offered = server.wait_for(r"Client cipher list: ([^\r\n]+)\r?\n").group(1).split(":")  # whole line
    finally:
        server.stop()
    assert offered and not [c for c in offered if any(w in c for w in WEAK)], offered
    assert all("GCM" in c or "CHACHA20" in c or c.endswith(("-SHA", "-SHA256", "-SHA384", "_SCSV"))
               for c in offered), offered


@pytest.mark.parametrize("args", [
    ("-tls1_2", "-cipher", "NULL-SHA256:@SECLEVEL=0"),  # no encryption
    ("-tls1_2", "-cipher", "ADH-AES128-SHA:@SECLEVEL=0"),  # no authentication
    ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"),
    ("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"),
], ids=["null-cipher", "anonymous-dh", "tls1.1", "tls1.0"])
def test_weak_server_is_refused(args: Tuple[str, ...], pki: PKI, client_ctx: Callable[..., Any],
                                tmp_path: Path) -> None:
    server = _s_server(pki, tmp_path, *args)
    try:
        with pytest.raises(commssl.SSLFailure) as info:
            connect_localhost(server.port, client_ctx(), wait=GIVE_UP)
    finally:
        server.stop()
    assert type(info.value) in (commssl.SSLVersionOrCipherMismatch, commssl.SSLFailure)
    assert any(r in str(info.value) for r in ("no protocols available", "no ciphers available",
                                              "unsupported protocol", "wrong version number",
                                              "sslv3 alert handshake failure", "protocol version",
                                              "no shared cipher", "handshake failure")), str(info.value)


@pytest.mark.parametrize("args", [
    ("-tls1_2", "-cipher", "NULL-SHA256:@SECLEVEL=0"),
    ("-tls1_2", "-cipher", "ADH-AES128-SHA:@SECLEVEL=0"),
    ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"),
    ("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"),
], ids=["null-cipher", "anonymous-dh", "tls1.1", "tls1.0"])
def test_weak_client_is_refused(args: Tuple[str, ...], server_ctx: Callable[..., Any],
                                commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx(), handshake_timeout=GIVE_UP)
    out = peers.openssl_client(server.port, extra_args=args, timeout=GIVE_UP + SLACK)
    server.join()
    assert out.returncode != 0
    assert len(server.errors) == 1 and isinstance(server.errors[0], commssl.SSLVersionOrCipherMismatch), \
        server.errors


def test_default_client_checks_chain_and_name(pki: PKI, server_ctx: Callable[..., Any],
                                              commssl_server: Callable[..., Any]) -> None:
    """make_ssl_ctx(True, "client") verifies the chain and the host name."""
    ctx = commssl.make_ssl_ctx(True, "client")
    try:
        assert commssl.get_verification_mode(ctx) == ["verify-peer"]
        commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
        cases = [(pki.other_chain, pki.other_key,  # a chain to another root
                  commssl.lib.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN),
                 (pki.wrongname_chain, pki.wrongname_key,  # trusted, but for another name
                  commssl.lib.X509_V_ERR_HOSTNAME_MISMATCH)]
        for chain, key, code in cases:
            server = commssl_server(server_ctx(chain=chain, key=key), handshake_timeout=GIVE_UP)
            with pytest.raises(commssl.SSLVerificationFailure) as info:
                connect_localhost(server.port, ctx, wait=GIVE_UP)
            assert info.value.verify_code == code
            server.join()
    finally:
        commssl.destroy_ssl_ctx(ctx)


@pytest.mark.parametrize("name", ["localhost\x00.evil.test", "::1%lo", "fe80::1%eth0"])
def test_names_openssl_cannot_check_are_refused(name: str, pki: PKI, server_ctx: Callable[..., Any],
                                                client_ctx: Callable[..., Any]) -> None:
    """Regression (found by this audit): a name with a NUL was checked as the part
    before the NUL ("localhost"), and an IPv6 literal with a zone, which
    ipaddress accepts and OpenSSL does not, was not checked at all: the handshake
    succeeded with a certificate for another name. Both are now a ValueError
    before any byte is sent."""
    ctx = client_ctx()
    with cpython_tls_server(pki.server_chain, pki.server_key) as server:
        sock = socket.create_connection((HOST, server.port), timeout=GIVE_UP)
        with pytest.raises(ValueError, match="NUL|cannot check"):
            commssl.create_ssl_socket_stream(sock, ctx, ssl_side="client", tlsext_host_name=name,
                                             handshake_timeout=GIVE_UP)
        assert sock.fileno() == -1


def test_nul_in_common_name_does_not_match(tmp_path: Path, server_ctx: Callable[..., Any],
                                           commssl_server: Callable[..., Any]) -> None:
    """A certificate whose only name is CN "localhost\\0.evil.test" (no SAN) is not
    a certificate for "localhost"."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    cert = (x509.CertificateBuilder().subject_name(_name("localhost\x00.evil.test"))
            .issuer_name(_name("localhost\x00.evil.test")).public_key(key.public_key()).serial_number(7)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    server = commssl_server(server_ctx(chain=tmp_path / "c.pem", key=tmp_path / "k.pem"),
                            handshake_timeout=GIVE_UP)
    ctx = _context_trusting(tmp_path / "c.pem")  # even trusted outright
    try:
        with pytest.raises(commssl.SSLVerificationFailure) as info:
            connect_localhost(server.port, ctx, wait=GIVE_UP)
    finally:
        commssl.destroy_ssl_ctx(ctx)
    server.join()
    assert info.value.verify_code == commssl.lib.X509_V_ERR_HOSTNAME_MISMATCH


def test_peer_certificate_that_breaks_the_callback_cannot_skip_verification(
        pki: PKI, server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
        commssl_server: Callable[..., Any]) -> None:
    """A "never" client whose callback raises on what the peer sent: the handshake
    went on (mode "never"), but the exception still comes out, so the
    connection is never handed to the caller."""
    server = commssl_server(server_ctx(chain=pki.nocn_chain, key=pki.nocn_key), handshake_timeout=GIVE_UP)

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        cert = commssl.x509_store_ctx_get_current_cert(store)
        return commssl.get_certificate_common_name(cert).startswith("commssl")  # type: ignore[arg-type,union-attr]

    ctx = client_ctx()
    commssl.set_verification_mode(ctx, "client", "never", callback)
    with pytest.raises(AttributeError):  # None.startswith: the leaf has no CN
        connect_localhost(server.port, ctx, wait=GIVE_UP)
    server.join()
