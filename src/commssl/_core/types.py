"""The argument types the public functions share (for type checkers and readers).

``ContextArg``: what the functions that configure a context take (an ``SSLCtxPointer`` from
``make_ssl_ctx``, or an abstract context from ``create_ssl_client_context`` /
``create_ssl_server_context``, standing for its ``SSL_CTX``). ``ConnectionArg``: what the
``ssl_connection_*`` functions take (a ``SocketStream``, an ``AsyncSSLStream``, a
``commssl.anyio.TLSStream``, or the ``SSLPointer`` of a connection). ``SSLCtxArg``: the
``ssl_ctx`` of the functions that make connections.
"""

from __future__ import annotations

from typing import Literal, Protocol, Union

from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl._core.unique import Unique


class AbstractContext(Protocol):
    """What stands for an ``SSL_CTX``: an ``SSLAbstractContext`` (``create_ssl_client_context``)."""

    @property
    def ssl_ctx_pointer(self) -> SSLCtxPointer: ...


class ConnectionBase(Unique):
    """The base of every connection kind (``SocketStream``, ``AsyncSSLStream``,
    ``commssl.anyio.TLSStream``): ``commssl.io.connection.Connection`` fills it in."""

    __slots__ = ()
    _copy_hint = _pickle_hint = ": it owns its connection"

    def _ssl_pointer(self) -> SSLPointer:
        """The live ``SSLPointer``, or ``ValueError`` naming why there is none."""
        raise NotImplementedError


ContextArg = Union[SSLCtxPointer, AbstractContext]
ContextOrSSLArg = Union[SSLCtxPointer, AbstractContext, SSLPointer]
ConnectionArg = Union[SSLPointer, ConnectionBase]
#: The ``ssl_ctx`` values that make a new context (``make_ssl_ctx``'s).
NewContext = Literal[True, "default", "v23"]
#: What ``ssl_ctx`` of ``attach_ssl``, ``open_tcp_stream`` and their async and socket forms takes
#: (``open_tcp_stream`` also ``None``: plain TCP).
SSLCtxArg = Union[NewContext, SSLCtxPointer, SSLPointer, AbstractContext]

__all__ = ["AbstractContext", "ConnectionArg", "ConnectionBase", "ContextArg", "ContextOrSSLArg",
           "NewContext", "SSLCtxArg"]
