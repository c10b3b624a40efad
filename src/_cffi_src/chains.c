/* chains.c: certificate chains copied with one new reference each, and a
   certificate's data (tagged records, serial, common name). */

#include "commssl.h"

/* @cdef
int commssl_copy_peer_chain(SSL *, X509_STORE_CTX *, X509 **, int);
void commssl_free_certs(X509 **, int);
static const int COMMSSL_INFO_SLOTS;
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

/* Certificate data in one call, into the caller's buffer: a header of
   COMMSSL_INFO_SLOTS ints (native order; certificate_data.py reads it with one
   struct unpack), then the bytes the header points into. What does not fit is
   counted, not written: the caller retries with a buffer of the size returned. */
enum {
    INFO_CN, INFO_CN_LEN, INFO_SERIAL, INFO_SERIAL_LEN, INFO_NEGATIVE,
    INFO_SUBJECT, INFO_SUBJECT_LEN, INFO_ISSUER, INFO_ISSUER_LEN, INFO_ISSUER_CN,
    INFO_ISSUER_CN_LEN, INFO_NOT_BEFORE, INFO_NOT_AFTER, INFO_FINGERPRINT,
    INFO_FINGERPRINT_LEN, INFO_SPKI, INFO_SPKI_LEN, INFO_ENTRIES, INFO_ENTRIES_COUNT,
    COMMSSL_INFO_SLOTS
};

typedef struct {
    unsigned char *buf;
    int cap, len;
    int head[COMMSSL_INFO_SLOTS];
} commssl_records;

/* Appends len bytes; their offset, or -1 (no room in an int: fail). */
static int commssl_append(commssl_records *out, const void *data, int len)
{
    int at = out->len;
    if (len < 0 || len > INT_MAX - out->len)
        return -1;
    if (out->len + len <= out->cap && len > 0)
        memcpy(out->buf + out->len, data, (size_t)len);
    out->len += len;
    return at;
}

/* Fills header slots at and at + 1 with the bytes' offset and length. */
static int commssl_put(commssl_records *out, int at, const void *data, int len)
{
    out->head[at] = commssl_append(out, data, len);
    out->head[at + 1] = len;
    return out->head[at] >= 0;
}

/* One entry of the e-mail/subjectAltName list: a tag byte, a native int length,
   the bytes. */
static int commssl_put_entry_of(commssl_records *out, char tag, const void *data, int len)
{
    unsigned char t = (unsigned char)tag;
    out->head[INFO_ENTRIES_COUNT]++;
    return commssl_append(out, &t, 1) >= 0 && commssl_append(out, &len, (int)sizeof len) >= 0
           && commssl_append(out, data, len) >= 0;
}

/* A name's first entry of nid as UTF-8 into slots at, at + 1 (length -1: none). */
static int commssl_put_entry(commssl_records *out, int at, X509_NAME *name, int nid)
{
    unsigned char *utf8 = NULL;
    int len, i = X509_NAME_get_index_by_NID(name, nid, -1);
    if (i < 0) {
        out->head[at + 1] = -1;
        return 1;
    }
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (len < 0)
        return 0;
    i = commssl_put(out, at, utf8, len);
    OPENSSL_free(utf8);
    return i;
}

/* The name in RFC 2253 form, printed into mem (a memory BIO, emptied first). */
static int commssl_put_name(commssl_records *out, int at, BIO *mem, X509_NAME *name)
{
    char *data;
    long len;
    if (BIO_reset(mem) <= 0 || X509_NAME_print_ex(mem, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
        return 0;
    len = BIO_get_mem_data(mem, &data);
    return len >= 0 && len <= INT_MAX && commssl_put(out, at, data, (int)len);
}

/* year (2 bytes, big-endian), month, day, hour, minute, second; offset -1: none */
static int commssl_put_time(commssl_records *out, int at, const ASN1_TIME *t)
{
    struct tm tm;
    unsigned char b[7];
    int year;
    out->head[at] = -1;
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
    return (out->head[at] = commssl_append(out, b, 7)) >= 0;
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
    return commssl_put_entry_of(out, 'E', data, len);
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

/* SHA-256 of DER bytes (i2d's, freed here) into slots at, at + 1. */
static int commssl_put_sha256(commssl_records *out, int at, unsigned char *der, int len, const EVP_MD *md)
{
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int hashlen = 0;
    int ok = len > 0 && EVP_Digest(der, (size_t)len, hash, &hashlen, md, NULL)
             && commssl_put(out, at, hash, (int)hashlen);
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

/* Everything get_certificate_data reads (certificate_data.py), into buf (cap
   bytes; the header's slots are the INFO_ enum): the subject's CN, the serial
   and its sign, subject and issuer (RFC 2253), the issuer's CN, validity, the
   SHA-256 fingerprint and SPKI hash, then the entries: the e-mail addresses
   'E' (subject, then subjectAltName; duplicates are Python's to drop) in the
   certificate's order (OpenSSL's own list comes out partly sorted), and the
   subjectAltName entries 'D' 'I' 'M' 'U'. An undecodable subjectAltName is
   left out. Returns the bytes it all takes (more than cap: call again with
   that much room), or -1 with the error queue set. */
int commssl_cert_info(X509 *x, unsigned char *buf, int cap)
{
    commssl_records out = {buf, cap, (int)sizeof out.head, {0}};
    const unsigned char *serial;
    unsigned char *der = NULL;
    const EVP_MD *sha256 = commssl_sha256();
    X509_NAME *subject = X509_get_subject_name(x), *issuer = X509_get_issuer_name(x);
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    BIO *mem = BIO_new(BIO_s_mem());
    int neg = 0, len, i, ok = mem != NULL;

    ok = ok && commssl_put_entry(&out, INFO_CN, subject, NID_commonName);
    len = commssl_serial_ref(x, &serial, &neg);
    ok = ok && len >= 0 && commssl_put(&out, INFO_SERIAL, serial, len);
    out.head[INFO_NEGATIVE] = neg;
    ok = ok && commssl_put_name(&out, INFO_SUBJECT, mem, subject);
    ok = ok && commssl_put_name(&out, INFO_ISSUER, mem, issuer);
    ok = ok && commssl_put_entry(&out, INFO_ISSUER_CN, issuer, NID_commonName);
    ok = ok && commssl_put_time(&out, INFO_NOT_BEFORE, X509_get0_notBefore(x));
    ok = ok && commssl_put_time(&out, INFO_NOT_AFTER, X509_get0_notAfter(x));
    BIO_free(mem);
    ok = ok && commssl_put_sha256(&out, INFO_FINGERPRINT, der, i2d_X509(x, &der), sha256);
    der = NULL;
    ok = ok && commssl_put_sha256(&out, INFO_SPKI, der, i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der), sha256);
    out.head[INFO_ENTRIES] = out.len;
    for (i = -1; ok && (i = X509_NAME_get_index_by_NID(subject, NID_pkcs9_emailAddress, i)) >= 0;)
        ok = commssl_put_email(&out, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    for (i = 0; ok && sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_EMAIL)
            ok = commssl_put_email(&out, g->d.rfc822Name);
    }
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
            ok = commssl_put_entry_of(&out, tag, ASN1_STRING_get0_data(v), ASN1_STRING_length(v));
    }
    GENERAL_NAMES_free(sans);
    if (ok && cap >= (int)sizeof out.head)
        memcpy(buf, out.head, sizeof out.head);
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
