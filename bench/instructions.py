"""Instructions per in-memory handshake, counted by callgrind: a measure that
other processes on a shared machine cannot disturb (valgrind counts the same
total for the same program and inputs whatever the load).

Each contender runs N1 and then N2 handshakes in a fresh process under
``valgrind --tool=callgrind``; (count(N2) - count(N1)) / (N2 - N1) is the cost of
one handshake without the start-up. ``python -m bench.instructions LIB KEY
MUTUAL N CHAINS_DIR`` is the driver that runs inside valgrind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def available() -> bool:
    return shutil.which("valgrind") is not None


def count(cmd: List[str], stdin: str = "", scratch: Optional[Path] = None,
          extra_path: Sequence[str] = ()) -> int:
    """Instructions ``cmd`` executes under callgrind (``extra_path`` first on ``PYTHONPATH``)."""
    out = Path(scratch or tempfile.gettempdir()) / f"callgrind.{os.getpid()}.out"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*extra_path, str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts, so the same count, every run
    done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                          input=stdin, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    try:
        out.unlink()
    except OSError:
        pass
    m = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or m is None:
        raise RuntimeError(f"callgrind run failed ({done.returncode}): {' '.join(cmd)}\n"
                           f"{done.stderr[-2000:]}")
    return int(m.group(1))


def per_handshake(lib: str, key: str, mutual: bool, n1: int, n2: int, chains_dir: Path,
                  floor_exe: Optional[Path] = None, scratch: Optional[Path] = None,
                  callback: bool = False, extra_path: Sequence[str] = ()) -> float:
    """Instructions per handshake for ``lib`` (``commssl``, ``cpython``, ``pyopenssl`` or ``floor``),
    with a verify callback that returns preverify_ok when ``callback``."""
    counts = []
    for n in (n1, n2):
        if lib == "floor":
            assert floor_exe is not None
            cmd = [str(floor_exe), str(chains_dir / "ecdsa"), str(chains_dir / "rsa")]
            counts.append(count(cmd, f"hs {key} {int(mutual)} {int(callback)} {n} 1 0 cpu\nquit\n", scratch))
        else:
            cmd = [sys.executable, "-m", "bench.instructions", lib, key, str(int(mutual)), str(n),
                   str(chains_dir), str(int(callback))]
            counts.append(count(cmd, "", scratch, extra_path))
    return (counts[1] - counts[0]) / (n2 - n1)


def _drive(lib: str, key: str, mutual: bool, n: int, chains_dir: Path, callback: bool) -> None:
    from .pki import KEY_TYPES, Chain

    assert key in KEY_TYPES
    d = chains_dir / key
    chain = Chain(key, d, d / "root.pem", d / "server-chain.pem", d / "server.key", d / "client-chain.pem",
                  d / "client.key")
    if lib == "commssl":
        from . import lib_commssl as mod
    elif lib == "cpython":
        from . import lib_cpython as mod  # type: ignore[no-redef]
    elif lib == "pyopenssl":
        from . import lib_pyopenssl as mod  # type: ignore[no-redef]
    else:
        raise SystemExit(f"unknown contender {lib!r}")
    hs = mod.Handshakes(chain, mutual, True) if callback else mod.Handshakes(chain, mutual)
    hs.once()  # lazy initialisation belongs to the start-up, not to a handshake
    for _ in range(n):
        hs.once()


if __name__ == "__main__":
    _drive(sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), Path(sys.argv[5]),
           len(sys.argv) > 6 and sys.argv[6] == "1")
