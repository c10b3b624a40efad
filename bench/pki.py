"""The benchmark's certificates: root -> intermediate -> leaf chains made with the
``openssl`` CLI, one per key type (ECDSA P-256 and RSA-2048).

Each chain has a server leaf for ``localhost`` and a client leaf, both issued by
the intermediate; the chain files hold leaf then intermediate, so a peer sends
two certificates and the other side trusts the root only. ``leaf_only`` makes a
variant whose server sends its leaf alone, the client trusting root and
intermediate.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
KEY_TYPES = ("ecdsa", "rsa")

_CNF = """\
[req]
distinguished_name = dn
[dn]
[ca_root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ca_intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectAltName = email:client@example.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_KEYGEN = {
    "ecdsa": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
}


@dataclass(frozen=True)
class Chain:
    """The files of one key type's PKI (PEM)."""

    key_type: str
    directory: Path
    root: Path
    server_chain: Path
    server_key: Path
    client_chain: Path
    client_key: Path


def _openssl(args: List[str], cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _issue(d: Path, name: str, subject: str, ext: str, key_type: str, issuer: str) -> None:
    _openssl(["genpkey", *_KEYGEN[key_type], "-out", f"{name}.key"], d)
    _openssl(["req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr",
              "-config", "openssl.cnf"], d)
    if issuer == name:
        sign = ["-signkey", f"{name}.key"]
    else:
        sign = ["-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key", "-CAcreateserial"]
    _openssl(["x509", "-req", "-in", f"{name}.csr", *sign, "-days", "30", "-sha256",
              "-extfile", "openssl.cnf", "-extensions", ext, "-out", f"{name}.pem"], d)


def make_chain(directory: Path, key_type: str) -> Chain:
    """Generate one key type's root, intermediate, server and client into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "openssl.cnf").write_text(_CNF)
    _issue(d, "root", f"/CN=bench {key_type} root", "ca_root", key_type, "root")
    _issue(d, "intermediate", f"/CN=bench {key_type} intermediate", "ca_intermediate", key_type, "root")
    _issue(d, "server", "/CN=localhost", "leaf_server", key_type, "intermediate")
    _issue(d, "client", "/CN=bench client", "leaf_client", key_type, "intermediate")
    inter = (d / "intermediate.pem").read_bytes()
    for leaf in ("server", "client"):
        (d / f"{leaf}-chain.pem").write_bytes((d / f"{leaf}.pem").read_bytes() + inter)
    return load_chain(d, key_type)


def load_chain(directory: Path, key_type: str) -> Chain:
    """The ``Chain`` whose files ``make_chain`` or ``leaf_only`` wrote into ``directory``."""
    d = Path(directory)
    return Chain(key_type, d, d / "root.pem", d / "server-chain.pem", d / "server.key",
                 d / "client-chain.pem", d / "client.key")


def make_chains(directory: Path) -> Dict[str, Chain]:
    """Both key types' chains, in subdirectories of ``directory``."""
    return {kt: make_chain(Path(directory) / kt, kt) for kt in KEY_TYPES}


def leaf_only(chain: Chain) -> Chain:
    """``chain`` with a server that sends only its leaf: a sibling directory
    ``<key>-leaf`` with the same file names (what bench/floor.c reads), where
    ``server-chain.pem`` is the leaf alone and ``root.pem`` holds root and
    intermediate, so that the client still verifies the leaf."""
    src = Path(chain.directory)
    d = src.parent / f"{src.name}-leaf"
    d.mkdir(parents=True, exist_ok=True)
    (d / "root.pem").write_bytes(chain.root.read_bytes() + (src / "intermediate.pem").read_bytes())
    (d / "server-chain.pem").write_bytes((src / "server.pem").read_bytes())
    for name in ("server.key", "client-chain.pem", "client.key"):
        shutil.copyfile(src / name, d / name)
    return load_chain(d, chain.key_type)
