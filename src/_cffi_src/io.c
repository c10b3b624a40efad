/* io.c: one SSL operation under the operation lock (commssl_do), the socket BIOs
   of a stream (commssl_set_socket), and the blocking loops on a non-blocking
   socket that run without the GIL (commssl_io, commssl_read_more). */

#include "commssl.h"

/* @cdef
static const int COMMSSL_OP_HANDSHAKE;
static const int COMMSSL_OP_READ;
static const int COMMSSL_OP_WRITE;
static const int COMMSSL_OP_SHUTDOWN;
static const int COMMSSL_TIMEOUT;
static const int COMMSSL_EINTR;
static const int COMMSSL_SHUTDOWN_SENT;
int commssl_do(SSL *, int, void *, size_t, size_t *);
int commssl_io(SSL *, int, void *, size_t, size_t *, int);
int commssl_read_more(SSL *, char *, size_t, size_t *, int, int *);
int commssl_set_socket(SSL *, int, int);
int commssl_preload(SSL *, const char *, int);
int commssl_holds_unread(SSL *);
int commssl_close_notify(SSL *);
@end */

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
    commssl_oplock_t *lock = commssl_oplock(ssl);
    int r, e;
    if (lock != NULL)
        commssl_op_enter(lock);
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
        commssl_op_leave(lock);
    return e;
}

/* Give ssl the socket fd: writes go straight to it, reads through a buffer BIO
   of bufsize bytes. OpenSSL reads a record as a 5-byte header and then its body,
   two recv() calls per record; the buffer takes what the socket has in one recv()
   and serves both. This is read-ahead kept outside the SSL on purpose: what the
   buffer holds past the peer's close_notify (clear text after a STARTTLS-style
   downgrade) is still ours to hand back on a detach, BIO_read on SSL_get_rbio,
   where OpenSSL's own read-ahead would swallow it. Returns 0 on failure. */
int commssl_set_socket(SSL *ssl, int fd, int bufsize)
{
    BIO *sock, *buf;

    /* Kernel TLS takes the socket's records from where OpenSSL stopped reading:
       ciphertext already in our buffer would be taken for plaintext. */
    if (SSL_get_options(ssl) & SSL_OP_ENABLE_KTLS)
        return SSL_set_fd(ssl, fd);
    sock = BIO_new_socket(fd, BIO_NOCLOSE);
    buf = BIO_new(BIO_f_buffer());
    if (sock == NULL || buf == NULL || !BIO_set_read_buffer_size(buf, bufsize) || !BIO_up_ref(sock)) {
        BIO_free(buf);
        BIO_free(sock);
        return 0;
    }
    /* buf -> sock for reads; sock alone for writes. The SSL takes one reference
       to each chain; sock's second (up-ref'd above) belongs to the read chain. */
    BIO_push(buf, sock);
    SSL_set_bio(ssl, buf, sock);
    return 1;
}

/* Put len bytes (received in clear before the SSL was attached: the start of a
   STARTTLS peer's handshake) ahead of what the socket holds, in the read buffer of
   commssl_set_socket. 1, or 0 when the read side has no such buffer (kernel TLS
   reads the socket itself) or no memory. Before the handshake: nothing reads yet. */
int commssl_preload(SSL *ssl, const char *data, int len)
{
    BIO *rbio = SSL_get_rbio(ssl);
    if (rbio == NULL || BIO_method_type(rbio) != BIO_TYPE_BUFFER || len <= 0)
        return 0;
    return BIO_set_buffer_read_data(rbio, (void *)data, len) == 1;
}

/* close()'s close_notify: one try, never waiting, and only after a completed
   handshake (before it there is no session to end). One call where Python made
   two on every close. Returns what commssl_do returned (0 when nothing was sent). */
int commssl_close_notify(SSL *ssl)
{
    if (!SSL_is_init_finished(ssl))
        return 0;
    return commssl_do(ssl, COMMSSL_OP_SHUTDOWN, NULL, 0, NULL);
}

/* Whether ssl holds bytes received and not yet returned: decrypted, in a record
   being read, or in the read buffer of commssl_set_socket. Under the operation
   lock: a writer's handshake step may be changing the record layer meanwhile. */
int commssl_holds_unread(SSL *ssl)
{
    commssl_oplock_t *lock = commssl_oplock(ssl);
    BIO *rbio;
    int r;
    if (lock != NULL)
        commssl_op_enter(lock);
    rbio = SSL_get_rbio(ssl);
    r = SSL_has_pending(ssl) || (rbio != NULL && BIO_ctrl_pending(rbio) > 0);
    if (lock != NULL)
        commssl_op_leave(lock);
    return r;
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
    *later = commssl_read_on(ssl, buf, len, &total);
    *done = total;
    return 0;
}

/* The one read loop (commssl_read_more's extra reads, commssl_mem_step's reads):
   commssl_do reads into buf + *total while they succeed and buf (len bytes) has
   room, adding each count to *total. Returns 0 when buf is full, else the code
   that stopped the reads (WANT_READ / WANT_WRITE: no more data for now). */
static int commssl_read_on(SSL *ssl, char *buf, size_t len, size_t *total)
{
    size_t n = 0;
    int e;
    while (*total < len) {
        e = commssl_do(ssl, COMMSSL_OP_READ, buf + *total, len - *total, &n);
        if (e != 0)
            return e;
        *total += n;
    }
    return 0;
}
