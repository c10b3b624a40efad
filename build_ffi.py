"""cffi builder for ``commssl._openssl`` (out-of-line, API mode).

The C declarations are grouped by OpenSSL area, version prelude first. Each area
has INCLUDES-free TYPES (opaque types, constants) and FUNCTIONS (prototypes, with
macros declared as functions, which API mode allows). CUSTOMIZATIONS holds the
small C helpers for the hot paths: chain copy with up-refs, verify-callback
dispatch, blocking I/O loops that run without the GIL, and certificate data.
"""

from __future__ import annotations

import os
import sys

from cffi import FFI, PkgConfigError

PRELUDE = """
#ifdef _WIN32
/* winsock2.h before OpenSSL's headers, and without wincrypt.h, whose X509_NAME,
   X509_EXTENSIONS, ... macros would replace OpenSSL's type names. */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#endif
#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "commssl needs OpenSSL >= 3.0 (headers found: " OPENSSL_VERSION_TEXT ")"
#endif
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#ifdef _WIN32
#include <winsock2.h>
#define commssl_poll WSAPoll
typedef WSAPOLLFD commssl_pollfd;
#else
#include <poll.h>
#define commssl_poll poll
typedef struct pollfd commssl_pollfd;
#endif
"""

VERSION = """
static const long OPENSSL_VERSION_NUMBER;
static const char *const OPENSSL_VERSION_TEXT;
static const int OPENSSL_VERSION;
unsigned long OpenSSL_version_num(void);
const char *OpenSSL_version(int);
"""

CRYPTO = """
void OPENSSL_free(void *);
"""

ERR = """
unsigned long ERR_get_error(void);
unsigned long ERR_peek_last_error(void);
void ERR_clear_error(void);
void ERR_error_string_n(unsigned long, char *, size_t);
const char *ERR_reason_error_string(unsigned long);
const char *ERR_lib_error_string(unsigned long);
int ERR_GET_LIB(unsigned long);
int ERR_GET_REASON(unsigned long);
static const int ERR_LIB_SSL;
static const int ERR_LIB_X509;
static const int ERR_LIB_PEM;
static const int ERR_LIB_SYS;
"""

BIO = """
typedef ... BIO;
typedef ... BIO_METHOD;
const BIO_METHOD *BIO_s_mem(void);
BIO *BIO_new(const BIO_METHOD *);
BIO *BIO_new_file(const char *, const char *);
BIO *BIO_new_mem_buf(const void *, int);
int BIO_free(BIO *);
int BIO_read(BIO *, void *, int);
int BIO_write(BIO *, const void *, int);
size_t BIO_ctrl_pending(BIO *);
long BIO_get_mem_data(BIO *, char **);
long BIO_set_mem_eof_return(BIO *, long);
int BIO_new_bio_pair(BIO **, size_t, BIO **, size_t);
"""

X509 = """
typedef ... X509;
typedef ... X509_NAME;
typedef ... EVP_PKEY;
static const int NID_commonName;
void X509_free(X509 *);
int X509_up_ref(X509 *);
X509 *PEM_read_bio_X509(BIO *, X509 **, void *, void *);
X509 *d2i_X509_bio(BIO *, X509 **);
int i2d_X509(X509 *, unsigned char **);
X509_NAME *X509_get_subject_name(const X509 *);
X509_NAME *X509_get_issuer_name(const X509 *);
const char *X509_get_default_cert_file(void);
void EVP_PKEY_free(EVP_PKEY *);
"""

X509_VFY = """
typedef ... X509_STORE_CTX;
typedef ... X509_STORE;
static const int X509_V_OK;
static const int X509_V_ERR_UNSPECIFIED;
static const int X509_V_ERR_APPLICATION_VERIFICATION;
static const int X509_V_ERR_HOSTNAME_MISMATCH;
static const int X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT;
static const int X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN;
static const int X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
static const int X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT;
static const int X509_V_ERR_CERT_HAS_EXPIRED;
X509 *X509_STORE_CTX_get_current_cert(const X509_STORE_CTX *);
int X509_STORE_CTX_get_error(const X509_STORE_CTX *);
void X509_STORE_CTX_set_error(X509_STORE_CTX *, int);
int X509_STORE_CTX_get_error_depth(const X509_STORE_CTX *);
void *X509_STORE_CTX_get_ex_data(const X509_STORE_CTX *, int);
const char *X509_verify_cert_error_string(long);
int X509_STORE_add_cert(X509_STORE *, X509 *);
"""

SSL = """
typedef ... SSL_METHOD;
typedef ... SSL_CTX;
typedef ... SSL;
static const int SSL_VERIFY_NONE;
static const int SSL_VERIFY_PEER;
static const int SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
static const int SSL_VERIFY_CLIENT_ONCE;
static const int SSL_VERIFY_POST_HANDSHAKE;
static const int SSL_ERROR_NONE;
static const int SSL_ERROR_SSL;
static const int SSL_ERROR_WANT_READ;
static const int SSL_ERROR_WANT_WRITE;
static const int SSL_ERROR_WANT_X509_LOOKUP;
static const int SSL_ERROR_SYSCALL;
static const int SSL_ERROR_ZERO_RETURN;
static const int SSL_FILETYPE_PEM;
static const int TLS1_VERSION;
static const int TLS1_1_VERSION;
static const int TLS1_2_VERSION;
static const int TLS1_3_VERSION;
static const int SSL3_VERSION;
static const long SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
static const long SSL_MODE_ENABLE_PARTIAL_WRITE;
static const long SSL_OP_NO_RENEGOTIATION;
static const long SSL_OP_NO_COMPRESSION;
static const int SSL_R_UNEXPECTED_EOF_WHILE_READING;
static const int SSL_R_CERTIFICATE_VERIFY_FAILED;
static const int SSL_R_NO_SHARED_CIPHER;
static const int SSL_R_NO_SHARED_GROUPS;
static const int SSL_R_NO_CIPHERS_AVAILABLE;
static const int SSL_R_NO_PROTOCOLS_AVAILABLE;
static const int SSL_R_UNSUPPORTED_PROTOCOL;
static const int SSL_R_TLSV1_ALERT_PROTOCOL_VERSION;
static const int SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY;
static const int SSL_R_NO_SUITABLE_KEY_SHARE;
static const int SSL_R_DH_KEY_TOO_SMALL;
static const int SSL_R_VERSION_TOO_LOW;
static const int SSL_R_VERSION_TOO_HIGH;
static const int SSL_R_INAPPROPRIATE_FALLBACK;
static const int SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE;

const SSL_METHOD *TLS_method(void);
const SSL_METHOD *TLS_client_method(void);
const SSL_METHOD *TLS_server_method(void);

SSL_CTX *SSL_CTX_new(const SSL_METHOD *);
void SSL_CTX_free(SSL_CTX *);
int SSL_CTX_up_ref(SSL_CTX *);
long SSL_CTX_set_options(SSL_CTX *, long);
long SSL_CTX_get_options(SSL_CTX *);
int SSL_CTX_set_min_proto_version(SSL_CTX *, int);
int SSL_CTX_set_max_proto_version(SSL_CTX *, int);
int SSL_CTX_use_certificate_chain_file(SSL_CTX *, const char *);
int SSL_CTX_use_certificate(SSL_CTX *, X509 *);
long SSL_CTX_add1_chain_cert(SSL_CTX *, X509 *);
int SSL_CTX_use_PrivateKey(SSL_CTX *, EVP_PKEY *);
X509_STORE *SSL_CTX_get_cert_store(const SSL_CTX *);
int SSL_CTX_use_PrivateKey_file(SSL_CTX *, const char *, int);
int SSL_CTX_check_private_key(const SSL_CTX *);
int SSL_CTX_load_verify_locations(SSL_CTX *, const char *, const char *);
int SSL_CTX_set_default_verify_paths(SSL_CTX *);
int SSL_CTX_set_default_verify_file(SSL_CTX *);
int SSL_CTX_set_default_verify_dir(SSL_CTX *);
void SSL_CTX_set_default_passwd_cb(SSL_CTX *, int (*)(char *, int, int, void *));
void SSL_CTX_set_default_passwd_cb_userdata(SSL_CTX *, void *);
void SSL_CTX_set_verify(SSL_CTX *, int, int (*)(int, X509_STORE_CTX *));
int SSL_CTX_get_verify_mode(const SSL_CTX *);
void SSL_CTX_set_verify_depth(SSL_CTX *, int);
int SSL_CTX_get_verify_depth(const SSL_CTX *);
void SSL_CTX_set_cert_verify_callback(SSL_CTX *, int (*)(X509_STORE_CTX *, void *), void *);
int SSL_CTX_set_cipher_list(SSL_CTX *, const char *);
int SSL_CTX_set_ciphersuites(SSL_CTX *, const char *);

SSL *SSL_new(SSL_CTX *);
void SSL_free(SSL *);
int SSL_up_ref(SSL *);
SSL_CTX *SSL_get_SSL_CTX(const SSL *);
int SSL_set_fd(SSL *, int);
int SSL_get_fd(const SSL *);
void SSL_set_bio(SSL *, BIO *, BIO *);
void SSL_set_connect_state(SSL *);
void SSL_set_accept_state(SSL *);
int SSL_is_server(const SSL *);
int SSL_is_init_finished(const SSL *);
int SSL_in_init(const SSL *);
long SSL_set_mode(SSL *, long);
long SSL_set_options(SSL *, long);
int SSL_do_handshake(SSL *);
int SSL_read_ex(SSL *, void *, size_t, size_t *);
int SSL_write_ex(SSL *, const void *, size_t, size_t *);
int SSL_pending(const SSL *);
int SSL_shutdown(SSL *);
int SSL_get_shutdown(const SSL *);
void SSL_set_shutdown(SSL *, int);
static const int SSL_SENT_SHUTDOWN;
static const int SSL_RECEIVED_SHUTDOWN;
int SSL_get_error(const SSL *, int);
int SSL_version(const SSL *);
const char *SSL_get_version(const SSL *);
void SSL_set_verify(SSL *, int, int (*)(int, X509_STORE_CTX *));
int SSL_get_verify_mode(const SSL *);
void SSL_set_verify_depth(SSL *, int);
int SSL_get_verify_depth(const SSL *);
long SSL_get_verify_result(const SSL *);
long SSL_set_tlsext_host_name(SSL *, const char *);
const char *SSL_get_servername(const SSL *, const int);
static const int TLSEXT_NAMETYPE_host_name;
int SSL_set1_host(SSL *, const char *);
typedef ... X509_VERIFY_PARAM;
X509_VERIFY_PARAM *SSL_get0_param(SSL *);
int X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *, const char *);
X509 *SSL_get0_peer_certificate(const SSL *);
X509 *SSL_get1_peer_certificate(const SSL *);
int SSL_get_ex_data_X509_STORE_CTX_idx(void);
const char *SSL_get_cipher_name(const SSL *);
"""

# Per-SSL record reached through ex_data: the Python wrapper's handle, what the
# trampolines should call, and the first verification failure seen; and the
# per-SSL_CTX record: the context wrapper's handle and whether the context has a
# Python verify callback / verify_callback(conn). Both records are allocated in C
# and freed by OpenSSL with their SSL or SSL_CTX (ex_data free callbacks), so
# none can dangle; a wrapper clears its handle ("py") when it dies. Both the
# cdef and the C source declare them.
STATE = """
typedef struct {
    void *py;
    int py_verify;
    int conn_verify;
    int fail_depth;
    int fail_error;
    int fail_count;
} commssl_state;
typedef struct {
    void *py;
    int py_verify;
    int conn_verify;
} commssl_ctx_state;
"""

HELPERS = STATE + """
static const int COMMSSL_OP_HANDSHAKE;
static const int COMMSSL_OP_READ;
static const int COMMSSL_OP_WRITE;
static const int COMMSSL_OP_SHUTDOWN;
static const int COMMSSL_TIMEOUT;
static const int COMMSSL_EINTR;
static const int COMMSSL_SHUTDOWN_SENT;

int commssl_init(void);
commssl_state *commssl_get_state(const SSL *);
commssl_ctx_state *commssl_ctx_attach(SSL_CTX *, void *);
commssl_ctx_state *commssl_get_ctx_state(const SSL_CTX *);
SSL *commssl_store_ssl(X509_STORE_CTX *);

int commssl_verify_cb(int, X509_STORE_CTX *);
int commssl_cert_verify_cb(X509_STORE_CTX *, void *);
extern "Python" int _commssl_verify_py(commssl_state *, int, X509_STORE_CTX *);
extern "Python" int _commssl_conn_verify_py(commssl_state *, int, X509_STORE_CTX *);
extern "Python" int _commssl_foreign_verify_py(commssl_ctx_state *, SSL *, int, int, X509_STORE_CTX *);
extern "Python" int _commssl_password_py(char *, int, int, void *);

int commssl_copy_peer_chain(SSL *, X509_STORE_CTX *, X509 **, int);
void commssl_free_certs(X509 **, int);
int commssl_do(SSL *, int, void *, size_t, size_t *);
int commssl_io(SSL *, int, void *, size_t, size_t *, int);
int commssl_cert_info(X509 *, BIO *);
int commssl_serial(X509 *, unsigned char *, int, int *);
int commssl_common_name(X509 *, unsigned char **);

/* fast paths measured by bench/ */
int commssl_serial_into(X509 *, unsigned char *, int);
int commssl_serial20(X509 *, unsigned char *);
commssl_state *commssl_attach(SSL *, void *, int, int, long);
void commssl_release_ssl(SSL *);
int commssl_client_names(SSL *, const char *, const char *, int);
int commssl_read_more(SSL *, char *, size_t, size_t *, int, int *);

/* asyncio streams (aio.py): an SSL over a pair of memory BIOs */
int commssl_mem_step(SSL *, char *, size_t, int, int, char *, size_t, size_t *, size_t *);

/* demo PKI (python -m commssl): one throwaway certificate per call */
int commssl_demo_cert(const char *, const char *, int, int, uint64_t, long, long,
                      X509 *, EVP_PKEY *, X509 **, EVP_PKEY **);

/* contexts: the pass phrase callback of contexts given no password */
int commssl_no_password(char *, int, int, void *);
"""

CUSTOMIZATIONS = STATE + r"""
static int _commssl_verify_py(commssl_state *, int, X509_STORE_CTX *);
static int _commssl_conn_verify_py(commssl_state *, int, X509_STORE_CTX *);
static int _commssl_foreign_verify_py(commssl_ctx_state *, SSL *, int, int, X509_STORE_CTX *);
static int _commssl_password_py(char *, int, int, void *);

/* the operations of commssl_do and commssl_io, and their results beside SSL_ERROR_* */
enum {
    COMMSSL_OP_HANDSHAKE = 0,
    COMMSSL_OP_READ = 1,
    COMMSSL_OP_WRITE = 2,
    COMMSSL_OP_SHUTDOWN = 3,
    COMMSSL_TIMEOUT = -1,
    COMMSSL_EINTR = -2,
    COMMSSL_SHUTDOWN_SENT = -3
};

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
   is shared with the cdef). */
static void commssl_oplock_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                                void *argp)
{
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    CRYPTO_THREAD_lock_free(ptr);
}

/* SSL_dup: the copy gets no record (sharing one would free it twice); it then
   counts as an SSL made outside commssl (its context's record governs it). */
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

SSL *commssl_store_ssl(X509_STORE_CTX *store)
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
static void commssl_rv_note_store(X509_STORE_CTX *, int);  /* revocation block */

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

/* The certificates the peer sent, leaf first, each with one new reference.
   While a verification runs the store context holds them; afterwards the
   session does, and on the server side OpenSSL keeps the leaf apart from the
   chain. Returns how many there are; copies nothing when that exceeds max. */
/* leaf (when not NULL) then the stack's certificates into out, each with one
   new reference; returns how many there are, copying nothing when that exceeds
   max. The one copy with up-refs behind every chain copy (peer, verified). */
static int commssl_copy_stack(X509 *leaf, STACK_OF(X509) *sk, X509 **out, int max)
{
    int i, k = 0, n = (leaf != NULL) + (sk != NULL ? sk_X509_num(sk) : 0);
    if (n > max)
        return n;
    if (leaf != NULL) {
        X509_up_ref(leaf);
        out[k++] = leaf;
    }
    for (i = 0; sk != NULL && i < sk_X509_num(sk); i++) {
        X509 *x = sk_X509_value(sk, i);
        X509_up_ref(x);
        out[k++] = x;
    }
    return n;
}

int commssl_copy_peer_chain(SSL *ssl, X509_STORE_CTX *verifying, X509 **out, int max)
{
    STACK_OF(X509) *sk;
    X509 *leaf = NULL;

    if (verifying != NULL) {
        sk = X509_STORE_CTX_get0_untrusted(verifying);
        if (sk == NULL || sk_X509_num(sk) == 0) {
            sk = NULL;
            leaf = X509_STORE_CTX_get0_cert(verifying);
        }
    } else {
        sk = SSL_get_peer_cert_chain(ssl);
        if (SSL_is_server(ssl))
            leaf = SSL_get0_peer_certificate(ssl);
    }
    return commssl_copy_stack(leaf, sk, out, max);
}

void commssl_free_certs(X509 **certs, int n)
{
    int i;
    for (i = 0; i < n; i++)
        X509_free(certs[i]);
}

/* One step of an SSL operation. Returns 0 when it completed (for reads and
   writes *done holds the byte count), COMMSSL_SHUTDOWN_SENT when a shutdown
   still waits for the peer's close_notify, else the SSL_ERROR_* code. The
   error queue is cleared first so what follows belongs to this call. */
int commssl_do(SSL *ssl, int op, void *buf, size_t len, size_t *done)
{
    /* One OpenSSL call at a time on an SSL: a stream lets one thread read while
       another writes, and a read may write (a TLS 1.3 KeyUpdate answer, an
       alert), so the two would otherwise race inside OpenSSL. Held for the call
       only, never while polling: the other thread's call waits at most that long. */
    CRYPTO_RWLOCK *lock = SSL_get_ex_data(ssl, commssl_oplock_idx);
    int r, e;
    if (lock != NULL)
        CRYPTO_THREAD_write_lock(lock);
    ERR_clear_error();
    errno = 0;
    switch (op) {
    case COMMSSL_OP_HANDSHAKE: r = SSL_do_handshake(ssl); break;
    case COMMSSL_OP_READ: r = SSL_read_ex(ssl, buf, len, done); break;
    case COMMSSL_OP_WRITE: r = SSL_write_ex(ssl, buf, len, done); break;
    default: r = SSL_shutdown(ssl); break;
    }
    if (r == 1)
        e = 0;
    else if (op == COMMSSL_OP_SHUTDOWN && r == 0)
        e = COMMSSL_SHUTDOWN_SENT;
    else
        e = SSL_get_error(ssl, r);
    if (lock != NULL)
        CRYPTO_THREAD_unlock(lock);
    return e;
}

static long long commssl_now_ms(void)
{
#ifdef _WIN32
    return (long long)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

/* Drive an operation on a non-blocking socket, polling while OpenSSL wants
   to read or write, until it completes, fails, or timeout_ms (negative: no
   limit) runs out. Called through cffi, so the GIL is released throughout. */
int commssl_io(SSL *ssl, int op, void *buf, size_t len, size_t *done, int timeout_ms)
{
    long long deadline = timeout_ms >= 0 ? commssl_now_ms() + timeout_ms : -1;
    commssl_pollfd p;
    int e, wait, r;

    p.fd = SSL_get_fd(ssl);
    for (;;) {
        e = commssl_do(ssl, op, buf, len, done);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return e;
        p.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        p.revents = 0;
        wait = -1;
        if (deadline >= 0) {
            long long left = deadline - commssl_now_ms();
            if (left <= 0)
                return COMMSSL_TIMEOUT;
            wait = (int)left;
        }
        r = commssl_poll(&p, 1, wait);
        if (r == 0)
            return COMMSSL_TIMEOUT;
        if (r < 0) {
#ifndef _WIN32
            if (errno == EINTR)
                return COMMSSL_EINTR;
#endif
            return SSL_ERROR_SYSCALL;
        }
    }
}

/* Certificate data in one call, as tagged records into a memory BIO: one tag
   byte, a 4-byte little-endian length, then the bytes (UTF-8 for text). */
static int commssl_put(BIO *out, char tag, const void *data, int len)
{
    unsigned char hdr[5];
    if (len < 0)
        return 0;
    hdr[0] = (unsigned char)tag;
    hdr[1] = (unsigned char)(len & 0xff);
    hdr[2] = (unsigned char)((len >> 8) & 0xff);
    hdr[3] = (unsigned char)((len >> 16) & 0xff);
    hdr[4] = (unsigned char)((len >> 24) & 0xff);
    return BIO_write(out, hdr, 5) == 5 && (len == 0 || BIO_write(out, data, len) == len);
}

static int commssl_put_entry(BIO *out, char tag, X509_NAME *name, int nid)
{
    unsigned char *utf8 = NULL;
    int len, i = X509_NAME_get_index_by_NID(name, nid, -1);
    if (i < 0)
        return 1;
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (len < 0)
        return 0;
    i = commssl_put(out, tag, utf8, len);
    OPENSSL_free(utf8);
    return i;
}

static int commssl_put_name(BIO *out, char tag, X509_NAME *name)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *data;
    long len;
    int ok;
    if (mem == NULL)
        return 0;
    ok = X509_NAME_print_ex(mem, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0;
    len = BIO_get_mem_data(mem, &data);
    ok = ok && commssl_put(out, tag, data, (int)len);
    BIO_free(mem);
    return ok;
}

static int commssl_put_time(BIO *out, char tag, const ASN1_TIME *t)
{
    struct tm tm;
    char buf[32];
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 1;
    snprintf(buf, sizeof buf, "%04d%02d%02d%02d%02d%02d", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return commssl_put(out, tag, buf, (int)strlen(buf));
}

/* The serial's magnitude (big-endian, in the certificate: any size) and sign:
   the one serial reader behind commssl_serial, commssl_serial_into and
   commssl_cert_info. Returns the length. */
static int commssl_serial_ref(X509 *x, const unsigned char **data, int *negative)
{
    const ASN1_INTEGER *s = X509_get0_serialNumber(x);
    *data = ASN1_STRING_get0_data(s);
    *negative = ASN1_STRING_type(s) == V_ASN1_NEG_INTEGER;
    return ASN1_STRING_length(s);
}

int commssl_serial(X509 *x, unsigned char *buf, int size, int *negative)
{
    const unsigned char *data;
    int len = commssl_serial_ref(x, &data, negative);
    if (len > size)
        return -len;
    memcpy(buf, data, len);
    return len;
}

/* SHA-256 of the DER SubjectPublicKeyInfo (curl's --pinnedpubkey sha256//). */
static int commssl_put_spki(BIO *out, X509 *x)
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    int ok = len > 0 && EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL)
             && commssl_put(out, 'P', md, (int)mdlen);
    OPENSSL_free(der);
    return ok;
}

int commssl_common_name(X509 *x, unsigned char **out)
{
    X509_NAME *name = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    *out = NULL;
    if (i < 0)
        return -1;
    return ASN1_STRING_to_UTF8(out, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
}

int commssl_cert_info(X509 *x, BIO *out)
{
    const unsigned char *serial;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int neg = 0, len, i, ok = 1;
    STACK_OF(OPENSSL_STRING) *emails;
    GENERAL_NAMES *sans;

    ok = ok && commssl_put_entry(out, 'C', X509_get_subject_name(x), NID_commonName);
    len = commssl_serial_ref(x, &serial, &neg);
    ok = ok && len >= 0 && commssl_put(out, neg ? 'N' : 'S', serial, len);
    emails = X509_get1_email(x);
    for (i = 0; ok && emails != NULL && i < sk_OPENSSL_STRING_num(emails); i++) {
        const char *e = sk_OPENSSL_STRING_value(emails, i);
        ok = commssl_put(out, 'E', e, (int)strlen(e));
    }
    X509_email_free(emails);
    ok = ok && commssl_put_name(out, 's', X509_get_subject_name(x));
    ok = ok && commssl_put_name(out, 'i', X509_get_issuer_name(x));
    ok = ok && commssl_put_entry(out, 'c', X509_get_issuer_name(x), NID_commonName);
    ok = ok && commssl_put_time(out, 'b', X509_get0_notBefore(x));
    ok = ok && commssl_put_time(out, 'a', X509_get0_notAfter(x));
    sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (i = 0; ok && sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        ASN1_STRING *v = NULL;
        char tag = 0;
        switch (g->type) {
        case GEN_DNS: tag = 'D'; v = g->d.dNSName; break;
        case GEN_IPADD: tag = 'I'; v = g->d.iPAddress; break;
        case GEN_EMAIL: tag = 'M'; v = g->d.rfc822Name; break;
        case GEN_URI: tag = 'U'; v = g->d.uniformResourceIdentifier; break;
        default: break;
        }
        if (v != NULL)
            ok = commssl_put(out, tag, ASN1_STRING_get0_data(v), ASN1_STRING_length(v));
    }
    GENERAL_NAMES_free(sans);
    ok = ok && X509_digest(x, EVP_sha256(), md, &mdlen) && commssl_put(out, 'F', md, (int)mdlen);
    ok = ok && commssl_put_spki(out, x);
    return ok;
}

/* ---- fast paths measured by bench/ (owner: bench) ------------------------
   get_certificate_serial_number in one C call of three arguments (each cffi
   call and argument costs; see bench/): the serial's magnitude, big-endian,
   into buf; returns 2 * length, plus 1 when the serial is negative, or
   -length when buf (size bytes) is too small for it. */
int commssl_serial_into(X509 *x, unsigned char *buf, int size)
{
    const unsigned char *data;
    int neg, len = commssl_serial_ref(x, &data, &neg);
    if (len > size)
        return -len;
    memcpy(buf, data, len);
    return 2 * len + neg;
}

/* The common case in two arguments and no slicing on the Python side: a
   serial of at most 20 bytes (RFC 5280's limit) right-aligned in buf[0..20),
   zeros before it (they do not change the value); returns 1 when negative,
   else 0, or -length when it is longer (then use commssl_serial_into). */
int commssl_serial20(X509 *x, unsigned char *buf)
{
    const ASN1_INTEGER *s = X509_get0_serialNumber(x);
    int len = ASN1_STRING_length(s);
    if (len > 20)
        return -len;
    memset(buf, 0, (size_t)(20 - len));
    memcpy(buf + (20 - len), ASN1_STRING_get0_data(s), (size_t)len);
    return ASN1_STRING_type(s) == V_ASN1_NEG_INTEGER;
}

/* SSLPointer's record (made on first use: it lives as long as the SSL) filled
   in one call and returned (NULL: out of memory), with the SSL's mode
   bits when mode is not 0 (Python field stores and cffi calls cost more than
   their work between OpenSSL's long handshake steps: cold caches); its
   release (its handle cleared) with SSL_free; and the client side of new_ssl: connect state,
   SNI (sni NULL: none) and the name the peer's certificate must match (host
   NULL: none; an IP literal when is_ip), returning 0 when OpenSSL refused
   that name. */
commssl_state *commssl_attach(SSL *ssl, void *py, int py_verify, int conn_verify, long mode)
{
    commssl_state *st = commssl_get_state(ssl);
    if (mode != 0)
        SSL_set_mode(ssl, mode);
    if (st == NULL) {
        CRYPTO_RWLOCK *lock = CRYPTO_THREAD_lock_new();
        st = OPENSSL_zalloc(sizeof *st);
        if (st == NULL || lock == NULL || !SSL_set_ex_data(ssl, commssl_oplock_idx, lock)) {
            OPENSSL_free(st);
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

/* A read that fills buf as far as the peer's data already allows: the first
   SSL_read_ex waits as commssl_io's does, then more follow, without waiting,
   while they succeed and buf has room (one Python call per buffer, not per
   16 KiB record). Returns what the first read returned; when that is 0,
   *done is the total and *later the SSL_ERROR_* that stopped the extra reads
   (0, or WANT_READ / WANT_WRITE when the data simply ran out), with the error
   queue as that read left it, so the caller can report it at its next read. */
int commssl_read_more(SSL *ssl, char *buf, size_t len, size_t *done, int timeout_ms, int *later)
{
    size_t total, n = 0;
    int e = commssl_io(ssl, COMMSSL_OP_READ, buf, len, &n, timeout_ms);

    *later = 0;
    *done = 0;
    if (e != 0)
        return e;
    total = n;
    while (total < len) {
        e = commssl_do(ssl, COMMSSL_OP_READ, buf + total, len - total, &n);
        if (e != 0) {
            *later = e;
            break;
        }
        total += n;
    }
    *done = total;
    return 0;
}
/* ---- end of fast paths ---------------------------------------------------- */

/* ---- demo PKI for `python -m commssl` (owner: the CLI/demo) -------------
   One throwaway certificate per call, made in memory: a fresh EC P-256 key,
   subject CN=cn, signed with SHA-256 by issuer_key (issuer NULL: self-signed
   with its own key). is_ca: basicConstraints CA:TRUE (pathlen >= 0 adds
   pathlen) with keyCertSign/cRLSign; else a leaf for serverAuth+clientAuth
   with the subjectAltName conf string san (e.g. "DNS:localhost,IP:127.0.0.1").
   Validity: now+not_before .. now+not_after (seconds). On success *cert_out
   and *key_out each hold one reference for the caller; returns 1, else 0
   with the error queue telling why. */
static int commssl_demo_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    int ok = ext != NULL && X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

int commssl_demo_cert(const char *cn, const char *san, int is_ca, int pathlen,
                      uint64_t serial, long not_before, long not_after,
                      X509 *issuer, EVP_PKEY *issuer_key, X509 **cert_out, EVP_PKEY **key_out)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    X509V3_CTX v3;
    char bc[64];
    int ok = key != NULL && x != NULL && name != NULL;

    *cert_out = NULL;
    *key_out = NULL;
    ok = ok && X509_set_version(x, 2)
         && ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial)
         && X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                       (const unsigned char *)cn, -1, -1, 0)
         && X509_set_subject_name(x, name)
         && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name)
         && X509_gmtime_adj(X509_getm_notBefore(x), not_before)
         && X509_gmtime_adj(X509_getm_notAfter(x), not_after)
         && X509_set_pubkey(x, key);
    if (ok) {
        X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
        if (is_ca) {
            if (pathlen >= 0)
                snprintf(bc, sizeof bc, "critical,CA:TRUE,pathlen:%d", pathlen);
            else
                snprintf(bc, sizeof bc, "critical,CA:TRUE");
            ok = commssl_demo_ext(x, &v3, NID_basic_constraints, bc)
                 && commssl_demo_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
        } else {
            ok = commssl_demo_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE")
                 && commssl_demo_ext(x, &v3, NID_key_usage, "critical,digitalSignature")
                 && commssl_demo_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth")
                 && (san == NULL || commssl_demo_ext(x, &v3, NID_subject_alt_name, san));
        }
        ok = ok && commssl_demo_ext(x, &v3, NID_subject_key_identifier, "hash");
        /* the root has no authority to name; the others name their issuer's key */
        ok = ok && (issuer == NULL
                    || commssl_demo_ext(x, &v3, NID_authority_key_identifier, "keyid:always"));
        ok = ok && X509_sign(x, issuer ? issuer_key : key, EVP_sha256()) > 0;
    }
    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        EVP_PKEY_free(key);
        return 0;
    }
    *cert_out = x;
    *key_out = key;
    return 1;
}
/* ---- end of demo PKI ---------------------------------------------------- */

/* ---- asyncio streams (owner: aio.py) -------------------------------------
   AsyncSSLStream drives an SSL whose BIOs are two memory BIOs: the event loop
   moves ciphertext between them and the socket. commssl_mem_step does what one
   event needs in one call, instead of a cffi round trip per TLS record:
   append inlen bytes from in to the read BIO (eof != 0: from now on an empty
   read BIO means the peer closed the connection), then run op as commssl_do:
   - COMMSSL_OP_READ: SSL_read_ex repeatedly into buf (cap len); *done is the
     total. Returns 0 when buf is full (call again: more may be decrypted),
     else the code that stopped the reads (SSL_ERROR_WANT_READ: all consumed).
   - COMMSSL_OP_WRITE: SSL_write_ex of len bytes from buf (a memory BIO takes
     them all); HANDSHAKE, SHUTDOWN: one step.
   *wpending is then what waits in the write BIO for the socket. */
int commssl_mem_step(SSL *ssl, char *in, size_t inlen, int eof, int op,
                     char *buf, size_t len, size_t *done, size_t *wpending)
{
    BIO *rbio = SSL_get_rbio(ssl);
    size_t total = 0, n = 0;
    int e = 0;

    *done = 0;
    while (inlen > 0) {
        int chunk = inlen > 0x40000000 ? 0x40000000 : (int)inlen;
        if (BIO_write(rbio, in, chunk) != chunk) {
            *wpending = BIO_ctrl_pending(SSL_get_wbio(ssl));
            return SSL_ERROR_SSL;  /* out of memory, on the error queue */
        }
        in += chunk;
        inlen -= (size_t)chunk;
    }
    if (eof)
        BIO_set_mem_eof_return(rbio, 0);
    if (op == COMMSSL_OP_READ) {
        while (total < len) {
            e = commssl_do(ssl, op, buf + total, len - total, &n);
            if (e != 0)
                break;
            total += n;
        }
        *done = total;
    } else {
        e = commssl_do(ssl, op, buf, len, done);
    }
    *wpending = BIO_ctrl_pending(SSL_get_wbio(ssl));
    return e;
}
/* ---- end of asyncio streams ---------------------------------------------- */

/* ---- contexts (owner: contexts.py) ---------------------------------------
   The pass phrase callback every commssl context starts with: an encrypted
   key loaded before set_ssl_ctx_password_callback fails at once (SSLFailure)
   instead of OpenSSL's default prompting on the terminal, which would block. */
int commssl_no_password(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf; (void)size; (void)rwflag; (void)userdata;
    return -1;
}
/* ---- end of contexts ------------------------------------------------------ */
"""

# -- revocation: CRLs, OCSP stapling, verified chains, verification errors (revocation.py) --
OCSP = """
typedef ... X509_CRL;
static const long X509_V_FLAG_CRL_CHECK;
static const long X509_V_FLAG_CRL_CHECK_ALL;
static const int X509_V_ERR_UNABLE_TO_GET_CRL;
static const int X509_V_ERR_CERT_REVOKED;
static const int X509_V_ERR_OCSP_VERIFY_NEEDED;
static const int X509_V_ERR_OCSP_VERIFY_FAILED;
static const int X509_V_ERR_OCSP_CERT_UNKNOWN;
static const int SSL_R_INVALID_STATUS_RESPONSE;
static const int SSL_R_TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE;
static const int SSL_TLSEXT_ERR_OK;
static const int SSL_TLSEXT_ERR_ALERT_FATAL;
static const int SSL_TLSEXT_ERR_NOACK;
X509_VERIFY_PARAM *SSL_CTX_get0_param(SSL_CTX *);
int X509_VERIFY_PARAM_set_flags(X509_VERIFY_PARAM *, unsigned long);
int X509_VERIFY_PARAM_clear_flags(X509_VERIFY_PARAM *, unsigned long);
unsigned long X509_VERIFY_PARAM_get_flags(const X509_VERIFY_PARAM *);
long SSL_get_tlsext_status_ocsp_resp(SSL *, unsigned char **);
const char *OCSP_crl_reason_str(long);

/* revocation block: see build_ffi.py */
typedef struct {
    int status;
    int verified;
    int code;
    int reason;
    char this_update[16];
    char next_update[16];
    char revocation_time[16];
    char error[256];
} commssl_ocsp_result;

int commssl_rv_init(void);
int commssl_copy_verified_chain(SSL *, X509_STORE_CTX *, X509 **, int);
int commssl_failure_chain(SSL *, X509 **, int);
int commssl_verify_errors(SSL *, int, int *, int *, char **);
int commssl_ocsp_failed(SSL *);
int commssl_ocsp_unreadable(SSL *);
int commssl_is_ocsp_der(const unsigned char *, size_t);
int commssl_load_crls(SSL_CTX *, const unsigned char *, size_t);
int commssl_set_ocsp_mode(SSL_CTX *, SSL *, int);
int commssl_set_staple(SSL_CTX *, const unsigned char *, size_t, int);
int commssl_staple_ssl(SSL *, const unsigned char *, size_t);
int commssl_ocsp_check(SSL *, X509_STORE_CTX *, const unsigned char *, long, commssl_ocsp_result *);
extern "Python" int _commssl_staple_py(void *, SSL *);
"""

REVOCATION = r"""
/* ---- revocation (owner: revocation.py) -----------------------------------
   CRLs, OCSP stapling (client checks inside the handshake, server staples),
   the verified chain, and the verification errors of a handshake. Its own
   records, reached through ex_data slots of their own whose free callbacks
   free them with the SSL / SSL_CTX (independent of commssl_state's life):
   - per SSL (commssl_rv): the client's OCSP mode when set on the SSL, every
     verification error the verify callbacks saw (depth, code, subject), the
     certificates the peer sent at the first failure (a failed handshake does
     not keep them), and the OCSP failure that ended the handshake;
   - per SSL_CTX (commssl_ctx_rv): the client's OCSP mode, and what a server
     staples (bytes, or ask Python per handshake), under a lock. */
#include <openssl/ocsp.h>

typedef struct {
    int status;            /* V_OCSP_CERTSTATUS_*; -1: no answer for the certificate */
    int verified;          /* signed by a trusted responder, for this certificate, current */
    int code;              /* X509_V_OK, or the X509_V_ERR_* a handshake fails with */
    int reason;            /* OCSP_REVOKED_STATUS_* (CRL reason); -1: none */
    char this_update[16];  /* YYYYMMDDHHMMSS, or "" */
    char next_update[16];
    char revocation_time[16];
    char error[256];       /* what is wrong, or "" */
} commssl_ocsp_result;

static int _commssl_staple_py(void *, SSL *);

#define COMMSSL_MAX_ERRORS 64

typedef struct {
    int depth, code;
    char *subject;
} commssl_verr;

typedef struct {
    int ocsp_mode;               /* -1: the context's */
    int ocsp_failed;             /* the X509_V_ERR_* the status callback failed with */
    int n_errors;
    commssl_verr errors[COMMSSL_MAX_ERRORS];
    STACK_OF(X509) *sent;        /* what the peer sent, kept at the first failure */
    X509_STORE_CTX *store;       /* the verification the errors belong to */
} commssl_rv;

typedef struct {
    CRYPTO_RWLOCK *lock;
    int ocsp_mode;               /* client: 0 off, 1 ask and record, 2 if-present, 3 require */
    int staple_mode;             /* server: 0 none, 1 the bytes below, 2 ask Python */
    unsigned char *staple;
    size_t staple_len;
} commssl_ctx_rv;

static int commssl_rv_idx = -1, commssl_ctx_rv_idx = -1;

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

static void commssl_rv_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    commssl_rv *rv = ptr;
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (rv != NULL) {
        commssl_rv_clear(rv);
        OPENSSL_free(rv);
    }
}

static void commssl_ctx_rv_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    commssl_ctx_rv *cr = ptr;
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (cr != NULL) {
        OPENSSL_free(cr->staple);
        CRYPTO_THREAD_lock_free(cr->lock);
        OPENSSL_free(cr);
    }
}

/* SSL_dup copies ex_data pointers: the copy starts without a record instead
   of sharing (and freeing twice) the original's. */
static int commssl_rv_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d,
                          int idx, long argl, void *argp)
{
    (void)to; (void)from; (void)idx; (void)argl; (void)argp;
    *from_d = NULL;
    return 1;
}

int commssl_rv_init(void)
{
    if (commssl_rv_idx < 0)
        commssl_rv_idx = SSL_get_ex_new_index(0, NULL, NULL, commssl_rv_dup, commssl_rv_free);
    if (commssl_ctx_rv_idx < 0)
        commssl_ctx_rv_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, commssl_rv_dup, commssl_ctx_rv_free);
    return commssl_rv_idx >= 0 && commssl_ctx_rv_idx >= 0;
}

static commssl_rv *commssl_rv_get(SSL *ssl, int create)
{
    commssl_rv *rv;
    if (ssl == NULL || commssl_rv_idx < 0)
        return NULL;
    rv = SSL_get_ex_data(ssl, commssl_rv_idx);
    if (rv == NULL && create) {
        rv = OPENSSL_zalloc(sizeof *rv);
        if (rv == NULL)
            return NULL;
        rv->ocsp_mode = -1;
        if (!SSL_set_ex_data(ssl, commssl_rv_idx, rv)) {
            OPENSSL_free(rv);
            return NULL;
        }
    }
    return rv;
}

static commssl_ctx_rv *commssl_ctx_rv_get(SSL_CTX *ctx, int create)
{
    commssl_ctx_rv *cr;
    if (ctx == NULL || commssl_ctx_rv_idx < 0)
        return NULL;
    cr = SSL_CTX_get_ex_data(ctx, commssl_ctx_rv_idx);
    if (cr == NULL && create) {
        cr = OPENSSL_zalloc(sizeof *cr);
        if (cr == NULL)
            return NULL;
        cr->lock = CRYPTO_THREAD_lock_new();
        if (cr->lock == NULL || !SSL_CTX_set_ex_data(ctx, commssl_ctx_rv_idx, cr)) {
            CRYPTO_THREAD_lock_free(cr->lock);
            OPENSSL_free(cr);
            return NULL;
        }
    }
    return cr;
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
    commssl_rv *rv;
    commssl_ocsp_result r;
    int mode;
    (void)arg;

    if (SSL_is_server(ssl))
        return commssl_staple_server(ssl, cr);
    rv = commssl_rv_get(ssl, 0);
    mode = rv != NULL && rv->ocsp_mode >= 0 ? rv->ocsp_mode : (cr != NULL ? cr->ocsp_mode : 0);
    if (mode < 2)
        return 1;
    if (!commssl_ocsp_check(ssl, NULL, NULL, 0, &r) && mode == 2)
        return 1;  /* "if-present": no staple is fine */
    if (r.code == X509_V_OK)
        return 1;
    commssl_ocsp_fail(ssl, r.code);
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
int commssl_is_ocsp_der(const unsigned char *data, size_t len)
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
/* ---- end of revocation ---------------------------------------------------- */
"""


# ---- TLS features the peers have (owner: features.py, credentials.py, sessions.py) ----
# Cipher/SNI/group accessors, groups, in-memory credentials, ALPN, key logging and
# sessions. Kept apart from the areas above so concurrent work merges cleanly.
FEATURES = """
typedef ... SSL_SESSION;
int SSL_get_negotiated_group(SSL *);
const char *SSL_group_to_name(SSL *, int);
int SSL_CTX_set1_groups_list(SSL_CTX *, const char *);
int SSL_set1_groups_list(SSL *, const char *);
int SSL_CTX_set_alpn_protos(SSL_CTX *, const unsigned char *, unsigned int);
int SSL_set_alpn_protos(SSL *, const unsigned char *, unsigned int);
void SSL_get0_alpn_selected(const SSL *, const unsigned char **, unsigned int *);
SSL_SESSION *SSL_get1_session(SSL *);
void SSL_SESSION_free(SSL_SESSION *);
int SSL_set_session(SSL *, SSL_SESSION *);
int SSL_session_reused(const SSL *);
int SSL_SESSION_is_resumable(const SSL_SESSION *);
int SSL_SESSION_get_protocol_version(const SSL_SESSION *);
int SSL_CTX_set_session_id_context(SSL_CTX *, const unsigned char *, unsigned int);
int SSL_set_session_id_context(SSL *, const unsigned char *, unsigned int);
static const long SSL_OP_NO_TICKET;
int commssl_ctx_keep_chains(SSL_CTX *);

int commssl_features_init(void);
int commssl_ctx_set_alpn_select(SSL_CTX *, const unsigned char *, unsigned int, int);
void commssl_ctx_set_keylog(SSL_CTX *, int);
int commssl_use_chain_mem(SSL_CTX *, const char *, int);
int commssl_use_key_mem(SSL_CTX *, const char *, int, const char *);
int commssl_load_cadata(SSL_CTX *, const char *, int);
int commssl_reverify(SSL *);
extern "Python" int _commssl_alpn_py(void *, const unsigned char *, unsigned int);
extern "Python" void _commssl_keylog_py(void *, const char *);
"""

FEATURES_C = r"""
/* ---- ALPN, keylog, sessions (owner: features.py, credentials.py, sessions.py) ----
   commssl_features hangs off the SSL_CTX (its own ex_data index, freed with the
   context): the server's ALPN preference list in wire format, and whether a
   Python select callback is set. Python is reached through the SSL's commssl
   record (st->py); an SSL commssl does not know fails closed (ALPN) or logs
   nothing (keylog). */
static int _commssl_alpn_py(void *, const unsigned char *, unsigned int);
static void _commssl_keylog_py(void *, const char *);

typedef struct {
    unsigned char *alpn;
    unsigned int alpn_len;
    int alpn_py;
} commssl_features;

static int commssl_feat_idx = -1;

static void commssl_features_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                                  long argl, void *argp)
{
    commssl_features *f = ptr;
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (f != NULL) {
        OPENSSL_free(f->alpn);
        OPENSSL_free(f);
    }
}

/* SSL ex_data: the client's chain (STACK_OF(X509), leaf excluded) that a server
   read back from a session ticket's app data, for commssl_reverify. */
static int commssl_chain_idx = -1;

static void commssl_chain_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                               long argl, void *argp)
{
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (ptr != NULL)
        sk_X509_pop_free((STACK_OF(X509) *)ptr, X509_free);
}

int commssl_features_init(void)
{
    if (commssl_feat_idx < 0)
        commssl_feat_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, commssl_features_free);
    if (commssl_chain_idx < 0)
        commssl_chain_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, commssl_chain_free);
    return commssl_feat_idx >= 0 && commssl_chain_idx >= 0;
}

/* Session tickets of a server that verifies client certificates. A ticket holds
   the client's leaf but not its chain, which commssl verifies again when the
   session is resumed: the chain rides in the ticket's app data (each certificate
   as a 3-byte length and its DER), and a ticket without it is not resumed (a full
   handshake runs). */
static int commssl_ticket_gen(SSL *s, void *arg)
{
    STACK_OF(X509) *chain = SSL_get_ex_data(s, commssl_chain_idx);
    SSL_SESSION *sess = SSL_get_session(s);
    unsigned char *buf, *p;
    int i, len;
    size_t total = 0;
    (void)arg;
    if (sess == NULL || SSL_get0_peer_certificate(s) == NULL)
        return 1;
    if (chain == NULL)
        chain = SSL_get_peer_cert_chain(s);
    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        len = i2d_X509(sk_X509_value(chain, i), NULL);
        if (len <= 0 || len > 0xffffff)
            return 1;
        total += 3 + (size_t)len;
    }
    if (total == 0 || total > 32768)
        return 1;  /* nothing to keep, or too much for a ticket: no resumption */
    buf = p = OPENSSL_malloc(total);
    if (buf == NULL)
        return 1;
    for (i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        len = i2d_X509(x, NULL);
        p[0] = (unsigned char)(len >> 16);
        p[1] = (unsigned char)(len >> 8);
        p[2] = (unsigned char)len;
        p += 3;
        i2d_X509(x, &p);
    }
    SSL_SESSION_set1_ticket_appdata(sess, buf, total);
    OPENSSL_free(buf);
    return 1;
}

static SSL_TICKET_RETURN commssl_ticket_dec(SSL *s, SSL_SESSION *ss, const unsigned char *keyname,
                                            size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
    void *data = NULL;
    size_t len = 0;
    const unsigned char *p, *end;
    STACK_OF(X509) *chain;
    (void)keyname; (void)keyname_len; (void)arg;
    switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
        break;
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    default:
        return SSL_TICKET_RETURN_ABORT;
    }
    if (SSL_SESSION_get0_peer(ss) == NULL)
        return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
    if (!SSL_SESSION_get0_ticket_appdata(ss, &data, &len) || data == NULL || len == 0)
        return SSL_TICKET_RETURN_IGNORE_RENEW;  /* no chain to verify again: full handshake */
    chain = sk_X509_new_null();
    if (chain == NULL)
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    p = data;
    end = p + len;
    while (p < end) {
        long n;
        X509 *x;
        if (end - p < 3)
            break;
        n = ((long)p[0] << 16) | ((long)p[1] << 8) | p[2];
        p += 3;
        if (n <= 0 || n > end - p)
            break;
        x = d2i_X509(NULL, &p, n);
        if (x == NULL || !sk_X509_push(chain, x)) {
            X509_free(x);
            break;
        }
    }
    if (p != end) {
        sk_X509_pop_free(chain, X509_free);
        ERR_clear_error();
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    commssl_chain_free(NULL, SSL_get_ex_data(s, commssl_chain_idx), NULL, 0, 0, NULL);
    SSL_set_ex_data(s, commssl_chain_idx, chain);
    return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

int commssl_ctx_keep_chains(SSL_CTX *ctx)
{
    return SSL_CTX_set_session_ticket_cb(ctx, commssl_ticket_gen, commssl_ticket_dec, NULL);
}

static commssl_features *commssl_features_of(SSL_CTX *ctx, int create)
{
    commssl_features *f = SSL_CTX_get_ex_data(ctx, commssl_feat_idx);
    if (f == NULL && create) {
        f = OPENSSL_zalloc(sizeof *f);
        if (f != NULL && !SSL_CTX_set_ex_data(ctx, commssl_feat_idx, f)) {
            OPENSSL_free(f);
            f = NULL;
        }
    }
    return f;
}

/* The server's ALPN choice. _commssl_alpn_py returns the offset in `in` of the
   chosen protocol's length byte, -1 for "no ALPN", -2 for an error (the Python
   side parked the exception on the connection): a fatal no_application_protocol
   alert then aborts the handshake. */
static int commssl_alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                  const unsigned char *in, unsigned int inlen, void *arg)
{
    commssl_features *f = commssl_features_of(SSL_get_SSL_CTX(ssl), 0);
    (void)arg;
    if (f == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (f->alpn_py) {
        commssl_state *st = commssl_get_state(ssl);
        int r;
        if (st == NULL || st->py == NULL)
            return SSL_TLSEXT_ERR_ALERT_FATAL;  /* the Python callable cannot be reached */
        r = _commssl_alpn_py(st->py, in, inlen);
        if (r == -1)
            return SSL_TLSEXT_ERR_NOACK;
        if (r < 0 || (unsigned int)r >= inlen || (unsigned int)r + 1 + in[r] > inlen || in[r] == 0)
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        *outlen = in[r];
        *out = in + r + 1;
        return SSL_TLSEXT_ERR_OK;
    }
    if (f->alpn != NULL
        && SSL_select_next_proto((unsigned char **)out, outlen, f->alpn, f->alpn_len, in, inlen)
           == OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;
}

/* Install (or, with no list and no Python callback, remove) the select callback. */
int commssl_ctx_set_alpn_select(SSL_CTX *ctx, const unsigned char *protos, unsigned int len, int py)
{
    commssl_features *f = commssl_features_of(ctx, 1);
    unsigned char *copy = NULL;
    if (f == NULL)
        return 0;
    if (protos != NULL && len > 0) {
        copy = OPENSSL_memdup(protos, len);
        if (copy == NULL)
            return 0;
    }
    OPENSSL_free(f->alpn);
    f->alpn = copy;
    f->alpn_len = copy ? len : 0;
    f->alpn_py = py;
    SSL_CTX_set_alpn_select_cb(ctx, (copy != NULL || py) ? commssl_alpn_select_cb : NULL, NULL);
    return 1;
}

static void commssl_keylog_cb(const SSL *ssl, const char *line)
{
    commssl_state *st = commssl_get_state(ssl);
    if (st != NULL && st->py != NULL)
        _commssl_keylog_py(st->py, line);
}

void commssl_ctx_set_keylog(SSL_CTX *ctx, int on)
{
    SSL_CTX_set_keylog_callback(ctx, on ? commssl_keylog_cb : NULL);
}

/* In-memory credentials. Each returns 1, or 0 with OpenSSL's error queue. */
int commssl_use_chain_mem(SSL_CTX *ctx, const char *data, int len)
{
    BIO *bio = BIO_new_mem_buf(data, len);
    X509 *x;
    int ok;
    if (bio == NULL)
        return 0;
    x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1 && SSL_CTX_clear_chain_certs(ctx);
    X509_free(x);
    while (ok) {
        X509 *ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (ca == NULL) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                ERR_clear_error();  /* the end of the data */
            else
                ok = 0;
            break;
        }
        if (!SSL_CTX_add0_chain_cert(ctx, ca)) {
            X509_free(ca);
            ok = 0;
        }
    }
    BIO_free(bio);
    return ok;
}

int commssl_use_key_mem(SSL_CTX *ctx, const char *data, int len, const char *password)
{
    BIO *bio = BIO_new_mem_buf(data, len);
    pem_password_cb *cb = password ? NULL : SSL_CTX_get_default_passwd_cb(ctx);
    void *u = password ? (void *)password : SSL_CTX_get_default_passwd_cb_userdata(ctx);
    EVP_PKEY *key = NULL;
    int ok;
    if (bio == NULL)
        return 0;
    if (len >= 5 && memcmp(data, "-----", 5) == 0) {
        key = PEM_read_bio_PrivateKey(bio, NULL, cb, u);
    } else {
        key = d2i_PKCS8PrivateKey_bio(bio, NULL, cb, u);  /* encrypted PKCS#8 */
        if (key == NULL) {
            ERR_clear_error();
            BIO_free(bio);
            bio = BIO_new_mem_buf(data, len);
            key = bio ? d2i_PrivateKey_bio(bio, NULL) : NULL;
        }
    }
    ok = key != NULL && SSL_CTX_use_PrivateKey(ctx, key) == 1;
    EVP_PKEY_free(key);
    BIO_free(bio);
    return ok;
}

/* Trusted certificates from memory: PEM (one or more) or DER (one). Returns how
   many were added, 0 with the error queue when none could be. */
int commssl_load_cadata(SSL_CTX *ctx, const char *data, int len)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = BIO_new_mem_buf(data, len);
    int n = 0;
    X509 *x;
    if (bio == NULL)
        return 0;
    if (len >= 5 && memcmp(data, "-----", 5) == 0) {
        while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            int ok = X509_STORE_add_cert(store, x);
            X509_free(x);
            if (!ok) {
                BIO_free(bio);
                return 0;
            }
            n++;
        }
        if (n > 0) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                ERR_clear_error();
            else
                n = 0;  /* a damaged certificate after good ones */
        }
    } else {
        x = d2i_X509_bio(bio, NULL);
        if (x != NULL) {
            n = X509_STORE_add_cert(store, x) ? 1 : 0;
            X509_free(x);
        }
    }
    BIO_free(bio);
    return n;
}

/* A resumed handshake has no certificate verification in OpenSSL: run it again,
   as ssl_verify_cert_chain would, on the session's stored chain against the
   context's trust store and the SSL's parameters (host name included), through
   the SSL's verify callback or commssl's whole-chain callback. Records the
   result as the SSL's verify result. 1: verified (or no peer certificate to
   verify), 0: not verified, -1: could not run (error queue). */
int commssl_reverify(SSL *ssl)
{
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    commssl_state *st = commssl_get_state(ssl);
    X509_STORE_CTX *store;
    int (*vcb)(int, X509_STORE_CTX *) = SSL_get_verify_callback(ssl);
    int ok;

    if (leaf == NULL)
        return 1;
    if (SSL_is_server(ssl) && SSL_get_ex_data(ssl, commssl_chain_idx) != NULL)
        chain = SSL_get_ex_data(ssl, commssl_chain_idx);  /* from the ticket */
    store = X509_STORE_CTX_new();
    if (store == NULL)
        return -1;
    if (!X509_STORE_CTX_init(store, SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), leaf, chain)
        || !X509_STORE_CTX_set_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx(), ssl)) {
        X509_STORE_CTX_free(store);
        return -1;
    }
    X509_STORE_CTX_set_default(store, SSL_is_server(ssl) ? "ssl_client" : "ssl_server");
    X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(store), SSL_get0_param(ssl));
    X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(store), SSL_get_security_level(ssl));
    if (vcb != NULL)
        X509_STORE_CTX_set_verify_cb(store, vcb);
    if (st != NULL && st->conn_verify)
        ok = commssl_cert_verify_cb(store, NULL);
    else
        ok = X509_verify_cert(store) > 0;
    SSL_set_verify_result(ssl, ok ? X509_V_OK : X509_STORE_CTX_get_error(store));
    X509_STORE_CTX_free(store);
    return ok ? 1 : 0;
}
/* ---- end of ALPN, keylog, sessions ---------------------------------------- */
"""

CDEF = VERSION + CRYPTO + ERR + BIO + X509 + X509_VFY + SSL + HELPERS + OCSP + FEATURES


def _build() -> FFI:
    ffi = FFI()
    ffi.cdef(CDEF)
    source = PRELUDE + CUSTOMIZATIONS + REVOCATION + FEATURES_C
    kwargs: dict = {"py_limited_api": not sys.implementation.name == "pypy"}
    # OPENSSL_DIR (a prefix holding include/ and lib/) wins over pkg-config when set, so a
    # wheel build links the OpenSSL 3 it was pointed at, never whatever pkg-config finds.
    prefix = os.environ.get("OPENSSL_DIR")
    if prefix:
        libdirs = [os.path.join(prefix, d) for d in ("lib", "lib64")]
        kwargs["include_dirs"] = [os.path.join(prefix, "include")]
        kwargs["library_dirs"] = [d for d in libdirs if os.path.isdir(d)] or libdirs[:1]
    if sys.platform == "win32":
        # OpenSSL 3's import libraries are libssl.lib/libcrypto.lib (vcpkg, the official
        # build); ws2_32 for WSAPoll; the rest only matter for a static libcrypto.
        libraries = ["libssl", "libcrypto", "ws2_32", "crypt32", "advapi32", "user32"]
        ffi.set_source("commssl._openssl", source, libraries=libraries, **kwargs)
        return ffi
    if not prefix:
        try:
            ffi.set_source_pkgconfig("commssl._openssl", ["libssl", "libcrypto"], source, **kwargs)
            return ffi
        except PkgConfigError:
            pass  # no pkg-config or no .pc files: the compiler's default paths
    ffi.set_source("commssl._openssl", source, libraries=["ssl", "crypto"], **kwargs)
    return ffi


ffibuilder = _build()

if __name__ == "__main__":
    ffibuilder.compile(tmpdir="build/cffi", verbose=True)
