"""commssl as a contender: contexts from ``make_ssl_ctx``, SSLs from the library's
own ``new_ssl`` (what streams use), joined by a BIO pair and driven with
``lib.commssl_do`` -- the calls an in-memory user of commssl makes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import commssl
from commssl import ffi, lib
from commssl.io.connection import new_ssl
from commssl.io.handshake import check_after_handshake, raise_failure

from .pki import Chain

_HANDSHAKE = lib.COMMSSL_OP_HANDSHAKE
_WANT_READ = lib.SSL_ERROR_WANT_READ


def accept(ok: bool, store: Any) -> bool:
    """The verify callback of the callback rows: OpenSSL's verdict, unchanged."""
    return ok


def contexts(chain: Chain, mutual: bool, callback: Optional[Callable[..., Any]],
             groups: Optional[List[str]] = None) -> Tuple[Any, Any]:
    """A client and a server context for ``chain``, as the benchmark configures every contender;
    ``groups``: the key exchange groups both offer (else OpenSSL's default)."""
    client = commssl.make_ssl_ctx(True, "client")
    commssl.ssl_ctx_load_verify_locations(client, chain.root)
    if callback is not None:
        commssl.set_verification_mode(client, "client", "always", callback)
    server = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(server, chain.server_chain)
    commssl.ssl_ctx_use_privatekey_file(server, chain.server_key)
    if mutual:
        commssl.ssl_ctx_use_certificate_chain_file(client, chain.client_chain)
        commssl.ssl_ctx_use_privatekey_file(client, chain.client_key)
        commssl.ssl_ctx_load_verify_locations(server, chain.root)
        commssl.set_verification_mode(server, "server", ["verify-peer", "fail-if-no-peer-cert"], callback)
    for ctx in (client, server) if groups else ():
        commssl.set_groups(ctx, groups)
    return client, server


class Handshakes:
    """Full in-memory handshakes between two commssl SSLs."""

    def __init__(self, chain: Chain, mutual: bool = False, callback: bool = False,
                 groups: Optional[List[str]] = None) -> None:
        self.client_ctx, self.server_ctx = contexts(chain, mutual, accept if callback else None, groups)

    def connect(self) -> Tuple[commssl.SSLPointer, commssl.SSLPointer]:
        """One handshake; returns the connected client and server ``SSLPointer``."""
        client = new_ssl(self.client_ctx, "client", host="localhost")[0]
        server = new_ssl(self.server_ctx, "server")[0]
        bios = ffi.new("BIO *[2]")  # per call: the thread rows run this on two threads at once
        if not lib.BIO_new_bio_pair(bios, 0, bios + 1, 0):
            raise MemoryError("BIO_new_bio_pair failed")
        c, s = client.cdata, server.cdata
        lib.SSL_set_bio(c, bios[0], bios[0])
        lib.SSL_set_bio(s, bios[1], bios[1])
        do = lib.commssl_do
        c_done = s_done = False
        while not (c_done and s_done):
            if not c_done:
                e = do(c, _HANDSHAKE, ffi.NULL, 0, ffi.NULL)
                if e == 0:
                    c_done = True
                elif e != _WANT_READ:
                    raise_failure(client, e, "client handshake")
            if not s_done:
                e = do(s, _HANDSHAKE, ffi.NULL, 0, ffi.NULL)
                if e == 0:
                    s_done = True
                elif e != _WANT_READ:
                    raise_failure(server, e, "server handshake")
        check_after_handshake(client)
        check_after_handshake(server)
        return client, server

    def once(self) -> None:
        client, server = self.connect()
        client._kill()
        server._kill()

    def close(self) -> None:
        commssl.destroy_ssl_ctx(self.client_ctx)
        commssl.destroy_ssl_ctx(self.server_ctx)


def group(chain: Chain, groups: Optional[List[str]] = None) -> Optional[str]:
    """The key exchange group a server-auth handshake negotiates."""
    return commssl.ssl_connection_group(Handshakes(chain, groups=groups).connect()[0])


def describe() -> Dict[str, str]:
    """Which commssl this process runs, and on which OpenSSL (the wheel worker's answer)."""
    return {"commssl": commssl.__version__, "openssl": str(commssl.openssl_version()["loaded"]),
            "commssl_file": str(commssl.__file__)}


class PeerCalls:
    """Per-call costs on the client side of one connected pair (the server sent two certificates)."""

    def __init__(self, chain: Chain) -> None:
        self._hs = Handshakes(chain)
        self.client, self.server = self._hs.connect()
        self.leaf = commssl.ssl_connection_copy_peer_certificates(self.client)[0]

    def copy_release(self) -> None:
        certs = commssl.ssl_connection_copy_peer_certificates(self.client)
        commssl.release_certificates_vector(certs)

    def chain_length(self) -> int:
        certs: List[Any] = commssl.ssl_connection_copy_peer_certificates(self.client)
        commssl.release_certificates_vector(certs)
        return len(certs)

    def serial(self) -> int:
        return commssl.get_certificate_serial_number(self.leaf)

    def data(self) -> Any:
        return commssl.get_certificate_data(self.leaf)

    def close(self) -> None:
        commssl.release_certificate(self.leaf)
        self.client._kill()
        self.server._kill()
        self._hs.close()


def count_callback_calls(chain: Chain, mutual: bool) -> int:
    """How often one handshake calls the verify callback (both sides together)."""
    calls = [0]

    def counting(ok: bool, store: Any) -> bool:
        calls[0] += 1
        return ok

    client, server = contexts(chain, mutual, counting)
    hs = Handshakes.__new__(Handshakes)
    hs.client_ctx, hs.server_ctx = client, server
    try:
        hs.once()
    finally:
        hs.close()
    return calls[0]


def main() -> None:
    """The wheel worker (bench/workers.py): commssl from wherever ``sys.path`` finds it first."""
    from .workers import Commands, chains_in, serve

    serve(Commands(sys.modules[__name__], chains_in(Path(sys.argv[1]))).run, describe())


if __name__ == "__main__":
    main()
