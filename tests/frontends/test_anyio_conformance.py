"""anyio's own TLS tests, run through a thin shim over ``commssl.anyio.wrap``.

Vendored from anyio's ``tests/streams/test_tls.py`` (https://github.com/agronholm/anyio,
commit 660a06d548ca72759e9d89ed722dd1ad5227afe4 of August 2026; the installed anyio 4.16.0
ships no tests), under anyio's licence (below). Everything from ``class TestTLSStream`` on is anyio's text, with these
changes, each marked ``ADAPTED``:

- ``test_extra_attributes`` (both): ``ssl_object`` is asserted omitted instead of present.
  Deliberate difference, in docs/guide/async.md, "Differences from anyio's TLSStream":
  "``ssl_object`` is omitted".
- not vendored: ``test_default_context_ignore_unexpected_eof_flag_off`` (it mocks anyio's
  ``_call_sslobject_method`` and checks the ``ssl.SSLContext`` anyio makes when given none:
  ``commssl.anyio.wrap`` takes a commssl context, docs/guide/async.md: "``wrap`` takes
  ``ssl_ctx`` (a commssl context), not an ``ssl.SSLContext``") and ``test_truststore_ssl``
  (a ``truststore.SSLContext``, which no shim can turn into a commssl context; the same line).

The shim (this header): ``TLSStream.wrap`` with anyio's signature, making a commssl context
from the ``ssl.SSLContext`` the tests configure: its trusted CAs (``get_ca_certs``), its
``verify_mode``, ``maximum_version``, and the certificate chain and ALPN protocols recorded
as the tests set them (``trustme``'s ``configure_cert`` and ``set_alpn_protocols``). It also
stands in for ``anyio.streams.tls.TLSStream``, so anyio's ``TLSListener`` and
``TLSConnectable`` run over commssl. The peers in threads are CPython's ``ssl``.

anyio's licence:

The MIT License (MIT)

Copyright (c) 2018 Alex Grönholm

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of
the Software, and to permit persons to whom the Software is furnished to do so,
subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS
FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""
# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import socket
import ssl
from contextlib import AbstractContextManager, ExitStack
from threading import Thread
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Tuple

import pytest

anyio_mod = pytest.importorskip("anyio")
pytest.importorskip("trio")
trustme = pytest.importorskip("trustme")
from trustme import CA

import anyio.streams.tls
from anyio import (
    BrokenResourceError,
    EndOfStream,
    Event,
    TypedAttributeLookupError,
    connect_tcp,
    create_memory_object_stream,
    create_task_group,
    create_tcp_listener,
    to_thread,
)
from anyio.abc import (
    AnyByteStream,
    ObjectStream,
    ObjectStreamConnectable,
    SocketAttribute,
    SocketStream,
)
from anyio.streams.stapled import StapledObjectStream
from anyio.streams.tls import TLSAttribute, TLSConnectable, TLSListener

import commssl
import commssl.anyio
from commssl import lib

pytestmark = pytest.mark.anyio

#: What commssl.anyio.TLSStream omits of anyio's TLSAttribute (docs/guide/async.md).
OMITTED = (TLSAttribute.ssl_object,)


def assert_omitted(stream: Any) -> None:
    for attribute in OMITTED:
        with pytest.raises(TypedAttributeLookupError):
            stream.extra(attribute)


# -- the shim ------------------------------------------------------------------------------

_chains: Dict[int, Tuple[ssl.SSLContext, bytes]] = {}
_alpn: Dict[int, Tuple[ssl.SSLContext, List[str]]] = {}
_made: List[commssl.SSLCtxPointer] = []


def _commssl_context(context: ssl.SSLContext, server_side: bool) -> commssl.SSLCtxPointer:
    ctx = commssl.make_ssl_ctx(True, "server" if server_side else "client")
    _made.append(ctx)
    chain = _chains.get(id(context))
    if chain is not None:
        commssl.ssl_ctx_use_certificate_chain(ctx, chain[1])
        commssl.ssl_ctx_use_privatekey(ctx, chain[1])
    for der in context.get_ca_certs(binary_form=True):
        commssl.ssl_ctx_load_verify_locations(ctx, cadata=der)
    if server_side and context.verify_mode == ssl.CERT_REQUIRED:
        commssl.set_verification_mode(ctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    alpn = _alpn.get(id(context))
    if alpn is not None:
        commssl.set_alpn_protocols(ctx, alpn[1])
    if context.maximum_version != ssl.TLSVersion.MAXIMUM_SUPPORTED:
        cdata = ctx._pin()
        try:
            assert lib.SSL_CTX_set_max_proto_version(cdata, int(context.maximum_version)) == 1
        finally:
            ctx._unpin()
    return ctx


class TLSStream:
    """anyio's ``TLSStream.wrap`` over ``commssl.anyio.wrap``."""

    @classmethod
    async def wrap(cls, transport_stream: AnyByteStream, *, server_side: Optional[bool] = None,
                   hostname: Optional[str] = None, ssl_context: Optional[ssl.SSLContext] = None,
                   standard_compatible: bool = True) -> commssl.anyio.TLSStream:
        if server_side is None:
            server_side = not hostname
        assert ssl_context is not None, "the vendored tests always pass a context"
        ctx = _commssl_context(ssl_context, server_side)
        return await commssl.anyio.wrap(
            transport_stream, ssl_ctx=ctx, ssl_side="server" if server_side else "client",
            server_hostname=None if server_side else hostname, standard_compatible=standard_compatible)


@pytest.fixture(autouse=True)
def commssl_shim(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    configure_cert = trustme.LeafCert.configure_cert
    set_alpn_protocols = ssl.SSLContext.set_alpn_protocols

    def recording_configure_cert(self: Any, ctx: ssl.SSLContext) -> None:
        _chains[id(ctx)] = (ctx, self.private_key_and_cert_chain_pem.bytes())
        configure_cert(self, ctx)

    def recording_set_alpn_protocols(self: ssl.SSLContext, protocols: Any) -> None:
        _alpn[id(self)] = (self, list(protocols))
        set_alpn_protocols(self, protocols)

    monkeypatch.setattr(trustme.LeafCert, "configure_cert", recording_configure_cert)
    monkeypatch.setattr(ssl.SSLContext, "set_alpn_protocols", recording_set_alpn_protocols)
    monkeypatch.setattr(anyio.streams.tls, "TLSStream", TLSStream)  # TLSListener, TLSConnectable
    yield
    _chains.clear()
    _alpn.clear()
    for ctx in _made:
        commssl.destroy_ssl_ctx(ctx)
    _made.clear()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# anyio's conftest fixtures (a trustme CA, CPython contexts for the peers and the shim)


@pytest.fixture
def ca() -> CA:
    return CA()


@pytest.fixture
def server_context(ca: CA) -> ssl.SSLContext:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
        server_context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    ca.issue_cert("localhost").configure_cert(server_context)
    return server_context


@pytest.fixture
def client_context(ca: CA) -> ssl.SSLContext:
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
        client_context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    ca.configure_trust(client_context)
    return client_context


# -- anyio's tests (tests/streams/test_tls.py) ----------------------------------------------


class TestTLSStream:
    async def test_send_receive(
        self, server_context: ssl.SSLContext, client_context: ssl.SSLContext
    ) -> None:
        def serve_sync() -> None:
            conn, _addr = server_sock.accept()
            data = conn.recv(10)
            conn.send(data[::-1])
            conn.close()

        server_sock = server_context.wrap_socket(
            socket.socket(), server_side=True, suppress_ragged_eofs=False
        )
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        server_thread = Thread(target=serve_sync)
        server_thread.start()

        async with await connect_tcp(*server_sock.getsockname()) as stream:
            wrapper = await TLSStream.wrap(
                stream, hostname="localhost", ssl_context=client_context
            )
            await wrapper.send(b"hello")
            response = await wrapper.receive()

        server_thread.join()
        server_sock.close()
        assert response == b"olleh"

    async def test_unicode_hostname_idna2008(
        self, ca: CA, client_context: ssl.SSLContext
    ) -> None:
        """
        Test that a unicode host name is encoded to ASCII using IDNA 2008 rather
        than the standard library's IDNA 2003 before being matched against the
        peer certificate.

        """
        # "faß.de" encodes to "xn--fa-hia.de" under IDNA 2008, but to the
        # entirely different (and wrong) "fass.de" under IDNA 2003
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
            server_context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF

        ca.issue_cert("xn--fa-hia.de").configure_cert(server_context)

        server_send, server_receive = create_memory_object_stream[bytes](1)
        client_send, client_receive = create_memory_object_stream[bytes](1)
        client_stream = StapledObjectStream(client_send, server_receive)
        server_stream = StapledObjectStream(server_send, client_receive)

        async def serve() -> None:
            async with await TLSStream.wrap(
                server_stream, server_side=True, ssl_context=server_context
            ) as tls_stream:
                data = await tls_stream.receive()
                await tls_stream.send(data[::-1])

        async with create_task_group() as tg:
            tg.start_soon(serve)
            # This would raise an SSLCertVerificationError if the host name were
            # encoded using IDNA 2003 (yielding "fass.de")
            async with await TLSStream.wrap(
                client_stream, hostname="faß.de", ssl_context=client_context
            ) as wrapper:
                await wrapper.send(b"hello")
                response = await wrapper.receive()

        assert response == b"olleh"

    @pytest.mark.parametrize("max_bytes", [0, -1])
    async def test_receive_invalid_max_bytes(
        self,
        server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
        max_bytes: int,
    ) -> None:
        server_send, server_receive = create_memory_object_stream[bytes](1)
        client_send, client_receive = create_memory_object_stream[bytes](1)
        client_stream = StapledObjectStream(client_send, server_receive)
        server_stream = StapledObjectStream(server_send, client_receive)

        async def server() -> None:
            async with await TLSStream.wrap(
                server_stream,
                server_side=True,
                hostname="localhost",
                ssl_context=server_context,
            ):
                pass

        async with create_task_group() as tg:
            tg.start_soon(server)
            async with await TLSStream.wrap(
                client_stream, hostname="localhost", ssl_context=client_context
            ) as client_tls_stream:
                with pytest.raises(
                    ValueError, match="max_bytes must be a positive integer"
                ):
                    await client_tls_stream.receive(max_bytes)

    async def test_extra_attributes(
        self,
        request: pytest.FixtureRequest,
        server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
    ) -> None:
        def serve_sync() -> None:
            conn, _addr = server_sock.accept()
            with conn:
                conn.unwrap()

        server_context.set_alpn_protocols(["h2"])
        client_context.set_alpn_protocols(["h2"])

        server_sock = server_context.wrap_socket(
            socket.socket(), server_side=True, suppress_ragged_eofs=False
        )
        request.addfinalizer(server_sock.close)
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        server_thread = Thread(target=serve_sync)
        server_thread.start()
        request.addfinalizer(server_thread.join)

        async with await connect_tcp(*server_sock.getsockname()) as stream:
            wrapper = await TLSStream.wrap(
                stream,
                hostname="localhost",
                ssl_context=client_context,
            )
            async with wrapper:
                for name, attribute in SocketAttribute.__dict__.items():
                    if not name.startswith("_"):
                        assert wrapper.extra(attribute) == stream.extra(attribute)

                assert wrapper.extra(TLSAttribute.alpn_protocol) == "h2"
                assert isinstance(
                    wrapper.extra(TLSAttribute.channel_binding_tls_unique), bytes
                )
                assert isinstance(wrapper.extra(TLSAttribute.cipher), tuple)
                assert isinstance(wrapper.extra(TLSAttribute.peer_certificate), dict)
                assert isinstance(
                    wrapper.extra(TLSAttribute.peer_certificate_binary), bytes
                )
                assert wrapper.extra(TLSAttribute.server_side) is False
                assert wrapper.extra(TLSAttribute.shared_ciphers) is None
                assert_omitted(wrapper)  # ADAPTED: ssl_object is omitted
                assert wrapper.extra(TLSAttribute.standard_compatible) is True
                assert wrapper.extra(TLSAttribute.tls_version).startswith("TLSv")

    async def test_unwrap(
        self, server_context: ssl.SSLContext, client_context: ssl.SSLContext
    ) -> None:
        def serve_sync() -> None:
            conn, _addr = server_sock.accept()
            conn.send(b"encrypted")
            unencrypted = conn.unwrap()
            unencrypted.send(b"unencrypted")
            unencrypted.close()

        server_sock = server_context.wrap_socket(
            socket.socket(), server_side=True, suppress_ragged_eofs=False
        )
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        server_thread = Thread(target=serve_sync)
        server_thread.start()

        async with await connect_tcp(*server_sock.getsockname()) as stream:
            wrapper = await TLSStream.wrap(
                stream, hostname="localhost", ssl_context=client_context
            )
            msg1 = await wrapper.receive()
            unwrapped_stream, msg2 = await wrapper.unwrap()
            if msg2 != b"unencrypted":
                msg2 += await unwrapped_stream.receive()

        server_thread.join()
        server_sock.close()
        assert msg1 == b"encrypted"
        assert msg2 == b"unencrypted"

    @pytest.mark.skipif(not ssl.HAS_ALPN, reason="ALPN support not available")
    async def test_alpn_negotiation(
        self, server_context: ssl.SSLContext, client_context: ssl.SSLContext
    ) -> None:
        def serve_sync() -> None:
            conn, _addr = server_sock.accept()
            selected_alpn_protocol = conn.selected_alpn_protocol()
            assert selected_alpn_protocol is not None
            conn.send(selected_alpn_protocol.encode())
            conn.close()

        server_context.set_alpn_protocols(["dummy1", "dummy2"])
        client_context.set_alpn_protocols(["dummy2", "dummy3"])

        server_sock = server_context.wrap_socket(
            socket.socket(), server_side=True, suppress_ragged_eofs=False
        )
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        server_thread = Thread(target=serve_sync)
        server_thread.start()

        async with await connect_tcp(*server_sock.getsockname()) as stream:
            wrapper = await TLSStream.wrap(
                stream, hostname="localhost", ssl_context=client_context
            )
            assert wrapper.extra(TLSAttribute.alpn_protocol) == "dummy2"
            server_alpn_protocol = await wrapper.receive()

        server_thread.join()
        server_sock.close()
        assert server_alpn_protocol == b"dummy2"

    @pytest.mark.parametrize(
        "server_compatible, client_compatible",
        [
            pytest.param(True, True, id="both_standard"),
            pytest.param(True, False, id="server_standard"),
            pytest.param(False, True, id="client_standard"),
            pytest.param(False, False, id="neither_standard"),
        ],
    )
    async def test_ragged_eofs(
        self,
        server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
        server_compatible: bool,
        client_compatible: bool,
    ) -> None:
        server_exc = None

        def serve_sync() -> None:
            nonlocal server_exc
            conn, _addr = server_sock.accept()
            try:
                conn.sendall(b"hello")
                if server_compatible:
                    conn.unwrap()
            except BaseException as exc:
                server_exc = exc
            finally:
                conn.close()

        client_cm: AbstractContextManager = ExitStack()
        if client_compatible and not server_compatible:
            client_cm = pytest.raises(BrokenResourceError)

        server_sock = server_context.wrap_socket(
            socket.socket(),
            server_side=True,
            suppress_ragged_eofs=not server_compatible,
        )
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        server_thread = Thread(target=serve_sync, daemon=True)
        server_thread.start()

        async with await connect_tcp(*server_sock.getsockname()) as stream:
            wrapper = await TLSStream.wrap(
                stream,
                hostname="localhost",
                ssl_context=client_context,
                standard_compatible=client_compatible,
            )
            with client_cm:
                assert await wrapper.receive() == b"hello"
                await wrapper.aclose()

        server_thread.join()
        server_sock.close()
        if not client_compatible and server_compatible:
            assert isinstance(server_exc, OSError)
            assert not isinstance(server_exc, socket.timeout)
        else:
            assert server_exc is None

    async def test_ragged_eof_on_receive(
        self, server_context: ssl.SSLContext, client_context: ssl.SSLContext
    ) -> None:
        server_exc = None

        def serve_sync() -> None:
            nonlocal server_exc
            conn, _addr = server_sock.accept()
            try:
                conn.sendall(b"hello")
            except BaseException as exc:
                server_exc = exc
            finally:
                conn.close()

        server_sock = server_context.wrap_socket(
            socket.socket(), server_side=True, suppress_ragged_eofs=True
        )
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        server_thread = Thread(target=serve_sync, daemon=True)
        server_thread.start()
        try:
            async with await connect_tcp(*server_sock.getsockname()) as stream:
                wrapper = await TLSStream.wrap(
                    stream,
                    hostname="localhost",
                    ssl_context=client_context,
                    standard_compatible=False,
                )
                assert await wrapper.receive() == b"hello"
                with pytest.raises(EndOfStream):
                    await wrapper.receive()
        finally:
            server_thread.join()
            server_sock.close()

        assert server_exc is None

    async def test_receive_send_after_eof(
        self, server_context: ssl.SSLContext, client_context: ssl.SSLContext
    ) -> None:
        def serve_sync() -> None:
            conn, _addr = server_sock.accept()
            conn.sendall(b"hello")
            conn.unwrap()
            conn.close()

        server_sock = server_context.wrap_socket(
            socket.socket(), server_side=True, suppress_ragged_eofs=False
        )
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        server_thread = Thread(target=serve_sync, daemon=True)
        server_thread.start()

        stream = await connect_tcp(*server_sock.getsockname())
        async with await TLSStream.wrap(
            stream, hostname="localhost", ssl_context=client_context
        ) as wrapper:
            assert await wrapper.receive() == b"hello"
            with pytest.raises(EndOfStream):
                await wrapper.receive()

        server_thread.join()
        server_sock.close()

    @pytest.mark.parametrize(
        "force_tlsv12",
        [
            pytest.param(
                False,
                marks=[
                    pytest.mark.skipif(
                        not getattr(ssl, "HAS_TLSv1_3", False),
                        reason="No TLS 1.3 support",
                    )
                ],
            ),
            pytest.param(True),
        ],
        ids=["tlsv13", "tlsv12"],
    )
    async def test_send_eof_not_implemented(
        self, server_context: ssl.SSLContext, ca: CA, force_tlsv12: bool
    ) -> None:
        def serve_sync() -> None:
            conn, _addr = server_sock.accept()
            conn.sendall(b"hello")
            conn.unwrap()
            conn.close()

        client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(client_context)
        if force_tlsv12:
            expected_pattern = r"send_eof\(\) requires at least TLSv1.3"
            client_context.maximum_version = ssl.TLSVersion.TLSv1_2
        else:
            expected_pattern = (
                r"send_eof\(\) has not yet been implemented for TLS streams"
            )

        server_sock = server_context.wrap_socket(
            socket.socket(), server_side=True, suppress_ragged_eofs=False
        )
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        server_thread = Thread(target=serve_sync, daemon=True)
        server_thread.start()

        stream = await connect_tcp(*server_sock.getsockname())
        async with await TLSStream.wrap(
            stream, hostname="localhost", ssl_context=client_context
        ) as wrapper:
            assert await wrapper.receive() == b"hello"
            with pytest.raises(NotImplementedError) as exc:
                await wrapper.send_eof()

            exc.match(expected_pattern)

        server_thread.join()
        server_sock.close()

class TestTLSListener:
    async def test_handshake_fail(
        self, server_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
    ) -> None:
        def handler(stream: object) -> NoReturn:
            pytest.fail("This function should never be called in this scenario")

        exception = None

        class CustomTLSListener(TLSListener):
            @staticmethod
            async def handle_handshake_error(
                exc: BaseException, stream: AnyByteStream
            ) -> None:
                nonlocal exception
                await TLSListener.handle_handshake_error(exc, stream)

                # Regression test for #608
                records = [
                    record
                    for record in caplog.records
                    if record.name == "anyio.streams.tls"
                ]
                assert len(records) == 1
                logged_exc_info = records[0].exc_info
                logged_exc = logged_exc_info[1] if logged_exc_info is not None else None
                assert logged_exc is exc

                assert isinstance(stream, SocketStream)
                exception = exc
                event.set()

        event = Event()
        listener = await create_tcp_listener(local_host="127.0.0.1")
        tls_listener = CustomTLSListener(listener, server_context)
        async with tls_listener, create_task_group() as tg:
            tg.start_soon(tls_listener.serve, handler)
            sock = socket.socket()
            sock.connect(listener.extra(SocketAttribute.local_address))
            sock.close()
            await event.wait()
            tg.cancel_scope.cancel()

        assert isinstance(exception, BrokenResourceError)

    async def test_extra_attributes(
        self, client_context: ssl.SSLContext, server_context: ssl.SSLContext, ca: CA
    ) -> None:
        def connect_sync(addr: tuple[str, int]) -> None:
            with socket.create_connection(addr) as plain_sock:
                with client_context.wrap_socket(
                    plain_sock,
                    server_side=False,
                    server_hostname="localhost",
                    suppress_ragged_eofs=False,
                ) as conn:
                    conn.recv(1)
                    conn.unwrap()

        class CustomTLSListener(TLSListener):
            @staticmethod
            async def handle_handshake_error(
                exc: BaseException, stream: AnyByteStream
            ) -> None:
                await TLSListener.handle_handshake_error(exc, stream)
                pytest.fail("TLS handshake failed")

        async def handler(stream: TLSStream) -> None:
            async with stream:
                try:
                    assert stream.extra(TLSAttribute.alpn_protocol) == "h2"
                    assert isinstance(
                        stream.extra(TLSAttribute.channel_binding_tls_unique), bytes
                    )
                    assert isinstance(stream.extra(TLSAttribute.cipher), tuple)
                    assert isinstance(stream.extra(TLSAttribute.peer_certificate), dict)
                    assert isinstance(
                        stream.extra(TLSAttribute.peer_certificate_binary), bytes
                    )
                    assert stream.extra(TLSAttribute.server_side) is True
                    shared_ciphers = stream.extra(TLSAttribute.shared_ciphers)
                    assert isinstance(shared_ciphers, list)
                    assert len(shared_ciphers) > 1
                    assert_omitted(stream)  # ADAPTED: ssl_object is omitted
                    assert stream.extra(TLSAttribute.standard_compatible) is True
                    assert stream.extra(TLSAttribute.tls_version).startswith("TLSv")
                finally:
                    event.set()
                    await stream.send(b"\x00")

        # Issue a client certificate and make the server trust it
        client_cert = ca.issue_cert("dummy-client")
        client_cert.configure_cert(client_context)
        ca.configure_trust(server_context)
        server_context.verify_mode = ssl.CERT_REQUIRED

        event = Event()
        server_context.set_alpn_protocols(["h2"])
        client_context.set_alpn_protocols(["h2"])
        listener = await create_tcp_listener(local_host="127.0.0.1")
        tls_listener = CustomTLSListener(listener, server_context)
        async with tls_listener, create_task_group() as tg:
            assert tls_listener.extra(TLSAttribute.standard_compatible) is True
            tg.start_soon(tls_listener.serve, handler)
            client_thread = Thread(
                target=connect_sync,
                args=[listener.extra(SocketAttribute.local_address)],
            )
            client_thread.start()
            await event.wait()
            await to_thread.run_sync(client_thread.join)
            tg.cancel_scope.cancel()


async def test_tls_connectable(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    server_send, server_receive = create_memory_object_stream[bytes](1)
    client_send, client_receive = create_memory_object_stream[bytes](1)
    client_stream = StapledObjectStream(client_send, server_receive)
    server_stream = StapledObjectStream(server_send, client_receive)

    async def server() -> None:
        async with await TLSStream.wrap(
            server_stream,
            server_side=True,
            hostname="localhost",
            ssl_context=server_context,
        ) as server_tls_stream:
            message = await server_tls_stream.receive()
            await server_tls_stream.send(b"hello, " + message)

    class MemoryConnectable(ObjectStreamConnectable[bytes]):
        async def connect(self) -> ObjectStream[bytes]:
            return client_stream

    async with create_task_group() as tg:
        tg.start_soon(server)
        connectable = TLSConnectable(
            MemoryConnectable(), ssl_context=client_context, hostname="localhost"
        )
        async with await connectable.connect() as client_tls_stream:
            await client_tls_stream.send(b"world")
            assert await client_tls_stream.receive() == b"hello, world"
