"""A seconds-long run of each fuzz target (fuzz/targets.py), in process over the
generated seeds plus random mutations, and once through the one-command runner
(fuzz/run.sh, atheris when installed). The long runs are by hand:
``fuzz/run.sh TARGET SECONDS``."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

import commssl
from commssl._core.binding import drain
from commssl._core.pointers import own_certificates

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))
import seeds  # noqa: E402
import targets  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz-pki")
    os.environ["COMMSSL_FUZZ_PKI"] = str(directory)
    targets._server_ctx = None
    yield seeds.tls_pki(directory)
    if targets._server_ctx is not None:
        commssl.destroy_ssl_ctx(targets._server_ctx)
        targets._server_ctx = None


@pytest.fixture(scope="module")
def certificate_seeds() -> Dict[str, bytes]:
    return seeds.certificate_seeds()


def test_certificate_seeds_read_as_generated(certificate_seeds: Dict[str, bytes]) -> None:
    """The seeds hold what they claim, as commssl reads it."""
    def read(name: str) -> Dict[str, object]:
        cert = own_certificates((targets._parse(certificate_seeds[name]),))[0]
        try:
            return dict(commssl.get_certificate_data(cert))
        finally:
            commssl.release_certificate(cert)

    assert read("serial_0.der")["serial-number"] == 0
    assert read("serial_minus_1.der")["serial-number"] == -1
    assert read("serial_negative_64bit.der")["serial-number"] == -(1 << 63) - 5
    assert read("serial_20_bytes.der")["serial-number"] == (1 << 159) - 1
    assert read("serial_21_bytes.der")["serial-number"] == (1 << 167) - 3
    assert read("serial_huge_64_bytes.der")["serial-number"] == int.from_bytes(b"\x7f" + b"\xab" * 63, "big")
    assert read("no_cn.der")["subject-common-name"] is None
    assert read("non_ascii_cn.der")["subject-common-name"] == "Zertifikat für Ünïcødé 証明書 🔐"
    assert read("bmp_cn.der")["subject-common-name"] == "BMP Ünïcødé 証明書"
    assert read("nul_cn.der")["subject-common-name"] == "evil.example\x00.good.test"
    assert read("two_cns.der")["subject-common-name"] == "first"
    emails = ["san@example.test", "subject@example.test", "ünï@example.test"]
    assert sorted(read("email_subject.der")["emails"]) == emails  # type: ignore[call-overload]
    assert len(read("many_sans.der")["subject-alt-names"]) == 310  # DirName and RID are not listed
    assert read("far_dates.der")["not-after"].year == 9999  # type: ignore[attr-defined]
    assert read("old_dates.der")["not-before"].year == 1950  # type: ignore[attr-defined]
    assert read("pem_garbage_around.pem")["subject-common-name"] == "plain.example.test"
    assert drain() == []


def test_malformed_subject_alt_names_leave_no_errors_queued(certificate_seeds: Dict[str, bytes]) -> None:
    """Regression (found by the certificate fuzzer): an undecodable subjectAltName
    is left out of the data, and its ASN.1 errors no longer stay in this thread's
    OpenSSL error queue to be blamed on the next failing call."""
    cert = own_certificates((targets._parse(certificate_seeds["bad_san.der"]),))[0]
    try:
        data = dict(commssl.get_certificate_data(cert))
        assert data["subject-alt-names"] == []
        assert data["subject-common-name"] == "bad san"
        assert drain() == []
    finally:
        commssl.release_certificate(cert)


def test_year_zero_validity_date(certificate_seeds: Dict[str, bytes]) -> None:
    """Regression (found while auditing what the fuzzer could reach): a validity
    date in year 0000, which a peer may send, made get_certificate_data raise
    ValueError from datetime; it is now None."""
    cert = own_certificates((targets._parse(certificate_seeds["year_zero.der"]),))[0]
    try:
        data = dict(commssl.get_certificate_data(cert))
        assert data["not-after"] is None
        assert data["not-before"].year == 2049  # type: ignore[attr-defined]
    finally:
        commssl.release_certificate(cert)


@pytest.mark.parametrize("name", ["certificate", "tls_server"])
def test_in_process_smoke(name: str, fuzz_pki: Path, certificate_seeds: Dict[str, bytes], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a failing input is written to ./crash-plain-*, not into the checkout
    corpus = list((certificate_seeds if name == "certificate" else seeds.tls_seeds(fuzz_pki)).values())
    start = commssl.outstanding_certificates()
    runs = targets.plain_fuzz(targets.TARGETS[name], corpus, seconds=2.0, seed=random.randrange(1 << 30))
    assert runs > len(corpus)
    assert commssl.outstanding_certificates() == start


def test_tls_server_target_reaches_the_verify_callback(fuzz_pki: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The TLS 1.2 seeds carry a client certificate the fuzzed server verifies, so
    mutations reach commssl's certificate handling, not only the record layer."""
    calls = []
    verify = targets._verify
    monkeypatch.setattr(targets, "_verify", lambda ok, store: calls.append(ok) or verify(ok, store))
    targets._server_ctx = None  # rebuild the context with the patched callback
    try:
        flights = seeds.tls_seeds(fuzz_pki)
        targets.tls_server(flights["tls1.2_many_sans.bin"])
        targets.tls_server(flights["tls1.2_chain.bin"])
    finally:
        if targets._server_ctx is not None:
            commssl.destroy_ssl_ctx(targets._server_ctx)
        targets._server_ctx = None
    assert len(calls) >= 2


def test_structure_aware_mutations_keep_inputs_parseable(fuzz_pki: Path,
                                                         certificate_seeds: Dict[str, bytes]) -> None:
    """The DER- and TLS-aware mutators change one value and redo every length
    around it: the result still parses (as a certificate, as a flight whose
    certificate reaches the server's verify callback)."""
    rng = random.Random(7)
    plain = certificate_seeds["plain.der"]
    assert targets._der_encode(targets._der_parse(plain, 0, len(plain)) or []) == plain
    parsed = 0
    for _ in range(200):
        mutated = targets.der_mutate(plain, rng, lambda content: content + b"\x00")
        assert mutated is not None and mutated != plain
        x = targets._parse(mutated)
        if x != targets.ffi.NULL:
            parsed += 1
            commssl.lib.X509_free(x)
    assert parsed > 20
    flight = seeds.tls_seeds(fuzz_pki)["tls1.2_plain.bin"]
    assert targets.tls_mutate(flight, rng, lambda content: content) == flight
    assert targets.tls_mutate(seeds.tls_seeds(fuzz_pki)["tls1.3_plain.bin"], rng, bytes) is None  # encrypted


@pytest.mark.parametrize("name", ["certificate", "tls_server"])
def test_run_sh(name: str, tmp_path: Path) -> None:
    """The one-command runner: seeds, a short run, the summary line."""
    env = dict(os.environ, FUZZ_WORK=str(tmp_path), PYTHON=sys.executable)
    if "asan" in env.get("LD_PRELOAD", ""):
        env["PLAIN"] = "1"  # atheris' libFuzzer does not mix with a preloaded ASan runtime
        # The targets run in this process under ci/asan's leak check already; LSan's
        # exit-time check of these short-lived children crashed now and then.
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    out = subprocess.run(["bash", str(FUZZ / "run.sh"), name, "3"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 crashes" in out.stdout or " 0 crash files, exit 0" in out.stdout, out.stdout
    assert any((tmp_path / name / "seeds").iterdir())
