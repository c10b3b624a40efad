"""``python -m commssl``'s output: the JSON document's shapes (schema ``SCHEMA``, the
JSON Schema ``cli_schema.json``), the document as JSON and as text (with ANSI styles on
a terminal). Part of ``commssl.cli``; it reads documents only, never a connection."""

from __future__ import annotations

import datetime
import json
import math
import os
from typing import Any, Dict, List, Optional, TextIO

from commssl._core.version import openssl_version
from commssl.cli.args import EXIT_CONNECTION, EXIT_OK, _hostport
from commssl.config.certificates import CertificateData

SCHEMA = 2

Json = Dict[str, Any]


def certificate_json(data: CertificateData, now: Optional[datetime.datetime] = None) -> Json:
    """A ``get_certificate_data`` list as the JSON schema's CERT object."""
    d = dict(data)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    not_after: Optional[datetime.datetime] = d.get("not-after")
    not_before: Optional[datetime.datetime] = d.get("not-before")
    serial: int = d["serial-number"]
    return {
        "subject": d.get("subject", ""),
        "issuer": d.get("issuer", ""),
        "subject_common_name": d.get("subject-common-name"),
        "issuer_common_name": d.get("issuer-common-name"),
        "serial_number": serial,
        "serial_hex": ("-" if serial < 0 else "") + f"0x{abs(serial):X}",
        "not_before": not_before.isoformat() if not_before else None,
        "not_after": not_after.isoformat() if not_after else None,
        "days_left": math.floor((not_after - now).total_seconds() / 86400) if not_after else None,
        "subject_alt_names": [{"type": t, "value": v} for t, v in d.get("subject-alt-names", [])],
        "emails": list(d.get("emails", [])),
        "sha256_fingerprint": d.get("sha256-fingerprint", ""),
        "spki_sha256": d.get("spki-sha256", ""),
    }


def chain_json(data: List[CertificateData]) -> List[Json]:
    return [certificate_json(d) for d in data]


def new_view() -> Json:
    return {"chain": [], "verified_chain": [], "trace": [], "verify": None, "ocsp": None}


def new_document(mode: str, host: str, port: int, servername: Optional[str]) -> Json:
    return {
        "schema": SCHEMA, "mode": mode,
        "target": {"host": host, "port": port, "servername": servername},
        "ok": False, "exit_status": EXIT_CONNECTION, "error": None,
        "protocol": None, "cipher": None, "client_certificate": False,
        "peer": new_view(),
        "server_side": None, "exchange": None, "outstanding_certificates": 0,
    }


def render_json(doc: Json, stream: TextIO) -> None:
    json.dump(doc, stream, indent=2)
    stream.write("\n")


class Style:
    """ANSI styles, or none."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, s: str) -> str:
        return f"\033[{code}m{s}\033[0m" if self.enabled else s

    def bold(self, s: str) -> str:
        return self._wrap("1", s)

    def dim(self, s: str) -> str:
        return self._wrap("2", s)

    def good(self, s: str) -> str:
        return self._wrap("32", s)

    def bad(self, s: str) -> str:
        return self._wrap("1;31", s)

    def warn(self, s: str) -> str:
        return self._wrap("33", s)


def _when(iso: Optional[str]) -> str:
    if not iso:
        return "?"
    return datetime.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def render_certificate(out: List[str], i: int, cert: Json, st: Style) -> None:
    role = "leaf" if i == 0 else ("self-signed" if cert["subject"] == cert["issuer"] else "CA")
    name = cert["subject_common_name"] or cert["subject"] or "(no subject)"
    out.append(f"  {st.bold(f'[{i}] {name}')}  {st.dim(role)}")

    def row(label: str, value: str) -> None:
        out.append(f"      {st.dim(f'{label:<9}')} {value}")

    row("subject", cert["subject"])
    row("issuer", cert["issuer"])
    serial = cert["serial_number"]
    row("serial", f"{serial} ({cert['serial_hex']})" if abs(serial) < 1 << 64 else cert["serial_hex"])
    days = cert["days_left"]
    if days is None:
        left = ""
    elif days < 0:
        left = st.bad(f"expired {-days} days ago")
    else:
        left = (st.warn if days < 14 else st.good)(f"{days} days left")
    row("valid", f"{_when(cert['not_before'])} .. {_when(cert['not_after'])}  {left}")
    if cert["subject_alt_names"]:
        row("SANs", ", ".join(f"{'IP' if s['type'] == 'IP Address' else s['type']}:{s['value']}"
                              for s in cert["subject_alt_names"]))
    if cert["emails"]:
        row("emails", ", ".join(cert["emails"]))
    fp = cert["sha256_fingerprint"]
    half = len(fp) // 2 + 1 if len(fp) > 48 else len(fp)  # two lines of 16 bytes
    row("SHA-256", fp[:half].rstrip(":"))
    if fp[half:]:
        row("", fp[half:])
    # the value exactly as get_certificate_data's "spki-sha256" (no prefix), so a pin
    # pasted from here matches; curl wants it after "sha256//"
    pin = cert["spki_sha256"]
    row("SPKI pin", f"{pin}  " + st.dim(f"(spki-sha256; curl: --pinnedpubkey sha256//{pin})"))


def render_view(out: List[str], title: str, view: Json, st: Style) -> None:
    chain = view["chain"]
    out.append(st.bold(f"{title}: {len(chain)} certificate{'s' if len(chain) != 1 else ''}, leaf first"))
    for i, cert in enumerate(chain):
        render_certificate(out, i, cert, st)
    out.append(st.bold("  verify callback calls (OpenSSL's order, root first):"))
    if not view["trace"]:
        out.append("      (none: verification never ran)")
    for step in view["trace"]:
        mark = st.good("ok  ") if step["preverify_ok"] else st.bad("FAIL")
        line = f"      depth {step['depth']}  {mark}  {step['subject_cn'] or '(no CN)'}"
        if not step["preverify_ok"]:
            line += f"  {st.bad(step['error_text'])} ({step['error']})"
        out.append(line)
    built = view["verified_chain"]
    if built:
        names = [c["subject_common_name"] or c["subject"] or "(no subject)" for c in built]
        out.append(st.bold("  chain OpenSSL built: ") + " -> ".join(names))
    ocsp = view["ocsp"]
    if ocsp is not None:
        out.append("  " + st.bold("OCSP staple: ") + render_ocsp(ocsp, st))
    # One verdict whatever --verify mode ran (the mode is in the JSON): the chain's
    # result, unless a stapled OCSP response then refused what the chain accepted.
    v = view["verify"]
    if v is None or v["code"] is None:
        out.append(f"  result: {st.warn('not verified: the handshake stopped before verification')}")
    elif v["ok"] and ocsp is not None and ocsp["stapled"] and ocsp["verify_code"]:
        out.append(f"  result: {st.bad('REJECTED')}: the chain is trusted, but the stapled OCSP response "
                   f"says {ocsp['status']} (X509_V_ERR {ocsp['verify_code']})")
    elif v["ok"]:
        out.append(f"  result: {st.good('verified')} ({v['message']})")
    else:
        out.append(f"  result: {st.bad('NOT verified')} at depth {v['depth']}: {v['message']} "
                   f"(X509_V_ERR {v['code']})")


def render_ocsp(ocsp: Json, st: Style) -> str:
    if not ocsp["stapled"]:
        return st.warn("none (the server stapled no response)")
    status = ocsp["status"]
    if ocsp["verified"]:
        word = st.good(status) if status == "good" else st.bad(status)
        text_ = f"{word}, response signature checked"
    else:
        text_ = st.bad(f"{status}, NOT verified") + f": {ocsp['error']}"
    if ocsp["this_update"]:
        text_ += f" (this update {_when(ocsp['this_update'])}, next update {_when(ocsp['next_update'])})"
    if ocsp["revocation_time"]:
        text_ += f"; revoked {_when(ocsp['revocation_time'])}"
        if ocsp["revocation_reason"]:
            text_ += f" ({ocsp['revocation_reason']})"
    return text_


def render_text(doc: Json, st: Style) -> str:
    out: List[str] = []
    t = doc["target"]
    sni = t["servername"] or "none"
    tls = doc["protocol"] or "handshake not completed"
    if doc["cipher"]:
        tls += f", {doc['cipher']}"
    if doc["mode"] == "demo":
        from commssl.cli.local_demo import CLIENT_CN, INTERMEDIATE_CN, ROOT_CN, SERVER_CN

        out.append(st.bold("commssl demo") + f" ({openssl_version()['loaded']}): a commssl server and client "
                   "in this process")
        out.append(f"  PKI made in memory: {ROOT_CN!r} -> {INTERMEDIATE_CN!r} -> server {SERVER_CN!r}, "
                   f"client {CLIENT_CN!r}")
        out.append(f"  server: {_hostport(t['host'], t['port'])}, verify-peer + fail-if-no-peer-cert, "
                   "Python verify callback")
        out.append(f"  client: SNI {sni}, verify always, Python verify callback; {tls}")
        if doc["exchange"]:
            out.append(f"  client sent:     {doc['exchange']['sent']!r}")
            out.append(f"  server answered: {doc['exchange']['received']!r}")
        out.append("")
        render_view(out, "The client's view of the server", doc["peer"], st)
        out.append("")
        render_view(out, "The server's view of the client", doc["server_side"], st)
        out.append("")
        out.append(f"X509Pointers still owned after the releases: {doc['outstanding_certificates']}")
    else:
        out.append(st.bold(f"{_hostport(t['host'], t['port'])}") + f"  SNI {sni}  {tls}"
                   + ("  client certificate sent" if doc["client_certificate"] and doc["protocol"] else ""))
        out.append("")
        render_view(out, "Peer certificates", doc["peer"], st)
    status = doc["exit_status"]
    verdict = st.good("OK") if status == EXIT_OK else st.bad(f"FAILED (exit {status})")
    out.append(verdict + (f": {doc['error']['message']}" if doc["error"] else ""))
    return "\n".join(out) + "\n"


def use_color(no_color: bool, stream: TextIO) -> bool:
    if no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
