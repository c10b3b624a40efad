"""Argument coercion every public function shares: a context or SSL argument to its
pointer, a connection to its ``SSLPointer``. Errors name the argument and what it accepts."""

from __future__ import annotations

import os
from typing import Tuple, Union

from commssl._core.pointers import SSLCtxPointer, SSLPointer
from commssl._core.types import ConnectionBase


def ctx_or_ssl(obj: object, argument: str) -> Union[SSLCtxPointer, SSLPointer]:
    """An ``SSLCtxPointer`` or ``SSLPointer`` from what the user passed (abstract
    contexts stand for their ``SSL_CTX``)."""
    if isinstance(obj, (SSLCtxPointer, SSLPointer)):
        return obj
    pointer = getattr(obj, "ssl_ctx_pointer", None)
    if isinstance(pointer, SSLCtxPointer):
        return pointer
    raise TypeError(
        f"{argument} must be an SSLCtxPointer, SSLPointer or abstract context, "
        f"not {type(obj).__name__}"
    )


def ctx_pointer(obj: object, argument: str = "ctx") -> SSLCtxPointer:
    """The ``SSLCtxPointer`` of a context argument (abstract contexts stand for theirs)."""
    if isinstance(obj, SSLCtxPointer):
        return obj
    pointer = getattr(obj, "ssl_ctx_pointer", None)
    if isinstance(pointer, SSLCtxPointer):
        return pointer
    raise TypeError(f"{argument} must be an SSLCtxPointer or abstract context, not {type(obj).__name__}")


def ssl_of(conn: object) -> SSLPointer:
    """The ``SSLPointer`` of an SSL connection (an ``SSLPointer`` stands for itself)."""
    if isinstance(conn, SSLPointer):
        return conn
    if not isinstance(conn, ConnectionBase):
        raise TypeError("conn must be a SocketStream, an AsyncSSLStream or a commssl.anyio.TLSStream, "
                        f"not {type(conn).__name__}")
    return conn._ssl_pointer()


def path_arg(path: object, argument: str) -> bytes:
    """A file or directory argument as the bytes OpenSSL takes."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{argument} must be a path (str or os.PathLike), not {type(path).__name__}")
    return os.fsencode(path)


#: The sides a context or a connection can be made for.
SIDES = ("server", "client", "both")


def side_arg(value: object, accepted: Tuple[str, ...], argument: str = "ssl_side") -> str:
    """A side argument (``"server"``, ``"client"``, and where it is meant ``"both"``):
    ``TypeError`` for a non-str, ``ValueError`` for another str, each naming the accepted ones."""
    if isinstance(value, str) and value in accepted:
        return value
    names = ", ".join(repr(a) for a in accepted[:-1]) + f" or {accepted[-1]!r}"
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be {names}, not {type(value).__name__}")
    raise ValueError(f"{argument} must be {names}, not {value!r}")
