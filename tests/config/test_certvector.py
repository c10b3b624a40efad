"""The peer chain as one owned object (issue 24, API.md Part 3 "Certificates"):
``ssl_connection_copy_peer_certificates`` returns a ``CertificateVector`` that
behaves as the LispWorks vector of ``X509*`` (and as the list it replaces)."""

from __future__ import annotations

import copy
import gc
import pickle
import warnings
from typing import Any, Callable, Iterator, List

import pytest

import commssl
from commssl import CertificateReleasedError, CertificateVector, X509Pointer, ffi, lib
from helpers import connect, der
from peers import PKI
from racing import pointer_scenario


@pytest.fixture
def stream(server_ctx: Callable[..., Any], client_ctx: Callable[..., Any],
           commssl_server: Callable[..., Any]) -> Iterator[commssl.SocketStream]:
    """A client connected to a commssl server that sends leaf + intermediate."""
    server = commssl_server(server_ctx())
    with connect(server.port, client_ctx()) as s:
        yield s
        s.write(b"x\n")
        assert s.readline() == b"x\n"


def resource_warnings(caught: List[warnings.WarningMessage]) -> List[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_vector_reads_as_the_list_it_replaces(stream: commssl.SocketStream, pki: PKI) -> None:
    start = commssl.outstanding_certificates()
    vec = commssl.ssl_connection_copy_peer_certificates(stream)
    assert type(vec) is CertificateVector and len(vec) == 2 and vec
    assert commssl.outstanding_certificates() == start + 2
    # elements are made on first read, once: the same owned X509Pointer every time
    leaf = vec[0]
    assert type(leaf) is X509Pointer and leaf.owned and vec[0] is leaf and vec[-2] is leaf
    assert leaf.address == int(ffi.cast("uintptr_t", lib.SSL_get0_peer_certificate(
        commssl.ssl_connection_ssl_ref(stream).cdata)))
    assert [der(c) for c in vec] == [pki.der(pki.server_cert), pki.der(pki.intermediate_cert)]
    assert vec[0:1] == [leaf] and vec[::-1] == [vec[1], leaf] and vec[5:] == []
    assert vec == [leaf, vec[1]] and vec != [leaf] and vec != (leaf, vec[1]) and leaf in vec
    assert vec.index(vec[1]) == 1 and list(reversed(vec)) == [vec[1], leaf]
    for bad in (2, -3):
        with pytest.raises(IndexError):
            vec[bad]
    with pytest.raises(TypeError):
        vec["0"]  # type: ignore[call-overload]
    assert f"0x{leaf.address:x}" in repr(vec) and repr(vec).startswith("CertificateVector([")
    # a copy would be a second owner of the same references
    for refused in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="CertificateVector"):
            refused(vec)
    assert commssl.outstanding_certificates() == start + 2  # reading moved nothing
    commssl.release_certificates_vector(vec)
    assert commssl.outstanding_certificates() == start
    assert leaf.released and vec[1].released and vec[1] is vec[1]


def test_released_unread_vector_elements_read_as_released(stream: commssl.SocketStream) -> None:
    start = commssl.outstanding_certificates()
    vec = commssl.ssl_connection_copy_peer_certificates(stream)
    again = commssl.ssl_connection_copy_peer_certificates(stream)
    commssl.release_certificates_vector(vec)  # nothing read: every reference in one C call
    assert commssl.outstanding_certificates() == start + 2
    assert all(c.released and not c.owned for c in vec)
    assert [c.address for c in vec] == [c.address for c in again]
    with pytest.raises(CertificateReleasedError, match=r"vec\[0\].*released"):
        commssl.release_certificates_vector(vec)
    with pytest.raises(CertificateReleasedError):
        commssl.get_certificate_data(vec[0])
    # lists of vectors' elements, as the seed's `certs + again`
    assert isinstance(vec + again, list) and len(vec + again) == 4 and len([None] + again) == 3
    commssl.release_certificates_vector(again)
    assert commssl.outstanding_certificates() == start


def test_slots_set_to_none_are_kept_and_outlive_the_vector(stream: commssl.SocketStream,
                                                           pki: PKI) -> None:
    start = commssl.outstanding_certificates()
    vec = commssl.ssl_connection_copy_peer_certificates(stream)
    kept = vec[1]
    vec[1] = None  # the LispWorks idiom: clear the slot to keep that certificate
    assert vec[1] is None and len(vec) == 2
    commssl.release_certificates_vector(vec)
    assert vec[0].released and kept.owned
    assert commssl.outstanding_certificates() == start + 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del vec
        gc.collect()
    assert resource_warnings(caught) == []
    assert der(kept) == pki.der(pki.intermediate_cert)
    commssl.release_certificate(kept)
    assert commssl.outstanding_certificates() == start


def test_one_element_released_then_the_vector(stream: commssl.SocketStream) -> None:
    start = commssl.outstanding_certificates()
    vec = commssl.ssl_connection_copy_peer_certificates(stream)
    commssl.release_certificate(vec[0])
    assert vec[0].released and commssl.outstanding_certificates() == start + 1
    # all or nothing, as a list holding a released pointer
    with pytest.raises(CertificateReleasedError, match=r"vec\[0\].*released"):
        commssl.release_certificates_vector(vec)
    assert commssl.outstanding_certificates() == start + 1
    vec[0] = None
    commssl.release_certificates_vector(vec)
    assert commssl.outstanding_certificates() == start


def test_assignments_are_checked_and_release_is_all_or_nothing(stream: commssl.SocketStream) -> None:
    start = commssl.outstanding_certificates()
    vec = commssl.ssl_connection_copy_peer_certificates(stream)
    with pytest.raises(TypeError, match="X509Pointer or None"):
        vec[0] = "junk"  # type: ignore[assignment]
    with pytest.raises(TypeError):
        vec[0:1] = [None]  # type: ignore[call-overload]
    with pytest.raises(IndexError):
        vec[2] = None
    leaf, inter = vec[0], vec[1]
    vec[1] = leaf  # the same pointer twice: refused, nothing released
    with pytest.raises(CertificateReleasedError, match=r"vec\[1\].*twice"):
        commssl.release_certificates_vector(vec)
    assert leaf.owned and inter.owned and commssl.outstanding_certificates() == start + 2
    vec[1] = commssl.X509Pointer(leaf.cdata)  # borrowed: refused too
    with pytest.raises(CertificateReleasedError, match=r"vec\[1\].*borrowed"):
        commssl.release_certificates_vector(vec)
    vec[1] = inter
    commssl.release_certificates_vector(vec)
    assert leaf.released and inter.released and commssl.outstanding_certificates() == start


def test_a_vector_collected_unreleased_warns_once_and_frees(stream: commssl.SocketStream,
                                                            pki: PKI) -> None:
    start = commssl.outstanding_certificates()
    for read in ((), (0,), (0, 1)):  # held slots, made elements, or both
        vec = commssl.ssl_connection_copy_peer_certificates(stream)
        for i in read:
            assert vec[i].owned
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del vec
            gc.collect()
        assert len(resource_warnings(caught)) == 1, (read, resource_warnings(caught))
        assert "CertificateVector" in resource_warnings(caught)[0]
        assert commssl.outstanding_certificates() == start
    # an element taken out (held elsewhere) stays owned and readable after the vector goes
    vec = commssl.ssl_connection_copy_peer_certificates(stream)
    leaf = vec[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del vec
        gc.collect()
    assert len(resource_warnings(caught)) == 1  # for the intermediate it still held
    assert leaf.owned and der(leaf) == pki.der(pki.server_cert)
    assert commssl.outstanding_certificates() == start + 1
    commssl.release_certificate(leaf)
    assert commssl.outstanding_certificates() == start


def test_peer_certificates_yields_the_vector(stream: commssl.SocketStream) -> None:
    start = commssl.outstanding_certificates()
    with commssl.peer_certificates(stream) as certs:
        assert type(certs) is CertificateVector and len(certs) == 2
        commssl.release_certificate(certs[0])  # released by hand: skipped on the way out
        kept = certs[1]
        certs[1] = None
    assert certs[0].released and kept.owned
    assert commssl.outstanding_certificates() == start + 1
    commssl.release_certificate(kept)
    with commssl.peer_certificates(stream) as certs:
        pass  # nothing read: released in one call
    assert all(c.released for c in certs) and commssl.outstanding_certificates() == start


def test_wrong_vector_type(stream: commssl.SocketStream) -> None:
    with pytest.raises(TypeError, match="CertificateVector or a list"):
        commssl.release_certificates_vector({1: 2})  # type: ignore[arg-type]


def test_vector_reads_and_releases_race_free(pki: PKI) -> None:
    """Element reads, single releases, slot clearing and the vector's release racing
    from two threads: never a double free or a read of a freed certificate (the
    scenario's interpreter would crash), each outcome documented, the count exact."""
    facts = pointer_scenario(pki, """
sctx, cctx = server_ctx(), client_ctx()
c = commssl.SSLPointer._adopt(lib.SSL_new(cctx.cdata), cctx)
s = commssl.SSLPointer._adopt(lib.SSL_new(sctx.cdata), sctx)
assert handshake(c.cdata, s.cdata) == [0, 0]
probe = commssl.ssl_connection_copy_peer_certificates(c)
serials = [commssl.get_certificate_serial_number(x) for x in probe]
commssl.release_certificates_vector(probe)
base = commssl.outstanding_certificates()
wrong = []
kept = []

def read(vec):
    for i, x in enumerate(vec):
        if x is not None and commssl.get_certificate_serial_number(x) != serials[i]:
            wrong.append(i)

def data(vec):
    x = vec[1]
    if x is not None and commssl.get_certificate_data(x)[1][1] != serials[1]:
        wrong.append("data")

def release_vec(vec):
    commssl.release_certificates_vector(vec)

def release_one(vec):
    commssl.release_certificate(vec[0])

def take(vec):
    x = vec[1]
    vec[1] = None
    kept.append(x)

ops = {"read": read, "data": data, "release_one": release_one, "take": take}
results = {}
copy = lambda: commssl.ssl_connection_copy_peer_certificates(c)
vecs = []
def setup():
    v = copy()
    vecs.append(v)
    return v
for name, op in ops.items():
    results[name] = counts(racing.race(op, release_vec, rounds(150), setup=setup, jitter=0.0002))
results["release/release"] = counts(racing.race(release_vec, release_vec, rounds(150), setup=setup,
                                                jitter=0.0002))
# whatever the races left owned: released leniently, as peer_certificates does on exit
for v in vecs:
    v._release_rest()
left_after_vectors = commssl.outstanding_certificates() - base
for x in kept:
    if x is not None and x.owned:
        commssl.release_certificate(x)
del vecs, kept
gc.collect()
c._kill(); s._kill()
racing.report(results=results, wrong=wrong, outstanding=commssl.outstanding_certificates() - base,
              held=left_after_vectors)
""")
    assert facts["wrong"] == [] and facts["outstanding"] == 0
    allowed = ("ok", "CertificateReleasedError")
    for name, result in facts["results"].items():
        assert set(result["op"]) <= set(allowed) and set(result["rival"]) <= set(allowed), (name, result)
        assert "ok" in result["rival"], name
    # both releases of one vector: exactly one of each pair succeeded
    both = facts["results"]["release/release"]
    assert both["op"].get("ok", 0) + both["rival"].get("ok", 0) == sum(both["op"].values())
