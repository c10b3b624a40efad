"""asyncio benchmark: commssl's AsyncSSLStream against CPython's asyncio ``ssl=``,
and the same asyncio ``ssl=`` code on uvloop's event loop (uvloop's own TLS
transport) when uvloop is installed.

Every contender runs client and server in one process on one event loop, a fresh
loop per measurement; the clients dial 127.0.0.1 with the server name
"localhost" (SNI and the name checked), with the same ECDSA P-256 root ->
intermediate -> leaf chain; the client verifies the server (trusted root plus
the system's defaults), TLS 1.3 on all.

- handshakes/s: ``--connections`` connections in all, ``--concurrency`` at a
  time; each connects, completes the handshake, and closes with close_notify
  both ways (so "handshake" here is a whole short-lived connection).
- echo MB/s: ``--concurrency`` connections at once, each sending
  ``--echo-bytes`` in 64 KiB writes that the server sends back; the figure is
  bytes sent by the clients per second (the same amount comes back).

Runs are interleaved (the contenders' order alternates every run) and each
figure is the median of ``--runs``. Prints a Markdown table. ``--smoke``: tiny
counts, to check that the benchmark still works. ``python -m bench`` runs the
same measurements (``blocks``) as its ``aio`` group, at 100 and 1,000
concurrent connections.

Usage: python bench/bench_aio.py [--smoke] [--runs 5] [--concurrency 100]
       [--connections 500] [--echo-bytes 1048576]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Sequence, Tuple

import commssl

if __package__:  # bench.bench_aio, from python -m bench
    from .pki import Chain, make_chain
else:  # python bench/bench_aio.py, or imported by bench_anyio.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pki import Chain, make_chain  # type: ignore[no-redef]

try:
    import uvloop
except ImportError:  # not installed (or Windows): no uvloop column
    uvloop = None

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
BLOCK = 64 * 1024
UVLOOP_MISSING = "uvloop is not installed (pip install uvloop; not on Windows), so its column is empty."


def run_on(loop: str, fn: Callable[[], Awaitable[float]]) -> float:
    """``fn()`` to completion on a fresh ``asyncio`` or ``uvloop`` event loop, closed after."""
    new = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    ev = new()
    try:
        return ev.run_until_complete(fn())
    finally:
        try:
            pending = asyncio.all_tasks(ev)
            for task in pending:
                task.cancel()
            if pending:
                ev.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            ev.run_until_complete(ev.shutdown_asyncgens())
        finally:
            ev.close()


class Contender:
    """One TLS stack: how to serve and how to connect, for both measurements; ``key``
    names its column in ``python -m bench``, ``loop`` the event loop it runs on."""

    name = ""
    key = ""
    loop = "asyncio"

    async def serve(self, echo: bool) -> Tuple[Any, int]:
        raise NotImplementedError

    async def connect_close(self, port: int) -> None:
        raise NotImplementedError

    async def echo(self, port: int, size: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Commssl(Contender):
    name = "commssl"
    key = "commssl"

    def __init__(self, chain: Chain) -> None:
        self.server_ctx = commssl.make_ssl_ctx(True, "server")
        commssl.ssl_ctx_use_certificate_chain_file(self.server_ctx, chain.server_chain)
        commssl.ssl_ctx_use_privatekey_file(self.server_ctx, chain.server_key)
        self.client_ctx = commssl.make_ssl_ctx(True, "client")  # system defaults + the root
        commssl.ssl_ctx_load_verify_locations(self.client_ctx, chain.root)

    def close(self) -> None:
        commssl.destroy_ssl_ctx(self.client_ctx)
        commssl.destroy_ssl_ctx(self.server_ctx)

    async def serve(self, echo: bool) -> Tuple[Any, int]:
        async def handler(stream: commssl.AsyncSSLStream) -> None:
            if echo:
                while True:
                    data = await stream.read(BLOCK)
                    if not data:
                        return
                    stream.write(data)
                    await stream.drain()

        server = await commssl.start_ssl_server(handler, HOST, 0, ssl_ctx=self.server_ctx, backlog=1024)
        return server, server.sockets[0].getsockname()[1]

    async def connect_close(self, port: int) -> None:
        stream = await commssl.open_tcp_stream_async(HOST, port, ssl_ctx=self.client_ctx,
                                                     tlsext_host_name=SERVER_NAME)
        await stream.close()

    async def echo(self, port: int, size: int) -> None:
        stream = await commssl.open_tcp_stream_async(HOST, port, ssl_ctx=self.client_ctx,
                                                     tlsext_host_name=SERVER_NAME)
        block = b"e" * BLOCK

        async def send() -> None:
            for _ in range(size // BLOCK):
                stream.write(block)
                await stream.drain()

        sender = asyncio.ensure_future(send())
        got = 0
        while got < size:
            data = await stream.read(1 << 20)
            if not data:
                raise RuntimeError("echo: end of stream")
            got += len(data)
        await sender
        await stream.close()


class AsyncioSSL(Contender):
    """asyncio's streams with ``ssl=``: CPython's SSLProtocol on asyncio's loop, uvloop's
    own TLS transport on uvloop's (``loop="uvloop"``)."""

    name = "asyncio ssl"
    key = "cpython"

    def __init__(self, chain: Chain, loop: str = "asyncio") -> None:
        if loop == "uvloop":
            self.name, self.key, self.loop = "uvloop ssl", "uvloop", "uvloop"
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.load_cert_chain(chain.server_chain, chain.server_key)
        self.client_ctx = ssl.create_default_context(cafile=str(chain.root))  # system defaults + the root

    async def serve(self, echo: bool) -> Tuple[Any, int]:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                if echo:
                    while True:
                        data = await reader.read(BLOCK)
                        if not data:
                            break
                        writer.write(data)
                        await writer.drain()
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except (OSError, ssl.SSLError):
                    pass

        server = await asyncio.start_server(handler, HOST, 0, ssl=self.server_ctx, backlog=1024)
        return server, server.sockets[0].getsockname()[1]

    async def connect_close(self, port: int) -> None:
        _, writer = await asyncio.open_connection(HOST, port, ssl=self.client_ctx,
                                                  server_hostname=SERVER_NAME)
        writer.close()
        await writer.wait_closed()

    async def echo(self, port: int, size: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=self.client_ctx,
                                                       server_hostname=SERVER_NAME)
        block = b"e" * BLOCK

        async def send() -> None:
            for _ in range(size // BLOCK):
                writer.write(block)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        got = 0
        while got < size:
            data = await reader.read(1 << 20)
            if not data:
                raise RuntimeError("echo: end of stream")
            got += len(data)
        await sender
        writer.close()
        await writer.wait_closed()


async def _bounded(jobs: List[Callable[[], Awaitable[None]]], concurrency: int) -> float:
    """Run the jobs, ``concurrency`` at a time; the wall time in seconds."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    start = time.perf_counter()
    await asyncio.gather(*(one(job) for job in jobs))
    return time.perf_counter() - start


async def handshakes_per_second(c: Contender, connections: int, concurrency: int) -> float:
    server, port = await c.serve(echo=False)
    try:
        seconds = await _bounded([lambda: c.connect_close(port)] * connections, concurrency)
    finally:
        server.close()
        await server.wait_closed()
    return connections / seconds


async def echo_mb_per_second(c: Contender, concurrency: int, size: int) -> float:
    server, port = await c.serve(echo=True)
    try:
        seconds = await _bounded([lambda: c.echo(port, size)] * concurrency, concurrency)
    finally:
        server.close()
        await server.wait_closed()
    return concurrency * size / seconds / 1e6


@dataclass(frozen=True)
class Load:
    """One load level: its label in the row ids, connections at a time, handshake
    connections in all, and echo bytes per connection (whole 64 KiB blocks)."""

    label: str
    concurrency: int
    connections: int
    echo_bytes: int


Task = Tuple[str, str, Callable[[], float]]


def contenders(chain: Chain) -> Tuple[List[Contender], List[str]]:
    """commssl, asyncio ssl and (when installed) uvloop ssl; notes on what is missing."""
    out: List[Contender] = [Commssl(chain), AsyncioSSL(chain)]
    if uvloop is None:
        return out, [UVLOOP_MISSING]
    return out + [AsyncioSSL(chain, loop="uvloop")], []


def blocks(cs: Sequence[Contender], loads: Sequence[Load]) -> List[List[Task]]:
    """The measurements as ``(row, contender key, run once -> figure)``, one block a
    contender: rows ``aio-hs-LABEL`` (handshakes/s) and ``aio-echo-LABEL`` (MB/s)."""
    out = []
    for c in cs:
        block: List[Task] = []
        for load in loads:
            size = max(BLOCK, load.echo_bytes // BLOCK * BLOCK)
            block.append((f"aio-hs-{load.label}", c.key, lambda c=c, load=load: run_on(
                c.loop, lambda: handshakes_per_second(c, load.connections, load.concurrency))))
            block.append((f"aio-echo-{load.label}", c.key, lambda c=c, load=load, size=size: run_on(
                c.loop, lambda: echo_mb_per_second(c, load.concurrency, size))))
        out.append(block)
    return out


def arguments(argv: List[str], description: str) -> Tuple[argparse.Namespace, int]:
    """The command line of this benchmark and bench_anyio.py: the arguments, and the echo
    size rounded to whole blocks."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny counts: check that it runs")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--echo-bytes", type=int, default=1 << 20)
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.concurrency, args.connections, args.echo_bytes = 1, 4, 8, 2 * BLOCK
    return args, max(BLOCK, args.echo_bytes // BLOCK * BLOCK)


def main(argv: List[str]) -> int:
    args, size = arguments(argv, __doc__.splitlines()[0])
    load = Load("cli", args.concurrency, args.connections, size)
    results: Dict[Tuple[str, str], List[float]] = {}

    with tempfile.TemporaryDirectory(prefix="commssl-bench-aio-") as tmp:
        cs, notes = contenders(make_chain(Path(tmp), "ecdsa"))
        todo = blocks(cs, [load])
        try:
            for run in range(args.runs):
                for block in (todo if run % 2 == 0 else todo[::-1]):
                    for row, key, fn in block:
                        results.setdefault((row, key), []).append(fn())
        finally:
            for c in cs:
                c.close()

    def med(row: str, key: str) -> float:
        return statistics.median(results[(f"aio-{row}-cli", key)])

    print(f"asyncio TLS 1.3, ECDSA P-256 chain, one event loop for both sides; Python "
          f"{sys.version.split()[0]}, {commssl.openssl_version()['loaded']}"
          f"{', uvloop ' + uvloop.__version__ if uvloop else ''}; median of {args.runs} interleaved runs")
    print()
    print(f"| stack | handshakes/s ({args.connections} connections, {args.concurrency} at a time) "
          f"| echo MB/s ({args.concurrency} connections x {size // 1024} KiB) |")
    print("|---|---:|---:|")
    for c in cs:
        print(f"| {c.name} | {med('hs', c.key):.0f} | {med('echo', c.key):.1f} |")
    for c in cs[1:]:
        print(f"| commssl / {c.name} | {med('hs', 'commssl') / med('hs', c.key):.2f}x "
              f"| {med('echo', 'commssl') / med('echo', c.key):.2f}x |")
    for note in notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
