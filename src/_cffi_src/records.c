/* records.c: commssl's per-SSL and per-SSL_CTX records (ex_data slots freed by
   OpenSSL with their owner), the per-SSL operation lock, the wrappers' handles
   (attach, release), and the one-call client setup of new_ssl. */

#include "commssl.h"

static int commssl_ssl_idx = -1;
static int commssl_ctx_idx = -1;
static int commssl_oplock_idx = -1;

/* The records live exactly as long as their SSL or SSL_CTX: OpenSSL calls this
   when it frees one (and for every index, with ptr NULL when none was set). */
static void commssl_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    OPENSSL_free(ptr);
}

/* The per-SSL operation lock (an ex_data slot of its own: the record's layout
   is shared with the cdef), and which thread holds it: a Python callback that
   OpenSSL calls from inside an operation runs in the thread holding the lock,
   and a setter it calls on the same SSL must not wait for itself
   (commssl_lock_ssl). Only the holder writes owner/held, and a thread compares
   owner with itself only: it reads what it wrote itself, or another thread's id. */
struct commssl_oplock_st {
    CRYPTO_RWLOCK *lock;
    CRYPTO_THREAD_ID owner;
    volatile int held;
};

static void commssl_oplock_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                                void *argp)
{
    commssl_oplock_t *ol = ptr;
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (ol != NULL) {
        CRYPTO_THREAD_lock_free(ol->lock);
        OPENSSL_free(ol);
    }
}

/* SSL_dup copies ex_data pointers: the copy gets no record instead of sharing
   (and freeing twice) the original's. For commssl's record it then counts as an
   SSL made outside commssl (its context's record governs it). The dup callback
   of every slot whose record must not be shared (records.c, revocation.c). */
static int commssl_ex_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx,
                          long argl, void *argp)
{
    (void)to; (void)from; (void)idx; (void)argl; (void)argp;
    *from_d = NULL;
    return 1;
}

int commssl_init(void)
{
    if (commssl_ssl_idx < 0)
        commssl_ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, commssl_ex_dup, commssl_ex_free);
    if (commssl_ctx_idx < 0)
        commssl_ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, commssl_ex_free);
    if (commssl_oplock_idx < 0)
        commssl_oplock_idx = SSL_get_ex_new_index(0, NULL, NULL, commssl_ex_dup, commssl_oplock_free);
    return commssl_ssl_idx >= 0 && commssl_ctx_idx >= 0 && commssl_oplock_idx >= 0;
}

static commssl_oplock_t *commssl_oplock(const SSL *ssl)
{
    return SSL_get_ex_data(ssl, commssl_oplock_idx);
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

commssl_state *commssl_get_state(const SSL *ssl)
{
    return ssl ? (commssl_state *)SSL_get_ex_data(ssl, commssl_ssl_idx) : NULL;
}

commssl_ctx_state *commssl_get_ctx_state(const SSL_CTX *ctx)
{
    return ctx ? (commssl_ctx_state *)SSL_CTX_get_ex_data(ctx, commssl_ctx_idx) : NULL;
}

/* The context's record, made on first use; py is set only when none is there
   (a second wrapper of the same SSL_CTX leaves the first one's). NULL: out of
   memory. */
commssl_ctx_state *commssl_ctx_attach(SSL_CTX *ctx, void *py)
{
    commssl_ctx_state *cs = commssl_get_ctx_state(ctx);
    if (cs == NULL) {
        cs = OPENSSL_zalloc(sizeof *cs);
        if (cs == NULL)
            return NULL;
        if (!SSL_CTX_set_ex_data(ctx, commssl_ctx_idx, cs)) {
            OPENSSL_free(cs);
            return NULL;
        }
    }
    if (cs->py == NULL)
        cs->py = py;
    return cs;
}

/* SSLPointer's record (made on first use: it lives as long as the SSL) filled
   in one call and returned (NULL: out of memory), with the SSL's mode
   bits when mode is not 0 (Python field stores and cffi calls cost more than
   their work between OpenSSL's long handshake steps: cold caches); its
   release (its handle cleared) with SSL_free; and the client side of new_ssl: connect state,
   SNI (sni NULL: none) and the name the peer's certificate must match (host
   NULL: none; an IP literal when is_ip), returning 0 when OpenSSL refused
   that name. */
/* Attach (or reset) the record of ssl, whose wrapper's handle is py. Python
   decides the verification when the wrapper knows a callable (py_verify,
   conn_verify) or the context's record says a Python callback is set. */
commssl_state *commssl_attach(SSL *ssl, void *py, int py_verify, int conn_verify, long mode)
{
    commssl_state *st = commssl_get_state(ssl);
    commssl_ctx_state *cs = commssl_get_ctx_state(SSL_get_SSL_CTX(ssl));
    if (cs != NULL) {
        py_verify = py_verify || cs->py_verify;
        conn_verify = conn_verify || cs->conn_verify;
    }
    if (mode != 0)
        SSL_set_mode(ssl, mode);
    if (st == NULL) {
        commssl_oplock_t *ol = OPENSSL_zalloc(sizeof *ol);
        CRYPTO_RWLOCK *lock = CRYPTO_THREAD_lock_new();
        st = OPENSSL_zalloc(sizeof *st);
        if (ol != NULL)
            ol->lock = lock;
        if (st == NULL || ol == NULL || lock == NULL || !SSL_set_ex_data(ssl, commssl_oplock_idx, ol)) {
            OPENSSL_free(st);
            OPENSSL_free(ol);
            CRYPTO_THREAD_lock_free(lock);
            return NULL;
        }
        if (!SSL_set_ex_data(ssl, commssl_ssl_idx, st)) {  /* the lock goes with the SSL */
            OPENSSL_free(st);
            return NULL;
        }
    }
    st->py = py;
    st->py_verify = py_verify;
    st->conn_verify = conn_verify;
    st->fail_depth = -1;
    st->fail_error = 0;
    st->fail_count = 0;
    return st;
}

/* The wrapper's end: its handle leaves the record (which OpenSSL frees with
   the SSL), then its reference goes. */
void commssl_release_ssl(SSL *ssl)
{
    commssl_state *st = commssl_get_state(ssl);
    if (st != NULL)
        st->py = NULL;
    SSL_free(ssl);
}

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
