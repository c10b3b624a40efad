"""Inputs a fuzz target once failed on, kept in ``tests/fuzz_inputs/TARGET/`` and fed again
to that target (fuzz/targets.py) in its own interpreter, so that a crash fails the test,
not the run. A ``tls_server`` input is everything a client sent: the server must refuse
the handshake with an SSLCondition, leak nothing and leave no error queued."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import commssl

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
INPUTS = Path(__file__).resolve().parents[1] / "fuzz_inputs"
sys.path.insert(0, str(FUZZ))
import targets  # noqa: E402

# The target's own checks (certificates released, the error queue empty) run as in the
# fuzzer; the failures it swallows are recorded, to tell a refusal from an acceptance.
REPLAY = """
import json, sys
sys.path.insert(0, sys.argv[1])
import targets
failures = []
raise_failure = targets.raise_failure
def recorded(sslp, err, where):
    try:
        raise_failure(sslp, err, where)
    except Exception as exc:
        failures.append([where, type(exc).__name__, str(exc)])
        raise
targets.raise_failure = recorded
targets.TARGETS[sys.argv[2]](open(sys.argv[3], "rb").read())
print(json.dumps(failures))
"""


@pytest.mark.parametrize("path", sorted(INPUTS.glob("*/*")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fuzz_input_is_refused_without_a_crash(path: Path, tmp_path: Path) -> None:
    target = path.parent.name
    # --plain: targets.py imports no atheris; the PKI goes to this test's directory.
    env = dict(os.environ, COMMSSL_FUZZ_PKI=str(tmp_path / "pki"), PYTHONFAULTHANDLER="1")
    out = subprocess.run([sys.executable, "-c", REPLAY, str(FUZZ), target, str(path), "--plain"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    failures = json.loads(out.stdout.splitlines()[-1])
    if target == "tls_server":
        assert failures and failures[0][0] == "handshake", failures  # refused, not accepted
        for _, name, _ in failures:
            assert issubclass(getattr(commssl, name), commssl.SSLCondition), failures


def test_every_fuzz_input_names_its_target() -> None:
    """An input the fuzzer writes (``crash-plain-*`` in its working directory) belongs here,
    under the target that failed on it."""
    found = {p.parent.name for p in INPUTS.glob("*/*")}
    assert found and found <= set(targets.TARGETS), found
