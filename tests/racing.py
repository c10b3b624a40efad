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


# -- the scenario preludes the race tests share ---------------------------------------------

# Prepended to every pointer scenario (tests/core/test_pointers_lifetimes.py): the PKI's paths,
# the scale, an in-memory handshake over a BIO pair on raw SSL*s, and the context factories.
POINTER_PRELUDE = """
import gc, json, os, random, sys, threading, time, warnings
import commssl, racing
from commssl import ffi, lib
P = json.loads(os.environ["LIFETIME_PKI"])
SCALE = float(os.environ.get("COMMSSL_RACE_SCALE", "1"))
ALLOWED = {"ok", "ValueError", "CertificateReleasedError"}

def rounds(n):
    return max(1, int(n * SCALE))

def handshake(c, s):
    bios = ffi.new("BIO *[2]")
    assert lib.BIO_new_bio_pair(bios, 0, bios + 1, 0)
    lib.SSL_set_bio(c, bios[0], bios[0])
    lib.SSL_set_bio(s, bios[1], bios[1])
    lib.SSL_set_connect_state(c)
    lib.SSL_set_accept_state(s)
    done = [None, None]
    for _ in range(50):
        for i, ssl in enumerate((c, s)):
            if done[i] is None:
                e = lib.commssl_do(ssl, lib.COMMSSL_OP_HANDSHAKE, ffi.NULL, 0, ffi.NULL)
                if e == 0 or e not in (lib.SSL_ERROR_WANT_READ, lib.SSL_ERROR_WANT_WRITE):
                    done[i] = e
        if None not in done:
            break
    lib.ERR_clear_error()
    return done

def server_ctx():
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, P["server_chain"])
    commssl.ssl_ctx_use_privatekey_file(ctx, P["server_key"])
    return ctx

def client_ctx(callback=None):
    ctx = commssl.make_ssl_ctx(True, "client")
    commssl.ssl_ctx_load_verify_locations(ctx, P["root_cert"])
    if callback is not None:
        commssl.set_verification_mode(ctx, "client", "always", callback)
    return ctx

def counts(result):
    return {side: dict(c) for side, c in result.items()}
"""


def pointer_scenario(pki: Any, body: str, timeout: float = 120.0) -> Dict[str, Any]:
    """Run a pointer scenario: ``POINTER_PRELUDE`` then ``body``, with the test PKI's paths."""
    paths = {k: str(v) for k, v in vars(pki).items() if not k.startswith("_")}
    env = {"LIFETIME_PKI": json.dumps(paths), "COMMSSL_RACE_SCALE": os.environ.get("COMMSSL_RACE_SCALE", "1")}
    return run_scenario(POINTER_PRELUDE + "\n" + body, env=env, timeout=timeout)


# The prelude of the stream scenarios: a test PKI, a commssl echo server that
# serves any number of connections, and a relay that records what crosses it.
STREAM_PRELUDE = """
import os, socket, threading, tempfile, pathlib, time
import commssl, peers, racing
SCALE = float(os.environ.get("COMMSSL_RACE_SCALE", "1"))
pki = peers.make_pki(pathlib.Path(tempfile.mkdtemp()))
sctx = commssl.make_ssl_ctx(True, "server")
commssl.ssl_ctx_use_certificate_chain_file(sctx, pki.server_chain)
commssl.ssl_ctx_use_privatekey_file(sctx, pki.server_key)
cctx = commssl.make_ssl_ctx(True, "client")
commssl.ssl_ctx_load_verify_locations(cctx, pki.root_cert)

def serve(handler, n=10**6):
    lsock = socket.socket(); lsock.bind(("127.0.0.1", 0)); lsock.listen(64)
    def one(sock):
        try:
            with commssl.create_ssl_socket_stream(sock, sctx, handshake_timeout=10, timeout=10) as s:
                handler(s)
        except Exception:
            pass
    def run():
        while True:
            try:
                sock, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(sock,), daemon=True).start()
    threading.Thread(target=run, daemon=True).start()
    return lsock.getsockname()[1]

def drain(s):
    while s.read1(65536):
        pass

wire = []  # what crossed the relay from the client, per connection

def relay(port):
    lsock = socket.socket(); lsock.bind(("127.0.0.1", 0)); lsock.listen(64)
    def pump(a, b, record):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if record is not None:
                    record.append(data)
                b.sendall(data)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try: x.shutdown(socket.SHUT_RDWR)
                except OSError: pass
    def run():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", port))
            rec = []
            wire.append(rec)
            threading.Thread(target=pump, args=(c, s, rec), daemon=True).start()
            threading.Thread(target=pump, args=(s, c, None), daemon=True).start()
    threading.Thread(target=run, daemon=True).start()
    return lsock.getsockname()[1]

def client(port, **kw):
    return commssl.open_tcp_stream("127.0.0.1", port, ssl_ctx=cctx, tlsext_host_name="localhost",
                                   handshake_timeout=10, timeout=10, **kw)
"""
