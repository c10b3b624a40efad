"""Small helpers the commssl tests share: client connections and what servers report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest

import commssl
from peers import HOST, WAIT


def bundled_openssl() -> bool:
    """Whether commssl runs on an OpenSSL its wheel carries (auditwheel and delvewheel put
    it in commssl.libs/ beside the package, delocate in commssl/.dylibs/), which may be
    another OpenSSL than the system's that a test's own C code compiles against."""
    package = Path(commssl.__file__).parent
    return (package.parent / "commssl.libs").is_dir() or (package / ".dylibs").is_dir()


def connect(port: int, ctx: Any, **kw: Any) -> commssl.SocketStream:
    """A commssl client connection to 127.0.0.1 (bounded waits)."""
    kw.setdefault("handshake_timeout", WAIT)
    kw.setdefault("timeout", WAIT)
    return commssl.open_tcp_stream(HOST, port, ssl_ctx=ctx, **kw)


def talk(port: int, ctx: Any, line: bytes = b"ping\n", **kw: Any) -> Tuple[bytes, Tuple[bool, int]]:
    """Connect, send a line, return the reply and the client's ``ssl_connection_verify``."""
    with connect(port, ctx, **kw) as stream:
        stream.write(line)
        return stream.readline(), commssl.ssl_connection_verify(stream)


def rejected_by_server(port: int, ctx: Any, **kw: Any) -> commssl.SSLCondition:
    """What a client sees when the server rejects it: with TLS 1.3 the client's handshake
    ends before the server checks its certificate, so the alert arrives on the first read."""
    with pytest.raises(commssl.SSLCondition) as info:
        with connect(port, ctx, **kw) as stream:
            stream.readline()
    return info.value


def peer_cns(conn: Any) -> List[Optional[str]]:
    """Common names of the certificates the peer sent, leaf first (all released)."""
    with commssl.peer_certificates(conn) as certs:
        return [commssl.get_certificate_common_name(c) for c in certs]


def serve_report(stream: commssl.SocketStream) -> Tuple[List[Optional[str]], Tuple[bool, int]]:
    """Server handler: the client's chain and verify result, then echo one line."""
    result = peer_cns(stream), commssl.ssl_connection_verify(stream)
    stream.write(stream.readline())
    return result


def only_result(server: Any) -> Any:
    """The one result of a commssl_server that served one connection without error."""
    server.join()
    assert not server.errors and len(server.results) == 1, (server.errors, server.results)
    return server.results[0]


def only_error(server: Any) -> BaseException:
    """The one exception of a commssl_server whose one connection failed."""
    server.join()
    assert len(server.errors) == 1 and not server.results, (server.errors, server.results)
    return server.errors[0]


def assert_alert(exc: BaseException, *words: str) -> None:
    """The peer of a side that rejected: an SSLFailure caused by the alert it received."""
    assert isinstance(exc, commssl.SSLFailure), repr(exc)
    assert not isinstance(exc, commssl.SSLVerificationFailure), repr(exc)
    message = str(exc)
    assert "alert" in message, message
    for word in words:
        assert word in message, message
