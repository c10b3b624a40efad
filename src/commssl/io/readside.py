"""The read side of a connection over memory BIOs, one policy for ``AsyncSSLStream``
and ``commssl.anyio.TLSStream``: the drivers differ only in how they wait for bytes
(an event loop feeding them, or a task pulling them from a byte stream); what the
bytes mean is decided here.

- the handshake: done, more to come, or the peer's end during it (``handshake_step``);
  its end, with the application data that came in its last flight (``handshake_done``);
- the peer's bytes: decrypted into the stream's buffer; the peer's close_notify is a
  clean end (``tls.peer_closed``); a failure is stored (``tls.read_error``), the data
  decrypted before it readable first (``feed``);
- a read that finds the buffer empty: more to come, or the end (``ended``), which is
  clean or the stored error (``end_error``);
- close_notify: ours, sent (``send_close_notify``); the peer's, during a detach
  (``detach_read``);
- the release of the SSL at the end (``release``).
"""

from __future__ import annotations

from typing import Any, Optional, Union

from commssl._core.binding import ffi
from commssl.errors import SSLClosed, SSLError
from commssl.io.detach import DetachDrain
from commssl.io.tls import (
    OP_HANDSHAKE,
    OP_READ,
    OP_SHUTDOWN,
    SCRATCH,
    SHUTDOWN_SENT,
    WANT_READ,
    ZERO_RETURN,
    TLSConnection,
    scratch,
)

__all__ = ["detach_read", "end_error", "ended", "feed", "handshake_done", "handshake_step", "release",
           "send_close_notify", "take"]

_NULL = ffi.NULL


def take(buf: bytearray, n: int) -> bytes:
    """The first ``n`` bytes of ``buf``, removed from it, in one copy (deleting
    from the front of a bytearray only moves its start)."""
    with memoryview(buf) as view:
        data = bytes(view[:n])
    del buf[:n]
    return data


def handshake_step(tls: TLSConnection, data: Any, eof: int) -> bool:
    """Feed what arrived (``eof``: the end of the byte stream) to the handshake:
    True once it is complete, False while it waits for more. The peer's
    close_notify during it is ``SSLClosed``; its end of stream ``SSLError``."""
    err = tls.mem_step(data, eof, OP_HANDSHAKE, _NULL, 0, "handshake")
    if err == 0:
        return True
    if err != WANT_READ:
        raise SSLClosed("handshake: the peer closed the TLS connection", "closed")
    if eof:  # OpenSSL reports a truncation itself; never wait on an ended stream
        raise SSLError("handshake: the peer closed the connection", None)
    return False


def handshake_done(tls: TLSConnection, rbuf: bytearray) -> Optional[BaseException]:
    """The handshake is complete: decrypt into ``rbuf`` what came in its last flight (a
    client's first request in the segment of its Finished waits in the read BIO), as ``feed``
    does. Before any wait for more bytes: the peer may be waiting for the answer to it."""
    tls.handshake_done()
    return feed(tls, b"", 0, rbuf)


def feed(tls: TLSConnection, data: Any, eof: int, rbuf: bytearray) -> Optional[BaseException]:
    """Decrypt what arrived (``eof``: the end of the byte stream) into ``rbuf``
    (dropped while closing). The peer's close_notify sets ``tls.peer_closed``. A
    failure (a truncation included) is returned, and stored as ``tls.read_error``
    unless one is there already; what was decrypted before it stays in ``rbuf``,
    to be read first."""
    try:
        if tls.mem_decrypt(data, eof, rbuf) == ZERO_RETURN:
            tls.peer_closed = True
    except BaseException as exc:  # a callback's own exception included
        if tls.read_error is None:
            tls.read_error = exc
        return exc
    return None


def ended(tls: TLSConnection) -> bool:
    """Whether no more data will be decrypted: the peer's close_notify came, or an error is stored."""
    return tls.peer_closed or tls.read_error is not None


def end_error(tls: TLSConnection) -> Optional[BaseException]:
    """What a read raises once it has taken all the data of an ``ended`` stream:
    ``None`` after the peer's close_notify (a clean end of stream), else the
    stored error."""
    return None if tls.peer_closed else tls.read_error


def send_close_notify(tls: TLSConnection, what: str, held: Any = None) -> bool:
    """Send our close_notify (``close``, or a detach that holds the SSL, ``held``):
    whether the peer's is still to come."""
    err = tls.mem_step(b"", 0, OP_SHUTDOWN, _NULL, 0, what, closing=True, held=held)
    return err == SHUTDOWN_SENT and not tls.peer_closed


def detach_read(tls: TLSConnection, ssl: Any, keep: DetachDrain, what: str, data: Any = b"",
                eof: int = 0) -> Union[bool, SSLClosed]:
    """During a detach (``ssl`` held by it), after our close_notify: decrypt what
    arrived up to the peer's close_notify into ``keep``, then complete the
    shutdown (the clear bytes after it stay in the BIO: ``keep.finish``). True
    once complete, False while more must arrive; ``keep``'s refusal (more than
    it keeps) is returned, for the caller to raise. A failure raises, and so
    does an end of stream without close_notify."""
    buf = scratch()
    done = tls.mem_done
    fed_eof = eof
    while True:
        err = tls.mem_step(data, eof, OP_READ, buf, SCRATCH, what, held=ssl)
        data, eof = b"", 0
        if done[0]:
            try:
                keep.keep(ffi.buffer(buf, done[0]))
            except SSLClosed as exc:
                return exc
        if err == ZERO_RETURN:
            err = tls.mem_step(b"", 0, OP_SHUTDOWN, _NULL, 0, what, held=ssl)
            if err:
                tls.failure(err, what)
            return True
        if err == WANT_READ:
            if fed_eof:  # OpenSSL reports a truncation itself; never wait on an ended stream
                raise SSLError(f"{what}: the peer closed the connection without close_notify", None)
            return False


def release(tls: TLSConnection) -> None:
    """Close the connection in the core at once, freeing the SSL (the end of every
    close, and of a failed or cancelled open)."""
    tls.start_closing()
    ssl, _ = tls.begin_close()
    if ssl is not None:
        tls.end()
