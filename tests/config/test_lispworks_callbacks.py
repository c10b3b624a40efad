"""set_ssl_ctx_cert_cb, ssl_connection_read_certificates, and the abstract contexts'
protocol_version, dh_file, client_hello_callback, cert_request_callback and
reset_ssl_abstract_context, against openssl s_client / s_server and CPython ssl."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, List, Optional

import pytest

import commssl
from helpers import HS
from peers import PKI, cpython_tls_client, openssl_client, openssl_server


def subject_cn(out: bytes) -> str:
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("subject=") or line.startswith("subject ="):
            return line.split("CN", 1)[1].lstrip(" =")
    return ""


# -- set_ssl_ctx_cert_cb --------------------------------------------------------------------


@pytest.mark.parametrize("form", ["pointers", "pem-bytes"])
def test_server_cert_cb_chooses_the_certificate(pki: PKI, commssl_server: Any, form: str) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")  # no certificate of its own
    seen: List[Any] = []
    if form == "pointers":
        pair = (commssl.pem_read("X509", pki.other_cert), commssl.pem_read("PrivateKey", pki.other_key))
    else:
        pair = (pki.server_chain.read_bytes(), pki.server_key.read_bytes())

    def choose(ssl_pointer: commssl.SSLPointer) -> Any:
        seen.append(ssl_pointer)
        return pair

    commssl.set_ssl_ctx_cert_cb(ctx, choose)
    server = commssl_server(ctx)
    out = openssl_client(server.port, input=b"hi\n", extra_args=("-ign_eof", "-showcerts"))
    server.join()
    assert not server.errors, server.errors
    assert len(seen) == 1 and isinstance(seen[0], commssl.SSLPointer)
    if form == "pointers":
        assert "commssl other" in subject_cn(out.stdout) or b"other" in out.stdout
        commssl.release_certificate(pair[0])
        pair[1].release()
    else:
        assert b"commssl test intermediate" in out.stdout  # the chain was sent with it
    commssl.destroy_ssl_ctx(ctx)


def test_server_cert_cb_none_keeps_the_contexts(pki: PKI, server_ctx: Any, commssl_server: Any) -> None:
    ctx = server_ctx()
    commssl.set_ssl_ctx_cert_cb(ctx, lambda ssl_pointer: None)
    server = commssl_server(ctx)
    client = cpython_tls_client(server.port, cafile=pki.root_cert, server_hostname="localhost")
    client.sendall(b"x\n")
    assert client.recv(10) == b"x\n"
    client.close()
    server.join()
    assert not server.errors and client is not None


def test_client_cert_cb_sends_a_certificate_when_asked(pki: PKI, client_ctx: Any) -> None:
    ctx = client_ctx()
    calls: List[Any] = []

    def choose(ssl_pointer: commssl.SSLPointer) -> Any:
        calls.append(ssl_pointer)
        return (pki.client_chain.read_bytes(), pki.client_key.read_bytes())

    commssl.set_ssl_ctx_cert_cb(ctx, choose)
    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=1) as server:
        with commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx, tlsext_host_name="localhost",
                                     handshake_timeout=HS, timeout=HS) as stream:
            stream.write(b"abc\n")
            assert stream.readline() == b"cba\n"
        server.wait_for("commssl client")
    assert len(calls) == 1


def test_cert_cb_arguments(client_ctx: Any) -> None:
    with pytest.raises(TypeError, match="callable"):
        commssl.set_ssl_ctx_cert_cb(client_ctx(), 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ctx"):
        commssl.set_ssl_ctx_cert_cb("ctx", lambda s: None)


# -- abstract contexts --------------------------------------------------------------------------


def test_client_hello_callback_switches_the_certificate(pki: PKI, commssl_server: Any) -> None:
    names: List[Optional[str]] = []

    def hello(conn: Any, server_name: Optional[str]) -> bool:
        names.append(server_name)
        if server_name == "other.example":
            commssl.ssl_connection_read_certificates(conn, pki.other_key, cert_file=pki.other_chain)
        return True

    ctx = commssl.create_ssl_server_context(cert_file=str(pki.server_chain), key_file=str(pki.server_key),
                                            client_hello_callback=hello)
    server = commssl_server(ctx, count=2)
    other = openssl_client(server.port, servername="other.example", input=b"x\n", extra_args=("-ign_eof",))
    default = openssl_client(server.port, servername="localhost", input=b"x\n", extra_args=("-ign_eof",))
    server.join()
    assert not server.errors, server.errors
    assert names == ["other.example", "localhost"]
    assert b"commssl other" in other.stdout and b"CN = localhost" in default.stdout.replace(b"CN=", b"CN = ")


def test_client_hello_callback_falsy_aborts(pki: PKI, commssl_server: Any) -> None:
    ctx = commssl.create_ssl_server_context(cert_file=str(pki.server_chain), key_file=str(pki.server_key),
                                            client_hello_callback=lambda conn, name: None)
    server = commssl_server(ctx)
    out = openssl_client(server.port, servername="localhost")
    server.join()
    assert out.returncode != 0
    assert len(server.errors) == 1 and isinstance(server.errors[0], commssl.SSLFailure)
    assert server.errors[0].ssl_code == "client-hello-callback"


def test_cert_request_callback(pki: PKI) -> None:
    asked: List[Any] = []
    ctx = commssl.create_ssl_client_context(
        cert_file=str(pki.client_chain), key_file=str(pki.client_key),
        openssl_trusted_file=str(pki.root_cert),
        cert_request_callback=lambda conn: asked.append(conn) or True)
    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=1) as server:
        with commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx, tlsext_host_name="localhost",
                                     handshake_timeout=HS, timeout=HS) as stream:
            stream.write(b"abc\n")
            assert stream.readline() == b"cba\n"
    assert len(asked) == 1 and isinstance(asked[0], commssl.SocketStream)
    refusing = commssl.create_ssl_client_context(
        cert_file=str(pki.client_chain), key_file=str(pki.client_key),
        openssl_trusted_file=str(pki.root_cert), cert_request_callback=lambda conn: False)
    with openssl_server(pki.server_chain, pki.server_key, cafile=pki.root_cert, Verify=1) as server:
        with pytest.raises(commssl.SSLFailure) as info:
            commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=refusing, tlsext_host_name="localhost",
                                    handshake_timeout=HS, timeout=HS)
    assert info.value.ssl_code == "cert-request-callback"
    # not asked: not called
    with openssl_server(pki.server_chain, pki.server_key) as server:
        with commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=refusing, tlsext_host_name="localhost",
                                     handshake_timeout=HS, timeout=HS) as stream:
            stream.write(b"ok\n")
            assert stream.readline() == b"ko\n"


def test_protocol_version(pki: PKI) -> None:
    ctx = commssl.create_ssl_client_context(openssl_trusted_file=str(pki.root_cert),
                                            protocol_version="tls-v1-3")
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-tls1_2",)) as server:
        with pytest.raises(commssl.SSLCondition):
            commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx, tlsext_host_name="localhost",
                                    handshake_timeout=HS, timeout=HS)
    ctx12 = commssl.create_ssl_client_context(openssl_trusted_file=str(pki.root_cert), protocol_version=True)
    with openssl_server(pki.server_chain, pki.server_key, extra_args=("-tls1_2",)) as server:
        with commssl.open_tcp_stream("127.0.0.1", server.port, ssl_ctx=ctx12, tlsext_host_name="localhost",
                                     handshake_timeout=HS, timeout=HS) as stream:
            assert commssl.ssl_connection_protocol_version(stream) == "tls-v1-2"
    with pytest.raises(ValueError, match="protocol_version"):
        commssl.create_ssl_client_context(protocol_version="tls-v1-1")


def test_dh_file_and_reset_rereads_the_files(pki: PKI, tmp_path: Path, commssl_server: Any) -> None:
    def run(*args: Any) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=first", "-days", "2",
        "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem")
    run("genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
        "-out", tmp_path / "dh.pem")
    ctx = commssl.create_ssl_server_context(cert_file=str(tmp_path / "cert.pem"),
                                            key_file=str(tmp_path / "key.pem"),
                                            dh_file=str(tmp_path / "dh.pem"))
    first = ctx.ssl_ctx_pointer
    dhe = ("-cipher", "DHE-RSA-AES128-GCM-SHA256", "-tls1_2", "-ign_eof")
    server = commssl_server(ctx, handler=lambda s: (commssl.ssl_connection_cipher(s), s.write(s.readline())))
    out = openssl_client(server.port, extra_args=dhe, input=b"x\n")
    server.join()
    assert not server.errors and server.results[0][0] == "DHE-RSA-AES128-GCM-SHA256", out.stderr
    assert b"CN = first" in out.stdout.replace(b"CN=", b"CN = ")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=second", "-days", "2",
        "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem")
    assert ctx.ssl_ctx_pointer is first  # files are read again only after a reset
    commssl.reset_ssl_abstract_context(ctx)
    server = commssl_server(ctx, handler=lambda s: (commssl.ssl_connection_cipher(s), s.write(s.readline())))
    out = openssl_client(server.port, extra_args=dhe, input=b"x\n")
    server.join()
    assert not server.errors and server.results[0][0] == "DHE-RSA-AES128-GCM-SHA256", out.stderr
    assert b"CN = second" in out.stdout.replace(b"CN=", b"CN = ")
    assert ctx.ssl_ctx_pointer is not first
    with pytest.raises(TypeError):
        commssl.reset_ssl_abstract_context(first)  # type: ignore[arg-type]


def test_ssl_connection_read_certificates_errors(pki: PKI, tmp_path: Path, commssl_server: Any) -> None:
    errors: List[BaseException] = []

    def hello(conn: Any, server_name: Optional[str]) -> bool:
        for kw in ({"cert_file": tmp_path / "missing.pem"},
                   {"cert_file": pki.server_chain, "password": "wrong"}):
            try:
                commssl.ssl_connection_read_certificates(conn, pki.encrypted_key, **kw)
            except commssl.SSLFailure as exc:
                errors.append(exc)
        commssl.ssl_connection_read_certificates(conn, pki.encrypted_key, cert_file=pki.server_chain,
                                                 password_callback=lambda n, rw: pki.encrypted_key_password)
        return True

    ctx = commssl.create_ssl_server_context(cert_file=str(pki.other_chain), key_file=str(pki.other_key),
                                            client_hello_callback=hello)
    server = commssl_server(ctx)
    client = cpython_tls_client(server.port, cafile=pki.root_cert, server_hostname="localhost")
    client.sendall(b"x\n")
    assert client.recv(10) == b"x\n"
    client.close()
    server.join()
    assert not server.errors, server.errors
    assert len(errors) == 2 and client is not None
    # the missing cert_file is a FileNotFoundError naming it (still an SSLFailure)
    assert isinstance(errors[0], FileNotFoundError) and errors[0].filename == str(tmp_path / "missing.pem")
    assert not isinstance(errors[1], FileNotFoundError)
