"""commssl's instruction counts against a recorded baseline: the regression gate.

``bench/baseline.json`` holds commssl's callgrind rows (row 7) measured at one
commit (issue 21: the commit before the move into layers). Callgrind counts the
same instructions whatever the machine's load, so a row more than ``TOLERANCE``
above its baseline is a real regression, not noise.

    python -m bench --check-baseline     # measure these rows only, compare (about 3 min)
    python -m bench --record-baseline    # measure and (re)write bench/baseline.json
    python -m bench --check              # the full run, the targets, and this comparison

Only commssl's column is compared (the other contenders' counts do not move with
commssl's code), with the C floor's handshake measured too for commssl's excess over it.
"""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

from . import floor as floor_mod
from . import instructions as cg
from .pki import Chain, leaf_only, make_chains

HERE = Path(__file__).resolve().parent
PATH = HERE / "baseline.json"
TOLERANCE = 0.01  # a row more than 1 % above its baseline fails
# Row 7's commssl figures: handshake and its excess over the C floor's (1 % of a handshake
# is about all of commssl's share, so the excess is the figure that shows a regression in
# commssl), the same with a verify callback, per callback call, get_certificate_data,
# peer-chain copy + release of 1 and 2 certificates.
ROWS = ("cg-hs", "cg-hs-added", "cg-hs-cb", "cg-hs-cb-added", "cg-call", "cg-data", "cg-chain1", "cg-chain2")
# Shown, not gated: per callback call is a difference of two 11M counts that differ by tens
# of instructions from run to run (OpenSSL's random numbers), so two runs of the same code
# came out 0.6 % and 1.0 % apart; cg-hs-cb-added gates the callback path instead.
NOT_GATED = ("cg-call",)
MEASURED = ("cg-hs", "cg-hs-cb", "cg-data", "cg-chain1", "cg-chain2")  # the rest are derived

SETTINGS = ("cg", "cg_data", "cg_chain")  # run.Settings' iteration counts of these rows
Counts = Dict[str, float]


def measure(chains: Mapping[str, Chain], scratch: Path, hs: Tuple[int, int], data: Tuple[int, int],
            chain: Tuple[int, int], progress: Callable[[str], None]) -> Counts:
    """commssl's measured callgrind rows (``MEASURED``), each (count(N2) - count(N1)) / (N2 - N1)."""
    ecdsa = chains["ecdsa"]
    out: Counts = {}
    for row, callback in (("cg-hs", False), ("cg-hs-cb", True)):
        progress(f"rows 7: callgrind, commssl{' + callback' if callback else ''}")
        out[row] = cg.per_handshake("commssl", "ecdsa", False, *hs, ecdsa.directory.parent, scratch=scratch,
                                    callback=callback)
    progress("rows 7: callgrind, commssl certificate data")
    out["cg-data"] = cg.per_call("data", *data, ecdsa.directory, scratch)
    for n, peer in ((1, leaf_only(ecdsa)), (2, ecdsa)):
        progress(f"rows 7: callgrind, commssl peer chain of {n}")
        out[f"cg-chain{n}"] = cg.per_call("chain", *chain, peer.directory, scratch, chain_length=n)
    return out


def measure_alone(settings: Mapping[str, Any], progress: Callable[[str], None]) -> Counts:
    """Every row of ``ROWS``, nothing else measured (fresh chains in a scratch directory);
    ``settings``: the iteration counts ``cg``, ``cg_data`` and ``cg_chain``."""
    from . import lib_commssl

    with tempfile.TemporaryDirectory(prefix="commssl-baseline-") as tmp:
        progress("making the certificate chains (openssl CLI)")
        chains = make_chains(Path(tmp) / "pki")
        exe = floor_mod.build(Path(tmp))
        floor = []
        for callback in (False, True):
            progress(f"rows 7: callgrind, the C floor{' + callback' if callback else ''}")
            floor.append(cg.per_handshake("floor", "ecdsa", False, *_pair(settings["cg"]), Path(tmp) / "pki",
                                          exe, Path(tmp), callback=callback))
        measured = measure(chains, Path(tmp), _pair(settings["cg"]), _pair(settings["cg_data"]),
                           _pair(settings["cg_chain"]), progress)
        return derive(measured, lib_commssl.count_callback_calls(chains["ecdsa"], False), *floor)


def _pair(ns: Sequence[int]) -> Tuple[int, int]:
    return int(ns[0]), int(ns[1])


def derive(measured: Mapping[str, float], callback_calls: int, floor_hs: float, floor_cb: float) -> Counts:
    """Every row of ``ROWS`` from the measured ones and the C floor's handshake, as report.py
    computes row 7: the per-call cost of a verify callback is (handshake with it - without) /
    the calls per handshake."""
    out = dict(measured)
    out["cg-hs-added"] = measured["cg-hs"] - floor_hs
    out["cg-hs-cb-added"] = measured["cg-hs-cb"] - floor_cb
    out["cg-call"] = (measured["cg-hs-cb"] - measured["cg-hs"]) / callback_calls
    return out


def from_samples(samples: Mapping[Tuple[str, str], Sequence[float]], callback_calls: int) -> Optional[Counts]:
    """commssl's rows from a run's samples; None when the instructions group did not measure them."""
    got = {row: samples.get((row, "commssl")) for row in MEASURED}
    floor, floor_cb = samples.get(("cg-hs", "floor")), samples.get(("cg-hs-cb", "floor"))
    if not all(got.values()) or not floor or not floor_cb:
        return None
    return derive({row: xs[0] for row, xs in got.items() if xs}, callback_calls, floor[0], floor_cb[0])


def from_results(results: Mapping[str, Any]) -> Optional[Counts]:
    """The same from a results JSON (``--from``): what ``--check`` compared, else its samples
    (keyed ``row|contender``)."""
    if results.get("baseline_rows"):
        return dict(results["baseline_rows"])
    samples = {tuple(k.split("|", 1)): v for k, v in results.get("samples", {}).items()}
    calls = results.get("callback_calls", {}).get("ecdsa-server") or 3
    return from_samples(samples, calls)


# -- the file ------------------------------------------------------------------------------


def environment() -> Dict[str, str]:
    """What the counts depend on besides commssl's code: the libssl commssl loaded and the Python."""
    import commssl

    return {"openssl": str(commssl.openssl_version()["loaded"]), "python": platform.python_version(),
            "implementation": platform.python_implementation(), "machine": platform.machine()}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def record(counts: Mapping[str, float], settings: Mapping[str, Any], path: Path = PATH) -> Dict[str, Any]:
    """Write ``counts`` as the baseline, with the commit, OpenSSL and Python they were measured on."""
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "src", "build_ffi.py"))
    baseline = {
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "subject": _git("log", "-1", "--format=%s"),
        "source_modified": dirty,  # src/ or build_ffi.py differed from the commit
        "recorded": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **environment(),
        "tolerance": TOLERANCE,
        "not_gated": list(NOT_GATED),
        "settings": dict(settings),
        "rows": {row: round(counts[row], 1) for row in ROWS},
    }
    path.write_text(json.dumps(baseline, indent=2) + "\n")
    return baseline


def load(path: Path = PATH) -> Dict[str, Any]:
    loaded: Dict[str, Any] = json.loads(path.read_text())
    return loaded


# -- the comparison --------------------------------------------------------------------------


def compare(baseline: Mapping[str, float], now: Mapping[str, Optional[float]],
            tolerance: float = TOLERANCE, not_gated: Sequence[str] = NOT_GATED
            ) -> Tuple[bool, List[Tuple[str, float, Optional[float], Optional[float], str]]]:
    """Each baseline row against ``now``: (row, baseline, now, ratio, verdict); ok is False when
    a gated row is more than ``tolerance`` slower (ratio now / baseline above 1 + tolerance)
    or missing (a row the gate cannot see does not pass)."""
    table, ok = [], True
    for row, base in baseline.items():
        value = now.get(row)
        ratio = None if value is None or not base else value / base
        if row in not_gated:
            verdict = "(shown, not gated)"
            table.append((row, base, value, ratio, verdict))
            continue
        if ratio is None:
            verdict = "NOT measured"
        elif ratio > 1 + tolerance:
            verdict = f"SLOWER by more than {100 * tolerance:g} %"
        else:
            verdict = "ok"
        ok = ok and verdict == "ok"
        table.append((row, base, value, ratio, verdict))
    return ok, table


def check(saved: Mapping[str, Any], now: Optional[Mapping[str, float]], out: TextIO,
          env: Optional[Mapping[str, str]] = None) -> int:
    """Print the comparison of ``now`` with the baseline ``saved`` (a loaded baseline.json) on
    ``out``: 1 when a row is more than its tolerance slower or missing, else 0."""
    tolerance = float(saved.get("tolerance", TOLERANCE))
    ok, table = compare(saved["rows"], now or {}, tolerance, saved.get("not_gated", NOT_GATED))
    print(f"baseline: commssl's callgrind rows against {str(saved.get('commit', '?'))[:12]} "
          f"({saved.get('openssl')}, Python {saved.get('python')}); fails above x{1 + tolerance:g}", file=out)
    for key in ("openssl", "python"):
        if env is not None and env.get(key) != saved.get(key):
            print(f"baseline: WARNING: measured on {key} {env.get(key)}, the baseline on {saved.get(key)}: "
                  "not like with like (re-record the baseline at its commit on this set-up)", file=out)
    print("| row | baseline | now | ratio | |", file=out)
    print("|---|---:|---:|---:|---|", file=out)
    for row, base, value, ratio, verdict in table:
        now_cell = "—" if value is None else f"{value:,.0f}"
        ratio_cell = "—" if ratio is None else f"{ratio:.4f}"
        print(f"| {row} | {base:,.0f} | {now_cell} | {ratio_cell} | {verdict} |", file=out)
    if now is None:
        print("baseline: not measured (no callgrind rows: valgrind missing, or a results file without "
              "the instructions group)", file=out)
        return 0
    print(f"baseline: {'every row within' if ok else 'a row is NOT within'} {100 * tolerance:g} %", file=out)
    return 0 if ok else 1
