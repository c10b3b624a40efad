/* commssl.h: what the C helpers share among themselves. build_ffi.py compiles them as
   ONE translation unit, in its C_FILES order (each includes this header first; the
   guard makes the later includes no-ops), followed by cffi's wrappers.
   What Python sees of a file (its helpers, constants, extern "Python" callbacks) is
   declared once, in the file's own @cdef block, a comment after its #includes:
   build_ffi.py hands the block to cffi's cdef and writes it back in place as C
   prototypes, so the compiler checks every definition against it. Here: the includes,
   the records (their Python parts, between "@cdef NAME" and "@end NAME", go to the
   cdef as they are), and the static helpers one file defines for another. demo.c is
   not among them: it is the separate module commssl._demo (build_ffi.DEMO_FILES). */
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

/* ---- the records: one per SSL, one per SSL_CTX (records.c) ---- */

/* Python's part of the records (pointers.py reads and writes these fields): the
   wrapper's handle ("py", cleared when the wrapper dies), whether Python decides the
   verification (a per-certificate callable, verify_callback(conn)), and the first
   verification failure seen. */
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

/* The per-SSL operation lock, and which thread holds it: a Python callback that
   OpenSSL calls from inside an operation runs in the thread holding the lock, and a
   setter it calls on the same SSL must not wait for itself (commssl_lock_ssl). Only
   the holder writes owner/held, and a thread compares owner with itself only. */
typedef struct {
    CRYPTO_RWLOCK *lock;         /* NULL until commssl_attach: no lock, nothing of commssl's runs */
    CRYPTO_THREAD_ID owner;
    volatile int held;
} commssl_oplock_t;

#define COMMSSL_MAX_ERRORS 64

typedef struct {
    int depth, code;
    char *subject;
} commssl_verr;

/* revocation.c's part of the SSL's record */
typedef struct {
    int ocsp_mode;               /* -1: the context's */
    int ocsp_failed;             /* the X509_V_ERR_* the status callback failed with */
    int n_errors;
    commssl_verr errors[COMMSSL_MAX_ERRORS];
    STACK_OF(X509) *sent;        /* what the peer sent, kept at the first failure */
    X509_STORE_CTX *store;       /* the verification the errors belong to */
} commssl_rv;

/* The per-SSL record: commssl's one SSL ex_data slot, freed by OpenSSL with the SSL
   (an SSL_dup copy starts without one). commssl_attach makes it for a wrapper's SSL;
   the revocation and session-ticket code make it on first use for an SSL made
   outside commssl, which stays foreign (not attached: commssl_get_state gives NULL,
   and its context's record governs it). */
typedef struct {
    commssl_state st;            /* Python's part, first: the record's address is its */
    int attached;
    commssl_oplock_t op;
    commssl_rv rv;
    STACK_OF(X509) *ticket_chain; /* features.c: the client's chain (leaf excluded) a
                                    server read from a session ticket, for commssl_reverify */
} commssl_ssl_rec;

/* revocation.c's part of the context's record: the client's OCSP mode and what a
   server staples, under the lock */
typedef struct {
    CRYPTO_RWLOCK *lock;
    int ocsp_mode;               /* client: 0 off, 1 ask and record, 2 if-present, 3 require */
    int staple_mode;             /* server: 0 none, 1 the bytes below, 2 ask Python */
    unsigned char *staple;
    size_t staple_len;
} commssl_ctx_rv;

/* features.c's part: the server's ALPN preference list (wire format), and whether a
   Python select callback is set */
typedef struct {
    unsigned char *protos;
    unsigned int len;
    int py;
} commssl_alpn;

/* The per-SSL_CTX record: commssl's one SSL_CTX ex_data slot, freed with the context;
   made by commssl_ctx_attach (a wrapper's context) or on first use. */
typedef struct {
    commssl_ctx_state st;        /* Python's part, first */
    commssl_ctx_rv rv;
    commssl_alpn alpn;
} commssl_ctx_rec;

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

/* ---- static helpers one file defines for the others ---- */

/* records.c: the records (_of: NULL when there is none; _make: made on first use,
   NULL when out of memory), the operation lock, the SSL_SESSION mark */
static commssl_ssl_rec *commssl_ssl_rec_of(const SSL *);
static commssl_ssl_rec *commssl_ssl_rec_make(SSL *);
static commssl_ctx_rec *commssl_ctx_rec_of(const SSL_CTX *);
static commssl_ctx_rec *commssl_ctx_rec_make(SSL_CTX *);
static commssl_oplock_t *commssl_oplock(const SSL *);
static void commssl_op_enter(commssl_oplock_t *);
static void commssl_op_leave(commssl_oplock_t *);
static void commssl_session_mark(SSL_SESSION *);
static int commssl_session_marked(const SSL_SESSION *);

/* verify.c */
static SSL *commssl_store_ssl(X509_STORE_CTX *);

/* chains.c */
static int commssl_copy_stack(X509 *, STACK_OF(X509) *, X509 **, int);

/* io.c */
static int commssl_read_on(SSL *, char *, size_t, size_t *);

/* revocation.c */
static void commssl_rv_clear(commssl_rv *);
static void commssl_rv_note_store(X509_STORE_CTX *, int);

#endif /* COMMSSL_H */
