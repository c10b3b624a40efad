"""DH parameters and keys: read_dhparams, set_ssl_ctx_dh (a TLS 1.2 DHE handshake
with openssl s_client), pem_read of "PrivateKey" / "DHparams", pass phrases,
read_certificate_key_pairs, ssl_connection_read_dh_params_file."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest

import commssl
from peers import PKI, openssl_client

DHE = "DHE-RSA-AES128-GCM-SHA256"


@pytest.fixture(scope="module")
def rsa(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """An RSA certificate and key (DHE-RSA needs them), ffdhe2048 DH parameters (PEM
    and DER), an encrypted copy of the key, and a cert+key pairs file."""
    d = tmp_path_factory.mktemp("lw-rsa")
    files = {name: d / name for name in ("cert.pem", "key.pem", "dh.pem", "dh.der", "enc.pem", "pairs.pem")}

    def run(*args: Any) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "2",
        "-keyout", files["key.pem"], "-out", files["cert.pem"])
    run("genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out", files["dh.pem"])
    run("dhparam", "-in", files["dh.pem"], "-outform", "DER", "-out", files["dh.der"])
    run("pkey", "-in", files["key.pem"], "-aes256", "-passout", "pass:s3cret", "-traditional",
        "-out", files["enc.pem"])
    files["pairs.pem"].write_bytes(files["cert.pem"].read_bytes() + files["key.pem"].read_bytes())
    return files


def _dhe_server(commssl_server: Any, ctx: Any, **kw: Any) -> Any:
    return commssl_server(ctx, handler=lambda s: (commssl.ssl_connection_cipher(s), s.write(s.readline())),
                          **kw)


def test_read_dhparams_pem_der_cache_force(rsa: Dict[str, Path]) -> None:
    dh = commssl.read_dhparams(rsa["dh.pem"])
    assert isinstance(dh, commssl.KeyPointer) and dh.is_dh and dh.bits == 2048
    assert commssl.read_dhparams(rsa["dh.pem"]) is dh  # cached per file name
    fresh = commssl.read_dhparams(rsa["dh.pem"], force=True)
    assert fresh is not dh and commssl.read_dhparams(rsa["dh.pem"]) is fresh
    der = commssl.pem_read("DHparams", rsa["dh.der"])
    assert der.is_dh and der.bits == 2048
    der.release()
    with pytest.raises(ValueError, match="already released"):
        der.release()
    with pytest.raises(ValueError, match="released"):
        der.bits  # noqa: B018


def test_read_dhparams_failures(rsa: Dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(commssl.SSLFailure, match="cannot open"):
        commssl.read_dhparams(tmp_path / "missing.pem")
    assert commssl.read_dhparams(tmp_path / "missing.pem", errorp=False) is None
    with pytest.raises(commssl.SSLFailure, match="no DH parameters"):
        commssl.read_dhparams(rsa["cert.pem"])
    assert commssl.pem_read("DHparams", rsa["key.pem"], errorp=False) is None
    with pytest.raises(TypeError, match="filename"):
        commssl.read_dhparams(42)  # type: ignore[arg-type]


def test_dhe_handshake_with_openssl_s_client(rsa: Dict[str, Path], commssl_server: Any) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, rsa["cert.pem"])
    commssl.ssl_ctx_use_privatekey_file(ctx, rsa["key.pem"])
    assert commssl.set_ssl_ctx_dh(ctx, filename=rsa["dh.pem"]) is True
    server = _dhe_server(commssl_server, ctx)
    out = openssl_client(server.port, extra_args=("-cipher", DHE, "-tls1_2", "-ign_eof"), input=b"hello\n")
    server.join()
    assert not server.errors, server.errors
    assert server.results[0][0] == DHE
    assert b"hello" in out.stdout and DHE.encode() in out.stdout
    commssl.destroy_ssl_ctx(ctx)


def test_dh_pointer_stays_the_callers(rsa: Dict[str, Path], commssl_server: Any) -> None:
    dh = commssl.pem_read("DHparams", rsa["dh.pem"])
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, rsa["cert.pem"])
    commssl.ssl_ctx_use_privatekey_file(ctx, rsa["key.pem"])
    commssl.set_ssl_ctx_dh(ctx, dh=dh)
    dh.release()  # the context holds its own reference
    server = _dhe_server(commssl_server, ctx)
    out = openssl_client(server.port, extra_args=("-cipher", DHE, "-tls1_2", "-ign_eof"), input=b"x\n")
    server.join()
    assert not server.errors and server.results[0][0] == DHE, out.stderr
    commssl.destroy_ssl_ctx(ctx)


def test_without_dh_no_dhe(rsa: Dict[str, Path], commssl_server: Any) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, rsa["cert.pem"])
    commssl.ssl_ctx_use_privatekey_file(ctx, rsa["key.pem"])
    server = _dhe_server(commssl_server, ctx)
    out = openssl_client(server.port, extra_args=("-cipher", DHE, "-tls1_2"))
    server.join()
    assert out.returncode != 0 and server.errors
    commssl.destroy_ssl_ctx(ctx)


def test_per_connection_dh_params_file(rsa: Dict[str, Path], commssl_server: Any) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    commssl.ssl_ctx_use_certificate_chain_file(ctx, rsa["cert.pem"])
    commssl.ssl_ctx_use_privatekey_file(ctx, rsa["key.pem"])
    server = _dhe_server(commssl_server, ctx, ssl_configure_callback=lambda ssl: (
        commssl.ssl_connection_read_dh_params_file(ssl, rsa["dh.der"])))
    out = openssl_client(server.port, extra_args=("-cipher", DHE, "-tls1_2", "-ign_eof"), input=b"x\n")
    server.join()
    assert not server.errors and server.results[0][0] == DHE, out.stderr
    commssl.destroy_ssl_ctx(ctx)


def test_set_ssl_ctx_dh_arguments(rsa: Dict[str, Path], pki: PKI) -> None:
    ctx = commssl.make_ssl_ctx(True, "server")
    with pytest.raises(ValueError, match="dh or filename"):
        commssl.set_ssl_ctx_dh(ctx)
    key = commssl.pem_read("PrivateKey", rsa["key.pem"])
    with pytest.raises(ValueError, match="not DH parameters"):
        commssl.set_ssl_ctx_dh(ctx, dh=key)
    with pytest.raises(TypeError, match="KeyPointer"):
        commssl.set_ssl_ctx_dh(ctx, dh="dh")  # type: ignore[arg-type]
    key.release()
    commssl.destroy_ssl_ctx(ctx)
    with pytest.raises(ValueError, match="destroyed"):
        commssl.set_ssl_ctx_dh(ctx, filename=rsa["dh.pem"])


def test_pem_read_private_keys_and_pass_phrases(rsa: Dict[str, Path], pki: PKI) -> None:
    key = commssl.pem_read("PrivateKey", rsa["key.pem"])
    assert isinstance(key, commssl.KeyPointer) and key.bits == 2048 and not key.is_dh
    key.release()
    ec = commssl.pem_read("PrivateKey", pki.server_key)
    assert ec.bits == 256
    ec.release()
    enc = commssl.pem_read("PrivateKey", rsa["enc.pem"], pass_phrase="s3cret")
    assert enc.bits == 2048
    enc.release()
    calls = []
    enc = commssl.pem_read("PrivateKey", rsa["enc.pem"],
                           callback=lambda n, rw: calls.append((n, rw)) or b"s3cret")
    assert calls and calls[0][1] is False
    enc.release()
    with pytest.raises(commssl.SSLFailure):
        commssl.pem_read("PrivateKey", rsa["enc.pem"])  # no pass phrase: no prompt, a failure
    with pytest.raises(commssl.SSLFailure):
        commssl.pem_read("PrivateKey", rsa["enc.pem"], pass_phrase="wrong")
    assert commssl.pem_read("PrivateKey", rsa["enc.pem"], pass_phrase="wrong", errorp=False) is None

    class Boom(Exception):
        pass

    def boom(n: int, rw: bool) -> bytes:
        raise Boom("from the callback")

    with pytest.raises(Boom):
        commssl.pem_read("PrivateKey", rsa["enc.pem"], callback=boom)
    with pytest.raises(TypeError, match="str or bytes"):
        commssl.pem_read("PrivateKey", rsa["enc.pem"], callback=lambda n, rw: 42)
    with pytest.raises(ValueError, match="not both"):
        commssl.pem_read("PrivateKey", rsa["enc.pem"], pass_phrase="a", callback=lambda n, rw: "a")
    with pytest.raises(ValueError, match="X509"):
        commssl.pem_read("RSAPrivateKey", rsa["key.pem"])
    cert = commssl.pem_read("X509", rsa["cert.pem"])
    assert commssl.get_certificate_common_name(cert) == "localhost"
    commssl.release_certificate(cert)


def test_read_certificate_key_pairs(rsa: Dict[str, Path], pki: PKI, tmp_path: Path) -> None:
    both = tmp_path / "both.pem"
    both.write_bytes(rsa["pairs.pem"].read_bytes() + pki.server_key.read_bytes()
                     + pki.server_cert.read_bytes())
    pairs = commssl.read_certificate_key_pairs(both)
    assert [commssl.get_certificate_common_name(c) for c, _ in pairs] == ["localhost", "localhost"]
    assert [k.bits for _, k in pairs] == [2048, 256]
    for cert, key in pairs:
        assert cert.owned
        commssl.release_certificate(cert)
        key.release()
    assert commssl.read_certificate_key_pairs(rsa["cert.pem"]) == []


def test_replaced_cached_dhparams_are_freed_without_a_warning(rsa: Dict[str, Path]) -> None:
    import gc
    import warnings

    commssl.read_dhparams(rsa["dh.der"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        commssl.read_dhparams(rsa["dh.der"], force=True)  # the first one is dropped by the cache
        gc.collect()


def test_read_certificate_key_pairs_encrypted_keys(rsa: Dict[str, Path], tmp_path: Path) -> None:
    pkcs8 = tmp_path / "k8.pem"
    subprocess.run(["openssl", "pkey", "-in", str(rsa["key.pem"]), "-aes256", "-passout", "pass:s3cret",
                    "-out", str(pkcs8)], check=True, capture_output=True)
    for key_file in (rsa["enc.pem"], pkcs8):
        pairs_file = tmp_path / "pairs.pem"
        pairs_file.write_bytes(key_file.read_bytes() + rsa["cert.pem"].read_bytes())  # key first
        asked: list = []
        pairs = commssl.read_certificate_key_pairs(
            pairs_file, callback=lambda n, rw, asked=asked: asked.append(rw) or "s3cret")
        assert len(pairs) == 1 and asked == [False]
        commssl.release_certificate(pairs[0][0])
        pairs[0][1].release()
        with pytest.raises(commssl.SSLFailure):
            commssl.read_certificate_key_pairs(pairs_file)  # no pass phrase: no prompt
