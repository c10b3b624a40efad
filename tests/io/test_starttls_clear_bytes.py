"""The clear-bytes rule of a blocking STARTTLS (``attach_ssl``), as ``attach_ssl_async``'s:
bytes the peer sent in clear that the plain stream buffered unread never become data of the
TLS connection. By default they refuse the attach (the injection of CVE-2011-0411: a
man in the middle appends a command or a reply to the STARTTLS exchange, in the same packet);
``buffered="tls"`` hands them to OpenSSL as the start of the peer's handshake (a client that
sends its ClientHello right behind its STARTTLS command).
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any, Callable, List, Tuple

import pytest

import commssl
from peers import HOST, PKI, bio_step

LIMIT = 10  # seconds: a hang fails the test instead of stalling the run


def plain_server(script: Callable[[socket.socket], Any], got: List[Any]) -> Tuple[int, threading.Thread]:
    """A plain TCP server that runs ``script(conn)`` on one connection in a thread
    (its result or exception into ``got``): its port and its thread."""
    listener = socket.create_server((HOST, 0))
    listener.settimeout(LIMIT)

    def run() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(LIMIT)
                got.append(script(conn))
        except BaseException as exc:
            got.append(exc)
        finally:
            listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return int(listener.getsockname()[1]), thread


def test_bytes_injected_after_the_reply_refuse_the_attach_and_stay_readable(client_ctx: Any) -> None:
    def injecting_server(conn: socket.socket) -> bytes:
        assert conn.recv(100) == b"STARTTLS\r\n"
        conn.sendall(b"220 ready\r\n250 INJECTED\r\n")  # one packet, as a man in the middle sends it
        return conn.recv(100)  # what the client sends next: nothing (it closes)

    got: List[Any] = []
    port, server = plain_server(injecting_server, got)
    with commssl.open_tcp_stream(HOST, port, timeout=LIMIT) as stream:
        stream.write(b"STARTTLS\r\n")
        assert stream.readline() == b"220 ready\r\n"
        with pytest.raises(ValueError, match="attach_ssl: 14 bytes the peer sent in clear .* unread"):
            commssl.attach_ssl(stream, ssl_ctx=client_ctx(), ssl_side="client", tlsext_host_name="localhost")
        assert commssl.socket_stream_ssl(stream) is None  # nothing attached, no ClientHello sent
        assert stream.readline() == b"250 INJECTED\r\n"  # not lost, never passed off as protected
    server.join(LIMIT)
    assert got == [b""]
    assert commssl.outstanding_certificates() == 0


def test_a_client_hello_right_behind_starttls_goes_to_openssl_with_buffered_tls(pki: PKI,
                                                                                  server_ctx: Any) -> None:
    def pipelining_client(port: int, got: List[Any]) -> None:
        ctx = ssl.create_default_context(cafile=str(pki.root_cert))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        try:
            with socket.create_connection((HOST, port), timeout=LIMIT) as sock:
                with pytest.raises(ssl.SSLWantReadError):
                    tls.do_handshake()
                sock.sendall(b"STARTTLS\r\n" + outgoing.read())  # the command and the ClientHello: one packet

                bio_step(sock, incoming, outgoing, tls.do_handshake)
                tls.write(b"over tls\n")
                sock.sendall(outgoing.read())
                got.append(bio_step(sock, incoming, outgoing, lambda: tls.read(100)))
        except BaseException as exc:
            got.append(exc)

    listener = socket.create_server((HOST, 0))
    got: List[Any] = []
    client = threading.Thread(target=pipelining_client, args=(listener.getsockname()[1], got), daemon=True)
    client.start()
    listener.settimeout(LIMIT)
    conn, _ = listener.accept()
    listener.close()
    with commssl.create_ssl_socket_stream(conn, None, timeout=LIMIT) as stream:
        assert stream.readline() == b"STARTTLS\r\n"
        sslp = commssl.attach_ssl(stream, ssl_ctx=server_ctx(), ssl_side="server", handshake_timeout=LIMIT,
                                  buffered="tls")
        assert commssl.socket_stream_ssl(stream) is sslp
        assert stream.readline() == b"over tls\n"
        stream.write(b"answer over tls\n")
        client.join(LIMIT)
    assert got == [b"answer over tls\n"]


def test_a_client_hello_right_behind_starttls_refuses_the_attach_by_default(server_ctx: Any) -> None:
    listener = socket.create_server((HOST, 0))
    with socket.create_connection(listener.getsockname()[:2], timeout=LIMIT) as peer:
        peer.sendall(b"STARTTLS\r\n\x16\x03\x01\x00\x05hello")  # a command and the start of a record
        conn, _ = listener.accept()
        listener.close()
        with commssl.create_ssl_socket_stream(conn, None, timeout=LIMIT) as stream:
            assert stream.readline() == b"STARTTLS\r\n"
            with pytest.raises(ValueError, match="buffered='tls' when the peer starts TLS at once"):
                commssl.attach_ssl(stream, ssl_ctx=server_ctx(), ssl_side="server", handshake_timeout=LIMIT)
            assert stream.read(10) == b"\x16\x03\x01\x00\x05hello"


@pytest.mark.parametrize("buffered, error", [("yes", ValueError), (1, TypeError), (None, TypeError)])
def test_buffered_takes_refuse_or_tls(buffered: Any, error: type, client_ctx: Any) -> None:
    listener = socket.create_server((HOST, 0))
    with commssl.open_tcp_stream(HOST, listener.getsockname()[1], timeout=LIMIT) as stream:
        with pytest.raises(error, match="buffered must be 'refuse' or 'tls'"):
            commssl.attach_ssl(stream, ssl_ctx=client_ctx(), ssl_side="client", tlsext_host_name="localhost",
                               buffered=buffered)
        assert commssl.socket_stream_ssl(stream) is None
    listener.close()
