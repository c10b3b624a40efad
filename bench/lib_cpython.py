"""CPython's ``ssl`` as a contender: ``SSLObject`` over ``MemoryBIO`` pairs."""

from __future__ import annotations

import ssl
from typing import Any, List, Optional, Tuple

from .pki import Chain


def default_trust() -> Tuple[str, str]:
    """The system's default CA file and directory, as OpenSSL resolves them."""
    paths = ssl.get_default_verify_paths()
    return paths.cafile or "", paths.capath or ""


def contexts(chain: Chain, mutual: bool) -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """Configured as commssl's: TLS >= 1.2; the client trusts the default file and
    directory plus the chain's root, and checks the name."""
    cafile, capath = default_trust()
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    client.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    client.load_verify_locations(cafile=cafile or None, capath=capath or None)
    client.load_verify_locations(cafile=str(chain.root))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    server.load_cert_chain(str(chain.server_chain), str(chain.server_key))
    if mutual:
        client.load_cert_chain(str(chain.client_chain), str(chain.client_key))
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(cafile=str(chain.root))
    return client, server


class Handshakes:
    """Full in-memory handshakes between two ``SSLObject``s."""

    def __init__(self, chain: Chain, mutual: bool = False) -> None:
        self.client_ctx, self.server_ctx = contexts(chain, mutual)

    def connect(self) -> Tuple[ssl.SSLObject, ssl.SSLObject]:
        c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        client = self.client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
        server = self.server_ctx.wrap_bio(s_in, s_out, server_side=True)
        c_done = s_done = False
        while not (c_done and s_done):
            if not c_done:
                try:
                    client.do_handshake()
                    c_done = True
                except ssl.SSLWantReadError:
                    pass
                s_in.write(c_out.read())
            if not s_done:
                try:
                    server.do_handshake()
                    s_done = True
                except ssl.SSLWantReadError:
                    pass
                c_in.write(s_out.read())
        return client, server

    def once(self) -> None:
        self.connect()

    def close(self) -> None:
        pass


def group(chain: Chain) -> Optional[str]:
    """The key exchange group a server-auth handshake negotiates, read from the
    ServerHello (``ssl`` has no accessor before 3.13)."""
    from .hello import server_hello_group

    hellos: List[bytes] = []

    def seen(conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes) -> None:
        if direction == "read" and msg_type == ssl._TLSMessageType.SERVER_HELLO:  # type: ignore[attr-defined]
            hellos.append(data)

    hs = Handshakes(chain)
    hs.client_ctx._msg_callback = seen  # type: ignore[attr-defined]
    hs.connect()
    return server_hello_group(hellos[0]) if hellos else None


class PeerCalls:
    """Per-call costs on the client side of one connected pair."""

    def __init__(self, chain: Chain) -> None:
        self.client, self.server = Handshakes(chain).connect()

    def peer_der(self) -> Any:
        return self.client.getpeercert(binary_form=True)

    def peer_dict(self) -> Any:
        return self.client.getpeercert()

    def serial(self) -> int:
        cert: Any = self.client.getpeercert()
        return int(cert["serialNumber"], 16)

    def close(self) -> None:
        pass
