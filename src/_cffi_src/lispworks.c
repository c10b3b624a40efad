/* lispworks.c: the rest of the LispWorks COMM SSL interface: SSL_OP_* options by
   name, DH parameters and private keys from files, the certificate callback and the
   client hello callback (config/options.py, keys.py, lispworks_callbacks.py). Uses
   only OpenSSL and commssl_get_state / commssl_state (the SSL's record: st->py is
   the handle of a weak reference to its SSLPointer). */
#include "commssl.h"

/* @cdef
int commssl_lw_option(int, const char **, uint64_t *);
EVP_PKEY *commssl_lw_read_params(const char *, int);
EVP_PKEY *commssl_lw_read_key(const char *, int, const char *, void *);
int commssl_lw_key_is_dh(EVP_PKEY *);
int commssl_lw_set_dh(SSL_CTX *, SSL *, EVP_PKEY *);
int commssl_lw_use_cert_and_key(SSL *, const char *, int, X509 *, EVP_PKEY *);
int commssl_lw_use_files(SSL *, const char *, const char *, const char *, void *);
void commssl_lw_ctx_set_cert_cb(SSL_CTX *, int);
void commssl_lw_ctx_set_client_hello_cb(SSL_CTX *, int);
static const int COMMSSL_LW_PASSWORD_PY;
extern "Python" int _commssl_lw_password_py(char *, int, int, void *);
extern "Python" int _commssl_lw_cert_cb_py(void *);
extern "Python" int _commssl_lw_client_hello_py(void *, const char *);
@end */

/* SSL_OP_* names: OpenSSL 3.0 defines all of these; those marked (3.x) appear in
   later 3.x releases and those marked (LW) are LispWorks names some 3.x builds
   (no-deprecated) may drop: both are 0 where missing. */
#ifndef SSL_OP_MICROSOFT_SESS_ID_BUG
#define SSL_OP_MICROSOFT_SESS_ID_BUG 0       /* (LW) */
#endif
#ifndef SSL_OP_NETSCAPE_CHALLENGE_BUG
#define SSL_OP_NETSCAPE_CHALLENGE_BUG 0      /* (LW) */
#endif
#ifndef SSL_OP_NETSCAPE_REUSE_CIPHER_CHANGE_BUG
#define SSL_OP_NETSCAPE_REUSE_CIPHER_CHANGE_BUG 0 /* (LW) */
#endif
#ifndef SSL_OP_SSLREF2_REUSE_CERT_TYPE_BUG
#define SSL_OP_SSLREF2_REUSE_CERT_TYPE_BUG 0 /* (LW) */
#endif
#ifndef SSL_OP_MICROSOFT_BIG_SSLV3_BUFFER
#define SSL_OP_MICROSOFT_BIG_SSLV3_BUFFER 0  /* (LW) */
#endif
#ifndef SSL_OP_MSIE_SSLV2_RSA_PADDING
#define SSL_OP_MSIE_SSLV2_RSA_PADDING 0      /* (LW) */
#endif
#ifndef SSL_OP_SSLEAY_080_CLIENT_DH_BUG
#define SSL_OP_SSLEAY_080_CLIENT_DH_BUG 0    /* (LW) */
#endif
#ifndef SSL_OP_TLS_D5_BUG
#define SSL_OP_TLS_D5_BUG 0                  /* (LW) */
#endif
#ifndef SSL_OP_TLS_BLOCK_PADDING_BUG
#define SSL_OP_TLS_BLOCK_PADDING_BUG 0       /* (LW) */
#endif
#ifndef SSL_OP_SINGLE_DH_USE
#define SSL_OP_SINGLE_DH_USE 0               /* (LW) */
#endif
#ifndef SSL_OP_SINGLE_ECDH_USE
#define SSL_OP_SINGLE_ECDH_USE 0
#endif
#ifndef SSL_OP_EPHEMERAL_RSA
#define SSL_OP_EPHEMERAL_RSA 0               /* (LW) */
#endif
#ifndef SSL_OP_NO_SSLv2
#define SSL_OP_NO_SSLv2 0                    /* (LW) */
#endif
#ifndef SSL_OP_PKCS1_CHECK_1
#define SSL_OP_PKCS1_CHECK_1 0               /* (LW) */
#endif
#ifndef SSL_OP_PKCS1_CHECK_2
#define SSL_OP_PKCS1_CHECK_2 0               /* (LW) */
#endif
#ifndef SSL_OP_NETSCAPE_CA_DN_BUG
#define SSL_OP_NETSCAPE_CA_DN_BUG 0          /* (LW) */
#endif
#ifndef SSL_OP_NETSCAPE_DEMO_CIPHER_CHANGE_BUG
#define SSL_OP_NETSCAPE_DEMO_CIPHER_CHANGE_BUG 0 /* (LW) */
#endif
#ifndef SSL_OP_NO_TX_CERTIFICATE_COMPRESSION
#define SSL_OP_NO_TX_CERTIFICATE_COMPRESSION 0  /* (3.x: 3.2) */
#endif
#ifndef SSL_OP_NO_RX_CERTIFICATE_COMPRESSION
#define SSL_OP_NO_RX_CERTIFICATE_COMPRESSION 0  /* (3.x: 3.2) */
#endif
#ifndef SSL_OP_ENABLE_KTLS_TX_ZEROCOPY_SENDFILE
#define SSL_OP_ENABLE_KTLS_TX_ZEROCOPY_SENDFILE 0 /* (3.x: 3.2) */
#endif
#ifndef SSL_OP_PREFER_NO_DHE_KEX
#define SSL_OP_PREFER_NO_DHE_KEX 0           /* (3.x: 3.3) */
#endif
#ifndef SSL_OP_LEGACY_EC_POINT_FORMATS
#define SSL_OP_LEGACY_EC_POINT_FORMATS 0     /* (3.x: 3.6) */
#endif

#define COMMSSL_LW_OP(n) { #n, (uint64_t)SSL_OP_##n }
static const struct { const char *name; uint64_t value; } commssl_lw_options[] = {
    COMMSSL_LW_OP(MICROSOFT_SESS_ID_BUG), COMMSSL_LW_OP(NETSCAPE_CHALLENGE_BUG),
    COMMSSL_LW_OP(NETSCAPE_REUSE_CIPHER_CHANGE_BUG), COMMSSL_LW_OP(SSLREF2_REUSE_CERT_TYPE_BUG),
    COMMSSL_LW_OP(MICROSOFT_BIG_SSLV3_BUFFER), COMMSSL_LW_OP(MSIE_SSLV2_RSA_PADDING),
    COMMSSL_LW_OP(SSLEAY_080_CLIENT_DH_BUG), COMMSSL_LW_OP(TLS_D5_BUG),
    COMMSSL_LW_OP(TLS_BLOCK_PADDING_BUG), COMMSSL_LW_OP(DONT_INSERT_EMPTY_FRAGMENTS),
    COMMSSL_LW_OP(ALL), COMMSSL_LW_OP(NO_SESSION_RESUMPTION_ON_RENEGOTIATION),
    COMMSSL_LW_OP(SINGLE_DH_USE), COMMSSL_LW_OP(SINGLE_ECDH_USE), COMMSSL_LW_OP(EPHEMERAL_RSA),
    COMMSSL_LW_OP(CIPHER_SERVER_PREFERENCE), COMMSSL_LW_OP(TLS_ROLLBACK_BUG),
    COMMSSL_LW_OP(NO_SSLv2), COMMSSL_LW_OP(NO_SSLv3), COMMSSL_LW_OP(NO_TLSv1),
    COMMSSL_LW_OP(NO_TLSv1_1), COMMSSL_LW_OP(NO_TLSv1_2), COMMSSL_LW_OP(NO_TLSv1_3),
    COMMSSL_LW_OP(NO_DTLSv1), COMMSSL_LW_OP(NO_DTLSv1_2),
    COMMSSL_LW_OP(NO_SSL_MASK), COMMSSL_LW_OP(NO_DTLS_MASK),
    COMMSSL_LW_OP(PKCS1_CHECK_1), COMMSSL_LW_OP(PKCS1_CHECK_2),
    COMMSSL_LW_OP(NETSCAPE_CA_DN_BUG), COMMSSL_LW_OP(NETSCAPE_DEMO_CIPHER_CHANGE_BUG),
    COMMSSL_LW_OP(ALLOW_CLIENT_RENEGOTIATION), COMMSSL_LW_OP(ALLOW_NO_DHE_KEX),
    COMMSSL_LW_OP(ALLOW_UNSAFE_LEGACY_RENEGOTIATION), COMMSSL_LW_OP(CISCO_ANYCONNECT),
    COMMSSL_LW_OP(CLEANSE_PLAINTEXT), COMMSSL_LW_OP(COOKIE_EXCHANGE),
    COMMSSL_LW_OP(CRYPTOPRO_TLSEXT_BUG), COMMSSL_LW_OP(DISABLE_TLSEXT_CA_NAMES),
    COMMSSL_LW_OP(ENABLE_KTLS), COMMSSL_LW_OP(ENABLE_MIDDLEBOX_COMPAT),
    COMMSSL_LW_OP(IGNORE_UNEXPECTED_EOF), COMMSSL_LW_OP(LEGACY_SERVER_CONNECT),
    COMMSSL_LW_OP(NO_ANTI_REPLAY), COMMSSL_LW_OP(NO_COMPRESSION),
    COMMSSL_LW_OP(NO_ENCRYPT_THEN_MAC), COMMSSL_LW_OP(NO_EXTENDED_MASTER_SECRET),
    COMMSSL_LW_OP(NO_QUERY_MTU), COMMSSL_LW_OP(NO_RENEGOTIATION), COMMSSL_LW_OP(NO_TICKET),
    COMMSSL_LW_OP(PRIORITIZE_CHACHA), COMMSSL_LW_OP(SAFARI_ECDHE_ECDSA_BUG),
    COMMSSL_LW_OP(TLSEXT_PADDING), COMMSSL_LW_OP(NO_TX_CERTIFICATE_COMPRESSION),
    COMMSSL_LW_OP(NO_RX_CERTIFICATE_COMPRESSION), COMMSSL_LW_OP(ENABLE_KTLS_TX_ZEROCOPY_SENDFILE),
    COMMSSL_LW_OP(PREFER_NO_DHE_KEX), COMMSSL_LW_OP(LEGACY_EC_POINT_FORMATS),
};

int commssl_lw_option(int i, const char **name, uint64_t *value)
{
    if (i < 0 || (size_t)i >= sizeof commssl_lw_options / sizeof commssl_lw_options[0])
        return 0;
    *name = commssl_lw_options[i].name;
    *value = commssl_lw_options[i].value;
    return 1;
}

/* the pass phrase: a fixed one (`phrase`, NUL-terminated) or, with phrase ==
   COMMSSL_LW_PASSWORD_PY, the Python callable behind `u` (a handle); never a
   terminal prompt. */
#define COMMSSL_LW_PASSWORD_PY 1
typedef struct { const char *phrase; void *u; } commssl_lw_pw;

static int commssl_lw_pw_cb(char *buf, int size, int rwflag, void *u)
{
    commssl_lw_pw *pw = u;
    size_t n;
    if (pw == NULL)
        return -1;
    if (pw->phrase == NULL) {
        if (pw->u == NULL)
            return -1;
        return _commssl_lw_password_py(buf, size, rwflag, pw->u);
    }
    n = strlen(pw->phrase);
    if (n > (size_t)size)
        return -1;
    memcpy(buf, pw->phrase, n);
    return (int)n;
}

/* DH parameters, PEM ("DH PARAMETERS", "X9.42 DH PARAMETERS") or DER */
EVP_PKEY *commssl_lw_read_params(const char *data, int len)
{
    BIO *bio = BIO_new_mem_buf(data, len);
    EVP_PKEY *pkey;
    if (bio == NULL)
        return NULL;
    pkey = PEM_read_bio_Parameters(bio, NULL);
    if (pkey == NULL) {
        (void)BIO_reset(bio);
        pkey = d2i_KeyParams_bio(EVP_PKEY_DH, NULL, bio);
    }
    BIO_free(bio);
    if (pkey != NULL && !EVP_PKEY_is_a(pkey, "DH") && !EVP_PKEY_is_a(pkey, "DHX")) {
        EVP_PKEY_free(pkey);
        ERR_raise_data(ERR_LIB_PEM, PEM_R_NO_START_LINE, "not DH parameters");
        return NULL;
    }
    if (pkey != NULL)
        ERR_clear_error();
    return pkey;
}

int commssl_lw_key_is_dh(EVP_PKEY *pkey)
{
    return EVP_PKEY_is_a(pkey, "DH") || EVP_PKEY_is_a(pkey, "DHX");
}

/* a private key: PEM (encrypted or not), DER PKCS#8 (encrypted or not), DER traditional */
EVP_PKEY *commssl_lw_read_key(const char *data, int len, const char *phrase, void *u)
{
    commssl_lw_pw pw;
    BIO *bio = BIO_new_mem_buf(data, len);
    EVP_PKEY *pkey;
    pw.phrase = phrase == (const char *)COMMSSL_LW_PASSWORD_PY ? NULL : phrase;
    pw.u = u;
    if (bio == NULL)
        return NULL;
    pkey = PEM_read_bio_PrivateKey(bio, NULL, commssl_lw_pw_cb, &pw);
    if (pkey == NULL && len > 0 && data[0] == 0x30) {
        (void)BIO_reset(bio);
        pkey = d2i_PKCS8PrivateKey_bio(bio, NULL, commssl_lw_pw_cb, &pw);
        if (pkey == NULL) {
            (void)BIO_reset(bio);
            pkey = d2i_PrivateKey_bio(bio, NULL);
        }
    }
    BIO_free(bio);
    if (pkey != NULL)
        ERR_clear_error();
    return pkey;
}

/* SSL_[CTX_]set0_tmp_dh_pkey takes the reference: give it one of its own. One of
   ctx and ssl is NULL: the other gets the parameters. */
int commssl_lw_set_dh(SSL_CTX *ctx, SSL *ssl, EVP_PKEY *dh)
{
    if (!EVP_PKEY_up_ref(dh))
        return 0;
    if (!(ctx != NULL ? SSL_CTX_set0_tmp_dh_pkey(ctx, dh) : SSL_set0_tmp_dh_pkey(ssl, dh))) {
        EVP_PKEY_free(dh);
        return 0;
    }
    return 1;
}

/* The SSL's certificate and key: the certificate `x` (no chain), or the PEM text
   `pem` (leaf then chain, sent with it); replaces what it had. */
int commssl_lw_use_cert_and_key(SSL *ssl, const char *pem, int len, X509 *x, EVP_PKEY *key)
{
    STACK_OF(X509) *chain = NULL;
    X509 *leaf = x;
    int ok = 0;
    if (pem != NULL) {
        BIO *bio = BIO_new_mem_buf(pem, len);
        X509 *ca;
        if (bio == NULL)
            return 0;
        leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
        chain = sk_X509_new_null();
        if (leaf == NULL || chain == NULL) {
            BIO_free(bio);
            X509_free(leaf);
            sk_X509_free(chain);
            return 0;
        }
        while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            if (!sk_X509_push(chain, ca)) {
                X509_free(ca);
                break;
            }
        }
        ERR_clear_error();  /* the end of the text */
        BIO_free(bio);
    }
    ok = SSL_use_cert_and_key(ssl, leaf, key, chain, 1);
    if (pem != NULL) {
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
    }
    return ok;
}

/* per connection: a certificate chain file and a key file (PEM) */
int commssl_lw_use_files(SSL *ssl, const char *cert_file, const char *key_file,
                         const char *phrase, void *u)
{
    commssl_lw_pw pw;
    int ok;
    pw.phrase = phrase == (const char *)COMMSSL_LW_PASSWORD_PY ? NULL : phrase;
    pw.u = u;
    SSL_set_default_passwd_cb(ssl, commssl_lw_pw_cb);
    SSL_set_default_passwd_cb_userdata(ssl, &pw);
    ok = SSL_use_certificate_chain_file(ssl, cert_file) == 1
         && SSL_use_PrivateKey_file(ssl, key_file, SSL_FILETYPE_PEM) == 1
         && SSL_check_private_key(ssl) == 1;
    SSL_set_default_passwd_cb(ssl, NULL);
    SSL_set_default_passwd_cb_userdata(ssl, NULL);
    return ok;
}

/* cert_cb: per handshake, both sides (a client's fires when the server asks for a
   certificate). The Python side returns 1 (go on) or 0 (abort: the exception is
   parked on the connection). An SSL commssl does not know fails closed. */
static int commssl_lw_cert_cb(SSL *ssl, void *arg)
{
    commssl_state *st = commssl_get_state(ssl);
    (void)arg;
    if (st == NULL || st->py == NULL)
        return 0;
    return _commssl_lw_cert_cb_py(st->py) == 1 ? 1 : 0;
}

void commssl_lw_ctx_set_cert_cb(SSL_CTX *ctx, int on)
{
    SSL_CTX_set_cert_cb(ctx, on ? commssl_lw_cert_cb : NULL, NULL);
}

/* client hello (server): the SNI host name, parsed from the extension, to Python */
static int commssl_lw_client_hello_cb(SSL *ssl, int *al, void *arg)
{
    commssl_state *st = commssl_get_state(ssl);
    const unsigned char *p;
    size_t len, n;
    char name[256];
    const char *sni = NULL;
    (void)arg;
    if (st == NULL || st->py == NULL) {
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    /* server_name: list length (2), type (1) host_name = 0, name length (2), name */
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) && len >= 5) {
        n = ((size_t)p[3] << 8) | p[4];
        if (p[2] == TLSEXT_NAMETYPE_host_name && n > 0 && n < sizeof name && 5 + n <= len
            && memchr(p + 5, 0, n) == NULL) {
            memcpy(name, p + 5, n);
            name[n] = 0;
            sni = name;
        }
    }
    if (_commssl_lw_client_hello_py(st->py, sni) == 1)
        return SSL_CLIENT_HELLO_SUCCESS;
    *al = SSL_AD_HANDSHAKE_FAILURE;
    return SSL_CLIENT_HELLO_ERROR;
}

void commssl_lw_ctx_set_client_hello_cb(SSL_CTX *ctx, int on)
{
    SSL_CTX_set_client_hello_cb(ctx, on ? commssl_lw_client_hello_cb : NULL, NULL);
}
