"""The race harness: scenarios that pit an operation against a release, destroy,
close or detach in another thread, each run in its own interpreter so that a
crash (a signal), a hang or a leak fails the test instead of killing the run.

A scenario is Python source. It runs with ``tests/`` on ``sys.path`` (so it can
``import peers, racing``) and ends by calling ``racing.report(**facts)``; the
test gets those facts back from ``run_scenario`` and asserts on them.
Inside a scenario, ``racing.race(op, rival, rounds)`` runs ``op`` and ``rival``
in two threads that start together after a random delay of up to ``jitter``
seconds, ``rounds`` times, and counts the outcomes (the exception class names).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

HERE = Path(__file__).resolve().parent
_MARK = "RACING-RESULT "


class ScenarioFailed(AssertionError):
    """The scenario's interpreter crashed, hung, or exited with an error."""


def run_scenario(source: str, *, timeout: float = 120.0, env: Optional[Dict[str, str]] = None,
                 args: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """Run ``source`` in a fresh interpreter; the facts it reported, or ``ScenarioFailed``."""
    # The scenario ends with os._exit: its daemon threads (servers) still hold contexts and
    # connections, which LeakSanitizer would report at a normal exit. Memory errors are
    # reported when they happen; leaks are checked by the in-process suite and by the
    # outstanding-certificate counts the scenarios report.
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r})\n" + textwrap.dedent(source)
            + "\nimport os, sys; sys.stdout.flush(); sys.stderr.flush(); os._exit(0)\n")
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONFAULTHANDLER", "1")  # a crash prints every thread's stack
    full_env.update(env or {})
    try:
        proc = subprocess.run([sys.executable, "-X", "dev", "-c", code, *args], capture_output=True,
                              text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as exc:
        raise ScenarioFailed(f"scenario hung (> {timeout} s); stderr:\n{exc.stderr}") from None
    facts = [line[len(_MARK):] for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not facts:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        raise ScenarioFailed(f"scenario failed ({how}); stdout:\n{proc.stdout[-4000:]}\n"
                             f"stderr:\n{proc.stderr[-8000:]}")
    result: Dict[str, Any] = json.loads(facts[-1])
    result["stderr"] = proc.stderr
    return result


def report(**facts: Any) -> None:
    """Hand ``facts`` (JSON-able) back to ``run_scenario``."""
    sys.stdout.write(_MARK + json.dumps(facts, default=str) + "\n")
    sys.stdout.flush()


def outcome(fn: Callable[[], Any]) -> str:
    """``"ok"``, or the class name of what ``fn`` raised."""
    try:
        fn()
        return "ok"
    except BaseException as exc:  # noqa: BLE001 - a scenario counts every outcome
        return type(exc).__name__


def _side(counts: Counter, fn: Callable[..., Any], state: Any, setup: Any,
          start: threading.Barrier, delay: float) -> None:
    start.wait()
    time.sleep(delay)
    counts[outcome(lambda: fn(state) if setup is not None else fn())] += 1


def race(op: Callable[[], Any], rival: Callable[[], Any], rounds: int, *,
         setup: Optional[Callable[[], Any]] = None, jitter: float = 0.002,
         seed: int = 0) -> Dict[str, Counter]:
    """Run ``op`` against ``rival`` ``rounds`` times, each pair released together
    after a random delay; ``setup(round)`` (if given) runs first each round and its
    result is passed to both. Returns the outcome counts of each side."""
    rng = random.Random(seed)
    counts: Dict[str, Counter] = {"op": Counter(), "rival": Counter()}
    for i in range(rounds):
        state = setup() if setup is not None else None
        start = threading.Barrier(2)
        delays = (rng.random() * jitter, rng.random() * jitter)

        threads = [threading.Thread(target=_side, args=(counts[name], fn, state, setup, start, delay))
                   for name, fn, delay in (("op", op, delays[0]), ("rival", rival, delays[1]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
            if t.is_alive():
                report(hung=True, round=i)
                os._exit(3)
    return counts
