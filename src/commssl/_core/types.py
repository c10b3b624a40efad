"""The argument types the public functions share (for type checkers and readers).

``ContextArg``: what the functions that configure a context take (an ``SSLCtxPointer`` from
``make_ssl_ctx``, or an abstract context from ``create_ssl_client_context`` /
``create_ssl_server_context``, standing for its ``SSL_CTX``). ``ConnectionArg``: what the
``ssl_connection_*`` functions take (a ``SocketStream``, an ``AsyncSSLStream``, a
``commssl.anyio.TLSStream``, or the ``SSLPointer`` of a connection). ``SSLCtxArg``: the
``ssl_ctx`` of the functions that make connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Union

from commssl._core.pointers import SSLCtxPointer, SSLPointer

if TYPE_CHECKING:  # these modules import this one's users: no cycle at run time
    from commssl.config.contexts import SSLAbstractContext
    from commssl.io.connection import Connection

ContextArg = Union[SSLCtxPointer, "SSLAbstractContext"]
ContextOrSSLArg = Union[SSLCtxPointer, "SSLAbstractContext", SSLPointer]
ConnectionArg = Union[SSLPointer, "Connection"]
#: The ``ssl_ctx`` values that make a new context (``make_ssl_ctx``'s).
NewContext = Literal[True, "default", "v23"]
#: What ``ssl_ctx`` of ``attach_ssl``, ``open_tcp_stream`` and their async and socket forms takes
#: (``open_tcp_stream`` also ``None``: plain TCP).
SSLCtxArg = Union[NewContext, SSLCtxPointer, SSLPointer, "SSLAbstractContext"]

__all__ = ["ConnectionArg", "ContextArg", "ContextOrSSLArg", "NewContext", "SSLCtxArg"]
