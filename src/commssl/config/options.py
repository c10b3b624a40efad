"""``set_ssl_ctx_options``: LispWorks' option keywords and every ``SSL_OP_*`` name.

The names are OpenSSL's ``SSL_OP_*`` names lowercased without the prefix
(``no_tlsv1_3``, ``cipher_server_preference``, ``all``...), which include
LispWorks' keywords with ``-`` as ``_``. A name this OpenSSL does not define
(LispWorks' ``ephemeral_rsa``, ``no_sslv2``..., or one of a later 3.x release) is
accepted as 0: setting it changes nothing.
"""

from __future__ import annotations

from typing import Dict

from commssl._core.args import ctx_or_ssl
from commssl._core.binding import ffi, lib
from commssl._core.ownership import ssl_held
from commssl._core.pointers import SSLCtxPointer
from commssl._core.types import ContextOrSSLArg


def _table() -> Dict[str, int]:
    names: Dict[str, int] = {}
    name = ffi.new("const char **")
    value = ffi.new("uint64_t *")
    i = 0
    while lib.commssl_lw_option(i, name, value):
        names[ffi.string(name[0]).decode("ascii").lower()] = int(value[0])
        i += 1
    return names


OPTIONS: Dict[str, int] = _table()
"""Every option name ``set_ssl_ctx_options`` accepts, with its bit(s) here (0: none)."""


def set_ssl_ctx_options(ctx_or_ssl_: ContextOrSSLArg, **options: bool) -> int:
    """OR the ``SSL_OP_*`` bit of every option given as true into the options of a
    context (``SSL_CTX_set_options``) or a connection's SSL (``SSL_set_options``);
    false ones are ignored (options are only ever added, as in LispWorks). Returns the
    options now set. An unknown name is a ``TypeError``, and so is a value that is not
    a bool (naming it)."""
    target = ctx_or_ssl(ctx_or_ssl_, "ctx_or_ssl")
    bits = 0
    for name, value in options.items():
        if name not in OPTIONS:
            raise TypeError(f"set_ssl_ctx_options: unknown option {name!r}")
        if not isinstance(value, bool):
            raise TypeError(f"set_ssl_ctx_options: option {name} must be a bool, not {type(value).__name__}")
        if value:
            bits |= OPTIONS[name]
    with ssl_held(target) as cdata:
        if isinstance(target, SSLCtxPointer):
            return int(lib.SSL_CTX_set_options(cdata, bits))
        return int(lib.SSL_set_options(cdata, bits))
