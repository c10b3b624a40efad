"""Put one run's figures into the documentation: ``python -m bench.publish [RESULTS]``
(default ``bench/results.json``, what ``python -m bench`` writes).

It rewrites the blocks between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
markers and nothing else:

- ``docs/performance.md``: ``run`` (date, machine, versions), ``targets`` (one line
  per target, ratio or count first) and ``table`` (the whole table and its notes);
- ``README.md``: ``readme`` (a few ratios, with the date and the machine).

The prose around the blocks (why a target is missed, where its floor is) is written
by hand from the same run.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .report import MET, markdown

REPO = Path(__file__).resolve().parent.parent

#: The targets block: (row id, what, goal as the issue states it).
TARGETS = (
    ("mem-ecdsa-server", "In-memory handshakes, time (ECDSA, server-auth)", "≤ 1.02x the C floor"),
    ("mem-rsa-mutual", "In-memory handshakes, time (RSA, mutual)", "≤ 1.02x the C floor"),
    ("cg-hs", "In-memory handshake, instructions", "≤ +40k over the C floor"),
    ("sock-hs", "Blocking handshakes over loopback", "≥ 1.1x CPython `ssl`"),
    ("sock-bulk", "Bulk 64 KiB writes over loopback", "≥ 1.1x CPython `ssl`"),
    ("cg-data", "`get_certificate_data`, instructions", "≤ 1x `getpeercert()`"),
    ("cg-chain1", "Copy + release of a 1-certificate chain", "≤ 8k instructions"),
    ("cg-chain2", "Copy + release of a 2-certificate chain", "≤ 10k instructions"),
    ("cg-call", "A Python verify callback, per call", "≤ 3k instructions"),
    ("thr-speedup", "Two threads of handshakes", "≥ x1.85 one thread"),
    ("aio-hs-100", "asyncio handshakes/s, 100 connections", "≥ 1.1x asyncio `ssl`"),
    ("aio-echo-100", "asyncio echo MB/s, 100 connections", "≥ 1.1x asyncio `ssl`"),
    ("aio-hs-1000", "asyncio handshakes/s, 1,000 connections", "≥ 1.1x asyncio `ssl`"),
    ("aio-echo-1000", "asyncio echo MB/s, 1,000 connections", "≥ 1.1x asyncio `ssl`"),
    ("trio-hs-100", "trio handshakes/s, 100 connections", "≥ 1.1x `trio.SSLStream`"),
    ("trio-echo-100", "trio echo MB/s, 100 connections", "≥ 1.1x `trio.SSLStream`"),
    ("httpx-sync-new", "`httpx.Client`, new connection per request", "≥ 1.1x httpx's default transport"),
    ("httpx-sync-ka", "`httpx.Client`, keep-alive", "≥ 1.1x httpx's default transport"),
    ("httpx-aio-new", "`httpx.AsyncClient` on asyncio, new connection", "≥ 1.1x httpx's default transport"),
    ("httpx-aio-ka", "`httpx.AsyncClient` on asyncio, keep-alive", "≥ 1.1x httpx's default transport"),
)


def _rows(results: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {row["id"]: row for row in results["rows"]}


def _machine(info: Dict[str, Any]) -> str:
    return (f"{info['nproc']} vCPUs, {info['cpu']}, Python {info['python']}, "
            f"{info['commssl_openssl'].rsplit(' ', 3)[0]}")


def run_block(results: Dict[str, Any]) -> str:
    info = results["info"]
    return (f"Measured on {info['date']} on this project's build machine: {_machine(info)}, with\n"
            "`python -m bench` (every contender interleaved in each run; medians of "
            f"{info['settings']['runs']} runs, the asyncio rows of {info['settings'].get('aio_runs', '?')}).")


def targets_block(results: Dict[str, Any]) -> str:
    rows = _rows(results)
    lines = ["| target | goal | measured, ratio or count first | met |", "|---|---|---|---|"]
    for rid, what, wanted in TARGETS:
        row = rows.get(rid)
        if row is None:
            continue
        text = row.get("verdict", "")
        figure = text.split(" (goal")[0]
        rest = text.split("): ", 1)[1] if "): " in text else ""
        extra = rest.split("; ", 1)[1] if "; " in rest else ""
        met = "yes" if row.get("status") == MET else "no"
        lines.append(f"| {what} | {wanted} | {figure}{'; ' + extra if extra else ''} | {met} |")
    return "\n".join(lines)


def table_block(results: Dict[str, Any]) -> str:
    return markdown(results)


def _cell(rows: Dict[str, Dict[str, Any]], rid: str, who: str) -> Optional[float]:
    row = rows.get(rid)
    return None if row is None else row["cells"].get(who)


def readme_block(results: Dict[str, Any]) -> str:
    info, rows = results["info"], _rows(results)

    def ratio(rid: str) -> str:
        text = rows[rid]["verdict"] if rid in rows else "n/a"
        return text.split(" (goal")[0].split(" ")[0]

    def shown(form: Callable[[float], str]) -> Callable[[str, str], str]:
        def cell(rid: str, who: str) -> str:
            value = _cell(rows, rid, who)
            return "—" if value is None else form(value)
        return cell

    rate = shown(lambda v: f"{1 / v:,.0f}/s")
    mbs = shown(lambda v: f"{v:,.0f} MB/s")
    us = shown(lambda v: f"{v * 1e6:,.0f} µs")
    count = shown(lambda v: f"{v / 1e3:.1f}k")

    lines: List[str] = [
        f"From the run of {info['date'][:10]} ({_machine(info)}; ratios taken within the run,",
        "the machine's absolute figures move from day to day):",
        "",
        "| commssl against | ratio | absolute (this machine, that day) |",
        "|---|---:|---|",
        f"| CPython `ssl`, bulk 64 KiB writes over loopback | {ratio('sock-bulk')} | "
        f"{mbs('sock-bulk', 'commssl')} against {mbs('sock-bulk', 'cpython')} |",
        f"| CPython `ssl`, blocking handshakes over loopback | {ratio('sock-hs')} | "
        f"{rate('sock-hs', 'commssl')} against {rate('sock-hs', 'cpython')} (the C floor: "
        f"{rate('sock-hs', 'floor')}) |",
        f"| the C floor, in-memory handshakes (ECDSA) | {ratio('mem-ecdsa-server')} the time | "
        f"{us('mem-ecdsa-server', 'commssl')} against {us('mem-ecdsa-server', 'floor')} |",
        f"| asyncio's `ssl`, handshakes / echo, 100 connections | {ratio('aio-hs-100')} / "
        f"{ratio('aio-echo-100')} | {_cell(rows, 'aio-hs-100', 'commssl') or 0:,.0f} against "
        f"{_cell(rows, 'aio-hs-100', 'cpython') or 0:,.0f}/s; {mbs('aio-echo-100', 'commssl')} against "
        f"{mbs('aio-echo-100', 'cpython')} |",
        f"| pyOpenSSL, a Python verify callback (instructions per call) | "
        f"{count('cg-call', 'commssl')} | pyOpenSSL {count('cg-call', 'pyopenssl_sys')} |",
    ]
    return "\n".join(lines)


def fill(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` replaced by ``body``; ``ValueError`` without it."""
    pattern = re.compile(rf"(<!-- bench:{name} -->\n)(?:.*?\n)?(<!-- /bench:{name} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- bench:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text, count=1)


def publish(results: Dict[str, Any], repo: Path = REPO) -> None:
    perf = repo / "docs" / "performance.md"
    text = perf.read_text(encoding="utf-8")
    for name, body in (("run", run_block(results)), ("targets", targets_block(results)),
                       ("table", table_block(results))):
        text = fill(text, name, body)
    perf.write_text(text, encoding="utf-8")
    readme = repo / "README.md"
    readme.write_text(fill(readme.read_text(encoding="utf-8"), "readme", readme_block(results)),
                      encoding="utf-8")


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else REPO / "bench" / "results.json"
    publish(json.loads(path.read_text(encoding="utf-8")))
    print(f"published {path} into docs/performance.md and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
