"""The host name rule (commssl.policy), on every client entry point, against real peers.

A client that verifies the server always checks a host name: ``tlsext_host_name`` (or
``server_hostname`` for commssl.anyio), else the host the stream dialled. With none it
raises ``ValueError`` naming the argument before any byte goes out (the peer, a
``recording_server``, sees no ClientHello). ``check_hostname=False`` is the one opt-out:
the chain is still verified, no name is. Names are encoded by IDNA 2008 (UTS 46).

Peers: ``openssl s_server`` presenting the test server certificate (localhost,
127.0.0.1) or one issued to another name (``wrong.example``, ``other.example``,
``fass.de``, ``xn--fa-hia.de``), all under the test root; commssl's own servers.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import pytest

import commssl
import commssl.io.policy as policy
import peers
from commssl import SSLVerificationFailure, lib
from helpers import run
from peers import HOST, PKI, WAIT

anyio = pytest.importorskip("anyio")
httpx = pytest.importorskip("httpx")
idna = pytest.importorskip("idna")

import commssl.anyio as tls_anyio  # noqa: E402
import commssl.httpx as chttpx  # noqa: E402

HOSTNAME_MISMATCH = lib.X509_V_ERR_HOSTNAME_MISMATCH  # 62
Result = Tuple[bytes, Tuple[bool, int], Optional[str]]  # s_server's reply, verify, the SNI we sent


@pytest.fixture(scope="module")
def names(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Tuple[Path, Path]]:
    """Trusted leaves issued to other names: (chain, key) by name."""
    d = tmp_path_factory.mktemp("names")
    return {name: peers.issue_leaf(pki, d, name.replace(".", "_"), f"DNS:{name}")
            for name in ("other.example", "fass.de", "xn--fa-hia.de")}


# -- each client entry point, the same way: connect to s_server -rev, say a line ------------


def _exchange(stream: commssl.SocketStream) -> Result:
    stream.write(b"abc\n")
    stream.flush()
    return (stream.readline(), commssl.ssl_connection_verify(stream),
            commssl.ssl_connection_server_name(stream))


def via_open_tcp_stream(port: int, ctx: Any, **kw: Any) -> Result:
    with commssl.open_tcp_stream("localhost", port, ssl_ctx=ctx, handshake_timeout=WAIT, timeout=WAIT,
                                 **kw) as stream:
        return _exchange(stream)


def via_create_ssl_socket_stream(port: int, ctx: Any, **kw: Any) -> Result:
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    with commssl.create_ssl_socket_stream(sock, ctx, ssl_side="client", handshake_timeout=WAIT,
                                          timeout=WAIT, **kw) as stream:
        return _exchange(stream)


def via_attach_ssl(port: int, ctx: Any, **kw: Any) -> Result:
    with commssl.open_tcp_stream("localhost", port, timeout=WAIT) as stream:  # plain, then STARTTLS
        commssl.attach_ssl(stream, ssl_ctx=ctx, ssl_side="client", handshake_timeout=WAIT, **kw)
        return _exchange(stream)


async def _exchange_async(stream: Any) -> Result:
    stream.write(b"abc\n")
    line = b""
    while not line.endswith(b"\n"):
        line += await stream.readexactly(1)
    result = line, commssl.ssl_connection_verify(stream), commssl.ssl_connection_server_name(stream)
    await stream.close()
    return result


def via_open_tcp_stream_async(port: int, ctx: Any, **kw: Any) -> Result:
    async def main() -> Result:
        stream = await commssl.open_tcp_stream_async("localhost", port, ssl_ctx=ctx, handshake_timeout=WAIT,
                                                     **kw)
        return await _exchange_async(stream)

    return run(main())  # type: ignore[no-any-return]


def via_attach_ssl_async(port: int, ctx: Any, **kw: Any) -> Result:
    async def main() -> Result:
        stream = await commssl.open_tcp_stream_async("localhost", port, ssl_ctx=None)
        try:
            await commssl.attach_ssl_async(stream, ssl_ctx=ctx, ssl_side="client", handshake_timeout=WAIT,
                                           **kw)
        except BaseException:
            await stream.close()
            raise
        return await _exchange_async(stream)

    return run(main())  # type: ignore[no-any-return]


async def _exchange_anyio(stream: Any) -> Result:
    async with stream:
        await stream.send(b"abc\n")
        line = b""
        while not line.endswith(b"\n"):
            line += await stream.receive()
        return line, commssl.ssl_connection_verify(stream), commssl.ssl_connection_server_name(stream)


def via_anyio_wrap(port: int, ctx: Any, **kw: Any) -> Result:
    kw = {"server_hostname" if k == "tlsext_host_name" else k: v for k, v in kw.items()}

    async def main() -> Result:
        tcp = await anyio.connect_tcp(HOST, port)
        try:
            stream = await tls_anyio.wrap(tcp, ssl_ctx=ctx, ssl_side="client", handshake_timeout=WAIT, **kw)
        except BaseException:  # wrap leaves a stream it refused to take over to its caller
            await tcp.aclose()
            raise
        return await _exchange_anyio(stream)

    return anyio.run(main)  # type: ignore[no-any-return]


def via_anyio_connect(port: int, ctx: Any, **kw: Any) -> Result:
    async def main() -> Result:
        stream = await tls_anyio.connect("localhost", port, ssl_ctx=ctx, handshake_timeout=WAIT, **kw)
        return await _exchange_anyio(stream)

    return anyio.run(main)  # type: ignore[no-any-return]


ENTRY_POINTS: Dict[str, Callable[..., Result]] = {
    "open_tcp_stream": via_open_tcp_stream,
    "create_ssl_socket_stream": via_create_ssl_socket_stream,
    "attach_ssl": via_attach_ssl,
    "open_tcp_stream_async": via_open_tcp_stream_async,
    "attach_ssl_async": via_attach_ssl_async,
    "anyio.wrap": via_anyio_wrap,
    "anyio.connect": via_anyio_connect,
}
#: Those that know no host of their own: the name must be given (tlsext_host_name / server_hostname).
NO_DIALLED_HOST = ("create_ssl_socket_stream", "anyio.wrap")


def _name(entry: str) -> Dict[str, str]:
    """The right name, given explicitly where the entry point has no dialled host."""
    return {"tlsext_host_name": "localhost"} if entry in NO_DIALLED_HOST else {}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_right_name_connects(entry: str, pki: PKI, client_ctx: Any) -> None:
    with peers.openssl_server(pki.server_chain, pki.server_key) as s_server:
        reply, verify, sni = ENTRY_POINTS[entry](s_server.port, client_ctx(), **_name(entry))
    assert (reply, verify, sni) == (b"cba\n", (True, 0), "localhost")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_wrong_name_fails_with_hostname_mismatch(entry: str, pki: PKI, client_ctx: Any) -> None:
    # a trusted chain, issued to wrong.example: the name decides
    with peers.openssl_server(pki.wrongname_chain, pki.wrongname_key) as s_server:
        with pytest.raises(SSLVerificationFailure) as info:
            ENTRY_POINTS[entry](s_server.port, client_ctx(), **_name(entry))
    assert info.value.verify_code == HOSTNAME_MISMATCH and info.value.depth == 0


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_check_hostname_false_accepts_another_name_but_verifies_the_chain(
        entry: str, pki: PKI, client_ctx: Any) -> None:
    with peers.openssl_server(pki.wrongname_chain, pki.wrongname_key) as s_server:
        reply, verify, sni = ENTRY_POINTS[entry](s_server.port, client_ctx(), check_hostname=False,
                                                 **_name(entry))
    # SNI still goes out: the server may need it to pick its certificate
    assert (reply, verify, sni) == (b"cba\n", (True, 0), "localhost")
    # ... and the chain is still verified: an untrusted one fails, not by its name
    with peers.openssl_server(pki.other_chain, pki.other_key) as s_server:
        with pytest.raises(SSLVerificationFailure) as info:
            ENTRY_POINTS[entry](s_server.port, client_ctx(), check_hostname=False, **_name(entry))
    assert info.value.verify_code != HOSTNAME_MISMATCH


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_check_hostname_must_be_a_bool(entry: str, client_ctx: Any) -> None:
    with peers.recording_server() as server:
        with pytest.raises(TypeError, match="check_hostname must be True or False"):
            ENTRY_POINTS[entry](server.port, client_ctx(), check_hostname=1)
    assert all(data == b"" for data in server.received)  # type: ignore[attr-defined]


# -- no name at all: ValueError naming the argument, before any byte -------------------------


def _no_name_message(argument: str) -> str:
    return rf"^{argument} is needed: .*Pass {argument}=.*check_hostname=False"


def _refused_before_any_byte(client: Callable[[int], None], argument: str) -> None:
    with peers.recording_server() as server:
        with pytest.raises(ValueError, match=_no_name_message(argument)):
            client(server.port)
        server.wait_finished()
    assert server.received == [b""]  # type: ignore[attr-defined] # not even a ClientHello


def test_create_ssl_socket_stream_without_a_name(client_ctx: Any) -> None:
    ctx = client_ctx()
    sock: Optional[socket.socket] = None

    def client(port: int) -> None:
        nonlocal sock
        sock = socket.create_connection((HOST, port), timeout=WAIT)
        commssl.create_ssl_socket_stream(sock, ctx, ssl_side="client", handshake_timeout=WAIT)

    _refused_before_any_byte(client, "tlsext_host_name")
    # closed with the stream; the address it is connected to was not taken for a name
    assert sock is not None and sock.fileno() == -1


def test_attach_ssl_on_a_stream_that_dialled_nothing(client_ctx: Any) -> None:
    ctx = client_ctx()

    def client(port: int) -> None:
        with commssl.create_ssl_socket_stream(socket.create_connection((HOST, port), timeout=WAIT),
                                              None) as stream:  # plain: no host dialled
            commssl.attach_ssl(stream, ssl_ctx=ctx, ssl_side="client")

    _refused_before_any_byte(client, "tlsext_host_name")


def test_anyio_wrap_without_server_hostname(client_ctx: Any) -> None:
    ctx = client_ctx()

    def client(port: int) -> None:
        async def main() -> None:
            async with await anyio.connect_tcp(HOST, port) as tcp:
                await tls_anyio.wrap(tcp, ssl_ctx=ctx, ssl_side="client")

        anyio.run(main)

    _refused_before_any_byte(client, "server_hostname")


def test_attach_ssl_async_client_on_an_accepted_stream(client_ctx: Any) -> None:
    """A stream ``start_ssl_server`` accepted dialled nothing: attaching as the client
    without a name is refused, and the peer (a raw socket here) gets no ClientHello."""
    ctx = client_ctx()

    async def main() -> Tuple[BaseException, bytes]:
        refused: "asyncio.Future[BaseException]" = asyncio.get_running_loop().create_future()

        async def handler(stream: commssl.AsyncSSLStream) -> None:
            try:
                await commssl.attach_ssl_async(stream, ssl_ctx=ctx, ssl_side="client")
            except BaseException as exc:
                refused.set_result(exc)
            await stream.close()

        server = await commssl.start_ssl_server(handler, HOST, 0, ssl_ctx=None)
        try:
            reader, writer = await asyncio.open_connection(HOST, server.sockets[0].getsockname()[1])
            received = await reader.read()  # until the server closes
            writer.close()
            return await refused, received
        finally:
            server.close()
            await server.wait_closed()

    exc, received = run(main())
    assert isinstance(exc, ValueError) and exc.args[0].startswith("tlsext_host_name is needed: ")
    assert received == b""


def test_verify_mode_never_needs_no_name_and_still_records_a_given_one(pki: PKI, client_ctx: Any) -> None:
    ctx = client_ctx()
    commssl.set_verification_mode(ctx, "client", "never")
    with peers.openssl_server(pki.wrongname_chain, pki.wrongname_key) as s_server:
        assert via_create_ssl_socket_stream(s_server.port, ctx) == (b"cba\n", (True, 0), None)
        reply, verify, _ = via_create_ssl_socket_stream(s_server.port, ctx, tlsext_host_name="localhost")
    assert (reply, verify) == (b"cba\n", (False, HOSTNAME_MISMATCH))


def test_ssl_configure_callback_decides_the_mode(pki: PKI, client_ctx: Any) -> None:
    """The rule reads the mode after ssl_configure_callback: a callback that turns
    verification on makes a name required."""
    ctx = client_ctx()
    commssl.set_verification_mode(ctx, "client", "never")

    def verify_peer(ssl: commssl.SSLPointer) -> None:
        commssl.set_verification_mode(ssl, "client", "always")

    with peers.recording_server() as server:
        sock = socket.create_connection((HOST, server.port), timeout=WAIT)
        with pytest.raises(ValueError, match=_no_name_message("tlsext_host_name")):
            commssl.create_ssl_socket_stream(sock, True, ssl_side="client",
                                             ssl_configure_callback=verify_peer)
        server.wait_finished()
    assert server.received == [b""]  # type: ignore[attr-defined]


# -- STARTTLS, blocking: the dialled host is remembered ---------------------------------------


def _smtp_client_starttls(port: int, ctx: Any) -> commssl.SocketStream:
    """A Postfix-style client: greeting, STARTTLS, 220, then TLS on the same stream."""
    stream = commssl.open_tcp_stream("localhost", port, timeout=WAIT)
    try:
        assert stream.readline() == b"220 relay ready\r\n"
        stream.write(b"STARTTLS\r\n")
        stream.flush()
        assert stream.readline() == b"220 go ahead\r\n"
        commssl.attach_ssl(stream, ssl_side="client", ssl_ctx=ctx, handshake_timeout=WAIT)
    except BaseException:
        stream.close()
        raise
    return stream


def test_blocking_starttls_checks_the_dialled_host(pki: PKI, names: Any, client_ctx: Any) -> None:
    ctx = client_ctx()
    with peers.openssl_server(*names["other.example"]) as s_server:
        with pytest.raises(SSLVerificationFailure) as info:
            _smtp_client_starttls(peers.starttls_relay(s_server.port), ctx)
    assert info.value.verify_code == HOSTNAME_MISMATCH
    with peers.openssl_server(pki.server_chain, pki.server_key) as s_server:
        with _smtp_client_starttls(peers.starttls_relay(s_server.port), ctx) as stream:
            assert _exchange(stream) == (b"cba\n", (True, 0), "localhost")  # SNI: the dialled host


# -- httpx: the origin's host --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "asyncio", "trio"])
def test_httpx_transports(mode: str, pki: PKI, client_ctx: Any) -> None:
    ctx = client_ctx()

    def get(port: int, **kw: Any) -> Any:
        url = f"https://localhost:{port}/"
        if mode == "sync":
            with httpx.Client(transport=chttpx.HTTPTransport(ssl_ctx=ctx, **kw)) as client:
                return client.get(url)

        async def main() -> Any:
            async with httpx.AsyncClient(transport=chttpx.AsyncHTTPTransport(ssl_ctx=ctx, **kw)) as client:
                return await client.get(url)

        return anyio.run(main, backend=mode)

    with peers.openssl_server(pki.server_chain, pki.server_key, www=True) as s_server:
        assert get(s_server.port).status_code == 200
    with peers.openssl_server(pki.wrongname_chain, pki.wrongname_key, www=True) as s_server:
        with pytest.raises(httpx.ConnectError) as info:
            get(s_server.port)
        assert isinstance(info.value.__cause__, SSLVerificationFailure)
        assert info.value.__cause__.verify_code == HOSTNAME_MISMATCH
        assert get(s_server.port, check_hostname=False).status_code == 200
    transport = chttpx.HTTPTransport if mode == "sync" else chttpx.AsyncHTTPTransport
    with pytest.raises(TypeError, match="check_hostname must be True or False"):
        transport(ssl_ctx=ctx, check_hostname="no")


# -- commssl.anyio.connect: server_hostname, and no stray keywords ----------------------------


def test_anyio_connect_server_hostname_and_unknown_keywords(pki: PKI, client_ctx: Any) -> None:
    ctx = client_ctx()
    with peers.openssl_server(pki.server_chain, pki.server_key) as s_server:
        # dialled by address, checked by name
        result = via_anyio_connect(s_server.port, ctx, server_hostname="localhost")
        assert result[1:] == ((True, 0), "localhost")
        with pytest.raises(SSLVerificationFailure) as info:
            via_anyio_connect(s_server.port, ctx, server_hostname="other.example")
        assert info.value.verify_code == HOSTNAME_MISMATCH

    async def stray(**kw: Any) -> None:
        await tls_anyio.connect(HOST, 1, ssl_ctx=ctx, **kw)

    for keyword in ("tls", "ssl_context", "tls_hostname", "server_host_name"):
        with pytest.raises(TypeError, match=rf"^commssl\.anyio\.connect\(\) .*'{keyword}'"):
            anyio.run(lambda: stray(**{keyword: True}))  # noqa: B023


# -- IDNA 2008 -----------------------------------------------------------------------------


def test_idna_encode_by_uts46_or_refused_without_the_package() -> None:
    assert policy.idna_encode("Mail.Example.COM", idna) == b"Mail.Example.COM"  # ASCII: as given
    assert policy.idna_encode("faß.de", idna) == b"xn--fa-hia.de"  # not fass.de
    assert policy.idna_encode("FAẞ.de", idna) == b"xn--fa-hia.de"
    # final sigma and a joiner kept (IDNA 2003 maps ς to σ and drops joiners: other domains)
    greek = "ελληνικός.gr"
    assert policy.idna_encode(greek, idna) == b"xn--qxaegecap6byf.gr" != greek.encode("idna")
    assert policy.idna_encode("ന്\u200dന.example", idna) == b"xn--uwca4is84f.example"
    assert policy.idna_encode("bücher.de", idna) == b"xn--bcher-kva.de"
    # without the package: the 2003 form when it is the 2008 one, else refused
    assert policy.idna_encode("bücher.de", None) == b"xn--bcher-kva.de"
    for name in ("faß.de", "FAẞ.de", "ελληνικός.gr", "ന്\u200dന.example", "a\u200cb.example"):
        with pytest.raises(policy.NeedsIDNA2008):
            policy.idna_encode(name, None)
    with pytest.raises(ValueError, match="^tlsext_host_name 'a..b.example' is not a valid host name"):
        policy.encode_host_name("a..b.example", "tlsext_host_name")
    with pytest.raises(ValueError, match="^host 'xn--☃.example' is not a valid host name"):
        policy.encode_host_name("xn--☃.example", "host")


def test_without_the_idna_package(client_ctx: Any) -> None:
    """Without idna: a deviation name is a ValueError naming the argument and the extra,
    before the handshake; other names keep the IDNA 2003 form."""
    code = (
        "import socket, sys\n"
        "sys.modules['idna'] = None  # as if not installed\n"
        "import commssl, commssl.io.policy as p\n"
        "assert p.encode_host_name('bücher.de', 'host') == b'xn--bcher-kva.de'\n"
        "a, b = socket.socketpair()\n"
        "try:\n"
        "    commssl.create_ssl_socket_stream(a, True, ssl_side='client', tlsext_host_name='faß.de')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
        "b.settimeout(5)\n"
        "assert b.recv(100) == b'', 'bytes were sent'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tlsext_host_name 'faß.de' has a character that IDNA 2003 maps to another")
    assert "pip install commssl[idna]" in out.stdout


def test_a_certificate_for_fass_de_is_not_one_for_fass_with_sharp_s(
        names: Any, client_ctx: Any, server_ctx: Any, commssl_server: Any) -> None:
    ctx = client_ctx()
    with peers.openssl_server(*names["fass.de"]) as s_server:
        with pytest.raises(SSLVerificationFailure) as info:
            via_open_tcp_stream(s_server.port, ctx, tlsext_host_name="faß.de")
        assert info.value.verify_code == HOSTNAME_MISMATCH
        # positive control: that certificate is one for fass.de
        result = via_open_tcp_stream(s_server.port, ctx, tlsext_host_name="fass.de")
        assert result[:2] == (b"cba\n", (True, 0))
    with peers.openssl_server(*names["xn--fa-hia.de"]) as s_server:
        assert via_open_tcp_stream(s_server.port, ctx, tlsext_host_name="faß.de") == (
            b"cba\n", (True, 0), "xn--fa-hia.de")
    # what the server receives as SNI
    server = commssl_server(server_ctx(*names["xn--fa-hia.de"]), commssl.ssl_connection_server_name)
    with commssl.open_tcp_stream(HOST, server.port, ssl_ctx=ctx, tlsext_host_name="faß.de",
                                 handshake_timeout=WAIT, timeout=WAIT):
        pass
    server.join()
    assert server.errors == [] and server.results == ["xn--fa-hia.de"]
