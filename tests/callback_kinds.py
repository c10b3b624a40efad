"""The table behind tests/core/test_callback_rule.py: every Python callback kind commssl
has, how it is installed, and every runtime that can drive what calls it.

The rule (``commssl._core.callbacks``): an exception raised in any callback aborts what
OpenSSL was doing and comes out of the call that drove it, blocking or async, from any
thread. A new callback kind is one ``Kind`` row; a new runtime one entry of ``CLIENT`` /
``SERVER`` / ``LOAD``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import commssl
from peers import PKI

Hook = Callable[[], Any]  # raises the test's exception; every callback calls it
Caught = Optional[BaseException]


@dataclass
class Setup:
    """What a kind installs: the ``ssl_ctx`` to use, keyword arguments for the call that
    makes the connection (configure callbacks), and contexts to destroy afterwards."""

    ctx: Any
    kw: Dict[str, Any]
    made: List[Any]
    attaches: bool = True  # from Kind.attaches


@dataclass(frozen=True)
class Kind:
    """One callback kind: ``side`` is the side commssl plays where it runs (``"load"``: a
    pass phrase, run by a load call, not a handshake); ``install(pki, hook)`` sets it up;
    ``once``: False where OpenSSL cannot stop at the callback (see the row)."""

    name: str
    side: str
    install: Callable[[PKI, Hook], Setup]
    once: bool = True  # what OpenSSL was doing stops at the first raise: no second call
    # False: it runs before any SSL is attached, so the attach is refused as for a bad
    # argument (attach_ssl_async's "unread" refusal): the stream stays plain, nothing sent
    attaches: bool = True
    peer_sees: str = ""  # a regex the peer's output must match (the alert it was sent)


def _server(pki: PKI) -> Any:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, pki.server_chain)
    commssl.ssl_ctx_use_privatekey_file(ctx, pki.server_key)
    commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
    return ctx


def _client(pki: PKI) -> Any:
    ctx = commssl.make_ssl_ctx(True, "client")
    commssl.ssl_ctx_load_verify_locations(ctx, pki.root_cert)
    return ctx


Install = Callable[[PKI, Hook], Setup]


def _on_ctx(make: Callable[[PKI], Any], configure: Callable[[Any, Hook], Any]) -> Install:
    def install(pki: PKI, hook: Hook) -> Setup:
        ctx = make(pki)
        configure(ctx, hook)
        return Setup(ctx, {}, [ctx])
    return install


def _on_ssl(make: Callable[[PKI], Any], configure: Callable[[Any, Hook], Any]) -> Install:
    """Installed per connection, on the SSL (``ssl_configure_callback``)."""
    def install(pki: PKI, hook: Hook) -> Setup:
        ctx = make(pki)
        return Setup(ctx, {"ssl_configure_callback": lambda sslp: configure(sslp, hook)}, [ctx])
    return install


def _kw(side: str, **kw: Callable[[Hook], Any]) -> Callable[[PKI, Hook], Setup]:
    """A configure callback argument of the call that makes the connection."""
    def install(pki: PKI, hook: Hook) -> Setup:
        if "ctx_configure_callback" in kw:  # called only with a context made for the connection
            return Setup(True, {k: make(hook) for k, make in kw.items()}, [])
        ctx = _server(pki) if side == "server" else _client(pki)
        return Setup(ctx, {k: make(hook) for k, make in kw.items()}, [ctx])
    return install


def _abstract(side: str, **kw: Any) -> Callable[[PKI, Hook], Setup]:
    def install(pki: PKI, hook: Hook) -> Setup:
        args = {k: (v(hook) if callable(v) else v) for k, v in kw.items()}
        if side == "server":
            ctx = commssl.create_ssl_server_context(cert_file=str(pki.server_chain),
                                                    key_file=str(pki.server_key), **args)
        else:
            ctx = commssl.create_ssl_client_context(openssl_trusted_file=str(pki.root_cert), **args)
        return Setup(ctx, {}, [ctx.ssl_ctx_pointer])
    return install


def _verify(mode: Any) -> Callable[[Any, Hook], Any]:
    side = "client" if mode == "always" else "server"
    return lambda c, hook: commssl.set_verification_mode(c, side, mode, lambda ok, store: hook())


def _cert_request(pki: PKI, hook: Hook) -> Setup:
    ctx = commssl.create_ssl_client_context(cert_file=str(pki.client_chain), key_file=str(pki.client_key),
                                            openssl_trusted_file=str(pki.root_cert),
                                            cert_request_callback=lambda conn: hook())
    return Setup(ctx, {}, [ctx.ssl_ctx_pointer])


def _read_certificates(pki: PKI, hook: Hook) -> Setup:
    """A client_hello_callback that reads an encrypted key: the pass phrase callback's
    exception comes out of ``ssl_connection_read_certificates``, then out of the handshake."""
    def hello(conn: Any, name: Any) -> bool:
        commssl.ssl_connection_read_certificates(conn, str(pki.encrypted_key),
                                                 cert_file=str(pki.server_chain),
                                                 password_callback=lambda size, rwflag: hook())
        return True
    return _abstract("server", client_hello_callback=lambda _: hello)(pki, hook)


def _rebuilt(pki: PKI, hook: Hook) -> Setup:
    """An abstract context reset after its first use: the connection that next uses it
    re-reads the encrypted key, with the password callback that now raises."""
    armed: List[bool] = []

    def password(size: int, rwflag: bool) -> str:
        if armed:
            hook()
        return PKI.encrypted_key_password

    ctx = commssl.create_ssl_server_context(cert_file=str(pki.server_chain), key_file=str(pki.encrypted_key),
                                            password_callback=password)
    made = [ctx.ssl_ctx_pointer]
    commssl.reset_ssl_abstract_context(ctx)
    armed.append(True)
    return Setup(ctx, {}, made)


# Not rows: the verify callback of an SSL made outside commssl (lib.SSL_new: no commssl call
# drives it, its exception is reported by cffi; test_verification_callbacks_abuse.py); the
# client's OCSP check (C, no Python callback); pass phrases of DH parameters and
# certificates (never encrypted: never asked); SNI, PSK and session callbacks (commssl
# installs no Python one).
V_SERVER = ["verify-peer", "fail-if-no-peer-cert"]
HANDSHAKE_KINDS = [
    Kind("verify-ctx", "client", _on_ctx(_client, _verify("always"))),
    Kind("verify-ssl", "client", _on_ssl(_client, _verify("always"))),
    Kind("verify-ctx", "server", _on_ctx(_server, _verify(V_SERVER))),
    Kind("verify-ssl", "server", _on_ssl(_server, _verify(V_SERVER))),
    Kind("verify_callback", "client", _abstract("client", verify_callback=lambda hook: lambda conn: hook())),
    Kind("verify_callback", "server", _abstract("server", verify_callback=lambda hook: lambda conn: hook())),
    Kind("alpn-select", "server", _on_ctx(_server, lambda c, hook: commssl.set_alpn_select_callback(
        c, lambda conn, offered: hook())), peer_sees="alert no application protocol"),
    # OpenSSL's key log callback returns nothing: the handshake fails at its end, its
    # other secrets logged on the way (set_keylog's documented "at its end at the latest")
    Kind("keylog", "client", _on_ctx(_client, lambda c, hook: commssl.set_keylog(c, lambda line: hook())),
         once=False),
    Kind("keylog", "server", _on_ctx(_server, lambda c, hook: commssl.set_keylog(c, lambda line: hook())),
         once=False),
    Kind("ocsp-staple", "server", _on_ctx(_server, lambda c, hook: commssl.set_ocsp_staple(
        c, lambda conn: hook()))),
    Kind("cert_cb", "client", _on_ctx(_client, lambda c, hook: commssl.set_ssl_ctx_cert_cb(
        c, lambda ssl: hook()))),
    Kind("cert_cb", "server", _on_ctx(_server, lambda c, hook: commssl.set_ssl_ctx_cert_cb(
        c, lambda ssl: hook()))),
    Kind("client_hello", "server", _abstract("server",
                                             client_hello_callback=lambda hook: lambda c, n: hook())),
    Kind("cert_request", "client", _cert_request),
    Kind("ssl_configure", "client", _kw("client", ssl_configure_callback=lambda hook: lambda sslp: hook()),
         attaches=False),
    Kind("ssl_configure", "server", _kw("server", ssl_configure_callback=lambda hook: lambda sslp: hook()),
         attaches=False),
    Kind("ctx_configure", "client", _kw("client", ctx_configure_callback=lambda hook: lambda ctx: hook()),
         attaches=False),
    Kind("ctx_configure", "server", _kw("server", ctx_configure_callback=lambda hook: lambda ctx: hook()),
         attaches=False),
    Kind("read_certificates-pass-phrase", "server", _read_certificates),
    Kind("abstract-rebuild-password", "server", _rebuilt,
         attaches=False),
]


# -- pass phrases: run by a load call (Setup.kw["call"]), not a handshake ------------------


def _load(call: Callable[[PKI, Callable[[int, bool], Any]], Any]) -> Callable[[PKI, Hook], Setup]:
    def install(pki: PKI, hook: Hook) -> Setup:
        return Setup(None, {"call": lambda: call(pki, lambda size, rwflag: hook())}, [])
    return install


def _ctx_password(use: Callable[[Any, PKI], Any]) -> Callable[[PKI, Callable[[int, bool], Any]], Any]:
    def call(pki: PKI, password: Callable[[int, bool], Any]) -> Any:
        ctx = commssl.make_ssl_ctx(True, "server")
        try:
            commssl.set_ssl_ctx_password_callback(ctx, password)
            return use(ctx, pki)
        finally:
            commssl.destroy_ssl_ctx(ctx)
    return call


def _pairs(pki: PKI, password: Callable[[int, bool], Any]) -> Any:
    """Certificates are read before the key whose pass phrase fails: all given back."""
    path = pki.encrypted_key.with_name("pairs.pem")
    if not path.exists():
        path.write_bytes(pki.server_chain.read_bytes() + pki.encrypted_key.read_bytes())
    return commssl.read_certificate_key_pairs(path, callback=password)


LOAD_KINDS = [
    Kind("password-ctx-file", "load", _load(_ctx_password(
        lambda ctx, pki: commssl.ssl_ctx_use_privatekey_file(ctx, pki.encrypted_key)))),
    Kind("password-ctx-bytes", "load", _load(_ctx_password(
        lambda ctx, pki: commssl.ssl_ctx_use_privatekey(ctx, pki.encrypted_key.read_bytes())))),
    Kind("pem_read-callback", "load", _load(
        lambda pki, password: commssl.pem_read("PrivateKey", pki.encrypted_key, callback=password))),
    Kind("read_certificate_key_pairs-callback", "load", _load(_pairs)),
    Kind("abstract-password", "load", _load(lambda pki, password: commssl.create_ssl_server_context(
        cert_file=str(pki.server_chain), key_file=str(pki.encrypted_key), password_callback=password))),
    Kind("abstract-ctx_configure", "load", lambda pki, hook: Setup(None, {"call": lambda: (
        commssl.create_ssl_client_context(openssl_ctx_configure_callback=lambda ctx: hook()))}, [])),
]
