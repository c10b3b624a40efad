"""Build ``floor.c`` with the system C compiler against the libssl commssl uses,
and drive it as a worker process (one command a line, one answer a line)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from .pki import Chain

HERE = Path(__file__).resolve().parent


def _flags() -> List[str]:
    prefix = os.environ.get("OPENSSL_DIR")
    if prefix:  # the same override build_ffi.py honours
        return [f"-I{prefix}/include", f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib", "-lssl", "-lcrypto"]
    try:
        out = subprocess.run(["pkg-config", "--cflags", "--libs", "libssl", "libcrypto"],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        return shlex.split(out)
    except (OSError, subprocess.SubprocessError):
        return ["-lssl", "-lcrypto"]


def build(directory: Path) -> Path:
    """Compile ``floor.c`` into ``directory``; returns the program's path."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) found: the C floor needs one")
    exe = Path(directory) / "floor"
    cmd = [cc, "-O2", "-o", str(exe), str(HERE / "floor.c"), *_flags(), "-lpthread"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"building the C floor failed: {' '.join(cmd)}\n{done.stderr}")
    return exe


class Floor:
    """The running C floor."""

    def __init__(self, exe: Path, chains: Dict[str, Chain]) -> None:
        dirs = [str(chains[k].directory) for k in ("ecdsa", "rsa")]
        self._proc = subprocess.Popen([str(exe), *dirs], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, bufsize=1)
        first = self._readline()
        if not first.startswith("ready "):
            raise RuntimeError(f"the C floor did not start: {first!r}")
        self.openssl = first[len("ready "):].strip()

    def _readline(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the C floor exited (status {self._proc.poll()})")
        return line

    def say(self, *words: object) -> str:
        """One command; its answer line."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(" ".join(str(w) for w in words) + "\n")
        self._proc.stdin.flush()
        return self._readline().strip()

    def ask(self, *words: object) -> float:
        return float(self.say(*words))

    def group(self, key: str) -> str:
        """The key exchange group a server-auth handshake negotiates."""
        return self.say("group", key)

    def handshake(self, key: str, mutual: bool, callback: bool, n: int, threads: int = 1,
                  default_paths: bool = False, cpu: bool = True) -> float:
        """Seconds per handshake: one thread's CPU time, or wall time (``cpu=False``)."""
        clock = "cpu" if cpu else "wall"
        return self.ask("hs", key, int(mutual), int(callback), n, threads, int(default_paths), clock) / 1e9

    def callback_calls(self, key: str, mutual: bool) -> int:
        return int(self.ask("calls", key, int(mutual)))

    def chain(self, key: str, n: int) -> float:
        return self.ask("chain", key, n) / 1e9

    def serial(self, key: str, n: int) -> float:
        return self.ask("serial", key, n) / 1e9

    def sock_handshakes(self, port: int, n: int) -> float:
        """Wall seconds per loopback handshake (+ "h" / "k" + close) with ``floor serve`` on ``port``."""
        return self.ask("sockhs", port, n) / 1e9

    def bulk(self, port: int, total: int) -> float:
        """Wall seconds to send ``total`` bytes in 64 KiB writes to ``floor serve`` and get the answer."""
        return self.ask("sockbulk", port, total) / 1e9

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self, timeout: Optional[float] = 10) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write("quit\n")
                self._proc.stdin.close()
                self._proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait(timeout)
