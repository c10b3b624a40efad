"""commssl.httpx: HTTPTransport (httpx.Client) and AsyncHTTPTransport (httpx.AsyncClient on
asyncio and trio) against a commssl HTTPS server speaking minimal HTTP/1.1 and ``openssl
s_server -www``: GET, keep-alive reuse (accepts counted), pinning callbacks that reject, client
certificates."""

from __future__ import annotations

import socket
import threading
from typing import Any, Callable, List, Optional

import pytest

httpx = pytest.importorskip("httpx")
anyio = pytest.importorskip("anyio")
pytest.importorskip("trio")

import commssl  # noqa: E402
import commssl.httpx as chttpx  # noqa: E402
import peers  # noqa: E402
from commssl._httpx_network import _Options, _readable  # noqa: E402
from peers import PKI  # noqa: E402

MODES = ["sync", "asyncio", "trio"]


class HTTPSServer:
    """A commssl blocking HTTPS server on 127.0.0.1 answering every request of a keep-alive
    connection with 200 and a body naming the client certificate's CN; ``accepts`` counts
    TCP connections."""

    def __init__(self, ssl_ctx: commssl.SSLCtxPointer) -> None:
        self.ctx = ssl_ctx
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.accepts = 0
        self.errors: List[BaseException] = []
        self._stop = threading.Event()
        self.threads: List[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                continue
            self.accepts += 1
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, sock: socket.socket) -> None:
        try:
            with commssl.create_ssl_socket_stream(sock, self.ctx, handshake_timeout=10, timeout=10) as s:
                with commssl.peer_certificates(s) as certs:
                    cn = commssl.get_certificate_common_name(certs[0]) if certs else None
                while True:
                    request = b""
                    while not request.endswith(b"\r\n\r\n"):
                        line = s.readline()
                        if not line:
                            return
                        request += line
                    body = f"hello {request.split()[1].decode()} client={cn}".encode()
                    s.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
                            % (len(body), body))
                    s.flush()
        except BaseException as exc:  # a client the server rejected, say: for the test to look at
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.listener.close()
        for t in self.threads:
            t.join(10)


@pytest.fixture
def https_server(server_ctx: Any) -> Any:
    servers: List[HTTPSServer] = []

    def start(ctx: Optional[commssl.SSLCtxPointer] = None) -> HTTPSServer:
        servers.append(HTTPSServer(ctx or server_ctx()))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def get_all(mode: str, urls: List[str], ssl_ctx: Any, timeout: Any = httpx.USE_CLIENT_DEFAULT,
            **kw: Any) -> List[Any]:
    """GET each URL in turn with one client (sync or async on a backend); ``kw`` go to the transport."""
    if mode == "sync":
        with httpx.Client(transport=chttpx.HTTPTransport(ssl_ctx=ssl_ctx, **kw)) as client:
            return [client.get(url, timeout=timeout) for url in urls]

    async def main() -> List[Any]:
        async with httpx.AsyncClient(transport=chttpx.AsyncHTTPTransport(ssl_ctx=ssl_ctx, **kw)) as client:
            return [await client.get(url, timeout=timeout) for url in urls]

    return anyio.run(main, backend=mode)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", MODES)
def test_get_and_keep_alive(mode: str, https_server: Callable[..., HTTPSServer], client_ctx: Any) -> None:
    server = https_server()
    url = f"https://localhost:{server.port}"
    first, second = get_all(mode, [url + "/one", url + "/two"], client_ctx())
    assert (first.status_code, first.text) == (200, "hello /one client=None")
    assert (second.status_code, second.text) == (200, "hello /two client=None")
    assert first.http_version == "HTTP/1.1"
    assert server.accepts == 1  # two requests, one TLS connection


@pytest.mark.parametrize("mode", MODES)
def test_openssl_s_server_www(mode: str, pki: PKI, client_ctx: Any) -> None:
    with peers.openssl_server(pki.server_chain, pki.server_key, www=True) as s_server:
        (response,) = get_all(mode, [f"https://localhost:{s_server.port}/"], client_ctx())
    assert response.status_code == 200 and "Ciphers supported in s_server binary" in response.text


@pytest.mark.parametrize("mode", MODES)
def test_pinning_callback_that_rejects_is_connect_error_with_commssl_cause(
        mode: str, https_server: Callable[..., HTTPSServer], client_ctx: Any) -> None:
    server = https_server()
    url = f"https://localhost:{server.port}/"
    ctx = client_ctx()
    commssl.set_verification_mode(ctx, "client", "always", lambda ok, store: False)
    with pytest.raises(httpx.ConnectError) as info:
        get_all(mode, [url], ctx)
    assert isinstance(info.value.__cause__, commssl.SSLVerificationFailure)

    class NotPinned(Exception):
        pass

    def pin(ok: bool, store: Any) -> bool:
        if commssl.x509_store_ctx_get_error_depth(store) == 0:
            raise NotPinned("leaf is not the pinned one")
        return ok

    commssl.set_verification_mode(ctx, "client", "always", pin)
    with pytest.raises(httpx.ConnectError) as info:
        get_all(mode, [url], ctx)
    assert isinstance(info.value.__cause__, NotPinned)
    assert commssl.outstanding_certificates() == 0


@pytest.mark.parametrize("mode", MODES)
def test_client_certificate_required_by_the_server(mode: str, pki: PKI,
                                                   https_server: Callable[..., HTTPSServer],
                                                   server_ctx: Any, client_ctx: Any) -> None:
    sctx = server_ctx(cafile=pki.root_cert)
    commssl.set_verification_mode(sctx, "server", ["verify-peer", "fail-if-no-peer-cert"])
    server = https_server(sctx)
    url = f"https://localhost:{server.port}/"
    (response,) = get_all(mode, [url], client_ctx(chain=pki.client_chain, key=pki.client_key))
    assert response.text == "hello / client=commssl client"
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        get_all(mode, [url], client_ctx())  # TLS 1.3: the server's refusal may come with the first read


@pytest.mark.skipif(peers.NGINX is None, reason="nginx is not installed (ci/setup installs it for the tests)")
@pytest.mark.parametrize("mode", MODES)
def test_http2_through_alpn_against_nginx(mode: str, pki: PKI, client_ctx: Any) -> None:
    """nginx with http2 selects h2 when offered: http2=True speaks HTTP/2 on it (two requests,
    one connection), the default speaks HTTP/1.1, also with a context that offers h2 itself."""
    with peers.nginx(pki.server_chain, pki.server_key, http2=True) as port:
        url = f"https://localhost:{port}/"
        first, second = get_all(mode, [url, url + "again"], client_ctx(), http2=True)
        assert (first.http_version, second.http_version) == ("HTTP/2", "HTTP/2")
        assert first.status_code == 200 and first.text == second.text == "hello from nginx\n"
        (plain,) = get_all(mode, [url], client_ctx())
        assert (plain.http_version, plain.text) == ("HTTP/1.1", "hello from nginx\n")
        offers_h2 = client_ctx()
        commssl.set_alpn_protocols(offers_h2, ["h2", "http/1.1"])  # the transport's offer wins
        (response,) = get_all(mode, [url], offers_h2)
        assert (response.http_version, response.text) == ("HTTP/1.1", "hello from nginx\n")
        (response,) = get_all(mode, [url], client_ctx(), http1=False, http2=True)
        assert response.http_version == "HTTP/2"
        if mode == "sync":  # what httpcore asks, and the commssl connection, while it is open
            for http2, alpn in ((True, "h2"), (False, "http/1.1")):
                with httpx.Client(transport=chttpx.HTTPTransport(client_ctx(), http2=http2)) as c:
                    with c.stream("GET", url) as r:
                        stream = r.extensions["network_stream"]
                        assert stream.get_extra_info("ssl_object").selected_alpn_protocol() == alpn
                        assert commssl.ssl_connection_alpn_protocol(stream.get_extra_info("commssl")) == alpn


@pytest.mark.parametrize("mode", MODES)
def test_http2_falls_back_to_http1_without_alpn_and_refuses_unoffered_h2(
        mode: str, https_server: Callable[..., HTTPSServer], server_ctx: Any, client_ctx: Any) -> None:
    server = https_server()  # selects no ALPN protocol
    url = f"https://localhost:{server.port}/x"
    (response,) = get_all(mode, [url], client_ctx(), http2=True)
    assert (response.http_version, response.text) == ("HTTP/1.1", "hello /x client=None")
    # a configure callback that offers h2 behind the transport's back: the server's h2 is refused
    sctx = server_ctx()
    commssl.set_alpn_protocols(sctx, ["h2", "http/1.1"])
    sneaky = https_server(sctx)
    with pytest.raises(httpx.ConnectError, match="did not offer"):
        get_all(mode, [f"https://localhost:{sneaky.port}/"], client_ctx(),
                ssl_configure_callback=lambda ssl: commssl.set_alpn_protocols(ssl, ["h2"]))


@pytest.mark.parametrize("mode", MODES)
def test_abstract_context_configure_callback_still_runs(
        mode: str, pki: PKI, https_server: Callable[..., HTTPSServer], server_ctx: Any) -> None:
    """The transport sets its ALPN offer through the SSL configure callback: an abstract
    context's own callback must still run, after it (so it may change the offer)."""
    sctx = server_ctx()
    commssl.set_alpn_protocols(sctx, ["h2", "http/1.1"])
    server = https_server(sctx)
    seen: List[str] = []

    def configure(ssl: Any) -> None:
        seen.append("called")
        commssl.set_alpn_protocols(ssl, ["http/1.1"])

    ctx = commssl.create_ssl_client_context(openssl_trusted_file=str(pki.root_cert),
                                            openssl_ssl_configure_callback=configure)
    (response,) = get_all(mode, [f"https://localhost:{server.port}/a"], ctx, http2=True)
    assert (response.http_version, response.text, seen) == ("HTTP/1.1", "hello /a client=None", ["called"])


def test_transport_arguments() -> None:
    with pytest.raises(ValueError, match="http1 and http2"):
        chttpx.HTTPTransport(http1=False)
    with pytest.raises(TypeError, match="http2"):
        chttpx.AsyncHTTPTransport(http2="yes")
    chttpx.HTTPTransport(http2=True).close()
    # http2=True is honoured, never refused: each transport's backend offers h2 first (ALPN)
    for transport_class in (chttpx.HTTPTransport, chttpx.AsyncHTTPTransport):
        for kw, offer in (({}, ["http/1.1"]), ({"http2": True}, ["h2", "http/1.1"]),
                          ({"http1": False, "http2": True}, ["h2"])):
            pool = transport_class(**kw)._pool
            assert pool._network_backend.options.alpn == offer, (transport_class, kw)
            assert (pool._http1, pool._http2) == (kw.get("http1", True), kw.get("http2", False))
    with pytest.raises(TypeError, match="verify"):
        chttpx.AsyncHTTPTransport(verify=False)
    with pytest.raises(TypeError, match="ssl_ctx"):
        chttpx.HTTPTransport(ssl_ctx=None)
    transport = chttpx.HTTPTransport(limits=httpx.Limits(max_connections=3), retries=1)
    transport.close()


def test_is_readable_sees_bytes_held_above_the_socket(pki: PKI, client_ctx: Any) -> None:
    """httpcore drops an idle pooled connection whose stream is readable. Bytes the stream
    has received but not returned (a second record behind the one a read took, in the
    SSL's read buffer) are invisible to a poll of the socket: is_readable must count them."""
    server_ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(server_ctx, pki.server_chain)
    commssl.ssl_ctx_use_privatekey_file(server_ctx, pki.server_key)
    a, b = socket.socketpair()  # a write lands in the peer's socket at once
    written, done = threading.Event(), threading.Event()

    def serve() -> None:
        with commssl.create_ssl_socket_stream(a, server_ctx, handshake_timeout=10, timeout=10) as s:
            s.write(b"A" * 10)
            s.write(b"B" * 10)  # a second record
            written.set()
            done.wait(10)

    fut = peers.in_thread(serve)
    try:
        stream = commssl.create_ssl_socket_stream(b, client_ctx(), ssl_side="client", handshake_timeout=10,
                                                  timeout=10, tlsext_host_name="localhost")
        network = chttpx.NetworkStream(stream, _Options(client_ctx()))
        assert written.wait(10)  # both records wait in the socket
        assert network.read(10) == b"A" * 10  # one recv took both records; the read returned one
        assert not _readable(stream.socket)  # nothing left in the socket itself...
        assert network.get_extra_info("is_readable") is True  # ...but the stream holds the B's
        assert network.read(10) == b"B" * 10
        assert network.get_extra_info("is_readable") is False
        network.close()
        assert network.get_extra_info("is_readable") is True  # closed: as a dead connection
    finally:
        done.set()
        fut.result(10)
        commssl.destroy_ssl_ctx(server_ctx)


@pytest.mark.parametrize("mode", MODES)
def test_timeouts_and_refused_connections_map_to_httpx(mode: str, pki: PKI, client_ctx: Any) -> None:
    """A server that completes no handshake: ConnectTimeout; one that never answers the request:
    ReadTimeout; a closed port: ConnectError from the OSError (on asyncio the transport runs on
    AsyncSSLStream, on trio through anyio: the same errors)."""
    timeout = httpx.Timeout(0.5)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts, nobody speaks
        with pytest.raises(httpx.ConnectTimeout):
            get_all(mode, [f"https://localhost:{silent.getsockname()[1]}/"], client_ctx(), timeout=timeout)
    with peers.openssl_server(pki.server_chain, pki.server_key, relay_stdin=True) as mute:
        with pytest.raises(httpx.ReadTimeout):
            get_all(mode, [f"https://localhost:{mute.port}/"], client_ctx(), timeout=timeout)
    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]
    with pytest.raises(httpx.ConnectError) as info:
        get_all(mode, [f"https://127.0.0.1:{port}/"], client_ctx(), timeout=timeout)
    assert isinstance(info.value.__cause__, OSError)
    assert commssl.outstanding_certificates() == 0


@pytest.mark.parametrize("mode", ["asyncio", "trio"])
def test_async_network_stream_extras(mode: str, https_server: Callable[..., HTTPSServer],
                                     client_ctx: Any) -> None:
    """What httpcore and applications read from an open async connection: the commssl
    connection (AsyncSSLStream on asyncio, commssl.anyio.TLSStream on trio), the TLS version,
    the addresses and the socket; an idle connection is not readable."""
    import commssl.anyio

    server = https_server()
    url = f"https://localhost:{server.port}/x"
    seen: List[Any] = []

    async def main() -> None:
        async with httpx.AsyncClient(transport=chttpx.AsyncHTTPTransport(ssl_ctx=client_ctx())) as client:
            async with client.stream("GET", url) as response:
                stream = response.extensions["network_stream"]
                await response.aread()
                seen.extend([stream.get_extra_info("commssl"), stream.get_extra_info("ssl_object").version(),
                             stream.get_extra_info("client_addr"), stream.get_extra_info("server_addr"),
                             stream.get_extra_info("socket"), stream.get_extra_info("is_readable"),
                             stream.get_extra_info("no such thing")])

    anyio.run(main, backend=mode)
    connection, version, client_addr, server_addr, sock, readable, nothing = seen
    assert isinstance(connection, commssl.AsyncSSLStream if mode == "asyncio" else commssl.anyio.TLSStream)
    assert version == "TLSv1.3" and client_addr[0] == "127.0.0.1" and server_addr[1] == server.port
    assert sock is not None and readable is False and nothing is None
