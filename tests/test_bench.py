"""The benchmark's smoke mode: every row still runs and gives sane numbers.

Speed goals live in the benchmark itself (``python -m bench``), not here: this
only keeps the benchmark from rotting.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from helpers import bundled_openssl

REPO = Path(__file__).resolve().parent.parent

MEMORY_ROWS = [f"{kind}-{key}-{mode}" for kind in ("mem", "cb") for key in ("ecdsa", "rsa")
               for mode in ("server", "mutual")]
PER_CALLBACK_ROWS = [f"cbcall-{key}-{mode}" for key in ("ecdsa", "rsa") for mode in ("server", "mutual")]
CALLBACK_ROWS = [row for key in ("ecdsa", "rsa") for mode in ("server", "mutual")
                 for row in (f"cb-{key}-{mode}", f"cbcall-{key}-{mode}")]
ROWS = MEMORY_ROWS[:4] + CALLBACK_ROWS + [
    "sock-hs", "sock-bulk", "call-chain", "call-serial", "call-data", "thr-1", "thr-2", "thr-speedup"]



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
        "call": 1e-10 < value < 1e-2,  # seconds per call
        "MB/s": 0.1 < value < 1e6,
        "ratio": 0.0 < value < 100.0,
    }[unit]


@pytest.mark.parametrize("who", ["commssl", "floor", "cpython"])
def test_measured_contenders_have_sane_positive_numbers(smoke: Dict[str, Any], who: str) -> None:
    rows = _rows(smoke)
    # CPython has no verify-callback API and the C floor no sockets or certificate data.
    absent = {
        "cpython": {r for r in MEMORY_ROWS if r.startswith("cb-")} | set(PER_CALLBACK_ROWS),
        "floor": {"sock-hs", "sock-bulk", "call-data"},
        "commssl": set(),
    }[who]
    for rid in ROWS:
        value = rows[rid]["cells"][who]
        if rid in absent:
            assert value is None, (rid, who)
        elif rid in PER_CALLBACK_ROWS:
            assert value is not None and math.isfinite(value), (rid, who)  # a difference: any sign in smoke
        else:
            assert value is not None and _sane(rows[rid]["unit"], value), (rid, who, value)


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
