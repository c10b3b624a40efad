/* membio.c: an SSL over a pair of memory BIOs (the asyncio streams, aio.py),
   stepped one event at a time. */

#include "commssl.h"

/* @cdef
int commssl_mem_step(SSL *, char *, size_t, int, int, char *, size_t, size_t *, size_t *);
@end */

/* AsyncSSLStream drives an SSL whose BIOs are two memory BIOs: the event loop
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
    size_t total = 0;
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
        e = commssl_read_on(ssl, buf, len, &total);
        *done = total;
    } else {
        e = commssl_do(ssl, op, buf, len, done);
    }
    *wpending = BIO_ctrl_pending(SSL_get_wbio(ssl));
    return e;
}
