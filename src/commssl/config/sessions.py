"""TLS sessions for resumption: ``Session`` owns one ``SSL_SESSION*`` reference.

Safety rules (see ``docs/guide/tls-features.md``):

- A session is offered (``SSL_set_session``) only to an SSL of the same context
  wrapper that made it, while that context is alive and the SSL has the same
  verification mode and the same Python verify callbacks as the connection that
  made it. Otherwise ``session=`` is skipped and a full handshake runs: a context
  with another trust store or verification never resumes a session it did not make.
  Under ``ocsp_stapling="require"`` a session is offered only when the full
  handshake that made it checked a good staple (it is skipped otherwise).
- OpenSSL does not verify certificates on a resumed handshake. commssl does: after
  every resumed handshake the session's stored chain is verified again against the
  context's trust store as it is now, with the SSL's parameters (host name) and its
  verify callbacks (``verify_callback(conn)`` included, with
  ``ssl_connection_copy_peer_certificates`` returning the session's chain). A
  failure fails the handshake as on a full one. No staple comes on a resumed
  handshake: under ``"require"`` the check of the full handshake that made the
  session stands (OpenSSL 3 runs the status callback on a TLS 1.3 resumption, and
  commssl answers it from that), and a session made without one fails (73).
- A server abstract context's ``verify_callback(conn)`` also decides a client
  that sent no certificate (OpenSSL verifies nothing then), full or resumed
  handshake: ``decide_without_certificate``.
- A server binds the sessions of each connection to its context and its
  verification (``SSL_set_session_id_context`` with a digest of a random value
  per context wrapper, the verify mode and the verify callbacks): OpenSSL then
  resumes only sessions made under the same ones (and a server that verifies
  client certificates can resume at all: OpenSSL refuses resumption without a
  session id context there). A ticket holds the client's certificate but not its
  chain, which the resumed handshake verifies again: commssl's server contexts
  carry the chain in the ticket's app data (``SSL_CTX_set_session_ticket_cb``),
  and a ticket without it is not resumed (a full handshake runs).
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any, Dict, Optional, Tuple

from commssl._core.binding import drain, ffi, lib, raise_last
from commssl._core.ownership import ssl_held
from commssl._core.pointers import SSLCtxPointer, SSLPointer, _Owned, call_pinned


def _identity(sslp: SSLPointer, ssl: Any) -> Tuple[Any, ...]:
    """What a session is bound to: the context wrapper, the verify mode, and the
    Python verify callbacks (compared by identity)."""
    ctx = sslp.ctx
    return (ctx, int(lib.SSL_get_verify_mode(ssl)), sslp.verify, ctx.conn_verify)


class Session(_Owned):
    """An owned ``SSL_SESSION*`` (``ssl_connection_session``): pass it as
    ``session=`` to ``open_tcp_stream``, ``attach_ssl`` or ``open_tcp_stream_async``
    to resume. Release it with ``release()`` (or ``release_session``); one the
    collector finds unreleased is freed with a ``ResourceWarning``. Copying and
    pickling are refused. It follows the pointers' lifetime rule: a release
    racing a use frees the session when that use ends."""

    __slots__ = ("_identity",)
    _identity: Tuple[Any, ...]

    def __init__(self) -> None:
        raise TypeError("Session objects come from ssl_connection_session(conn)")

    @classmethod
    def _own(cls, cdata: Any, identity: Tuple[Any, ...]) -> "Session":
        self = object.__new__(cls)
        self._start(cdata)
        self._identity = identity
        return self

    _release_call = "release_session()"

    @property
    def resumable(self) -> bool:
        """Whether OpenSSL could resume it (a TLS 1.3 client gets its ticket after
        the handshake, with the first data read: before, this is False)."""
        return bool(call_pinned(self, lib.SSL_SESSION_is_resumable))

    def _dispose(self) -> None:
        lib.SSL_SESSION_free(self.cdata)

    def release(self) -> None:
        """Drop the reference (``SSL_SESSION_free``); a second release is a ``ValueError``."""
        super().release()
        self._identity = ()


def release_session(session: Session) -> None:
    """``session.release()``."""
    if not isinstance(session, Session):
        raise TypeError(f"session must be a Session, not {type(session).__name__}")
    session.release()


def session_of(sslp: SSLPointer) -> Session:
    """An owned ``Session`` of the SSL's current session."""
    with ssl_held(sslp) as ssl:
        cdata = lib.SSL_get1_session(ssl)
        if cdata == ffi.NULL:
            raise ValueError("the connection has no session (no handshake yet)")
        return Session._own(cdata, _identity(sslp, ssl))


def apply_session(sslp: SSLPointer, ssl: Any, session: Optional[Session], ssl_side: str) -> bool:
    """``SSL_set_session`` on ``ssl`` (the caller holds it) when the rules allow
    (see the module docstring); False when the session was skipped (a full
    handshake will run)."""
    if session is None:
        return False
    if not isinstance(session, Session):
        raise TypeError(f"session must be a Session or None, not {type(session).__name__}")
    if ssl_side != "client":
        raise ValueError("session= resumes a client's session; servers resume through their own cache")
    cdata = session._pin()
    try:
        mine = _identity(sslp, ssl)
        theirs = session._identity
        ctx = theirs[0] if theirs else None
        same = (len(theirs) == len(mine) and isinstance(ctx, SSLCtxPointer) and not ctx._dead
                and all(a is b for a, b in zip(theirs[::2], mine[::2])) and theirs[1] == mine[1]
                and theirs[3] is mine[3])
        if not same:
            return False
        if not lib.commssl_ocsp_session_ok(ssl, cdata):  # "require", and no staple was checked
            return False
        if not lib.SSL_set_session(ssl, cdata):  # the SSL takes a reference of its own
            raise_last("session")
        return True
    finally:
        session._unpin()


def _server_ids(ctx: SSLCtxPointer) -> Tuple[bytes, Dict[Any, bytes]]:
    """A server context's random value and the session id contexts made from it, by
    (verify mode, verify callback, verify_callback(conn)): the keys hold the callables,
    so their ids (in the digest) are not reused while cached."""
    with _ids_lock:
        if ctx.session_ids is None:
            # the client's chain rides in the tickets, to be verified again on resumption
            call_pinned(ctx, lib.commssl_ctx_keep_chains)
            ctx.session_ids = (os.urandom(16), {})
        return ctx.session_ids


_ids_lock = threading.Lock()
_MAX_IDS = 64


def bind_server_sessions(sslp: SSLPointer, ssl: Any) -> None:
    """Set the session id context of a new server-side SSL ``ssl`` (the caller
    holds it; see the module docstring)."""
    ctx = sslp.ctx
    entry = ctx.session_ids or _server_ids(ctx)
    nonce, digests = entry
    mode = int(lib.SSL_get_verify_mode(ssl))
    key = (mode, sslp.verify, ctx.conn_verify)
    digest = digests.get(key)
    if digest is None:
        digest = hashlib.blake2s(b"%s:%d:%d:%d" % (nonce, mode, id(key[1]), id(key[2])),
                                 digest_size=32).digest()
        if len(digests) >= _MAX_IDS:  # callbacks replaced again and again: start over
            digests.clear()
        digests[key] = digest
    if not lib.SSL_set_session_id_context(ssl, digest, len(digest)):
        raise_last("setting the session id context")


def reverify_resumed(sslp: SSLPointer) -> Optional[bool]:
    """Verify a resumed session's chain again (see the module docstring): None when
    the handshake did not resume, True when verification passed or is not
    enforced, False when it failed and the verification mode enforces it. A
    callback's exception is left parked on ``sslp``."""
    ssl = sslp.cdata
    if not lib.SSL_session_reused(ssl):
        return None
    ok = lib.commssl_reverify(ssl)
    if ok < 0:
        raise_last("handshake: verifying the resumed session's certificates")
    if ok == 0 and lib.SSL_get_verify_mode(ssl) & lib.SSL_VERIFY_PEER:
        drain()
        return False
    # ocsp_stapling="require" (a client): only a session whose full handshake checked a
    # staple resumes (none comes on a resumption); else fail with OCSP_VERIFY_NEEDED
    return bool(lib.commssl_ocsp_resumed_ok(ssl))


def decide_without_certificate(sslp: SSLPointer) -> Optional[bool]:
    """A server abstract context's ``verify_callback(conn)`` when the client sent no
    certificate, full or resumed handshake alike (OpenSSL calls no verify callback
    then): the callback sees an empty chain. None when there is nothing to decide
    (a client, no ``verify_callback(conn)``, or a certificate came and the callback
    ran inside the handshake); True or False, the callback's answer. Its exception
    is left parked on ``sslp``. The caller holds ``sslp`` pinned."""
    decided = lib.commssl_decide_no_cert(sslp.cdata)
    if decided == 2:
        return None
    if decided < 0:
        raise_last("handshake: asking the verify callback about a client without a certificate")
    return decided == 1
