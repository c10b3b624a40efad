"""What a connection must verify, decided in one place for every entry point.

Every client entry point (``open_tcp_stream``, ``create_ssl_socket_stream``,
``attach_ssl``, ``open_tcp_stream_async``, ``attach_ssl_async``,
``commssl.anyio.wrap``/``connect``, the httpx transports) makes its ``SSL``
through ``connection.new_ssl``, which asks ``client_name`` which host name the
certificate must carry, and encodes it with ``encode_host_name``.

The host name rule: when a client verifies the server (its verify mode, after
the context and ``ssl_configure_callback``, has ``SSL_VERIFY_PEER``), a name is
always checked. The one opt-out is ``check_hostname=False`` (the chain is still
verified). See docs/guide/security.md, "The host name rule".

The clear-bytes rule (``attach_ssl``, ``attach_ssl_async``: ``clear_bytes_rule``):
bytes the peer sent in clear and the plain stream buffered, unread, when SSL is
attached (they came in the packet of the STARTTLS reply or command) never become
data of the TLS connection. By default they refuse the attach (an injection,
CVE-2011-0411, or a peer that did not wait); ``buffered="tls"`` hands them to
OpenSSL as the start of the peer's handshake.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, Optional

from commssl._core.binding import lib

#: Characters whose IDNA 2003 and IDNA 2008 (UTS 46, non-transitional) forms
#: differ: the four deviation characters, and capital sharp s, which UTS 46 maps
#: to ß but IDNA 2003 case-folds to "ss". Under IDNA 2003 "faß.de" is "fass.de",
#: another domain: without the ``idna`` package such a name is refused.
DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d\u1e9e")


class NeedsIDNA2008(Exception):
    """A name holding one of ``DEVIATIONS``, met without the ``idna`` package."""


def check_hostname_arg(check_hostname: object) -> bool:
    """``check_hostname`` as given, refused unless a bool (``1`` or ``None`` would
    leave the reader guessing whether names are checked)."""
    if not isinstance(check_hostname, bool):
        raise TypeError(f"check_hostname must be True or False, not {type(check_hostname).__name__}")
    return check_hostname


BUFFERED = ("refuse", "tls")


def buffered_arg(buffered: object) -> str:
    """``buffered`` as given, refused unless one of ``BUFFERED``."""
    if buffered not in BUFFERED:
        raise (ValueError if isinstance(buffered, str) else TypeError)(
            f"buffered must be 'refuse' or 'tls', not {buffered!r}")
    return buffered


def clear_bytes_rule(n: int, buffered: str, what: str) -> bool:
    """Whether the ``n`` clear bytes a plain stream holds unread go to OpenSSL as the start
    of the handshake (``buffered="tls"``); with ``"refuse"`` any such bytes are a
    ``ValueError`` before anything is attached, the bytes left readable."""
    if n and buffered != "tls":
        raise ValueError(
            f"{what}: {n} bytes the peer sent in clear are buffered and unread: read them first (bytes "
            "that follow a STARTTLS exchange in the same packet are refused rather than taken as part of "
            "the TLS connection; buffered='tls' when the peer starts TLS at once)")
    return n > 0


def client_name(ssl: Any, *, host: Optional[str], tlsext_host_name: Any, check_hostname: bool,
                argument: str) -> Optional[str]:
    """The name a client connection checks against the server's certificate, or
    ``None`` for none.

    ``ssl``: the connection's ``SSL *`` (cdata), with its context and
    ``ssl_configure_callback`` applied, so its verify mode is the one the
    handshake uses. ``host``: the host the stream dialled (``None`` when unknown:
    a socket wrapped by ``create_ssl_socket_stream``, a server-accepted stream).
    The name is ``tlsext_host_name`` when a str, else ``host``. When the verify
    mode has ``SSL_VERIFY_PEER`` and there is no name, ``ValueError`` naming
    ``argument`` (``"tlsext_host_name"``, or ``"server_hostname"`` for
    ``commssl.anyio``), before any byte is sent. ``check_hostname=False``: no
    name is checked (``None``). Mode ``"never"``: a name given is still checked,
    so that ``ssl_connection_verify`` reports the result, but none is required.
    """
    if not check_hostname:
        return None
    name = tlsext_host_name if isinstance(tlsext_host_name, str) else host
    if name:
        return name
    if lib.SSL_get_verify_mode(ssl) & lib.SSL_VERIFY_PEER:
        raise ValueError(
            f"{argument} is needed: this client verifies the server's certificate, and no host name is known "
            f"to check it against (the stream did not dial one). Pass {argument}='the.server.name', or "
            "check_hostname=False to verify the chain only and accept a certificate issued to any name")
    return None


def idna_encode(name: str, idna: Optional[ModuleType]) -> bytes:
    """``name`` as the ASCII bytes OpenSSL compares and sends as SNI.

    ASCII names go through Python's codec as before (it checks label lengths).
    Others by IDNA 2008 (UTS 46, non-transitional, as browsers) with the ``idna``
    module when given; without it, IDNA 2003 (``str.encode("idna")``) except for
    names holding a character the two map differently (``DEVIATIONS``), which
    raise ``NeedsIDNA2008``. Encoding failures raise ``UnicodeError``.
    """
    if name.isascii():
        return name.encode("idna")
    if idna is not None:
        encoded: bytes = idna.encode(name, uts46=True, transitional=False)
        return encoded
    if not DEVIATIONS.isdisjoint(name):
        raise NeedsIDNA2008(name)
    return name.encode("idna")


@functools.lru_cache(maxsize=1)
def _idna_module() -> Optional[ModuleType]:
    # Imported on the first non-ASCII name only: its tables take a while to load.
    try:
        import idna
    except ImportError:
        return None
    return idna


@functools.lru_cache(maxsize=256)
def _encoded(name: str) -> bytes:
    # remembered: clients connect to the same few hosts
    return idna_encode(name, _idna_module())


def encode_host_name(name: str, argument: str) -> bytes:
    """``idna_encode`` with the ``idna`` package when installed; errors are a
    ``ValueError`` naming ``argument``."""
    try:
        return _encoded(name)
    except NeedsIDNA2008:
        raise ValueError(
            f"{argument} {name!r} has a character that IDNA 2003 maps to another domain than IDNA 2008 "
            "(ß, ς, ẞ, a zero-width joiner or non-joiner): install the idna package "
            "(pip install commssl[idna]) to connect to it, or pass its xn-- form") from None
    except UnicodeError as exc:
        raise ValueError(f"{argument} {name!r} is not a valid host name: {exc}") from None
