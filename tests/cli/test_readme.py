"""The README's and the documentation's Python examples run as printed, through the command
the pages tell a user to start: ``python -m commssl serve`` (``commssl.serve``).

For each page a ``python -m commssl serve --port 0`` process runs in a fresh temporary directory
(it writes the certificate set the examples use there: root.pem, server-chain.pem, server.key,
client-chain.pem, client.key, crl.pem, revoked-crl.pem, staple.der...), and every ```python block
of the page runs, in order, in one namespace, with that directory as the current directory. The
one change from the printed text: port 8443 becomes the port the command picked (tests run in
parallel, and 8443 may be taken). What the blocks print must contain what the page shows.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import commssl

ROOT = Path(__file__).resolve().parents[2]
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
                              "True True\nlocalhost True", "bytes; a SEQUENCE: True"],
    "guide/contexts.md": ["b'HELLO\\n'", "(False, 20)", "['verify-peer']", "pinned: True",
                          "['verify-peer', 'fail-if-no-peer-cert']\n['verify-peer']"],
    "guide/errors.md": ["SSLVerificationFailure 20 1", "SSLCondition: True OSError: True",
                        "timed out: SSLHandshakeTimeout",
                        "SSLFileNotFound no-such-file.pem True"],
    "guide/tls-features.md": ["True\nlocalhost\nx25519\nb'HELLO\\n'", "refused: SSLFailure",
                              "tls-v1-2 ECDHE-ECDSA-AES128-GCM-SHA256\n('tls-v1-2', 'tls-v1-2')\n"
                              "refused: True\ntls-v1-3 TLS_CHACHA20_POLY1305_SHA256",
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
                            "byte response", "curl: --pinnedpubkey sha256//"],
}


#: The line before a ```python block that is deliberately not type-correct (it shows a
#: TypeError, say): ``<!-- untyped: REASON -->``. ci/doc-examples (``mypy --strict`` over the
#: examples) leaves such a block out; the tests here still run it.
UNTYPED_MARK = re.compile(r"<!-- untyped: (\S[^\n]*?) -->\n")
_BLOCK = re.compile(rf"({UNTYPED_MARK.pattern})?```python\n(.*?)```", re.S)


def _blocks(path: Path) -> list[str]:
    return [code for _, _, code in _BLOCK.findall(path.read_text())]


def _typed_blocks(path: Path) -> list[str]:
    """The blocks of ``path`` that ``mypy --strict`` checks: those not marked untyped."""
    return [code for mark, _, code in _BLOCK.findall(path.read_text()) if not mark]


#: How every page with examples starts: its set-up line, among its first lines.
SETUP = "python -m commssl serve"


class Served:
    """A ``python -m commssl serve --port 0`` process in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.errors = ""  # its stderr, once stopped
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "commssl", "serve", "--port", "0",
                                      "--duration", "120"], cwd=directory, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        lines = []
        for line in self.proc.stdout:  # the ready line names the port (bounded: --duration)
            lines.append(line)
            found = re.search(r"serving TLS on 127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                break
        else:
            self.proc.wait(10)
            raise AssertionError(f"serve did not start: {lines} {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def stop(self) -> str:
        """Ctrl-C it; returns what it printed on stderr (a line per failed connection)."""
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0 and "stopped" in out, (self.proc.returncode, out, err)
        self.errors = err
        return err


@contextlib.contextmanager
def _served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    server = Served(tmp_path)
    try:
        monkeypatch.chdir(tmp_path)
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


def _run(blocks: list[str], port: int, filename: str) -> tuple[str, dict[str, Any]]:
    namespace: dict[str, Any] = {"__name__": "__example__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block.replace("8443", str(port)), filename, "exec"), namespace)
    return out.getvalue(), namespace


def test_untyped_mark_leaves_a_block_out_of_the_type_check(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\na = 1\n```\n<!-- untyped: shows the TypeError -->\n```python\n"
                    "len(1)\n```\n")
    assert _blocks(page) == ["a = 1\n", "len(1)\n"]
    assert _typed_blocks(page) == ["a = 1\n"]


def test_readme_has_the_tour() -> None:
    assert len(_blocks(README)) >= 1


def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _served(tmp_path, monkeypatch) as server:
        printed, _ = _run(_blocks(README), server.port, "README.md")
    assert server.errors == ""  # no connection failed
    assert "(True, 0)" in printed and "['localhost', 'commssl test intermediate']" in printed
    assert "b'HELLO\\n'" in printed
    assert "good\n" in printed  # the pinned client that requires a staple


def test_every_page_with_examples_is_checked() -> None:
    with_examples = {page for page in PAGES if _blocks(DOCS / page)}
    assert with_examples == set(EXPECTED)


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{page}" for page in sorted(EXPECTED))])
def test_every_page_says_first_how_to_start_the_server(page: str) -> None:
    first_lines = "\n".join((ROOT / page).read_text().splitlines()[:12])
    assert SETUP in first_lines, f"{page}: its first lines do not say to run {SETUP!r}"


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_docs_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _served(tmp_path, monkeypatch) as server:
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


def _stray_table_rows(text: str) -> List[str]:
    """Lines that look like table rows but belong to no table (Markdown then renders them
    as literal ``|`` text): a run of ``|`` lines outside code fences whose second line is
    not the ``|---|`` delimiter row."""
    stray: List[str] = []
    run: List[str] = []
    fenced = False
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            run.append(line)
            continue
        if run and not (len(run) >= 2 and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", run[1].strip())):
            stray += run
        run = []
    return stray


def test_every_table_row_is_in_a_table() -> None:
    """porting.md once had two rows after a blank line: rendered as "| a | b |" text."""
    pages = [README] + sorted(DOCS.rglob("*.md"))
    stray = {str(p.relative_to(ROOT)): rows for p in pages if (rows := _stray_table_rows(p.read_text()))}
    assert stray == {}
    assert _stray_table_rows("| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n") == ["| 3 | 4 |"]


def test_default_tls_difference_is_documented_and_true() -> None:
    """open_tcp_stream is plain TCP without ssl_ctx (LispWorks); commssl.anyio.connect and the
    httpx transports default to verified TLS: both pages say so, and the signatures agree."""
    import inspect

    import commssl.anyio
    import commssl.httpx

    assert inspect.signature(commssl.open_tcp_stream).parameters["ssl_ctx"].default is None
    assert inspect.signature(commssl.anyio.connect).parameters["ssl_ctx"].default is True
    for transport in (commssl.httpx.HTTPTransport, commssl.httpx.AsyncHTTPTransport):
        assert inspect.signature(transport).parameters["ssl_ctx"].default is True
    for page in ("getting-started.md", "porting.md"):
        text = " ".join((DOCS / page).read_text().split())
        assert "```{important}" in (DOCS / page).read_text(), page
        for words in ("**plain TCP", "`open_tcp_stream(host, 443)` without `ssl_ctx`",
                      "anyio.connect`", "httpx transports", "verified"):
            assert words.lower() in text.lower(), (page, words)


def test_serve_writes_every_file_the_pages_name() -> None:
    """Every certificate file a page's example reads is one serve writes (dh.pem: the LispWorks
    page makes it itself, with the openssl command it shows; no-such-file.pem: the errors page's
    missing file)."""
    from commssl.serve import FILES

    texts = [README.read_text(), *((DOCS / page).read_text() for page in EXPECTED)]
    named = {name for text in texts for block in re.findall(r"```python\n(.*?)```", text, re.S)
             for name in re.findall(r"[\"']([\w.-]+\.(?:pem|der|key))[\"']", block)}
    assert named - {"dh.pem", "no-such-file.pem"} <= set(FILES) and "staple.der" in named


def test_serve_without_cryptography_says_what_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['cryptography'] = None; from commssl.cli import main; "
            "sys.exit(main(['serve', '--port', '0', '--duration', '1']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "pip install commssl[serve]" in done.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [(["--port", "70000"], "--port"),
                                           (["--duration", "0"], "--duration")])
def test_serve_usage_errors(args: List[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "commssl", "serve", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr and list(tmp_path.iterdir()) == []


def test_serve_stops_by_itself_and_reports_failed_connections(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "commssl", "serve", "--port", "0", "--duration", "3",
                             "--dir", str(tmp_path / "set")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = None
    for line in proc.stdout:
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    assert port is not None
    ctx = commssl.make_ssl_ctx(True, "client")  # the system's roots: the server is not trusted
    with pytest.raises(commssl.SSLVerificationFailure):
        commssl.open_tcp_stream("localhost", port, ssl_ctx=ctx, handshake_timeout=10)
    commssl.destroy_ssl_ctx(ctx)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in out
    assert "a connection failed" in err
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == sorted(
        ["root.pem", "server.pem", "server-chain.pem", "server.key", "client.pem", "client-chain.pem",
         "client.key", "crl.pem", "revoked-crl.pem", "staple.der"])


def test_serve_on_a_port_in_use_exits_3_and_writes_nothing(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "commssl", "serve", "--port", str(port)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert list(tmp_path.iterdir()) == []
