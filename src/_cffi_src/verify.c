/* verify.c: the verify trampolines OpenSSL calls (per certificate, whole chain),
   the failure notes they keep in the SSL's record, and SSLs made outside commssl
   ("foreign": governed by their context's record). */

#include "commssl.h"

/* @cdef
int commssl_verify_cb(int, X509_STORE_CTX *);
int commssl_cert_verify_cb(X509_STORE_CTX *, void *);
int commssl_decide_no_cert(SSL *);
extern "Python" int _commssl_verify_py(commssl_state *, int, X509_STORE_CTX *);
extern "Python" int _commssl_conn_verify_py(commssl_state *, int, X509_STORE_CTX *);
extern "Python" int _commssl_foreign_verify_py(commssl_ctx_state *, SSL *, int, int, X509_STORE_CTX *);
@end */

static SSL *commssl_store_ssl(X509_STORE_CTX *store)
{
    return (SSL *)X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
}

/* The verify callback commssl installs for Python callables and for "no
   callback": records the first failure (for SSLVerificationFailure.depth),
   and calls Python only when the connection has a Python callable. Fail
   closed: an SSL without a commssl record made from a context with a Python
   callback (lib.SSL_new(ctx.cdata)) is verified by the context's callback
   through the context's record, and fails when that cannot be reached; the
   Python side fails when the wrapper is gone. */
static void commssl_note_failure(commssl_state *st, X509_STORE_CTX *store)
{
    if (st->fail_count++ == 0) {
        st->fail_depth = X509_STORE_CTX_get_error_depth(store);
        st->fail_error = X509_STORE_CTX_get_error(store);
    }
}

/* An SSL without a record: 1 when its context asks for no Python (OpenSSL's
   verdict stands), else what the context's Python callable says (0 when it
   cannot be reached). kind 0: per-certificate callback, 1: verify_callback(conn). */
static int commssl_foreign(SSL *ssl, int kind, int ok, X509_STORE_CTX *store, int *decided)
{
    commssl_ctx_state *cs = ssl != NULL ? commssl_get_ctx_state(SSL_get_SSL_CTX(ssl)) : NULL;
    int wanted = cs != NULL && (kind == 0 ? cs->py_verify : cs->conn_verify);
    *decided = wanted;
    if (!wanted)
        return ok;
    return _commssl_foreign_verify_py(cs, ssl, kind, ok, store);
}

int commssl_verify_cb(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = commssl_store_ssl(store);
    commssl_state *st = commssl_get_state(ssl);
    int before = X509_STORE_CTX_get_error(store);
    int accepted;
    if (st == NULL) {
        int decided;
        accepted = commssl_foreign(ssl, 0, ok, store, &decided);
        if (decided && ok && !accepted && X509_STORE_CTX_get_error(store) == before)
            X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return decided ? accepted : ok;
    }
    if (!ok)
        commssl_rv_note_store(store, 0);  /* what OpenSSL reports, whatever the callback decides */
    if (st->py_verify) {
        accepted = _commssl_verify_py(st, ok, store);
        /* A rejection of a good certificate is the application's, unless the
           callback set its own code with x509_store_ctx_set_error: keep that. */
        if (ok && !accepted && X509_STORE_CTX_get_error(store) == before)
            X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        if (ok && !accepted)
            commssl_rv_note_store(store, 0);
        ok = accepted;
    }
    if (!ok)
        commssl_note_failure(st, store);
    return ok;
}

/* Whole-chain callback for abstract contexts' verify_callback(conn): OpenSSL
   checks the chain first, then Python decides (closed when it cannot). */
int commssl_cert_verify_cb(X509_STORE_CTX *store, void *arg)
{
    int ok = X509_verify_cert(store);
    SSL *ssl = commssl_store_ssl(store);
    commssl_state *st = commssl_get_state(ssl);
    int accepted, decided = 1;
    (void)arg;
    if (st != NULL)
        accepted = st->conn_verify && _commssl_conn_verify_py(st, ok > 0, store);
    else
        accepted = commssl_foreign(ssl, 1, ok > 0, store, &decided) && decided;
    if (accepted)
        return 1;
    if (ok > 0)
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    if (ok > 0)  /* the application's rejection (OpenSSL's were noted per certificate) */
        commssl_rv_note_store(store, 1);
    if (st != NULL && st->fail_count++ == 0) {
        st->fail_depth = 0;
        st->fail_error = X509_STORE_CTX_get_error(store);
    }
    return 0;
}

/* A server's verify_callback(conn) when the client sent no certificate. OpenSSL
   verifies nothing then (tls_process_client_certificate skips the chain check
   for an empty Certificate message and offers no hook: only
   SSL_VERIFY_FAIL_IF_NO_PEER_CERT can end the handshake there), so the callback
   runs once the handshake returns, before the connection is used: on a store
   context holding no certificate, whose error is X509_V_ERR_UNSPECIFIED, so that
   ssl_connection_copy_peer_certificates gives [] and ssl_connection_verify
   (False, X509_V_ERR_UNSPECIFIED). Returns 1 accepted, 0 rejected (a callback's
   exception is parked on the wrapper), -1 out of memory, 2 nothing to decide
   (not a commssl server SSL with verify_callback(conn), or a certificate came:
   then the callback ran inside the handshake). */
int commssl_decide_no_cert(SSL *ssl)
{
    commssl_state *st = commssl_get_state(ssl);
    X509_STORE_CTX *store;
    int ok;

    if (st == NULL || !st->conn_verify || !SSL_is_server(ssl) || SSL_get0_peer_certificate(ssl) != NULL)
        return 2;
    store = X509_STORE_CTX_new();
    if (store == NULL)
        return -1;
    if (!X509_STORE_CTX_init(store, SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), NULL, NULL)
        || !X509_STORE_CTX_set_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx(), ssl)) {
        X509_STORE_CTX_free(store);
        return -1;
    }
    X509_STORE_CTX_set_error(store, X509_V_ERR_UNSPECIFIED);
    ok = _commssl_conn_verify_py(st, 0, store);
    X509_STORE_CTX_free(store);
    return ok ? 1 : 0;
}
