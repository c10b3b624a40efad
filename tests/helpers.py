"""Small helpers the commssl tests share: client connections and what servers report."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import hashlib
from pathlib import Path
from typing import Any, Awaitable, List, Optional, Tuple

import pytest

import commssl
from peers import HOST, WAIT

HS = WAIT  # a test connection's handshake and I/O timeout: generous, only a hang runs into it
# The bound on a misbehaving callback or peer whose failure a test times: it must come well before HS.
QUICK_HS = 5.0
BACKENDS = ["asyncio", "trio"]  # the anyio backends every commssl.anyio test runs on


def bundled_openssl() -> bool:
    """Whether commssl runs on an OpenSSL its wheel carries (auditwheel and delvewheel put
    it in commssl.libs/ beside the package, delocate in commssl/.dylibs/), which may be
    another OpenSSL than the system's that a test's own C code compiles against."""
    package = Path(commssl.__file__).parent
    return (package.parent / "commssl.libs").is_dir() or (package / ".dylibs").is_dir()


def connect(port: int, ctx: Any, host: str = HOST, *, wait: float = HS, **kw: Any) -> commssl.SocketStream:
    """A commssl client connection to ``host`` (127.0.0.1), its handshake and I/O bounded by ``wait``."""
    kw.setdefault("handshake_timeout", wait)
    kw.setdefault("timeout", wait)
    return commssl.open_tcp_stream(host, port, ssl_ctx=ctx, **kw)


def connect_localhost(port: int, ctx: Any, **kw: Any) -> commssl.SocketStream:
    """``connect`` naming the server ``localhost`` (SNI and the name checked): the test PKI's name."""
    kw.setdefault("tlsext_host_name", "localhost")
    return connect(port, ctx, **kw)


def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    """Run a coroutine on a new event loop, bounded."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


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


def fingerprint(der_bytes: bytes) -> str:
    """The SHA-256 fingerprint as ``openssl x509 -fingerprint -sha256`` prints it."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der_bytes).digest())


@functools.cache
def libcrypto() -> ctypes.CDLL:
    """A ctypes binding of the very libcrypto the compiled module loaded (Linux: /proc/self/maps)."""
    with open("/proc/self/maps") as maps:
        paths = [line.split()[-1] for line in maps if "libcrypto" in line]
    crypto = ctypes.CDLL(paths[0] if paths else "libcrypto.so.3")
    crypto.i2d_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    crypto.i2d_X509.restype = ctypes.c_int
    crypto.X509_get_version.argtypes = [ctypes.c_void_p]
    crypto.X509_get_version.restype = ctypes.c_long
    return crypto


def der(cert: commssl.X509Pointer) -> bytes:
    """DER of a certificate through ctypes on ``cert.address`` (not through commssl)."""
    size = libcrypto().i2d_X509(cert.address, None)
    assert size > 0
    buf = ctypes.create_string_buffer(size)
    out = ctypes.c_void_p(ctypes.addressof(buf))  # i2d advances this pointer
    assert libcrypto().i2d_X509(cert.address, ctypes.byref(out)) == size
    return buf.raw
