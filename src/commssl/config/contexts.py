"""SSL contexts: ``make_ssl_ctx``, their configuration, and abstract contexts.

Secure defaults (a difference from LispWorks, which leaves OpenSSL's): every
context refuses protocols older than TLS 1.2 and renegotiation, and a context
made for the client side verifies the server against the system's trusted
certificates; the stream then also checks the host name.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from commssl._core.args import SIDES, path_arg, side_arg
from commssl._core.args import ctx_pointer as _ctx
from commssl._core.binding import check, drain, ffi, lib, missing_file, text
from commssl._core.callbacks import copy_pass_phrase
from commssl._core.pointers import SSLCtxPointer, SSLPointer, call_pinned
from commssl._core.types import ContextArg, NewContext
from commssl.config.credentials import _load_key, load_cadata
from commssl.config.verification import set_verification_mode

PathArg = Union[str, "os.PathLike[str]"]
PasswordCallback = Callable[[int, bool], Union[str, bytes]]

_METHODS = {"server": lib.TLS_server_method, "client": lib.TLS_client_method, "both": lib.TLS_method}
_NEW_CTX = ("default", "v23")




def default_trust(cdata: Any) -> None:
    """Trust the system's default CA file and directory (``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` honoured), as ``SSL_CTX_set_default_verify_paths`` does.

    Not that call itself: before OpenSSL 3.4 it also adds a "store" lookup of the
    same directory (openssl/openssl#21067, removed by #24140), which reads the
    whole directory at every lookup that misses the trust store -- on each
    verification of a chain whose intermediate is not trusted itself. That cost
    about 120-300 us per client handshake and serialised concurrent handshakes
    (bench/). The file and hashed-directory lookups find the same certificates.

    When OpenSSL's default file is missing here (a wheel's OpenSSL, built to look
    in ``/etc/ssl``, on RHEL say) and ``SSL_CERT_FILE`` is unset, the first CA
    bundle of ``CA_BUNDLES`` that exists is trusted as well.
    """
    lib.SSL_CTX_set_default_verify_file(cdata)
    lib.SSL_CTX_set_default_verify_dir(cdata)
    bundle = fallback_bundle(default_cert_file(), os.environ, CA_BUNDLES)
    if bundle is not None and lib.SSL_CTX_load_verify_locations(cdata, os.fsencode(bundle), ffi.NULL) <= 0:
        drain()  # unreadable: as with a missing default file, the trust store stays as it was


# CA bundles of common systems, for an OpenSSL built elsewhere (a wheel's) whose
# compiled-in default file does not exist on this machine.
CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora, CentOS
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/pki/tls/cacert.pem",  # OpenELEC
    "/etc/ssl/cert.pem",  # macOS, BSDs
)


def default_cert_file() -> str:
    """The CA file OpenSSL trusts by default (where it was built to look)."""
    return text(lib.X509_get_default_cert_file())


def fallback_bundle(default_file: str, environ: Mapping[str, str],
                    candidates: Sequence[str]) -> Optional[str]:
    """The system CA bundle to add when OpenSSL's default file is missing and
    ``SSL_CERT_FILE`` does not name one; ``None`` when nothing is to be added."""
    if "SSL_CERT_FILE" in environ or os.path.isfile(default_file):
        return None
    return next((path for path in candidates if os.path.isfile(path)), None)


def wants_new_ctx(ssl_ctx: object) -> bool:
    """True for the ``ssl_ctx`` values that ask for a new context."""
    return ssl_ctx is True or (isinstance(ssl_ctx, str) and ssl_ctx in _NEW_CTX)


def make_ssl_ctx(ssl_ctx: Union[NewContext, SSLCtxPointer] = True, ssl_side: str = "server") -> SSLCtxPointer:
    """A new ``SSL_CTX`` for ``ssl_side`` (``"server"``, ``"client"``, ``"both"``).

    ``ssl_ctx``: ``True``, ``"default"`` or ``"v23"`` make a new context (free it
    with ``destroy_ssl_ctx``); an ``SSLCtxPointer`` is returned as it is.
    """
    side = side_arg(ssl_side, SIDES)
    if isinstance(ssl_ctx, SSLCtxPointer):
        return ssl_ctx
    if isinstance(ssl_ctx, SSLPointer):
        raise TypeError("ssl_ctx must not be an SSLPointer: make_ssl_ctx makes contexts, not connections")
    if not wants_new_ctx(ssl_ctx):
        # an unknown keyword is a bad value; anything else (None, False, bytes...) a bad type
        exc = ValueError if isinstance(ssl_ctx, str) else TypeError
        raise exc(f"ssl_ctx must be True, 'default', 'v23' or an SSLCtxPointer, not {ssl_ctx!r}")
    cdata = lib.SSL_CTX_new(_METHODS[side]())
    if cdata == ffi.NULL:
        raise MemoryError("SSL_CTX_new failed: " + repr(drain()))
    ctx = SSLCtxPointer._adopt(cdata)
    lib.SSL_CTX_set_min_proto_version(cdata, lib.TLS1_2_VERSION)
    lib.SSL_CTX_set_options(cdata, lib.SSL_OP_NO_RENEGOTIATION | lib.SSL_OP_NO_COMPRESSION)
    # no terminal prompt for encrypted keys (it would block): set_ssl_ctx_password_callback supplies one
    lib.SSL_CTX_set_default_passwd_cb(cdata, lib.commssl_no_password)
    if side == "client":
        set_verification_mode(ctx, "client", "always")
        default_trust(cdata)
    else:
        set_verification_mode(ctx, "server", "never")
    return ctx


# OpenSSL's static method tables: the same pointers for the life of the process
_SERVER_METHOD, _CLIENT_METHOD = lib.TLS_server_method(), lib.TLS_client_method()


def check_method_side(ssl: Any, ssl_side: str, what: str = "ssl_ctx", *, ctx: bool = False) -> None:
    """Refuse an ``SSL`` (or with ``ctx``, an ``SSL_CTX``) whose method is for the
    other side than ``ssl_side``: a context made with ``make_ssl_ctx(..., "server")``
    (``TLS_server_method``) cannot connect, nor a client one accept, and OpenSSL
    would only say so mid-handshake as "called a function you should not call".
    ``"both"`` contexts serve either."""
    method = lib.SSL_CTX_get_ssl_method(ssl) if ctx else lib.SSL_get_ssl_method(ssl)
    if method == _SERVER_METHOD:
        made = "server"
    elif method == _CLIENT_METHOD:
        made = "client"
    else:
        return
    if ssl_side in ("server", "client") and ssl_side != made:
        raise ValueError(f"{what} is a {made} context (make_ssl_ctx(..., {made!r})), used on the {ssl_side} "
                         f"side: make it with ssl_side {ssl_side!r} or 'both'")


def destroy_ssl_ctx(ctx: SSLCtxPointer) -> None:
    """Free a context made by ``make_ssl_ctx``: at once, or when the operations
    on it that other threads are running end. Connections still using it keep
    it alive in OpenSSL until they are closed. Later uses raise ``ValueError``."""
    if not isinstance(ctx, SSLCtxPointer):
        raise TypeError(f"ctx must be an SSLCtxPointer, not {type(ctx).__name__}")
    ctx._kill()


def ssl_ctx_use_certificate_chain_file(ctx: ContextArg, path: PathArg) -> None:
    """Load the certificate, then its chain, from a PEM file."""
    pointer = _ctx(ctx)
    raw = path_arg(path, "path")
    ok = call_pinned(pointer, lib.SSL_CTX_use_certificate_chain_file, raw)
    check(ok, f"ssl_ctx_use_certificate_chain_file({os.fspath(path)!r})", (path,))


def ssl_ctx_use_privatekey_file(ctx: ContextArg, path: PathArg) -> None:
    """Load the private key (PEM); an encrypted one asks the password callback."""
    pointer = _ctx(ctx)
    raw = path_arg(path, "path")
    ok = _load_key(pointer, lambda cdata: lib.SSL_CTX_use_PrivateKey_file(cdata, raw, lib.SSL_FILETYPE_PEM))
    check(ok, f"ssl_ctx_use_privatekey_file({os.fspath(path)!r})", (path,))


def ssl_ctx_load_verify_locations(
    ctx: ContextArg, cafile: Optional[PathArg] = None, capath: Optional[PathArg] = None,
    *, cadata: Optional[bytes] = None,
) -> None:
    """Trust the certificates in ``cafile`` and/or the hashed directory ``capath``,
    and/or in ``cadata``: bytes of PEM certificates (one or more) or of one DER
    certificate (bad bytes: ``SSLFailure`` with OpenSSL's reason)."""
    if cadata is not None:
        load_cadata(ctx, cadata)
        if cafile is None and capath is None:
            return
    if cafile is None and capath is None:
        raise ValueError("ssl_ctx_load_verify_locations needs cafile or capath (or cadata=)")
    pointer = _ctx(ctx)
    cf = ffi.NULL if cafile is None else path_arg(cafile, "cafile")
    cp = ffi.NULL if capath is None else path_arg(capath, "capath")
    if capath is not None and not os.path.exists(cp):
        # OpenSSL takes a missing directory silently (and then trusts nothing from it)
        raise missing_file(f"ssl_ctx_load_verify_locations(capath={capath!r})", capath)
    ok = call_pinned(pointer, lib.SSL_CTX_load_verify_locations, cf, cp)
    check(ok, f"ssl_ctx_load_verify_locations(cafile={cafile!r}, capath={capath!r})", (cafile,))


def set_ssl_ctx_password_callback(
    ctx: SSLCtxPointer,
    callback: Optional[PasswordCallback] = None,
    password: Union[None, str, bytes] = None,
) -> None:
    """Supply the pass phrase of encrypted keys: ``callback(max_length, rwflag)``
    returning str or bytes, or a fixed ``password``. Give exactly one."""
    pointer = _ctx(ctx)
    if (callback is None) == (password is None):
        raise ValueError("set_ssl_ctx_password_callback needs exactly one of callback or password")
    if password is not None:
        if not isinstance(password, (str, bytes)):
            raise TypeError(f"password must be str or bytes, not {type(password).__name__}")
        fixed = password
        callback = lambda max_length, rwflag: fixed  # noqa: E731
    elif not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    cdata = pointer._pin()
    try:
        pointer.password = callback
        # userdata: the context's record, which lives as long as the SSL_CTX (and so
        # as the SSLs that copied it); the callback finds the wrapper through it
        lib.SSL_CTX_set_default_passwd_cb_userdata(cdata, pointer._record)
        lib.SSL_CTX_set_default_passwd_cb(cdata, lib._commssl_password_py)
    finally:
        pointer._unpin()


@ffi.def_extern(error=-1)
def _commssl_password_py(buf: Any, size: int, rwflag: int, userdata: Any) -> int:
    py = ffi.cast("commssl_ctx_state *", userdata).py  # read under the GIL, as it is cleared
    pointer: Optional[SSLCtxPointer] = ffi.from_handle(py)() if py != ffi.NULL else None
    if pointer is None or pointer._password_error is not None:  # no wrapper; or the callback raised:
        return -1  # OpenSSL's next decoder asks again, but the load is over (callbacks.py's rule)
    try:
        return copy_pass_phrase(pointer.password(size, bool(rwflag)), buf, size,  # type: ignore[misc]
                                "password")
    except BaseException as exc:
        pointer._password_error = exc
        return -1
