"""Shared fixtures. Peers live in ``peers.py``, small helpers in ``helpers.py`` (import them
from tests). Test files sit in folders that mirror the package (core, config, io, frontends,
cli, packaging, tooling) without ``__init__.py``: pytest's default import mode puts each
folder on ``sys.path``, so test file names are unique across folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # make ``import peers`` work from tests

from peers import PKI, make_pki  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """The test PKI, generated once per xdist worker in its own temp dir."""
    return make_pki(tmp_path_factory.mktemp("pki"))


# -- commssl fixtures ---------------------------------------------------------------

import gc  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable, Iterator, List, Optional  # noqa: E402

import commssl  # noqa: E402


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test hands back every owned X509Pointer it was given."""
    gc.collect()
    start = commssl.outstanding_certificates()
    yield
    gc.collect()
    assert commssl.outstanding_certificates() == start, "X509Pointer(s) left unreleased"


@pytest.fixture
def server_ctx(pki: PKI) -> Iterator[Callable[..., commssl.SSLCtxPointer]]:
    """Factory of server contexts (leaf + intermediate chain); destroyed after the test."""
    made: List[commssl.SSLCtxPointer] = []

    def make(chain: Any = None, key: Any = None, cafile: Any = None) -> commssl.SSLCtxPointer:
        ctx = commssl.make_ssl_ctx(True, "server")
        commssl.ssl_ctx_use_certificate_chain_file(ctx, chain or pki.server_chain)
        commssl.ssl_ctx_use_privatekey_file(ctx, key or pki.server_key)
        if cafile is not None:
            commssl.ssl_ctx_load_verify_locations(ctx, cafile)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        commssl.destroy_ssl_ctx(ctx)


@pytest.fixture
def client_ctx(pki: PKI) -> Iterator[Callable[..., commssl.SSLCtxPointer]]:
    """Factory of client contexts trusting the test root (``cafile``); destroyed after the test."""
    made: List[commssl.SSLCtxPointer] = []

    def make(cafile: Any = "root", chain: Any = None, key: Any = None) -> commssl.SSLCtxPointer:
        ctx = commssl.make_ssl_ctx(True, "client")
        if cafile is not None:
            commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert if cafile == "root" else cafile)
        if chain is not None:
            commssl.ssl_ctx_use_certificate_chain_file(ctx, chain)
            commssl.ssl_ctx_use_privatekey_file(ctx, key)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        commssl.destroy_ssl_ctx(ctx)


@dataclass
class CommsslServer:
    """A commssl server thread: ``port``; per connection the handler's result or exception."""

    port: int
    results: List[Any] = field(default_factory=list)
    errors: List[BaseException] = field(default_factory=list)
    thread: Optional[threading.Thread] = None

    def join(self, timeout: float = 10.0) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "commssl server thread did not finish"


@pytest.fixture
def commssl_server() -> Iterator[Callable[..., CommsslServer]]:
    """Start a commssl server on 127.0.0.1 that accepts ``count`` connections, wraps each
    with ``create_ssl_socket_stream(sock, ssl_ctx, **kw)`` and runs ``handler(stream)``."""
    servers: List[CommsslServer] = []

    def start(ssl_ctx: Any, handler: Callable[[Any], Any] = lambda s: s.write(s.readline()),
              count: int = 1, accept_timeout: float = 10.0, **kw: Any) -> CommsslServer:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(count)
        lsock.settimeout(accept_timeout)
        kw.setdefault("handshake_timeout", 10.0)
        server = CommsslServer(lsock.getsockname()[1])

        def run() -> None:
            try:
                for _ in range(count):
                    try:
                        sock, _ = lsock.accept()
                    except OSError as exc:
                        server.errors.append(exc)
                        return
                    try:
                        with commssl.create_ssl_socket_stream(sock, ssl_ctx, **kw) as stream:
                            server.results.append(handler(stream))
                    except BaseException as exc:  # recorded for the test to assert on
                        server.errors.append(exc)
            finally:
                lsock.close()

        server.thread = threading.Thread(target=run, daemon=True)
        server.thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.join()
