"""AsyncSSLStream.readline/readuntil (asyncio.StreamReader's semantics, checked against a
StreamReader fed the same bytes) and start_ssl_server's quiet log of a peer's missing
close_notify."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, List, Tuple

import pytest

import peers
from commssl import AsyncSSLStream, SSLError, open_tcp_stream_async, start_ssl_server
from helpers import run
from peers import HOST, PKI

# Sent in pieces (a separator split across TLS records and reads), then close_notify. Each
# piece is one record, decrypted whole: an overrun is met with its separator in the buffer,
# so the outcome does not depend on the timing.
PIECES = [b"GET / HTTP/1.1\r", b"\nHost: x\r\n\r\n", b"a-very-long-line-past-the-limit\nnext\n",
          b"0123456789abcdefghij\n--", b"boundary--tail-without-end"]
LIMIT = 16

Op = Tuple[str, Any]
#: The calls made on both readers, in order; ``limit`` is LIMIT for both.
OPS: List[Op] = [
    ("readuntil", b"\r\n"), ("readline", None), ("readuntil", b"\r\n"),
    ("readline", None),              # longer than LIMIT: ValueError, dropped through "\n"
    ("readline", None),              # "next\n"
    ("readuntil", b"\n"),            # 20 bytes before "\n": LimitOverrunError, kept
    ("read", 4), ("readuntil", b"\n"),  # now 16 bytes before "\n": fits
    ("readuntil", b"--"), ("readuntil", b"--"),
    ("readuntil", b"\n"),            # end of stream: IncompleteReadError with the rest
    ("readline", None),              # b"" at the end
]


async def apply(reader: Any, ops: List[Op], ours: bool) -> List[Any]:
    """Each call's result, or (exception type, its telling attributes)."""
    out: List[Any] = []
    for name, arg in ops:
        try:
            if name == "read":
                out.append(await reader.read(arg))
            elif name == "readline":
                out.append(await (reader.readline(LIMIT) if ours else reader.readline()))
            else:
                out.append(await (reader.readuntil(arg, LIMIT) if ours else reader.readuntil(arg)))
        except asyncio.IncompleteReadError as exc:
            out.append(("IncompleteReadError", exc.partial, exc.expected))
        except asyncio.LimitOverrunError as exc:
            out.append(("LimitOverrunError", str(exc), exc.consumed))
        except ValueError as exc:
            out.append(("ValueError", str(exc)))
    return out


def test_readuntil_and_readline_behave_as_streamreader(server_ctx: Any, client_ctx: Any) -> None:
    sctx, cctx = server_ctx(), client_ctx()

    async def send_pieces(stream: AsyncSSLStream) -> None:
        for piece in PIECES:
            stream.write(piece)
            await stream.drain()
            await asyncio.sleep(0.02)  # separate records and reads

    async def main() -> Tuple[List[Any], List[Any]]:
        server = await start_ssl_server(send_pieces, HOST, 0, ssl_ctx=sctx)
        try:
            port = server.sockets[0].getsockname()[1]
            async with await open_tcp_stream_async("localhost", port, ssl_ctx=cctx) as stream:
                ours = await apply(stream, OPS, ours=True)
        finally:
            server.close()
            await server.wait_closed()
        reference = asyncio.StreamReader(limit=LIMIT)
        reference.feed_data(b"".join(PIECES))
        reference.feed_eof()
        return ours, await apply(reference, OPS, ours=False)

    ours, reference = run(main())
    assert ours == reference
    # and it exercised each rule
    assert ("IncompleteReadError", b"tail-without-end", None) in ours
    assert any(r[0] == "LimitOverrunError" and r[2] == 20 for r in ours if isinstance(r, tuple))
    assert any(r[0] == "ValueError" for r in ours if isinstance(r, tuple))


def test_readuntil_separator_tuple_arguments_and_truncation(pki: PKI, client_ctx: Any) -> None:
    cctx = client_ctx()

    def handler(tls: Any) -> None:
        tls.sendall(b"a;b\r\nc\nrest")  # then the socket closes without close_notify

    async def main(port: int) -> None:
        stream = await open_tcp_stream_async("localhost", port, ssl_ctx=cctx)
        # a tuple (Python 3.13's StreamReader): the separator that ends first wins
        assert await stream.readuntil((b"\r\n", b";")) == b"a;"
        assert await stream.readuntil((b"\n", b"\r\n")) == b"b\r\n"
        assert await stream.readline() == b"c\n"
        for bad, exc in ((b"", ValueError), ((), ValueError), ("\n", TypeError), ((b"\n", 1), TypeError)):
            with pytest.raises(exc, match="separator"):
                await stream.readuntil(bad)  # type: ignore[arg-type]
        for bad_limit, exc in ((0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)):
            with pytest.raises(exc, match="limit"):
                await stream.readline(bad_limit)  # type: ignore[arg-type]
        # no close_notify: the truncation is raised (StreamReader, with no TLS, would see an EOF),
        # and the data stays readable
        with pytest.raises(SSLError):
            await stream.readuntil(b"\n")
        assert await stream.read(10) == b"rest"
        await stream.close()
        with pytest.raises(ValueError, match="closed"):
            await stream.readline()

    with peers.cpython_tls_server(pki.server_chain, pki.server_key, handler=handler) as server:
        run(main(server.port))


def _leave_without_close_notify(port: int, pki: PKI) -> None:
    sock = peers.cpython_tls_client(port, cafile=pki.root_cert)
    sock.sendall(b"hello\n")
    sock.close()  # CPython's close sends no close_notify


async def _serve_one_rude_client(pki: PKI, sctx: Any, caplog: pytest.LogCaptureFixture, **kw: Any) -> None:
    done = asyncio.Event()

    async def handler(stream: AsyncSSLStream) -> None:
        try:
            assert await stream.readline() == b"hello\n"
            await stream.read()  # raises the SSLError of the missing close_notify
        finally:
            done.set()

    server = await start_ssl_server(handler, HOST, 0, ssl_ctx=sctx, **kw)
    try:
        await asyncio.to_thread(_leave_without_close_notify, server.sockets[0].getsockname()[1], pki)
        await done.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _records_of_the_handler(caplog):
            await asyncio.sleep(0.01)  # the server logs after the handler's exception
    finally:
        server.close()
        await server.wait_closed()


def _records_of_the_handler(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "commssl.aio"
            and ("close_notify" in r.getMessage() or "handler of" in r.getMessage())]


def test_missing_close_notify_is_logged_quietly_by_default(pki: PKI, server_ctx: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="commssl.aio"):
        run(_serve_one_rude_client(pki, server_ctx(), caplog))
    records = _records_of_the_handler(caplog)
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    assert records[0].levelno == logging.DEBUG and records[0].exc_info is None
    assert "without close_notify" in records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="commssl.aio"):
        run(_serve_one_rude_client(pki, server_ctx(), caplog, log_missing_close_notify=True))
    records = _records_of_the_handler(caplog)
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None and records[0].exc_info[0] is SSLError


def test_log_missing_close_notify_must_be_a_bool(server_ctx: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="log_missing_close_notify"):
            await start_ssl_server(lambda s: asyncio.sleep(0), HOST, 0, ssl_ctx=server_ctx(),
                                   log_missing_close_notify="yes")
        server = await start_ssl_server(lambda s: asyncio.sleep(0), HOST, 0, ssl_ctx=server_ctx(),
                                        log_missing_close_notify=True)
        server.close()
        await server.wait_closed()

    run(main())
