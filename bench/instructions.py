"""Instructions per in-memory handshake, counted by callgrind: a measure that
other processes on a shared machine cannot disturb (valgrind counts the same
total for the same program and inputs whatever the load).

Each contender runs N1 and then N2 handshakes (or calls) in a fresh process under
``valgrind --tool=callgrind``; (count(N2) - count(N1)) / (N2 - N1) is the cost of
one handshake (call) without the start-up. The drivers that run inside valgrind:

    python -m bench.instructions LIB KEY MUTUAL N CHAINS_DIR [CALLBACK]
    python -m bench.instructions call OP N CHAIN_DIR [CHAIN_LENGTH]

``call`` OPs, on the client side after one handshake with the chain in
CHAIN_DIR (``bench.pki.load_chain``): ``data`` (commssl ``get_certificate_data``
of the leaf), ``getpeercert`` (CPython ``SSLObject.getpeercert()``) and
``chain`` (commssl ``ssl_connection_copy_peer_certificates`` then
``release_certificates_vector``; CHAIN_LENGTH: the certificates the server
must have sent). The loop calls the library directly, so a count includes one
loop iteration's few bytecodes besides the call.
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


def per_call(op: str, n1: int, n2: int, chain_dir: Path, scratch: Optional[Path] = None,
             chain_length: int = 0) -> float:
    """Instructions per call of a ``call`` driver OP (see the module's docstring)."""
    counts = []
    for n in (n1, n2):
        cmd = [sys.executable, "-m", "bench.instructions", "call", op, str(n), str(chain_dir),
               str(chain_length)]
        counts.append(count(cmd, "", scratch))
    return (counts[1] - counts[0]) / (n2 - n1)


def floor_per_call(floor_exe: Path, dirs: Sequence[Path], command: str, n1: int, n2: int,
                   scratch: Optional[Path] = None) -> float:
    """Instructions per iteration of the C floor's ``command`` (``chain ecdsa``, ``serial ecdsa``),
    the floor reading its ECDSA and RSA chains from ``dirs``."""
    cmd = [str(floor_exe), *(str(d) for d in dirs)]
    counts = [count(cmd, f"{command} {n}\nquit\n", scratch) for n in (n1, n2)]
    return (counts[1] - counts[0]) / (n2 - n1)


def _drive_calls(op: str, n: int, chain_dir: Path, chain_length: int) -> None:
    from .pki import load_chain

    chain = load_chain(chain_dir, chain_dir.name.split("-")[0])
    if op == "getpeercert":
        from . import lib_cpython

        peer = lib_cpython.PeerCalls(chain).client.getpeercert
        peer()
        for _ in range(n):
            peer()
        return
    import commssl

    from . import lib_commssl

    calls = lib_commssl.PeerCalls(chain)
    if chain_length and calls.chain_length() != chain_length:
        raise SystemExit(f"the server sent {calls.chain_length()} certificates, not {chain_length}")
    if op == "data":
        data, leaf = commssl.get_certificate_data, calls.leaf
        data(leaf)
        for _ in range(n):
            data(leaf)
    elif op == "chain":
        copy, release, client = (commssl.ssl_connection_copy_peer_certificates,
                                 commssl.release_certificates_vector, calls.client)
        release(copy(client))
        for _ in range(n):
            release(copy(client))
    else:
        raise SystemExit(f"unknown call {op!r}")
    calls.close()


def _drive(lib: str, key: str, mutual: bool, n: int, chains_dir: Path, callback: bool) -> None:
    from .pki import KEY_TYPES, load_chain

    assert key in KEY_TYPES
    chain = load_chain(chains_dir / key, key)
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


if __name__ == "__main__" and sys.argv[1] == "call":
    _drive_calls(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]),
                 int(sys.argv[5]) if len(sys.argv) > 5 else 0)
elif __name__ == "__main__":
    _drive(sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), Path(sys.argv[5]),
           len(sys.argv) > 6 and sys.argv[6] == "1")
