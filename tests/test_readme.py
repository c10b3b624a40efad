"""The README's Python examples run as written, against a local commssl server."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

import commssl
from peers import PKI

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_the_tour() -> None:
    assert len(_blocks()) >= 5


def test_readme_examples_run(pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             server_ctx: Callable[..., Any], commssl_server: Callable[..., Any]) -> None:
    for name, source in (("root.pem", pki.root_cert), ("server-chain.pem", pki.server_chain),
                         ("server.key", pki.server_key), ("server.pem", pki.server_cert)):
        shutil.copy(source, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    blocks = _blocks()
    uses_server = [b for b in blocks if "8443" in b]
    server = commssl_server(server_ctx(), lambda s: s.write(s.readline().upper()), count=len(uses_server))
    namespace: dict[str, Any] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block.replace("8443", str(server.port)), "README.md", "exec"), namespace)
    server.join()
    assert server.errors == []
    printed = out.getvalue()
    assert "tls-v1-3" in printed and "(True, 0)" in printed          # the client example
    assert "b'HELLO\\n'" in printed                                      # echo, blocking and asyncio
    assert "('subject-common-name', 'localhost')" in printed            # the copy/release example
    assert "was already released" in printed
    assert "(False, 20)" in printed                                      # the pinning example
    assert commssl.get_verification_mode(namespace["server"]) == ["verify-peer", "fail-if-no-peer-cert"]
