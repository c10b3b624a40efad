"""What a detach keeps: one policy for the blocking ``detach_ssl`` and ``detach_ssl_async``.

A detach sends our close_notify and then waits for the peer's. A peer that has
not seen ours yet may still be sending application data; after its
close_notify it may go on in clear (the STARTTLS downgrade). A detach hands the
plain stream, in this order:

1. the decrypted data the stream had already received and not yet returned;
2. the application data the peer sent before its close_notify, read by the
   detach itself. Steps 1 and 2 together keep at most ``DETACH_DRAIN`` bytes:
   a peer that sends more instead of answering is refused with ``SSLClosed``,
   and what fits is kept. Counting step 1 too makes the limit the same for a
   blocking stream (which decrypts only when the application reads) and an
   asyncio one (which decrypts ahead, up to its ``limit``);
3. the clear bytes that followed the peer's close_notify and were already
   received (by the socket stream's read buffer or the memory BIO).

OpenSSL's own ``SSL_shutdown`` would take step 2's data for an error
("application data after close notify"), losing it and what follows: so both
detaches read with ``SSL_read`` until the peer's close_notify, then complete the
shutdown. The drivers differ only in how they wait for bytes (polling a socket,
or an event loop feeding a memory BIO); what they keep, and the errors they
raise, are decided here.
"""

from __future__ import annotations

from typing import Any

from commssl._core.binding import ffi, lib
from commssl.errors import SSLClosed

__all__ = ["DETACH_DRAIN", "DetachDrain"]

#: What a detach keeps, at most, of the peer's decrypted data: unread, or sent before its close_notify.
DETACH_DRAIN = 1 << 20


class DetachDrain:
    """One detach's keeping of the peer's bytes, into ``rbuf`` (the stream's
    buffer of bytes received and not yet returned). ``what`` names the call in
    error messages (``"detach_ssl"``, ``"detach_ssl_async"``)."""

    __slots__ = ("what", "rbuf", "drained")

    def __init__(self, what: str, rbuf: bytearray) -> None:
        self.what = what
        self.rbuf = rbuf
        self.drained = len(rbuf)  # decrypted and unread already: counted (see the module docstring)

    def keep(self, data: Any) -> None:
        """Application data the peer sent before its close_notify (bytes-like):
        appended to the buffer. Past ``DETACH_DRAIN`` bytes in all, the buffer is
        filled to that and ``SSLClosed`` is raised, so that where the limit falls
        does not depend on how the driver chunked its reads."""
        n = len(data)
        room = max(0, DETACH_DRAIN - self.drained)
        if n > room:
            with memoryview(data) as view:
                self.rbuf += view[:room]
            self.drained += room
            raise SSLClosed(f"{self.what}: the peer sent more than {DETACH_DRAIN} bytes instead of "
                            "answering close_notify", "closed")
        self.rbuf += data
        self.drained += n

    def finish(self, ssl: Any) -> None:
        """The shutdown is over (``ssl`` pinned by the detach): when the peer's
        close_notify came, the clear bytes already received after it follow
        in the buffer."""
        if lib.SSL_get_shutdown(ssl) & lib.SSL_RECEIVED_SHUTDOWN:
            self.rbuf += _take_unread(ssl)

    def no_answer(self, detail: str) -> SSLClosed:
        """The error of a peer that did not send its close_notify in time
        (``detail``: how long was waited, or why the wait ended)."""
        return SSLClosed(f"{self.what}: the peer did not answer close_notify {detail}", "closed")


def _take_unread(ssl: Any) -> bytes:
    """What waits unread in ``ssl``'s incoming BIO, taken out (the caller holds
    the SSL: a detach). After the peer's close_notify these are the bytes it
    sent in clear after it: in the memory BIO of memory-BIO mode, or in a
    socket stream's read buffer (``commssl_set_socket``)."""
    rbio = lib.SSL_get_rbio(ssl)
    pending = lib.BIO_ctrl_pending(rbio) if rbio != ffi.NULL else 0
    if not pending:
        return b""
    buf = ffi.new("char[]", pending)
    got = lib.BIO_read(rbio, buf, pending)
    return ffi.buffer(buf, got)[:] if got > 0 else b""
