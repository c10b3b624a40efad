"""Contenders in worker processes of this interpreter, answering JSON commands.

pyOpenSSL's wheel runs on the OpenSSL that cryptography's wheel bundles. For a
like-with-like column the benchmark also runs pyOpenSSL and cryptography built
on the system OpenSSL (Debian's python3-openssl and python3-cryptography), put
first on ``sys.path`` of a worker process. The same way, commssl's repaired wheel
(which carries its own OpenSSL) runs unpacked first on a worker's ``sys.path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .pki import KEY_TYPES, Chain, load_chain

REPO = Path(__file__).resolve().parent.parent
SYSTEM_SITE_DIRS = ("/usr/lib/python3/dist-packages",)


def system_pyopenssl_site() -> Optional[Path]:
    """The directory holding a pyOpenSSL and cryptography built on the system OpenSSL, if any."""
    override = os.environ.get("COMMSSL_BENCH_SYSTEM_SITE")
    for d in ([override] if override else []) + list(SYSTEM_SITE_DIRS):
        p = Path(d)
        if (p / "OpenSSL" / "SSL.py").exists() and (p / "cryptography").is_dir():
            return p
    return None


def chains_in(directory: Path) -> Dict[str, Chain]:
    """The chains ``pki.make_chains`` wrote into ``directory``."""
    return {kt: load_chain(directory / kt, kt) for kt in KEY_TYPES}


class Commands:
    """The worker's measurements, by command, for a contender module (``lib_pyopenssl``,
    ``lib_commssl``: its ``Handshakes``, ``PeerCalls``, ``group`` and ``describe``)."""

    def __init__(self, lib: Any, chains: Dict[str, Chain]) -> None:
        self.lib, self.chains = lib, chains
        self.handshakes: Dict[Tuple[Any, ...], Any] = {}
        self.peers: Dict[str, Any] = {}

    def hs(self, key: str, mutual: bool, callback: bool, groups: Optional[List[str]]) -> Any:
        k = (key, mutual, callback, tuple(groups or ()))
        if k not in self.handshakes:
            self.handshakes[k] = self.lib.Handshakes(self.chains[key], mutual, callback, groups=groups)
        return self.handshakes[k]

    def peer(self, key: str) -> Any:
        if key not in self.peers:
            self.peers[key] = self.lib.PeerCalls(self.chains[key])
        return self.peers[key]

    def run(self, cmd: Dict[str, Any]) -> Any:
        from .timing import cpu_per_op, per_op_threads

        op = cmd["op"]
        if op == "describe":
            return self.lib.describe()
        if op == "group":
            return self.lib.group(self.chains[cmd["key"]], cmd.get("groups"))
        if op == "hs":
            h = self.hs(cmd["key"], cmd["mutual"], cmd["callback"], cmd.get("groups"))
            if cmd.get("cpu", True):
                return cpu_per_op(h.once, cmd["n"])
            return per_op_threads(h.once, cmd["n"], cmd.get("threads", 1))
        if op in ("chain", "serial", "data"):
            return cpu_per_op(getattr(self.peer(cmd["key"]), op), cmd["n"])
        raise ValueError(f"unknown op {op!r}")


def serve(run: Callable[[Dict[str, Any]], Any], ready: Any) -> None:
    """The worker's side: say ``ready``, then answer each command line with ``run``'s value."""
    print(json.dumps({"ready": ready}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            print(json.dumps({"value": run(cmd)}), flush=True)
        except Exception as exc:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)


class Worker:
    """``python -m MODULE CHAINS_DIR`` with ``paths`` first on its ``sys.path``."""

    def __init__(self, module: str, paths: List[Path], chains_dir: Path, what: str) -> None:
        self.what = what
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(REPO)])
        self._proc = subprocess.Popen([sys.executable, "-m", module, str(chains_dir)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env=env,
                                      text=True, bufsize=1)
        first = self._read()
        if "ready" not in first:
            self.close()
            raise RuntimeError(f"the {what} worker did not start: {first}")
        self.info: Dict[str, str] = first["ready"]

    def _read(self) -> Dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.what} worker exited (status {self._proc.poll()})")
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def _ask(self, cmd: Dict[str, Any]) -> Any:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(cmd) + "\n")
        self._proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"{self.what} worker: {answer['error']}")
        return answer["value"]

    def run(self, **cmd: Any) -> float:
        return float(self._ask(cmd))

    def group(self, key: str, groups: Optional[List[str]] = None) -> Optional[str]:
        """The key exchange group its server-auth handshake negotiates."""
        value = self._ask({"op": "group", "key": key, "groups": groups})
        return None if value is None else str(value)

    def close(self, timeout: float = 10) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self._proc.stdin.close()
                self._proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait(timeout)


class PyOpenSSLWorker(Worker):
    """``bench.lib_pyopenssl`` in a process that imports the system's pyOpenSSL."""

    def __init__(self, site: Path, chains_dir: Path, scratch: Path) -> None:
        # Only those two packages from the system site: the rest stays this venv's.
        links = scratch / "system-pyopenssl"
        links.mkdir(parents=True, exist_ok=True)
        for name in ("OpenSSL", "cryptography"):
            link = links / name
            if not link.exists():
                link.symlink_to(site / name, target_is_directory=True)
        super().__init__("bench.lib_pyopenssl", [links], chains_dir, "system pyOpenSSL")


def find_wheel() -> Optional[Path]:
    """commssl's repaired wheel for this interpreter (ci/build-wheel's wheelhouse/), if any:
    ``COMMSSL_BENCH_WHEEL`` names another."""
    override = os.environ.get("COMMSSL_BENCH_WHEEL")
    if override:
        return Path(override)
    found = sorted((REPO / "wheelhouse").glob("commssl-*-manylinux*.whl"))
    return found[-1] if found else None


class WheelWorker(Worker):
    """``bench.lib_commssl`` in a process that imports commssl from its wheel (unpacked)."""

    def __init__(self, wheel: Path, chains_dir: Path, scratch: Path) -> None:
        import zipfile

        site = scratch / "commssl-wheel"
        if not site.exists():
            with zipfile.ZipFile(wheel) as z:
                z.extractall(site)
            for so in site.rglob("*.so*"):  # zipfile drops the mode bits
                so.chmod(0o755)
        super().__init__("bench.lib_commssl", [site], chains_dir, f"commssl wheel {wheel.name}")
        if not self.info.get("commssl_file", "").startswith(str(site)):
            self.close()
            raise RuntimeError(f"the wheel worker imported commssl from {self.info.get('commssl_file')}")
