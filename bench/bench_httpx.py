"""httpx benchmark (``python -m bench``'s rows 10): ``httpx.Client`` and ``httpx.AsyncClient``
with commssl's transports (``commssl.httpx.HTTPTransport`` / ``AsyncHTTPTransport``) against
httpx's default transports (CPython's ``ssl``), on the same OpenSSL.

Both clients request ``https://127.0.0.1:PORT/`` with the server name "localhost" (httpx's
``sni_hostname`` extension: SNI, and the name checked) from one HTTPS server in another process,
pinned to another CPU when there are two: nginx when installed (``ci/setup`` installs it), else
``python -m bench.bench_httpx serve CHAIN_DIR``, CPython's ``ssl`` under ``http.server``. Same
verification: the client trusts the system's default CA file and directory plus the chain's root
(``lib_cpython.contexts``, as commssl's ``make_ssl_ctx(True, "client")``) and checks the name.
The server offers no session resumption, so every new connection is a full handshake.

Rows: new connection per request (``httpx.Limits(max_keepalive_connections=0)``: httpcore closes
each connection once its response is read) and keep-alive (one connection), for ``httpx.Client``,
``httpx.AsyncClient`` on asyncio, and on trio (informational). One client per sample, a first
request before the timing; a sample is the wall time per request of ``n`` sequential requests,
and the client process's CPU time per request (``process_time``, every thread: anyio resolves
addresses in a worker thread) is kept beside it as ``ROW:cpu``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import commssl

from .lib_cpython import contexts
from .loopback import REPO, cpus, pin
from .pki import Chain, load_chain

try:
    import httpx

    import commssl.httpx as commssl_httpx
except ImportError:  # without commssl[httpx]: no rows 10
    httpx = None  # type: ignore[assignment]
try:
    import trio
except ImportError:  # no trio rows
    trio = None  # type: ignore[assignment]

# row id -> (runtime, keep-alive)
ROWS: Dict[str, Tuple[str, bool]] = {
    "httpx-sync-new": ("sync", False), "httpx-sync-ka": ("sync", True),
    "httpx-aio-new": ("asyncio", False), "httpx-aio-ka": ("asyncio", True),
    "httpx-trio-new": ("trio", False), "httpx-trio-ka": ("trio", True),
}
WHO = ("commssl", "cpython")  # cpython: httpx's default transport
EXT = {"sni_hostname": "localhost"}
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
_NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log error;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {chain};
        ssl_certificate_key {key};
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


class Server:
    """The HTTPS server of rows 10, in its own process: nginx, or the CPython fallback."""

    def __init__(self, chain: Chain, scratch: Path, cpu: Optional[int] = None) -> None:
        self.name = "nginx" if NGINX else "CPython http.server"
        if NGINX:
            d = Path(tempfile.mkdtemp(prefix="nginx-", dir=scratch))
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            user = "user root;" if os.geteuid() == 0 else ""
            (d / "nginx.conf").write_text(_NGINX_CONF.format(d=d, port=self.port, user=user,
                                                            chain=chain.server_chain, key=chain.server_key))
            self._proc = subprocess.Popen([NGINX, "-p", str(d), "-c", str(d / "nginx.conf")],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        else:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get(
                "PYTHONPATH")])))
            self._proc = subprocess.Popen([sys.executable, "-m", "bench.bench_httpx", "serve",
                                           str(chain.directory)], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
            assert self._proc.stdout is not None
            line = self._proc.stdout.readline()
            if not line.strip().isdigit():
                self.close()
                raise RuntimeError("the httpx benchmark server did not start")
            self.port = int(line)
        pin(self._proc.pid, cpu)
        deadline = time.monotonic() + 20
        while True:  # nginx listens a moment after it starts
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"{self.name} did not start") from None
                time.sleep(0.05)
        self.url = f"https://127.0.0.1:{self.port}/"

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()


class Clients:
    """How each contender makes its clients: commssl's transport on a context made once, or
    httpx's default transport on an ``ssl.SSLContext`` configured alike."""

    def __init__(self, chain: Chain) -> None:
        self.ctx = commssl.make_ssl_ctx(True, "client")  # system defaults + the root
        commssl.ssl_ctx_load_verify_locations(self.ctx, chain.root)
        self.cpython_ctx: ssl.SSLContext = contexts(chain, False)[0]
        self.url = ""  # the server's, once it runs

    def close(self) -> None:
        commssl.destroy_ssl_ctx(self.ctx)

    def transport(self, who: str, runtime: str, keepalive: bool) -> Any:
        limits = httpx.Limits(max_keepalive_connections=None if keepalive else 0)
        if who == "commssl":
            cls = commssl_httpx.HTTPTransport if runtime == "sync" else commssl_httpx.AsyncHTTPTransport
            return cls(ssl_ctx=self.ctx, limits=limits)
        cls = httpx.HTTPTransport if runtime == "sync" else httpx.AsyncHTTPTransport
        return cls(verify=self.cpython_ctx, limits=limits)


def _check(response: Any) -> None:
    if response.status_code != 200 or response.content != b"ok\n":
        raise RuntimeError(f"unexpected answer: {response.status_code} {response.content[:40]!r}")


def _sync(clients: Clients, who: str, keepalive: bool, n: int) -> Tuple[float, float]:
    url = clients.url
    with httpx.Client(transport=clients.transport(who, "sync", keepalive)) as client:
        _check(client.get(url, extensions=EXT))
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            _check(client.get(url, extensions=EXT))
        return time.perf_counter() - w0, time.process_time() - c0


async def _async(clients: Clients, who: str, runtime: str, keepalive: bool, n: int) -> Tuple[float, float]:
    url = clients.url
    async with httpx.AsyncClient(transport=clients.transport(who, runtime, keepalive)) as client:
        _check(await client.get(url, extensions=EXT))
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            _check(await client.get(url, extensions=EXT))
        return time.perf_counter() - w0, time.process_time() - c0


def measure(clients: Clients, who: str, row: str, n: int) -> Tuple[float, float]:
    """Seconds per request of ``n`` requests, wall and CPU, on a fresh client (and event loop)."""
    runtime, keepalive = ROWS[row]
    if runtime == "sync":
        wall, cpu = _sync(clients, who, keepalive, n)
    elif runtime == "asyncio":
        wall, cpu = asyncio.run(_async(clients, who, runtime, keepalive, n))
    else:
        wall, cpu = trio.run(_async, clients, who, runtime, keepalive, n)
    return wall / n, cpu / n


Task = Tuple[str, str, Callable[[], float]]


@contextlib.contextmanager
def setup(chain: Chain, scratch: Path, notes: List[str], info: Dict[str, Any]) -> Iterator[Optional[Clients]]:
    """The clients, their server started (on the second CPU, this process kept on the first,
    when there are two); None (with a note) when httpx is not installed."""
    if httpx is None:
        notes.append("httpx is not installed (pip install commssl[httpx]): no rows 10.")
        yield None
        return
    two = cpus()
    before = os.sched_getaffinity(0) if two is not None else None
    clients = Clients(chain)
    try:
        server = Server(chain, scratch, two[1] if two else None)
    except BaseException:
        clients.close()
        raise
    clients.url = server.url
    info["httpx"] = {"httpx": httpx.__version__, "server": server.name,
                     "trio": trio.__version__ if trio is not None else None}
    if trio is None:
        notes.append("trio is not installed: the httpx trio rows are empty.")
    try:
        pin(0, two[0] if two else None)
        yield clients
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
        server.close()
        clients.close()


def blocks(clients: Clients, n: Tuple[int, int], samples: Dict[Tuple[str, str], List[float]]
           ) -> List[List[Task]]:
    """One block a row, a task a contender (``n``: requests per sample, new connection and
    keep-alive), so that the two samples a ratio pairs run back to back (the load of this
    shared machine moves within seconds): each records its wall time per request (the
    figure) and keeps the CPU time per request in ``samples[(ROW:cpu, who)]``."""
    def task(who: str, row: str) -> Callable[[], float]:
        def run() -> float:
            wall, cpu = measure(clients, who, row, n[ROWS[row][1]])
            samples.setdefault((f"{row}:cpu", who), []).append(cpu)
            return wall
        return run

    rows = [row for row, (runtime, _) in ROWS.items() if runtime != "trio" or trio is not None]
    return [[(row, who, task(who, row)) for who in WHO] for row in rows]


# -- the fallback server: python -m bench.bench_httpx serve CHAIN_DIR ---------------------------


def serve(chain_dir: Path) -> None:
    """Prints its port, serves until stdin closes: CPython ``ssl`` under ``http.server``."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args: Any) -> None:
            pass

    chain = load_chain(chain_dir, "ecdsa")
    ctx = contexts(chain, False)[1]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 3:
        sys.exit("usage: python -m bench.bench_httpx serve CHAIN_DIR")
    serve(Path(sys.argv[2]))
