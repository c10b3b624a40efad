/* revocation.c: CRLs, OCSP stapling (client checks inside the handshake, server staples),
   the verified chain, and the verification errors of a handshake. Its state is its
   part of the records (commssl.h, records.c), freed with the SSL / SSL_CTX whoever
   made it:
   - per SSL (commssl_rv): the client's OCSP mode when set on the SSL, every
     verification error the verify callbacks saw (depth, code, subject), the
     certificates the peer sent at the first failure (a failed handshake does
     not keep them), and the OCSP failure that ended the handshake;
   - per SSL_CTX (commssl_ctx_rv): the client's OCSP mode, and what a server
     staples (bytes, or ask Python per handshake), under a lock;
   - per SSL_SESSION: the mark of a full handshake that checked a good staple. */

#include "commssl.h"

/* @cdef
int commssl_copy_verified_chain(SSL *, X509_STORE_CTX *, X509 **, int);
int commssl_failure_chain(SSL *, X509 **, int);
int commssl_verify_errors(SSL *, int, int *, int *, char **);
int commssl_ocsp_failed(SSL *);
int commssl_ocsp_unreadable(SSL *);
int commssl_load_crls(SSL_CTX *, const unsigned char *, size_t);
int commssl_set_ocsp_mode(SSL_CTX *, SSL *, int);
int commssl_set_staple(SSL_CTX *, const unsigned char *, size_t, int);
int commssl_staple_ssl(SSL *, const unsigned char *, size_t);
int commssl_ocsp_check(SSL *, X509_STORE_CTX *, const unsigned char *, long, commssl_ocsp_result *);
// resumption under ocsp_stapling="require" (sessions.py)
int commssl_ocsp_session_ok(SSL *, SSL_SESSION *);
int commssl_ocsp_resumed_ok(SSL *);
extern "Python" int _commssl_staple_py(void *, SSL *);
@end */

/* Empty the verification notes (a new verification starts, or the SSL goes). */
static void commssl_rv_clear(commssl_rv *rv)
{
    int i;
    for (i = 0; i < rv->n_errors; i++)
        OPENSSL_free(rv->errors[i].subject);
    rv->n_errors = 0;
    rv->ocsp_failed = 0;
    sk_X509_pop_free(rv->sent, X509_free);
    rv->sent = NULL;
}

/* The SSL's part (create: made on first use; NULL when none, or out of memory). */
static commssl_rv *commssl_rv_get(SSL *ssl, int create)
{
    commssl_ssl_rec *r = create ? commssl_ssl_rec_make(ssl) : commssl_ssl_rec_of(ssl);
    return r != NULL ? &r->rv : NULL;
}

static commssl_ctx_rv *commssl_ctx_rv_get(SSL_CTX *ctx, int create)
{
    commssl_ctx_rec *r = create ? commssl_ctx_rec_make(ctx) : commssl_ctx_rec_of(ctx);
    return r != NULL ? &r->rv : NULL;
}
static char *commssl_name_text(X509 *x)
{
    BIO *mem;
    char *data, *copy = NULL;
    long len;
    if (x == NULL || (mem = BIO_new(BIO_s_mem())) == NULL)
        return NULL;
    if (X509_NAME_print_ex(mem, X509_get_subject_name(x), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        len = BIO_get_mem_data(mem, &data);
        copy = OPENSSL_strndup(data, (size_t)len);
    }
    BIO_free(mem);
    return copy;
}

/* Note a verification error: from a verify callback (store: the verification
   running; a new one starts a new list) or from the OCSP check (store NULL). */
static void commssl_rv_note(SSL *ssl, int depth, int code, X509 *cert, X509_STORE_CTX *store)
{
    commssl_rv *rv = commssl_rv_get(ssl, 1);
    commssl_verr *e;
    if (rv == NULL)
        return;
    if (store != NULL && store != rv->store) {
        commssl_rv_clear(rv);
        rv->store = store;  /* compared, never dereferenced */
    }
    if (rv->sent == NULL && store != NULL) {
        STACK_OF(X509) *sk = X509_STORE_CTX_get0_untrusted(store);
        if (sk != NULL && sk_X509_num(sk) > 0) {
            rv->sent = X509_chain_up_ref(sk);
        } else if (X509_STORE_CTX_get0_cert(store) != NULL && (rv->sent = sk_X509_new_null()) != NULL) {
            X509 *leaf = X509_STORE_CTX_get0_cert(store);
            if (X509_up_ref(leaf) && !sk_X509_push(rv->sent, leaf))
                X509_free(leaf);
        }
    }
    if (rv->n_errors >= COMMSSL_MAX_ERRORS)
        return;
    e = &rv->errors[rv->n_errors++];
    e->depth = depth;
    e->code = code;
    e->subject = commssl_name_text(cert);
}

/* The current error of a verification (leaf: at depth 0, for whole-chain
   callbacks), noted for the SSL being verified. */
static void commssl_rv_note_store(X509_STORE_CTX *store, int leaf)
{
    commssl_rv_note(commssl_store_ssl(store), leaf ? 0 : X509_STORE_CTX_get_error_depth(store),
                    X509_STORE_CTX_get_error(store),
                    leaf ? X509_STORE_CTX_get0_cert(store) : X509_STORE_CTX_get_current_cert(store), store);
}

int commssl_verify_errors(SSL *ssl, int i, int *depth, int *code, char **subject)
{
    commssl_rv *rv = commssl_rv_get(ssl, 0);
    if (rv == NULL)
        return 0;
    if (i >= 0 && i < rv->n_errors) {
        *depth = rv->errors[i].depth;
        *code = rv->errors[i].code;
        *subject = rv->errors[i].subject;
    }
    return rv->n_errors;
}

int commssl_ocsp_failed(SSL *ssl)
{
    commssl_rv *rv = commssl_rv_get(ssl, 0);
    return rv != NULL ? rv->ocsp_failed : 0;
}

/* The chain OpenSSL built, leaf first: the store context's while a
   verification runs, else the SSL's (set even when verification failed). */
int commssl_copy_verified_chain(SSL *ssl, X509_STORE_CTX *verifying, X509 **out, int max)
{
    STACK_OF(X509) *sk = verifying != NULL ? X509_STORE_CTX_get0_chain(verifying)
                                           : SSL_get0_verified_chain(ssl);
    return commssl_copy_stack(NULL, sk, out, max);
}

/* What the peer sent, as kept at the handshake's first verification failure. */
int commssl_failure_chain(SSL *ssl, X509 **out, int max)
{
    commssl_rv *rv = commssl_rv_get(ssl, 0);
    return commssl_copy_stack(NULL, rv != NULL ? rv->sent : NULL, out, max);
}

static int commssl_is_pem(const unsigned char *data, size_t len)
{
    size_t i;
    for (i = 0; i + 10 <= len; i++)
        if (data[i] == '-' && memcmp(data + i, "-----BEGIN", 10) == 0)
            return 1;
    return 0;
}

/* CRLs from PEM (several may follow each other) or DER; all or none are added
   to the context's store. Returns how many, 0 on error (the queue says why). */
int commssl_load_crls(SSL_CTX *ctx, const unsigned char *data, size_t len)
{
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_CRL *crl;
    int i, n = 0, ok = crls != NULL && len > 0 && len < 0x7fffffff;

    if (ok && commssl_is_pem(data, len)) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        ok = bio != NULL;
        while (ok && (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL)
            ok = sk_X509_CRL_push(crls, crl) > 0 || (X509_CRL_free(crl), 0);
        if (ok) {
            unsigned long e = ERR_peek_last_error();
            ok = sk_X509_CRL_num(crls) > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM
                 && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
            if (ok)
                ERR_clear_error();  /* the end of the input */
        }
        BIO_free(bio);
    } else if (ok) {
        const unsigned char *p = data;
        crl = d2i_X509_CRL(NULL, &p, (long)len);
        ok = crl != NULL && p == data + len;
        if (ok)
            ok = sk_X509_CRL_push(crls, crl) > 0;
        if (!ok)
            X509_CRL_free(crl);
    }
    for (i = 0; ok && i < sk_X509_CRL_num(crls); i++) {
        ok = X509_STORE_add_crl(store, sk_X509_CRL_value(crls, i));
        n += ok;
    }
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return ok ? n : 0;
}

static void commssl_ocsp_time(char *buf, const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;
    buf[0] = 0;
    if (t != NULL && ASN1_TIME_to_tm(t, &tm))
        snprintf(buf, 16, "%04d%02d%02d%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void commssl_ocsp_error(commssl_ocsp_result *r, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (r->error[0] == 0)
        snprintf(r->error, sizeof r->error, "%s%s%s", what, reason ? ": " : "", reason ? reason : "");
}

/* Check an OCSP response (der NULL: the SSL's staple) against the verified
   chain (the store context's while verifying) and the context's trust store.
   Returns 1 when there was a response to check, 0 when none (code
   OCSP_VERIFY_NEEDED). Leaves the error queue as it found it. */
int commssl_ocsp_check(SSL *ssl, X509_STORE_CTX *verifying, const unsigned char *der, long len,
                       commssl_ocsp_result *r)
{
    unsigned char *staple = NULL;
    const unsigned char *p;
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = NULL;
    OCSP_SINGLERESP *single = NULL;
    STACK_OF(X509) *chain, *untrusted;
    X509 *leaf = NULL, *issuer = NULL;
    ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
    int i, st, sig_ok = 0, valid = 0;

    memset(r, 0, sizeof *r);
    r->status = -1;
    r->reason = -1;
    r->code = X509_V_ERR_OCSP_VERIFY_FAILED;
    if (der == NULL) {
        len = SSL_get_tlsext_status_ocsp_resp(ssl, &staple);
        der = staple;
    }
    if (der == NULL || len < 0) {
        r->code = X509_V_ERR_OCSP_VERIFY_NEEDED;
        snprintf(r->error, sizeof r->error, "no OCSP response was stapled");
        return 0;
    }
    ERR_set_mark();
    p = der;
    resp = d2i_OCSP_RESPONSE(NULL, &p, len);
    if (resp == NULL || p != der + len) {
        commssl_ocsp_error(r, resp == NULL ? "the staple is not a DER OCSP response"
                                           : "the staple has bytes after its OCSP response");
        goto done;
    }
    st = OCSP_response_status(resp);
    if (st != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(r->error, sizeof r->error, "the OCSP responder answered '%s'", OCSP_response_status_str(st));
        goto done;
    }
    if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
        commssl_ocsp_error(r, "the OCSP response has no basic response");
        goto done;
    }
    chain = verifying != NULL ? X509_STORE_CTX_get0_chain(verifying) : SSL_get0_verified_chain(ssl);
    untrusted = verifying != NULL ? X509_STORE_CTX_get0_untrusted(verifying) : SSL_get_peer_cert_chain(ssl);
    if (chain != NULL && sk_X509_num(chain) > 0)
        leaf = sk_X509_value(chain, 0);
    if (chain != NULL && sk_X509_num(chain) > 1)
        issuer = sk_X509_value(chain, 1);
    else if (leaf != NULL && X509_check_issued(leaf, leaf) == X509_V_OK)
        issuer = leaf;
    if (leaf == NULL || issuer == NULL) {
        snprintf(r->error, sizeof r->error, "no verified chain to check the OCSP response against "
                 "(the certificate's issuer is unknown)");
        goto done;
    }
    for (i = 0; i < OCSP_resp_count(bs) && single == NULL; i++) {
        OCSP_SINGLERESP *s = OCSP_resp_get0(bs, i);
        OCSP_CERTID *id = (OCSP_CERTID *)OCSP_SINGLERESP_get0_id(s), *mine;
        ASN1_OBJECT *md_oid = NULL;
        const EVP_MD *md;
        if (!OCSP_id_get0_info(NULL, &md_oid, NULL, NULL, id))
            continue;
        md = EVP_get_digestbyobj(md_oid);
        mine = md != NULL ? OCSP_cert_to_id(md, leaf, issuer) : NULL;
        if (mine != NULL && OCSP_id_cmp(mine, id) == 0)
            single = s;
        OCSP_CERTID_free(mine);
    }
    sig_ok = OCSP_basic_verify(bs, untrusted, SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), 0) > 0;
    if (!sig_ok)
        commssl_ocsp_error(r, "the OCSP response's signature or signer did not verify");
    if (single == NULL) {
        r->code = X509_V_ERR_OCSP_CERT_UNKNOWN;
        r->error[0] = 0;
        snprintf(r->error, sizeof r->error, "the OCSP response is not for this certificate");
        goto done;
    }
    r->status = OCSP_single_get0_status(single, &r->reason, &rev, &thisupd, &nextupd);
    commssl_ocsp_time(r->this_update, thisupd);
    commssl_ocsp_time(r->next_update, nextupd);
    commssl_ocsp_time(r->revocation_time, rev);
    if (r->status != V_OCSP_CERTSTATUS_REVOKED)
        r->reason = -1;
    valid = OCSP_check_validity(thisupd, nextupd, 300, -1);
    if (!valid)
        commssl_ocsp_error(r, "the OCSP response is not current (this/next update)");
    r->verified = sig_ok && valid;
    if (r->verified) {
        if (r->status == V_OCSP_CERTSTATUS_GOOD)
            r->code = X509_V_OK;
        else if (r->status == V_OCSP_CERTSTATUS_REVOKED)
            r->code = X509_V_ERR_CERT_REVOKED;
        else
            r->code = X509_V_ERR_OCSP_CERT_UNKNOWN;
    }
done:
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    ERR_pop_to_mark();
    return 1;
}

/* The server's side of the status callback: a staple for this handshake. */
static int commssl_staple_server(SSL *ssl, commssl_ctx_rv *cr)
{
    int mode, ret = SSL_TLSEXT_ERR_NOACK;
    commssl_state *st;
    if (cr == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    CRYPTO_THREAD_read_lock(cr->lock);
    mode = cr->staple_mode;
    if (mode == 1) {
        unsigned char *copy = OPENSSL_malloc(cr->staple_len > 0 ? cr->staple_len : 1);
        if (copy == NULL) {
            ret = SSL_TLSEXT_ERR_ALERT_FATAL;
        } else {
            memcpy(copy, cr->staple, cr->staple_len);
            if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)cr->staple_len))
                ret = SSL_TLSEXT_ERR_OK;
            else
                OPENSSL_free(copy), ret = SSL_TLSEXT_ERR_ALERT_FATAL;
        }
    }
    CRYPTO_THREAD_unlock(cr->lock);
    if (mode != 2)
        return ret;
    st = commssl_get_state(ssl);
    if (st == NULL || st->py == NULL)
        return SSL_TLSEXT_ERR_ALERT_FATAL;  /* fail closed: the Python callable cannot be reached */
    return _commssl_staple_py(st->py, ssl);
}

/* The client's OCSP mode: the SSL's own when set, else its context's (0 off,
   1 ask and record, 2 if-present, 3 require). */
static int commssl_client_ocsp_mode(SSL *ssl)
{
    commssl_ctx_rv *cr = commssl_ctx_rv_get(SSL_get_SSL_CTX(ssl), 0);
    commssl_rv *rv = commssl_rv_get(ssl, 0);
    return rv != NULL && rv->ocsp_mode >= 0 ? rv->ocsp_mode : (cr != NULL ? cr->ocsp_mode : 0);
}

/* Fail the handshake's OCSP check with code, at depth 0: noted with the
   verification errors, kept for the failure mapping (commssl_ocsp_failed), and
   made the verification result. */
static void commssl_ocsp_fail(SSL *ssl, int code)
{
    commssl_state *st = commssl_get_state(ssl);
    commssl_rv *rv;
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    X509 *leaf = chain != NULL && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0)
                                                         : SSL_get0_peer_certificate(ssl);
    commssl_rv_note(ssl, 0, code, leaf, NULL);
    if ((rv = commssl_rv_get(ssl, 0)) != NULL) {
        rv->ocsp_failed = code;
        if (rv->sent == NULL && (chain = SSL_get_peer_cert_chain(ssl)) != NULL && sk_X509_num(chain) > 0)
            rv->sent = X509_chain_up_ref(chain);
    }
    if (st != NULL) {
        st->fail_count++;
        st->fail_depth = 0;
        st->fail_error = code;
    }
    SSL_set_verify_result(ssl, code);
}

/* One status callback for both sides (SSL_CTX_set_tlsext_status_cb). The
   client's runs once the server's certificate was verified and its staple (or
   none) received: a failure records the code as the verification result and
   aborts the handshake (SSL_R_INVALID_STATUS_RESPONSE, which the connection
   core turns into SSLVerificationFailure). */
static int commssl_status_cb(SSL *ssl, void *arg)
{
    commssl_ctx_rv *cr = commssl_ctx_rv_get(SSL_get_SSL_CTX(ssl), 0);
    commssl_ocsp_result r;
    int mode;
    (void)arg;

    if (SSL_is_server(ssl))
        return commssl_staple_server(ssl, cr);
    mode = commssl_client_ocsp_mode(ssl);
    if (mode < 2)
        return 1;
    if (SSL_session_reused(ssl))
        /* OpenSSL (3.x) runs this callback on a TLS 1.3 resumption too, where no
           staple can come (it rides in the Certificate message, which a resumed
           handshake has not): the check of the full handshake that made the
           session stands, and "require" fails a session that had none. */
        return commssl_ocsp_resumed_ok(ssl);
    if (!commssl_ocsp_check(ssl, NULL, NULL, 0, &r) && mode == 2)
        return 1;  /* "if-present": no staple is fine */
    if (r.code == X509_V_OK) {
        SSL_SESSION *sess = SSL_get_session(ssl);
        if (sess != NULL)
            commssl_session_mark(sess);
        return 1;
    }
    commssl_ocsp_fail(ssl, r.code);
    return 0;
}

/* 1 when the client ssl may resume sess under its OCSP mode: "require" resumes
   only a session whose full handshake checked a good staple (commssl_status_cb
   marks those); the other modes resume any (sessions.py skips a session this
   refuses, so that a full handshake runs). */
int commssl_ocsp_session_ok(SSL *ssl, SSL_SESSION *sess)
{
    return commssl_client_ocsp_mode(ssl) < 3
           || (sess != NULL && commssl_session_marked(sess));
}

/* After a client's resumed handshake (TLS 1.2, where OpenSSL runs no status
   callback, and from the status callback for TLS 1.3): 1 when the OCSP mode
   allows the session (commssl_ocsp_session_ok), else the handshake's OCSP check
   fails with X509_V_ERR_OCSP_VERIFY_NEEDED, as a full one without a staple does. */
int commssl_ocsp_resumed_ok(SSL *ssl)
{
    if (SSL_is_server(ssl) || !SSL_session_reused(ssl)
        || commssl_ocsp_session_ok(ssl, SSL_get_session(ssl)))
        return 1;
    commssl_ocsp_fail(ssl, X509_V_ERR_OCSP_VERIFY_NEEDED);
    return 0;
}

/* After a client's handshake that failed with SSL_R_TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE:
   OpenSSL 3.6 decodes a received staple itself (tls_process_cert_status_body)
   and aborts the handshake with that reason on one that is not a DER OCSP
   response, before the status callback runs (3.0 and 3.5 hand the bytes to the
   callback, which fails them with OCSP_VERIFY_FAILED in the "if-present" and
   "require" modes). When this SSL asked for a staple, record that failure as
   the status callback would have; returns the code (0: none). */
int commssl_ocsp_unreadable(SSL *ssl)
{
    commssl_rv *rv = commssl_rv_get(ssl, 0);
    if (ssl == NULL || SSL_is_server(ssl) || SSL_get_tlsext_status_type(ssl) != TLSEXT_STATUSTYPE_ocsp)
        return 0;
    if (rv != NULL && rv->ocsp_failed)
        return rv->ocsp_failed;
    commssl_ocsp_fail(ssl, X509_V_ERR_OCSP_VERIFY_FAILED);
    return X509_V_ERR_OCSP_VERIFY_FAILED;
}

/* 1 when data is exactly one DER OCSP response: what a server can staple on
   every OpenSSL (3.6 decodes a staple and sends its re-encoding, or nothing). */
static int commssl_is_ocsp_der(const unsigned char *data, size_t len)
{
    const unsigned char *p = data;
    OCSP_RESPONSE *resp;
    int ok;
    if (data == NULL || len == 0 || len > 0x7fffffff)
        return 0;
    ERR_set_mark();
    resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    ok = resp != NULL && p == data + len;
    OCSP_RESPONSE_free(resp);
    ERR_pop_to_mark();
    return ok;
}

/* set_ocsp_stapling: on a context (ssl NULL) or one SSL. */
int commssl_set_ocsp_mode(SSL_CTX *ctx, SSL *ssl, int mode)
{
    int type = mode > 0 ? TLSEXT_STATUSTYPE_ocsp : -1;
    if (ssl != NULL) {
        commssl_rv *rv = commssl_rv_get(ssl, 1);
        if (rv == NULL)
            return 0;
        rv->ocsp_mode = mode;
        SSL_set_tlsext_status_type(ssl, type);
        SSL_CTX_set_tlsext_status_cb(SSL_get_SSL_CTX(ssl), commssl_status_cb);
        return 1;
    } else {
        commssl_ctx_rv *cr = commssl_ctx_rv_get(ctx, 1);
        if (cr == NULL)
            return 0;
        cr->ocsp_mode = mode;
        SSL_CTX_set_tlsext_status_type(ctx, type);
        SSL_CTX_set_tlsext_status_cb(ctx, commssl_status_cb);
        return 1;
    }
}

/* set_ocsp_staple: mode 0 stops stapling, 1 staples data, 2 asks Python.
   Returns 1, 0 when out of memory, -1 when data is not one DER OCSP response. */
int commssl_set_staple(SSL_CTX *ctx, const unsigned char *data, size_t len, int mode)
{
    commssl_ctx_rv *cr;
    unsigned char *copy = NULL, *old;
    if (mode == 1 && !commssl_is_ocsp_der(data, len))
        return -1;
    if ((cr = commssl_ctx_rv_get(ctx, 1)) == NULL)
        return 0;
    if (mode == 1) {
        copy = OPENSSL_malloc(len > 0 ? len : 1);
        if (copy == NULL)
            return 0;
        memcpy(copy, data, len);
    }
    CRYPTO_THREAD_write_lock(cr->lock);
    old = cr->staple;
    cr->staple = copy;
    cr->staple_len = copy != NULL ? len : 0;
    cr->staple_mode = mode;
    CRYPTO_THREAD_unlock(cr->lock);
    OPENSSL_free(old);
    SSL_CTX_set_tlsext_status_cb(ctx, commssl_status_cb);
    return 1;
}

/* The staple a Python callable returned, for this handshake: 1, 0 when out of
   memory, -1 when data is not one DER OCSP response. */
int commssl_staple_ssl(SSL *ssl, const unsigned char *data, size_t len)
{
    unsigned char *copy;
    if (!commssl_is_ocsp_der(data, len))
        return -1;
    if ((copy = OPENSSL_malloc(len)) == NULL)
        return 0;
    memcpy(copy, data, len);
    if (!SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)len)) {
        OPENSSL_free(copy);
        return 0;
    }
    return 1;
}
