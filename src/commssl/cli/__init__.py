"""``python -m commssl``: show a TLS peer's certificate chain and how it verified.

Usage::

    python -m commssl                      # the embedded demo (no network needed)
    python -m commssl HOST[:PORT]          # inspect a server (port 443 by default)
    python -m commssl [::1]:8443 --cafile root.pem --servername localhost --json
    python -m commssl serve [--dir DIR] [--port 8443]   # the docs' certificates and server
                                                         # (commssl.serve)

Every view also shows the chain OpenSSL built (``ssl_connection_copy_verified_certificates``,
ending at the trust anchor) and each certificate's SPKI pin (``spki-sha256``: the bare
base64 value ``get_certificate_data`` gives; curl's ``--pinnedpubkey`` takes it after
``sha256//``). ``--ocsp`` asks the server for a stapled OCSP response
(``set_ocsp_stapling(ctx, True)``) and shows what ``ssl_connection_ocsp_status`` makes of it;
a staple that says revoked or does not verify makes the exit status 1 (kind "ocsp").

With a HOST it connects with ``make_ssl_ctx(True, "client")`` (the system's trusted
certificates, plus ``--cafile``/``--capath``), a Python verify callback recording
every call OpenSSL makes (``set_verification_mode``), and prints, leaf first, every
certificate the server sent, the verification trace, the result
(``ssl_connection_verify``), the protocol version and the SNI sent. Without HOST
it runs the embedded demo (``commssl.demo``): a throwaway root -> intermediate ->
leaf chain made in memory, a commssl server on 127.0.0.1 requiring a client
certificate, a commssl client, one line each way, and both sides' chains and traces.

``--verify always`` (default) aborts the handshake at the first certificate that
fails; the chain and trace are still shown (the callback copied them with
``ssl_connection_copy_peer_certificates``). ``--verify never`` accepts everything
but still records, so every problem of the chain shows in the trace. ``--timeout``
bounds the TCP connect and the TLS handshake together. With TLS 1.3 a server
checks a client certificate after the client's side of the handshake is done, so
the inspector waits up to half a second (within ``--timeout``) for such a rejection.

Exit status
-----------
0  the peer's chain verified (demo: both sides verified and the exchange worked)
1  the peer's chain did not verify (handshake aborted, or ``--verify never``), or with
   ``--ocsp`` the stapled response says revoked or does not verify
2  usage: bad arguments or ``HOST[:PORT]``, unreadable ``--cafile``/``--capath``/``--cert``/``--key``
3  connection or TLS error: unknown host, refused, timed out, not TLS, handshake
   failure, the server rejecting the client certificate

Errors print one line on stderr (``commssl: ...``). Colour is used only on a
terminal, without ``--no-color`` and with ``NO_COLOR`` unset or empty.

JSON (``--json``, schema 2)
---------------------------
One document on stdout, for every exit status except 2. Its schema is the JSON
Schema ``commssl/cli_schema.json`` (shipped with the package); the
documentation's command-line page explains each key. New keys come only with a
new ``schema`` number.
"""

from __future__ import annotations

import math
import sys
from typing import Optional, Sequence

from commssl._core.pointers import outstanding_certificates

# The command in three parts: _cli_args (parsing), _cli_inspect (connecting, through the
# public API), _cli_render (the JSON document and its text). The names below are
# re-exported: commssl.cli's own API as before the split.
from commssl.cli.args import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    EXIT_CONNECTION,
    EXIT_OK,
    EXIT_UNVERIFIED,
    EXIT_USAGE,
    UsageError,
    build_parser,
    parse_target,
)
from commssl.cli.inspect import (
    REJECTION_WINDOW,
    Recorder,
    await_rejection,
    client_context,
    demo,
    describe_error,
    inspect_server,
    ocsp_json,
    verify_json,
)
from commssl.cli.render import (
    SCHEMA,
    Json,
    Style,
    certificate_json,
    chain_json,
    new_document,
    new_view,
    render_certificate,
    render_json,
    render_ocsp,
    render_text,
    render_view,
    use_color,
)

__all__ = [
    "DEFAULT_PORT", "DEFAULT_TIMEOUT", "EXIT_CONNECTION", "EXIT_OK", "EXIT_UNVERIFIED", "EXIT_USAGE",
    "REJECTION_WINDOW", "SCHEMA", "Json", "Recorder", "Style", "UsageError", "await_rejection",
    "build_parser", "certificate_json", "chain_json", "client_context", "demo", "describe_error",
    "inspect_server", "main", "new_document", "new_view", "ocsp_json", "parse_target",
    "render_certificate", "render_json", "render_ocsp", "render_text", "render_view", "use_color",
    "verify_json",
]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")  # odd names must not crash the report
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["serve"]:  # the examples' certificates and server (a host "serve": serve:443)
        from commssl.serve import main as serve_main
        return serve_main(arguments[1:])
    try:
        args = build_parser().parse_args(arguments)
        if not (args.timeout > 0 and math.isfinite(args.timeout)):
            raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
        if args.target is None:
            if args.cafile or args.capath or args.cert or args.key or args.servername or args.ocsp:
                raise UsageError("--cafile, --capath, --cert, --key, --servername and --ocsp need HOST")
            doc = demo(min(args.timeout, 5.0))
        else:
            host, port = parse_target(args.target)
            doc = inspect_server(args, host, port)
    except UsageError as exc:
        print(f"commssl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return 130
    doc["outstanding_certificates"] = outstanding_certificates()
    doc["ok"] = doc["exit_status"] == EXIT_OK
    if args.json:
        render_json(doc, sys.stdout)
    elif doc["protocol"] or doc["peer"]["chain"] or doc["peer"]["trace"] or doc["mode"] == "demo":
        # (When nothing came back from the peer at all, the stderr line says it all.)
        sys.stdout.write(render_text(doc, Style(use_color(args.no_color, sys.stdout))))
    sys.stdout.flush()
    if doc["error"]:
        print(f"commssl: {doc['error']['message']}", file=sys.stderr)
    return int(doc["exit_status"])
