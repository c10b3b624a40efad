"""commssl.anyio following anyio's conventions: the TLSAttribute extras (checked against
CPython's ssl on the other end), BrokenResourceError from the commssl condition,
standard_compatible, unwrap() and the bounded aclose. anyio's own TLS tests run in
test_anyio_conformance.py."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any, Dict, List

import pytest

anyio = pytest.importorskip("anyio")
pytest.importorskip("trio")

from anyio.streams.tls import TLSAttribute  # noqa: E402

import commssl  # noqa: E402
import commssl.anyio as tls_anyio  # noqa: E402
import peers  # noqa: E402
from helpers import BACKENDS  # noqa: E402
from peers import HOST, PKI  # noqa: E402


def leaf_der(pki: PKI) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pki.server_chain.read_text().split("-----END CERTIFICATE-----")[0]
                                    + "-----END CERTIFICATE-----\n")


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_attributes_are_those_cpython_reports(backend: str, pki: PKI, client_ctx: Any) -> None:
    cctx = client_ctx()
    seen: Dict[str, Any] = {}

    def handler(tls: ssl.SSLSocket) -> None:
        seen["cipher"], seen["version"] = tls.cipher(), tls.version()
        seen["binding"] = tls.get_channel_binding("tls-unique")
        tls.sendall(b"k")  # seen is filled
        tls.recv(1)

    async def main(port: int) -> None:
        async with await tls_anyio.connect(HOST, port, ssl_ctx=cctx, server_hostname="localhost",
                                           standard_compatible=False) as stream:
            assert await stream.receive() == b"k"
            extra = stream.extra
            assert extra(TLSAttribute.cipher) == seen["cipher"]  # (name, version, bits) as CPython's
            assert extra(TLSAttribute.tls_version) == seen["version"] == "TLSv1.3"
            assert extra(TLSAttribute.peer_certificate_binary) == leaf_der(pki)
            assert extra(TLSAttribute.server_side) is False
            assert extra(TLSAttribute.standard_compatible) is False
            assert extra(TLSAttribute.alpn_protocol) is None
            assert extra(anyio.abc.SocketAttribute.remote_port) == port  # the byte stream's too
            # tls-unique: the client's Finished, which the server reports as its peer's
            assert extra(TLSAttribute.channel_binding_tls_unique) == seen["binding"]
            # a TLS 1.3 Finished is as long as the suite's hash
            assert len(seen["binding"]) == (48 if seen["cipher"][0].endswith("SHA384") else 32)
            assert extra(TLSAttribute.shared_ciphers) is None  # a client's, as anyio's
            assert extra(TLSAttribute.ssl_object, "omitted") == "omitted"
            seen["dict"] = extra(TLSAttribute.peer_certificate)
            await stream.send(b"x")

    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        anyio.run(main, server.port, backend=backend)
        # the dict form is what CPython's own client gets for the same certificate
        sock = peers.cpython_tls_client(server.port, cafile=pki.root_cert)
        try:
            expected = sock.getpeercert()
            sock.sendall(b"x")
        finally:
            sock.close()
    assert seen["dict"] == expected and seen["dict"]["subjectAltName"]


#: What the CPython client offers for TLS 1.2 (its TLS 1.3 suites are offered too).
OFFER = "ECDHE+AESGCM:ECDHE+CHACHA20"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_server_extras_are_those_cpython_reports(backend: str, version: ssl.TLSVersion, pki: PKI,
                                                 server_ctx: Any) -> None:
    """A CPython client connects twice (a full handshake, then a resumption) to a commssl
    server and to a CPython server: the commssl server's extras are what the client
    reports of the same connection, and its shared_ciphers what the CPython server
    reports of the same offer."""
    sctx = server_ctx()
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(pki.root_cert)
    cctx.set_ciphers(OFFER)
    cctx.maximum_version = version

    def client(port: int) -> List[Dict[str, Any]]:
        seen: List[Dict[str, Any]] = []
        for _ in range(2):
            session = seen[0]["session"] if seen else None
            with socket.create_connection((HOST, port), timeout=10) as raw, \
                    cctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                assert tls.recv(1) == b"k"  # a TLS 1.3 ticket came before it: tls.session resumes
                seen.append({"binding": tls.get_channel_binding("tls-unique"), "cipher": tls.cipher(),
                             "version": tls.version(), "reused": tls.session_reused,
                             "session": tls.session})
                tls.sendall(b"x")
        return seen

    served: List[Dict[Any, Any]] = []

    async def main() -> List[Dict[str, Any]]:
        async with await anyio.create_tcp_listener(local_host=HOST) as listener:

            async def serve_two() -> None:
                for _ in range(2):
                    raw = await listener.listeners[0].accept()
                    async with await tls_anyio.wrap(raw, ssl_ctx=sctx, ssl_side="server",
                                                    standard_compatible=False) as s:  # no close_notify
                        await s.send(b"k")
                        served.append({a: s.extra(a) for a in (
                            TLSAttribute.channel_binding_tls_unique, TLSAttribute.cipher,
                            TLSAttribute.shared_ciphers, TLSAttribute.tls_version)})
                        assert await s.receive() == b"x"

            async with anyio.create_task_group() as tg:
                tg.start_soon(serve_two)
                return await anyio.to_thread.run_sync(
                    client, listener.extra(anyio.abc.SocketAttribute.local_port))

    seen = anyio.run(main, backend=backend)
    assert [c["reused"] for c in seen] == [False, True]
    for ours, theirs in zip(served, seen):
        # tls-unique is the first Finished: the client's in the full handshake, the server's
        # (this side's own) in the resumption; both ends report the same bytes
        assert ours[TLSAttribute.channel_binding_tls_unique] == theirs["binding"]
        assert ours[TLSAttribute.cipher] == theirs["cipher"]  # (name, version, bits) as CPython's
        assert ours[TLSAttribute.tls_version] == theirs["version"]
    bindings = [s[TLSAttribute.channel_binding_tls_unique] for s in served]
    assert bindings[0] != bindings[1]

    cpython_shared: List[Any] = []

    def handler(tls: ssl.SSLSocket) -> None:
        cpython_shared.append(tls.shared_ciphers())
        tls.sendall(b"k")
        tls.recv(1)

    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        assert [c["reused"] for c in client(server.port)] == [False, True]
    # both servers have every suite offered, in orders of their own: the same sets; and, as
    # CPython's, None in a TLS 1.2 resumption (OpenSSL keeps no client list then)
    ours_shared = [s[TLSAttribute.shared_ciphers] for s in served]
    assert [s is None for s in ours_shared] == [s is None for s in cpython_shared] == \
        [False, version == ssl.TLSVersion.TLSv1_2]
    # a client capped at TLS 1.2 offers no TLS 1.3 suite
    offered = {(c["name"], c["protocol"], c["strength_bits"]) for c in cctx.get_ciphers()
               if version == ssl.TLSVersion.TLSv1_3 or c["protocol"] != "TLSv1.3"}
    for ours_list, theirs_list in zip(ours_shared, cpython_shared):
        if ours_list is not None:
            assert set(ours_list) == set(theirs_list) == offered and len(ours_list) == len(offered) > 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_server_side_attributes_and_no_client_certificate(backend: str, server_ctx: Any,
                                                          client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()
    commssl.set_alpn_protocols(sctx, ["h2", "http/1.1"])
    commssl.set_alpn_protocols(cctx, ["http/1.1"])
    seen: List[Any] = []

    async def main() -> None:
        a, b = anyio.create_memory_object_stream[bytes](4)
        c, d = anyio.create_memory_object_stream[bytes](4)
        server_side = anyio.streams.stapled.StapledObjectStream(a, d)  # an ObjectStream[bytes]
        client_side = anyio.streams.stapled.StapledObjectStream(c, b)

        async def serve() -> None:
            async with await tls_anyio.wrap(server_side, ssl_ctx=sctx, ssl_side="server") as s:
                seen.extend([s.extra(TLSAttribute.server_side), s.extra(TLSAttribute.peer_certificate),
                             s.extra(TLSAttribute.peer_certificate_binary),
                             s.extra(TLSAttribute.alpn_protocol),
                             commssl.ssl_connection_protocol_version(s)])  # ssl_connection_* take it
                await s.send(await s.receive())

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            async with await tls_anyio.wrap(client_side, ssl_ctx=cctx, ssl_side="client",
                                            server_hostname="localhost") as s:
                await s.send(b"ping")
                assert await s.receive() == b"ping"

    anyio.run(main, backend=backend)
    assert seen == [True, None, None, "http/1.1", "tls-v1-3"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_missing_close_notify_is_broken_resource_or_end_of_stream(backend: str, pki: PKI,
                                                                    client_ctx: Any) -> None:
    cctx = client_ctx()

    def handler(tls: ssl.SSLSocket) -> None:
        tls.sendall(b"partial")  # then the socket closes without close_notify

    async def main(port: int) -> None:
        stream = await tls_anyio.connect(HOST, port, ssl_ctx=cctx, server_hostname="localhost")
        assert await stream.receive() == b"partial"
        with pytest.raises(anyio.BrokenResourceError) as info:
            await stream.receive()
        assert type(info.value.__cause__) is commssl.SSLError  # the commssl condition, reachable
        with pytest.raises(anyio.BrokenResourceError):
            await stream.send(b"late")
        await stream.aclose()  # reported already: closing is quiet

        stream = await tls_anyio.connect(HOST, port, ssl_ctx=cctx, server_hostname="localhost",
                                         standard_compatible=False)
        assert await stream.receive() == b"partial"
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await stream.aclose()

        stream = await tls_anyio.connect(HOST, port, ssl_ctx=cctx, server_hostname="localhost")
        assert await stream.receive() == b"partial"
        with anyio.fail_after(5):  # unwrap sees the end without close_notify: no wait
            with pytest.raises(anyio.BrokenResourceError) as info:
                await stream.unwrap()
        assert type(info.value.__cause__) is commssl.SSLError
        with pytest.raises(anyio.ClosedResourceError):
            await stream.transport_stream.send(b"x")  # a failed unwrap closes the byte stream

    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        anyio.run(main, server.port, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unwrap_keeps_data_before_and_after_the_peers_close_notify(backend: str, pki: PKI,
                                                                   client_ctx: Any) -> None:
    cctx = client_ctx()

    def handler(tls: ssl.SSLSocket) -> None:
        tls.sendall(b"encrypted")
        plain = tls.unwrap()  # waits for our close_notify
        plain.sendall(b"clear")
        assert plain.recv(4) == b"ping"
        plain.sendall(b"pong")

    async def main(port: int) -> None:
        stream = await tls_anyio.connect(HOST, port, ssl_ctx=cctx, server_hostname="localhost")
        byte_stream, data = await stream.unwrap()  # "encrypted" was never received: it is kept
        assert byte_stream is stream.transport_stream and stream.ssl is None
        while len(data) < len(b"encryptedclear"):
            data += await byte_stream.receive()
        assert data == b"encryptedclear"
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()
        await stream.aclose()  # after unwrap: the byte stream is the caller's
        await byte_stream.send(b"ping")
        assert await byte_stream.receive() == b"pong"
        await byte_stream.aclose()

    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        anyio.run(main, server.port, backend=backend)
    assert server.errors == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_aclose_waits_for_the_peers_close_notify_within_close_timeout(backend: str, pki: PKI,
                                                                      client_ctx: Any) -> None:
    cctx = client_ctx()

    def handler(tls: ssl.SSLSocket) -> None:
        time.sleep(1.5)  # never reads, never sends close_notify

    async def main(port: int) -> float:
        stream = await tls_anyio.connect(HOST, port, ssl_ctx=cctx, server_hostname="localhost",
                                         close_timeout=0.3)
        start = time.monotonic()
        await stream.aclose()  # no answer within 0.3 s: closed quietly
        assert stream.ssl is None
        return time.monotonic() - start

    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        took = anyio.run(main, server.port, backend=backend)
    assert 0.25 < took < 1.2  # it waited, and no longer than close_timeout


def test_new_arguments_are_checked(server_ctx: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="standard_compatible"):
            await tls_anyio.connect(HOST, 1, ssl_ctx=True, standard_compatible=1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="close_timeout"):
            await tls_anyio.connect(HOST, 1, ssl_ctx=True, close_timeout=-1)
        a, b = anyio.create_memory_object_stream[bytes](1)
        with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
            stream = tls_anyio.TLSStream(anyio.streams.stapled.StapledObjectStream(a, b), "client")
            await stream.receive(0)
        a.close()
        b.close()

    anyio.run(main, backend="asyncio")


@pytest.mark.parametrize("backend", BACKENDS)
def test_handshake_errors_peer_leaving_and_protocol_failure(backend: str, client_ctx: Any) -> None:
    cctx = client_ctx()

    async def main(reset_port: int, plain_port: int) -> None:
        # a peer that leaves mid-handshake: anyio's BrokenResourceError, the SSLError its cause
        with pytest.raises(anyio.BrokenResourceError) as info:
            await tls_anyio.connect(HOST, reset_port, ssl_ctx=cctx, server_hostname="localhost")
        assert type(info.value.__cause__) is commssl.SSLError
        # a protocol failure is the commssl condition itself (anyio raises ssl.SSLError)
        with pytest.raises(commssl.SSLFailure):
            await tls_anyio.connect(HOST, plain_port, ssl_ctx=cctx, server_hostname="localhost")

    with peers.reset_server() as reset, peers.plaintext_server() as plain:
        anyio.run(main, reset.port, plain.port, backend=backend)
