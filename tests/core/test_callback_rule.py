"""One rule for every callback kind (``commssl._core.callbacks``): an exception raised in
any callback aborts what OpenSSL was doing and comes out of the call that drove it,
blocking or async, from any thread. Checked for every kind (``callback_kinds``) crossed
with every runtime that can drive it and three exceptions: the very same object comes
out of that call, the connection is not left usable, the peer sees the failure, and no
certificate is left outstanding.

Peers: ``openssl s_server`` for a commssl client, ``openssl s_client`` for a commssl
server, one command line each for every kind (a client certificate when asked, ALPN,
an OCSP status request)."""

from __future__ import annotations

import asyncio
import re
import socket
from concurrent.futures import Future
from typing import Any, Callable, Dict, List

import pytest

anyio = pytest.importorskip("anyio")
pytest.importorskip("trio")

import commssl  # noqa: E402
import commssl.anyio as tls_anyio  # noqa: E402
from callback_kinds import HANDSHAKE_KINDS, LOAD_KINDS, Caught, Kind, Setup  # noqa: E402
from helpers import QUICK_HS, connect_localhost, run  # noqa: E402
from peers import HOST, PKI, in_thread, openssl_client, openssl_server  # noqa: E402

BOUND = QUICK_HS * 2  # every wait of this file: only a hang runs into it


class Boom(Exception):
    pass


EXCEPTIONS: Dict[str, Callable[[], BaseException]] = {
    "Boom": lambda: Boom("from the callback"),
    "KeyboardInterrupt": KeyboardInterrupt,
    "SSLFailure": lambda: commssl.SSLFailure("the callback's own"),
}


def _caught(call: Callable[[], Any]) -> Caught:
    """What ``call`` raised (None: nothing); a result is closed."""
    try:
        result = call()
    except BaseException as exc:  # noqa: BLE001 - what the test asserts on
        return exc
    if hasattr(result, "close"):
        result.close()
    return None


async def _caught_async(call: Callable[[], Any]) -> Caught:
    try:
        result = await call()
    except BaseException as exc:  # noqa: BLE001 - what the test asserts on
        return exc
    await (result.aclose() if hasattr(result, "aclose") else result.close())
    return None


def _not_usable(setup: Setup, stream: Any) -> None:
    """The stream an attach failed on: reads and writes raise ValueError (nothing in clear);
    or, for a kind that runs before anything is attached, still plain."""
    if not setup.attaches:
        assert commssl.socket_stream_ssl(stream) is None
        return
    for io in (lambda: stream.write(b"in clear?\n"), lambda: stream.read(1)):
        with pytest.raises(ValueError):
            io()


# -- runtimes: each runs one handshake and returns what the call that drove it raised ----
# commssl as the client: ``drive(setup, port)`` against the peer's port.


def client_blocking(setup: Setup, port: int) -> Caught:
    return _caught(lambda: connect_localhost(port, setup.ctx, wait=QUICK_HS, **setup.kw))


def client_attach(setup: Setup, port: int) -> Caught:
    stream = commssl.SocketStream(socket.create_connection((HOST, port), timeout=QUICK_HS))
    with stream:
        caught = _caught(lambda: commssl.attach_ssl(stream, ssl_ctx=setup.ctx, ssl_side="client",
                                                    tlsext_host_name="localhost",
                                                    handshake_timeout=QUICK_HS, **setup.kw))
        _not_usable(setup, stream)
    return caught


def client_asyncio(setup: Setup, port: int) -> Caught:
    return run(_caught_async(lambda: commssl.open_tcp_stream_async(
        HOST, port, ssl_ctx=setup.ctx, tlsext_host_name="localhost", handshake_timeout=QUICK_HS,
        **setup.kw)), BOUND)


def client_asyncio_attach(setup: Setup, port: int) -> Caught:
    async def main() -> Caught:
        stream = await commssl.open_tcp_stream_async(HOST, port, ssl_ctx=None)
        try:
            return await _caught_async(lambda: commssl.attach_ssl_async(
                stream, ssl_ctx=setup.ctx, ssl_side="client", tlsext_host_name="localhost",
                handshake_timeout=QUICK_HS, **setup.kw))
        finally:
            if setup.attaches:  # failed, its socket closed
                with pytest.raises((ValueError, commssl.SSLCondition, ConnectionError)):
                    stream.write(b"in clear?\n")
                    await stream.drain()
            else:
                assert stream.ssl is None
            await stream.close()
    return run(main(), BOUND)


def client_anyio(backend: str) -> Callable[[Setup, int], Caught]:
    def drive(setup: Setup, port: int) -> Caught:
        async def main() -> Caught:
            with anyio.fail_after(BOUND):
                return await _caught_async(lambda: tls_anyio.connect(
                    HOST, port, ssl_ctx=setup.ctx, tlsext_host_name="localhost",
                    handshake_timeout=QUICK_HS, **setup.kw))
        return anyio.run(main, backend=backend)
    return drive


# commssl as the server: ``drive(setup, start_peer)``, ``start_peer(port)`` once listening.


def server_blocking(setup: Setup, start_peer: Callable[[int], None]) -> Caught:
    with socket.create_server((HOST, 0)) as lsock:
        lsock.settimeout(BOUND)
        start_peer(lsock.getsockname()[1])
        sock, _ = lsock.accept()
    return _caught(lambda: commssl.create_ssl_socket_stream(sock, setup.ctx, handshake_timeout=QUICK_HS,
                                                            **setup.kw))


def server_attach(setup: Setup, start_peer: Callable[[int], None]) -> Caught:
    with socket.create_server((HOST, 0)) as lsock:
        lsock.settimeout(BOUND)
        start_peer(lsock.getsockname()[1])
        sock, _ = lsock.accept()
    with commssl.SocketStream(sock) as stream:
        caught = _caught(lambda: commssl.attach_ssl(stream, ssl_ctx=setup.ctx, ssl_side="server",
                                                    handshake_timeout=QUICK_HS, **setup.kw))
        _not_usable(setup, stream)
    return caught


def server_asyncio_attach(setup: Setup, start_peer: Callable[[int], None]) -> Caught:
    async def main() -> Caught:
        done: "asyncio.Future[Caught]" = asyncio.get_running_loop().create_future()

        async def handler(stream: Any) -> None:
            done.set_result(await _caught_async(lambda: commssl.attach_ssl_async(
                stream, ssl_ctx=setup.ctx, ssl_side="server", handshake_timeout=QUICK_HS, **setup.kw)))

        server = await commssl.start_ssl_server(handler, HOST, 0, ssl_ctx=None)
        try:
            start_peer(server.sockets[0].getsockname()[1])
            return await done
        finally:
            server.close()
            await server.wait_closed()
    return run(main(), BOUND)


def server_anyio(backend: str) -> Callable[[Setup, Callable[[int], None]], Caught]:
    def drive(setup: Setup, start_peer: Callable[[int], None]) -> Caught:
        async def main() -> Caught:
            with anyio.fail_after(BOUND):
                listener = await anyio.create_tcp_listener(local_host=HOST)
                async with listener:
                    start_peer(listener.extra(anyio.abc.SocketAttribute.local_port))
                    tcp = await listener.listeners[0].accept()
                    caught = await _caught_async(lambda: tls_anyio.wrap(
                        tcp, ssl_ctx=setup.ctx, ssl_side="server", handshake_timeout=QUICK_HS, **setup.kw))
                    if caught is not None and setup.attaches:  # wrap closed the byte stream
                        with pytest.raises(anyio.ClosedResourceError):
                            await tcp.send(b"in clear?\n")
                    await anyio.aclose_forcefully(tcp)  # else it is still ours
                    return caught
        return anyio.run(main, backend=backend)
    return drive


def in_a_thread(drive: Callable[..., Caught]) -> Callable[..., Caught]:
    """The blocking runtime from a worker thread: the exception comes out there."""
    return lambda *args: in_thread(drive, *args).result(BOUND)


def load_call(setup: Setup, _: Any = None) -> Caught:
    return _caught(setup.kw["call"])


# Runtimes per side. Not here: start_ssl_server with a context (no call of the caller's
# drives its handshakes: a failure is logged, tests/config/*_abuse.py check that log).
RUNTIMES: Dict[str, Dict[str, Callable[..., Caught]]] = {
    "client": {"blocking": client_blocking, "thread": in_a_thread(client_blocking), "attach": client_attach,
               "asyncio": client_asyncio, "asyncio-attach": client_asyncio_attach,
               "anyio-asyncio": client_anyio("asyncio"), "anyio-trio": client_anyio("trio")},
    "server": {"blocking": server_blocking, "thread": in_a_thread(server_blocking), "attach": server_attach,
               "asyncio-attach": server_asyncio_attach,
               "anyio-asyncio": server_anyio("asyncio"), "anyio-trio": server_anyio("trio")},
    # a pass phrase is asked for by a load call, which no event loop drives
    "load": {"call": load_call, "thread": in_a_thread(load_call)},
}

CASES = [pytest.param(kind, runtime, exc, id=f"{kind.name}-{kind.side}-{runtime}-{exc}")
         for kind in HANDSHAKE_KINDS + LOAD_KINDS for runtime in RUNTIMES[kind.side] for exc in EXCEPTIONS]


def _from_the_callback(exc: BaseException) -> bool:
    """The exception carries its traceback back to the hook that raised it."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "hook":
            return True
        tb = tb.tb_next
    return False


@pytest.mark.parametrize("kind,runtime,exc_name", CASES)
def test_callback_exception_comes_out_of_the_call_that_drove_it(pki: PKI, kind: Kind, runtime: str,
                                                                exc_name: str) -> None:
    exc = EXCEPTIONS[exc_name]()
    calls: List[int] = []

    def hook() -> None:
        calls.append(1)
        raise exc

    start = commssl.outstanding_certificates()
    setup = kind.install(pki, hook)
    setup.attaches = kind.attaches
    drive = RUNTIMES[kind.side][runtime]
    try:
        if kind.side == "client":
            with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, verify=1) as peer:
                got = drive(setup, peer.port)
                # (a key log's handshake ends on the peer, and s_server says nothing of the close;
                # a configure callback may refuse before connecting: the peer sees nothing)
                if kind.once and kind.attaches:
                    peer.wait_for("CONNECTION FAILURE", BOUND)
        elif kind.side == "server":
            ran: List["Future[Any]"] = []
            got = drive(setup, lambda port: ran.append(in_thread(
                openssl_client, port, cafile=pki.root_cert, cert=pki.client_chain, key=pki.client_key,
                servername="localhost", extra_args=("-alpn", "h2", "-status", "-ign_eof"), timeout=BOUND)))
            out = ran[0].result(BOUND)
            seen = (out.stdout + out.stderr).decode(errors="replace")
            # an alert, an end without close_notify, or a reset
            assert re.search(":error:|errno=", seen.strip().splitlines()[-1]), seen
        else:
            got = drive(setup)
    finally:
        for ctx in setup.made:
            commssl.destroy_ssl_ctx(ctx)
    assert got is exc, got
    assert len(calls) == 1 or not kind.once  # what it was doing was aborted: no second call
    assert _from_the_callback(got)
    assert commssl.outstanding_certificates() == start
    if kind.side == "server":  # the fatal alert OpenSSL made reached the peer (anyio: sent before closing)
        assert re.search(kind.peer_sees, seen), seen
