/* features.c: ALPN, key logging, session tickets and in-memory credentials. Its
   state is its part of the records (commssl.h): on the SSL_CTX, the server's ALPN
   preference list in wire format and whether a Python select callback is set; on the
   SSL, the client chain read back from a session ticket. Python is reached through
   the SSL's record (st->py); an SSL commssl does not know fails closed (ALPN) or logs
   nothing (keylog). */

#include "commssl.h"

/* @cdef
int commssl_ctx_keep_chains(SSL_CTX *);
int commssl_ctx_set_alpn_select(SSL_CTX *, const unsigned char *, unsigned int, int);
void commssl_ctx_set_keylog(SSL_CTX *, int);
int commssl_use_chain_mem(SSL_CTX *, const char *, int);
int commssl_use_key_mem(SSL_CTX *, const char *, int, const char *);
int commssl_load_cadata(SSL_CTX *, const char *, int);
int commssl_reverify(SSL *);
extern "Python" int _commssl_alpn_py(void *, const unsigned char *, unsigned int);
extern "Python" void _commssl_keylog_py(void *, const char *);
@end */

/* Session tickets of a server that verifies client certificates. A ticket holds
   the client's leaf but not its chain, which commssl verifies again when the
   session is resumed: the chain rides in the ticket's app data (each certificate
   as a 3-byte length and its DER), and a ticket without it is not resumed (a full
   handshake runs). */
static int commssl_ticket_gen(SSL *s, void *arg)
{
    commssl_ssl_rec *r = commssl_ssl_rec_of(s);
    STACK_OF(X509) *chain = r != NULL ? r->ticket_chain : NULL;
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
    commssl_ssl_rec *r;
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
    if (p != end || (r = commssl_ssl_rec_make(s)) == NULL) {
        sk_X509_pop_free(chain, X509_free);
        ERR_clear_error();
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    sk_X509_pop_free(r->ticket_chain, X509_free);
    r->ticket_chain = chain;
    return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

int commssl_ctx_keep_chains(SSL_CTX *ctx)
{
    return SSL_CTX_set_session_ticket_cb(ctx, commssl_ticket_gen, commssl_ticket_dec, NULL);
}

/* The server's ALPN choice. _commssl_alpn_py returns the offset in `in` of the
   chosen protocol's length byte, -1 for "no ALPN", -2 for an error (the Python
   side parked the exception on the connection): a fatal no_application_protocol
   alert then aborts the handshake. */
static int commssl_alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                  const unsigned char *in, unsigned int inlen, void *arg)
{
    commssl_ctx_rec *cr = commssl_ctx_rec_of(SSL_get_SSL_CTX(ssl));
    commssl_alpn *f = cr != NULL ? &cr->alpn : NULL;
    (void)arg;
    if (f == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (f->py) {
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
    if (f->protos != NULL
        && SSL_select_next_proto((unsigned char **)out, outlen, f->protos, f->len, in, inlen)
           == OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;
}

/* Install (or, with no list and no Python callback, remove) the select callback. */
int commssl_ctx_set_alpn_select(SSL_CTX *ctx, const unsigned char *protos, unsigned int len, int py)
{
    commssl_ctx_rec *cr = commssl_ctx_rec_make(ctx);
    commssl_alpn *f = cr != NULL ? &cr->alpn : NULL;
    unsigned char *copy = NULL;
    if (f == NULL)
        return 0;
    if (protos != NULL && len > 0) {
        copy = OPENSSL_memdup(protos, len);
        if (copy == NULL)
            return 0;
    }
    OPENSSL_free(f->protos);
    f->protos = copy;
    f->len = copy ? len : 0;
    f->py = py;
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
    commssl_ssl_rec *r = commssl_ssl_rec_of(ssl);
    X509_STORE_CTX *store;
    int (*vcb)(int, X509_STORE_CTX *) = SSL_get_verify_callback(ssl);
    int ok;

    if (leaf == NULL)
        return 1;
    if (SSL_is_server(ssl) && r != NULL && r->ticket_chain != NULL)
        chain = r->ticket_chain;  /* from the ticket */
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
