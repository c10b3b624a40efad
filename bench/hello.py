"""The key exchange group of a TLS 1.3 handshake, read from its ServerHello: for a
contender whose library cannot say (CPython's ``ssl`` before 3.13)."""

from __future__ import annotations

from typing import Optional

# IANA TLS Supported Groups, named as OpenSSL's SSL_group_to_name names them
NAMES = {0x0017: "secp256r1", 0x0018: "secp384r1", 0x0019: "secp521r1", 0x001D: "x25519",
         0x001E: "x448", 0x0200: "MLKEM512", 0x0201: "MLKEM768", 0x0202: "MLKEM1024",
         0x11EB: "SecP256r1MLKEM768", 0x11EC: "X25519MLKEM768", 0x11ED: "SecP384r1MLKEM1024"}
_KEY_SHARE = 0x0033


def server_hello_group(msg: bytes) -> Optional[str]:
    """The group of a ServerHello handshake message (type, 3-byte length, body); None
    when it has no key_share (TLS 1.2 names its group in ServerKeyExchange)."""
    if len(msg) < 4 or msg[0] != 2:
        raise ValueError("not a ServerHello")
    i = 4 + 2 + 32  # legacy_version, random
    i += 1 + msg[i]  # legacy_session_id_echo
    i += 2 + 1  # cipher_suite, legacy_compression_method
    end = i + 2 + int.from_bytes(msg[i : i + 2], "big")
    i += 2
    while i + 4 <= end:
        ext, n = int.from_bytes(msg[i : i + 2], "big"), int.from_bytes(msg[i + 2 : i + 4], "big")
        if ext == _KEY_SHARE:
            group = int.from_bytes(msg[i + 4 : i + 6], "big")
            return NAMES.get(group, f"0x{group:04x}")
        i += 4 + n
    return None
