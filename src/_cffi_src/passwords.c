/* passwords.c: pass phrase callbacks. */

#include "commssl.h"

/* @cdef
int commssl_no_password(char *, int, int, void *);
// the pass phrase callback of set_ssl_ctx_password_callback (contexts.py)
extern "Python" int _commssl_password_py(char *, int, int, void *);
@end */

/* The pass phrase callback every commssl context starts with: an encrypted
   key loaded before set_ssl_ctx_password_callback fails at once (SSLFailure)
   instead of OpenSSL's default prompting on the terminal, which would block. */
int commssl_no_password(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf; (void)size; (void)rwflag; (void)userdata;
    return -1;
}
