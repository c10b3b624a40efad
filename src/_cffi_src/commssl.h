/* commssl.h: what the C helpers share. build_ffi.py compiles them as ONE
   translation unit, in this order: records.c passwords.c verify.c chains.c io.c
   membio.c revocation.c features.c (each includes this header first; the guard
   makes the later includes no-ops), followed by cffi's wrappers. Helpers used
   across files are static and declared here; the helpers Python calls are
   declared here and, the same, in build_ffi.py's cdef (the compiler checks the
   two agree: cffi's wrappers call them). demo.c is not among them: it is the
   separate module commssl._demo (build_ffi.DEMO_FILES). */
#ifndef COMMSSL_H
#define COMMSSL_H

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
#include <limits.h>
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
#include <openssl/ocsp.h>

/* ---- types the cdef declares too (Python reads and writes their fields) ---- */

/* Per-SSL record reached through ex_data: the Python wrapper's handle, what the
   trampolines should call, and the first verification failure seen; and the
   per-SSL_CTX record: the context wrapper's handle and whether the context has a
   Python verify callback / verify_callback(conn). Both are allocated in C and
   freed by OpenSSL with their SSL or SSL_CTX (ex_data free callbacks), so none
   can dangle; a wrapper clears its handle ("py") when it dies. */
/* @cdef records: build_ffi.py hands this block to the cdef as it is */
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
/* @end records */

/* The answer of commssl_ocsp_check (revocation.c). */
/* @cdef ocsp_result */
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
/* @end ocsp_result */

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

/* ---- Python's side: extern "Python" functions (cffi defines them, static) ---- */
static int _commssl_verify_py(commssl_state *, int, X509_STORE_CTX *);
static int _commssl_conn_verify_py(commssl_state *, int, X509_STORE_CTX *);
static int _commssl_foreign_verify_py(commssl_ctx_state *, SSL *, int, int, X509_STORE_CTX *);
static int _commssl_password_py(char *, int, int, void *);
static int _commssl_staple_py(void *, SSL *);
static int _commssl_alpn_py(void *, const unsigned char *, unsigned int);
static void _commssl_keylog_py(void *, const char *);

/* ---- records.c ---- */
int commssl_init(void);
commssl_state *commssl_get_state(const SSL *);
commssl_ctx_state *commssl_get_ctx_state(const SSL_CTX *);
commssl_ctx_state *commssl_ctx_attach(SSL_CTX *, void *);
commssl_state *commssl_attach(SSL *, void *, int, int, long);
void commssl_release_ssl(SSL *);
int commssl_client_names(SSL *, const char *, const char *, int);
typedef struct commssl_oplock_st commssl_oplock_t;
static commssl_oplock_t *commssl_oplock(const SSL *);
static void commssl_op_enter(commssl_oplock_t *);
static void commssl_op_leave(commssl_oplock_t *);
int commssl_lock_ssl(SSL *);
void commssl_unlock_ssl(SSL *);
static int commssl_ex_dup(CRYPTO_EX_DATA *, const CRYPTO_EX_DATA *, void **, int, long, void *);

/* ---- passwords.c ---- */
int commssl_no_password(char *, int, int, void *);

/* ---- verify.c ---- */
SSL *commssl_store_ssl(X509_STORE_CTX *);
int commssl_verify_cb(int, X509_STORE_CTX *);
int commssl_cert_verify_cb(X509_STORE_CTX *, void *);
int commssl_decide_no_cert(SSL *);

/* ---- chains.c ---- */
static int commssl_copy_stack(X509 *, STACK_OF(X509) *, X509 **, int);
int commssl_copy_peer_chain(SSL *, X509_STORE_CTX *, X509 **, int);
void commssl_free_certs(X509 **, int);
int commssl_cert_info(X509 *, unsigned char *, int);
int commssl_serial(X509 *, unsigned char *, int, int *);
int commssl_serial_into(X509 *, unsigned char *, int);
int commssl_serial20(X509 *, unsigned char *);
int commssl_common_name(X509 *, unsigned char **);

/* ---- io.c ---- */
int commssl_do(SSL *, int, void *, size_t, size_t *);
int commssl_io(SSL *, int, void *, size_t, size_t *, int);
int commssl_set_socket(SSL *, int, int);
int commssl_holds_unread(SSL *);
int commssl_read_more(SSL *, char *, size_t, size_t *, int, int *);
static int commssl_read_on(SSL *, char *, size_t, size_t *);

/* ---- membio.c ---- */
int commssl_mem_step(SSL *, char *, size_t, int, int, char *, size_t, size_t *, size_t *);

/* ---- revocation.c ---- */
int commssl_rv_init(void);
static void commssl_rv_note_store(X509_STORE_CTX *, int);
int commssl_copy_verified_chain(SSL *, X509_STORE_CTX *, X509 **, int);
int commssl_failure_chain(SSL *, X509 **, int);
int commssl_verify_errors(SSL *, int, int *, int *, char **);
int commssl_ocsp_failed(SSL *);
int commssl_ocsp_unreadable(SSL *);
int commssl_ocsp_session_ok(SSL *, SSL_SESSION *);
int commssl_ocsp_resumed_ok(SSL *);
int commssl_is_ocsp_der(const unsigned char *, size_t);
int commssl_load_crls(SSL_CTX *, const unsigned char *, size_t);
int commssl_set_ocsp_mode(SSL_CTX *, SSL *, int);
int commssl_set_staple(SSL_CTX *, const unsigned char *, size_t, int);
int commssl_staple_ssl(SSL *, const unsigned char *, size_t);
int commssl_ocsp_check(SSL *, X509_STORE_CTX *, const unsigned char *, long, commssl_ocsp_result *);

/* ---- features.c ---- */
int commssl_features_init(void);
int commssl_ctx_keep_chains(SSL_CTX *);
int commssl_ctx_set_alpn_select(SSL_CTX *, const unsigned char *, unsigned int, int);
void commssl_ctx_set_keylog(SSL_CTX *, int);
int commssl_use_chain_mem(SSL_CTX *, const char *, int);
int commssl_use_key_mem(SSL_CTX *, const char *, int, const char *);
int commssl_load_cadata(SSL_CTX *, const char *, int);
int commssl_reverify(SSL *);

#endif /* COMMSSL_H */
