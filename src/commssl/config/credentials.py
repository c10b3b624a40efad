"""In-memory credentials: a certificate chain, a private key and trusted
certificates from ``bytes`` rather than files (what CPython's ``ssl`` calls
``cadata``). Bad bytes are ``SSLFailure`` with OpenSSL's reason; wrong types
``TypeError`` naming the argument."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from commssl._core.args import ctx_pointer as _ctx
from commssl._core.binding import check, drain, ffi, lib, raise_last
from commssl._core.pointers import call_pinned
from commssl._core.types import ContextArg

_MAX = 2**31 - 1


def _data(value: object, argument: str) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise TypeError(f"{argument} must be bytes, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{argument} is empty")
    if len(value) > _MAX:
        raise ValueError(f"{argument} is too large")
    return value


def ssl_ctx_use_certificate_chain(ctx: ContextArg, pem_bytes: bytes) -> None:
    """Use the certificate and its chain from PEM bytes: the leaf first, then the
    certificates sent with it (as ``ssl_ctx_use_certificate_chain_file``)."""
    pointer = _ctx(ctx)
    data = _data(pem_bytes, "pem_bytes")
    drain()
    ok = call_pinned(pointer, lib.commssl_use_chain_mem, data, len(data))
    check(ok, "ssl_ctx_use_certificate_chain")


def _load_key(pointer: Any, load: Callable[[Any], int]) -> int:
    """``load(cdata)`` on the pinned context, with what its password callback raised
    (parked on the pointer) taken back and raised here; else load's result. The key
    loaders' common part (file: contexts.ssl_ctx_use_privatekey_file, memory: below)."""
    cdata = pointer._pin()
    try:
        pointer._password_error = None
        ok = load(cdata)
        exc = pointer._password_error
        pointer._password_error = None
    finally:
        pointer._unpin()
    if exc is not None:
        drain()
        raise exc
    return ok


def ssl_ctx_use_privatekey(ctx: ContextArg, pem_or_der_bytes: bytes,
                           password: Union[None, str, bytes] = None) -> None:
    """Use the private key in PEM or DER bytes (PKCS#8, traditional, or encrypted
    PKCS#8). An encrypted key is opened with ``password``, else with the context's
    password callback (``set_ssl_ctx_password_callback``); without either it fails
    at once (no terminal prompt)."""
    pointer = _ctx(ctx)
    data = _data(pem_or_der_bytes, "pem_or_der_bytes")
    pw: Optional[bytes] = None
    if password is not None:
        if isinstance(password, str):
            pw = password.encode("utf-8")
        elif isinstance(password, bytes):
            pw = password
        else:
            raise TypeError(f"password must be str, bytes or None, not {type(password).__name__}")
        if b"\x00" in pw:
            raise ValueError("password must not contain NUL bytes")
    drain()
    ok = _load_key(pointer, lambda cdata: lib.commssl_use_key_mem(cdata, data, len(data),
                                                                  ffi.NULL if pw is None else pw))
    check(ok, "ssl_ctx_use_privatekey")


def load_cadata(ctx: ContextArg, cadata: object) -> int:
    """Trust the certificates in ``cadata``: PEM (one or more) or DER (one).
    Returns how many were added."""
    pointer = _ctx(ctx)
    data = _data(cadata, "cadata")
    drain()
    n = call_pinned(pointer, lib.commssl_load_cadata, data, len(data))
    if n <= 0:
        raise_last("ssl_ctx_load_verify_locations(cadata=...)")
    return int(n)
