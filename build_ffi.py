"""cffi builders for ``commssl._openssl`` and ``commssl._demo`` (out-of-line, API mode).

The cdef, what Python sees (``lib``), has two halves:
- OpenSSL, by area (as pyca/cryptography's ``_cffi_src/openssl/*.py``): each area's
  TYPES (opaque types, constants) and FUNCTIONS (prototypes, macros declared as
  functions, which API mode allows). Every area's TYPES come first, so an area may use
  another's types.
- commssl's C helpers: real C files in ``src/_cffi_src/``, one per job (C_FILES),
  sharing ``commssl.h``. Each file declares what Python sees of it once, in its own
  ``/* @cdef ... @end */`` block (a comment after its #includes); the records' structs
  are written once in ``commssl.h`` (``header_block``). The files are compiled as one
  translation unit: read in C_FILES order and concatenated into set_source's source,
  ahead of cffi's wrappers, each with its block written back as C prototypes after it
  (``c_declarations``), so the compiler checks every definition against the cdef.
The build logic (OPENSSL_DIR, pkg-config, Windows libraries) is _build, shared by the
two builders: ``ffibuilder`` (the extension every connection loads) and
``demo_ffibuilder`` (``commssl._demo``: the demo PKI's certificate minting, ``demo.c``,
loaded only by ``commssl.demo``). Both are setup.py's cffi_modules.
"""

from __future__ import annotations

import os
import re
import sys

from cffi import FFI, PkgConfigError

C_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src", "_cffi_src")
# The helpers, in compile order (one translation unit; commssl.h declares what one file
# defines for another). A new job is a new file here, with its own @cdef block.
C_FILES = ["records.c", "passwords.c", "verify.c", "chains.c", "io.c", "membio.c",
           "revocation.c", "features.c", "lispworks.c"]
# commssl._demo, the demo PKI of `python -m commssl` (loaded only by commssl.demo):
# apart from the extension every connection loads. Standalone C (no commssl.h).
DEMO_FILES = ["demo.c"]
END_OF_HELPERS = "/* ==== end of src/_cffi_src ==== */\n"

# A .c file's block: "/* @cdef" (the rest of that line is a comment) ... a line "@end */".
_CDEF_BLOCK = re.compile(r"/\* @cdef\b[^\n]*\n(.*?)^@end \*/", re.S | re.M)


def _read(name: str) -> str:
    with open(os.path.join(C_DIR, name), encoding="utf-8") as f:
        return f.read()


def header_block(name: str) -> str:
    """A block of commssl.h that the cdef shares as it is (the records' structs):
    written once, between ``/* @cdef NAME ... */`` and ``/* @end NAME */``."""
    text = _read("commssl.h")
    start = text.index(f"/* @cdef {name}")
    start = text.index("\n", start) + 1
    return "\n" + text[start:text.index(f"/* @end {name} */", start)]


def _block(name: str, text: str) -> re.Match[str]:
    found = list(_CDEF_BLOCK.finditer(text))
    if len(found) != 1 or "{" in found[0].group(1) or "/*" in found[0].group(1):
        raise ValueError(f"src/_cffi_src/{name}: want one @cdef block of declarations "
                         "(no struct bodies, // comments only)")
    return found[0]


def cdef_block(name: str) -> str:
    """What Python sees of one C file: its @cdef block."""
    return "\n" + _block(name, _read(name)).group(1)


def c_declarations(block: str) -> str:
    """A @cdef block as C: its functions as prototypes, extern "Python" ones as the
    static functions cffi defines after the helpers (which C calls before that); its
    constants and opaque types are left to the headers."""
    decls = []
    for decl in re.sub(r"//[^\n]*", "", block).split(";"):
        decl = " ".join(decl.split())
        if not decl or decl.startswith(("static const ", "typedef ")):
            continue
        if decl.startswith('extern "Python" '):
            decl = "static " + decl[len('extern "Python" '):]
        decls.append(decl + ";\n")
    return "".join(decls)


def c_source(files: list[str]) -> str:
    """The files' text, concatenated in order (each #includes commssl.h, guarded), each
    with its @cdef block followed by the block as C."""
    parts = []
    for name in files:
        text = _read(name)
        block = _block(name, text)
        end = block.end()
        decls = f"/* the block as C (build_ffi.c_declarations) */\n{c_declarations(block.group(1))}"
        parts.append(f"/* ==== src/_cffi_src/{name} ==== */\n{text[:end]}\n{decls}{text[end:]}")
    parts.append(END_OF_HELPERS)  # ci/cwarnings: cffi's wrappers follow
    return "\n".join(parts)


# ---- OpenSSL, by area: (TYPES, FUNCTIONS) -------------------------------------------

CRYPTO = ("""
static const long OPENSSL_VERSION_NUMBER;
static const char *const OPENSSL_VERSION_TEXT;
static const int OPENSSL_VERSION;
""", """
unsigned long OpenSSL_version_num(void);
const char *OpenSSL_version(int);
void OPENSSL_free(void *);
""")

ERR = ("""
static const int ERR_LIB_SSL;
static const int ERR_LIB_X509;
static const int ERR_LIB_PEM;
static const int ERR_LIB_SYS;
""", """
unsigned long ERR_get_error(void);
unsigned long ERR_peek_error(void);
unsigned long ERR_peek_last_error(void);
void ERR_clear_error(void);
void ERR_error_string_n(unsigned long, char *, size_t);
const char *ERR_reason_error_string(unsigned long);
const char *ERR_lib_error_string(unsigned long);
int ERR_GET_LIB(unsigned long);
int ERR_GET_REASON(unsigned long);
""")

BIO = ("""
typedef ... BIO;
typedef ... BIO_METHOD;
""", """
const BIO_METHOD *BIO_s_mem(void);
BIO *BIO_new(const BIO_METHOD *);
BIO *BIO_new_file(const char *, const char *);
BIO *BIO_new_mem_buf(const void *, int);
int BIO_free(BIO *);
int BIO_read(BIO *, void *, int);
int BIO_write(BIO *, const void *, int);
size_t BIO_ctrl_pending(BIO *);
long BIO_get_mem_data(BIO *, char **);
long BIO_set_mem_eof_return(BIO *, long);
int BIO_new_bio_pair(BIO **, size_t, BIO **, size_t);
""")

EVP = ("""
typedef ... EVP_PKEY;
""", """
void EVP_PKEY_free(EVP_PKEY *);
int EVP_PKEY_get_bits(const EVP_PKEY *);
""")

X509 = ("""
typedef ... X509;
typedef ... X509_NAME;
typedef ... X509_CRL;
static const int NID_commonName;
""", """
void X509_free(X509 *);
int X509_up_ref(X509 *);
X509 *PEM_read_bio_X509(BIO *, X509 **, void *, void *);
X509 *d2i_X509_bio(BIO *, X509 **);
int i2d_X509(X509 *, unsigned char **);
X509_NAME *X509_get_subject_name(const X509 *);
X509_NAME *X509_get_issuer_name(const X509 *);
const char *X509_get_default_cert_file(void);
int X509_check_private_key(const X509 *, const EVP_PKEY *);
""")

# verification: the store, its per-verification context, the parameters, the codes
X509_VFY = ("""
typedef ... X509_STORE_CTX;
typedef ... X509_STORE;
typedef ... X509_VERIFY_PARAM;
static const int X509_V_OK;
static const int X509_V_ERR_UNSPECIFIED;
static const int X509_V_ERR_APPLICATION_VERIFICATION;
static const int X509_V_ERR_HOSTNAME_MISMATCH;
static const int X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT;
static const int X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN;
static const int X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
static const int X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT;
static const int X509_V_ERR_CERT_HAS_EXPIRED;
static const int X509_V_ERR_UNABLE_TO_GET_CRL;
static const int X509_V_ERR_CERT_REVOKED;
static const int X509_V_ERR_OCSP_VERIFY_NEEDED;
static const int X509_V_ERR_OCSP_VERIFY_FAILED;
static const int X509_V_ERR_OCSP_CERT_UNKNOWN;
static const long X509_V_FLAG_CRL_CHECK;
static const long X509_V_FLAG_CRL_CHECK_ALL;
""", """
X509 *X509_STORE_CTX_get_current_cert(const X509_STORE_CTX *);
int X509_STORE_CTX_get_error(const X509_STORE_CTX *);
void X509_STORE_CTX_set_error(X509_STORE_CTX *, int);
int X509_STORE_CTX_get_error_depth(const X509_STORE_CTX *);
void *X509_STORE_CTX_get_ex_data(const X509_STORE_CTX *, int);
const char *X509_verify_cert_error_string(long);
int X509_STORE_add_cert(X509_STORE *, X509 *);
int X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *, const char *);
int X509_VERIFY_PARAM_set_flags(X509_VERIFY_PARAM *, unsigned long);
int X509_VERIFY_PARAM_clear_flags(X509_VERIFY_PARAM *, unsigned long);
unsigned long X509_VERIFY_PARAM_get_flags(const X509_VERIFY_PARAM *);
""")

# libssl's types, methods and the constants contexts and connections share
SSL_COMMON = ("""
typedef ... SSL_METHOD;
typedef ... SSL_CTX;
typedef ... SSL;
typedef ... SSL_CIPHER;
typedef ... SSL_SESSION;
static const int SSL_VERIFY_NONE;
static const int SSL_VERIFY_PEER;
static const int SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
static const int SSL_VERIFY_CLIENT_ONCE;
static const int SSL_VERIFY_POST_HANDSHAKE;
static const int SSL_FILETYPE_PEM;
static const int TLS1_VERSION;
static const int TLS1_1_VERSION;
static const int TLS1_2_VERSION;
static const int TLS1_3_VERSION;
static const int SSL3_VERSION;
static const uint64_t SSL_OP_NO_RENEGOTIATION;
static const uint64_t SSL_OP_NO_COMPRESSION;
static const uint64_t SSL_OP_NO_TICKET;
static const long SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
static const long SSL_MODE_ENABLE_PARTIAL_WRITE;
static const int SSL_ERROR_NONE;
static const int SSL_ERROR_SSL;
static const int SSL_ERROR_WANT_READ;
static const int SSL_ERROR_WANT_WRITE;
static const int SSL_ERROR_WANT_X509_LOOKUP;
static const int SSL_ERROR_SYSCALL;
static const int SSL_ERROR_ZERO_RETURN;
static const int SSL_R_UNEXPECTED_EOF_WHILE_READING;
static const int SSL_R_CERTIFICATE_VERIFY_FAILED;
static const int SSL_R_NO_SHARED_CIPHER;
static const int SSL_R_NO_SHARED_GROUPS;
static const int SSL_R_NO_CIPHERS_AVAILABLE;
static const int SSL_R_NO_PROTOCOLS_AVAILABLE;
static const int SSL_R_UNSUPPORTED_PROTOCOL;
static const int SSL_R_TLSV1_ALERT_PROTOCOL_VERSION;
static const int SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY;
static const int SSL_R_NO_SUITABLE_KEY_SHARE;
static const int SSL_R_DH_KEY_TOO_SMALL;
static const int SSL_R_VERSION_TOO_LOW;
static const int SSL_R_VERSION_TOO_HIGH;
static const int SSL_R_INAPPROPRIATE_FALLBACK;
static const int SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE;
static const int SSL_R_INVALID_STATUS_RESPONSE;
static const int SSL_R_TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE;
static const int SSL_TLSEXT_ERR_OK;
static const int SSL_TLSEXT_ERR_ALERT_FATAL;
static const int SSL_TLSEXT_ERR_NOACK;
static const int TLSEXT_NAMETYPE_host_name;
static const int SSL_SENT_SHUTDOWN;
static const int SSL_RECEIVED_SHUTDOWN;
""", """
const SSL_METHOD *TLS_method(void);
const SSL_METHOD *TLS_client_method(void);
const SSL_METHOD *TLS_server_method(void);
int SSL_get_ex_data_X509_STORE_CTX_idx(void);
""")

SSL_CTX = ("", """
SSL_CTX *SSL_CTX_new(const SSL_METHOD *);
void SSL_CTX_free(SSL_CTX *);
int SSL_CTX_up_ref(SSL_CTX *);
const SSL_METHOD *SSL_CTX_get_ssl_method(const SSL_CTX *);
uint64_t SSL_CTX_set_options(SSL_CTX *, uint64_t);
uint64_t SSL_CTX_get_options(const SSL_CTX *);
long SSL_CTX_set_min_proto_version(SSL_CTX *, int);
long SSL_CTX_set_max_proto_version(SSL_CTX *, int);
long SSL_CTX_get_min_proto_version(SSL_CTX *);
long SSL_CTX_get_max_proto_version(SSL_CTX *);
int SSL_CTX_set_cipher_list(SSL_CTX *, const char *);
int SSL_CTX_set_ciphersuites(SSL_CTX *, const char *);
long SSL_CTX_set1_groups_list(SSL_CTX *, const char *);
int SSL_CTX_set_alpn_protos(SSL_CTX *, const unsigned char *, unsigned int);
int SSL_CTX_set_session_id_context(SSL_CTX *, const unsigned char *, unsigned int);
int SSL_CTX_use_certificate_chain_file(SSL_CTX *, const char *);
int SSL_CTX_use_certificate(SSL_CTX *, X509 *);
long SSL_CTX_add1_chain_cert(SSL_CTX *, X509 *);
int SSL_CTX_use_PrivateKey(SSL_CTX *, EVP_PKEY *);
int SSL_CTX_use_PrivateKey_file(SSL_CTX *, const char *, int);
int SSL_CTX_check_private_key(const SSL_CTX *);
X509_STORE *SSL_CTX_get_cert_store(const SSL_CTX *);
X509_VERIFY_PARAM *SSL_CTX_get0_param(SSL_CTX *);
int SSL_CTX_load_verify_locations(SSL_CTX *, const char *, const char *);
int SSL_CTX_set_default_verify_paths(SSL_CTX *);
int SSL_CTX_set_default_verify_file(SSL_CTX *);
int SSL_CTX_set_default_verify_dir(SSL_CTX *);
void SSL_CTX_set_default_passwd_cb(SSL_CTX *, int (*)(char *, int, int, void *));
void SSL_CTX_set_default_passwd_cb_userdata(SSL_CTX *, void *);
void SSL_CTX_set_verify(SSL_CTX *, int, int (*)(int, X509_STORE_CTX *));
int SSL_CTX_get_verify_mode(const SSL_CTX *);
void SSL_CTX_set_verify_depth(SSL_CTX *, int);
int SSL_CTX_get_verify_depth(const SSL_CTX *);
void SSL_CTX_set_cert_verify_callback(SSL_CTX *, int (*)(X509_STORE_CTX *, void *), void *);
""")

SSL = ("", """
SSL *SSL_new(SSL_CTX *);
void SSL_free(SSL *);
int SSL_up_ref(SSL *);
SSL_CTX *SSL_get_SSL_CTX(const SSL *);
const SSL_METHOD *SSL_get_ssl_method(const SSL *);
uint64_t SSL_set_options(SSL *, uint64_t);
long SSL_set_mode(SSL *, long);
long SSL_set_min_proto_version(SSL *, int);
long SSL_set_max_proto_version(SSL *, int);
long SSL_get_min_proto_version(SSL *);
long SSL_get_max_proto_version(SSL *);
int SSL_set_cipher_list(SSL *, const char *);
int SSL_set_ciphersuites(SSL *, const char *);
long SSL_set1_groups_list(SSL *, const char *);
long SSL_get_negotiated_group(SSL *);
const char *SSL_group_to_name(SSL *, int);
int SSL_set_alpn_protos(SSL *, const unsigned char *, unsigned int);
void SSL_get0_alpn_selected(const SSL *, const unsigned char **, unsigned int *);
int SSL_set_fd(SSL *, int);
int SSL_get_fd(const SSL *);
void SSL_set_bio(SSL *, BIO *, BIO *);
BIO *SSL_get_rbio(const SSL *);
BIO *SSL_get_wbio(const SSL *);
void SSL_set_connect_state(SSL *);
void SSL_set_accept_state(SSL *);
int SSL_is_server(const SSL *);
int SSL_is_init_finished(const SSL *);
int SSL_in_init(const SSL *);
int SSL_do_handshake(SSL *);
int SSL_read_ex(SSL *, void *, size_t, size_t *);
int SSL_write_ex(SSL *, const void *, size_t, size_t *);
int SSL_pending(const SSL *);
int SSL_shutdown(SSL *);
int SSL_get_shutdown(const SSL *);
void SSL_set_shutdown(SSL *, int);
int SSL_get_error(const SSL *, int);
int SSL_version(const SSL *);
const char *SSL_get_version(const SSL *);
size_t SSL_get_finished(const SSL *, void *, size_t);
size_t SSL_get_peer_finished(const SSL *, void *, size_t);
long SSL_set_tlsext_host_name(SSL *, const char *);
const char *SSL_get_servername(const SSL *, const int);
int SSL_set1_host(SSL *, const char *);
X509_VERIFY_PARAM *SSL_get0_param(SSL *);
void SSL_set_verify(SSL *, int, int (*)(int, X509_STORE_CTX *));
int SSL_get_verify_mode(const SSL *);
void SSL_set_verify_depth(SSL *, int);
int SSL_get_verify_depth(const SSL *);
long SSL_get_verify_result(const SSL *);
X509 *SSL_get0_peer_certificate(const SSL *);
X509 *SSL_get1_peer_certificate(const SSL *);
""")

# STACK_OF(SSL_CIPHER) is struct stack_st_SSL_CIPHER (opaque here); the sk_ accessors
# are macros or inline functions, which API mode wraps
SSL_CIPHER = ("", """
const char *SSL_get_cipher_name(const SSL *);
const SSL_CIPHER *SSL_get_current_cipher(const SSL *);
const char *SSL_CIPHER_get_name(const SSL_CIPHER *);
const char *SSL_CIPHER_get_version(const SSL_CIPHER *);
int SSL_CIPHER_get_bits(const SSL_CIPHER *, int *);
struct stack_st_SSL_CIPHER *SSL_get_ciphers(const SSL *);
struct stack_st_SSL_CIPHER *SSL_get_client_ciphers(const SSL *);
int sk_SSL_CIPHER_num(const struct stack_st_SSL_CIPHER *);
const SSL_CIPHER *sk_SSL_CIPHER_value(const struct stack_st_SSL_CIPHER *, int);
int sk_SSL_CIPHER_find(struct stack_st_SSL_CIPHER *, const SSL_CIPHER *);
""")

SSL_SESSION = ("", """
SSL_SESSION *SSL_get1_session(SSL *);
SSL_SESSION *SSL_get_session(const SSL *);
void SSL_SESSION_free(SSL_SESSION *);
int SSL_set_session(SSL *, SSL_SESSION *);
int SSL_session_reused(const SSL *);
int SSL_SESSION_is_resumable(const SSL_SESSION *);
int SSL_SESSION_get_protocol_version(const SSL_SESSION *);
int SSL_set_session_id_context(SSL *, const unsigned char *, unsigned int);
""")

# OCSP: the staple a client received, and a revocation reason's name
OCSP = ("", """
long SSL_get_tlsext_status_ocsp_resp(SSL *, unsigned char **);
const char *OCSP_crl_reason_str(long);
""")

OPENSSL = [CRYPTO, ERR, BIO, EVP, X509, X509_VFY, SSL_COMMON, SSL_CTX, SSL, SSL_CIPHER, SSL_SESSION, OCSP]

# ---- the cdefs --------------------------------------------------------------------

CDEF = ("".join(types for types, _ in OPENSSL)
        + header_block("records") + header_block("ocsp_result")  # commssl.h's structs
        + "".join(functions for _, functions in OPENSSL)
        + "".join(cdef_block(name) for name in C_FILES))

# commssl._demo's cdef, independent of _openssl's (an ffi.include would make the demo
# module compile every _openssl type): its X509/EVP_PKEY pointers cross to _openssl's
# by ffi.cast in commssl.demo.
DEMO = "".join(cdef_block(name) for name in DEMO_FILES)


def _build(module: str, cdef: str, source: str) -> FFI:
    ffi = FFI()
    ffi.cdef(cdef)
    kwargs: dict = {"py_limited_api": not sys.implementation.name == "pypy", "include_dirs": [C_DIR]}
    # OPENSSL_DIR (a prefix holding include/ and lib/) wins over pkg-config when set, so a
    # wheel build links the OpenSSL 3 it was pointed at, never whatever pkg-config finds.
    prefix = os.environ.get("OPENSSL_DIR")
    if prefix:
        libdirs = [os.path.join(prefix, d) for d in ("lib", "lib64")]
        kwargs["include_dirs"].append(os.path.join(prefix, "include"))
        kwargs["library_dirs"] = [d for d in libdirs if os.path.isdir(d)] or libdirs[:1]
    if sys.platform == "win32":
        # OpenSSL 3's import libraries are libssl.lib/libcrypto.lib (vcpkg, the official
        # build); ws2_32 for WSAPoll; the rest only matter for a static libcrypto.
        libraries = ["libssl", "libcrypto", "ws2_32", "crypt32", "advapi32", "user32"]
        ffi.set_source(module, source, libraries=libraries, **kwargs)
        return ffi
    if not prefix:
        try:
            ffi.set_source_pkgconfig(module, ["libssl", "libcrypto"], source, **kwargs)
            return ffi
        except PkgConfigError:
            pass  # no pkg-config or no .pc files: the compiler's default paths
    ffi.set_source(module, source, libraries=["ssl", "crypto"], **kwargs)
    return ffi


ffibuilder = _build("commssl._openssl", CDEF, c_source(C_FILES))
demo_ffibuilder = _build("commssl._demo", DEMO, c_source(DEMO_FILES))

if __name__ == "__main__":
    ffibuilder.compile(tmpdir="build/cffi", verbose=True)
    demo_ffibuilder.compile(tmpdir="build/cffi", verbose=True)
