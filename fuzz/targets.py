"""Fuzz targets for what commssl parses of peer data.

``certificate``: DER or PEM bytes parsed by OpenSSL (``d2i_X509_bio``, then
``PEM_read_bio_X509``), wrapped as an owned ``X509Pointer`` and read with
``get_certificate_data``, ``get_certificate_common_name`` and
``get_certificate_serial_number``, which must agree with each other.

``tls_server``: the bytes are everything a client sends to a commssl server
(an ``SSL`` from ``new_ssl`` over memory BIOs, with the fuzz PKI's chain, asking
for a client certificate, with a Python verify callback that copies and reads
the peer's certificates). Only ``SSLCondition`` subclasses may come out, the
error queue must be empty afterwards, and ``outstanding_certificates()`` back
where it was.

Run with ``fuzz/run.sh TARGET SECONDS``. ``python fuzz/targets.py TARGET
[libFuzzer args] CORPUS...`` uses atheris when it is installed; with
``--plain`` (or without atheris) a seeded random-mutation loop over the same
``TestOneInput`` runs instead (no coverage feedback).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

atheris: Any = None
if "--plain" not in sys.argv:  # the plain harness below needs only the targets
    try:
        import atheris
    except ImportError:
        pass

if atheris is not None and __name__ == "__main__" and "--plain" not in sys.argv:
    with atheris.instrument_imports(include=["commssl"]):  # coverage feedback from commssl's Python
        import commssl
else:
    import commssl
from commssl._core.binding import drain, ffi, lib  # noqa: E402 (after the instrumented import)
from commssl._core.pointers import own_certificates  # noqa: E402
from commssl.io.connection import new_ssl  # noqa: E402
from commssl.io.tls import raise_failure  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import seeds  # noqa: E402

# -- certificate --------------------------------------------------------------------------


def _parse(data: bytes) -> Any:
    """An ``X509*`` (one new reference) from DER, else PEM, else NULL."""
    for reader in (lambda b: lib.d2i_X509_bio(b, ffi.NULL),
                   lambda b: lib.PEM_read_bio_X509(b, ffi.NULL, ffi.NULL, ffi.NULL)):
        bio = lib.BIO_new_mem_buf(data, len(data))
        try:
            x = reader(bio)
        finally:
            lib.BIO_free(bio)
        if x != ffi.NULL:
            drain()  # a failed DER attempt before a PEM success
            return x
    drain()
    return ffi.NULL


def certificate(data: bytes) -> None:
    start = commssl.outstanding_certificates()
    x = _parse(data)
    if x == ffi.NULL:
        return
    cert = own_certificates((x,))[0]
    try:
        try:
            fields = dict(commssl.get_certificate_data(cert))
        except commssl.SSLCondition:  # OpenSSL could not render a field: a clean failure
            fields = None
        cn = commssl.get_certificate_common_name(cert)
        serial = commssl.get_certificate_serial_number(cert)
        copy = commssl.copy_certificate(cert)
        try:
            assert commssl.get_certificate_serial_number(copy) == serial
        finally:
            commssl.release_certificate(copy)
        if fields is not None:
            assert fields["subject-common-name"] == cn, (fields["subject-common-name"], cn)
            assert fields["serial-number"] == serial, (fields["serial-number"], serial)
            assert isinstance(fields["subject"], str) and isinstance(fields["issuer"], str)
            assert all(isinstance(v, str) for _, v in fields["subject-alt-names"])
            assert isinstance(fields.get("emails", []), list)
    finally:
        commssl.release_certificate(cert)
    assert commssl.outstanding_certificates() == start
    assert drain() == []


# -- tls_server -----------------------------------------------------------------------------

_server_ctx: Optional[commssl.SSLCtxPointer] = None


def _verify(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
    """Read everything the peer sent, then accept it (to get further into the handshake)."""
    cert = commssl.x509_store_ctx_get_current_cert(store)
    if cert is not None:
        commssl.get_certificate_data(cert)
    commssl.x509_store_ctx_get_error(store)
    conn = commssl.x509_store_ctx_get_connection(store)
    commssl.ssl_connection_verify(conn)
    with commssl.peer_certificates(conn) as certs:
        for c in certs:
            assert c is not None
            commssl.get_certificate_data(c)
            commssl.get_certificate_serial_number(c)
    return True


def server_ctx() -> commssl.SSLCtxPointer:
    global _server_ctx
    if _server_ctx is None:
        pki = seeds.tls_pki(Path(os.environ.get("COMMSSL_FUZZ_PKI", "/tmp/commssl-fuzz/pki")))
        ctx = commssl.make_ssl_ctx(True, "server")
        commssl.ssl_ctx_use_certificate_chain_file(ctx, pki / "server_chain.pem")
        commssl.ssl_ctx_use_privatekey_file(ctx, pki / "server_key.pem")
        commssl.ssl_ctx_load_verify_locations(ctx, pki / "root.pem")
        commssl.set_verification_mode(ctx, "server", ["verify-peer"], _verify)
        _server_ctx = ctx
    return _server_ctx


def _pump(wbio: Any) -> None:
    """Discard what the server wrote."""
    buf = ffi.new("char[]", 16384)
    while lib.BIO_ctrl_pending(wbio):
        lib.BIO_read(wbio, buf, 16384)


def tls_server(data: bytes) -> None:
    start = commssl.outstanding_certificates()
    sslp, _, _ = new_ssl(server_ctx(), "server")
    try:
        rbio, wbio = lib.BIO_new(lib.BIO_s_mem()), lib.BIO_new(lib.BIO_s_mem())
        lib.BIO_set_mem_eof_return(rbio, 0)  # the end of the input is the peer closing
        lib.SSL_set_bio(sslp.cdata, rbio, wbio)  # the SSL owns both now
        if data:
            lib.BIO_write(rbio, data, len(data))
        done = ffi.new("size_t *")
        buf = ffi.new("char[]", 4096)
        try:
            err = lib.commssl_do(sslp.cdata, lib.COMMSSL_OP_HANDSHAKE, ffi.NULL, 0, ffi.NULL)
            _pump(wbio)
            if err:
                raise_failure(sslp, err, "handshake")
            for _ in range(64):  # a handshake that completed: read what follows until EOF
                err = lib.commssl_do(sslp.cdata, lib.COMMSSL_OP_READ, buf, 4096, done)
                _pump(wbio)
                if err:
                    raise_failure(sslp, err, "read")
            with commssl.peer_certificates(sslp) as certs:
                for c in certs:
                    commssl.get_certificate_data(c)  # type: ignore[arg-type]
        except commssl.SSLCondition:
            pass
    finally:
        sslp._kill()
    assert commssl.outstanding_certificates() == start
    assert drain() == []


TARGETS: Dict[str, Callable[[bytes], None]] = {"certificate": certificate, "tls_server": tls_server}


# -- drivers -----------------------------------------------------------------------------

DerNode = List[Any]  # [tag, bytes] (primitive) or [tag, [children]] (constructed)


def _der_parse(buf: bytes, i: int, end: int) -> Optional[List[DerNode]]:
    """The DER elements of ``buf[i:end]`` as a tree, or None if it is not DER."""
    nodes: List[DerNode] = []
    while i < end:
        if i + 2 > end or buf[i] & 0x1F == 0x1F:  # no high tag numbers in certificates
            return None
        tag, first, j = buf[i], buf[i + 1], i + 2
        if first < 0x80:
            n = first
        else:
            k = first & 0x7F
            if not 0 < k <= 4 or j + k > end:
                return None
            n, j = int.from_bytes(buf[j : j + k], "big"), j + k
        if j + n > end:
            return None
        if tag & 0x20:
            kids = _der_parse(buf, j, j + n)
            if kids is None:
                return None
            nodes.append([tag, kids])
        else:
            nodes.append([tag, buf[j : j + n]])
        i = j + n
    return nodes


def _der_encode(nodes: List[DerNode]) -> bytes:
    return b"".join(seeds._enc(tag, _der_encode(v) if isinstance(v, list) else v) for tag, v in nodes)


def der_mutate(data: bytes, rng: random.Random, leaf: Callable[[bytes], bytes]) -> Optional[bytes]:
    """Structure-aware mutation: ``leaf`` rewrites the content of one primitive
    element (a serial, a name string, a time, an extension's bytes...) and
    every length around it is redone, so OpenSSL still parses the result and
    commssl's readers see the odd value. None when ``data`` is not DER."""
    tree = _der_parse(data, 0, len(data))
    leaves: List[DerNode] = []
    stack = list(tree or [])
    while stack:
        node = stack.pop()
        if isinstance(node[1], list):
            stack.extend(node[1])
        else:
            leaves.append(node)
    if not leaves:
        return None
    node = rng.choice(leaves)
    node[1] = leaf(node[1])
    return _der_encode(tree or [])


def tls_mutate(data: bytes, rng: random.Random, leaf: Callable[[bytes], bytes]) -> Optional[bytes]:
    """Certificate-aware mutation of a client flight: one certificate of a TLS 1.2
    Certificate message is mutated with ``der_mutate`` and the certificate,
    list, message and record lengths are redone, so the server gets as far as
    verifying it. None when the flight carries no such certificate."""
    records, i = [], 0
    while i + 5 <= len(data):
        n = int.from_bytes(data[i + 3 : i + 5], "big")
        records.append([data[i : i + 3], data[i + 5 : i + 5 + n]])
        i += 5 + n
    tail = data[i:]
    spots = []  # (record index, message offset) of Certificate messages in handshake records
    for r, (header, body) in enumerate(records):
        j = 0
        while header[0] == 22 and j + 4 <= len(body):
            size = int.from_bytes(body[j + 1 : j + 4], "big")
            if body[j] == 11 and size >= 3:
                spots.append((r, j))
            j += 4 + size
    if not spots:
        return None
    r, j = rng.choice(spots)
    body = records[r][1]
    size = int.from_bytes(body[j + 1 : j + 4], "big")
    message = body[j + 4 : j + 4 + size]
    certs, k = [], 3
    while k + 3 <= len(message):
        n = int.from_bytes(message[k : k + 3], "big")
        certs.append(message[k + 3 : k + 3 + n])
        k += 3 + n
    if not certs:
        return None
    c = rng.randrange(len(certs))
    certs[c] = der_mutate(certs[c], rng, leaf) or certs[c]
    entries = b"".join(len(x).to_bytes(3, "big") + x for x in certs)
    message = len(entries).to_bytes(3, "big") + entries
    records[r][1] = body[:j] + bytes([11]) + len(message).to_bytes(3, "big") + message + body[j + 4 + size :]
    return b"".join(h + len(b).to_bytes(2, "big") + b for h, b in records) + tail


def mutate(data: bytes, rng: random.Random, pool: List[bytes]) -> bytes:
    """One random mutation: flip, set, insert or delete bytes, truncate, splice,
    repeat, or (half the time, for DER or a flight carrying a certificate) any of
    those inside one DER value."""
    if rng.random() < 0.5:
        leaf = lambda content: _mutate_bytes(content, rng, pool)  # noqa: E731
        out = der_mutate(data, rng, leaf) or tls_mutate(data, rng, leaf)
        if out is not None:
            return out
    return _mutate_bytes(data, rng, pool)


def _mutate_bytes(data: bytes, rng: random.Random, pool: List[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[min(i, len(b) - 1)] = rng.choice((0, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and b:
            del b[i:i + rng.randint(1, 16)]
        elif op == 4:
            del b[i:]
        elif op == 5 and pool:
            other = rng.choice(pool)
            j = rng.randrange(len(other) + 1)
            b[i:] = other[j:]
        elif op == 6 and b:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 64)]
    return bytes(b)


def plain_fuzz(target: Callable[[bytes], None], corpus: List[bytes], seconds: float, seed: int = 0) -> int:
    """The labelled fallback: random mutations of the corpus, no coverage feedback.
    Returns the number of executions. A failing input is written to ./crash-plain-*."""
    rng = random.Random(seed)
    pool = corpus or [b""]
    for data in pool:
        target(data)
    runs = len(pool)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = mutate(rng.choice(pool), rng, pool)
        try:
            target(data)
        except BaseException:
            name = f"crash-plain-{runs}"
            Path(name).write_bytes(data)
            print(f"plain fuzz: input written to {name}", file=sys.stderr)
            raise
        runs += 1
    return runs


def main(argv: List[str]) -> None:
    if not argv or argv[0] not in TARGETS:
        raise SystemExit(f"usage: targets.py {{{','.join(TARGETS)}}} [--plain SECONDS] "
                         "[libFuzzer args] CORPUS...")
    name, rest = argv[0], argv[1:]
    target = TARGETS[name]
    if atheris is None or "--plain" in rest:
        rest = [a for a in rest if a != "--plain"]
        seconds = float(rest[0])
        corpus = [p.read_bytes() for d in rest[1:] for p in sorted(Path(d).iterdir()) if p.is_file()]
        start = time.monotonic()
        runs = plain_fuzz(target, corpus, seconds)
        print(f"plain fuzz (random mutations, no coverage feedback): {name}: {runs} runs in "
              f"{time.monotonic() - start:.0f} s, corpus {len(corpus)} inputs, 0 crashes")
        return
    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        """libFuzzer's mutations, and half the time inside one DER value."""
        rng = random.Random(seed)
        if rng.random() < 0.5:
            leaf = lambda content: atheris.Mutate(content, len(content) + 32)  # noqa: E731
            out = (der_mutate if name == "certificate" else tls_mutate)(data, rng, leaf)
            if out is not None and len(out) <= max_size:
                return out
        return atheris.Mutate(data, max_size)  # type: ignore[no-any-return]

    atheris.Setup([sys.argv[0]] + rest, target, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
