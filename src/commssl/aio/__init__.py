"""asyncio SSL connections (the LispWorks ``async-io-state`` counterpart).

An ``AsyncSSLStream`` drives its ``SSL`` through a pair of memory BIOs on top
of a plain asyncio TCP transport, so no call ever blocks the event loop.
Contexts, verification modes, Python and C verify callbacks, host name checks
and SNI are those of the blocking streams (``commssl.io.connection.new_ssl``);
so is the mapping of failures to conditions.

The modules, each one job: ``events`` (the asyncio protocol, the handshake it
drives, flow control), ``stream`` (``AsyncSSLStream``: reading, writing,
closing), ``lines`` (``readuntil``/``readline``), ``starttls`` (attach and
detach), ``functions`` (``open_tcp_stream_async``, ``start_ssl_server``,
``attach_ssl_async``, ``detach_ssl_async``). What the peer's bytes mean (data,
the end of stream, the stored error) is decided once, for this package and
``commssl.anyio``, in ``commssl.io.readside``. Failures are logged on the
``commssl.aio`` logger.
"""

from __future__ import annotations

from commssl.aio.events import DEFAULT_LIMIT as DEFAULT_LIMIT
from commssl.aio.functions import Handler as Handler
from commssl.aio.functions import (
    attach_ssl_async,
    detach_ssl_async,
    open_tcp_stream_async,
    start_ssl_server,
)
from commssl.aio.stream import DEFAULT_CLOSE_TIMEOUT as DEFAULT_CLOSE_TIMEOUT
from commssl.aio.stream import AsyncSSLStream

__all__ = [
    "AsyncSSLStream", "attach_ssl_async", "detach_ssl_async", "open_tcp_stream_async", "start_ssl_server",
]
