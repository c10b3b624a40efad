"""commssl.anyio: TLSStream over anyio byte streams, on anyio's asyncio and trio backends.

Peers: commssl's blocking server, CPython ``ssl``, ``openssl s_server``, and commssl.anyio
itself. Each test runs ``anyio.run(..., backend=...)`` for both backends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, List

import pytest

anyio = pytest.importorskip("anyio")
pytest.importorskip("trio")

import commssl  # noqa: E402
import commssl.anyio as tls_anyio  # noqa: E402
import peers  # noqa: E402
from helpers import BACKENDS  # noqa: E402
from peers import HOST, PKI  # noqa: E402


async def echo_once(stream: tls_anyio.TLSStream, payload: bytes) -> bytes:
    await stream.send(payload)
    got = b""
    while len(got) < len(payload):
        got += await stream.receive()
    return got


def serve_lines(stream: commssl.SocketStream) -> List[Any]:
    line = stream.readline()
    stream.write(line.upper())
    stream.flush()
    return [commssl.ssl_connection_protocol_version(stream)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_echo_with_commssl_blocking_server(backend: str, pki: PKI, server_ctx: Any, client_ctx: Any,
                                           commssl_server: Any) -> None:
    server = commssl_server(server_ctx(), serve_lines, count=2)
    cctx = client_ctx()
    seen: List[Any] = []

    def verify(conn: Any) -> bool:  # verify_callback(conn): ssl_connection_* take the TLSStream
        seen.append((type(conn).__name__, commssl.ssl_connection_verify(conn)))
        return True

    abstract = commssl.create_ssl_client_context(openssl_trusted_file=str(pki.root_cert),
                                                 verify_callback=verify)

    async def main() -> None:
        stream = await tls_anyio.connect(HOST, server.port, ssl_ctx=cctx, tlsext_host_name="localhost")
        assert isinstance(stream, anyio.abc.ByteStream)
        assert isinstance(stream, commssl.io.connection.Connection)
        assert stream.ssl is commssl.ssl_connection_ssl_ref(stream) and stream.ssl_ctx is cctx
        assert commssl.ssl_connection_verify(stream) == (True, 0)
        assert commssl.ssl_connection_protocol_version(stream) == "tls-v1-3"
        with commssl.peer_certificates(stream) as certs:
            assert commssl.get_certificate_common_name(certs[0]) == "localhost"
        assert await echo_once(stream, b"hello anyio\n") == b"HELLO ANYIO\n"
        with pytest.raises(NotImplementedError):
            await stream.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()
        await stream.aclose()  # again: nothing
        async with await tls_anyio.connect(HOST, server.port, ssl_ctx=abstract,
                                           tlsext_host_name="localhost") as stream:
            assert await echo_once(stream, b"again\n") == b"AGAIN\n"

    anyio.run(main, backend=backend)
    server.join()
    assert server.errors == [] and server.results == [["tls-v1-3"], ["tls-v1-3"]]
    assert seen == [("TLSStream", (True, 0))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_echo_with_cpython_ssl_and_openssl_s_server(backend: str, pki: PKI, client_ctx: Any) -> None:
    cctx = client_ctx()
    payload = os.urandom(300_000)

    async def main(port: int, reverse: bool) -> None:
        # the CPython peer closes without close_notify: standard_compatible=False accepts that
        async with await tls_anyio.connect(HOST, port, ssl_ctx=cctx, tlsext_host_name="localhost",
                                           standard_compatible=reverse) as stream:
            if reverse:
                assert await echo_once(stream, b"abc\n") == b"cba\n"
            else:
                assert await echo_once(stream, payload) == payload

    with peers.cpython_tls_server(pki.server_chain, pki.server_key) as server:
        anyio.run(main, server.port, False, backend=backend)
    assert server.errors == []
    with peers.openssl_server(pki.server_chain, pki.server_key) as s_server:
        anyio.run(main, s_server.port, True, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_anyio_server_and_client_certificates(backend: str, pki: PKI, server_ctx: Any,
                                              client_ctx: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    cctx = client_ctx(chain=pki.client_chain, key=pki.client_key)
    seen: List[Any] = []

    async def handle(tcp: Any) -> None:
        async with await tls_anyio.wrap(tcp, ssl_ctx=sctx, ssl_side="server", handshake_timeout=10) as stream:
            seen.append(commssl.ssl_connection_verify(stream))
            with commssl.peer_certificates(stream) as certs:
                seen.append(commssl.get_certificate_common_name(certs[0]))
            await stream.send(await stream.receive())

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host=HOST)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            async with await tls_anyio.connect(HOST, port, ssl_ctx=cctx, tlsext_host_name="localhost") as s:
                assert await echo_once(s, b"ping") == b"ping"
            tg.cancel_scope.cancel()

    anyio.run(main, backend=backend)
    assert seen == [(True, 0), "commssl client"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_verify_callback_exception_comes_out_of_the_await(backend: str, server_ctx: Any, client_ctx: Any,
                                                          commssl_server: Any) -> None:
    class Pinned(Exception):
        pass

    def pin(ok: bool, store: Any) -> bool:
        raise Pinned("not the pinned key")

    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", pin)

    async def main() -> None:
        with pytest.raises(Pinned, match="pinned key"):
            await tls_anyio.connect(HOST, server.port, ssl_ctx=cctx, tlsext_host_name="localhost")
        commssl.set_verification_mode(cctx, "client", "always", lambda ok, store: False)
        with pytest.raises(commssl.SSLVerificationFailure):
            await tls_anyio.connect(HOST, server.port, ssl_ctx=cctx, tlsext_host_name="localhost")

    server = commssl_server(server_ctx(), serve_lines, count=2)
    anyio.run(main, backend=backend)
    assert commssl.outstanding_certificates() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancellation_mid_handshake_leaves_nothing_outstanding(backend: str, client_ctx: Any) -> None:
    cctx = client_ctx()
    streams: List[Any] = []

    async def main(port: int) -> None:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.2):
                await tls_anyio.connect(HOST, port, ssl_ctx=cctx, tlsext_host_name="localhost")
        with anyio.move_on_after(0.2) as scope:  # a cancel scope (trio's own on trio)
            tcp = await anyio.connect_tcp(HOST, port)
            streams.append(tcp)
            await tls_anyio.wrap(tcp, ssl_ctx=cctx, ssl_side="client", server_hostname="localhost")
        assert scope.cancelled_caught
        with pytest.raises(anyio.ClosedResourceError):  # wrap closed the byte stream
            await tcp.send(b"x")
        with pytest.raises(commssl.SSLHandshakeTimeout):
            await tls_anyio.connect(HOST, port, ssl_ctx=cctx, tlsext_host_name="localhost",
                                    handshake_timeout=0.2)

    with peers.silent_server(hold=3) as server:
        anyio.run(main, server.port, backend=backend)
    assert commssl.outstanding_certificates() == 0


def test_thousand_concurrent_connections_on_trio(server_ctx: Any, client_ctx: Any) -> None:
    count = int(os.environ.get("COMMSSL_ANYIO_CONNECTIONS", "1000"))
    sctx, cctx = server_ctx(), client_ctx()
    errors: List[BaseException] = []
    done: List[int] = []

    async def handle(tcp: Any) -> None:
        try:
            async with await tls_anyio.wrap(tcp, ssl_ctx=sctx, ssl_side="server", handshake_timeout=60) as s:
                await s.send(await s.receive())
        except BaseException as exc:  # counted: the test wants none
            errors.append(exc)

    async def client(port: int, i: int) -> None:
        try:
            async with await tls_anyio.connect(HOST, port, ssl_ctx=cctx, tlsext_host_name="localhost") as s:
                payload = b"%d" % i
                assert await echo_once(s, payload) == payload
                done.append(i)
        except BaseException as exc:
            errors.append(exc)

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host=HOST, backlog=count)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as outer:
            outer.start_soon(listener.serve, handle)
            async with anyio.create_task_group() as clients:
                for i in range(count):
                    clients.start_soon(client, port, i)
            outer.cancel_scope.cancel()

    start = time.monotonic()
    anyio.run(main, backend="trio")
    assert errors == [] and len(done) == count
    assert time.monotonic() - start < 60


def test_bad_arguments(server_ctx: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="byte_stream"):
            await tls_anyio.wrap(object(), ssl_ctx=True, ssl_side="client")  # type: ignore[arg-type]
        class Null(anyio.abc.ByteStream):
            async def receive(self, max_bytes: int = 65536) -> bytes:
                return b""

            async def send(self, item: bytes) -> None:
                pass

            async def send_eof(self) -> None:
                pass

            async def aclose(self) -> None:
                pass

        stapled = Null()
        for bad in ("both", "nope"):
            with pytest.raises(ValueError, match="ssl_side"):
                await tls_anyio.wrap(stapled, ssl_ctx=True, ssl_side=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="handshake_timeout"):
            await tls_anyio.connect(HOST, 1, ssl_ctx=True, handshake_timeout=float("nan"))

    anyio.run(main, backend="asyncio")


def test_commssl_imports_without_the_optional_packages() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('anyio', 'trio', 'httpx', 'httpcore', 'sniffio'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import commssl\n"
        "assert 'anyio' not in sys.modules and 'httpx' not in sys.modules\n"
        "for mod in ('commssl.anyio', 'commssl.httpx'):\n"
        "    try:\n"
        "        __import__(mod)\n"
        "    except ImportError as exc:\n"
        "        print(mod, 'needs', exc)\n"
        "print('ok', commssl.open_tcp_stream_async.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "ok open_tcp_stream_async"
    assert "commssl.anyio needs" in out.stdout and "commssl.httpx needs" in out.stdout
