"""pyOpenSSL on the system's OpenSSL, in a worker process.

pyOpenSSL's wheel runs on the OpenSSL that cryptography's wheel bundles. For a
like-with-like column the benchmark also runs pyOpenSSL and cryptography built
on the system OpenSSL (Debian's python3-openssl and python3-cryptography), put
first on ``sys.path`` of a worker process running this interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

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


class PyOpenSSLWorker:
    """``bench.lib_pyopenssl`` in a process that imports the system's pyOpenSSL."""

    def __init__(self, site: Path, chains_dir: Path, scratch: Path) -> None:
        # Only those two packages from the system site: the rest stays this venv's.
        links = scratch / "system-pyopenssl"
        links.mkdir(parents=True, exist_ok=True)
        for name in ("OpenSSL", "cryptography"):
            link = links / name
            if not link.exists():
                link.symlink_to(site / name, target_is_directory=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(links), str(REPO)])
        self._proc = subprocess.Popen([sys.executable, "-m", "bench.lib_pyopenssl", str(chains_dir)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env=env,
                                      text=True, bufsize=1)
        first = self._read()
        if "ready" not in first:
            self.close()
            raise RuntimeError(f"the system pyOpenSSL worker did not start: {first}")
        self.info: Dict[str, str] = first["ready"]

    def _read(self) -> Dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the system pyOpenSSL worker exited (status {self._proc.poll()})")
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def _ask(self, cmd: Dict[str, Any]) -> Any:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(cmd) + "\n")
        self._proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"system pyOpenSSL worker: {answer['error']}")
        return answer["value"]

    def run(self, **cmd: Any) -> float:
        return float(self._ask(cmd))

    def group(self, key: str) -> Optional[str]:
        """The key exchange group its server-auth handshake negotiates."""
        value = self._ask({"op": "group", "key": key})
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
