/* records.c: commssl's per-SSL and per-SSL_CTX records (one ex_data slot each, freed
   by OpenSSL with their owner; the structs are in commssl.h), their one init, the
   per-SSL operation lock, the wrappers' handles (attach, release), and the one-call
   client setup of new_ssl. */

#include "commssl.h"

/* @cdef
int commssl_init(void);
commssl_state *commssl_get_state(const SSL *);
commssl_ctx_state *commssl_get_ctx_state(const SSL_CTX *);
commssl_ctx_state *commssl_ctx_attach(SSL_CTX *, void *);
commssl_state *commssl_attach(SSL *, void *, int, int, long);
void commssl_release_ssl(SSL *);
int commssl_client_names(SSL *, const char *, const char *, int);
int commssl_lock_ssl(SSL *);
void commssl_unlock_ssl(SSL *);
@end */

static int commssl_ssl_idx = -1;
static int commssl_ctx_idx = -1;
/* On an SSL_SESSION: (void *)1 when the full handshake that made it checked a good
   staple (revocation.c's status callback). OpenSSL copies ex_data pointers when it
   duplicates a session (a TLS 1.3 ticket's session is a copy of the handshake's),
   so the mark follows the session through resumptions. */
static int commssl_sess_idx = -1;

/* OpenSSL calls these when it frees an SSL or SSL_CTX (for every index, with ptr
   NULL when none was set). */
static void commssl_ssl_rec_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                                 void *argp)
{
    commssl_ssl_rec *r = ptr;
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (r == NULL)
        return;
    commssl_rv_clear(&r->rv);
    sk_X509_pop_free(r->ticket_chain, X509_free);
    CRYPTO_THREAD_lock_free(r->op.lock);
    OPENSSL_free(r);
}

static void commssl_ctx_rec_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                                 void *argp)
{
    commssl_ctx_rec *r = ptr;
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (r == NULL)
        return;
    OPENSSL_free(r->rv.staple);
    CRYPTO_THREAD_lock_free(r->rv.lock);
    OPENSSL_free(r->alpn.protos);
    OPENSSL_free(r);
}

/* SSL_dup copies ex_data pointers: the copy gets no record instead of sharing (and
   freeing twice) the original's. It then counts as an SSL made outside commssl. */
static int commssl_ex_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx,
                          long argl, void *argp)
{
    (void)to; (void)from; (void)idx; (void)argl; (void)argp;
    *from_d = NULL;
    return 1;
}

/* The one init (binding.py, at import): the three ex_data slots. */
int commssl_init(void)
{
    if (commssl_ssl_idx < 0)
        commssl_ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, commssl_ex_dup, commssl_ssl_rec_free);
    if (commssl_ctx_idx < 0)
        commssl_ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, commssl_ctx_rec_free);
    if (commssl_sess_idx < 0)
        commssl_sess_idx = SSL_SESSION_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    return commssl_ssl_idx >= 0 && commssl_ctx_idx >= 0 && commssl_sess_idx >= 0;
}

static commssl_ssl_rec *commssl_ssl_rec_of(const SSL *ssl)
{
    return ssl != NULL ? SSL_get_ex_data(ssl, commssl_ssl_idx) : NULL;
}

static commssl_ssl_rec *commssl_ssl_rec_make(SSL *ssl)
{
    commssl_ssl_rec *r = commssl_ssl_rec_of(ssl);
    if (r != NULL || ssl == NULL)
        return r;
    if ((r = OPENSSL_zalloc(sizeof *r)) == NULL)
        return NULL;
    r->st.fail_depth = -1;
    r->rv.ocsp_mode = -1;
    if (!SSL_set_ex_data(ssl, commssl_ssl_idx, r)) {
        OPENSSL_free(r);
        return NULL;
    }
    return r;
}

static commssl_ctx_rec *commssl_ctx_rec_of(const SSL_CTX *ctx)
{
    return ctx != NULL ? SSL_CTX_get_ex_data(ctx, commssl_ctx_idx) : NULL;
}

static commssl_ctx_rec *commssl_ctx_rec_make(SSL_CTX *ctx)
{
    commssl_ctx_rec *r = commssl_ctx_rec_of(ctx);
    if (r != NULL || ctx == NULL)
        return r;
    if ((r = OPENSSL_zalloc(sizeof *r)) == NULL)
        return NULL;
    r->rv.lock = CRYPTO_THREAD_lock_new();
    if (r->rv.lock == NULL || !SSL_CTX_set_ex_data(ctx, commssl_ctx_idx, r)) {
        CRYPTO_THREAD_lock_free(r->rv.lock);
        OPENSSL_free(r);
        return NULL;
    }
    return r;
}

static void commssl_session_mark(SSL_SESSION *sess)
{
    SSL_SESSION_set_ex_data(sess, commssl_sess_idx, (void *)1);
}

static int commssl_session_marked(const SSL_SESSION *sess)
{
    return SSL_SESSION_get_ex_data(sess, commssl_sess_idx) != NULL;
}

static commssl_oplock_t *commssl_oplock(const SSL *ssl)
{
    commssl_ssl_rec *r = commssl_ssl_rec_of(ssl);
    return r != NULL && r->op.lock != NULL ? &r->op : NULL;
}

static void commssl_op_enter(commssl_oplock_t *ol)
{
    CRYPTO_THREAD_write_lock(ol->lock);
    ol->owner = CRYPTO_THREAD_get_current_id();
    ol->held = 1;
}

static void commssl_op_leave(commssl_oplock_t *ol)
{
    ol->held = 0;
    CRYPTO_THREAD_unlock(ol->lock);
}

/* The operation lock for a setter or an accessor of session state (ownership.py):
   1 when taken (commssl_unlock_ssl it); 0 when this thread holds it already (a
   callback of an operation on this SSL: the operation is paused in this very
   thread, so the caller goes on under its lock), or the SSL has no lock (one
   commssl never attached a record to: nothing of commssl's runs on it). Called
   through cffi, so the GIL is released while it waits. */
int commssl_lock_ssl(SSL *ssl)
{
    commssl_oplock_t *ol = commssl_oplock(ssl);
    if (ol == NULL)
        return 0;
    if (ol->held && CRYPTO_THREAD_compare_id(ol->owner, CRYPTO_THREAD_get_current_id()))
        return 0;
    commssl_op_enter(ol);
    return 1;
}

void commssl_unlock_ssl(SSL *ssl)
{
    commssl_oplock_t *ol = commssl_oplock(ssl);
    if (ol != NULL)
        commssl_op_leave(ol);
}

/* Python's part of the SSL's record; NULL for an SSL commssl never attached. */
commssl_state *commssl_get_state(const SSL *ssl)
{
    commssl_ssl_rec *r = commssl_ssl_rec_of(ssl);
    return r != NULL && r->attached ? &r->st : NULL;
}

commssl_ctx_state *commssl_get_ctx_state(const SSL_CTX *ctx)
{
    commssl_ctx_rec *r = commssl_ctx_rec_of(ctx);
    return r != NULL ? &r->st : NULL;
}

/* The context's record, made on first use; py is set only when none is there
   (a second wrapper of the same SSL_CTX leaves the first one's). NULL: out of
   memory. */
commssl_ctx_state *commssl_ctx_attach(SSL_CTX *ctx, void *py)
{
    commssl_ctx_rec *r = commssl_ctx_rec_make(ctx);
    if (r == NULL)
        return NULL;
    if (r->st.py == NULL)
        r->st.py = py;
    return &r->st;
}

/* Attach (or reset) the record of ssl, whose wrapper's handle is py, in one call
   (Python field stores and cffi calls cost more than their work between OpenSSL's
   long handshake steps: cold caches), with the SSL's mode bits when mode is not 0.
   Python decides the verification when the wrapper knows a callable (py_verify,
   conn_verify) or the context's record says a Python callback is set. NULL: out of
   memory. */
commssl_state *commssl_attach(SSL *ssl, void *py, int py_verify, int conn_verify, long mode)
{
    commssl_ssl_rec *r = commssl_ssl_rec_make(ssl);
    commssl_ctx_state *cs = commssl_get_ctx_state(SSL_get_SSL_CTX(ssl));
    if (cs != NULL) {
        py_verify = py_verify || cs->py_verify;
        conn_verify = conn_verify || cs->conn_verify;
    }
    if (mode != 0)
        SSL_set_mode(ssl, mode);
    if (r == NULL)
        return NULL;
    if (r->op.lock == NULL && (r->op.lock = CRYPTO_THREAD_lock_new()) == NULL)
        return NULL;
    r->attached = 1;
    r->st.py = py;
    r->st.py_verify = py_verify;
    r->st.conn_verify = conn_verify;
    r->st.fail_depth = -1;
    r->st.fail_error = 0;
    r->st.fail_count = 0;
    return &r->st;
}

/* The wrapper's end: its handle leaves the record (which OpenSSL frees with the
   SSL), then its reference goes. */
void commssl_release_ssl(SSL *ssl)
{
    commssl_state *st = commssl_get_state(ssl);
    if (st != NULL)
        st->py = NULL;
    SSL_free(ssl);
}

/* The client side of new_ssl: connect state, SNI (sni NULL: none) and the name the
   peer's certificate must match (host NULL: none; an IP literal when is_ip);
   returns 0 when OpenSSL refused that name. */
int commssl_client_names(SSL *ssl, const char *sni, const char *host, int is_ip)
{
    SSL_set_connect_state(ssl);
    if (sni != NULL)
        SSL_set_tlsext_host_name(ssl, sni);
    if (host == NULL)
        return 1;
    if (is_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    return SSL_set1_host(ssl, host);
}
