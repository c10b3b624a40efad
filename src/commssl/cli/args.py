"""``python -m commssl``'s arguments: the parser, ``HOST[:PORT]``, file checks, the exit
statuses. Part of ``commssl.cli`` (see its docstring for the command itself)."""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import NoReturn, Tuple

from commssl._core.version import __version__, openssl_version

EXIT_OK, EXIT_UNVERIFIED, EXIT_USAGE, EXIT_CONNECTION = 0, 1, 2, 3
DEFAULT_PORT = 443
DEFAULT_TIMEOUT = 10.0


class UsageError(Exception):
    """Bad command-line input: exit status 2, one line on stderr."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m commssl",
        description="Show a TLS server's certificate chain, leaf first, and how it verified "
                    "(the verify callback's trace). Without HOST: a self-contained demo of a "
                    "commssl server and client with an in-memory certificate chain. "
                    "'python -m commssl serve --help': the documentation examples' certificates "
                    "and server.",
        epilog="exit status: 0 verified; 1 verification failed; 2 usage or unreadable file; "
               "3 connection or TLS error (unknown host, refused, timeout, not TLS). "
               "--json prints one document (schema: commssl/cli_schema.json).",
    )
    parser.add_argument("target", nargs="?", metavar="HOST[:PORT]",
                        help=f"server to inspect (port {DEFAULT_PORT} by default; IPv6 as [::1]:443)")
    parser.add_argument("--cafile", help="also trust the certificates in this PEM file")
    parser.add_argument("--capath", help="also trust this hashed certificate directory")
    parser.add_argument("--cert", help="client certificate (PEM, leaf first, chain may follow)")
    parser.add_argument("--key", help="client private key (PEM; default: --cert)")
    parser.add_argument("--servername", help="SNI and name to check (default: HOST when it is a name)")
    parser.add_argument("--verify", choices=("always", "never"), default="always",
                        help="always: abort the handshake when verification fails (default); "
                             "never: go on and report")
    parser.add_argument("--ocsp", action="store_true",
                        help="ask for a stapled OCSP response and check it (exit 1 when it says revoked "
                             "or does not verify)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds for connect + handshake (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours")
    parser.add_argument("--version", action="version",
                        version=f"commssl {__version__} ({openssl_version()['loaded']})")
    return parser


def parse_target(target: str) -> Tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]``, ``[IPv6]:PORT`` or a bare IPv6 address."""
    host, port_text = target, None
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            raise UsageError(f"bad target {target!r}: missing ']' after the IPv6 address")
        host, rest = target[1:end], target[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"bad target {target!r}: expected [IPv6]:PORT")
            port_text = rest[1:]
    elif target.count(":") == 1:
        host, port_text = target.split(":")
    elif target.count(":") > 1:
        try:
            ipaddress.IPv6Address(target)
        except ValueError:
            raise UsageError(f"bad target {target!r}: write IPv6 addresses as [ADDRESS]:PORT") from None
    if not host:
        raise UsageError(f"bad target {target!r}: no host")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"bad port {port_text!r} in {target!r}: expected a number from 1 to 65535")
    return host, int(port_text)


def _readable(path: str, option: str, directory: bool = False) -> None:
    if directory:
        if not os.path.isdir(path):
            raise UsageError(f"cannot read {option} {path!r}: not a directory")
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {option} {path!r}: {exc.strerror or exc}") from None


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
