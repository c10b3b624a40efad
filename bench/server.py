"""The loopback server of the socket rows, run as its own process so that client
and server do not share a GIL: ``python -m bench.server LIB CHAIN_DIR`` with LIB
``commssl`` or ``cpython`` prints its port, then serves one connection at a time
until its stdin closes.

After the handshake the client sends one byte: ``h`` (the server answers ``k``
and closes: the handshake rows), or ``b`` then an 8-byte big-endian length (the
server reads and drops that many bytes, answers ``k``, closes: the bulk rows).
Each side uses its library's usual calls, so both ends of a row run the same
library.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Callable

CHUNK = 64 * 1024


def _exit_with_parent() -> None:
    sys.stdin.read()
    os._exit(0)


def _commssl_server(chain_dir: Path) -> Callable[[socket.socket], None]:
    import commssl

    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, chain_dir / "server-chain.pem")
    commssl.ssl_ctx_use_privatekey_file(ctx, chain_dir / "server.key")

    view = memoryview(bytearray(CHUNK))

    def serve(conn: socket.socket) -> None:
        stream = commssl.create_ssl_socket_stream(conn, ctx, ssl_side="server", timeout=30)

        def read_some(n: int) -> int:
            return stream.readinto(view[: min(n, CHUNK)])

        try:
            _session(stream.read, read_some, stream.write)
        finally:
            stream.close()

    return serve


def _cpython_server(chain_dir: Path) -> Callable[[socket.socket], None]:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    ctx.load_cert_chain(str(chain_dir / "server-chain.pem"), str(chain_dir / "server.key"))
    buf = bytearray(CHUNK)

    def serve(conn: socket.socket) -> None:
        conn.settimeout(30)
        with ctx.wrap_socket(conn, server_side=True) as tls:
            def read_exact(n: int) -> bytes:
                data = b""
                while len(data) < n:
                    chunk = tls.recv(n - len(data))
                    if not chunk:
                        raise EOFError("the client closed early")
                    data += chunk
                return data

            def read_some(n: int) -> int:
                return tls.recv_into(buf, min(n, CHUNK))

            _session(read_exact, read_some, tls.sendall)

    return serve


def _session(read_exact: Callable[[int], bytes], read_some: Callable[[int], Any],
             write: Callable[[bytes], Any]) -> None:
    what = read_exact(1)
    if what == b"b":
        left = int.from_bytes(read_exact(8), "big")
        while left > 0:
            got = read_some(min(left, CHUNK))
            n = got if isinstance(got, int) else len(got)
            if n == 0:
                raise EOFError("the client closed early")
            left -= n
    elif what != b"h":
        raise ValueError(f"unknown request {what!r}")
    write(b"k")


def main() -> None:
    lib, chain_dir = sys.argv[1], Path(sys.argv[2])
    serve = {"commssl": _commssl_server, "cpython": _cpython_server}[lib](chain_dir)
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        try:
            serve(conn)
        except Exception as exc:  # a failed connection must not stop the server
            print(f"bench.server ({lib}): {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            conn.close()


if __name__ == "__main__":
    main()
