/* demo.c: the demo PKI of `python -m commssl`, the whole of commssl._demo (its own
   cffi module, loaded only by commssl.demo). Standalone: OpenSSL's headers only. */

#ifdef _WIN32
/* as commssl.h: winsock2.h before OpenSSL's headers, and without wincrypt.h */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* @cdef
typedef ... X509;
typedef ... EVP_PKEY;
int commssl_demo_cert(const char *, const char *, int, int, uint64_t, long, long,
                      X509 *, EVP_PKEY *, X509 **, EVP_PKEY **);
@end */

/* One throwaway certificate per call, made in memory: a fresh EC P-256 key,
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
