"""The commssl benchmark: commssl against a C floor on the same libssl, CPython's
``ssl`` and pyOpenSSL, in one run, interleaved, medians of several runs.

    python -m bench [--smoke] [--runs N] [--json PATH]
    python bench/run.py ...

Prints a Markdown table and writes the numbers (every sample) as JSON to
``--json`` (default ``bench/results.json``). ``--smoke`` uses tiny iteration
counts: it checks that every row still runs, not how fast.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import commssl  # noqa: E402

from . import floor as floor_mod  # noqa: E402
from . import instructions as cg  # noqa: E402
from . import lib_commssl, lib_cpython, loopback  # noqa: E402
from .pki import KEY_TYPES, Chain, make_chains  # noqa: E402
from .timing import cpu_per_op, per_op_threads  # noqa: E402
from .workers import PyOpenSSLWorker, system_pyopenssl_site  # noqa: E402

try:
    from . import lib_pyopenssl
except ImportError:  # pyOpenSSL not installed
    lib_pyopenssl = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
CONTENDERS = ("commssl", "floor", "cpython", "pyopenssl_sys", "pyopenssl_wheel")
MODES = (("server", False), ("mutual", True))
GROUPS = ("memory", "peer_calls", "threads", "sockets", "instructions")
SMOKE_GROUPS = GROUPS[:4]  # callgrind takes minutes
KEY_NAMES = {"ecdsa": "ECDSA P-256", "rsa": "RSA-2048"}
MODE_NAMES = {"server": "server-auth", "mutual": "mutual"}


@dataclass(frozen=True)
class Settings:
    runs: int
    hs: int  # in-memory handshakes per sample (per thread in the thread rows)
    calls: int  # per-call rows: calls per sample
    data_calls: int  # get_certificate_data and its kin
    floor_calls: int
    sock_hs: int  # loopback handshakes per sample
    bulk: int  # bytes per bulk sample
    cg: Tuple[int, int] = (5, 25)  # callgrind: handshakes in the two runs whose difference counts


FULL = Settings(runs=9, hs=100, calls=50_000, data_calls=3_000, floor_calls=2_000_000, sock_hs=100,
                bulk=128 << 20)
SMOKE = Settings(runs=2, hs=2, calls=100, data_calls=10, floor_calls=1_000, sock_hs=2, bulk=1 << 20)

Samples = Dict[Tuple[str, str], List[float]]
Task = Tuple[str, str, Callable[[], float]]


def interleave(blocks: Sequence[Sequence[Task]], runs: int, samples: Samples,
               progress: Callable[[str], None]) -> None:
    """Run every task once per run; the block order rotates each run and the
    order inside a block alternates, so that no contender always goes first."""
    for r in range(runs):
        k = r % len(blocks)
        for block in list(blocks[k:]) + list(blocks[:k]):
            for row, who, fn in (block if r % 2 == 0 else list(reversed(block))):
                samples.setdefault((row, who), []).append(fn())
        progress(f"run {r + 1}/{runs}")


def median(xs: Sequence[float]) -> Optional[float]:
    return statistics.median(xs) if xs else None


def paired(a: Sequence[float], b: Sequence[float], fn: Callable[[float, float], float]) -> Optional[float]:
    """Median over runs of ``fn(a[i], b[i])``: both were measured in the same run."""
    return median([fn(x, y) for x, y in zip(a, b)])


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


class Bench:
    """One benchmark run: set up the contenders, measure every row, report."""

    def __init__(self, settings: Settings, scratch: Path, progress: Callable[[str], None]) -> None:
        self.s = settings
        self.scratch = scratch
        self.progress = progress
        self.samples: Samples = {}
        self.notes: List[str] = []
        self.info: Dict[str, Any] = {}
        self.callback_calls: Dict[str, int] = {}
        self._closers: List[Callable[[], None]] = []

    # -- setting up ------------------------------------------------------------

    def setup(self) -> None:
        self.progress("making the certificate chains (openssl CLI)")
        self.chains: Dict[str, Chain] = make_chains(self.scratch / "pki")
        self.progress("building the C floor")
        self.floor_exe = exe = floor_mod.build(self.scratch)
        self.floor = floor_mod.Floor(exe, self.chains)
        self._closers.append(self.floor.close)
        self.sys_worker: Optional[PyOpenSSLWorker] = None
        self.sys_site = site = system_pyopenssl_site()
        if site is not None:
            try:
                self.sys_worker = PyOpenSSLWorker(site, self.scratch / "pki", self.scratch)
                self._closers.append(self.sys_worker.close)
            except Exception as exc:  # reported in the notes, the rest still runs
                self.notes.append(f"pyOpenSSL on the system OpenSSL could not be run: {exc}")
        else:
            self.notes.append("pyOpenSSL built on the system OpenSSL is not installed (on Debian: "
                              "apt-get install python3-openssl), so its column is empty.")
        versions = commssl.openssl_version()
        self.info.update({
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(),
            "cpu": _lscpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "commssl": commssl.__version__,
            "commssl_openssl": versions["loaded"],
            "floor_openssl": self.floor.openssl,
            "cpython_openssl": __import__("ssl").OPENSSL_VERSION,
            "pyopenssl_sys": self.sys_worker.info if self.sys_worker else None,
            "pyopenssl_wheel": lib_pyopenssl.describe() if lib_pyopenssl else None,
            "loadavg_start": _loadavg(),
            "settings": self.s.__dict__,
        })
        if self.floor.openssl != versions["loaded"]:
            self.notes.append(f"the C floor loaded {self.floor.openssl} but commssl {versions['loaded']}")

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                pass

    def _keep(self, obj: Any) -> Any:
        self._closers.append(obj.close)
        return obj

    # -- the rows ------------------------------------------------------------------

    def memory(self) -> None:
        """Rows 1 and 2: in-memory handshakes, without and with a verify callback."""
        s, blocks = self.s, []
        for key in KEY_TYPES:
            chain = self.chains[key]
            for mode, mutual in MODES:
                row, cb_row = f"mem-{key}-{mode}", f"cb-{key}-{mode}"
                self.callback_calls[f"{key}-{mode}"] = self.floor.callback_calls(key, mutual)
                plain = self._keep(lib_commssl.Handshakes(chain, mutual))
                with_cb = self._keep(lib_commssl.Handshakes(chain, mutual, callback=True))
                counted = lib_commssl.count_callback_calls(chain, mutual)
                if counted != self.callback_calls[f"{key}-{mode}"]:
                    self.notes.append(f"commssl called the verify callback {counted} times in a {key} {mode} "
                                      f"handshake, the C floor {self.callback_calls[f'{key}-{mode}']} times")
                blocks.append([(row, "commssl", _cpu(plain.once, s.hs)),
                               (cb_row, "commssl", _cpu(with_cb.once, s.hs))])
                blocks.append([(row, "floor", _floor_hs(self.floor, key, mutual, False, s.hs)),
                               (cb_row, "floor", _floor_hs(self.floor, key, mutual, True, s.hs))])
                blocks.append([(row, "cpython", _cpu(self._keep(lib_cpython.Handshakes(chain, mutual)).once,
                                                     s.hs))])
                if self.sys_worker is not None:
                    w = self.sys_worker
                    blocks.append([(row, "pyopenssl_sys", _worker(w, op="hs", key=key, mutual=mutual,
                                                                  callback=False, n=s.hs)),
                                   (cb_row, "pyopenssl_sys", _worker(w, op="hs", key=key, mutual=mutual,
                                                                     callback=True, n=s.hs))])
                if lib_pyopenssl is not None:
                    blocks.append([
                        (row, "pyopenssl_wheel", _cpu(lib_pyopenssl.Handshakes(chain, mutual).once, s.hs)),
                        (cb_row, "pyopenssl_wheel", _cpu(lib_pyopenssl.Handshakes(chain, mutual, True).once,
                                                         s.hs)),
                    ])
        self.progress("rows 1-2: in-memory handshakes")
        interleave(blocks, s.runs, self.samples, self.progress)

    def peer_calls(self) -> None:
        """Row 5: per-call costs of reading the peer's certificates (client side, ECDSA chain)."""
        s, key = self.s, "ecdsa"
        chain = self.chains[key]
        mine = self._keep(lib_commssl.PeerCalls(chain))
        if mine.chain_length() != 2:
            raise RuntimeError(f"the server sent {mine.chain_length()} certificates, not 2")
        theirs = self._keep(lib_cpython.PeerCalls(chain))
        blocks: List[List[Task]] = [
            [("call-chain", "commssl", _cpu(mine.copy_release, s.calls)),
             ("call-serial", "commssl", _cpu(mine.serial, s.calls)),
             ("call-data", "commssl", _cpu(mine.data, s.data_calls))],
            [("call-chain", "floor", lambda: self.floor.chain(key, s.floor_calls)),
             ("call-serial", "floor", lambda: self.floor.serial(key, s.floor_calls))],
            [("call-chain", "cpython", _cpu(theirs.peer_der, s.calls)),
             ("call-serial", "cpython", _cpu(theirs.serial, s.data_calls)),
             ("call-data", "cpython", _cpu(theirs.peer_dict, s.data_calls))],
        ]
        if self.sys_worker is not None:
            w = self.sys_worker
            blocks.append([("call-chain", "pyopenssl_sys", _worker(w, op="chain", key=key, n=s.calls)),
                           ("call-serial", "pyopenssl_sys", _worker(w, op="serial", key=key, n=s.calls)),
                           ("call-data", "pyopenssl_sys", _worker(w, op="data", key=key, n=s.data_calls))])
        if lib_pyopenssl is not None:
            p = self._keep(lib_pyopenssl.PeerCalls(chain))
            blocks.append([("call-chain", "pyopenssl_wheel", _cpu(p.chain, s.calls)),
                           ("call-serial", "pyopenssl_wheel", _cpu(p.serial, s.calls)),
                           ("call-data", "pyopenssl_wheel", _cpu(p.data, s.data_calls))])
        self.progress("row 5: per-call costs")
        interleave(blocks, s.runs, self.samples, self.progress)

    def threads(self) -> None:
        """Row 6: in-memory handshakes (ECDSA, server-auth) on one and two threads, wall time."""
        s, key = self.s, "ecdsa"
        chain = self.chains[key]
        blocks: List[List[Task]] = []

        def pair(who: str, fn: Callable[[], Any]) -> List[Task]:
            return [("thr-1", who, lambda: per_op_threads(fn, s.hs, 1)),
                    ("thr-2", who, lambda: per_op_threads(fn, s.hs, 2))]

        blocks.append(pair("commssl", self._keep(lib_commssl.Handshakes(chain)).once))
        blocks.append([(f"thr-{t}", "floor", (lambda t=t: self.floor.handshake(key, False, False, s.hs, t,
                                                                               cpu=False)))
                       for t in (1, 2)])
        blocks.append(pair("cpython", self._keep(lib_cpython.Handshakes(chain)).once))
        if self.sys_worker is not None:
            w = self.sys_worker
            blocks.append([(f"thr-{t}", "pyopenssl_sys",
                            _worker(w, op="hs", key=key, mutual=False, callback=False, n=s.hs, threads=t,
                                    cpu=False)) for t in (1, 2)])
        if lib_pyopenssl is not None:
            blocks.append(pair("pyopenssl_wheel", lib_pyopenssl.Handshakes(chain).once))
        self.progress("row 6: handshakes on 1 and 2 threads")
        interleave(blocks, s.runs, self.samples, self.progress)

    def sockets(self) -> None:
        """Rows 3 and 4: blocking handshakes and bulk throughput over loopback (ECDSA)."""
        s, chain = self.s, self.chains["ecdsa"]
        blocks: List[List[Task]] = []
        for who, lib, client_cls in (("commssl", "commssl", loopback.CommsslClient),
                                     ("cpython", "cpython", loopback.CPythonClient)):
            server = self._keep(loopback.Server(lib, chain))
            client = self._keep(client_cls(chain, server.port))
            client.handshake()  # the first connection pays for imports and lazy loads
            blocks.append([("sock-hs", who, _wall(client.handshake, s.sock_hs)),
                           ("sock-bulk", who, (lambda c=client: s.bulk / c.bulk(s.bulk) / 1e6))])
        self.progress("rows 3-4: loopback sockets")
        interleave(blocks, s.runs, self.samples, self.progress)

    def instructions(self) -> None:
        """Rows 7: instructions per handshake and per callback call, counted by callgrind
        (ECDSA, server-auth): the same count whatever else the machine runs."""
        if not cg.available():
            self.notes.append("valgrind is not installed: no instruction counts (rows 7).")
            return
        n1, n2 = self.s.cg
        chains_dir = self.scratch / "pki"
        runs: List[Tuple[str, str, bool, List[str]]] = [
            ("floor", "floor", False, []), ("floor", "floor", True, []),
            ("commssl", "commssl", False, []), ("commssl", "commssl", True, []),
            ("cpython", "cpython", False, []),
        ]
        if self.sys_worker is not None and self.sys_site is not None:
            links = str(self.scratch / "system-pyopenssl")  # made by PyOpenSSLWorker
            runs += [("pyopenssl_sys", "pyopenssl", cb, [links]) for cb in (False, True)]
        if lib_pyopenssl is not None:
            runs += [("pyopenssl_wheel", "pyopenssl", cb, []) for cb in (False, True)]
        for who, lib, callback, path in runs:
            self.progress(f"rows 7: callgrind, {who}{' + callback' if callback else ''}")
            count = cg.per_handshake(lib, "ecdsa", False, n1, n2, chains_dir, self.floor_exe, self.scratch,
                                     callback=callback, extra_path=path)
            self.samples[("cg-hs" if not callback else "cg-hs-cb", who)] = [count]

    def run(self, groups: Sequence[str] = GROUPS) -> None:
        self.setup()
        for group in GROUPS:
            if group in groups:
                getattr(self, group)()
        self.info["loadavg_end"] = _loadavg()

    # -- reporting -------------------------------------------------------------------

    def med(self, row: str, who: str) -> Optional[float]:
        return median(self.samples.get((row, who), []))

    def pair(self, row_a: str, who_a: str, row_b: str, who_b: str,
             fn: Callable[[float, float], float]) -> Optional[float]:
        """``paired`` over the samples of two cells."""
        return paired(self.samples.get((row_a, who_a), []), self.samples.get((row_b, who_b), []), fn)

    def results(self) -> Dict[str, Any]:
        """Every row: its cells (medians), the commssl verdict, and the raw samples."""
        rows: List[Dict[str, Any]] = []
        for key in KEY_TYPES:
            for mode, _ in MODES:
                row = f"mem-{key}-{mode}"
                added = self.pair(row, "commssl", row, "floor", lambda a, b: a - b)
                rows.append(self._row(row, f"1. in-memory handshakes, {KEY_NAMES[key]}, {MODE_NAMES[mode]}",
                                      "handshake", added=added, target=15e-6,
                                      verdict=_us_over(added, 15e-6)))
        for key in KEY_TYPES:
            for mode, _ in MODES:
                row, base = f"cb-{key}-{mode}", f"mem-{key}-{mode}"
                calls = self.callback_calls.get(f"{key}-{mode}") or 1
                extra = {who: self.pair(row, who, base, who, lambda a, b: a - b) for who in CONTENDERS}
                rows.append(self._row(row, f"2. same + verify callback ({calls} calls), {KEY_NAMES[key]}, "
                                           f"{MODE_NAMES[mode]}", "handshake", added=extra["commssl"],
                                      target=3e-6, verdict=_callback_verdict(extra["commssl"], calls)))
                per_call = {who: (v / calls if v is not None else None) for who, v in extra.items()}
                title = (f"2. cost per callback call, {KEY_NAMES[key]}, {MODE_NAMES[mode]} "
                         f"(difference / {calls})")
                rows.append({"id": f"cbcall-{key}-{mode}", "title": title, "unit": "call", "cells": per_call,
                             "target": 1e-6, "verdict": _le(per_call["commssl"], 1e-6, "µs per call")})
        ratio = self.pair("sock-hs", "cpython", "sock-hs", "commssl", lambda a, b: a / b)
        rows.append(self._row("sock-hs", "3. blocking handshakes over loopback, ECDSA, server-auth",
                              "handshake", ratio=ratio, target=1.1, verdict=_ge(ratio, 1.1, "× CPython")))
        ratio = self.pair("sock-bulk", "commssl", "sock-bulk", "cpython", lambda a, b: a / b)
        rows.append(self._row("sock-bulk", "4. bulk throughput, blocking stream, 64 KiB writes", "MB/s",
                              ratio=ratio, target=1.1, verdict=_ge(ratio, 1.1, "× CPython")))
        chain = self.med("call-chain", "commssl")
        rows.append(self._row("call-chain", "5. copy + release of the peer chain (2 certificates)", "call",
                              target=0.5e-6, verdict=_le(chain, 0.5e-6, "µs")))
        serial = self.med("call-serial", "commssl")
        rows.append(self._row("call-serial", "5. get_certificate_serial_number", "call", target=0.5e-6,
                              verdict=_le(serial, 0.5e-6, "µs")))
        rows.append(self._row("call-data", "5. get_certificate_data", "call", verdict="(no target)"))
        rows.append(self._row("thr-1", "6. in-memory handshakes on 1 thread (wall), ECDSA", "handshake",
                              verdict=""))
        rows.append(self._row("thr-2", "6. in-memory handshakes on 2 threads (wall), ECDSA", "handshake",
                              verdict=""))
        speedup = {who: self.pair("thr-1", who, "thr-2", who, lambda a, b: a / b) for who in CONTENDERS}
        verdict = _ge(speedup["commssl"], 1.7, "×")
        if speedup["floor"] is not None:
            verdict += f"; the C floor reaches ×{speedup['floor']:.2f} here now"
        mine, floor = self.med("mem-ecdsa-server", "commssl"), self.med("mem-ecdsa-server", "floor")
        gil = None
        if mine and floor:
            # Python work between OpenSSL calls holds the GIL: (commssl - C) / commssl of row 1
            gil = max(0.0, (mine - floor) / mine)
            bound = 1 / (gil + (1 - gil) / 2)
            verdict += f"; GIL held {100 * gil:.0f} % of a handshake (row 1): Amdahl bound ×{bound:.2f}"
        rows.append({"id": "thr-speedup", "title": "6. speedup, 2 threads over 1", "unit": "ratio",
                     "cells": speedup, "target": 1.7, "gil_share": gil, "verdict": verdict})
        if any(row == "cg-hs" for row, _ in self.samples):
            added = self.pair("cg-hs", "commssl", "cg-hs", "floor", lambda a, b: a - b)
            floor = self.med("cg-hs", "floor")
            verdict = "n/a" if added is None or not floor else (
                f"+{added / 1e3:,.0f} k instructions over C (+{100 * added / floor:.1f} %)")
            rows.append(self._row("cg-hs", "7. instructions per in-memory handshake (callgrind), ECDSA, "
                                           "server-auth", "instr", verdict=verdict))
            calls = self.callback_calls.get("ecdsa-server") or 3
            per_call = {who: self.pair("cg-hs-cb", who, "cg-hs", who, lambda a, b: (a - b) / calls)
                        for who in CONTENDERS}
            mine, theirs = per_call["commssl"], per_call["pyopenssl_sys"] or per_call["pyopenssl_wheel"]
            verdict = "n/a" if mine is None or not theirs else f"{theirs / mine:.1f}× fewer than pyOpenSSL"
            rows.append({"id": "cg-call", "title": f"7. instructions per verify callback call (callgrind; "
                                                   f"difference / {calls})", "unit": "count",
                         "cells": per_call, "verdict": verdict})
        return {"info": self.info, "notes": self.notes + self.standing_notes(),
                "callback_calls": self.callback_calls, "rows": rows,
                "samples": {f"{row}|{who}": xs for (row, who), xs in sorted(self.samples.items())}}

    def _row(self, row: str, title: str, unit: str, **extra: Any) -> Dict[str, Any]:
        out = {"id": row, "title": title, "unit": unit,
               "cells": {who: self.med(row, who) for who in CONTENDERS}}
        out.update(extra)
        return out

    def standing_notes(self) -> List[str]:
        sys_info, wheel = self.info.get("pyopenssl_sys"), self.info.get("pyopenssl_wheel")
        notes = [" ".join(p.split()) for p in _NOTES.format(runs=self.s.runs).split("\n\n")]
        if sys_info:
            notes.append(f"pyOpenSSL (system): pyOpenSSL {sys_info['pyopenssl']} + cryptography "
                         f"{sys_info['cryptography']} built on {sys_info['openssl']} (Debian's packages), "
                         "run in a worker process of this interpreter: the like-with-like pyOpenSSL column.")
        if wheel:
            notes.append(f"pyOpenSSL (wheel): pyOpenSSL {wheel['pyopenssl']} + cryptography "
                         f"{wheel['cryptography']}, whose wheel bundles {wheel['openssl']}: a different "
                         "OpenSSL, so its handshake rows are not like with like.")
        return notes


_NOTES = """\
Single-threaded rows (1, 2, 5) count the measuring thread's CPU time (the machine is shared;
wall time would add other processes' load); rows 3, 4 and 6 are wall time. Each cell is the
median of {runs} runs; contenders are interleaved within each run.

Contexts are configured alike everywhere: TLS >= 1.2, no renegotiation or compression; the
client trusts the system's default CA file and directory plus the chain's root and checks the
name localhost; mutual: the server requires and verifies a client certificate. The server sends
leaf + intermediate; TLS 1.3, X25519, one full handshake per pair of fresh SSLs.

commssl: SSLs from make_ssl_ctx contexts via the library's new_ssl, joined by a BIO pair and
driven with lib.commssl_do. C floor: bench/floor.c, the same calls in C on the same libssl.
CPython: SSLObject over MemoryBIOs. pyOpenSSL: Connection over memory BIOs (its own API), with
the same host-name check set through its bindings.

Row 2: the callback returns preverify_ok (commssl: set_verification_mode callback; pyOpenSSL:
set_verify callback; C floor: a C callback; CPython ssl has no verify callback API). The
per-call cost is the median over runs of (with callback - without) / calls per handshake.

Rows 3-4: client in this process, server (same library) in another; a handshake row is connect
+ handshake + 1-byte request and answer + close; bulk sends 64 KiB writes, timed until the
server's 1-byte answer.

Row 5 (client side, after an ECDSA handshake): commssl ssl_connection_copy_peer_certificates +
release_certificates_vector; C floor: SSL_get_peer_cert_chain + X509_up_ref / X509_free of each;
CPython: getpeercert(binary_form=True) (the leaf's DER only); pyOpenSSL: get_peer_cert_chain().
Serial: C floor reads the bytes; CPython parses getpeercert()['serialNumber']; pyOpenSSL
X509.get_serial_number(). Data: CPython getpeercert(); pyOpenSSL: subject, issuer, serial,
validity, SANs when it still has X509 extensions, SHA-256 digest."""


def _loadavg() -> Optional[List[float]]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _cpu(fn: Callable[[], Any], n: int) -> Callable[[], float]:
    return lambda: cpu_per_op(fn, n)


def _wall(fn: Callable[[], Any], n: int) -> Callable[[], float]:
    return lambda: per_op_threads(fn, n, 1)


def _floor_hs(floor: floor_mod.Floor, key: str, mutual: bool, callback: bool, n: int) -> Callable[[], float]:
    return lambda: floor.handshake(key, mutual, callback, n)


def _worker(worker: PyOpenSSLWorker, **cmd: Any) -> Callable[[], float]:
    return lambda: worker.run(**cmd)


def _us_over(added: Optional[float], limit: float) -> str:
    if added is None:
        return "n/a"
    ok = "met" if added <= limit else "NOT met"
    return f"+{added * 1e6:.1f} µs over C (target ≤ {limit * 1e6:.0f}): {ok}"


def _callback_verdict(extra: Optional[float], calls: int) -> str:
    if extra is None:
        return "n/a"
    limit = 3e-6 if calls <= 3 else 1e-6 * calls
    ok = "met" if extra <= limit else "NOT met"
    return f"+{extra * 1e6:.1f} µs per handshake (target ≤ {limit * 1e6:.0f}): {ok}"


def _le(value: Optional[float], limit: float, unit: str) -> str:
    if value is None:
        return "n/a"
    ok = "met" if value <= limit else "NOT met"
    return f"{value * 1e6:.2f} {unit} (target ≤ {limit * 1e6:g}): {ok}"


def _ge(value: Optional[float], limit: float, unit: str) -> str:
    if value is None:
        return "n/a"
    ok = "met" if value >= limit else "NOT met"
    return f"{value:.2f}{unit} (target ≥ {limit:g}): {ok}"


def _cell(unit: str, value: Optional[float]) -> str:
    if value is None:
        return "—"
    if unit == "handshake":
        return f"{1 / value:,.0f}/s ({value * 1e6:,.0f} µs)"
    if unit == "call":
        return f"{value * 1e6:.2f} µs"
    if unit == "MB/s":
        return f"{value:,.0f} MB/s"
    if unit == "ratio":
        return f"×{value:.2f}"
    if unit == "instr":
        return f"{value / 1e6:.3f} M"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:g}"


def markdown(results: Dict[str, Any]) -> str:
    info = results["info"]
    sys_info, wheel = info.get("pyopenssl_sys"), info.get("pyopenssl_wheel")
    sys_head = "pyOpenSSL (system)"
    if sys_info:
        sys_head = f"pyOpenSSL {sys_info['pyopenssl']} ({sys_info['openssl']})"
    wheel_head = "pyOpenSSL (wheel)"
    if wheel:
        wheel_head = f"pyOpenSSL {wheel['pyopenssl']} (wheel, {wheel['openssl']})"
    heads = ["benchmark", "commssl", "C floor", "CPython ssl", sys_head, wheel_head, "commssl vs target"]
    lines = [
        f"commssl benchmark, {info['date']}: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"commssl {info['commssl']} on {info['commssl_openssl']}; load average "
        f"{info.get('loadavg_start')} at the start, {info.get('loadavg_end')} at the end.",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "|".join(["---"] + ["---:"] * 5 + ["---"]) + "|",
    ]
    for row in results["rows"]:
        cells = [_cell(row["unit"], row["cells"].get(who)) for who in CONTENDERS]
        lines.append("| " + " | ".join([row["title"], *cells, row.get("verdict", "")]) + " |")
    lines.append("")
    lines.extend(f"- {note}" for note in results["notes"])
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny iteration counts: check that every row runs")
    parser.add_argument("--runs", type=int, help="runs per row (medians are quoted)")
    parser.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write the results")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--only", help=f"comma-separated groups to run, among {','.join(GROUPS)} (default: "
                                       f"all; with --smoke: {','.join(SMOKE_GROUPS)})")
    args = parser.parse_args(argv)
    only = args.only or ",".join(SMOKE_GROUPS if args.smoke else GROUPS)
    groups = [g.strip() for g in only.split(",") if g.strip()]
    if not groups or set(groups) - set(GROUPS):
        parser.error(f"--only takes groups among {', '.join(GROUPS)}")
    settings = SMOKE if args.smoke else FULL
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be >= 1")
        settings = Settings(**{**settings.__dict__, "runs": args.runs})
    started = time.monotonic()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="commssl-bench-") as tmp:
        bench = Bench(settings, Path(tmp), progress)
        try:
            bench.run(groups)
            results = bench.results()
        finally:
            bench.close()
    results["info"]["seconds"] = round(time.monotonic() - started, 1)
    results["markdown"] = markdown(results)
    print(results["markdown"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
