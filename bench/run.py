"""The commssl benchmark: commssl against a C floor on the same libssl, CPython's
``ssl`` and pyOpenSSL, in one run, interleaved, medians of several runs.

    python -m bench [--smoke] [--runs N] [--only GROUPS] [--json PATH] [--check]
    python -m bench --check --from PATH
    python -m bench --check-baseline | --record-baseline [--baseline PATH]
    python bench/run.py ...

Prints a Markdown table and writes the numbers (every sample) as JSON to
``--json`` (default ``bench/results.json``). ``--smoke`` uses tiny iteration
counts: it checks that every row still runs, not how fast. ``--check``: exit
status 1 when a measured target is missed (listed on stderr) or when one of
commssl's callgrind rows is more than 1 % above ``bench/baseline.json``
(``bench/baseline.py``; ``--check-baseline`` does only that, in minutes);
``--from`` judges a results file instead of running. Rows, targets and the
table: ``bench/report.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
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

from . import baseline, bench_aio, bench_httpx, lib_commssl, lib_cpython, loopback, report  # noqa: E402
from . import floor as floor_mod  # noqa: E402
from . import instructions as cg  # noqa: E402
from .bench_aio import Load  # noqa: E402
from .pki import KEY_TYPES, Chain, leaf_only, make_chains  # noqa: E402
from .report import MODES, Samples  # noqa: E402
from .timing import cpu_per_op, per_op_threads  # noqa: E402
from .workers import PyOpenSSLWorker, WheelWorker, Worker, find_wheel, system_pyopenssl_site  # noqa: E402

try:
    from . import lib_pyopenssl
except ImportError:  # pyOpenSSL not installed
    lib_pyopenssl = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
WHEEL_GROUPS = {"wheel-x25519": ["X25519"], "wheel-mlkem": ["X25519MLKEM768"]}  # row 9's groups
GROUPS = ("memory", "peer_calls", "threads", "sockets", "aio", "trio", "wheel", "httpx", "instructions")
SMOKE_GROUPS = GROUPS[:-1]  # callgrind takes minutes


@dataclass(frozen=True)
class Settings:
    runs: int
    hs: int  # in-memory handshakes per sample (per thread in the thread rows)
    calls: int  # per-call rows: calls per sample
    data_calls: int  # get_certificate_data and its kin
    floor_calls: int
    sock_hs: int  # loopback handshakes per sample
    bulk: int  # bytes per bulk sample
    aio_runs: int  # runs of the asyncio group (each takes seconds)
    aio: Tuple[Load, ...]  # asyncio load levels: labels "100" and "1000" are the targets' rows
    # callgrind: handshakes in the two runs whose difference counts; a run's count varies by about
    # 1,000 instructions (OpenSSL's random numbers), so 100 apart keep row 7's per-callback-call
    # figure, a difference of two handshake rows, within about 0.1 % (the baseline gate is 1 %)
    cg: Tuple[int, int] = (5, 105)
    cg_data: Tuple[int, int] = (100, 1_100)  # callgrind: get_certificate_data / getpeercert calls
    cg_chain: Tuple[int, int] = (1_000, 11_000)  # callgrind: peer-chain copies + releases
    httpx: Tuple[int, int] = (100, 500)  # rows 10: requests per sample, new connection / keep-alive


FULL = Settings(runs=9, hs=100, calls=50_000, data_calls=3_000, floor_calls=2_000_000, sock_hs=100,
                bulk=128 << 20, aio_runs=5,
                aio=(Load("100", 100, 500, 1 << 20), Load("1000", 1000, 2000, 256 << 10)))
SMOKE = Settings(runs=2, hs=2, calls=100, data_calls=10, floor_calls=1_000, sock_hs=2, bulk=1 << 20,
                 aio_runs=1, aio=(Load("100", 4, 8, 64 << 10), Load("1000", 8, 16, 64 << 10)), httpx=(2, 4))

Task = bench_aio.Task


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
            "uvloop": bench_aio.uvloop.__version__ if bench_aio.uvloop else None,
            "loadavg_start": _loadavg(),
            "settings": dataclasses.asdict(self.s),
        })
        ecdsa = self.chains["ecdsa"]
        self.info["groups"] = {
            "commssl": lib_commssl.group(ecdsa), "floor": self.floor.group("ecdsa"),
            "cpython": lib_cpython.group(ecdsa),
            "pyopenssl_sys": self.sys_worker.group("ecdsa") if self.sys_worker else None,
            "pyopenssl_wheel": lib_pyopenssl.group(ecdsa) if lib_pyopenssl else None}
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

    def wheel(self) -> None:
        """Row 9: commssl's wheel (its own OpenSSL 3.5 LTS) in a worker, against CPython ``ssl``
        on the system's OpenSSL and pyOpenSSL's wheel with the same group (ECDSA, server-auth)."""
        path = find_wheel()
        if path is None:
            self.notes.append("Row 9 needs commssl's repaired wheel: bash ci/build-wheel makes wheelhouse/.")
            return
        s, chain = self.s, self.chains["ecdsa"]
        worker = self._keep(WheelWorker(path, self.scratch / "pki", self.scratch))
        self.info["commssl_wheel"] = dict(worker.info, wheel=path.name)
        blocks = [[("wheel-x25519", "cpython", _cpu(lib_cpython.Handshakes(chain).once, s.hs))]]
        for rid, groups in WHEEL_GROUPS.items():
            self.info.setdefault("wheel_groups", {})[rid] = worker.group("ecdsa", groups)
            blocks.append([(rid, "commssl", _worker(worker, op="hs", key="ecdsa", mutual=False,
                                                    callback=False, n=s.hs, groups=groups))])
            if lib_pyopenssl is not None:
                blocks.append([(rid, "pyopenssl_wheel",
                                _cpu(lib_pyopenssl.Handshakes(chain, groups=groups).once, s.hs))])
        self.progress("row 9: handshakes with commssl's wheel")
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
        two = loopback.cpus()  # clients on one CPU, servers on the other
        client_cpu, server_cpu = two if two is not None else (None, None)
        if two is None:
            self.notes.append("rows 3-4 ran with fewer than two CPUs: client and server shared one.")
        bulk: List[Task] = []  # one block: the pairs whose per-run ratio row 4 quotes run back to back
        for who, client_cls in (("commssl", loopback.CommsslClient), ("cpython", loopback.CPythonClient)):
            server = self._keep(loopback.Server(who, chain, cpu=server_cpu))
            client = self._keep(client_cls(chain, server.port))
            client.handshake()  # the first connection pays for imports and lazy loads
            blocks.append([("sock-hs", who, _wall(client.handshake, s.sock_hs))])
            bulk.append(("sock-bulk", who, (lambda c=client: s.bulk / c.bulk(s.bulk) / 1e6)))
        # the C floor: client in the floor process, server a `floor serve` process
        server = self._keep(loopback.Server("floor", chain, self.floor_exe, cpu=server_cpu))
        floor = loopback.FloorClient(self.floor, server.port)
        floor.handshake()  # loads the default CA file and directory once
        blocks.insert(1, [("sock-hs", "floor", lambda: floor.handshakes(s.sock_hs))])
        # commssl next to CPython whichever way the block runs (its order alternates per run)
        blocks.append([*bulk, ("sock-bulk", "floor", lambda: s.bulk / floor.bulk(s.bulk) / 1e6)])
        self.progress("rows 3-4: loopback sockets")
        before = os.sched_getaffinity(0) if two is not None else None
        loopback.pin(0, client_cpu)
        loopback.pin(self.floor.pid, client_cpu)
        try:
            interleave(blocks, s.runs, self.samples, self.progress)
        finally:
            if before is not None:
                os.sched_setaffinity(0, before)
                os.sched_setaffinity(self.floor.pid, before)

    def aio(self) -> None:
        """Rows 8: asyncio handshakes/s and echo MB/s at each load level (bench/bench_aio.py):
        commssl, asyncio's ssl, and uvloop's when installed."""
        contenders, notes = bench_aio.contenders(self.chains["ecdsa"])
        self.notes.extend(notes)
        self._closers.extend(c.close for c in contenders)
        self.progress("rows 8: asyncio")
        interleave(bench_aio.blocks(contenders, self.s.aio), self.s.aio_runs, self.samples, self.progress)

    def trio(self) -> None:
        """Rows 11: trio handshakes/s and echo MB/s at the asyncio rows' first load level,
        ``commssl.anyio`` against ``trio.SSLStream`` (bench/bench_anyio.py)."""
        try:
            from . import bench_anyio  # trio and anyio: only this group needs them
        except ImportError as exc:
            self.notes.append(f"rows 11 are empty: {exc.name} is not installed (pip install commssl[bench]).")
            return
        self.progress("rows 11: trio")
        interleave(bench_anyio.blocks(self.chains["ecdsa"], self.s.aio[:1]), self.s.aio_runs, self.samples,
                   self.progress)

    def httpx(self) -> None:
        """Rows 10: httpx clients, commssl's transports against httpx's default ones, on one
        HTTPS server in another process (bench/bench_httpx.py)."""
        with bench_httpx.setup(self.chains["ecdsa"], self.scratch, self.notes, self.info) as clients:
            if clients is not None:
                self.progress("rows 10: httpx")
                interleave(bench_httpx.blocks(clients, self.s.httpx, self.samples), self.s.runs, self.samples,
                           self.progress)

    def instructions(self) -> None:
        """Rows 7: instructions per handshake, per callback call and per peer-certificate
        call, counted by callgrind: the same count whatever else the machine runs."""
        if not cg.available():
            self.notes.append("valgrind is not installed: no instruction counts (rows 7).")
            return
        n1, n2 = self.s.cg
        chains_dir = self.scratch / "pki"
        self.callback_calls.setdefault("ecdsa-server", self.floor.callback_calls("ecdsa", False))
        mine = baseline.measure(self.chains, self.scratch, self.s.cg, self.s.cg_data, self.s.cg_chain,
                                self.progress)
        for row, count in mine.items():
            self.samples[(row, "commssl")] = [count]
        runs: List[Tuple[str, str, bool, List[str]]] = [
            ("floor", "floor", False, []), ("floor", "floor", True, []), ("cpython", "cpython", False, []),
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
        ecdsa, rsa = self.chains["ecdsa"], self.chains["rsa"]
        self.progress("rows 7: callgrind, cpython certificate data")
        d1, d2 = self.s.cg_data
        self.samples[("cg-data", "cpython")] = [
            cg.per_call("getpeercert", d1, d2, ecdsa.directory, self.scratch)]
        c1, c2 = self.s.cg_chain
        for n, chain in ((1, leaf_only(ecdsa)), (2, ecdsa)):
            self.progress(f"rows 7: callgrind, C floor peer chain of {n}")
            self.samples[(f"cg-chain{n}", "floor")] = [
                cg.floor_per_call(self.floor_exe, [chain.directory, rsa.directory], "chain ecdsa", c1, c2,
                                  self.scratch)]

    def run(self, groups: Sequence[str] = GROUPS) -> None:
        self.setup()
        for group in GROUPS:
            if group in groups:
                getattr(self, group)()
        self.info["loadavg_end"] = _loadavg()

    # -- reporting -------------------------------------------------------------------

    def results(self) -> Dict[str, Any]:
        """Every row (bench/report.py: cells, goal, verdict) and the raw samples."""
        rows = report.rows(self.samples, self.callback_calls, self.s.aio)
        return {"info": self.info, "notes": self.notes + self.standing_notes(),
                "callback_calls": self.callback_calls, "rows": rows,
                "samples": {f"{row}|{who}": xs for (row, who), xs in sorted(self.samples.items())}}

    def standing_notes(self) -> List[str]:
        sys_info, wheel = self.info.get("pyopenssl_sys"), self.info.get("pyopenssl_wheel")
        text = report.NOTES.format(runs=self.s.runs, aio_runs=self.s.aio_runs)
        notes = [" ".join(p.split()) for p in text.split("\n\n")]
        if sys_info:
            notes.append(f"pyOpenSSL (system): pyOpenSSL {sys_info['pyopenssl']} + cryptography "
                         f"{sys_info['cryptography']} built on {sys_info['openssl']} (Debian's packages), "
                         "run in a worker process of this interpreter: the like-with-like pyOpenSSL column.")
        if wheel:
            notes.append(f"pyOpenSSL (wheel): pyOpenSSL {wheel['pyopenssl']} + cryptography "
                         f"{wheel['cryptography']}, whose wheel bundles {wheel['openssl']}: a different "
                         "OpenSSL, so its handshake rows are not like with like.")
        return notes


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


def _worker(worker: Worker, **cmd: Any) -> Callable[[], float]:
    return lambda: worker.run(**cmd)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny iteration counts: check that every row runs")
    parser.add_argument("--runs", type=int, help="runs per row (medians are quoted)")
    parser.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write the results")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--only", help=f"comma-separated groups to run, among {','.join(GROUPS)} (default: "
                                       f"all; with --smoke: {','.join(SMOKE_GROUPS)})")
    parser.add_argument("--check", action="store_true",
                        help="exit status 1 when a measured target is missed (listed on stderr)")
    parser.add_argument("--check-baseline", action="store_true",
                        help="measure commssl's callgrind rows only (about 3 min) and compare them with "
                             "--baseline: exit status 1 when a row is more than 1 %% slower "
                             "(--check includes it)")
    parser.add_argument("--record-baseline", action="store_true",
                        help="measure commssl's callgrind rows only and write them to --baseline")
    parser.add_argument("--baseline", type=Path, default=baseline.PATH, metavar="PATH",
                        help="the recorded baseline (default: bench/baseline.json)")
    parser.add_argument("--from", dest="source", type=Path, metavar="PATH",
                        help="do not run: judge and print the results JSON at PATH (with --check)")
    args = parser.parse_args(argv)
    if args.check_baseline or args.record_baseline:
        if args.source is not None or args.check or args.smoke or args.only or args.runs is not None:
            parser.error("--check-baseline and --record-baseline take only --baseline and --quiet")
        return _baseline_only(args.baseline, args.record_baseline, args.quiet)
    if args.source is not None:
        if args.smoke or args.runs is not None or args.only:
            parser.error("--from reads results: it takes no --smoke, --runs or --only")
        try:
            saved: Dict[str, Any] = json.loads(args.source.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--from {args.source}: {exc}")
        report.judge(saved.get("rows", []))
        print(report.markdown(saved))
        if not args.check:
            return 0
        mine = baseline.from_results(saved)
        return report.check(saved) | baseline.check(baseline.load(args.baseline), mine, sys.stderr)
    only = args.only or ",".join(SMOKE_GROUPS if args.smoke else GROUPS)
    groups = [g.strip() for g in only.split(",") if g.strip()]
    if not groups or set(groups) - set(GROUPS):
        parser.error(f"--only takes groups among {', '.join(GROUPS)}")
    settings = SMOKE if args.smoke else FULL
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be >= 1")
        settings = dataclasses.replace(settings, runs=args.runs, aio_runs=args.runs)
    started = time.monotonic()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="commssl-bench-") as tmp:
        bench = Bench(settings, Path(tmp), progress)
        try:
            bench.run(groups)
            results = bench.results()
            if args.check:  # commssl's rows of this run, or of a pass of their own when it had none
                results["baseline_rows"] = _baseline_rows(bench, baseline.load(args.baseline), progress)
        finally:
            bench.close()
    results["info"]["seconds"] = round(time.monotonic() - started, 1)
    results["markdown"] = report.markdown(results)
    print(results["markdown"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    progress(f"wrote {args.json}")
    if not args.check:
        return 0
    return report.check(results) | baseline.check(baseline.load(args.baseline), results["baseline_rows"],
                                                  sys.stderr, baseline.environment())


def _baseline_rows(bench: Bench, saved: Dict[str, Any], progress: Callable[[str], None]
                   ) -> Optional[baseline.Counts]:
    """commssl's callgrind rows for the comparison with the baseline, counted with the baseline's
    iteration counts: the run's own when it measured them so, else a pass of their own."""
    settings = {k: list(v) for k, v in dataclasses.asdict(bench.s).items() if k in baseline.SETTINGS}
    calls = bench.callback_calls.get("ecdsa-server")
    if settings == saved["settings"] and calls:
        mine = baseline.from_samples(bench.samples, calls)
        if mine is not None:
            return mine
    return baseline.measure_alone(saved["settings"], progress) if cg.available() else None


def _baseline_only(path: Path, record: bool, quiet: bool) -> int:
    """--record-baseline and --check-baseline: commssl's callgrind rows alone."""
    started = time.monotonic()

    def progress(message: str) -> None:
        if not quiet:
            print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    if not cg.available():
        print("valgrind is not installed: no instruction counts to compare", file=sys.stderr)
        return 2
    if record:
        settings = {k: list(v) for k, v in dataclasses.asdict(FULL).items() if k in baseline.SETTINGS}
        saved = baseline.record(baseline.measure_alone(settings, progress), settings, path)
        print(json.dumps(saved, indent=2))
        progress(f"wrote {path}")
        return 0
    saved = baseline.load(path)
    status = baseline.check(saved, baseline.measure_alone(saved["settings"], progress), sys.stdout,
                            baseline.environment())
    progress("done")
    return status


if __name__ == "__main__":
    sys.exit(main())
