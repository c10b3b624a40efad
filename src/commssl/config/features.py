"""TLS features every peer has: what a connection negotiated (cipher, SNI, key
exchange group, ALPN protocol), groups, ALPN, and key logging.

Python callbacks (the ALPN select callback, a key log callable) are reached from
OpenSSL through ``extern "Python"`` trampolines, via the SSL's commssl record,
and follow the verify callbacks' rule: an exception is parked on the connection,
aborts what OpenSSL was doing, and propagates from the call that drove the
handshake (blocking or asyncio, any thread). An SSL that commssl does not know
fails closed (ALPN: the handshake is aborted) or logs nothing (key log).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from commssl._core.args import ctx_or_ssl, ctx_pointer, ssl_of
from commssl._core.binding import drain, ffi, lib, raise_last, text
from commssl._core.callbacks import enter_feature_callback, exit_feature_callback, onerror, park
from commssl._core.ownership import ssl_held
from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl._core.types import ConnectionArg, ContextArg, ContextOrSSLArg
from commssl.config.sessions import Session, session_of

AlpnSelect = Callable[[Any, List[str]], Optional[str]]
KeylogTarget = Union[None, str, "os.PathLike[str]", Callable[[str], Any]]




# -- what a connection negotiated ------------------------------------------------------


def ssl_connection_cipher(conn: ConnectionArg) -> str:
    """The negotiated cipher suite's OpenSSL name (``"TLS_AES_256_GCM_SHA384"``,
    ``"ECDHE-RSA-AES128-GCM-SHA256"``...); ``""`` before the handshake."""
    sslp = ssl_of(conn)
    with ssl_held(sslp) as ssl:
        return text(lib.SSL_get_cipher_name(ssl)).replace("(NONE)", "")


def ssl_connection_server_name(conn: ConnectionArg) -> Optional[str]:
    """The SNI host name: on a server the one the client asked for, on a client the
    one it sent; ``None`` when there was none."""
    sslp = ssl_of(conn)
    with ssl_held(sslp) as ssl:
        return text(lib.SSL_get_servername(ssl, lib.TLSEXT_NAMETYPE_host_name)) or None


def ssl_connection_group(conn: ConnectionArg) -> Optional[str]:
    """The key exchange group of the handshake (``"x25519"``, ``"secp256r1"``,
    ``"X25519MLKEM768"``...), as OpenSSL names it; ``None`` before the handshake or
    when there was none (a resumption without key exchange)."""
    sslp = ssl_of(conn)
    with ssl_held(sslp) as ssl:
        # OpenSSL 3.0 reads the session's group outside TLS 1.3, with no NULL check:
        # none before the handshake (attach_ssl(ssl_side="both"), ssl_configure_callback,
        # a server's client_hello_callback)
        if lib.SSL_get_session(ssl) == ffi.NULL:
            return None
        group = lib.SSL_get_negotiated_group(ssl)
        if group <= 0:
            return None
        return text(lib.SSL_group_to_name(ssl, group)) or None


def _names(value: object, argument: str) -> List[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{argument} must be a list of str, not {type(value).__name__}")
    names = list(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{argument} items must be str, not {type(name).__name__}")
    return names


def set_groups(ctx_or_ssl_: ContextOrSSLArg, groups: Sequence[str]) -> None:
    """The key exchange groups offered and accepted, most preferred first
    (``SSL_CTX_set1_groups_list``): names OpenSSL knows, such as ``"X25519"``,
    ``"P-256"``, ``"X25519MLKEM768"`` (OpenSSL >= 3.5). An empty list or a name
    this OpenSSL does not know is a ``ValueError`` naming ``groups``."""
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    names = _names(groups, "groups")
    if not names:
        raise ValueError("groups must name at least one group")
    for name in names:
        if not name or any(c in name for c in ":\x00") or not name.isascii():
            raise ValueError(f"groups: {name!r} is not a group name")
    joined = ":".join(names).encode()
    with ssl_held(target) as cdata:
        if isinstance(target, SSLCtxPointer):
            ok = lib.SSL_CTX_set1_groups_list(cdata, joined)
        else:
            ok = lib.SSL_set1_groups_list(cdata, joined)
    if ok != 1:
        drain()
        unknown = _unknown_groups(names)
        raise ValueError(f"groups: {commssl_openssl_text()} does not know "
                         f"{', '.join(map(repr, unknown or names))}")


def _unknown_groups(names: List[str]) -> List[str]:
    """The names a scratch context refuses one at a time (the target is left as it was)."""
    scratch = lib.SSL_CTX_new(lib.TLS_method())
    if scratch == ffi.NULL:
        drain()
        return []
    try:
        unknown = [n for n in names if lib.SSL_CTX_set1_groups_list(scratch, n.encode()) != 1]
    finally:
        lib.SSL_CTX_free(scratch)
    drain()
    return unknown


def commssl_openssl_text() -> str:
    """The loaded OpenSSL's version text, e.g. ``"OpenSSL 3.0.13 30 Jan 2024"``
    (it says "OpenSSL" itself)."""
    return text(lib.OpenSSL_version(lib.OPENSSL_VERSION))


# -- ALPN --------------------------------------------------------------------------------------


def _alpn_wire(protocols: object) -> bytes:
    names = _names(protocols, "protocols")
    wire = bytearray()
    for name in names:
        raw = name.encode("utf-8")
        if not 0 < len(raw) < 256:
            raise ValueError(f"protocols: {name!r} must be 1 to 255 bytes long")
        wire.append(len(raw))
        wire += raw
    return bytes(wire)


def set_alpn_protocols(ctx_or_ssl_: ContextOrSSLArg, protocols: Sequence[str]) -> None:
    """The ALPN protocols, most preferred first (``["h2", "http/1.1"]``).

    On a client: the protocols offered (``SSL_CTX_set_alpn_protos`` /
    ``SSL_set_alpn_protos``). On a server context: the server's preference order;
    the first of them that the client offered is selected, and when none was
    offered the handshake goes on without ALPN (as OpenSSL's and CPython's servers
    do). An ``SSLPointer`` takes the client offer only (OpenSSL selects per
    context). ``[]`` clears. A set ALPN select callback takes precedence over the
    server preference list.
    """
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    wire = _alpn_wire(protocols)
    buf = wire if wire else ffi.NULL
    if isinstance(target, SSLCtxPointer):
        with ssl_held(target) as cdata:
            if lib.SSL_CTX_set_alpn_protos(cdata, buf, len(wire)) != 0:  # 0 is success here
                raise_last("set_alpn_protocols")
            f = target
            f.alpn_list = wire
            if not lib.commssl_ctx_set_alpn_select(cdata, buf, len(wire), f.alpn_select is not None):
                raise_last("set_alpn_protocols")
    else:
        with ssl_held(target) as ssl:
            if lib.SSL_set_alpn_protos(ssl, buf, len(wire)) != 0:
                raise_last("set_alpn_protocols")


def set_alpn_select_callback(ctx: ContextArg, callback: Optional[AlpnSelect]) -> None:
    """A server's ALPN choice in Python: ``callback(conn, offered) -> str | None``
    per handshake, with the protocols the client offered (``list[str]``, in its
    order). Return one of them to select it, or ``None`` to go on without ALPN.
    An exception, a str the client did not offer or anything else aborts the
    handshake with a ``no_application_protocol`` alert, and the exception (a
    ``ValueError`` or ``TypeError`` for bad returns) propagates from the call that
    drove the handshake. ``None`` removes the callback (a server preference list
    set with ``set_alpn_protocols`` applies again)."""
    pointer = ctx_pointer(ctx, "ctx")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, not {type(callback).__name__}")
    cdata = pointer._pin()
    try:
        f = pointer
        f.alpn_select = callback
        if callback is not None:
            ok = lib.commssl_ctx_set_alpn_select(cdata, ffi.NULL, 0, 1)
        else:
            ok = lib.commssl_ctx_set_alpn_select(cdata, f.alpn_list or ffi.NULL, len(f.alpn_list), 0)
    finally:
        pointer._unpin()
    if not ok:
        raise_last("set_alpn_select_callback")


def ssl_connection_alpn_protocol(conn: ConnectionArg) -> Optional[str]:
    """The protocol ALPN selected, or ``None`` when none was."""
    sslp = ssl_of(conn)
    with ssl_held(sslp) as ssl:
        data = ffi.new("const unsigned char **")
        length = ffi.new("unsigned int *")
        lib.SSL_get0_alpn_selected(ssl, data, length)
        if data[0] == ffi.NULL or length[0] == 0:
            return None
        return bytes(ffi.buffer(data[0], length[0])).decode("utf-8", "replace")


def _parse_alpn(raw: bytes) -> Tuple[List[str], List[int]]:
    names: List[str] = []
    offsets: List[int] = []
    i = 0
    while i < len(raw):
        n = raw[i]
        if n == 0 or i + 1 + n > len(raw):
            break
        names.append(raw[i + 1:i + 1 + n].decode("utf-8", "replace"))
        offsets.append(i)
        i += 1 + n
    return names, offsets


@ffi.def_extern(error=-2, onerror=onerror)
def _commssl_alpn_py(py: Any, data: Any, length: int) -> int:
    sslp: Optional[SSLPointer] = ffi.from_handle(py)()  # the record holds a weak reference's handle
    if sslp is None:  # the wrapper is gone: fail closed
        return -2
    try:
        f = sslp.ctx
        select = f.alpn_select if f is not None else None
        if select is None:
            raise RuntimeError("ALPN: the select callback of this connection's context cannot be reached")
        offered, offsets = _parse_alpn(bytes(ffi.buffer(data, length)))
        conn = sslp.connection
        enter_feature_callback(sslp, "ALPN select")
        try:
            choice = select(conn if conn is not None else sslp, list(offered))
        finally:
            exit_feature_callback()
        if choice is None:
            return -1
        if not isinstance(choice, str):
            raise TypeError("the ALPN select callback must return a str or None, "
                            f"not {type(choice).__name__}")
        if choice not in offered:
            raise ValueError(f"the ALPN select callback returned {choice!r}, which the client did not offer "
                             f"(it offered {offered!r})")
        return offsets[offered.index(choice)]
    except BaseException as exc:
        park(sslp, exc)
        return -2


# -- key logging ---------------------------------------------------------------------------


def set_keylog(ctx: ContextArg, target: KeylogTarget) -> None:
    """Log the TLS secrets of every handshake on ``ctx`` in the NSS key log format
    (``CLIENT_RANDOM ...``, ``CLIENT_HANDSHAKE_TRAFFIC_SECRET ...``), which
    Wireshark reads to decrypt captures. Anyone holding these lines can decrypt
    the connections: log only when debugging.

    ``target``: a path (lines are appended; a new file is made readable by its
    owner only), a callable given each line as ``str`` (without newline), ``"env"``
    (the file named by the ``SSLKEYLOGFILE`` environment variable, read now; when
    it is unset or empty nothing is logged), or ``None`` (stop logging).
    ``SSLKEYLOGFILE`` is never honoured otherwise. An exception from the callable
    (or an error writing the file) aborts the handshake at its end at the latest and
    propagates from the call that drove it.
    """
    pointer = ctx_pointer(ctx, "ctx")
    if isinstance(target, str) and target == "env":
        env = os.environ.get("SSLKEYLOGFILE")
        target = env if env else None
    writer: Optional[Callable[[str], Any]]
    if target is None:
        writer = None
    elif isinstance(target, (str, os.PathLike)):
        writer = _FileLog(os.fspath(target))
    elif callable(target):
        writer = target
    else:
        raise TypeError(f"target must be a path, a callable, 'env' or None, not {type(target).__name__}")
    cdata = pointer._pin()
    try:
        f = pointer
        old, f.keylog = f.keylog, writer
        lib.commssl_ctx_set_keylog(cdata, writer is not None)
    finally:
        pointer._unpin()
    if isinstance(old, _FileLog):
        old.close()


class _FileLog:
    """Appends key log lines to a file (opened once, 0600 when made)."""

    def __init__(self, path: str) -> None:
        if "\x00" in path:
            raise ValueError("target must not contain NUL characters")
        self.path = path
        self._lock = threading.Lock()
        self._fd: Optional[int] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._finalizer = weakref.finalize(self, os.close, self._fd)

    def __call__(self, line: str) -> None:
        data = (line + "\n").encode("ascii", "replace")
        with self._lock:
            if self._fd is None:
                return
            os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            self._fd = None
            self._finalizer()


@ffi.def_extern(onerror=onerror)
def _commssl_keylog_py(py: Any, line: Any) -> None:
    sslp: Optional[SSLPointer] = ffi.from_handle(py)()  # the record holds a weak reference's handle
    if sslp is None:
        return
    try:
        f = sslp.ctx
        log = f.keylog if f is not None else None
        if log is not None:
            enter_feature_callback(sslp, "key log")
            try:
                log(ffi.string(line).decode("ascii", "replace"))
            finally:
                exit_feature_callback()
    except BaseException as exc:
        park(sslp, exc)


# -- sessions ------------------------------------------------------------------------------


def ssl_connection_session(conn: ConnectionArg) -> Session:
    """The connection's TLS session as an owned ``Session`` (release it), to resume
    with ``session=`` on a later connection. A TLS 1.3 server sends its tickets after
    the handshake: take the session after the first read (``Session.resumable``)."""
    return session_of(ssl_of(conn))


def ssl_connection_session_reused(conn: ConnectionArg) -> bool:
    """Whether the handshake resumed a session."""
    sslp = ssl_of(conn)
    with ssl_held(sslp) as ssl:
        return bool(lib.SSL_session_reused(ssl))
