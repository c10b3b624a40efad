"""Peers and entry-point adapters for the policy matrix (``test_policy_matrix.py``).

Client rows: session-wide HTTPS servers (``openssl s_server -www``, a commssl server, a CPython
``ssl`` server) in a few fixed configurations, and one ``fetch`` adapter per client entry point
that sends one HTTP request and returns the status line.

Server rows: one ``serve`` adapter per server entry point (a context manager serving until its
exit; each connection's outcome goes to a queue) and client peers (``openssl s_client``,
``gnutls-cli``, commssl, CPython ``ssl``) that report every byte of application data they got.
A served connection first sends ``SECRET``, so a client the server should have refused shows it.
GnuTLS takes part as a client only: ``gnutls-serv`` (3.7) has no option to listen on 127.0.0.1
alone, and the tests listen on nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import re
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import anyio
import anyio.abc
import anyio.from_thread
import httpx

import commssl
import commssl.anyio
import commssl.httpx
from helpers import QUICK_HS as HS  # every handshake and read of the matrix is bounded by this
from peers import (
    HOST,
    PKI,
    Listener,
    OpenSSLProcess,
    cpython_tls_client,
    cpython_tls_server,
    openssl_client_async,
    openssl_server,
)
from revocation_pki import ocsp_response

#: What a server sends first on a connection it accepted: a refused client must never see it.
SECRET = b"served-after-handshake\n"
#: The host client entry points dial: a DNS name, so that a wrong name is X509_V_ERR_HOSTNAME_MISMATCH
#: (an IP address would be checked as one: X509_V_ERR_IP_ADDRESS_MISMATCH). Servers listen on HOST.
DIAL = "localhost"
REQUEST = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
Outcome = Tuple[str, Any]  # ("served", line the client sent) or ("failed", exception)


# -- client rows: the servers --------------------------------------------------------------------

#: Server configurations: certificate chain, key and stapled OCSP status (None: no staple).
CONFIGS: Dict[str, Tuple[str, str, Optional[str]]] = {
    "good": ("server_chain", "server_key", None),
    "wrongname": ("wrongname_chain", "wrongname_key", None),
    "untrusted": ("other_chain", "other_key", None),
    "staple-good": ("server_chain", "server_key", "good"),
    "staple-revoked": ("server_chain", "server_key", "revoked"),
}
#: Which server peer can serve which configuration (CPython's ssl cannot staple).
SERVER_PEERS: Dict[str, Callable[[str], bool]] = {
    "openssl": lambda config: True,
    "commssl": lambda config: True,
    "cpython": lambda config: CONFIGS[config][2] is None,
}


def _answer_http(readline: Callable[[], bytes], write: Callable[[bytes], Any]) -> None:
    while readline() not in (b"\r\n", b"\n", b""):
        pass
    write(RESPONSE)


class ServerPeers:
    """HTTPS servers for the client rows, one per (peer, configuration), started on first use
    and stopped by ``close()`` (once per session: they serve any number of connections)."""

    def __init__(self, pki: PKI, directory: Path) -> None:
        self.pki, self.directory = pki, directory
        self.stack = contextlib.ExitStack()
        self.ports: Dict[Tuple[str, str], int] = {}

    def port(self, peer: str, config: str) -> int:
        if (peer, config) not in self.ports:
            self.ports[peer, config] = self._start(peer, config)
        return self.ports[peer, config]

    def _start(self, peer: str, config: str) -> int:
        chain_name, key_name, status = CONFIGS[config]
        chain, key = getattr(self.pki, chain_name), getattr(self.pki, key_name)
        staple = ocsp_response(self.pki, status) if status else None
        if peer == "openssl":
            extra = []
            if staple is not None:
                path = self.directory / f"staple-{config}.der"
                path.write_bytes(staple)
                extra = ["-status_file", str(path)]
            return self.stack.enter_context(openssl_server(chain, key, www=True, extra_args=extra)).port
        if peer == "cpython":
            def handler(tls: ssl.SSLSocket) -> None:
                with tls.makefile("rwb") as f:
                    _answer_http(f.readline, f.write)
            return self.stack.enter_context(cpython_tls_server(chain, key, handler=handler)).port
        ctx = commssl.make_ssl_ctx(True, "server")
        self.stack.callback(commssl.destroy_ssl_ctx, ctx)
        commssl.ssl_ctx_use_certificate_chain_file(ctx, chain)
        commssl.ssl_ctx_use_privatekey_file(ctx, key)
        if staple is not None:
            commssl.set_ocsp_staple(ctx, staple)

        def serve(_: Listener, conn: socket.socket) -> None:
            with commssl.create_ssl_socket_stream(conn, ctx, handshake_timeout=HS, timeout=HS) as s:
                _answer_http(s.readline, s.write)

        listener = Listener(serve)
        self.stack.callback(listener.stop)
        return listener.port

    def close(self) -> None:
        self.stack.close()


# -- client rows: the entry points -----------------------------------------------------------------


def _url(port: int) -> str:
    return f"https://{DIAL}:{port}/"


def _status(response: httpx.Response) -> bytes:
    return f"HTTP/1.1 {response.status_code}\r\n".encode()


async def _aio_status(stream: commssl.AsyncSSLStream) -> bytes:
    try:
        stream.write(REQUEST)
        await stream.drain()
        line = b""
        with anyio.fail_after(HS):
            while b"\n" not in line and (chunk := await stream.read(4096)):
                line += chunk
        return line.split(b"\n")[0] + b"\n"
    finally:
        await stream.close()


#: The peers here (CPython's ssl, s_server) may close without close_notify: a status line is
#: all the matrix reads, so such an end is accepted (anyio's standard_compatible=False).
_HTTP_LIKE: Dict[str, Any] = {"standard_compatible": False}


async def _anyio_status(stream: commssl.anyio.TLSStream) -> bytes:
    async with stream:
        await stream.send(REQUEST)
        line = b""
        with anyio.fail_after(HS):
            with contextlib.suppress(anyio.EndOfStream):
                while b"\n" not in line:
                    line += await stream.receive()
        return line.split(b"\n")[0] + b"\n"


def open_tcp_stream(port: int, ctx: Any, **kw: Any) -> bytes:
    with commssl.open_tcp_stream(DIAL, port, ssl_ctx=ctx, handshake_timeout=HS, timeout=HS, **kw) as s:
        s.write(REQUEST)
        return s.readline()


def create_ssl_socket_stream(port: int, ctx: Any, **kw: Any) -> bytes:
    kw.setdefault("tlsext_host_name", DIAL)  # a wrapped socket has no host: the name is given
    sock = socket.create_connection((DIAL, port), timeout=HS)
    with commssl.create_ssl_socket_stream(sock, ctx, ssl_side="client", handshake_timeout=HS,
                                          timeout=HS, **kw) as s:
        s.write(REQUEST)
        return s.readline()


def attach_ssl(port: int, ctx: Any, **kw: Any) -> bytes:
    """Blocking STARTTLS on a stream open_tcp_stream dialled: the name is that host."""
    with commssl.open_tcp_stream(DIAL, port, timeout=HS) as s:
        commssl.attach_ssl(s, ssl_ctx=ctx, ssl_side="client", handshake_timeout=HS, **kw)
        s.write(REQUEST)
        return s.readline()


def open_tcp_stream_async(port: int, ctx: Any, **kw: Any) -> bytes:
    async def main() -> bytes:
        s = await commssl.open_tcp_stream_async(DIAL, port, ssl_ctx=ctx, handshake_timeout=HS, **kw)
        return await _aio_status(s)
    return asyncio.run(main())


def attach_ssl_async(port: int, ctx: Any, **kw: Any) -> bytes:
    async def main() -> bytes:
        s = await commssl.open_tcp_stream_async(DIAL, port, ssl_ctx=None)
        try:
            await commssl.attach_ssl_async(s, ssl_ctx=ctx, ssl_side="client", handshake_timeout=HS, **kw)
        except BaseException:
            await s.close()
            raise
        return await _aio_status(s)
    return asyncio.run(main())


def anyio_wrap(port: int, ctx: Any, backend: str = "asyncio", **kw: Any) -> bytes:
    kw.setdefault("server_hostname", DIAL)

    async def main() -> bytes:
        tcp = await anyio.connect_tcp(DIAL, port)
        tls = await commssl.anyio.wrap(tcp, ssl_ctx=ctx, ssl_side="client", handshake_timeout=HS,
                                       **{**_HTTP_LIKE, **kw})
        return await _anyio_status(tls)
    return anyio.run(main, backend=backend)


def anyio_connect(port: int, ctx: Any, backend: str = "asyncio", **kw: Any) -> bytes:
    async def main() -> bytes:
        tls = await commssl.anyio.connect(DIAL, port, ssl_ctx=ctx, handshake_timeout=HS,
                                          **{**_HTTP_LIKE, **kw})
        return await _anyio_status(tls)
    return anyio.run(main, backend=backend)


def httpx_sync(port: int, ctx: Any, **kw: Any) -> bytes:
    with httpx.Client(transport=commssl.httpx.HTTPTransport(ssl_ctx=ctx, **kw), timeout=HS) as client:
        return _status(client.get(_url(port)))


def httpx_async(port: int, ctx: Any, backend: str = "asyncio", **kw: Any) -> bytes:
    async def main() -> bytes:
        transport = commssl.httpx.AsyncHTTPTransport(ssl_ctx=ctx, **kw)
        async with httpx.AsyncClient(transport=transport, timeout=HS) as client:
            return _status(await client.get(_url(port)))
    return anyio.run(main, backend=backend)


@dataclass(frozen=True)
class ClientEntry:
    """``fetch(port, ctx, **kw) -> status line``; ``wrapper``: the exception type the
    commssl failure arrives in as ``__cause__`` (httpx), or ``None``; ``may_wrap``: the
    failure may come as itself or as the ``__cause__`` of another (anyio)."""

    fetch: Callable[..., bytes]
    wrapper: Optional[type] = None
    may_wrap: bool = False


# -- server rows: the entry points -------------------------------------------------------------------


@dataclass
class Served:
    """A server under test: its ``port`` and one outcome per connection, in order."""

    port: int
    outcomes: "queue.Queue[Outcome]"

    def next(self) -> Outcome:
        return self.outcomes.get(timeout=2 * HS)


def _serve_stream(stream: commssl.SocketStream, outcomes: "queue.Queue[Outcome]") -> None:
    with stream:
        stream.write(SECRET)
        line: Any
        try:
            line = stream.readline()
        except (OSError, ValueError) as exc:  # the client went away: it was served all the same
            line = exc
        outcomes.put(("served", line))


@contextlib.contextmanager
def _blocking(open_stream: Callable[[socket.socket], commssl.SocketStream]) -> Iterator[Served]:
    outcomes: "queue.Queue[Outcome]" = queue.Queue()

    def serve(_: Listener, conn: socket.socket) -> None:
        try:
            stream = open_stream(conn)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes.put(("failed", exc))
            return
        _serve_stream(stream, outcomes)

    listener = Listener(serve)
    try:
        yield Served(listener.port, outcomes)
    finally:
        listener.stop()


def serve_create_ssl_socket_stream(ctx: Any) -> Any:
    return _blocking(lambda conn: commssl.create_ssl_socket_stream(conn, ctx, handshake_timeout=HS,
                                                                   timeout=HS))


def serve_attach_ssl(ctx: Any) -> Any:
    def open_stream(conn: socket.socket) -> commssl.SocketStream:
        stream = commssl.create_ssl_socket_stream(conn, None, timeout=HS)
        try:
            commssl.attach_ssl(stream, ssl_ctx=ctx, ssl_side="server", handshake_timeout=HS)
        except BaseException:
            stream.close()
            raise
        return stream
    return _blocking(open_stream)


async def _aio_serve(stream: commssl.AsyncSSLStream, outcomes: "queue.Queue[Outcome]") -> None:
    stream.write(SECRET)
    await stream.drain()
    line: Any = b""
    try:
        with anyio.fail_after(HS):
            while b"\n" not in line and (chunk := await stream.read(4096)):
                line += chunk
    except (OSError, TimeoutError) as exc:
        line = exc
    outcomes.put(("served", line))


class _LoggedFailures(logging.Handler):
    """start_ssl_server logs a failed handshake (with the exception among the record's
    arguments) and closes the connection: that log is the server's outcome."""

    def __init__(self, outcomes: "queue.Queue[Outcome]") -> None:
        super().__init__(logging.DEBUG)
        self.outcomes = outcomes

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        exc = next((a for a in args if isinstance(a, BaseException)), None)
        if exc is None and record.exc_info:
            exc = record.exc_info[1]
        if exc is not None:
            self.outcomes.put(("failed", exc))


@contextlib.contextmanager
def _asyncio_server(ctx: Any, starttls: bool) -> Iterator[Served]:
    outcomes: "queue.Queue[Outcome]" = queue.Queue()
    logger = logging.getLogger("commssl.aio")
    handler, level = _LoggedFailures(outcomes), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def serve(stream: commssl.AsyncSSLStream) -> None:
        if starttls:
            try:
                await commssl.attach_ssl_async(stream, ssl_ctx=ctx, ssl_side="server", handshake_timeout=HS)
            except Exception as exc:  # noqa: BLE001 - the outcome under test
                outcomes.put(("failed", exc))
                return
        await _aio_serve(stream, outcomes)

    async def start() -> asyncio.Server:
        return await commssl.start_ssl_server(serve, HOST, 0, ssl_ctx=None if starttls else ctx,
                                              handshake_timeout=None if starttls else HS)

    async def stop(server: asyncio.Server) -> None:
        server.close()
        await server.wait_closed()

    try:
        with anyio.from_thread.start_blocking_portal("asyncio") as portal:
            server = portal.call(start)
            try:
                yield Served(server.sockets[0].getsockname()[1], outcomes)
            finally:
                portal.call(stop, server)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def serve_start_ssl_server(ctx: Any) -> Any:
    return _asyncio_server(ctx, starttls=False)


def serve_attach_ssl_async(ctx: Any) -> Any:
    return _asyncio_server(ctx, starttls=True)


@contextlib.contextmanager
def _anyio_server(ctx: Any, backend: str) -> Iterator[Served]:
    outcomes: "queue.Queue[Outcome]" = queue.Queue()

    async def handle(tcp: anyio.abc.SocketStream) -> None:
        try:
            tls = await commssl.anyio.wrap(tcp, ssl_ctx=ctx, ssl_side="server", handshake_timeout=HS,
                                           **_HTTP_LIKE)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes.put(("failed", exc))
            return
        line: Any = b""
        async with tls:
            await tls.send(SECRET)
            try:
                with anyio.fail_after(HS):
                    while b"\n" not in line:
                        line += await tls.receive()
            except Exception as exc:  # noqa: BLE001 - the client went away: served all the same
                line = exc
        outcomes.put(("served", line))

    with anyio.from_thread.start_blocking_portal(backend) as portal:
        listener = portal.call(functools.partial(anyio.create_tcp_listener, local_host=HOST, local_port=0))
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task = portal.start_task_soon(listener.serve, handle)
        try:
            yield Served(port, outcomes)
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                task.exception(HS)
            portal.call(listener.aclose)


def serve_anyio(backend: str) -> Callable[[Any], Any]:
    return lambda ctx: _anyio_server(ctx, backend)


# -- server rows: the client peers ---------------------------------------------------------------------

#: Client certificates: trusted, trusted (another leaf), issued by an untrusted root, none.
CLIENT_CERTS: Dict[Optional[str], Tuple[Optional[str], Optional[str]]] = {
    None: (None, None), "client": ("client_chain", "client_key"), "nocn": ("nocn_chain", "nocn_key"),
    "other": ("other_chain", "other_key"),
}


def _process_output(process: OpenSSLProcess) -> bytes:
    with contextlib.suppress(OSError):  # a client the server refused may be gone already
        process.send(b"ping\n")
    # Until the server's first line arrives or the client ends (refused): then stdin EOF ends
    # it. (gnutls-cli 3.7 does not always notice an anyio server's close while stdin is open.)
    with contextlib.suppress(TimeoutError):
        process.wait_for(re.escape(SECRET.decode().strip()), HS)
    process.close_stdin()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(HS)
    return process.output().encode()


def client_peer(kind: str, pki: PKI, port: int, cert: Optional[str]) -> bytes:
    """Connect as client peer ``kind`` with client certificate ``cert`` (CLIENT_CERTS), send
    a line and return everything the client got or printed. Never raises for TLS failures."""
    chain_name, key_name = CLIENT_CERTS[cert]
    chain = getattr(pki, chain_name) if chain_name else None
    key = getattr(pki, key_name) if key_name else None
    if kind == "openssl":
        with openssl_client_async(port, cafile=pki.root_cert, cert=chain, key=key) as process:
            return _process_output(process)
    if kind == "gnutls":
        args = ["gnutls-cli", "--x509cafile", str(pki.root_cert), "--sni-hostname", "localhost",
                "--verify-hostname", "localhost", "-p", str(port), HOST]
        if chain is not None:
            args += ["--x509certfile", str(chain), "--x509keyfile", str(key)]
        prefix = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        process = OpenSSLProcess([*prefix, *args])
        try:
            return _process_output(process)
        finally:
            process.stop()
    received = b""
    if kind == "commssl":
        ctx = commssl.create_ssl_client_context(openssl_trusted_file=pki.root_cert, cert_file=chain,
                                                key_file=key)
        try:
            with commssl.open_tcp_stream(HOST, port, ssl_ctx=ctx, handshake_timeout=HS, timeout=HS) as s:
                s.write(b"ping\n")
                while chunk := s.read1(4096):
                    received += chunk
        except (OSError, ValueError):
            pass
        return received
    assert kind == "cpython", kind
    try:
        with cpython_tls_client(port, cafile=pki.root_cert, certfile=chain, keyfile=key,
                                server_hostname="localhost", timeout=HS) as tls:
            tls.sendall(b"ping\n")
            while chunk := tls.recv(4096):
                received += chunk
    except OSError:
        pass
    return received


#: Which client peers there are (gnutls-cli only when installed).
CLIENT_PEERS = ["openssl", "commssl", "cpython"] + (["gnutls"] if shutil.which("gnutls-cli") else [])
