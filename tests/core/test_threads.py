"""Threads: many handshakes at once with Python verify callbacks on both sides,
callback exceptions surfacing in the thread (and connection) that drove the
handshake, concurrent copy/release of peer chains, and the GIL released while
a handshake or read blocks."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import commssl
from commssl import SSLFailure
from peers import HOST, PKI, in_thread, silent_server

THREADS = 8
PER_THREAD = 25


class Boom(Exception):
    """Raised by a verify callback; carries where it was raised."""

    def __init__(self, side: str, thread: int, tag: Any = None) -> None:
        super().__init__(side, thread, tag)
        self.side, self.thread, self.tag = side, thread, tag


class ThreadedServer:
    """A commssl server handling each connection in its own thread."""

    def __init__(self, ctx: Any, handler: Callable[[commssl.SocketStream], Any]) -> None:
        self.lsock = socket.create_server((HOST, 0), backlog=64)
        self.lsock.settimeout(0.05)
        self.port: int = self.lsock.getsockname()[1]
        self.ctx, self.handler = ctx, handler
        self.results: List[Any] = []
        self.errors: List[Tuple[int, BaseException]] = []  # (handling thread, exception)
        self.stopping = threading.Event()
        self.threads: List[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.lsock.accept()
            except socket.timeout:
                continue
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            with commssl.create_ssl_socket_stream(sock, self.ctx, handshake_timeout=10,
                                                  timeout=10) as stream:
                self.results.append(self.handler(stream))
        except BaseException as exc:  # recorded with the thread it surfaced in
            self.errors.append((threading.get_ident(), exc))

    def stop(self) -> None:
        self.stopping.set()
        self.acceptor.join(5)
        self.lsock.close()
        for t in list(self.threads):
            t.join(10)
        assert not any(t.is_alive() for t in self.threads)


def copy_and_check(stream: commssl.SocketStream, cns: List[Optional[str]]) -> None:
    with commssl.peer_certificates(stream) as certs:
        assert [commssl.get_certificate_common_name(c) for c in certs if c] == cns


def test_handshake_stress_with_callbacks_on_both_sides(pki: PKI, server_ctx: Callable[..., Any],
                                                       client_ctx: Callable[..., Any]) -> None:
    start_count = commssl.outstanding_certificates()
    calls: Counter = Counter()
    lock = threading.Lock()

    def server_callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        with lock:
            calls["server"] += 1
        if commssl.x509_store_ctx_get_error_depth(store) == 0:
            leaf = commssl.x509_store_ctx_get_current_cert(store)
            if commssl.get_certificate_common_name(leaf) is None:  # type: ignore[arg-type]
                conn = commssl.x509_store_ctx_get_connection(store)
                raise Boom("server", threading.get_ident(), conn.socket.getpeername())
        return ok

    def client_callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        with lock:
            calls["client"] += 1
        return ok

    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"],
                                  server_callback)
    good = client_ctx(chain=pki.client_chain, key=pki.client_key)
    nocn = client_ctx(chain=pki.nocn_chain, key=pki.nocn_key)  # the server's callback raises
    for ctx in (good, nocn):
        commssl.set_verification_mode(ctx, "client", "always", client_callback)

    def handler(stream: commssl.SocketStream) -> bytes:
        copy_and_check(stream, [pki.client_cn, pki.intermediate_cn])
        line = stream.readline()
        stream.write(line)
        return line

    server = ThreadedServer(sctx, handler)
    outcomes: Dict[str, int] = Counter()
    unexpected: List[str] = []
    expected_peers: List[Any] = []  # client addresses the server's callback must reject

    def client(t: int) -> None:
        me = threading.get_ident()
        for i in range(PER_THREAD):
            kind = ("client-raises" if i % 8 == 7 else "server-raises" if i % 8 == 3 else "ok")
            try:
                if kind == "client-raises":
                    def raiser(ok: bool, store: Any, i: int = i) -> bool:
                        raise Boom("client", threading.get_ident(), i)

                    with pytest.raises(Boom) as info:
                        commssl.open_tcp_stream(
                            HOST, server.port, ssl_ctx=good, handshake_timeout=10, timeout=10,
                            ssl_configure_callback=lambda sslp: commssl.set_verification_mode(
                                sslp, "client", "always", raiser))
                    assert (info.value.thread, info.value.tag) == (me, i)
                elif kind == "server-raises":
                    # TLS 1.3: our handshake is done before the server checks us; its
                    # alert arrives on our first read (we write nothing: data the server
                    # never reads would turn its close into a reset that drops the alert)
                    with commssl.open_tcp_stream(HOST, server.port, ssl_ctx=nocn,
                                                 handshake_timeout=10, timeout=10) as stream:
                        with lock:
                            expected_peers.append(stream.socket.getsockname())
                        with pytest.raises(SSLFailure, match="alert handshake failure"):
                            stream.read(1)
                else:
                    with commssl.open_tcp_stream(HOST, server.port, ssl_ctx=good,
                                                 handshake_timeout=10, timeout=10) as stream:
                        copy_and_check(stream, ["localhost", pki.intermediate_cn])
                        msg = b"%d.%d\n" % (t, i)
                        stream.write(msg)
                        assert stream.readline() == msg
                with lock:
                    outcomes[kind] += 1
            except BaseException as exc:  # noqa: BLE001 - collected, asserted below
                unexpected.append(f"thread {t} #{i} {kind}: {exc!r}")

    workers = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    server.stop()
    assert not any(w.is_alive() for w in workers)
    assert unexpected == []
    per_kind = Counter("client-raises" if i % 8 == 7 else "server-raises" if i % 8 == 3 else "ok"
                       for i in range(PER_THREAD))
    assert outcomes == {k: v * THREADS for k, v in per_kind.items()}
    n_ok, n_srv = outcomes["ok"], outcomes["server-raises"]
    assert sorted(server.results) == sorted(b"%d.%d\n" % (t, i) for t in range(THREADS)
                                            for i in range(PER_THREAD) if i % 8 not in (3, 7))
    booms = [(ident, e) for ident, e in server.errors if isinstance(e, Boom)]
    others = [e for _, e in server.errors if not isinstance(e, Boom)]
    # each server-side Boom surfaced in the very thread whose handshake raised it,
    # for the connection it was raised for
    assert len(booms) == n_srv and all(ident == e.thread for ident, e in booms)
    assert sorted(e.tag for _, e in booms) == sorted(expected_peers)
    # the connections whose client callback raised: the client aborted the handshake
    assert len(others) == outcomes["client-raises"]
    assert all(isinstance(e, SSLFailure) for e in others), others
    # three certificates per verified chain, on each side
    assert calls["client"] == 3 * (n_ok + n_srv)
    assert calls["server"] == 3 * (n_ok + n_srv)
    assert commssl.outstanding_certificates() == start_count


def test_concurrent_copy_and_release(pki: PKI, server_ctx: Callable[..., Any],
                                     client_ctx: Callable[..., Any],
                                     commssl_server: Callable[..., Any]) -> None:
    server = commssl_server(server_ctx())
    start = commssl.outstanding_certificates()
    barrier = threading.Barrier(4)
    errors: List[BaseException] = []
    with commssl.open_tcp_stream(HOST, server.port, ssl_ctx=client_ctx(), handshake_timeout=5,
                                 timeout=5) as stream:
        shared = commssl.ssl_connection_copy_peer_certificates(stream)

        def work() -> None:
            try:
                barrier.wait(5)
                for _ in range(1500):
                    certs = commssl.ssl_connection_copy_peer_certificates(stream)
                    extra = commssl.copy_certificate(shared[0])
                    assert commssl.get_certificate_serial_number(extra) == pki.server_serial
                    commssl.release_certificates_vector([*certs, extra])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert errors == []
        assert commssl.outstanding_certificates() == start + 2
        # the shared copies kept their reference through 12000 up-refs and frees
        assert [commssl.get_certificate_common_name(c) for c in shared] == [
            "localhost", pki.intermediate_cn]
        commssl.release_certificates_vector(shared)
        stream.write(b"done\n")
        assert stream.readline() == b"done\n"
    assert commssl.outstanding_certificates() == start


def test_concurrent_release_of_one_pointer(pki: PKI) -> None:
    """Many threads race to release the same pointer: exactly one frees it."""
    for _ in range(20):
        cert = commssl.pem_read("X509", pki.server_cert)
        before = commssl.outstanding_certificates()
        barrier = threading.Barrier(6)
        results: List[str] = []

        # the loop variables are this iteration's: its threads are joined before the next
        def release() -> None:
            barrier.wait(5)  # noqa: B023
            try:
                commssl.release_certificate(cert)  # type: ignore[arg-type]  # noqa: B023
                results.append("freed")  # noqa: B023
            except commssl.CertificateReleasedError:
                results.append("refused")  # noqa: B023

        workers = [threading.Thread(target=release) for _ in range(6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(5)
        assert sorted(results) == ["freed"] + ["refused"] * 5
        assert commssl.outstanding_certificates() == before - 1


# -- the GIL ------------------------------------------------------------------------------


def count_while_pending(fut: Future, seconds: float) -> int:
    """Count in Python for ``seconds``; the count stays 0 if another thread holds the GIL."""
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
    assert not fut.done(), "the other thread was supposed to still be blocked"
    return n


def test_gil_released_during_blocking_read(server_ctx: Callable[..., Any],
                                           client_ctx: Callable[..., Any],
                                           commssl_server: Callable[..., Any]) -> None:
    go = threading.Event()

    def handler(stream: commssl.SocketStream) -> None:
        go.wait(10)  # silent until the test has counted
        stream.write(b"!")

    server = commssl_server(server_ctx(), handler)
    with commssl.open_tcp_stream(HOST, server.port, ssl_ctx=client_ctx(), handshake_timeout=5,
                                 timeout=10) as stream:
        entered = threading.Event()

        def blocked_read() -> bytes:
            entered.set()
            return stream.read(1)

        fut = in_thread(blocked_read)
        assert entered.wait(5)
        time.sleep(0.05)  # now inside the read
        assert count_while_pending(fut, 0.3) > 1000
        go.set()
        assert fut.result(5) == b"!"
    server.join()
    assert server.errors == []


def test_gil_released_during_blocking_handshake(client_ctx: Callable[..., Any]) -> None:
    ctx = client_ctx()
    with silent_server() as server:
        fut = in_thread(commssl.open_tcp_stream, HOST, server.port, ssl_ctx=ctx,
                        handshake_timeout=1.0)
        time.sleep(0.05)
        assert count_while_pending(fut, 0.3) > 1000
        assert isinstance(fut.exception(5), commssl.SSLHandshakeTimeout)


def test_parallel_blocked_reads_do_not_serialise(server_ctx: Callable[..., Any],
                                                 client_ctx: Callable[..., Any]) -> None:
    """Four reads timing out at 0.4 s each finish together, not one after another."""
    go = threading.Event()
    server = ThreadedServer(server_ctx(), lambda s: go.wait(10))
    ctx = client_ctx()
    streams = [commssl.open_tcp_stream(HOST, server.port, ssl_ctx=ctx, handshake_timeout=5,
                                       timeout=0.4) for _ in range(4)]
    try:
        def read(stream: commssl.SocketStream) -> float:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                stream.read(1)
            return time.monotonic() - t0

        start = time.monotonic()
        futs = [in_thread(read, s) for s in streams]
        waits = [f.result(5) for f in futs]
        total = time.monotonic() - start
        assert all(w >= 0.35 for w in waits)
        assert total < 1.2, (total, waits)  # serialised reads would take 1.6 s
    finally:
        go.set()
        for s in streams:
            s.close()
        server.stop()
    assert server.errors == [] and server.results == [True] * 4
