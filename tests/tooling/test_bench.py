"""The benchmark's smoke mode: every row still runs and gives sane numbers.

Speed goals live in the benchmark itself (``python -m bench``), not here: this
only keeps the benchmark from rotting.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from helpers import bundled_openssl

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ beside tests/, as in a source tree or cibuildwheel's test-sources

from bench import report  # noqa: E402

MEMORY_ROWS = [f"{kind}-{key}-{mode}" for kind in ("mem", "cb") for key in ("ecdsa", "rsa")
               for mode in ("server", "mutual")]
PER_CALLBACK_ROWS = [f"cbcall-{key}-{mode}" for key in ("ecdsa", "rsa") for mode in ("server", "mutual")]
CALLBACK_ROWS = [row for key in ("ecdsa", "rsa") for mode in ("server", "mutual")
                 for row in (f"cb-{key}-{mode}", f"cbcall-{key}-{mode}")]
CALLGRIND_ROWS = ["cg-hs", "cg-call", "cg-data", "cg-chain1", "cg-chain2"]  # not in the smoke: minutes
AIO_ROWS = [f"aio-{kind}-{n}" for n in ("100", "1000") for kind in ("hs", "echo")]
TRIO_ROWS = ["trio-hs-100", "trio-echo-100"]  # commssl.anyio against trio.SSLStream
WHEEL_ROWS = ["wheel-x25519", "wheel-x25519-pyopenssl", "wheel-mlkem"]
HTTPX_ROWS = [f"httpx-{rt}-{kind}" for rt in ("sync", "aio", "trio") for kind in ("new", "ka")]
HTTPX_TARGETS = HTTPX_ROWS[:4]  # trio's are informational
ROWS = MEMORY_ROWS[:4] + CALLBACK_ROWS + [
    "sock-hs", "sock-bulk", "call-chain", "call-serial", "call-data", "thr-1", "thr-2", "thr-speedup",
] + CALLGRIND_ROWS + AIO_ROWS + TRIO_ROWS + WHEEL_ROWS + HTTPX_ROWS
TARGET_ROWS = (MEMORY_ROWS[:4] + ["sock-hs", "sock-bulk", "thr-speedup"] + CALLGRIND_ROWS + AIO_ROWS
               + TRIO_ROWS + WHEEL_ROWS[:2] + HTTPX_TARGETS)
HAS_TRIO = importlib.util.find_spec("trio") is not None
HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--quiet", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results: Dict[str, Any] = json.loads(out.read_text())
    results["stdout"] = done.stdout
    return results


def _rows(results: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {row["id"]: row for row in results["rows"]}


def test_every_row_is_there_in_order(smoke: Dict[str, Any]) -> None:
    assert [row["id"] for row in smoke["rows"]] == ROWS


def test_table_has_a_line_per_row(smoke: Dict[str, Any]) -> None:
    table = smoke["stdout"]
    assert "| benchmark | commssl | C floor | CPython ssl |" in table
    body = [line for line in table.splitlines() if line.startswith("| ") and "benchmark" not in line]
    assert len(body) == len(ROWS)
    for row, line in zip(smoke["rows"], body):
        assert line.startswith(f"| {row['title']} |")
    assert smoke["markdown"] in table


def _sane(unit: str, value: float) -> bool:
    if not math.isfinite(value):
        return False
    return {
        "handshake": 1e-6 < value < 5.0,  # seconds per handshake
        "request": 1e-6 < value < 5.0,  # seconds per HTTPS request
        "call": 1e-10 < value < 1e-2,  # seconds per call
        "MB/s": 0.1 < value < 1e6,
        "ratio": 0.0 < value < 100.0,
        "hs/s": 1.0 < value < 1e6,
    }[unit]


@pytest.mark.parametrize("who", ["commssl", "floor", "cpython"])
def test_measured_contenders_have_sane_positive_numbers(smoke: Dict[str, Any], who: str) -> None:
    rows = _rows(smoke)
    # CPython has no verify-callback API or group choice and the C floor no certificate
    # data, asyncio, trio, wheel or httpx; the smoke runs no callgrind; row 9 needs a built wheel.
    absent = set(CALLGRIND_ROWS) | {
        "cpython": {r for r in MEMORY_ROWS if r.startswith("cb-")} | set(PER_CALLBACK_ROWS) | {"wheel-mlkem"},
        "floor": {"call-data", *AIO_ROWS, *TRIO_ROWS, *WHEEL_ROWS, *HTTPX_ROWS},
        "commssl": set(),
    }[who]
    if not HAS_TRIO:
        absent |= set(HTTPX_ROWS[4:]) | set(TRIO_ROWS)
    if smoke["info"].get("commssl_wheel") is None:
        absent |= set(WHEEL_ROWS)
    for rid in ROWS:
        value = rows[rid]["cells"][who]
        if rid in absent:
            assert value is None, (rid, who)
        elif rid in PER_CALLBACK_ROWS:
            assert value is not None and math.isfinite(value), (rid, who)  # a difference: any sign in smoke
        else:
            assert value is not None and _sane(rows[rid]["unit"], value), (rid, who, value)


def test_target_rows_give_the_ratio_first_then_the_goal(smoke: Dict[str, Any]) -> None:
    rows = _rows(smoke)
    assert [rid for rid in ROWS if "goal" in rows[rid]] == TARGET_ROWS
    for rid in TARGET_ROWS:
        row = rows[rid]
        if rid in CALLGRIND_ROWS or (rid in WHEEL_ROWS and smoke["info"].get("commssl_wheel") is None):
            # not run (callgrind; row 9 without a wheel): never counted as met
            assert row["measured"] is None and row["status"] == "not measured", row
            assert row["verdict"].startswith("not measured (goal "), row
            continue
        assert row["measured"] is not None and row["measured"] > 0, row
        assert row["status"] in ("met", "NOT met"), row  # timings are never asserted
        assert row["verdict"].startswith(f"{row['measured']:.{row['goal']['digits']}f}x"), row
        assert f"(goal {row['goal']['op']} " in row["verdict"], row
    assert rows["mem-ecdsa-server"]["goal"]["limit"] == 1.02
    assert rows["thr-speedup"]["goal"]["limit"] == 1.85


def test_socket_rows_have_a_c_floor(smoke: Dict[str, Any]) -> None:
    """Rows 3 and 4: the C floor's cells are filled, and the verdict gives its ratio to
    CPython after commssl's (numbers only: timings are never asserted)."""
    rows = _rows(smoke)
    for rid in ("sock-hs", "sock-bulk"):
        row = rows[rid]
        value = row["cells"]["floor"]
        assert value is not None and value > 0 and _sane(row["unit"], value), (rid, value)
        ratio = row["floor_vs_cpython"]
        assert ratio is not None and ratio > 0 and math.isfinite(ratio), row
        assert row["verdict"].endswith(f"; the C floor reaches {ratio:.2f}x CPython"), row
    assert len(smoke["samples"]["sock-hs|floor"]) == len(smoke["samples"]["sock-hs|cpython"])


def test_uvloop_column_is_filled_or_explained(smoke: Dict[str, Any]) -> None:
    rows = _rows(smoke)
    for rid in ROWS:
        value = rows[rid]["cells"]["uvloop"]
        if rid in AIO_ROWS and HAS_UVLOOP:
            assert value is not None and _sane(rows[rid]["unit"], value), (rid, value)
        else:
            assert value is None, rid
    if not HAS_UVLOOP:
        assert any("uvloop is not installed" in note for note in smoke["notes"])


def test_pyopenssl_wheel_column_is_filled(smoke: Dict[str, Any]) -> None:
    rows = _rows(smoke)
    for rid in MEMORY_ROWS + ["call-chain", "call-serial", "call-data", "thr-1", "thr-2"]:
        value = rows[rid]["cells"]["pyopenssl_wheel"]
        assert value is not None and _sane(rows[rid]["unit"], value), (rid, value)
    assert smoke["info"]["pyopenssl_wheel"]["openssl"].startswith("OpenSSL")


def test_system_pyopenssl_column_is_filled_or_explained(smoke: Dict[str, Any]) -> None:
    rows = _rows(smoke)
    info = smoke["info"]["pyopenssl_sys"]
    if info is None:
        assert any("pyOpenSSL" in note and "system" in note for note in smoke["notes"])
        assert all(row["cells"]["pyopenssl_sys"] is None for row in smoke["rows"])
        return
    if bundled_openssl():
        # the system's pyOpenSSL runs on the system's OpenSSL; a wheel brings its own
        assert info["openssl"].startswith("OpenSSL ")
    else:
        # like with like: the same OpenSSL as commssl
        assert info["openssl"] == smoke["info"]["commssl_openssl"]
    for rid in MEMORY_ROWS + ["call-chain", "call-serial", "thr-1", "thr-2"]:
        value = rows[rid]["cells"]["pyopenssl_sys"]
        assert value is not None and _sane(rows[rid]["unit"], value), (rid, value)


def test_results_record_the_machine_and_every_sample(smoke: Dict[str, Any]) -> None:
    info = smoke["info"]
    assert info["nproc"] >= 1 and info["cpu"]
    if bundled_openssl():
        # bench/floor.c builds against the system's OpenSSL (pkg-config); a wheel brings
        # its own, so the two may differ (the floor then measures another OpenSSL)
        assert info["floor_openssl"].startswith("OpenSSL 3")
    else:
        assert info["floor_openssl"] == info["commssl_openssl"]
    runs = info["settings"]["runs"]
    assert len(smoke["samples"]["mem-ecdsa-server|commssl"]) == runs >= 1
    assert smoke["callback_calls"]["ecdsa-server"] == 3  # root, intermediate, leaf
    assert smoke["callback_calls"]["ecdsa-mutual"] == 6


def test_each_contender_names_the_group_it_negotiated(smoke: Dict[str, Any]) -> None:
    """Read four ways (commssl's accessor, the floor's SSL_get_negotiated_group, pyOpenSSL's,
    CPython's ServerHello): libraries on one OpenSSL with its defaults agree."""
    groups = smoke["info"]["groups"]
    assert groups["commssl"] in ("x25519", "X25519MLKEM768")
    if not bundled_openssl():  # the floor and CPython load the system's libssl, as commssl does
        assert groups["floor"] == groups["cpython"] == groups["commssl"]
    if groups.get("pyopenssl_sys") is not None:
        assert groups["pyopenssl_sys"] == groups["cpython"]
    assert "Key exchange group each contender negotiates" in smoke["stdout"]
    assert f"CPython ssl {groups['cpython']}" in smoke["stdout"]


def test_wheel_rows_are_measured_or_say_how(smoke: Dict[str, Any]) -> None:
    """Row 9 runs commssl's repaired wheel in a worker: measured when wheelhouse/ has one
    (its own OpenSSL 3.5, both groups), else a note says how to make it."""
    rows = {row["id"]: row for row in smoke["rows"]}
    wheel = smoke["info"].get("commssl_wheel")
    if wheel is None:
        assert any("bash ci/build-wheel" in note for note in smoke["notes"])
        assert rows["wheel-x25519"]["cells"]["commssl"] is None
        return
    assert wheel["openssl"].startswith("OpenSSL 3.5") and "commssl-wheel" in wheel["commssl_file"]
    assert list(smoke["info"]["wheel_groups"].values()) == ["x25519", "X25519MLKEM768"]
    for rid in WHEEL_ROWS:
        assert rows[rid]["cells"]["commssl"] > 0
    assert rows["wheel-x25519"]["cells"]["cpython"] > 0


def test_httpx_rows_pair_commssl_with_httpx_default(smoke: Dict[str, Any]) -> None:
    """Rows 10: both transports against one server in another process, wall time per request
    the figure, the client's CPU time per request kept beside it and quoted in the verdict."""
    rows, samples = _rows(smoke), smoke["samples"]
    assert smoke["info"]["httpx"]["server"] in ("nginx", "CPython http.server")
    assert "Rows 10: httpx " in smoke["stdout"]
    for rid in HTTPX_ROWS[:4] + (HTTPX_ROWS[4:] if HAS_TRIO else []):
        for who in ("commssl", "cpython"):
            wall, cpu = samples[f"{rid}|{who}"], samples[f"{rid}:cpu|{who}"]
            assert len(wall) == len(cpu) == smoke["info"]["settings"]["runs"], (rid, who)
            assert all(0 < c for c in cpu), (rid, who, cpu)
        text = rows[rid]["verdict"] if rid in HTTPX_TARGETS else rows[rid]["note"]
        assert "client CPU " in text, (rid, text)


def test_server_hello_parser_reads_the_key_share() -> None:
    from bench.hello import server_hello_group

    ext = (0x002B).to_bytes(2, "big") + b"\x00\x02\x03\x04"  # supported_versions first
    ext += (0x0033).to_bytes(2, "big") + b"\x00\x06" + (0x11EC).to_bytes(2, "big") + b"\x00\x02ab"
    body = b"\x03\x03" + bytes(32) + b"\x01\x07" + b"\x13\x01\x00" + len(ext).to_bytes(2, "big") + ext
    assert server_hello_group(b"\x02" + len(body).to_bytes(3, "big") + body) == "X25519MLKEM768"
    without = b"\x03\x03" + bytes(32) + b"\x00" + b"\x13\x01\x00" + b"\x00\x00"
    assert server_hello_group(b"\x02" + len(without).to_bytes(3, "big") + without) is None
    with pytest.raises(ValueError, match="not a ServerHello"):
        server_hello_group(b"\x01\x00\x00\x00")


def test_run_py_is_an_entry_point_too() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--smoke" in done.stdout and "--json" in done.stdout


def test_anyio_benchmark_smoke() -> None:
    """bench/bench_anyio.py: commssl.anyio on trio and asyncio next to trio.SSLStream and asyncio ssl."""
    pytest.importorskip("trio")
    done = subprocess.run([sys.executable, "bench/bench_anyio.py", "--smoke"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in done.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| stack")}
    for name in ("commssl.anyio on trio", "trio.SSLStream", "commssl.anyio on asyncio", "asyncio ssl",
                 "commssl.anyio on trio / trio.SSLStream", "commssl.anyio on asyncio / asyncio ssl"):
        hs, echo = (float(cell.strip().rstrip("x")) for cell in rows[name])
        assert hs > 0 and echo > 0 and math.isfinite(hs) and math.isfinite(echo), (name, rows[name])


# -- --check: the verdict logic on fabricated results ------------------------------------


def _target(rid: str, measured: Optional[float], op: str = ">=", limit: float = 1.1) -> Dict[str, Any]:
    return {"id": rid, "title": f"row {rid}", "unit": "ratio", "cells": {"commssl": measured},
            "goal": report.goal(op, limit, "ratio", "CPython"), "measured": measured}


def _fabricated(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    info = {"title": "informational", "id": "info", "unit": "call", "cells": {"commssl": 1e-6}}
    return {"info": {"date": "today"}, "notes": [], "rows": [info, *rows]}


@pytest.mark.parametrize(("rows", "status", "listed"), [
    ([_target("a", 1.2), _target("b", 8_000, "<=", 8_000)], 0, []),
    ([_target("a", 1.2), _target("b", 1.05)], 1, ["missed: row b: 1.05x CPython (goal >= 1.1x): NOT met"]),
    ([_target("a", 1.2), _target("c", None)], 0, ["not measured: row c: not measured (goal >= 1.1x)"]),
    ([_target("b", 0.9), _target("c", None)], 1, ["missed: row b", "not measured: row c"]),
])
def test_check_exit_status(rows: List[Dict[str, Any]], status: int, listed: List[str]) -> None:
    out = io.StringIO()
    results = _fabricated(rows)
    assert report.check(results, out) == status
    lines = out.getvalue().splitlines()
    assert len(lines) == len(listed) + 1
    for line, start in zip(lines, listed):
        assert line.startswith(start), (line, start)
    met = sum(row.get("status") == "met" for row in results["rows"])
    assert lines[-1].startswith(f"targets: {met} met"), lines[-1]
    assert results["rows"][0]["status"] is None  # informational: no target, never judged


def test_verdicts_put_the_figure_first() -> None:
    added = {"goal": report.goal("<=", 40_000, "added"), "measured": 52_345.6, "extra": "+1.2 %"}
    assert report.verdict(added) == "+52,346 instructions over the C floor (goal <= +40,000): NOT met; +1.2 %"
    count = {"goal": report.goal("<=", 3_000, "count"), "measured": 2_500.0}
    assert report.verdict(count) == "2,500 instructions (goal <= 3,000): met"
    ratio = {"goal": report.goal("<=", 1.02, "ratio", "C floor", digits=3), "measured": 1.0131}
    assert report.verdict(ratio) == "1.013x C floor (goal <= 1.02x): met"


@pytest.mark.parametrize(("rows", "status"), [
    ([_target("a", 1.3)], 0), ([_target("a", 1.3), _target("b", 1.0)], 1), ([_target("c", None)], 0)])
def test_check_from_a_results_file(tmp_path: Path, rows: List[Dict[str, Any]], status: int) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_fabricated(rows)))
    done = subprocess.run([sys.executable, "-m", "bench", "--check", "--from", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == status, done.stderr
    assert "| row a |" in done.stdout or "| row c |" in done.stdout
    assert "targets: " in done.stderr
    if status:
        assert "missed: row b" in done.stderr
    # without --check the same file only prints the table
    done = subprocess.run([sys.executable, "-m", "bench", "--from", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "targets: " not in done.stderr, done.stderr


# -- the callgrind drivers, run without valgrind for a few iterations ------------------------


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bench-pki")
    script = ("import sys; from pathlib import Path; from bench.pki import make_chain, leaf_only; "
              "leaf_only(make_chain(Path(sys.argv[1]) / 'ecdsa', 'ecdsa'))")
    subprocess.run([sys.executable, "-c", script, str(d)], cwd=REPO, check=True, timeout=120)
    return d


@pytest.mark.parametrize("args", [
    ["commssl", "ecdsa", "0", "2", "{d}"], ["commssl", "ecdsa", "0", "2", "{d}", "1"],
    ["cpython", "ecdsa", "0", "2", "{d}"],
    ["call", "data", "2", "{d}/ecdsa"], ["call", "getpeercert", "2", "{d}/ecdsa"],
    ["call", "chain", "3", "{d}/ecdsa", "2"], ["call", "chain", "3", "{d}/ecdsa-leaf", "1"],
])
def test_callgrind_drivers_run(chains: Path, args: List[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.instructions", *(a.format(d=chains) for a in args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_leaf_only_chain_sends_one_certificate(chains: Path) -> None:
    """The chain driver checks the length the server sent: the leaf-only server sends 1."""
    done = subprocess.run([sys.executable, "-m", "bench.instructions", "call", "chain", "1",
                           str(chains / "ecdsa-leaf"), "2"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "sent 1 certificates, not 2" in done.stderr


def test_publish_fills_the_marked_blocks_and_nothing_else(smoke: Dict[str, Any], tmp_path: Path) -> None:
    """python -m bench.publish writes a run into the documentation's marked blocks; the
    repository's own pages carry every block it fills."""
    from bench import publish

    for page, names in (("docs/performance.md", ("run", "targets", "table")), ("README.md", ("readme",))):
        text = (REPO / page).read_text(encoding="utf-8")
        for name in names:
            assert f"<!-- bench:{name} -->\n" in text and f"<!-- /bench:{name} -->" in text, (page, name)
    (tmp_path / "docs").mkdir()
    blocks = "".join(f"before {n}\n<!-- bench:{n} -->\nold\n<!-- /bench:{n} -->\nafter {n}\n"
                     for n in ("run", "targets", "table"))
    (tmp_path / "docs" / "performance.md").write_text(blocks, encoding="utf-8")
    readme_text = "intro\n<!-- bench:readme -->\n<!-- /bench:readme -->\n"
    (tmp_path / "README.md").write_text(readme_text, encoding="utf-8")
    publish.publish(smoke, repo=tmp_path)
    perf = (tmp_path / "docs" / "performance.md").read_text(encoding="utf-8")
    assert "old" not in perf and all(f"before {n}\n" in perf and f"after {n}\n" in perf
                                     for n in ("run", "targets", "table"))
    assert smoke["info"]["date"] in perf
    assert "| In-memory handshake, instructions | ≤ +40k over the C floor |" in perf
    assert "| benchmark | commssl | C floor |" in perf
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("intro\n")
    assert "| CPython `ssl`, bulk 64 KiB writes over loopback |" in readme
    with pytest.raises(ValueError, match="bench:readme"):
        publish.fill("no markers here", "readme", "x")


# -- the baseline gate (bench/baseline.py) on fabricated counts: no callgrind here ---------------


BASELINE = {"commit": "0d29fda", "openssl": "OpenSSL 3.0.19", "python": "3.11.7", "tolerance": 0.01,
            "not_gated": ["cg-data"],
            "settings": {"cg": [5, 105], "cg_data": [100, 1100], "cg_chain": [1000, 11000]},
            "rows": {"cg-hs": 10_000_000.0, "cg-call": 8_000.0, "cg-chain1": 13_000.0, "cg-data": 100.0}}


@pytest.mark.parametrize(("now", "status", "verdicts"), [
    ({"cg-hs": 10_000_000.0, "cg-call": 8_000.0, "cg-chain1": 13_000.0, "cg-data": 100.0}, 0,
     ["ok", "ok", "ok", "(shown,"]),
    ({"cg-hs": 9_000_000.0, "cg-call": 8_079.0, "cg-chain1": 13_130.0, "cg-data": 200.0}, 0,
     ["ok", "ok", "ok", "(shown,"]),  # 1 % passes; a row not gated never fails
    ({"cg-hs": 10_000_000.0, "cg-call": 8_081.0, "cg-chain1": 13_000.0, "cg-data": 100.0}, 1,
     ["ok", "SLOWER", "ok", "(shown,"]),
    ({"cg-hs": 10_100_001.0, "cg-call": 7_000.0, "cg-chain1": 13_000.0, "cg-data": 100.0}, 1,
     ["SLOWER", "ok", "ok", "(shown,"]),
    ({"cg-hs": 10_000_000.0, "cg-call": 8_000.0, "cg-data": 100.0}, 1,
     ["ok", "ok", "NOT", "(shown,"]),  # missing: no pass
])
def test_baseline_gate_fails_on_a_row_over_one_percent(now: Dict[str, float], status: int,
                                                       verdicts: List[str]) -> None:
    from bench import baseline

    out = io.StringIO()
    assert baseline.check(BASELINE, now, out) == status
    lines = [line for line in out.getvalue().splitlines() if line.startswith("| cg-")]
    assert [line.split("|")[5].strip().split()[0] for line in lines] == verdicts
    assert lines[0].startswith("| cg-hs | 10,000,000 | ")  # row, baseline, now, ratio
    ok, table = baseline.compare(BASELINE["rows"], now, not_gated=["cg-data"])  # type: ignore[arg-type]
    assert ok == (status == 0)
    assert [(row, ratio) for row, _, _, ratio, _ in table][0] == ("cg-hs", now["cg-hs"] / 10_000_000.0)


def test_baseline_not_measured_is_said_and_a_different_setup_is_warned() -> None:
    from bench import baseline

    out = io.StringIO()
    assert baseline.check(BASELINE, None, out) == 0  # like a target: listed, never counted as passed
    assert "baseline: not measured" in out.getvalue()
    out = io.StringIO()
    env = {"openssl": "OpenSSL 3.5.0", "python": "3.11.7"}
    assert baseline.check(BASELINE, dict(BASELINE["rows"]), out, env) == 0  # type: ignore[arg-type]
    assert "WARNING: measured on openssl OpenSSL 3.5.0" in out.getvalue()


def test_baseline_rows_from_a_run() -> None:
    """commssl's rows come from a run's samples, the per-call figure derived as report.py does."""
    from bench import baseline

    samples = {(row, "commssl"): [1_000.0] for row in baseline.MEASURED}
    samples[("cg-hs-cb", "commssl")] = [1_300.0]
    assert baseline.from_samples(samples, 3) is None  # no C floor handshake
    samples[("cg-hs", "floor")] = [900.0]
    samples[("cg-hs-cb", "floor")] = [1_000.0]
    rows = baseline.from_samples(samples, 3)
    assert rows is not None and set(rows) == set(baseline.ROWS)
    assert rows["cg-call"] == 100.0 and rows["cg-hs-added"] == 100.0 and rows["cg-hs-cb-added"] == 300.0
    del samples[("cg-data", "commssl")]
    assert baseline.from_samples(samples, 3) is None
    flat = {f"{row}|{who}": xs for (row, who), xs in samples.items()}
    assert baseline.from_results({"samples": flat}) is None
    assert baseline.from_results({"baseline_rows": {"cg-hs": 1.0}}) == {"cg-hs": 1.0}


def test_recorded_baseline_says_where_it_was_measured() -> None:
    from bench import baseline

    saved = baseline.load()
    assert set(saved["rows"]) == set(baseline.ROWS)
    assert len(saved["commit"]) == 40 and not saved["source_modified"]
    assert saved["openssl"].startswith("OpenSSL ") and saved["python"]
    from bench.run import FULL  # the counts of a full run, so that --check can reuse them

    assert saved["settings"] == {k: list(getattr(FULL, k)) for k in baseline.SETTINGS}
