"""``python -m commssl``: the demo, the inspector against real servers, JSON, bad input.

Most tests run the command as a subprocess (``sys.executable -m commssl``), as a
user would; a few call ``commssl.cli``/``commssl.demo`` in-process for what a
subprocess cannot show (colour decisions, leaks, a demo whose server refuses).
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import commssl
from commssl import cli
from commssl.cli.local_demo import CLIENT_CN, CLIENT_EMAIL, INTERMEDIATE_CN, ROOT_CN, SERVER_CN, run_demo
from helpers import fingerprint
from peers import OPENSSL, PKI, openssl_server, plaintext_server, reset_server, silent_server

ANSI = re.compile(r"\x1b\[")

# The JSON schema (src/commssl/cli_schema.json): a change here is a change of schema number.
TOP_KEYS = {"schema", "mode", "target", "ok", "exit_status", "error", "protocol", "cipher",
            "client_certificate", "peer", "server_side", "exchange", "outstanding_certificates"}
TARGET_KEYS = {"host", "port", "servername"}
VIEW_KEYS = {"chain", "verified_chain", "trace", "verify", "ocsp"}
OCSP_KEYS = {"stapled", "bytes", "status", "verified", "verify_code", "error", "this_update", "next_update",
             "revocation_time", "revocation_reason"}
VERIFY_KEYS = {"mode", "ok", "code", "message", "depth"}
STEP_KEYS = {"depth", "preverify_ok", "error", "error_text", "subject_cn"}
CERT_KEYS = {"subject", "issuer", "subject_common_name", "issuer_common_name", "serial_number",
             "serial_hex", "not_before", "not_after", "days_left", "subject_alt_names", "emails",
             "sha256_fingerprint", "spki_sha256"}


def run(*args: Any, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run([sys.executable, "-m", "commssl", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_json(*args: Any, **kw: Any) -> tuple[subprocess.CompletedProcess[str], Dict[str, Any]]:
    r = run(*args, "--json", **kw)
    return r, json.loads(r.stdout)


def one_line(stderr: str) -> str:
    """The single ``commssl: ...`` line the command prints for an error."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("commssl: "), stderr
    return lines[0]


def cns(view: Dict[str, Any]) -> List[Optional[str]]:
    return [c["subject_common_name"] for c in view["chain"]]


def not_after(path: Any) -> datetime.datetime:
    out = subprocess.run([OPENSSL, "x509", "-noout", "-enddate", "-in", str(path)], capture_output=True,
                         text=True, check=True, timeout=10).stdout
    stamp = out.strip().split("=", 1)[1]
    return datetime.datetime.strptime(stamp, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=datetime.timezone.utc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SCHEMA_DOC = json.loads((Path(cli.__file__).parent.parent / "cli_schema.json").read_text())
_JSON_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool,
               "null": type(None)}


def validate(value: Any, schema: Dict[str, Any], where: str = "$") -> None:
    """Check ``value`` against the subset of JSON Schema cli_schema.json uses."""
    if "$ref" in schema:
        validate(value, SCHEMA_DOC["$defs"][schema["$ref"].rsplit("/", 1)[1]], where)
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                validate(value, option, where)
                break
            except AssertionError as exc:
                errors.append(str(exc))
        else:
            raise AssertionError(f"{where}: no anyOf option matches: {errors}")
    if "const" in schema:
        assert value == schema["const"] and type(value) is type(schema["const"]), f"{where}: {value!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(type(value) is _JSON_TYPES[t] for t in types), f"{where}: {value!r} is not {types}"
    if isinstance(value, dict):
        assert set(schema.get("required", ())) <= set(value), f"{where}: missing keys"
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(schema.get("properties", {})), f"{where}: extra keys"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                validate(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{i}]")


def test_schema_file_matches_the_key_sets() -> None:
    assert SCHEMA_DOC["properties"]["schema"]["const"] == cli.SCHEMA
    assert set(SCHEMA_DOC["required"]) == set(SCHEMA_DOC["properties"]) == TOP_KEYS
    defs = SCHEMA_DOC["$defs"]
    assert set(defs["view"]["required"]) == VIEW_KEYS
    assert set(defs["view"]["properties"]["verify"]["required"]) == VERIFY_KEYS
    assert set(defs["step"]["required"]) == STEP_KEYS
    assert set(defs["cert"]["required"]) == CERT_KEYS
    assert set(defs["ocsp"]["required"]) == OCSP_KEYS
    assert set(SCHEMA_DOC["properties"]["target"]["required"]) == TARGET_KEYS


def check_schema(doc: Dict[str, Any]) -> None:
    validate(doc, SCHEMA_DOC)
    assert set(doc) == TOP_KEYS
    assert doc["schema"] == 2
    assert set(doc["target"]) == TARGET_KEYS
    views = [doc["peer"]] + ([doc["server_side"]] if doc["server_side"] is not None else [])
    for view in views:
        assert set(view) == VIEW_KEYS
        assert set(view["verify"]) == VERIFY_KEYS
        for step in view["trace"]:
            assert set(step) == STEP_KEYS
        for cert in view["chain"] + view["verified_chain"]:
            assert set(cert) == CERT_KEYS
            for san in cert["subject_alt_names"]:
                assert set(san) == {"type", "value"}
    if doc["error"] is not None:
        assert set(doc["error"]) == {"kind", "message"}
    if doc["exchange"] is not None:
        assert set(doc["exchange"]) == {"sent", "received"}


# -- the embedded demo ----------------------------------------------------------------


def test_demo_text_shows_both_chains_and_traces() -> None:
    start = time.monotonic()
    r = run("--no-color", timeout=20)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start < 10
    out = r.stdout
    assert r.stderr == ""
    assert "The client's view of the server: 2 certificates" in out
    assert "The server's view of the client: 2 certificates" in out
    for cn in (ROOT_CN, INTERMEDIATE_CN, SERVER_CN, CLIENT_CN):
        assert cn in out
    assert CLIENT_EMAIL in out
    # both traces, root first, all passing
    assert out.count(f"depth 2  ok    {ROOT_CN}") == 2
    assert f"depth 0  ok    {SERVER_CN}" in out and f"depth 0  ok    {CLIENT_CN}" in out
    assert out.count("result: verified") == 2
    assert "server answered: 'hello, commssl demo client" in out
    assert "X509Pointers still owned after the releases: 0" in out
    assert out.rstrip().endswith("OK")
    assert not ANSI.search(out)  # a pipe gets no colour


def test_demo_json() -> None:
    r, doc = run_json()
    assert r.returncode == 0 and doc["ok"] and doc["exit_status"] == 0 and doc["error"] is None
    check_schema(doc)
    assert doc["mode"] == "demo" and doc["target"]["host"] == "127.0.0.1" and doc["target"]["port"] > 0
    assert doc["target"]["servername"] == "localhost"
    assert doc["protocol"] in ("tls-v1-3", "tls-v1-2") and doc["cipher"]
    assert cns(doc["peer"]) == [SERVER_CN, INTERMEDIATE_CN]
    assert cns(doc["server_side"]) == [CLIENT_CN, INTERMEDIATE_CN]
    for view in (doc["peer"], doc["server_side"]):
        assert [s["depth"] for s in view["trace"]] == [2, 1, 0]
        assert all(s["preverify_ok"] and s["error"] == 0 for s in view["trace"])
        assert view["trace"][0]["subject_cn"] == ROOT_CN
        assert view["verify"]["ok"] and view["verify"]["code"] == 0 and view["verify"]["depth"] is None
        leaf, inter = view["chain"]
        assert leaf["issuer_common_name"] == INTERMEDIATE_CN and inter["issuer_common_name"] == ROOT_CN
        assert 28 <= leaf["days_left"] <= 30
    assert doc["server_side"]["verify"]["mode"] == "verify-peer,fail-if-no-peer-cert"
    # the same intermediate was sent by both sides
    intermediates = doc["peer"]["chain"][1], doc["server_side"]["chain"][1]
    assert intermediates[0]["sha256_fingerprint"] == intermediates[1]["sha256_fingerprint"]
    assert {"type": "IP Address", "value": "127.0.0.1"} in doc["peer"]["chain"][0]["subject_alt_names"]
    assert doc["server_side"]["chain"][0]["emails"] == [CLIENT_EMAIL]
    assert doc["exchange"]["sent"] == "hello from the commssl client"
    assert doc["exchange"]["received"].startswith(f"hello, {CLIENT_CN};")
    assert doc["outstanding_certificates"] == 0


def test_demo_makes_a_fresh_pki_each_run() -> None:
    _, a = run_json()
    _, b = run_json()
    assert a["peer"]["chain"][0]["sha256_fingerprint"] != b["peer"]["chain"][0]["sha256_fingerprint"]


def test_demo_in_process_releases_everything() -> None:
    before = commssl.outstanding_certificates()
    client, server = cli.Recorder(), cli.Recorder()
    result = run_demo(client, server, timeout=5.0)
    assert result.error is None and result.received
    assert client.chain is not None
    assert [c["subject_common_name"] for c in client.chain] == [SERVER_CN, INTERMEDIATE_CN]
    assert commssl.outstanding_certificates() == before


def test_demo_server_rejecting_the_client_is_reported() -> None:
    """A server callback that says no: the demo ends, the rejection and the chain the
    server's callback saw are kept, nothing leaks."""
    client = cli.Recorder()
    server = cli.Recorder()

    def refuse(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        server(ok, store)
        return commssl.x509_store_ctx_get_error_depth(store) != 0

    result = run_demo(client, refuse, timeout=5.0)
    assert isinstance(result.error, commssl.SSLVerificationFailure)
    assert result.error.depth == 0
    assert result.received is None
    assert server.chain is not None and server.chain[0]["subject_common_name"] == CLIENT_CN
    assert [s["depth"] for s in server.trace] == [2, 1, 0]


# -- inspecting real servers ------------------------------------------------------------


def test_json_against_commssl_server(pki: PKI, server_ctx: Any, commssl_server: Any) -> None:
    server = commssl_server(server_ctx(), handler=lambda stream: None)
    r, doc = run_json(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost")
    server.join()
    assert r.returncode == 0, r.stderr
    check_schema(doc)
    assert doc["mode"] == "inspect" and doc["ok"] and doc["server_side"] is None and doc["exchange"] is None
    assert doc["target"] == {"host": "127.0.0.1", "port": server.port, "servername": "localhost"}
    assert doc["client_certificate"] is False
    leaf, inter = doc["peer"]["chain"]
    assert leaf["subject_common_name"] == pki.server_cn and leaf["subject"] == "CN=localhost"
    assert leaf["issuer"] == f"CN={pki.intermediate_cn}"
    assert leaf["serial_number"] == pki.server_serial
    assert leaf["serial_hex"] == f"0x{pki.server_serial:X}"
    assert leaf["sha256_fingerprint"] == fingerprint(pki.der(pki.server_cert))
    assert inter["sha256_fingerprint"] == fingerprint(pki.der(pki.intermediate_cert))
    assert datetime.datetime.fromisoformat(leaf["not_after"]) == not_after(pki.server_cert)
    expected_days = (not_after(pki.server_cert) - datetime.datetime.now(datetime.timezone.utc)).days
    assert leaf["days_left"] in (expected_days - 1, expected_days)
    assert leaf["subject_alt_names"] == [{"type": "DNS", "value": "localhost"},
                                         {"type": "IP Address", "value": "127.0.0.1"}]
    assert [(s["depth"], s["subject_cn"]) for s in doc["peer"]["trace"]] == [
        (2, pki.root_cn), (1, pki.intermediate_cn), (0, pki.server_cn)]
    assert doc["peer"]["verify"] == {"mode": "always", "ok": True, "code": 0, "message": "ok", "depth": None}
    assert doc["outstanding_certificates"] == 0


def test_openssl_s_server_text(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        r = run(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"127.0.0.1:{server.port}  SNI localhost  tls-v1-3" in out
    assert "Peer certificates: 2 certificates, leaf first" in out
    assert f"[0] {pki.server_cn}  leaf" in out and f"[1] {pki.intermediate_cn}  CA" in out
    assert f"issuer    CN={pki.intermediate_cn}" in out
    assert "SANs      DNS:localhost, IP:127.0.0.1" in out
    assert "days left" in out
    assert f"depth 0  ok    {pki.server_cn}" in out
    assert "result: verified (ok)" in out
    assert r.stderr == ""
    # each certificate fits a short screen
    assert len(out.splitlines()) < 30


@pytest.mark.parametrize("chain", ["server_chain", "other_chain"])
def test_result_lines_do_not_depend_on_verify_mode(pki: PKI, chain: str) -> None:
    """--verify always (abort the handshake) and never (finish it, then judge) end in the same
    result line and the same FAILED/OK line, for a trusted and for an untrusted chain."""
    key = pki.server_key if chain == "server_chain" else pki.other_key
    ends = []
    with openssl_server(getattr(pki, chain), key) as server:
        for mode in ("always", "never"):
            r = run(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost",
                    "--verify", mode, "--no-color")
            lines = r.stdout.splitlines()
            ends.append((r.returncode, [line for line in lines if line.startswith("  result:")], lines[-1]))
    assert ends[0] == ends[1]
    assert "mode" not in ends[0][1][0]
    if chain == "other_chain":
        assert ends[0][2].startswith("FAILED (exit 1): certificate verification failed at depth 1: ")


def test_ip_target_checks_the_ip_and_sends_no_sni(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        r, doc = run_json(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert)
    assert r.returncode == 0, r.stderr
    assert doc["target"]["servername"] is None and doc["peer"]["verify"]["ok"]


def test_capath_and_a_host_name_target(pki: PKI, tmp_path: Any) -> None:
    """A hashed --capath directory; a DNS-name target is the SNI and the name checked."""
    capath = tmp_path / "capath"
    capath.mkdir()
    (capath / "root.pem").write_bytes(pki.root_cert.read_bytes())
    subprocess.run([OPENSSL, "rehash", str(capath)], check=True, capture_output=True, timeout=10)
    with openssl_server(pki.server_chain, pki.server_key) as server:
        r, doc = run_json(f"localhost:{server.port}", "--capath", capath)
    assert r.returncode == 0, r.stderr
    assert doc["target"]["servername"] == "localhost" and doc["peer"]["verify"]["ok"]


def test_untrusted_chain_fails_with_depth_and_reason(pki: PKI) -> None:
    with openssl_server(pki.other_chain, pki.other_key) as server:
        r = run(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost")
        rj, doc = run_json(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost")
    assert r.returncode == 1 and rj.returncode == 1
    line = one_line(r.stderr)
    assert "verification failed at depth 1" in line and "self-signed certificate in certificate chain" in line
    assert "depth 1  FAIL  commssl other root  self-signed certificate in certificate chain (19)" in r.stdout
    assert "NOT verified at depth 1" in r.stdout
    # the chain the callback copied is shown although the handshake was aborted
    assert f"[1] {pki.other_root_cn}  self-signed" in r.stdout
    check_schema(doc)
    assert doc["protocol"] is None and not doc["ok"]
    assert doc["error"]["kind"] == "verification"
    assert doc["peer"]["verify"] == {"mode": "always", "ok": False, "code": 19,
                                     "message": "self-signed certificate in certificate chain", "depth": 1}
    assert cns(doc["peer"]) == [pki.server_cn, pki.other_root_cn]
    assert doc["peer"]["chain"][0]["sha256_fingerprint"] == fingerprint(pki.der(pki.other_cert))
    assert doc["peer"]["trace"] == [{"depth": 1, "preverify_ok": False, "error": 19,
                                     "error_text": "self-signed certificate in certificate chain",
                                     "subject_cn": pki.other_root_cn}]
    assert doc["outstanding_certificates"] == 0


def test_verify_never_goes_on_and_records_every_problem(pki: PKI) -> None:
    with openssl_server(pki.other_chain, pki.other_key) as server:
        r, doc = run_json(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername",
                          "localhost", "--verify", "never")
    assert r.returncode == 1
    assert doc["protocol"] == "tls-v1-3"  # the handshake went on
    assert doc["peer"]["verify"]["ok"] is False and doc["peer"]["verify"]["code"] == 19
    assert doc["peer"]["verify"]["mode"] == "never" and doc["peer"]["verify"]["depth"] == 1
    trace = [(s["depth"], s["preverify_ok"]) for s in doc["peer"]["trace"]]
    assert trace[0] == (1, False) and trace[-1] == (0, True)
    assert "certificate verification failed at depth 1" in one_line(r.stderr)


def test_hostname_mismatch_is_depth_0(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        r, doc = run_json(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert,
                          "--servername", "other.example")
    assert r.returncode == 1
    v = doc["peer"]["verify"]
    assert (v["depth"], v["message"]) == (0, "hostname mismatch")
    assert doc["target"]["servername"] == "other.example"
    assert doc["peer"]["trace"][-1]["subject_cn"] == pki.server_cn


def test_client_certificate_against_s_server_Verify(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=1) as server:
        r, doc = run_json(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost",
                          "--cert", pki.client_chain, "--key", pki.client_key)
        assert server.wait_for_peer_subject()["CN"] == pki.client_cn
    assert r.returncode == 0, r.stderr
    assert doc["client_certificate"] is True and doc["ok"]


def test_server_rejecting_a_missing_client_certificate(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=1) as server:
        r, doc = run_json(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost")
    assert r.returncode == 3
    assert doc["error"]["kind"] in ("rejected", "tls")
    assert "certificate required" in one_line(r.stderr)
    assert doc["peer"]["verify"]["ok"]  # our side verified the server


# -- bad input ---------------------------------------------------------------------------


def test_silent_server_times_out_quickly() -> None:
    with silent_server() as server:
        start = time.monotonic()
        r = run(f"127.0.0.1:{server.port}", "--timeout", "1")
        elapsed = time.monotonic() - start
    assert r.returncode == 3
    assert "within 1 s" in one_line(r.stderr)
    assert elapsed < 6
    assert r.stdout == ""


def test_plaintext_server_is_not_tls() -> None:
    with plaintext_server() as server:
        r, doc = run_json(f"127.0.0.1:{server.port}", "--timeout", "5")
    assert r.returncode == 3
    line = one_line(r.stderr)
    assert "TLS handshake" in line and "is it a TLS server?" in line
    assert doc["error"]["kind"] == "tls" and doc["protocol"] is None and doc["peer"]["chain"] == []
    check_schema(doc)


def test_reset_during_handshake_names_the_errno() -> None:
    """The OS error is spelled out (it used to read only "errno 104")."""
    with reset_server() as server:
        r = run(f"127.0.0.1:{server.port}", "--timeout", "5")
    assert r.returncode == 3
    line = one_line(r.stderr)
    assert "TLS handshake" in line and "Connection reset by peer (errno 104)" in line


def test_refused_connection() -> None:
    port = free_port()
    r, doc = run_json(f"127.0.0.1:{port}")
    assert r.returncode == 3
    assert one_line(r.stderr) == f"commssl: connection to 127.0.0.1:{port} refused"
    assert doc["error"]["kind"] == "refused"


def test_missing_ca_file(tmp_path: Any) -> None:
    r = run("127.0.0.1:1", "--cafile", tmp_path / "nope.pem", "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert "cannot read --cafile" in one_line(r.stderr) and "No such file" in r.stderr


def test_ca_file_without_certificates(tmp_path: Any) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    r = run("127.0.0.1:1", "--cafile", empty)
    assert r.returncode == 2
    assert "no certificate or crl found" in one_line(r.stderr)


def test_unknown_host() -> None:
    r, doc = run_json("nonexistent.invalid", "--timeout", "5")
    assert r.returncode == 3
    assert "cannot resolve host 'nonexistent.invalid'" in one_line(r.stderr)
    assert doc["error"]["kind"] == "resolve" and doc["target"]["port"] == 443


@pytest.mark.parametrize("target, message", [
    ("localhost:0", "bad port '0'"),
    ("localhost:65536", "bad port '65536'"),
    ("localhost:https", "bad port 'https'"),
    ("[::1", "missing ']'"),
    ("[::1]x", "expected [IPv6]:PORT"),
    (":443", "no host"),
])
def test_bad_target(target: str, message: str) -> None:
    r = run(target)
    assert r.returncode == 2 and r.stdout == ""
    assert message in one_line(r.stderr)


@pytest.mark.parametrize("args, message", [
    (["--verify", "sometimes"], "invalid choice"),
    (["--timeout", "0"], "--timeout must be a positive number"),
    (["--cert"], "expected one argument"),
    (["--key", "k.pem", "localhost"], "--key needs --cert"),
    (["--cafile", "ca.pem"], "need HOST"),
])
def test_bad_options(args: List[str], message: str) -> None:
    r = run(*args)
    assert r.returncode == 2
    assert message in one_line(r.stderr)


# -- in-process pieces -------------------------------------------------------------------


@pytest.mark.parametrize("target, expected", [
    ("example.org", ("example.org", 443)),
    ("example.org:8443", ("example.org", 8443)),
    ("127.0.0.1:1", ("127.0.0.1", 1)),
    ("[::1]", ("::1", 443)),
    ("[::1]:8443", ("::1", 8443)),
    ("::1", ("::1", 443)),
    ("fe80::1:2", ("fe80::1:2", 443)),
])
def test_parse_target(target: str, expected: tuple) -> None:
    assert cli.parse_target(target) == expected


def test_bare_ipv6_with_port_is_refused() -> None:
    with pytest.raises(cli.UsageError, match=r"\[ADDRESS\]:PORT"):
        cli.parse_target("a::b::c")


def test_color_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert cli.use_color(False, Tty())  # type: ignore[arg-type]
    assert not cli.use_color(True, Tty())  # type: ignore[arg-type]
    assert not cli.use_color(False, io.StringIO())  # not a terminal
    monkeypatch.setenv("NO_COLOR", "1")
    assert not cli.use_color(False, Tty())  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "")  # empty means unset (no-color.org)
    assert cli.use_color(False, Tty())  # type: ignore[arg-type]
    assert ANSI.search(cli.Style(True).bad("x")) and cli.Style(False).bad("x") == "x"


def test_main_is_the_console_script_entry(capsys: pytest.CaptureFixture[str]) -> None:
    from commssl.__main__ import main

    assert main(["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "demo" and doc["ok"]
    assert main(["localhost:0"]) == 2
    assert "bad port" in capsys.readouterr().err


# -- the verified chain, SPKI pins and OCSP (schema 2) ------------------------------------------


def test_verified_chain_and_pins(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        r, doc = run_json(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost")
        text_run = run(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost")
    assert r.returncode == 0, r.stderr
    check_schema(doc)
    assert [c["subject_common_name"] for c in doc["peer"]["verified_chain"]] == [
        pki.server_cn, pki.intermediate_cn, pki.root_cn]
    assert doc["peer"]["ocsp"] is None
    leaf = doc["peer"]["chain"][0]
    cert = commssl.pem_read("X509", pki.server_cert)
    try:
        spki = dict(commssl.get_certificate_data(cert))["spki-sha256"]
        assert leaf["spki_sha256"] == spki
    finally:
        commssl.release_certificate(cert)
    # the pin printed is get_certificate_data's value, pasteable as is (no sha256// prefix)
    printed = [line.split()[2] for line in text_run.stdout.splitlines()
               if line.split()[:2] == ["SPKI", "pin"]]
    assert printed[0] == leaf["spki_sha256"] == spki
    assert not printed[0].startswith("sha256//")
    assert f"--pinnedpubkey sha256//{spki})" in text_run.stdout  # labelled as curl's value
    assert len(printed) == len(doc["peer"]["chain"])
    built = f"chain OpenSSL built: {pki.server_cn} -> {pki.intermediate_cn} -> {pki.root_cn}"
    assert built in text_run.stdout


def test_untrusted_chain_shows_the_partial_chain_built(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        r, doc = run_json(f"127.0.0.1:{server.port}", "--servername", "localhost")
    assert r.returncode == 1
    check_schema(doc)
    assert [c["subject_common_name"] for c in doc["peer"]["verified_chain"]][:2] == [
        pki.server_cn, pki.intermediate_cn]


@pytest.mark.parametrize("status", ["good", "revoked"])
def test_ocsp_staple_is_shown_and_judged(pki: PKI, tmp_path: Any, status: str) -> None:
    from revocation_pki import ocsp_response

    staple = tmp_path / "staple.der"
    staple.write_bytes(ocsp_response(pki, status))
    with openssl_server(pki.server_chain, pki.server_key, extra_args=["-status_file", str(staple)]) as server:
        target = (f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost",
                  "--ocsp")
        r, doc = run_json(*target)
        text_run = run(*target, "--no-color")
    check_schema(doc)
    ocsp = doc["peer"]["ocsp"]
    assert ocsp["stapled"] and ocsp["bytes"] == len(staple.read_bytes())
    assert (ocsp["status"], ocsp["verified"]) == (status, True)
    assert datetime.datetime.fromisoformat(ocsp["next_update"]) > datetime.datetime.now(datetime.timezone.utc)
    if status == "good":
        assert r.returncode == 0 and ocsp["verify_code"] == 0 and ocsp["revocation_time"] is None
        assert "OCSP staple: good, response signature checked (this update" in text_run.stdout
        assert "result: verified (ok)" in text_run.stdout
    else:
        assert r.returncode == 1 and doc["error"]["kind"] == "ocsp"
        assert ocsp["verify_code"] == 23 and ocsp["revocation_reason"] == "keyCompromise"
        assert "OCSP staple: revoked, response signature checked" in text_run.stdout
        # the verdict just before FAILED is the refusal, not "verified"
        lines = text_run.stdout.splitlines()
        assert lines[-1].startswith("FAILED (exit 1)")
        assert lines[-2] == ("  result: REJECTED: the chain is trusted, but the stapled OCSP response says "
                             "revoked (X509_V_ERR 23)")
        assert one_line(text_run.stderr) == "commssl: the stapled OCSP response: revoked (X509_V_ERR 23)"


def test_ocsp_without_a_staple_and_without_host(pki: PKI) -> None:
    with openssl_server(pki.server_chain, pki.server_key) as server:
        r, doc = run_json(f"127.0.0.1:{server.port}", "--cafile", pki.root_cert, "--servername", "localhost",
                          "--ocsp")
    assert r.returncode == 0
    check_schema(doc)
    assert doc["peer"]["ocsp"]["stapled"] is False and doc["peer"]["ocsp"]["status"] is None
    r = run("--ocsp")
    assert r.returncode == 2 and "need HOST" in one_line(r.stderr)
