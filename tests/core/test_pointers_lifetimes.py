"""Lifetimes of the pointer wrappers (shared/API.md, "Lifetimes and threads").

Every operation pins its C object; release, destroy and expiry mark the wrapper
dead at once and the last user frees. The race scenarios run in their own
interpreter (tests/racing.py): a crash, hang or leak fails the test, not the run.
``COMMSSL_RACE_SCALE`` multiplies their rounds (default 1: about 30 s at -n 2).
"""

from __future__ import annotations

import copy
import gc
import pickle
import sys
import threading
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import commssl
from commssl import ffi, lib
from peers import PKI
from racing import pointer_scenario

Factory = Callable[..., commssl.SSLCtxPointer]



def only(outcomes: Dict[str, int], allowed: Tuple[str, ...]) -> None:
    assert set(outcomes) <= set(allowed), outcomes


# -- races: each operation against release / destroy / free / expiry ----------------


def test_certificate_reads_race_release(pki: PKI) -> None:
    """Every certificate operation against release_certificate in another thread:
    the read completes with the right value, or raises CertificateReleasedError."""
    facts = pointer_scenario(pki, """
leaf = commssl.pem_read("X509", P["server_cert"])
truth = {"serial": commssl.get_certificate_serial_number(leaf),
         "cn": commssl.get_certificate_common_name(leaf),
         "data": commssl.get_certificate_data(leaf)}
wrong = []

def copied(cert):
    c = commssl.copy_certificate(cert)
    try:
        return commssl.get_certificate_serial_number(c)
    finally:
        commssl.release_certificate(c)

ops = {"serial": commssl.get_certificate_serial_number, "cn": commssl.get_certificate_common_name,
       "data": commssl.get_certificate_data, "copy": copied}
results = {}
for name, fn in ops.items():
    want = truth["serial"] if name == "copy" else truth[name]
    for rival_name, rival in (("release", commssl.release_certificate),
                              ("vector", lambda c: commssl.release_certificates_vector([c]))):
        def op(cert, fn=fn, want=want, name=name):
            got = fn(cert)
            if got != want:
                wrong.append((name, repr(got)))
        # a certificate of its own each round: the release drops its last reference
        results[name + "/" + rival_name] = counts(racing.race(
            op, rival, rounds(200), setup=lambda: commssl.pem_read("X509", P["server_cert"]), jitter=0.0001))
commssl.release_certificate(leaf)
gc.collect()
racing.report(results=results, wrong=wrong, outstanding=commssl.outstanding_certificates())
""")
    assert facts["wrong"] == []
    assert facts["outstanding"] == 0
    for name, result in facts["results"].items():
        only(result["op"], ("ok", "CertificateReleasedError"))
        assert result["rival"] == {"ok": sum(result["op"].values())}, name
    assert "ResourceWarning" not in facts["stderr"]


@pytest.mark.parametrize("part", ["simple", "callbacks"])
def test_context_operations_race_destroy(pki: PKI, part: str) -> None:
    """Every SSL_CTX operation against destroy_ssl_ctx: done on the live context,
    or ValueError naming the destroyed context; never a crash or a hang on a
    lock inside a freed store. (Two interpreters: together these scenarios made
    gcc 12's LeakSanitizer crash in its own exit-time scan of dynamic TLS.)"""
    facts = pointer_scenario(pki, """
def checked(fn):
    def op(ctx):
        try:
            fn(ctx)
        except ValueError as exc:
            if "destroyed" not in str(exc):
                raise AssertionError(str(exc))
            raise
    return op

cb = lambda ok, store: ok
ops = {
    "load_verify": lambda ctx: commssl.ssl_ctx_load_verify_locations(ctx, P["root_cert"]),
    "chain_file": lambda ctx: commssl.ssl_ctx_use_certificate_chain_file(ctx, P["server_chain"]),
    "key_file": lambda ctx: commssl.ssl_ctx_use_privatekey_file(ctx, P["server_key"]),
    "depth": lambda ctx: commssl.set_verification_depth(ctx, 5),
    "set_mode": lambda ctx: commssl.set_verification_mode(ctx, "server", "always", cb),
    "get_mode": lambda ctx: commssl.get_verification_mode(ctx),
    "password": lambda ctx: commssl.set_ssl_ctx_password_callback(ctx, password="x"),
}
results = {}
for name, fn in ops.items():
    if PART != "simple":
        break
    results[name] = counts(racing.race(checked(fn), commssl.destroy_ssl_ctx, rounds(80),
                                       setup=lambda: commssl.make_ssl_ctx(True, "server"), jitter=0.0005))

def encrypted(ctx):
    commssl.ssl_ctx_use_privatekey_file(ctx, P["encrypted_key"])

def with_password():
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.set_ssl_ctx_password_callback(ctx, lambda n, w: P["encrypted_key_password"])
    return ctx

def abstract():
    return commssl.create_ssl_server_context(cert_file=P["server_chain"], key_file=P["server_key"])

if PART == "callbacks":
    results["encrypted_key"] = counts(racing.race(checked(encrypted), commssl.destroy_ssl_ctx, rounds(60),
                                                  setup=with_password, jitter=0.0005))
    results["abstract_depth"] = counts(racing.race(
        checked(lambda a: commssl.set_verification_depth(a, 3)),
        lambda a: commssl.destroy_ssl_ctx(a.ssl_ctx_pointer), rounds(60), setup=abstract, jitter=0.0005))
gc.collect()
racing.report(results=results)
""".replace("PART", repr(part)))
    for name, result in facts["results"].items():
        only(result["op"], ("ok", "ValueError"))
        assert result["rival"] == {"ok": sum(result["op"].values())}, name


def test_ssl_operations_race_free(pki: PKI) -> None:
    """Operations on a connected SSLPointer against its free (_kill) in another
    thread: done on the live SSL with the right result, or ValueError."""
    facts = pointer_scenario(pki, """
sctx, cctx = server_ctx(), client_ctx()
wrong = []

def connected():
    c = commssl.SSLPointer._adopt(lib.SSL_new(cctx.cdata), cctx)
    s = commssl.SSLPointer._adopt(lib.SSL_new(sctx.cdata), sctx)
    assert handshake(c.cdata, s.cdata) == [0, 0]
    s._kill()
    return c

probe = connected()
first = commssl.ssl_connection_copy_peer_certificates(probe)
chain = [commssl.get_certificate_serial_number(x) for x in first]
commssl.release_certificates_vector(first)
probe._kill()

def peer_chain(sslp):
    certs = commssl.ssl_connection_copy_peer_certificates(sslp)
    try:
        got = [commssl.get_certificate_serial_number(x) for x in certs]
        if got != chain:
            wrong.append(repr(got))
    finally:
        commssl.release_certificates_vector(certs)

def mode(sslp):
    commssl.set_verification_mode(sslp, "client", "always", lambda ok, st: ok)
    if commssl.get_verification_mode(sslp) != ["verify-peer"]:
        wrong.append("mode")

def same(sslp):
    cdata = sslp._pin()  # a raw pointer is the caller's to keep alive while it wraps it
    try:
        if commssl.SSLPointer(cdata) is not sslp:
            wrong.append("SSLPointer(cdata) made a second wrapper")
    finally:
        sslp._unpin()

ops = {"peer_chain": peer_chain, "mode": mode, "depth": lambda s: commssl.set_verification_depth(s, 4),
       "wrapper": same}
results = {}
for name, fn in ops.items():
    results[name] = counts(racing.race(fn, lambda s: s._kill(), rounds(60), setup=connected, jitter=0.0003))
gc.collect()
commssl.destroy_ssl_ctx(sctx)
commssl.destroy_ssl_ctx(cctx)
racing.report(results=results, wrong=wrong, chain=len(chain), outstanding=commssl.outstanding_certificates())
""")
    assert facts["chain"] == 2 and facts["wrong"] == [] and facts["outstanding"] == 0
    for result in facts["results"].values():
        only(result["op"], ("ok", "ValueError"))


def test_store_ctx_and_lent_certificate_race_the_callbacks_end(pki: PKI) -> None:
    """A verify callback hands its store ctx and current certificate to another
    thread, which keeps reading them while the callback returns and OpenSSL
    frees the store: every read is right or raises (ValueError,
    CertificateReleasedError); none reads freed memory."""
    facts = pointer_scenario(pki, """
import queue
handed = queue.Queue()
outcomes = {}
wrong = []
serials = set()

def note(what, fn):
    out = racing.outcome(fn)
    outcomes.setdefault(what, {}).setdefault(out, 0)
    outcomes[what][out] += 1
    return out

def reader():
    while True:
        item = handed.get()
        if item is None:
            return
        store, cert = item
        for _ in range(400):
            outs = [note("get_error", lambda: commssl.x509_store_ctx_get_error(store)),
                    note("depth", lambda: commssl.x509_store_ctx_get_error_depth(store)),
                    note("current", lambda: commssl.x509_store_ctx_get_current_cert(store)),
                    note("connection", lambda: commssl.x509_store_ctx_get_connection(store)),
                    note("serial", lambda: serials.add(commssl.get_certificate_serial_number(cert))),
                    note("data", lambda: commssl.get_certificate_data(cert)),
                    note("copy", lambda: commssl.release_certificate(commssl.copy_certificate(cert)))]
            if all(o != "ok" for o in outs):
                break

rng = random.Random(1)

def callback(ok, store):
    handed.put((store, commssl.x509_store_ctx_get_current_cert(store)))
    time.sleep(rng.random() * 0.0005)
    return ok

t = threading.Thread(target=reader)
t.start()
sctx, cctx = server_ctx(), client_ctx(callback)
for _ in range(rounds(40)):
    c = lib.SSL_new(cctx.cdata)
    s = commssl.SSLPointer._adopt(lib.SSL_new(sctx.cdata), sctx)
    c = commssl.SSLPointer._adopt(c, cctx)
    if handshake(c.cdata, s.cdata) != [0, 0]:
        wrong.append("handshake failed")
    c._kill()
    s._kill()
handed.put(None)
t.join()
leaf = commssl.pem_read("X509", P["server_cert"])
inter = commssl.pem_read("X509", P["intermediate_cert"])
root = commssl.pem_read("X509", P["root_cert"])
known = {commssl.get_certificate_serial_number(x) for x in (leaf, inter, root)}
commssl.release_certificates_vector([leaf, inter, root])
gc.collect()
commssl.destroy_ssl_ctx(sctx)
commssl.destroy_ssl_ctx(cctx)
racing.report(outcomes=outcomes, wrong=wrong, unknown=sorted(serials - known),
              outstanding=commssl.outstanding_certificates())
""")
    assert facts["wrong"] == [] and facts["unknown"] == [] and facts["outstanding"] == 0
    for what, result in facts["outcomes"].items():
        only(result, ("ok", "ValueError", "CertificateReleasedError"))
        assert "ok" in result or what in ("current",), (what, result)


def test_reused_store_ctx_wrapper_never_revives_one_kept(pki: PKI) -> None:
    """The verify trampoline reuses a store ctx wrapper nobody kept and ends it without the
    lock (lifetime.verify_with_store). Callbacks that keep nothing, keep a weak reference,
    or hand the wrapper to a reader thread:
    a kept wrapper (strongly or weakly) is never handed to a later callback, reads of it
    after its callback raise, none reads freed memory, and the count ends exact."""
    facts = pointer_scenario(pki, """
import queue, weakref
from commssl._core import lifetime
handed = queue.Queue()
outcomes, wrong, weak, seen = {}, [], [], []

def note(what, fn):
    out = racing.outcome(fn)
    outcomes.setdefault(what, {}).setdefault(out, 0)
    outcomes[what][out] += 1
    return out

def reader():
    while True:
        store = handed.get()
        if store is None:
            return
        for _ in range(200):
            if note("depth", lambda: commssl.x509_store_ctx_get_error_depth(store)) != "ok":
                break
        del store

rng = random.Random(2)

def callback(ok, store):
    for w in weak:
        if w() is store:
            wrong.append("a weakly kept wrapper came back")
    if any(store is k for k in seen):
        wrong.append("a kept wrapper came back")
    how = rng.randrange(4)
    if how == 1:
        weak.append(weakref.ref(store))
    elif how == 2:
        seen.append(store)
        handed.put(store)
    elif how == 3:
        time.sleep(rng.random() * 0.0002)
    return ok

threads = [threading.Thread(target=reader)]
for t in threads:
    t.start()
sctx, cctx = server_ctx(), client_ctx(callback)
for _ in range(rounds(150)):
    s = commssl.SSLPointer._adopt(lib.SSL_new(sctx.cdata), sctx)
    c = commssl.SSLPointer._adopt(lib.SSL_new(cctx.cdata), cctx)
    if handshake(c.cdata, s.cdata) != [0, 0]:
        wrong.append("handshake failed")
    c._kill()
    s._kill()
handed.put(None)
for t in threads:
    t.join()
plain = client_ctx(lambda ok, store: ok)  # a callback that keeps nothing: the unlocked end
s = commssl.SSLPointer._adopt(lib.SSL_new(sctx.cdata), sctx)
c = commssl.SSLPointer._adopt(lib.SSL_new(plain.cdata), plain)
if handshake(c.cdata, s.cdata) != [0, 0]:
    wrong.append("handshake failed")
c._kill()
s._kill()
spares = len(lifetime._spares)
commssl.destroy_ssl_ctx(plain)
for store in seen + [w() for w in weak]:
    if store is not None and racing.outcome(lambda: commssl.x509_store_ctx_get_error(store)) != "ValueError":
        wrong.append("a kept wrapper still reads")
gc.collect()
commssl.destroy_ssl_ctx(sctx)
commssl.destroy_ssl_ctx(cctx)
racing.report(outcomes=outcomes, wrong=wrong, outstanding=commssl.outstanding_certificates(),
              spares=spares, sole=lifetime._SOLE)
""")
    assert facts["wrong"] == [] and facts["outstanding"] == 0
    assert facts["spares"] > 0 or not facts["sole"]  # the unlocked end ran (GIL builds)
    for result in facts["outcomes"].values():
        only(result, ("ok", "ValueError"))


def test_chain_copy_while_a_callback_of_the_same_ssl_runs_does_not_deadlock(pki: PKI) -> None:
    """A thread copies the peer chain of an SSL whose handshake runs in another thread, with a
    verify callback that reads its store (the pointer lock) while the handshake holds the SSL's
    operation lock. The copy must never hold the pointer lock while it waits for the operation
    lock (each would wait for the other: a hang, which the scenario's timeout fails)."""
    facts = pointer_scenario(pki, """
outcomes = {}
def callback(ok, store):
    commssl.x509_store_ctx_get_error_depth(store)  # the pointer lock, inside the operation lock
    time.sleep(0.0002)
    return ok

def copier(c, stop):
    while not stop.is_set():
        out = racing.outcome(lambda: commssl.release_certificates_vector(
            commssl.ssl_connection_copy_peer_certificates(c)))
        outcomes[out] = outcomes.get(out, 0) + 1

sctx, cctx = server_ctx(), client_ctx(callback)
for _ in range(rounds(60)):
    s = commssl.SSLPointer._adopt(lib.SSL_new(sctx.cdata), sctx)
    c = commssl.SSLPointer._adopt(lib.SSL_new(cctx.cdata), cctx)
    stop = threading.Event()
    t = threading.Thread(target=copier, args=(c, stop))
    t.start()
    done = handshake(c.cdata, s.cdata)
    stop.set()
    t.join(30)
    if t.is_alive() or done != [0, 0]:
        racing.report(hung=t.is_alive(), done=done)
        os._exit(3)
    c._kill()
    s._kill()
commssl.destroy_ssl_ctx(sctx)
commssl.destroy_ssl_ctx(cctx)
racing.report(outcomes=outcomes, outstanding=commssl.outstanding_certificates())
""", timeout=90)
    assert facts.get("hung") is None, facts
    assert facts["outstanding"] == 0
    only(facts["outcomes"], ("ok",))


def test_connection_readers_in_another_thread_never_see_a_callbacks_store(pki: PKI) -> None:
    """``ssl_connection_verify`` and ``ssl_connection_ocsp_status`` called from another thread
    while a verify callback runs: the store OpenSSL frees once the verification ends is read
    only under the SSL's operation lock (which the handshake holds), so never after it is
    freed. The readers start inside the callback and their C call is made late on purpose, and
    checks that the store it reads is still lent: reading it unlocked, as before, read it
    after OpenSSL freed it (in OpenSSL's code, where no sanitizer looks)."""
    facts = pointer_scenario(pki, """
import commssl.io.connection as connection
from commssl.io.connection import new_ssl
real = connection.lib

class Slow:
    def __getattr__(self, name):
        return getattr(real, name)

    def X509_STORE_CTX_get_error(self, store):
        time.sleep(0.01)  # the verification ends meanwhile, were it another thread's
        if current[0].verifying != store:  # its loan is over: OpenSSL may have freed it
            outcomes["read after its loan ended"] = outcomes.get("read after its loan ended", 0) + 1
        return real.X509_STORE_CTX_get_error(store)

connection.lib = Slow()
outcomes, inside, current = {}, threading.Event(), [None]

def callback(ok, store):
    inside.set()
    time.sleep(0.0005)  # the readers start meanwhile
    return ok

def reader(fn, c):
    inside.wait(10)
    out = racing.outcome(lambda: fn(c))
    outcomes[out] = outcomes.get(out, 0) + 1

sctx, cctx = server_ctx(), client_ctx(callback)
for _ in range(rounds(20)):
    s = new_ssl(sctx, "server")[0]  # commssl's own SSLs: their callbacks lend the store on them
    c = new_ssl(cctx, "client", host="localhost")[0]
    current[0] = c
    inside.clear()
    readers = [threading.Thread(target=reader, args=(fn, c))
               for fn in (commssl.ssl_connection_verify, commssl.ssl_connection_ocsp_status)]
    for t in readers:
        t.start()
    done = handshake(c.cdata, s.cdata)
    for t in readers:
        t.join(30)
    if any(t.is_alive() for t in readers) or done != [0, 0]:
        racing.report(hung=any(t.is_alive() for t in readers), done=done)
        os._exit(3)
    verdict = commssl.ssl_connection_verify(c)
    if verdict != (True, 0):
        racing.report(verdict=verdict)
        os._exit(3)
    c._kill()
    s._kill()
commssl.destroy_ssl_ctx(sctx)
commssl.destroy_ssl_ctx(cctx)
racing.report(outcomes=outcomes)
""", timeout=90)
    assert facts.get("hung") is None and facts.get("verdict") is None, facts
    only(facts["outcomes"], ("ok",))


def test_gc_cycles_collected_in_any_order(pki: PKI) -> None:
    """Contexts, SSLs, callbacks, certificates and raw SSL*s in reference cycles,
    collected by the garbage collector in whatever order, while another thread
    keeps the pointers' lock busy (finalizers must never wait for it): no crash,
    the owned certificates are counted back, the unreleased ones warn."""
    facts = pointer_scenario(pki, """
warnings.simplefilter("ignore", ResourceWarning)
leaf = commssl.pem_read("X509", P["server_cert"])
stop = threading.Event()
busy = [0]

def hammer():
    while not stop.is_set():
        commssl.get_certificate_serial_number(leaf)
        busy[0] += 1

t = threading.Thread(target=hammer)
t.start()
rng = random.Random(2)
for i in range(rounds(300)):
    d = {}
    ctx = commssl.make_ssl_ctx(True, "client")
    def cb(ok, store, d=d):
        return d.get("ctx") is not None
    commssl.set_verification_mode(ctx, "client", "always", cb)
    sslp = commssl.SSLPointer._adopt(lib.SSL_new(ctx.cdata), ctx)
    kept = [commssl.copy_certificate(leaf) for _ in range(rng.randrange(3))]
    d.update(ctx=ctx, cb=cb, ssl=sslp, certs=kept, me=d,
             raw=ffi.gc(lib.SSL_new(ctx.cdata), lib.SSL_free),
             again=commssl.SSLPointer(sslp.cdata), ctx2=commssl.SSLCtxPointer(ctx.cdata))
    if rng.random() < 0.3:
        commssl.destroy_ssl_ctx(ctx)
    if rng.random() < 0.3:
        sslp._kill()
    if rng.random() < 0.3 and kept:
        commssl.release_certificate(kept.pop())
    del d, ctx, cb, sslp, kept
    if i % 17 == 0:
        gc.collect()
stop.set()
t.join()
gc.collect()
commssl.release_certificate(leaf)
gc.collect()
racing.report(outstanding=commssl.outstanding_certificates(), busy=busy[0])
""")
    assert facts["outstanding"] == 0


# -- fail closed: an SSL made outside commssl from a commssl context ------------------


def _raw_handshake(client: Any, server: Any) -> List[Optional[int]]:
    """An in-memory handshake of two raw ``SSL*`` (connect / accept)."""
    bios = ffi.new("BIO *[2]")
    assert lib.BIO_new_bio_pair(bios, 0, bios + 1, 0)
    lib.SSL_set_bio(client, bios[0], bios[0])
    lib.SSL_set_bio(server, bios[1], bios[1])
    lib.SSL_set_connect_state(client)
    lib.SSL_set_accept_state(server)
    done: List[Optional[int]] = [None, None]
    for _ in range(50):
        for i, ssl in enumerate((client, server)):
            if done[i] is None:
                e = lib.commssl_do(ssl, lib.COMMSSL_OP_HANDSHAKE, ffi.NULL, 0, ffi.NULL)
                if e == 0 or e not in (lib.SSL_ERROR_WANT_READ, lib.SSL_ERROR_WANT_WRITE):
                    done[i] = int(e)
        if None not in done:
            break
    lib.ERR_clear_error()
    return done


def _outside(client_ctx_cdata: Any, server: commssl.SSLCtxPointer) -> Tuple[List[Optional[int]], int]:
    """Handshake an SSL made by ``lib.SSL_new`` (outside commssl) against a commssl
    server; returns the outcomes and the client's verify result."""
    c = lib.SSL_new(client_ctx_cdata)
    s = commssl.SSLPointer._adopt(lib.SSL_new(server.cdata), server)
    try:
        done = _raw_handshake(c, s.cdata)
        return done, int(lib.SSL_get_verify_result(c))
    finally:
        lib.SSL_free(c)
        s._kill()


def test_ssl_new_outside_commssl_is_governed_by_the_contexts_callback(
        server_ctx: Factory, client_ctx: Factory) -> None:
    seen: List[Any] = []

    def reject(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        seen.append(commssl.x509_store_ctx_get_connection(store))
        return False

    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", reject)
    done, code = _outside(cctx.cdata, server_ctx())
    assert done[0] != 0, "a context whose callback rejects everything let a handshake through"
    assert code == lib.X509_V_ERR_APPLICATION_VERIFICATION
    assert seen and all(isinstance(s, commssl.SSLPointer) for s in seen)
    assert all(s._dead for s in seen)  # lent for the callback only

    accepted: List[int] = []
    cctx2 = client_ctx()
    commssl.set_verification_mode(cctx2, "client", "always", lambda ok, st: accepted.append(ok) or True)
    done, code = _outside(cctx2.cdata, server_ctx())
    assert done == [0, 0] and accepted == [True, True, True]


def test_ssl_new_outside_commssl_fails_closed_when_the_callback_is_gone(
        server_ctx: Factory, client_ctx: Factory) -> None:
    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", lambda ok, st: True)
    raw_ctx = cctx.cdata
    lib.SSL_CTX_up_ref(raw_ctx)  # the C context outlives its wrapper
    try:
        commssl.destroy_ssl_ctx(cctx)
        done, code = _outside(raw_ctx, server_ctx())
        assert done[0] != 0 and code == lib.X509_V_ERR_APPLICATION_VERIFICATION
    finally:
        lib.SSL_CTX_free(raw_ctx)


def test_ssl_new_outside_commssl_from_an_abstract_context(pki: PKI, server_ctx: Factory) -> None:
    calls: List[Any] = []
    no = commssl.create_ssl_client_context(openssl_trusted_file=str(pki.root_cert),
                                           verify_callback=lambda conn: calls.append(conn) and False)
    yes = commssl.create_ssl_client_context(openssl_trusted_file=str(pki.root_cert),
                                            verify_callback=lambda conn: calls.append(conn) or True)
    try:
        done, code = _outside(no.ssl_ctx_pointer.cdata, server_ctx())
        assert done[0] != 0 and code == lib.X509_V_ERR_APPLICATION_VERIFICATION
        done, code = _outside(yes.ssl_ctx_pointer.cdata, server_ctx())
        assert done == [0, 0] and len(calls) == 2
        assert all(isinstance(c, commssl.SSLPointer) for c in calls)
    finally:
        commssl.destroy_ssl_ctx(no.ssl_ctx_pointer)
        commssl.destroy_ssl_ctx(yes.ssl_ctx_pointer)


def test_outside_ssl_whose_callback_raises_fails(server_ctx: Callable[..., commssl.SSLCtxPointer],
                                                 client_ctx: Callable[..., commssl.SSLCtxPointer],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ok: bool, store: Any) -> bool:
        raise RuntimeError("callback exploded")

    reported: List[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))
    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", boom)
    done, _ = _outside(cctx.cdata, server_ctx())
    assert done[0] != 0
    # reported (nobody in commssl drove this handshake to re-raise it)
    assert [str(e) for e in reported] == ["callback exploded"]


# -- copies, pickles and constructors ---------------------------------------------------


def _refused(obj: Any, match: str = "cannot be") -> None:
    for attempt in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match=match):
            attempt(obj)


def test_no_copies_or_pickles(pki: PKI, server_ctx: Callable[..., commssl.SSLCtxPointer]) -> None:
    cert = commssl.pem_read("X509", pki.server_cert)
    assert cert is not None
    try:
        start = commssl.outstanding_certificates()
        _refused(cert, "copy_certificate")
        _refused(commssl.X509Pointer(cert.cdata), "copy_certificate")
        assert commssl.outstanding_certificates() == start
    finally:
        commssl.release_certificate(cert)
    ctx = server_ctx()
    _refused(ctx)
    sslp = commssl.SSLPointer._adopt(lib.SSL_new(ctx.cdata), ctx)
    _refused(sslp)
    sslp._kill()
    abstract = commssl.create_ssl_client_context()
    _refused(abstract)
    commssl.destroy_ssl_ctx(abstract.ssl_ctx_pointer)
    assert not ctx._dead  # the refused copy made no second owner


def test_no_store_ctx_copies(pki: PKI, server_ctx: Callable[..., commssl.SSLCtxPointer],
                             client_ctx: Callable[..., commssl.SSLCtxPointer]) -> None:
    problems: List[str] = []

    def callback(ok: bool, store: commssl.X509StoreCtxPointer) -> bool:
        for attempt in (copy.copy, copy.deepcopy, pickle.dumps):
            try:
                attempt(store)
                problems.append(f"{attempt.__name__} copied a store ctx")
            except TypeError:
                pass
        return ok

    cctx = client_ctx()
    commssl.set_verification_mode(cctx, "client", "always", callback)
    done, _ = _outside(cctx.cdata, server_ctx())
    assert done == [0, 0] and problems == []


@pytest.mark.parametrize("cls, ctype", [
    (commssl.X509Pointer, "X509 *"), (commssl.SSLCtxPointer, "SSL_CTX *"),
    (commssl.SSLPointer, "SSL *"), (commssl.X509StoreCtxPointer, "X509_STORE_CTX *")])
def test_constructors_refuse_null_and_other_types(cls: Any, ctype: str) -> None:
    with pytest.raises(ValueError, match="cdata.*NULL|NULL.*cdata"):
        cls(ffi.cast(ctype, 0))
    with pytest.raises(TypeError, match="cdata"):
        cls(ffi.new("int *"))
    with pytest.raises(TypeError, match="cdata"):
        cls(42)
    with pytest.raises(TypeError, match="cdata"):
        cls()


# -- the smaller items --------------------------------------------------------------


def test_verify_cert_error_string_refuses_codes_beyond_a_c_int() -> None:
    for code in (2**32, 2**31, -1, 2**64):
        with pytest.raises(ValueError, match="code"):
            commssl.x509_verify_cert_error_string(code)
    assert commssl.x509_verify_cert_error_string(0) == "ok"


def test_resource_warning_describes_the_pointer_as_it_was(pki: PKI) -> None:
    cert = commssl.pem_read("X509", pki.server_cert)
    address = cert.address if cert is not None else 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        del cert
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert messages == [f"unreleased <X509Pointer 0x{address:x} owned> garbage-collected; "
                        "call release_certificate()"]


@pytest.mark.parametrize("argument", ["cert_file", "key_file", "openssl_trusted_file",
                                      "openssl_trusted_directory"])
@pytest.mark.parametrize("make", [commssl.create_ssl_client_context, commssl.create_ssl_server_context])
def test_abstract_context_path_errors_name_the_argument(make: Any, argument: str) -> None:
    with pytest.raises(TypeError, match=f"^{argument} must be a path"):
        make(**{argument: 5})


def test_destroyed_context_error_names_it() -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.destroy_ssl_ctx(ctx)
    for fn in (lambda: commssl.set_verification_depth(ctx, 1), lambda: commssl.get_verification_mode(ctx),
               lambda: commssl.ssl_ctx_load_verify_locations(ctx, "x")):
        with pytest.raises(ValueError, match="ctx .*destroyed"):
            fn()
    commssl.destroy_ssl_ctx(ctx)  # again: nothing more to free


def test_release_vector_is_all_or_nothing(pki: PKI) -> None:
    a = commssl.pem_read("X509", pki.server_cert)
    b = commssl.pem_read("X509", pki.root_cert)
    assert a is not None and b is not None
    for bad, match in (([a, b, a], r"vec\[2\].*twice"), ([a, 7], r"vec\[1\] must be an X509Pointer"),
                       ([b, commssl.X509Pointer(a.cdata)], r"vec\[1\].*borrowed")):
        with pytest.raises((TypeError, commssl.CertificateReleasedError), match=match):
            commssl.release_certificates_vector(bad)  # type: ignore[arg-type]
        assert a.owned and b.owned
    commssl.release_certificates_vector([a, None, b])
    assert a.released and b.released


def test_a_release_waits_for_the_read_in_progress(pki: PKI) -> None:
    """The deferred free, deterministically: a pinned certificate released meanwhile
    is dead at once and freed by the unpin."""
    cert = commssl.pem_read("X509", pki.server_cert)
    assert cert is not None
    cdata = cert._pin()
    commssl.release_certificate(cert)
    assert cert.released
    with pytest.raises(commssl.CertificateReleasedError):
        commssl.get_certificate_serial_number(cert)
    assert commssl.get_certificate_common_name(commssl.X509Pointer(cdata)) == pki.server_cn  # still alive
    cert._unpin()  # the last user frees it


def test_the_lock_is_free_after_refusals() -> None:
    """Every refusal path releases the pointers' lock (a leak would hang the next call)."""
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.destroy_ssl_ctx(ctx)
    for _ in range(3):
        with pytest.raises(ValueError):
            ctx._pin()
        with pytest.raises(TypeError):
            commssl.get_certificate_serial_number(5)  # type: ignore[arg-type]
    done = threading.Event()
    t = threading.Thread(target=lambda: (commssl.outstanding_certificates(), done.set()))
    t.start()
    t.join(5)
    assert done.is_set()


def test_a_collection_inside_release_vector_whose_finalizers_use_certificates(pki: PKI) -> None:
    """release_certificates_vector loops under the pointers' lock, and a collection may start
    inside that loop (forced here with gc.set_threshold(1)). The finalizers it runs pin and
    release certificates themselves: they take the lock their own thread holds (reentrant),
    instead of waiting for it forever, and the books stay right."""
    facts = pointer_scenario(pki, """
other = commssl.pem_read("X509", P["client_cert"])
seen = []

class Garbage:
    def __init__(self):
        self.me = self  # a cycle: only the collector frees it
    def __del__(self):
        seen.append(commssl.get_certificate_common_name(other))
        extra = commssl.pem_read("X509", P["server_cert"])
        commssl.release_certificate(extra)

base = commssl.outstanding_certificates()
for i in range(50):
    certs = [commssl.pem_read("X509", P["server_cert"]) for _ in range(3)]
    Garbage()
    gc.set_threshold(1)
    try:
        commssl.release_certificates_vector(certs)
    finally:
        gc.set_threshold(700, 10, 10)
gc.collect()
left = commssl.outstanding_certificates() - base
racing.report(finalizers=len(seen), cns=sorted(set(seen)), outstanding=left)
""", timeout=60)
    assert facts["finalizers"] >= 40
    assert facts["cns"] == [pki.client_cn]
    assert facts["outstanding"] == 0
