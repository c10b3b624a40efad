/* chains.c: certificate chains copied with one new reference each, and a
   certificate's data (tagged records, serial, common name). */

#include "commssl.h"

/* @cdef
int commssl_copy_peer_chain(SSL *, X509_STORE_CTX *, X509 **, int);
void commssl_free_certs(X509 **, int);
int commssl_cert_info(X509 *, unsigned char *, int);
int commssl_common_name(X509 *, unsigned char **);
// the serial in the shapes bench/ measured cheapest
int commssl_serial_into(X509 *, unsigned char *, int);
int commssl_serial20(X509 *, unsigned char *);
@end */

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

/* The certificates the peer sent, leaf first, each with one new reference.
   While a verification runs the store context holds them; afterwards the
   session does, and on the server side OpenSSL keeps the leaf apart from the
   chain. Returns how many there are; copies nothing when that exceeds max. */
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
        /* The session's chain, read and up-ref'd under the operation lock: a
           handshake step in another thread may replace the session meanwhile. */
        int locked = commssl_lock_ssl(ssl), n;
        sk = SSL_get_peer_cert_chain(ssl);
        if (SSL_is_server(ssl))
            leaf = SSL_get0_peer_certificate(ssl);
        n = commssl_copy_stack(leaf, sk, out, max);
        if (locked)
            commssl_unlock_ssl(ssl);
        return n;
    }
    return commssl_copy_stack(leaf, sk, out, max);
}

void commssl_free_certs(X509 **certs, int n)
{
    int i;
    for (i = 0; i < n; i++)
        X509_free(certs[i]);
}

/* Certificate data in one call, as tagged records into the caller's buffer:
   one tag byte, a 4-byte little-endian length, then the bytes (UTF-8 for text).
   Records that do not fit are counted, not written: the caller retries with a
   buffer of the size returned. */
typedef struct {
    unsigned char *buf;
    int cap, len;
} commssl_records;

static int commssl_put(commssl_records *out, char tag, const void *data, int len)
{
    unsigned char *p;
    if (len < 0 || len > INT_MAX - 5 - out->len)
        return 0;
    if (out->len + 5 + len <= out->cap) {
        p = out->buf + out->len;
        p[0] = (unsigned char)tag;
        p[1] = (unsigned char)(len & 0xff);
        p[2] = (unsigned char)((len >> 8) & 0xff);
        p[3] = (unsigned char)((len >> 16) & 0xff);
        p[4] = (unsigned char)((len >> 24) & 0xff);
        if (len > 0)
            memcpy(p + 5, data, (size_t)len);
    }
    out->len += 5 + len;
    return 1;
}

static int commssl_put_entry(commssl_records *out, char tag, X509_NAME *name, int nid)
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

/* The name in RFC 2253 form, printed into mem (a memory BIO, emptied first). */
static int commssl_put_name(commssl_records *out, char tag, BIO *mem, X509_NAME *name)
{
    char *data;
    long len;
    if (BIO_reset(mem) <= 0 || X509_NAME_print_ex(mem, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
        return 0;
    len = BIO_get_mem_data(mem, &data);
    return len >= 0 && len <= INT_MAX && commssl_put(out, tag, data, (int)len);
}

/* year (2 bytes, big-endian), month, day, hour, minute, second */
static int commssl_put_time(commssl_records *out, char tag, const ASN1_TIME *t)
{
    struct tm tm;
    unsigned char b[7];
    int year;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 1;
    year = tm.tm_year + 1900;
    b[0] = (unsigned char)((year >> 8) & 0xff);
    b[1] = (unsigned char)(year & 0xff);
    b[2] = (unsigned char)(tm.tm_mon + 1);
    b[3] = (unsigned char)tm.tm_mday;
    b[4] = (unsigned char)tm.tm_hour;
    b[5] = (unsigned char)tm.tm_min;
    b[6] = (unsigned char)tm.tm_sec;
    return commssl_put(out, tag, b, 7);
}

/* An e-mail address as X509_get1_email takes it: IA5 and not empty; one with a
   NUL inside ("evil\0@good.example") is left out, not cut short at the NUL. */
static int commssl_put_email(commssl_records *out, const ASN1_STRING *v)
{
    const char *data = (const char *)ASN1_STRING_get0_data(v);
    int len = ASN1_STRING_length(v);
    if (ASN1_STRING_type(v) != V_ASN1_IA5STRING || data == NULL || len <= 0
            || memchr(data, '\0', (size_t)len) != NULL)
        return 1;
    return commssl_put(out, 'E', data, len);
}

/* SHA-256, fetched once: a fetch per digest (what EVP_sha256() costs in
   OpenSSL 3) is a third of the digest of a small input. */
static EVP_MD *commssl_sha256_md = NULL;
static CRYPTO_ONCE commssl_sha256_once = CRYPTO_ONCE_STATIC_INIT;

static void commssl_fetch_sha256(void)
{
    commssl_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *commssl_sha256(void)
{
    if (!CRYPTO_THREAD_run_once(&commssl_sha256_once, commssl_fetch_sha256) || commssl_sha256_md == NULL)
        return EVP_sha256();
    return commssl_sha256_md;
}

/* SHA-256 of the DER SubjectPublicKeyInfo (curl's --pinnedpubkey sha256//). */
static int commssl_put_spki(commssl_records *out, X509 *x, const EVP_MD *md)
{
    unsigned char *der = NULL, hash[EVP_MAX_MD_SIZE];
    unsigned int hashlen = 0;
    int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    int ok = len > 0 && EVP_Digest(der, (size_t)len, hash, &hashlen, md, NULL)
             && commssl_put(out, 'P', hash, (int)hashlen);
    OPENSSL_free(der);
    return ok;
}

/* The serial's magnitude (big-endian, in the certificate: any size) and sign:
   the one serial reader behind commssl_serial_into, commssl_serial20 and
   commssl_cert_info. Returns the length. */
static int commssl_serial_ref(X509 *x, const unsigned char **data, int *negative)
{
    const ASN1_INTEGER *s = X509_get0_serialNumber(x);
    *data = ASN1_STRING_get0_data(s);
    *negative = ASN1_STRING_type(s) == V_ASN1_NEG_INTEGER;
    return ASN1_STRING_length(s);
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

/* Every record get_certificate_data reads (certificates.py, _records), into buf
   (cap bytes): the subject's CN 'C', the serial 'S' (or 'N' when negative), the
   e-mail addresses 'E' (subject, then subjectAltName; duplicates are Python's to
   drop), subject 's' and issuer 'i' (RFC 2253),
   the issuer's CN 'c', validity 'b' and 'a', the subjectAltName entries 'D' 'I'
   'M' 'U', the SHA-256 fingerprint 'F' and SPKI hash 'P'. The e-mail addresses
   are those X509_get1_email returns, in the certificate's order (OpenSSL's own
   list comes out partly sorted). Returns the bytes all
   records take (more than cap: call again with that much room), or -1 with the
   error queue set. An undecodable subjectAltName is left out. */
int commssl_cert_info(X509 *x, unsigned char *buf, int cap)
{
    commssl_records out = {buf, cap, 0};
    const unsigned char *serial;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const EVP_MD *sha256 = commssl_sha256();
    X509_NAME *subject = X509_get_subject_name(x), *issuer = X509_get_issuer_name(x);
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    BIO *mem = BIO_new(BIO_s_mem());
    int neg = 0, len, i, ok = mem != NULL;

    ok = ok && commssl_put_entry(&out, 'C', subject, NID_commonName);
    len = commssl_serial_ref(x, &serial, &neg);
    ok = ok && len >= 0 && commssl_put(&out, neg ? 'N' : 'S', serial, len);
    for (i = -1; ok && (i = X509_NAME_get_index_by_NID(subject, NID_pkcs9_emailAddress, i)) >= 0;)
        ok = commssl_put_email(&out, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    for (i = 0; ok && sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_EMAIL)
            ok = commssl_put_email(&out, g->d.rfc822Name);
    }
    ok = ok && commssl_put_name(&out, 's', mem, subject);
    ok = ok && commssl_put_name(&out, 'i', mem, issuer);
    ok = ok && commssl_put_entry(&out, 'c', issuer, NID_commonName);
    ok = ok && commssl_put_time(&out, 'b', X509_get0_notBefore(x));
    ok = ok && commssl_put_time(&out, 'a', X509_get0_notAfter(x));
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
            ok = commssl_put(&out, tag, ASN1_STRING_get0_data(v), ASN1_STRING_length(v));
    }
    GENERAL_NAMES_free(sans);
    BIO_free(mem);
    ok = ok && X509_digest(x, sha256, md, &mdlen) && commssl_put(&out, 'F', md, (int)mdlen);
    ok = ok && commssl_put_spki(&out, x, sha256);
    return ok ? out.len : -1;
}

/* The serial in two shapes, each a thin wrapper over commssl_serial_ref: they
   differ only in how the answer crosses cffi, where each call and argument costs
   (bench/ measures them), and Python uses each where its shape is the cheapest:
   commssl_serial_into (one int says length and sign), commssl_serial20 (fixed
   20-byte buffer, nothing to slice).

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
    memcpy(buf, data, (size_t)len);  /* 0 <= len <= size */
    return 2 * len + neg;
}

/* The common case in two arguments and no slicing on the Python side: a
   serial of at most 20 bytes (RFC 5280's limit) right-aligned in buf[0..20),
   zeros before it (they do not change the value); returns 1 when negative,
   else 0, or -length when it is longer (then use commssl_serial_into). */
int commssl_serial20(X509 *x, unsigned char *buf)
{
    const unsigned char *data;
    int neg, len = commssl_serial_ref(x, &data, &neg);
    if (len > 20)
        return -len;
    memset(buf, 0, (size_t)(20 - len));
    memcpy(buf + (20 - len), data, (size_t)len);
    return neg;
}
