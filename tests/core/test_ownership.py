"""Ownership (issue 22): one connection per SSL, one stream per descriptor, a forked
child's close sends nothing, setters and session reads serialised with the SSL's
handshake, and every ``ssl_connection_*`` accessor safe before there is a session.

Each scenario runs in its own interpreter (``racing.py``): a crash fails one test.
The setter-versus-handshake races run under ``ci/asan --short`` too."""

from __future__ import annotations

from typing import Any

import pytest

from racing import STREAM_PRELUDE, run_scenario

# More of the prelude: streams over a socket pair handshaking in two threads, and an
# echo handler for the prelude's server.
OWN = """
import asyncio, gc, subprocess
from commssl import lib

def echo(s):
    while True:
        line = s.readline()
        if not line:
            return
        s.write(line)

def user_ssl(ctx):
    raw = lib.SSL_new(ctx.cdata)
    sslp = commssl.SSLPointer(raw)  # takes a reference of its own
    lib.SSL_free(raw)
    return sslp

def handshake_pair(before=None):
    a, b = socket.socketpair()
    srv, cli = commssl.SocketStream(a, timeout=10), commssl.SocketStream(b, timeout=10)
    errors = []
    def server():
        try:
            commssl.attach_ssl(srv, ssl_ctx=sctx, ssl_side="server", handshake_timeout=10)
        except Exception as exc:
            errors.append(exc)
    t = threading.Thread(target=server)
    t.start()
    try:
        commssl.attach_ssl(cli, ssl_ctx=cctx, ssl_side="client", tlsext_host_name="localhost",
                           handshake_timeout=10)
    except Exception as exc:
        errors.append(exc)
    t.join()
    return srv, cli, errors

def outcome_text(fn):
    try:
        fn()
        return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
"""


def scenario(body: str, **kw: Any) -> Any:
    return run_scenario(STREAM_PRELUDE + OWN + body, **kw)


# -- 1. one connection per SSL --------------------------------------------------------------


def test_a_live_streams_ssl_is_refused_by_every_entry_point() -> None:
    """The SSL of a stream whose reader is busy, passed as ``ssl_ctx`` to every entry
    point: each refuses it with a ValueError naming ssl_ctx, before touching it (it
    used to reset the SSL and free the BIOs under the reader: a segfault)."""
    facts = scenario("""
import anyio, commssl.anyio
port = serve(echo)
s = client(port)
stop, lines = threading.Event(), []
def reader():
    while not stop.is_set():
        s.write(b"ping\\n")
        lines.append(s.readline())
t = threading.Thread(target=reader)
t.start()
sslp = s.ssl
out = {}
for i in range(int(10 * SCALE) + 1):
    a = socket.create_connection(("127.0.0.1", port))
    out["attach_ssl"] = outcome_text(lambda: commssl.attach_ssl(
        commssl.SocketStream(a, timeout=2), ssl_ctx=sslp, ssl_side="client", tlsext_host_name="localhost",
        handshake_timeout=2))
    b = socket.create_connection(("127.0.0.1", port))
    out["create_ssl_socket_stream"] = outcome_text(lambda: commssl.create_ssl_socket_stream(
        b, sslp, ssl_side="client", tlsext_host_name="localhost", handshake_timeout=2))
    out["open_tcp_stream"] = outcome_text(lambda: commssl.open_tcp_stream(
        "127.0.0.1", port, ssl_ctx=sslp, tlsext_host_name="localhost", handshake_timeout=2))

async def aio():
    plain = await commssl.open_tcp_stream_async("127.0.0.1", port, ssl_ctx=None)
    try:
        await commssl.attach_ssl_async(plain, ssl_ctx=sslp, ssl_side="client", tlsext_host_name="localhost",
                                       handshake_timeout=2)
        out["attach_ssl_async"] = "ok"
    except Exception as exc:
        out["attach_ssl_async"] = f"{type(exc).__name__}: {exc}"
    await plain.close()
asyncio.run(aio())

async def anyio_wrap():
    byte_stream = await anyio.connect_tcp("127.0.0.1", port)
    try:
        await commssl.anyio.wrap(byte_stream, ssl_ctx=sslp, ssl_side="client", server_hostname="localhost",
                                 handshake_timeout=2)
        out["anyio.wrap"] = "ok"
    except Exception as exc:
        out["anyio.wrap"] = f"{type(exc).__name__}: {exc}"
    await byte_stream.aclose()
anyio.run(anyio_wrap)

time.sleep(0.2)
stop.set()
t.join()
s.write(b"after\\n")
after = s.readline()
s.close()
racing.report(out=out, bad=[x for x in lines if x != b"ping\\n"], n=len(lines), after=after)
""")
    assert facts["bad"] == [] and facts["n"] > 0
    assert facts["after"] == "b'after\\n'"
    assert set(facts["out"]) == {"attach_ssl", "create_ssl_socket_stream", "open_tcp_stream",
                                 "attach_ssl_async", "anyio.wrap"}
    for entry, result in facts["out"].items():
        assert result.startswith("ValueError: ssl_ctx") and "another connection" in result, (entry, result)


def test_two_attaches_racing_for_one_ssl_exactly_one_wins() -> None:
    """A user's SSLPointer, never attached, is accepted; two attaches racing for it:
    exactly one takes it; after that connection closes (or detaches) it can be
    attached again."""
    facts = scenario("""
rounds = int(150 * SCALE) + 10
wins = []
def setup():
    a1, b1 = socket.socketpair(); a2, b2 = socket.socketpair()
    return user_ssl(cctx), commssl.SocketStream(a1), commssl.SocketStream(a2), [b1, b2]
def attach(state, i):
    sslp, s1, s2, _ = state
    commssl.attach_ssl((s1, s2)[i], ssl_ctx=sslp, ssl_side="both")
states = []
def setup_round():
    st = setup()
    states.append(st)
    return st
counts = racing.race(lambda st: attach(st, 0), lambda st: attach(st, 1), rounds, setup=setup_round)
per_round = []
for sslp, s1, s2, peers in states:
    per_round.append(sum(x.ssl is sslp for x in (s1, s2)))
# given back at close: the same SSL attaches to a new stream
sslp, s1, s2, peers = states[0]
owner = s1 if s1.ssl is sslp else s2
owner.close()
a, b = socket.socketpair()
again = outcome_text(lambda: commssl.attach_ssl(commssl.SocketStream(a), ssl_ctx=sslp, ssl_side="both"))
racing.report(op=dict(counts["op"]), rival=dict(counts["rival"]), per_round=sorted(set(per_round)),
              again=again)
""")
    rounds = sum(facts["op"].values())
    assert facts["per_round"] == [1]  # never both, never none
    assert facts["op"].get("ok", 0) + facts["rival"].get("ok", 0) == rounds
    assert facts["op"].get("ValueError", 0) + facts["rival"].get("ValueError", 0) == rounds
    assert facts["again"] == "ok"


def test_detach_gives_the_ssl_back_and_a_streams_own_ssl_is_refused() -> None:
    facts = scenario("""
port = serve(echo)
s = client(port)
own = outcome_text(lambda: commssl.attach_ssl(commssl.SocketStream(socket.socket()), ssl_ctx=s.ssl,
                                              ssl_side="both"))
s.close()
sslp = user_ssl(cctx)
a, b = socket.socketpair()
first = commssl.SocketStream(a)
commssl.attach_ssl(first, ssl_ctx=sslp, ssl_side="both")
while_attached = outcome_text(lambda: commssl.attach_ssl(commssl.SocketStream(b), ssl_ctx=sslp,
                                                         ssl_side="both"))
commssl.detach_ssl(first, retry_count=None)
c, d = socket.socketpair()
after_detach = outcome_text(lambda: commssl.attach_ssl(commssl.SocketStream(c), ssl_ctx=sslp,
                                                       ssl_side="both"))
racing.report(own=own, while_attached=while_attached, after_detach=after_detach)
""")
    assert facts["own"].startswith("ValueError: ssl_ctx"), facts["own"]
    assert facts["while_attached"].startswith("ValueError: ssl_ctx"), facts["while_attached"]
    assert facts["after_detach"] == "ok"


# -- 2. one stream per descriptor ---------------------------------------------------------


def test_closing_the_callers_socket_leaves_the_streams_descriptor_alone() -> None:
    """The common ``except: sock.close()``: the caller's socket object is detached at
    construction, so its close frees nothing; the stream still works, a new
    connection gets another number, and the stream's close sends it nothing."""
    facts = scenario("""
port = serve(echo)
plain = socket.socket(); plain.bind(("127.0.0.1", 0)); plain.listen(8)
sock = socket.create_connection(("127.0.0.1", port))
fd = sock.fileno()
s = commssl.create_ssl_socket_stream(sock, cctx, ssl_side="client", tlsext_host_name="localhost",
                                     handshake_timeout=10, timeout=10)
detached = sock.fileno()
sock.close()  # the application "cleans up" the socket it handed over
s.write(b"still\\n")
still = s.readline()
new = socket.create_connection(("127.0.0.1", plain.getsockname()[1]))
other, _ = plain.accept()
same_number = new.fileno() == fd
s.close()
other.settimeout(0.5)
try:
    got = other.recv(100)
except socket.timeout:
    got = None
racing.report(detached=detached, still=still, same_number=same_number, got=got,
              stream_socket_type=type(s.socket).__name__)
""")
    assert facts["detached"] == -1
    assert facts["still"] == "b'still\\n'"
    assert facts["same_number"] is False
    assert facts["got"] is None  # the new connection received nothing
    assert facts["stream_socket_type"] == "StreamSocket"


def test_closing_the_streams_socket_closes_the_stream_and_nothing_goes_to_the_next_owner() -> None:
    """``stream.socket.close()`` is the stream's close (the peer gets close_notify), with
    a reader blocked in another thread too; the number is freed only when the stream is
    done with it, and a later close or finalizer sends nothing to its next owner."""
    facts = scenario("""
plain = socket.socket(); plain.bind(("127.0.0.1", 0)); plain.listen(8)
results = {}
for busy in (False, True):
    srv, cli, errors = handshake_pair()
    assert not errors, errors
    fd = cli.fileno()
    if busy:
        t = threading.Thread(target=lambda: results.setdefault("reader", outcome_text(cli.read1)))
        t.start()
        time.sleep(0.2)
    cli.socket.close()
    if busy:
        t.join(10)
    closed = cli.closed
    try:
        peer = repr(srv.read1(100))  # idle: a clean close (close_notify), b""
    except commssl.SSLError:
        peer = "SSLError"  # busy: the blocked reader is woken by a TCP shutdown, as by close()
    new = socket.create_connection(("127.0.0.1", plain.getsockname()[1]))
    other, _ = plain.accept()
    reused = new.fileno() == fd
    cli.close()
    del cli
    gc.collect()
    other.settimeout(0.5)
    try:
        got = other.recv(100)
    except socket.timeout:
        got = None
    results[str(busy)] = dict(closed=closed, peer=peer, got=got, reused=reused)
    srv.close(); new.close(); other.close()
racing.report(**results)
""")
    for busy in ("False", "True"):
        r = facts[busy]
        assert r["closed"] is True and r["got"] is None, (busy, r)
        assert r["peer"] == ("b''" if busy == "False" else "SSLError"), (busy, r)
    assert facts["reader"].startswith("SSLCondition") or facts["reader"] == "ok", facts["reader"]


def test_a_streams_socket_cannot_be_detached_or_given_to_another_stream() -> None:
    """Nothing but the stream's core closes or hands away its descriptor: ``detach()`` and
    a second stream are refused, and the socket's own finalizer (which a collection taking
    the stream and its socket together may run first) leaves it to the stream's close."""
    facts = scenario("""
srv, cli, errors = handshake_pair()
detach = outcome_text(cli.socket.detach)
second = outcome_text(lambda: commssl.SocketStream(cli.socket))
cli.socket.__del__()  # what the collector calls
fd_after_finalizer = cli.socket.fileno()
cli.write(b"x\\n")
line = srv.readline()
cli.close()
racing.report(detach=detach, second=second, line=line, fd_after_finalizer=fd_after_finalizer,
              peer_end=outcome_text(srv.readline), closed_fd=cli.socket.fileno())
""")
    assert facts["detach"].startswith("ValueError") and facts["second"].startswith("ValueError")
    assert facts["line"] == "b'x\\n'" and facts["fd_after_finalizer"] >= 0
    assert facts["peer_end"] == "ok" and facts["closed_fd"] == -1  # close_notify, then the descriptor closed


# -- 3. a forked child sends nothing ------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "finalizer", "socket_close"])
def test_a_forked_childs_close_leaves_the_parents_connection_working(how: str) -> None:
    facts = scenario(f"""
port = serve(echo)
s = client(port)
s.write(b"before\\n")
before = s.readline()
pid = os.fork()
if pid == 0:
    try:
        if {how!r} == "close":
            s.close()
        elif {how!r} == "socket_close":
            s.socket.close()
        else:
            keep = s.socket  # its own finalizer would close the child's copy of the descriptor first
            del s
            gc.collect()
    finally:
        os._exit(0)
_, status = os.waitpid(pid, 0)
time.sleep(0.2)
rounds = []
for i in range(3):
    s.write(b"after %d\\n" % i)
    rounds.append(s.readline())
s.close()
racing.report(before=before, rounds=rounds, status=status)
""")
    assert facts["status"] == 0
    assert facts["rounds"] == ["b'after 0\\n'", "b'after 1\\n'", "b'after 2\\n'"]


# -- 4. setters and session reads against a handshake in another thread ---------------------

SETTERS = """
dh_path = os.path.join(tempfile.mkdtemp(), "dh.pem")
subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
                "-out", dh_path], check=True, capture_output=True)
dh = commssl.read_dhparams(dh_path)

def reads(p):
    commssl.ssl_connection_group(p); commssl.ssl_connection_cipher(p); commssl.ssl_connection_verify(p)
    commssl.ssl_connection_protocol_version(p); commssl.ssl_connection_server_name(p)
    commssl.ssl_connection_alpn_protocol(p); commssl.ssl_connection_session_reused(p)
    commssl.ssl_connection_ocsp_response(p)
    for c in commssl.ssl_connection_copy_peer_certificates(p):
        commssl.release_certificate(c)
    for c in commssl.ssl_connection_copy_verified_certificates(p):
        commssl.release_certificate(c)
    try:
        commssl.release_session(commssl.ssl_connection_session(p))
    except ValueError:
        pass

HAMMERS = {
    "read_certificates": ("server", lambda p: commssl.ssl_connection_read_certificates(
        p, pki.server_key, cert_file=pki.server_chain)),
    "set_ssl_ctx_dh": ("server", lambda p: commssl.set_ssl_ctx_dh(p, dh=dh)),
    "set_alpn_protocols": ("client", lambda p: commssl.set_alpn_protocols(p, ["h2", "http/1.1"])),
    "set_groups": ("client", lambda p: commssl.set_groups(p, ["X25519", "P-256"])),
    "set_groups_server": ("server", lambda p: commssl.set_groups(p, ["X25519", "P-256"])),
    "set_verification_depth": ("client", lambda p: commssl.set_verification_depth(p, 9)),
    "get_verification_mode": ("client", lambda p: commssl.get_verification_mode(p)),
    "set_ssl_ctx_options": ("client", lambda p: commssl.set_ssl_ctx_options(p)),
    "set_ocsp_stapling": ("client", lambda p: commssl.set_ocsp_stapling(p, False)),
    "set_crl_checking": ("client", lambda p: commssl.set_crl_checking(p, None)),
    "reads_client": ("client", reads),
    "reads_server": ("server", reads),
}

def hammer_round(side, fn):
    a, b = socket.socketpair()
    srv, cli = commssl.SocketStream(a, timeout=10), commssl.SocketStream(b, timeout=10)
    target = srv if side == "server" else cli
    done, calls, results = threading.Event(), [0], []
    def hammer():
        while not done.is_set():
            p = target.ssl
            if p is None:
                continue
            try:
                fn(p)
                calls[0] += 1
            except ValueError:  # freed: the stream was closed
                pass
    def run(stream, **kw):
        results.append(outcome_text(lambda: commssl.attach_ssl(stream, handshake_timeout=10, **kw)))
    threads = [threading.Thread(target=hammer),
               threading.Thread(target=run, args=(srv,), kwargs=dict(ssl_ctx=sctx, ssl_side="server")),
               threading.Thread(target=run, args=(cli,), kwargs=dict(ssl_ctx=cctx, ssl_side="client",
                                                                    tlsext_host_name="localhost"))]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(30)
    done.set()
    threads[0].join(30)
    srv.close(); cli.close()
    return calls[0], results
"""


@pytest.mark.parametrize("name", ["read_certificates", "set_ssl_ctx_dh", "set_alpn_protocols", "set_groups",
                                  "set_groups_server", "set_verification_depth", "get_verification_mode",
                                  "set_ssl_ctx_options", "set_ocsp_stapling", "set_crl_checking",
                                  "reads_client", "reads_server"])
def test_setters_and_session_reads_race_a_handshake_in_another_thread(name: str) -> None:
    """Each SSL-level setter (and the session accessors) called over and over on an SSL
    while it handshakes in another thread: they wait for the SSL's operation lock, so
    OpenSSL never sees both at once (read_certificates crashed 5 of 5 runs before)."""
    facts = scenario(SETTERS + f"""
side, fn = HAMMERS[{name!r}]
calls, outcomes = 0, {{}}
for i in range(int(60 * SCALE) + 3):
    n, results = hammer_round(side, fn)
    calls += n
    for r in results:
        outcomes[r] = outcomes.get(r, 0) + 1
racing.report(calls=calls, outcomes=outcomes)
""")
    assert facts["calls"] > 0
    # the handshakes themselves succeed: the setters set what the handshake uses already
    assert set(facts["outcomes"]) == {"ok"}, facts["outcomes"]


def test_setters_from_the_ssls_own_callbacks_still_work() -> None:
    """Inside a handshake callback the lock is this thread's already: a setter on the
    same SSL (read_certificates from client_hello_callback) goes on without waiting."""
    facts = scenario("""
seen = []
def hello(conn, name):
    commssl.ssl_connection_read_certificates(conn, pki.server_key, cert_file=pki.server_chain)
    commssl.set_alpn_protocols(commssl.ssl_connection_ssl_ref(conn), ["h2"])
    seen.append(commssl.ssl_connection_group(conn))
    return True
actx = commssl.create_ssl_server_context(cert_file=str(pki.server_chain), key_file=str(pki.server_key),
                                         client_hello_callback=hello)
a, b = socket.socketpair()
srv, cli = commssl.SocketStream(a, timeout=10), commssl.SocketStream(b, timeout=10)
t = threading.Thread(target=lambda: commssl.attach_ssl(srv, ssl_ctx=actx, ssl_side="server",
                                                       handshake_timeout=10))
t.start()
commssl.attach_ssl(cli, ssl_ctx=cctx, ssl_side="client", tlsext_host_name="localhost", handshake_timeout=10)
t.join()
cli.write(b"x\\n")
racing.report(seen=seen, line=srv.readline())
""", timeout=60)
    assert facts["seen"] == [None] and facts["line"] == "b'x\\n'"


# -- 5. the accessors before there is a session --------------------------------------------

ACCESSORS = """
def every_accessor(conn):
    out = {}
    def get(name, fn):
        try:
            out[name] = repr(fn())
        except Exception as exc:
            out[name] = type(exc).__name__
    get("copy_peer_certificates", lambda: commssl.ssl_connection_copy_peer_certificates(conn))
    get("get_peer_certificates_data", lambda: commssl.ssl_connection_get_peer_certificates_data(conn))
    get("verify", lambda: commssl.ssl_connection_verify(conn))
    get("protocol_version", lambda: type(commssl.ssl_connection_protocol_version(conn)).__name__)
    get("copy_verified_certificates", lambda: commssl.ssl_connection_copy_verified_certificates(conn))
    get("ocsp_response", lambda: commssl.ssl_connection_ocsp_response(conn))
    get("ocsp_status", lambda: commssl.ssl_connection_ocsp_status(conn))
    get("cipher", lambda: commssl.ssl_connection_cipher(conn))
    get("group", lambda: commssl.ssl_connection_group(conn))
    get("alpn_protocol", lambda: commssl.ssl_connection_alpn_protocol(conn))
    get("session", lambda: commssl.ssl_connection_session(conn))
    get("session_reused", lambda: commssl.ssl_connection_session_reused(conn))
    get("server_name", lambda: type(commssl.ssl_connection_server_name(conn)).__name__)
    return out
"""

EXPECTED = {
    "copy_peer_certificates": "CertificateVector([])", "get_peer_certificates_data": "[]",
    "verify": "(False, 1)",
    "protocol_version": "'str'", "copy_verified_certificates": "[]", "ocsp_response": "None",
    "ocsp_status": "None", "cipher": "''", "group": "None", "alpn_protocol": "None",
    "session": "ValueError", "session_reused": "False",
}


@pytest.mark.parametrize("where", ["attach_both", "ssl_configure_callback", "client_hello_callback"])
def test_every_accessor_before_a_session(where: str) -> None:
    """Every ``ssl_connection_*`` accessor where OpenSSL has no session yet: after
    ``attach_ssl(ssl_side="both")``, inside ``ssl_configure_callback`` and inside a
    server's ``client_hello_callback`` (``ssl_connection_group`` read a NULL session
    there: a segfault on OpenSSL 3.0). Each returns its documented empty value."""
    facts = scenario(ACCESSORS + f"""
where = {where!r}
found = []
if where == "attach_both":
    a, b = socket.socketpair()
    s = commssl.SocketStream(a)
    commssl.attach_ssl(s, ssl_ctx=cctx, ssl_side="both")
    found.append(every_accessor(s))
elif where == "ssl_configure_callback":
    a, b = socket.socketpair()
    s = commssl.SocketStream(a)
    commssl.attach_ssl(s, ssl_ctx=True, ssl_side="both", ssl_configure_callback=lambda p: found.append(
        every_accessor(p)))
else:
    def hello(conn, name):
        found.append(every_accessor(conn))
        return True
    actx = commssl.create_ssl_server_context(cert_file=str(pki.server_chain), key_file=str(pki.server_key),
                                             client_hello_callback=hello)
    a, b = socket.socketpair()
    srv, cli = commssl.SocketStream(a, timeout=10), commssl.SocketStream(b, timeout=10)
    t = threading.Thread(target=lambda: commssl.attach_ssl(srv, ssl_ctx=actx, ssl_side="server",
                                                           handshake_timeout=10))
    t.start()
    commssl.attach_ssl(cli, ssl_ctx=cctx, ssl_side="client", tlsext_host_name="localhost",
                       handshake_timeout=10)
    t.join()
racing.report(found=found)
""", timeout=60)
    assert len(facts["found"]) == 1
    got = facts["found"][0]
    expected = dict(EXPECTED)
    # no SNI is set on a client SSL of its own; a server knows the client's, if any, only
    # once OpenSSL has parsed the extension (after client_hello_callback)
    expected["server_name"] = "'NoneType'"
    assert got == expected, got


@pytest.mark.parametrize("front", ["anyio.wrap", "open_tcp_stream_async"])
def test_a_stream_that_cannot_be_made_gives_the_ssl_back(front: str, monkeypatch: Any) -> None:
    """The stream object failing between new_ssl and the attach leaves the SSLPointer
    passed in unclaimed: another connection may take it."""
    import asyncio
    import socket

    import anyio

    import commssl
    import commssl.anyio
    from commssl import aio, lib

    ctx = commssl.make_ssl_ctx(True, "client")
    sslp = commssl.SSLPointer(lib.SSL_new(ctx.cdata))
    lib.SSL_free(sslp.cdata)  # the wrapper holds its own reference
    boom = MemoryError("the stream object could not be made")

    def refuse(*args: Any, **kw: Any) -> None:
        raise boom

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        if front == "anyio.wrap":
            monkeypatch.setattr(commssl.anyio.TLSStream, "__init__", refuse)

            async def attempt() -> None:
                tcp = await anyio.connect_tcp("127.0.0.1", port)
                await commssl.anyio.wrap(tcp, ssl_ctx=sslp, ssl_side="client", check_hostname=False)

            with pytest.raises(MemoryError):
                anyio.run(attempt)
        else:
            monkeypatch.setattr(aio.AsyncSSLStream, "__init__", refuse)
            with pytest.raises(MemoryError):
                asyncio.run(commssl.open_tcp_stream_async("127.0.0.1", port, ssl_ctx=sslp,
                                                          check_hostname=False))
        assert not sslp._claimed
    finally:
        listener.close()
        commssl.destroy_ssl_ctx(ctx)
