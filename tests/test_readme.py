"""The README's and the documentation's Python examples run as written, against local servers.

Every ```python block of README.md and of each docs/**/*.md page runs, in order, in one
namespace per page, in a temporary directory holding the test PKI under the names the examples
use (root.pem, server-chain.pem, server.key, server.pem, client-chain.pem, client.key), and the
revocation material of the revocation guide: crl.pem (the root's and the intermediate's CRLs,
nothing revoked), revoked-crl.pem (the server's certificate revoked) and staple.der (a good OCSP
response for the server's certificate). Port 8443 in an example is a local commssl server that
answers each line with the line in upper case, stapling staple.der for the clients that ask, and
an HTTP GET (keep-alive) with ``200`` and ``hello <path>`` (for the httpx examples).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

import commssl
from peers import PKI
from revocation_pki import make_crl, ocsp_response

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")) if DOCS.is_dir() else []

#: What each page's examples print (besides running without an exception and releasing
#: every certificate they copy): a page with examples must be listed here.
EXPECTED: Dict[str, List[str]] = {
    "getting-started.md": ["tls-v1-3", "(True, 0)", "b'HELLO\\n'",
                           "[('DNS', 'localhost'), ('IP Address', '127.0.0.1')]"],
    "guide/verification.md": ["2 True commssl test root", "0 True localhost", "(True, 0)",
                              "(False, 20)", "verify code 20 at depth 1", "['verify-peer']",
                              "client: commssl client", "['verify-peer', 'fail-if-no-peer-cert']",
                              "rejected: certificate verify failed at depth 0"],
    "guide/certificates.md": ["localhost 387165715252267757836693082728079159041",
                              "commssl test intermediate 1001", "kept: localhost True",
                              "was already released", "outstanding: 0",
                              "('serial-number', 387165715252267757836693082728079159041)",
                              "is borrowed; only owned pointers can be released", "kept: localhost\n",
                              "bytes; a SEQUENCE: True"],
    "guide/contexts.md": ["b'HELLO\\n'", "(False, 20)", "['verify-peer']", "pinned: True",
                          "['verify-peer', 'fail-if-no-peer-cert']\n['verify-peer']"],
    "guide/errors.md": ["SSLVerificationFailure 20 1", "SSLCondition: True OSError: True",
                        "timed out: SSLHandshakeTimeout"],
    "guide/tls-features.md": ["True\nlocalhost\nx25519\nb'HELLO\\n'", "refused: SSLFailure",
                              "(True, 0)\nb'FROM MEMORY\\n'", "client: http/1.1 server: b'http/1.1\\n'",
                              "['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', "
                              "'EXPORTER_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', "
                              "'SERVER_TRAFFIC_SECRET_0']",
                              "resumed: True (True, 0)"],
    "guide/lispworks.md": ["tls-v1-2", "refused: set_ssl_ctx_options: unknown option 'no_tls_v1_3'",
                           "True 2048 True", "True\nkey bits: 256",
                           "b'CHOSEN\\n' (True, 0)\nb'CHOSEN\\n' (True, 0)\n['localhost']"],
    "guide/security.md": ["localhost (True, 0)", "refused: tlsext_host_name is needed", "b'NAMED\\n'",
                          "wrong name: 62", "opt-out: (True, 0)"],
    "guide/threads.md": ["4 threads, 4 x (True, 0)", "outstanding: 0"],
    "guide/async.md": ["b'220 ready\\r\\n' None", "tls-v1-3 (True, 0)", "b'secret hello\\r\\n'",
                       "b'bye, in clear\\r\\n' None", "b'HELLO FROM ANYIO\\n'",
                       "TLSv1.3 False\n((('commonName', 'localhost'),),)",
                       "200 HTTP/1.1 hello /pinned", "refused: SSLVerificationFailure",
                       "async: 200 hello /async"],
    "guide/revocation.md": ["not revoked: (True, 0)", "revoked: 23 at depth 0 certificate revoked",
                            "good True", "b'PINNED\\n'", "errors: [(1, 20, 'CN=commssl test intermediate')]",
                            "sent: ['localhost', 'commssl test intermediate']",
                            "built: ['localhost', 'commssl test intermediate', 'commssl test root']",
                            "byte response", "pin: sha256//"],
}


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


class EchoServer:
    """A commssl server on 127.0.0.1 until ``stop()``: each connection in its own thread,
    answering one line with the line in upper case."""

    def __init__(self, ssl_ctx: commssl.SSLCtxPointer) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.ctx = ssl_ctx
        self.errors: List[BaseException] = []
        self.handlers: List[threading.Thread] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:  # timeout: look at the stop flag again
                continue
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()
            self.handlers.append(t)

    def _serve(self, sock: socket.socket) -> None:
        try:
            with commssl.create_ssl_socket_stream(sock, self.ctx, handshake_timeout=10) as stream:
                line = stream.readline()
                while line.startswith(b"GET "):  # HTTP/1.1, keep-alive: for the httpx examples
                    path = line.split()[1]
                    while line not in (b"\r\n", b""):
                        line = stream.readline()
                    stream.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nhello %s"
                                 % (len(path) + 6, path))
                    stream.flush()
                    line = stream.readline()
                if line:
                    stream.write(line.upper())
        except BaseException as exc:  # a client that rejected us, or was rejected: shown by the page
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.listener.close()
        for t in self.handlers:
            t.join(10)
        assert not any(t.is_alive() for t in [self.thread, *self.handlers]), "echo server did not stop"


@contextlib.contextmanager
def _example_dir(pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 server_ctx: Callable[..., Any]) -> Iterator[EchoServer]:
    for name, source in (("root.pem", pki.root_cert), ("server-chain.pem", pki.server_chain),
                         ("server.key", pki.server_key), ("server.pem", pki.server_cert),
                         ("client-chain.pem", pki.client_chain), ("client.key", pki.client_key)):
        shutil.copy(source, tmp_path / name)
    crls = tmp_path / "crls"
    (tmp_path / "crl.pem").write_bytes(
        make_crl(crls, pki.intermediate_cert, pki.intermediate_key, name="inter").read_bytes()
        + make_crl(crls, pki.root_cert, pki.root_key, name="root").read_bytes())
    revoked = make_crl(crls, pki.intermediate_cert, pki.intermediate_key, [pki.server_cert], name="revoked")
    shutil.copy(revoked, tmp_path / "revoked-crl.pem")
    staple = ocsp_response(pki, "good")
    (tmp_path / "staple.der").write_bytes(staple)
    monkeypatch.chdir(tmp_path)
    ctx = server_ctx()
    commssl.set_ocsp_staple(ctx, staple)
    server = EchoServer(ctx)
    try:
        yield server
    finally:
        server.stop()


def _run(blocks: list[str], port: int, filename: str) -> tuple[str, dict[str, Any]]:
    namespace: dict[str, Any] = {"__name__": "__example__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block.replace("8443", str(port)), filename, "exec"), namespace)
    return out.getvalue(), namespace


def test_readme_has_the_tour() -> None:
    assert len(_blocks(README)) >= 1


def test_readme_examples_run(pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             server_ctx: Callable[..., Any]) -> None:
    with _example_dir(pki, tmp_path, monkeypatch, server_ctx) as server:
        printed, _ = _run(_blocks(README), server.port, "README.md")
    assert server.errors == []
    assert "(True, 0)" in printed and "['localhost', 'commssl test intermediate']" in printed
    assert "b'HELLO\\n'" in printed
    assert "good\n" in printed  # the pinned client that requires a staple


def test_every_page_with_examples_is_checked() -> None:
    with_examples = {page for page in PAGES if _blocks(DOCS / page)}
    assert with_examples == set(EXPECTED)


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_docs_examples_run(page: str, pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           server_ctx: Callable[..., Any]) -> None:
    with _example_dir(pki, tmp_path, monkeypatch, server_ctx) as server:
        printed, _ = _run(_blocks(DOCS / page), server.port, f"docs/{page}")
    for text in EXPECTED[page]:
        assert text in printed, f"{page}: {text!r} not printed; it printed:\n{printed}"


def test_porting_names_exist() -> None:
    """Every ``commssl.NAME`` and ``commssl.lib.NAME`` the porting page gives exists."""
    text = (DOCS / "porting.md").read_text()
    for name in re.findall(r"`commssl\.lib\.(\w+)", text):
        assert hasattr(commssl.lib, name), f"porting.md: commssl.lib.{name} does not exist"
    names = re.findall(r"`commssl\.(?!lib\.)(\w+)", text)
    assert len(names) > 50
    for name in names:
        assert name in commssl.__all__, f"porting.md: commssl.{name} is not public"
