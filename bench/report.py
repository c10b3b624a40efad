"""The benchmark's rows, targets and verdicts, the Markdown table, and ``--check``.

``rows`` turns the samples of a run into rows: each has its cells (medians, one per
contender) and, when it is a target row, a ``goal`` and the ``measured`` figure the
goal is about (a paired ratio, an instruction count...). ``status`` and ``verdict``
are computed from those two alone, so that ``python -m bench --check --from PATH``
can judge a results file written earlier.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

CONTENDERS = ("commssl", "floor", "cpython", "pyopenssl_sys", "pyopenssl_wheel", "uvloop")
CONTENDER_NAMES = {"commssl": "commssl", "floor": "C floor", "cpython": "CPython ssl",
                   "pyopenssl_sys": "pyOpenSSL (system)", "pyopenssl_wheel": "pyOpenSSL (wheel)"}
KEY_TYPES = ("ecdsa", "rsa")
MODES = (("server", False), ("mutual", True))
KEY_NAMES = {"ecdsa": "ECDSA P-256", "rsa": "RSA-2048"}
MODE_NAMES = {"server": "server-auth", "mutual": "mutual"}
MET, MISSED, NOT_MEASURED = "met", "NOT met", "not measured"

Samples = Dict[Tuple[str, str], List[float]]
Row = Dict[str, Any]


def median(xs: Sequence[float]) -> Optional[float]:
    return statistics.median(xs) if xs else None


def paired(a: Sequence[float], b: Sequence[float], fn: Callable[[float, float], float]) -> Optional[float]:
    """Median over runs of ``fn(a[i], b[i])``: both were measured in the same run."""
    return median([fn(x, y) for x, y in zip(a, b)])


# -- goals and verdicts ---------------------------------------------------------------


def goal(op: str, limit: float, form: str, vs: str = "", digits: int = 2) -> Dict[str, Any]:
    """A target: ``measured op limit``. ``form``: ``ratio`` (``1.03x vs``), ``count``
    (instructions) or ``added`` (instructions over the C floor)."""
    assert op in ("<=", ">=") and form in ("ratio", "count", "added")
    return {"op": op, "limit": limit, "form": form, "vs": vs, "digits": digits}


def status(row: Row) -> Optional[str]:
    """``met``, ``NOT met`` or ``not measured`` for a target row; None for the others."""
    g, value = row.get("goal"), row.get("measured")
    if g is None:
        return None
    if value is None:
        return NOT_MEASURED
    ok = value <= g["limit"] if g["op"] == "<=" else value >= g["limit"]
    return MET if ok else MISSED


def _figure(g: Dict[str, Any], value: float) -> str:
    if g["form"] == "ratio":
        return f"{value:.{g['digits']}f}x{' ' + g['vs'] if g['vs'] else ''}"
    if g["form"] == "added":
        return f"{value:+,.0f} instructions over {g['vs'] or 'the C floor'}"
    return f"{value:,.0f} instructions"


def _limit(g: Dict[str, Any]) -> str:
    if g["form"] == "ratio":
        return f"{g['limit']:g}x"
    return f"{g['limit']:+,.0f}" if g["form"] == "added" else f"{g['limit']:,.0f}"


def verdict(row: Row) -> str:
    """The row's last column: for a target row the measured figure first, then the
    goal and met / NOT met (or not measured), then the row's ``extra`` remarks."""
    g = row.get("goal")
    if g is None:
        return row.get("note") or "(no target)"
    st = status(row)
    if st == NOT_MEASURED:
        return f"not measured (goal {g['op']} {_limit(g)})"
    text = f"{_figure(g, row['measured'])} (goal {g['op']} {_limit(g)}): {st}"
    return text + (f"; {row['extra']}" if row.get("extra") else "")


def judge(rows: Sequence[Row]) -> None:
    """(Re)compute every row's ``status`` and ``verdict`` from its goal and measurement."""
    for row in rows:
        row["status"], row["verdict"] = status(row), verdict(row)


def check(results: Dict[str, Any], out: Any = sys.stderr) -> int:
    """``--check``: 1 when a measured target is missed (listed on ``out``), else 0.
    Targets without a measurement are listed as not measured, never counted as met."""
    rows = results.get("rows", [])
    judge(rows)
    by = {s: [r for r in rows if r["status"] == s] for s in (MET, MISSED, NOT_MEASURED)}
    for st, label in ((MISSED, "missed"), (NOT_MEASURED, "not measured")):
        for row in by[st]:
            print(f"{label}: {row['title']}: {row['verdict']}", file=out)
    print(f"targets: {len(by[MET])} met, {len(by[MISSED])} missed, {len(by[NOT_MEASURED])} not measured",
          file=out)
    return 1 if by[MISSED] else 0


# -- the rows ---------------------------------------------------------------------------


class _Cells:
    def __init__(self, samples: Samples) -> None:
        self.samples = samples

    def med(self, row: str, who: str) -> Optional[float]:
        return median(self.samples.get((row, who), []))

    def pair(self, row_a: str, who_a: str, row_b: str, who_b: str,
             fn: Callable[[float, float], float]) -> Optional[float]:
        return paired(self.samples.get((row_a, who_a), []), self.samples.get((row_b, who_b), []), fn)

    def row(self, rid: str, title: str, unit: str, **extra: Any) -> Row:
        out: Row = {"id": rid, "title": title, "unit": unit,
                    "cells": {who: self.med(rid, who) for who in CONTENDERS}}
        out.update(extra)
        return out


def _ratio(a: float, b: float) -> float:
    return a / b


def _minus(a: float, b: float) -> float:
    return a - b


def rows(samples: Samples, callback_calls: Dict[str, int], aio_loads: Sequence[Any]) -> List[Row]:
    """Every row of the table, target rows included even when not measured."""
    c, out = _Cells(samples), []
    for key in KEY_TYPES:
        for mode, _ in MODES:
            rid = f"mem-{key}-{mode}"
            added = c.pair(rid, "commssl", rid, "floor", _minus)
            title = f"1. in-memory handshakes, {KEY_NAMES[key]}, {MODE_NAMES[mode]}"
            out.append(c.row(rid, title, "handshake",
                             goal=goal("<=", 1.02, "ratio", "C floor", digits=3),
                             measured=c.pair(rid, "commssl", rid, "floor", _ratio),
                             extra=None if added is None else f"{added * 1e6:+.1f} µs"))
    for key in KEY_TYPES:
        for mode, _ in MODES:
            rid, base = f"cb-{key}-{mode}", f"mem-{key}-{mode}"
            calls = callback_calls.get(f"{key}-{mode}") or 1
            extra = {who: c.pair(rid, who, base, who, _minus) for who in CONTENDERS}
            note = "(no target)" if extra["commssl"] is None else \
                f"(no target) {extra['commssl'] * 1e6:+.1f} µs per handshake"
            out.append(c.row(rid, f"2. same + verify callback ({calls} calls), {KEY_NAMES[key]}, "
                                  f"{MODE_NAMES[mode]}", "handshake", note=note))
            per_call = {who: (v / calls if v is not None else None) for who, v in extra.items()}
            out.append({"id": f"cbcall-{key}-{mode}", "unit": "call", "cells": per_call,
                        "title": f"2. cost per callback call, {KEY_NAMES[key]}, {MODE_NAMES[mode]} "
                                 f"(difference / {calls})"})
    # Rows 3 and 4 also say where the C floor stands against CPython: whether the goal is
    # above what C on the same libssl reaches over loopback.
    floor_hs = c.pair("sock-hs", "cpython", "sock-hs", "floor", _ratio)
    out.append(c.row("sock-hs", "3. blocking handshakes over loopback, ECDSA, server-auth", "handshake",
                     goal=goal(">=", 1.1, "ratio", "CPython"),
                     measured=c.pair("sock-hs", "cpython", "sock-hs", "commssl", _ratio),
                     floor_vs_cpython=floor_hs, extra=_floor_reaches(floor_hs)))
    # A connection's bulk rate is bimodal here (about 1.3 or 2.3 GB/s, whoever the contender,
    # the C floor too: vCPU scheduling). The contenders' bulk samples run back to back in each
    # run (bench/run.py), so the ratio is taken per run, within one mode as a rule, and the
    # median of those ratios is quoted, as for every other ratio row.
    floor_bulk = c.pair("sock-bulk", "floor", "sock-bulk", "cpython", _ratio)
    out.append(c.row("sock-bulk", "4. bulk throughput, blocking stream, 64 KiB writes", "MB/s",
                     goal=goal(">=", 1.1, "ratio", "CPython"),
                     measured=c.pair("sock-bulk", "commssl", "sock-bulk", "cpython", _ratio),
                     floor_vs_cpython=floor_bulk, extra=_floor_reaches(floor_bulk)))
    out.append(c.row("call-chain", "5. copy + release of the peer chain (2 certificates)", "call"))
    out.append(c.row("call-serial", "5. get_certificate_serial_number", "call"))
    out.append(c.row("call-data", "5. get_certificate_data", "call"))
    out.append(c.row("thr-1", "6. in-memory handshakes on 1 thread (wall), ECDSA", "handshake"))
    out.append(c.row("thr-2", "6. in-memory handshakes on 2 threads (wall), ECDSA", "handshake"))
    out.append(_speedup(c))
    out.extend(_callgrind(c, callback_calls))
    out.extend(_aio(c, aio_loads))
    out.extend(_aio(c, aio_loads[:1], "trio", "11. trio", "trio.SSLStream"))
    out.extend(_wheel(c))
    out.extend(_httpx(c))
    judge(out)
    return out


def _floor_reaches(ratio: Optional[float]) -> Optional[str]:
    return None if ratio is None else f"the C floor reaches {ratio:.2f}x CPython"


def _speedup(c: _Cells) -> Row:
    speedup = {who: c.pair("thr-1", who, "thr-2", who, _ratio) for who in CONTENDERS}
    remarks = []
    if speedup["floor"] is not None:
        remarks.append(f"the C floor reaches x{speedup['floor']:.2f} here now")
    mine, floor = c.med("mem-ecdsa-server", "commssl"), c.med("mem-ecdsa-server", "floor")
    gil = None
    if mine and floor:
        # Python work between OpenSSL calls holds the GIL: (commssl - C) / commssl of row 1
        gil = max(0.0, (mine - floor) / mine)
        remarks.append(f"GIL held {100 * gil:.0f} % of a handshake (row 1): Amdahl bound "
                       f"x{1 / (gil + (1 - gil) / 2):.2f}")
    return {"id": "thr-speedup", "title": "6. speedup, 2 threads over 1", "unit": "ratio", "cells": speedup,
            "goal": goal(">=", 1.85, "ratio"), "measured": speedup["commssl"], "gil_share": gil,
            "extra": "; ".join(remarks) or None}


def _callgrind(c: _Cells, callback_calls: Dict[str, int]) -> List[Row]:
    out = []
    floor = c.med("cg-hs", "floor")
    added = c.pair("cg-hs", "commssl", "cg-hs", "floor", _minus)
    out.append(c.row("cg-hs", "7. instructions per in-memory handshake (callgrind), ECDSA, server-auth",
                     "instr", goal=goal("<=", 40_000, "added"), measured=added,
                     extra=f"+{100 * added / floor:.1f} %" if added is not None and floor else None))
    calls = callback_calls.get("ecdsa-server") or 3
    per_call = {who: c.pair("cg-hs-cb", who, "cg-hs", who, lambda a, b: (a - b) / calls)
                for who in CONTENDERS}
    mine, theirs = per_call["commssl"], per_call["pyopenssl_sys"] or per_call["pyopenssl_wheel"]
    out.append({"id": "cg-call", "unit": "count", "cells": per_call,
                "title": f"7. instructions per Python verify callback call (callgrind; difference / {calls})",
                "goal": goal("<=", 3_000, "count"), "measured": mine,
                "extra": f"{theirs / mine:.1f}x fewer than pyOpenSSL" if mine and theirs else None})
    out.append(c.row("cg-data", "7. instructions per get_certificate_data(leaf) call (callgrind; CPython: "
                                "SSLObject.getpeercert())", "count", goal=goal("<=", 1.0, "ratio", "CPython"),
                     measured=c.pair("cg-data", "commssl", "cg-data", "cpython", _ratio)))
    for n, limit in ((1, 8_000), (2, 10_000)):
        rid = f"cg-chain{n}"
        out.append(c.row(rid, f"7. instructions per copy + release of the peer chain ({n} certificate"
                              f"{'s' if n > 1 else ''}, callgrind)", "count",
                         goal=goal("<=", limit, "count"), measured=c.med(rid, "commssl")))
    return out


def _aio(c: _Cells, loads: Sequence[Any], rid: str = "aio", title: str = "8. asyncio",
         vs: str = "asyncio ssl") -> List[Row]:
    """Rows 8 (asyncio: commssl against asyncio's ssl, uvloop's beside it) and, with
    ``rid="trio"``, rows 11 (``commssl.anyio`` on trio against ``trio.SSLStream``, the CPython
    ssl column): handshakes/s and echo MB/s at each load level."""
    out = []
    for load in loads:
        for kind, unit, what in (("hs", "hs/s", "handshakes/s"), ("echo", "MB/s", "echo MB/s")):
            row = f"{rid}-{kind}-{load.label}"
            size = f", {load.echo_bytes >> 10:,} KiB each" if kind == "echo" else \
                f", {load.connections:,} in all"
            uv = c.pair(row, "commssl", row, "uvloop", _ratio)
            out.append(c.row(row, f"{title} {what}, {load.concurrency:,} concurrent connections{size}", unit,
                             goal=goal(">=", 1.1, "ratio", vs),
                             measured=c.pair(row, "commssl", row, "cpython", _ratio),
                             extra=f"{uv:.2f}x uvloop ssl" if uv is not None else None))
    return out


def _wheel_line(info: Dict[str, Any]) -> str:
    wheel, groups = info.get("commssl_wheel"), info.get("wheel_groups") or {}
    if not wheel:
        return "Row 9 (commssl's wheel) not measured."
    return (f"Row 9: commssl's wheel {wheel['wheel']} on {wheel['openssl']}, negotiating "
            + ", ".join(str(g) for g in groups.values()) + "; its other columns: CPython ssl on "
            f"{info.get('cpython_openssl', '?')} (its default group), pyOpenSSL's wheel set to the same "
            "group.")


def _wheel(c: _Cells) -> List[Row]:
    """Row 9: commssl's wheel (its OpenSSL 3.5 LTS; cells: the wheel's commssl, CPython ``ssl``
    on the system's OpenSSL, pyOpenSSL's wheel with the same group)."""
    title = "9. in-memory handshakes, commssl's wheel (OpenSSL 3.5 LTS), ECDSA, server-auth, "
    rid = "wheel-x25519"
    vs_pyopenssl = c.pair(rid, "pyopenssl_wheel", rid, "commssl", _ratio)
    out = [c.row(rid, title + "X25519", "handshake",
                 goal=goal(">=", 1.4, "ratio", "CPython (system OpenSSL)"),
                 measured=c.pair(rid, "cpython", rid, "commssl", _ratio)),
           c.row(rid, title + "X25519, against pyOpenSSL's wheel", "handshake",
                 goal=goal(">=", 1.0, "ratio", "pyOpenSSL's wheel"), measured=vs_pyopenssl)]
    out[1]["id"] = "wheel-x25519-pyopenssl"
    mlkem = c.pair("wheel-mlkem", "pyopenssl_wheel", "wheel-mlkem", "commssl", _ratio)
    x25519 = c.pair("wheel-mlkem", "commssl", rid, "commssl", _ratio)
    notes = [f"{mlkem:.2f}x pyOpenSSL's wheel" if mlkem is not None else None,
             f"{x25519:.2f}x the time of X25519" if x25519 is not None else None]
    out.append(c.row("wheel-mlkem", title + "X25519MLKEM768 (hybrid post-quantum)", "handshake",
                     note="(no target) " + "; ".join(n for n in notes if n)))
    return out


_HTTPX = (("sync-new", "httpx.Client, new connection per request"), ("sync-ka", "httpx.Client, keep-alive"),
          ("aio-new", "httpx.AsyncClient on asyncio, new connection per request"),
          ("aio-ka", "httpx.AsyncClient on asyncio, keep-alive"),
          ("trio-new", "httpx.AsyncClient on trio, new connection per request"),
          ("trio-ka", "httpx.AsyncClient on trio, keep-alive"))


def _httpx(c: _Cells) -> List[Row]:
    """Rows 10: httpx with commssl's transport against httpx's default (the CPython ssl column):
    the goal on wall time per request, the client's CPU time per request beside it; trio
    informational."""
    out = []
    for key, what in _HTTPX:
        rid = f"httpx-{key}"
        ratio = c.pair(rid, "cpython", rid, "commssl", _ratio)
        cpu = c.pair(f"{rid}:cpu", "cpython", f"{rid}:cpu", "commssl", _ratio)
        cpu_text = None if cpu is None else f"client CPU {cpu:.2f}x"
        title = f"10. {what}, vs httpx's default transport"
        if key.startswith("trio"):
            texts = [f"{ratio:.2f}x" if ratio is not None else None, cpu_text]
            out.append(c.row(rid, title, "request",
                             note="(no target) " + "; ".join(t for t in texts if t)))
        else:
            out.append(c.row(rid, title, "request", goal=goal(">=", 1.1, "ratio", "httpx's default"),
                             measured=ratio, extra=cpu_text))
    return out


def _httpx_line(info: Dict[str, Any]) -> str:
    h = info.get("httpx")
    if not h:
        return "Rows 10 (httpx) not measured."
    return (f"Rows 10: httpx {h['httpx']}{', trio ' + h['trio'] if h.get('trio') else ''}, against "
            f"{h['server']} on 127.0.0.1 in another process; both transports on the OpenSSL above.")


# -- the table ---------------------------------------------------------------------------


_CELL: Dict[str, Callable[[float], str]] = {
    "handshake": lambda v: f"{1 / v:,.0f}/s ({v * 1e6:,.0f} µs)",
    "request": lambda v: f"{1 / v:,.0f}/s ({v * 1e6:,.0f} µs)",
    "call": lambda v: f"{v * 1e6:.2f} µs",
    "MB/s": lambda v: f"{v:,.0f} MB/s",
    "hs/s": lambda v: f"{v:,.0f}/s",
    "ratio": lambda v: f"x{v:.2f}",
    "instr": lambda v: f"{v / 1e6:.3f} M",
    "count": lambda v: f"{v:,.0f}",
}


def _cell(unit: str, value: Optional[float]) -> str:
    if value is None:
        return "—"
    return _CELL.get(unit, lambda v: f"{v:g}")(value)


def markdown(results: Dict[str, Any]) -> str:
    info = results["info"]
    sys_info, wheel, uv = info.get("pyopenssl_sys"), info.get("pyopenssl_wheel"), info.get("uvloop")
    sys_head = (f"pyOpenSSL {sys_info['pyopenssl']} ({sys_info['openssl']})" if sys_info
                else "pyOpenSSL (system)")
    wheel_head = (f"pyOpenSSL {wheel['pyopenssl']} (wheel, {wheel['openssl']})" if wheel
                  else "pyOpenSSL (wheel)")
    heads = ["benchmark", "commssl", "C floor", "CPython ssl", sys_head, wheel_head,
             f"uvloop {uv} ssl" if uv else "uvloop ssl", "commssl vs goal"]
    i = {k: info.get(k, "?") for k in ("date", "nproc", "cpu", "python", "commssl", "commssl_openssl",
                                       "cpython_openssl", "loadavg_start", "loadavg_end")}
    groups = info.get("groups") or {}
    lines = [
        f"commssl benchmark, {i['date']}: {i['nproc']} CPUs ({i['cpu']}), Python {i['python']}, "
        f"commssl {i['commssl']} on {i['commssl_openssl']}, CPython ssl on {i['cpython_openssl']}; "
        f"load average {i['loadavg_start']} at the start, {i['loadavg_end']} at the end.",
        "Key exchange group each contender negotiates (ECDSA, server-auth): "
        + (", ".join(f"{CONTENDER_NAMES.get(who, who)} {g or 'not reported'}" for who, g in groups.items())
           or "not measured") + ".",
        _wheel_line(info),
        _httpx_line(info),
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(CONTENDERS) + ["---"]) + "|",
    ]
    for row in results["rows"]:
        cells = [_cell(row.get("unit", ""), row.get("cells", {}).get(who)) for who in CONTENDERS]
        lines.append("| " + " | ".join([row["title"], *cells, row.get("verdict") or verdict(row)]) + " |")
    lines.append("")
    lines.extend(f"- {note}" for note in results.get("notes", []))
    return "\n".join(lines)


NOTES = """\
Targets: the last column gives commssl's figure first (a ratio measured in the same run, or an
instruction count), then the goal; "python -m bench --check" exits 1 when a measured target is
missed. Rows without a goal are informational (no regression wanted there either).

Single-threaded rows (1, 2, 5) count the measuring thread's CPU time (the machine is shared;
wall time would add other processes' load); rows 3, 4, 6, 8 and 11 are wall time. Each cell is the
median of {runs} runs (rows 8 and 11: {aio_runs}; row 7: one count); contenders are interleaved
within each run. Ratios are the median over runs of the ratio within each run (row 1:
commssl / C floor, per run).

Contexts are configured alike everywhere: TLS >= 1.2, no renegotiation or compression; the
client trusts the system's default CA file and directory plus the chain's root and checks the
name localhost; mutual: the server requires and verifies a client certificate. The server sends
leaf + intermediate; TLS 1.3 with each library's default key exchange group (the line above
the table names the one each negotiated), one full handshake per pair of fresh SSLs.

commssl: SSLs from make_ssl_ctx contexts via the library's new_ssl, joined by a BIO pair and
driven with lib.commssl_do. C floor: bench/floor.c, the same calls in C on the same libssl.
CPython: SSLObject over MemoryBIOs. pyOpenSSL: Connection over memory BIOs (its own API), with
the same host-name check set through its bindings.

Row 2: the callback returns preverify_ok (commssl: set_verification_mode callback; pyOpenSSL:
set_verify callback; C floor: a C callback; CPython ssl has no verify callback API). The
per-call cost is the median over runs of (with callback - without) / calls per handshake.

Rows 3-4: client in this process, server (same library) in another; a handshake row is connect
+ handshake + 1-byte request and answer + close; bulk sends 64 KiB writes, timed until the
server's 1-byte answer. C floor: client in the floor process, server a "floor serve" process,
blocking sockets with SSL_set_fd and OpenSSL's read-ahead, close_notify sent without waiting
(as commssl's close()); the verdict gives its ratio to CPython too (the same pairing per run),
so a goal above it is above what C on the same libssl reaches here. Clients run on one CPU,
servers on the other. One connection's bulk rate comes out in one of two modes on this
machine (about 1.3 or 2.3 GB/s, for every contender, the C floor included), so row 4's
samples run back to back in each run (commssl, CPython and the C floor in one block) and its
ratio is the median of the per-run ratios; its samples are in the JSON.

Row 5 (client side, after an ECDSA handshake): commssl ssl_connection_copy_peer_certificates +
release_certificates_vector; C floor: SSL_get_peer_cert_chain + X509_up_ref / X509_free of each;
CPython: getpeercert(binary_form=True) (the leaf's DER only); pyOpenSSL: get_peer_cert_chain().
Serial: C floor reads the bytes; CPython parses getpeercert()['serialNumber']; pyOpenSSL
X509.get_serial_number(). Data: CPython getpeercert(); pyOpenSSL: subject, issuer, serial,
validity, SANs when it still has X509 extensions, SHA-256 digest.

Row 7 (callgrind, valgrind's instruction count: the same whatever the machine's load): each
figure is (count of N2 - count of N1) / (N2 - N1) over two fresh processes, so start-up cancels
out. Handshakes: ECDSA, server-auth. Per call (bench/instructions.py's call drivers, a plain
loop around the call): get_certificate_data of the leaf against CPython's getpeercert(); the
peer-chain copy + release after a handshake whose server sent leaf + intermediate (2) or its
leaf alone (1; the client then trusts root and intermediate); the C floor's column is
SSL_get_peer_cert_chain + X509_up_ref / X509_free of each.

Row 8 (bench/bench_aio.py): client and server in one process on one event loop (a fresh loop
per measurement), all dialling 127.0.0.1 with the server name localhost. CPython column: asyncio
streams with ssl= on asyncio's loop; uvloop column: the same code on uvloop's loop (its own TLS
transport). Handshakes/s: connect + handshake + close; echo: each connection sends its bytes in
64 KiB writes, echoed back, timed from connecting; figure: bytes sent per second.

Rows 10 (bench/bench_httpx.py): one HTTPS server in another process (nginx when installed, else
CPython's http.server; no session resumption), on the other CPU; the client requests
https://127.0.0.1:PORT/ with the server name localhost (httpx's sni_hostname: SNI and the name
checked), trusting what the other rows' clients trust. commssl: commssl.httpx's transports on
one make_ssl_ctx context; CPython ssl column: httpx's default transports on an ssl.SSLContext
configured alike. New connection: httpx.Limits(max_keepalive_connections=0). A sample is the
wall time per request of sequential requests on a fresh client (after its first request); the
ratio is per run, and "client CPU" the same ratio of the client process's CPU time.

Rows 11 (bench/bench_anyio.py): as row 8, on trio (a fresh trio run per measurement) at row 8's
first load level: commssl.anyio's connect and wrap over anyio's trio streams against
trio.SSLStream (trio.serve_ssl_over_tcp and open_tcp_stream), in the CPython ssl column: trio's
stream drives CPython's ssl.SSLObject."""
