"""pyOpenSSL as a contender: two ``Connection``s over memory BIOs.

pyOpenSSL's wheel runs on the OpenSSL that cryptography's wheel bundles, not the
system's. The same code therefore also runs as a worker process
(``python -m bench.lib_pyopenssl CHAINS_DIR`` with Debian's pyOpenSSL and
cryptography, built on the system OpenSSL, first on ``sys.path``) so that one
pyOpenSSL column compares like with like. The worker reads one JSON command a
line and answers one JSON line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from .pki import Chain

VERSION = SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode()


def _version() -> str:
    # The imported package's own version: package metadata may describe another copy.
    import OpenSSL

    return str(OpenSSL.__version__)


def describe() -> Dict[str, str]:
    import cryptography

    return {"pyopenssl": _version(), "cryptography": cryptography.__version__, "openssl": VERSION}


def _accept(conn: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
    return bool(ok)


def _default_trust() -> Tuple[Optional[bytes], Optional[bytes]]:
    import ssl

    paths = ssl.get_default_verify_paths()
    return (paths.cafile.encode() if paths.cafile else None, paths.capath.encode() if paths.capath else None)


def _context(method: int) -> SSL.Context:
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
    return ctx


def contexts(chain: Chain, mutual: bool, callback: bool,
             groups: Optional[List[str]] = None) -> Tuple[SSL.Context, SSL.Context]:
    """Configured as commssl's (see ``lib_cpython.contexts``); ``groups``: the key exchange
    groups both offer (pyOpenSSL has no call for it: its binding's)."""
    cb = _accept if callback else None
    client = _context(SSL.TLS_CLIENT_METHOD)
    cafile, capath = _default_trust()
    client.load_verify_locations(cafile, capath)
    client.load_verify_locations(str(chain.root).encode())
    client.set_verify(SSL.VERIFY_PEER, cb)
    server = _context(SSL.TLS_SERVER_METHOD)
    server.use_certificate_chain_file(str(chain.server_chain).encode())
    server.use_privatekey_file(str(chain.server_key).encode())
    if mutual:
        client.use_certificate_chain_file(str(chain.client_chain).encode())
        client.use_privatekey_file(str(chain.client_key).encode())
        server.load_verify_locations(str(chain.root).encode())
        server.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, cb)
    for ctx in (client, server) if groups else ():
        if _lib.SSL_CTX_set1_curves_list(ctx._context, ":".join(groups).encode()) != 1:
            raise ValueError(f"this OpenSSL does not know the groups {groups}")
    return client, server


def _pump(src: SSL.Connection, dst: SSL.Connection) -> None:
    while True:
        try:
            data = src.bio_read(65536)
        except SSL.WantReadError:
            return
        dst.bio_write(data)


class Handshakes:
    """Full in-memory handshakes between two pyOpenSSL ``Connection``s."""

    def __init__(self, chain: Chain, mutual: bool = False, callback: bool = False,
                 groups: Optional[List[str]] = None) -> None:
        self.client_ctx, self.server_ctx = contexts(chain, mutual, callback, groups)

    def connect(self) -> Tuple[SSL.Connection, SSL.Connection]:
        client = SSL.Connection(self.client_ctx, None)
        client.set_connect_state()
        client.set_tlsext_host_name(b"localhost")
        # pyOpenSSL has no host-name check of its own: the same OpenSSL call commssl makes.
        _lib.X509_VERIFY_PARAM_set1_host(_lib.SSL_get0_param(client._ssl), b"localhost", 9)
        server = SSL.Connection(self.server_ctx, None)
        server.set_accept_state()
        c_done = s_done = False
        while not (c_done and s_done):
            if not c_done:
                try:
                    client.do_handshake()
                    c_done = True
                except SSL.WantReadError:
                    pass
                _pump(client, server)
            if not s_done:
                try:
                    server.do_handshake()
                    s_done = True
                except SSL.WantReadError:
                    pass
                _pump(server, client)
        return client, server

    def once(self) -> None:
        self.connect()

    def close(self) -> None:
        pass


def group(chain: Chain, groups: Optional[List[str]] = None) -> Optional[str]:
    """The key exchange group a server-auth handshake negotiates."""
    client = Handshakes(chain, groups=groups).connect()[0]
    if hasattr(client, "get_group_name"):  # pyOpenSSL >= 24.3
        name = client.get_group_name()
        return None if name is None else str(name)
    if getattr(_lib, "Cryptography_HAS_SSL_GET0_GROUP_NAME", False):  # the binding has it
        p = _lib.SSL_get0_group_name(client._ssl)
        return None if p == _ffi.NULL else _ffi.string(p).decode("ascii")
    # Neither: read the server's first record, its ServerHello.
    from .hello import server_hello_group

    hs = Handshakes(chain, groups=groups)
    client, server = SSL.Connection(hs.client_ctx, None), SSL.Connection(hs.server_ctx, None)
    client.set_connect_state()
    client.set_tlsext_host_name(b"localhost")
    server.set_accept_state()
    for conn in (client, server):
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            pass
        if conn is client:
            server.bio_write(client.bio_read(65536))
    flight = server.bio_read(65536)
    return server_hello_group(flight[5 : 5 + int.from_bytes(flight[3:5], "big")])


def cert_data(x: crypto.X509) -> List[Tuple[str, Any]]:
    """What ``commssl.get_certificate_data`` gives, the way a pyOpenSSL user gets it."""
    sans: List[str] = []
    if hasattr(x, "get_extension"):  # pyOpenSSL >= 24.3 dropped X509 extensions
        for i in range(x.get_extension_count()):
            ext = x.get_extension(i)
            if ext.get_short_name() == b"subjectAltName":
                sans.append(str(ext))
    return [
        ("subject-common-name", x.get_subject().CN),
        ("serial-number", x.get_serial_number()),
        ("subject", x.get_subject().get_components()),
        ("issuer", x.get_issuer().get_components()),
        ("issuer-common-name", x.get_issuer().CN),
        ("not-before", x.get_notBefore()),
        ("not-after", x.get_notAfter()),
        ("subject-alt-names", sans),
        ("sha256-fingerprint", x.digest("sha256")),
    ]


class PeerCalls:
    """Per-call costs on the client side of one connected pair."""

    def __init__(self, chain: Chain) -> None:
        self.client, self.server = Handshakes(chain).connect()
        leaf = self.client.get_peer_certificate()
        assert leaf is not None
        self.leaf = leaf

    def chain(self) -> Any:
        return self.client.get_peer_cert_chain()

    def serial(self) -> int:
        return self.leaf.get_serial_number()

    def data(self) -> Any:
        return cert_data(self.leaf)

    def close(self) -> None:
        pass


def main() -> None:
    from .workers import Commands, chains_in, serve

    serve(Commands(sys.modules[__name__], chains_in(Path(sys.argv[1]))).run, describe())


if __name__ == "__main__":
    main()
