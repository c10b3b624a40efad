"""Who owns what: one connection per ``SSL``, one stream per descriptor, one
process per TLS session, and every setter serialised with its ``SSL``'s I/O.

Held, not checked, as the pointer lifetimes are (``pointers.py``):

- **An SSL has one connection.** ``claim_ssl`` marks an ``SSLPointer`` taken,
  atomically, before a connection changes anything on it (``new_ssl``); the
  connection core gives it back when it detaches or closes
  (``TLSConnection._release_ssl``), or ``release_new_ssl`` when the attach is
  refused. A second claim is a ``ValueError`` naming ``ssl_ctx``: OpenSSL would
  otherwise reset the SSL and free its BIOs under the first stream's reader.
- **A descriptor has one stream.** ``take_over`` moves a socket's descriptor into
  a ``StreamSocket`` of the stream's own (as CPython's ``wrap_socket`` does:
  the caller's socket object is detached, its ``close()`` harmless). Closing the
  ``StreamSocket`` is closing the stream, and its descriptor is closed by the
  connection core only, after the last operation on it has ended: the C loops,
  which poll and write the number they were given at attach, never outlive it.
- **A TLS session belongs to the process that attached it.** In a forked child
  (``TLSConnection.forked``) a close frees memory and sends nothing: a
  close_notify from the child would end the parent's connection.
- **Setters and session reads take the SSL's operation lock** (``ssl_held``),
  the lock ``commssl_do`` holds around each OpenSSL call, so they never run
  inside another thread's handshake step. Inside one of the SSL's own callbacks
  the lock is already this thread's (C knows which thread holds it), and the
  call goes on under it.
"""

from __future__ import annotations

import _socket
import socket
import threading
import weakref
from typing import Any, Optional, Union

from commssl._core.binding import lib
from commssl._core.pointers import SSLCtxPointer, SSLPointer

# -- one connection per SSL ------------------------------------------------------------

_claims = threading.Lock()


def claim_ssl(sslp: SSLPointer) -> None:
    """Take ``sslp`` for a connection, or ``ValueError`` naming ``ssl_ctx`` when
    another connection has it (check and mark in one step: of two racing
    attaches exactly one wins)."""
    with _claims:
        if sslp._claimed:
            raise ValueError(
                f"ssl_ctx: {sslp!r} belongs to another connection (a stream's own SSL, or an SSLPointer "
                "attached and not yet detached or closed); an SSL serves one connection: pass its "
                "SSLCtxPointer to make a new one")
        sslp._claimed = True


def release_ssl_claim(sslp: SSLPointer) -> None:
    """Give ``sslp`` back: its connection detached, closed, or never took it."""
    with _claims:
        sslp._claimed = False


# -- one stream per descriptor ---------------------------------------------------------

_family = _socket.socket.family.__get__
_kind = _socket.socket.type.__get__
_KEEP: Any = object()


class StreamSocket(socket.socket):
    """The socket a ``SocketStream`` owns (``stream.socket``). Read its address,
    options or ``getpeername()`` freely; ``close()`` closes the stream (close_notify
    first, as ``stream.close()``), and the descriptor is closed once no operation
    of the stream uses it. ``detach()`` is refused: the stream keeps using the
    descriptor."""

    __slots__ = ("_stream", "_owned")
    _stream: "Optional[weakref.ReferenceType[Any]]"
    _owned: bool  # the connection core closes the descriptor (True until _release)

    def close(self) -> None:
        ref = getattr(self, "_stream", None)
        stream = ref() if ref is not None else None
        if stream is None:  # no stream (any more): an ordinary socket
            socket.socket.close(self)
        else:  # the core closes the descriptor when the stream's last operation ends
            stream.close()

    def detach(self) -> int:
        ref = getattr(self, "_stream", None)
        if ref is not None and ref() is not None:
            raise ValueError("the socket of a SocketStream cannot be detached: the stream uses its "
                             "descriptor until it is closed")
        return socket.socket.detach(self)

    def _release(self) -> None:
        """The connection core's last step: close the descriptor for real."""
        self._stream, self._owned = None, False
        socket.socket.close(self)

    def __del__(self) -> None:
        # A collection that takes the stream and its socket together runs both finalizers in
        # any order: the socket's own would close the descriptor before the stream's close
        # writes its close_notify to that number. Owned, the stream's finalizer releases it.
        if not getattr(self, "_owned", False):
            socket.socket.__del__(self)  # type: ignore[attr-defined]  # the C type's finalizer


def take_over(sock: socket.socket, stream: Any, timeout: Any = _KEEP) -> StreamSocket:
    """``sock``'s descriptor in a ``StreamSocket`` of ``stream``'s own, with ``timeout``
    (default: ``sock``'s); ``sock`` is left detached (``fileno()`` -1, its ``close()``
    harmless). ``ValueError`` for a closed socket or another stream's socket."""
    if sock.fileno() < 0:
        raise ValueError("sock is closed")
    # the C type's getters: plain ints (socket.socket's properties make enums, in Python)
    family, kind, proto = _family(sock), _kind(sock), sock.proto
    if timeout is _KEEP:
        timeout = sock.gettimeout()
    fd = sock.detach()  # a StreamSocket of another stream refuses this (ValueError)
    try:
        own = StreamSocket(family, kind, proto, fileno=fd)
    except BaseException:
        socket.socket(family, kind, proto, fileno=fd).close()
        raise
    own._stream, own._owned = weakref.ref(stream), False
    own.settimeout(timeout)
    return own


# -- setters and session reads under the SSL's operation lock -------------------------


class ssl_held:
    """``with ssl_held(target) as cdata:`` the pointer pinned (``_pin``) and, for an
    ``SSLPointer``, its operation lock held: what runs inside never meets a
    handshake, read or write step of another thread on that SSL. The lock is
    held only for the C calls inside: never call back into user code there."""

    __slots__ = ("_target", "_locked")

    def __init__(self, target: Union[SSLPointer, SSLCtxPointer]) -> None:
        self._target = target
        self._locked = 0

    def __enter__(self) -> Any:
        target = self._target
        cdata = target._pin()
        if type(target) is SSLPointer:
            # waits with the GIL released (a cffi call); 0 inside this SSL's own callback
            self._locked = lib.commssl_lock_ssl(cdata)
        return cdata

    def __exit__(self, *exc_info: Any) -> None:
        target = self._target
        if self._locked:
            self._locked = 0
            lib.commssl_unlock_ssl(target.cdata)
        target._unpin()
