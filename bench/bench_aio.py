"""asyncio benchmark: commssl's AsyncSSLStream against CPython's asyncio ``ssl=``.

Both contenders run client and server in one process on one event loop, over
127.0.0.1, with the same ECDSA P-256 root -> intermediate -> leaf chain; the
client verifies the server (trusted root plus the system's defaults, host name
"localhost"), TLS 1.3 on both.

- handshakes/s: ``--connections`` connections in all, ``--concurrency`` at a
  time; each connects, completes the handshake, and closes with close_notify
  both ways (so "handshake" here is a whole short-lived connection).
- echo MB/s: ``--concurrency`` connections at once, each sending
  ``--echo-bytes`` in 64 KiB writes that the server sends back; the figure is
  bytes sent by the clients per second (the same amount comes back).

Runs are interleaved (commssl, asyncio, asyncio, commssl, ...) and each figure
is the median of ``--runs``. Prints a Markdown table. ``--smoke``: tiny counts,
to check that the benchmark still works.

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
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import commssl  # noqa: E402
from pki import Chain, make_chain  # noqa: E402

HOST = "127.0.0.1"
BLOCK = 64 * 1024


class Contender:
    """One TLS stack: how to serve and how to connect, for both measurements."""

    name = ""

    async def serve(self, echo: bool) -> Tuple[Any, int]:
        raise NotImplementedError

    async def connect_close(self, port: int) -> None:
        raise NotImplementedError

    async def echo(self, port: int, size: int) -> None:
        raise NotImplementedError


class Commssl(Contender):
    name = "commssl"

    def __init__(self, chain: Chain) -> None:
        self.server_ctx = commssl.make_ssl_ctx(True, "server")
        commssl.ssl_ctx_use_certificate_chain_file(self.server_ctx, chain.server_chain)
        commssl.ssl_ctx_use_privatekey_file(self.server_ctx, chain.server_key)
        self.client_ctx = commssl.make_ssl_ctx(True, "client")  # system defaults + the root
        commssl.ssl_ctx_load_verify_locations(self.client_ctx, chain.root)

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
        stream = await commssl.open_tcp_stream_async("localhost", port, ssl_ctx=self.client_ctx)
        await stream.close()

    async def echo(self, port: int, size: int) -> None:
        stream = await commssl.open_tcp_stream_async("localhost", port, ssl_ctx=self.client_ctx)
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
    name = "asyncio ssl"

    def __init__(self, chain: Chain) -> None:
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
                                                  server_hostname="localhost")
        writer.close()
        await writer.wait_closed()

    async def echo(self, port: int, size: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=self.client_ctx,
                                                       server_hostname="localhost")
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

    with tempfile.TemporaryDirectory(prefix="commssl-bench-aio-") as tmp:
        chain = make_chain(Path(tmp), "ecdsa")
        contenders: List[Contender] = [Commssl(chain), AsyncioSSL(chain)]
        results: Dict[str, Dict[str, List[float]]] = {c.name: {"hs": [], "echo": []} for c in contenders}

        async def measure() -> None:
            for run in range(args.runs):
                order = contenders if run % 2 == 0 else contenders[::-1]
                for c in order:
                    results[c.name]["hs"].append(
                        await handshakes_per_second(c, args.connections, args.concurrency))
                for c in order[::-1]:
                    results[c.name]["echo"].append(await echo_mb_per_second(c, args.concurrency, size))

        asyncio.run(measure())

    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    print(f"asyncio TLS 1.3, ECDSA P-256 chain, one event loop for both sides; Python "
          f"{sys.version.split()[0]}, {commssl.openssl_version()['loaded']}; median of {args.runs} "
          f"interleaved runs")
    print()
    print(f"| stack | handshakes/s ({args.connections} connections, {args.concurrency} at a time) "
          f"| echo MB/s ({args.concurrency} connections x {size // 1024} KiB) |")
    print("|---|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m['hs']:.0f} | {m['echo']:.1f} |")
    a, b = med["commssl"], med["asyncio ssl"]
    print(f"| commssl / asyncio ssl | {a['hs'] / b['hs']:.2f}x | {a['echo'] / b['echo']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
