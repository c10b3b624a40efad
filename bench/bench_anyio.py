"""anyio benchmark: commssl.anyio on trio and on asyncio, next to trio's own ``trio.SSLStream``
and asyncio's ``ssl=``.

As ``bench_aio.py``: client and server in one process on one event loop, over 127.0.0.1, the
same ECDSA P-256 root -> intermediate -> leaf chain, the client verifying the server (trusted
root plus the system's defaults, host name "localhost"), TLS 1.3.

- handshakes/s: ``--connections`` connections in all, ``--concurrency`` at a time; each
  connects, completes the handshake, and closes (close_notify sent).
- echo MB/s: ``--concurrency`` connections at once, each sending ``--echo-bytes`` in 64 KiB
  writes that the server sends back; bytes sent by the clients per second.

Each measurement runs in its own ``anyio.run`` on the contender's backend; runs are
interleaved (the order reverses every run) and each figure is the median of ``--runs``.
Prints a Markdown table. ``--smoke``: tiny counts, to check that the benchmark still works.
``python -m bench`` runs the trio measurements (``blocks``) as its ``trio`` group (rows 11).

Usage: python bench/bench_anyio.py [--smoke] [--runs 5] [--concurrency 100]
       [--connections 500] [--echo-bytes 1048576]
"""

from __future__ import annotations

import contextlib
import ssl
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Sequence

import anyio
import anyio.abc
import trio

import commssl
import commssl.anyio

if __package__:  # bench.bench_anyio, from python -m bench
    from . import bench_aio
    from .pki import Chain, make_chain
else:  # python bench/bench_anyio.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_aio  # type: ignore[no-redef]
    from pki import Chain, make_chain  # type: ignore[no-redef]

HOST = "127.0.0.1"
BLOCK = 64 * 1024


class Contender(bench_aio.Contender):
    """bench_aio's contender, run on one anyio backend; ``serve`` is an async context
    giving the server's port."""

    backend = ""


async def _echo_client(send: Callable[[bytes], Awaitable[None]], receive: Callable[[], Awaitable[bytes]],
                       size: int) -> None:
    block = b"e" * BLOCK

    async def sender() -> None:
        for _ in range(size // BLOCK):
            await send(block)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        got = 0
        while got < size:
            data = await receive()
            if not data:
                raise RuntimeError("echo: end of stream")
            got += len(data)


class CommsslAnyio(Contender):
    def __init__(self, chain: Chain, backend: str) -> None:
        self.name = f"commssl.anyio on {backend}"
        self.backend = backend
        self.server_ctx = commssl.make_ssl_ctx(True, "server")
        commssl.ssl_ctx_use_certificate_chain_file(self.server_ctx, chain.server_chain)
        commssl.ssl_ctx_use_privatekey_file(self.server_ctx, chain.server_key)
        self.client_ctx = commssl.make_ssl_ctx(True, "client")  # system defaults + the root
        commssl.ssl_ctx_load_verify_locations(self.client_ctx, chain.root)

    @contextlib.asynccontextmanager  # type: ignore[override]
    async def serve(self, echo: bool) -> AsyncIterator[int]:
        async def handler(tcp: anyio.abc.SocketStream) -> None:
            try:
                stream = await commssl.anyio.wrap(tcp, ssl_ctx=self.server_ctx, ssl_side="server")
            except Exception:
                return
            try:
                while echo:
                    await stream.send(await stream.receive(BLOCK))
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass
            finally:
                await stream.aclose()

        listener = await anyio.create_tcp_listener(local_host=HOST, backlog=1024)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            yield listener.extra(anyio.abc.SocketAttribute.local_port)
            tg.cancel_scope.cancel()

    async def _connect(self, port: int) -> commssl.anyio.TLSStream:
        return await commssl.anyio.connect(HOST, port, ssl_ctx=self.client_ctx, tlsext_host_name="localhost")

    async def connect_close(self, port: int) -> None:
        await (await self._connect(port)).aclose()

    async def echo(self, port: int, size: int) -> None:
        stream = await self._connect(port)
        try:
            await _echo_client(stream.send, lambda: stream.receive(1 << 20), size)
        finally:
            await stream.aclose()


class TrioSSL(Contender):
    name = "trio.SSLStream"
    backend = "trio"

    def __init__(self, chain: Chain) -> None:
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.load_cert_chain(chain.server_chain, chain.server_key)
        self.client_ctx = ssl.create_default_context(cafile=str(chain.root))

    @contextlib.asynccontextmanager  # type: ignore[override]
    async def serve(self, echo: bool) -> AsyncIterator[int]:
        async def handler(stream: trio.SSLStream[Any]) -> None:
            try:
                await stream.do_handshake()
                while echo:
                    data = await stream.receive_some(BLOCK)
                    if not data:
                        break
                    await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
                pass
            finally:
                await trio.aclose_forcefully(stream)

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_ssl_over_tcp, handler, 0, self.server_ctx)
            yield listeners[0].transport_listener.socket.getsockname()[1]
            nursery.cancel_scope.cancel()

    async def _connect(self, port: int) -> trio.SSLStream[Any]:
        tcp = await trio.open_tcp_stream(HOST, port)
        stream = trio.SSLStream(tcp, self.client_ctx, server_hostname="localhost")
        await stream.do_handshake()
        return stream

    async def connect_close(self, port: int) -> None:
        await (await self._connect(port)).aclose()

    async def echo(self, port: int, size: int) -> None:
        stream = await self._connect(port)
        try:
            await _echo_client(stream.send_all, lambda: stream.receive_some(1 << 20), size)
        finally:
            await stream.aclose()


class AsyncioSSL(bench_aio.AsyncioSSL):
    """bench_aio's asyncio ``ssl=`` contender, its server as an async context."""

    backend = "asyncio"

    @contextlib.asynccontextmanager  # type: ignore[override]
    async def serve(self, echo: bool) -> AsyncIterator[int]:
        server, port = await super().serve(echo)
        try:
            yield port
        finally:
            server.close()


async def _bounded(jobs: List[Callable[[], Awaitable[None]]], concurrency: int) -> float:
    """Run the jobs, ``concurrency`` at a time; the wall time in seconds."""
    gate = anyio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(one, job)
    return time.perf_counter() - start


def handshakes_per_second(c: Contender, connections: int, concurrency: int) -> float:
    async def main() -> float:
        async with c.serve(echo=False) as port:
            return await _bounded([lambda: c.connect_close(port)] * connections, concurrency)

    return connections / anyio.run(main, backend=c.backend)


def echo_mb_per_second(c: Contender, concurrency: int, size: int) -> float:
    async def main() -> float:
        async with c.serve(echo=True) as port:
            return await _bounded([lambda: c.echo(port, size)] * concurrency, concurrency)

    return concurrency * size / anyio.run(main, backend=c.backend) / 1e6


def blocks(chain: Chain, loads: Sequence[bench_aio.Load]) -> List[List[bench_aio.Task]]:
    """Rows 11 of ``python -m bench``: ``commssl.anyio`` on trio (the commssl column) and
    ``trio.SSLStream`` (the CPython ssl column: it drives CPython's ``ssl.SSLObject``), as
    ``(row, column, run once -> figure)``, one block a contender: ``trio-hs-LABEL``
    (handshakes/s) and ``trio-echo-LABEL`` (MB/s) at each load level."""
    out = []
    for key, c in (("commssl", CommsslAnyio(chain, "trio")), ("cpython", TrioSSL(chain))):
        block: List[bench_aio.Task] = []
        for load in loads:
            size = max(BLOCK, load.echo_bytes // BLOCK * BLOCK)
            block.append((f"trio-hs-{load.label}", key,
                          lambda c=c, n=load.connections, k=load.concurrency: handshakes_per_second(c, n, k)))
            block.append((f"trio-echo-{load.label}", key,
                          lambda c=c, load=load, size=size: echo_mb_per_second(c, load.concurrency, size)))
        out.append(block)
    return out


def main(argv: List[str]) -> int:
    args, size = bench_aio.arguments(argv, __doc__.splitlines()[0])

    with tempfile.TemporaryDirectory(prefix="commssl-bench-anyio-") as tmp:
        chain = make_chain(Path(tmp), "ecdsa")
        contenders: List[Any] = [CommsslAnyio(chain, "trio"), TrioSSL(chain),
                                       CommsslAnyio(chain, "asyncio"), AsyncioSSL(chain)]
        results: Dict[str, Dict[str, List[float]]] = {c.name: {"hs": [], "echo": []} for c in contenders}
        for run in range(args.runs):
            order = contenders if run % 2 == 0 else contenders[::-1]
            for c in order:
                results[c.name]["hs"].append(handshakes_per_second(c, args.connections, args.concurrency))
            for c in order[::-1]:
                results[c.name]["echo"].append(echo_mb_per_second(c, args.concurrency, size))

    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    print(f"anyio TLS 1.3, ECDSA P-256 chain, one event loop for both sides; Python "
          f"{sys.version.split()[0]}, trio {version('trio')}, anyio {version('anyio')}, "
          f"{commssl.openssl_version()['loaded']}; median of {args.runs} interleaved runs")
    print()
    print(f"| stack | handshakes/s ({args.connections} connections, {args.concurrency} at a time) "
          f"| echo MB/s ({args.concurrency} connections x {size // 1024} KiB) |")
    print("|---|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m['hs']:.0f} | {m['echo']:.1f} |")
    pairs = (("commssl.anyio on trio", "trio.SSLStream"), ("commssl.anyio on asyncio", "asyncio ssl"))
    for ours, theirs in pairs:
        a, b = med[ours], med[theirs]
        print(f"| {ours} / {theirs} | {a['hs'] / b['hs']:.2f}x | {a['echo'] / b['echo']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
