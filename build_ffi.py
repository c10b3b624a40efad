"""cffi builders for ``commssl._openssl`` and ``commssl._demo`` (out-of-line, API mode).

Two halves. The C: commssl's helpers are real C files in ``src/_cffi_src/``, one per
job (records, verify, chains, io, membio, passwords, revocation, features; the list
is C_FILES below), sharing ``commssl.h`` (OpenSSL includes, the shared types and the
prototypes). They are compiled as one translation unit: the files are read in
C_FILES order and concatenated into set_source's source, ahead of cffi's wrappers.
The cdef: what Python sees (``lib``), grouped by OpenSSL area, version first. Each
area has INCLUDES-free TYPES (opaque types, constants) and FUNCTIONS (prototypes,
with macros declared as functions, which API mode allows); HELPERS, OCSP's and
FEATURES' tails declare the C helpers. The build logic (OPENSSL_DIR, pkg-config,
Windows libraries) is _build, shared by the two builders: ``ffibuilder`` (the
extension every connection loads) and ``demo_ffibuilder`` (``commssl._demo``: the demo
PKI's certificate minting, ``demo.c``, cdef DEMO, loaded only by ``commssl.demo``).
Both are setup.py's cffi_modules.
"""

from __future__ import annotations

import os
import sys

from cffi import FFI, PkgConfigError

C_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src", "_cffi_src")
# The helpers, in compile order (one translation unit; commssl.h declares what
# crosses files). A new area is a new file here and a new cdef block below.
C_FILES = ["records.c", "passwords.c", "verify.c", "chains.c", "io.c", "membio.c",
           "revocation.c", "features.c", "lispworks.c"]
# commssl._demo, the demo PKI of `python -m commssl` (loaded only by commssl.demo):
# apart from the extension every connection loads. Standalone C (no commssl.h).
DEMO_FILES = ["demo.c"]
END_OF_HELPERS = "/* ==== end of src/_cffi_src ==== */\n"


def header_block(name: str) -> str:
    """A block of commssl.h that the cdef shares as it is (the records' structs):
    written once, between ``/* @cdef NAME ... */`` and ``/* @end NAME */``."""
    with open(os.path.join(C_DIR, "commssl.h"), encoding="utf-8") as f:
        text = f.read()
    start = text.index(f"/* @cdef {name}")
    start = text.index("\n", start) + 1
    return "\n" + text[start:text.index(f"/* @end {name} */", start)]


def c_source(files: list[str]) -> str:
    """The files' text, concatenated in order (each #includes commssl.h, guarded)."""
    parts = []
    for name in files:
        with open(os.path.join(C_DIR, name), encoding="utf-8") as f:
            parts.append(f"/* ==== src/_cffi_src/{name} ==== */\n{f.read()}")
    parts.append(END_OF_HELPERS)  # ci/cwarnings: cffi's wrappers follow
    return "\n".join(parts)


VERSION = """
static const long OPENSSL_VERSION_NUMBER;
static const char *const OPENSSL_VERSION_TEXT;
static const int OPENSSL_VERSION;
unsigned long OpenSSL_version_num(void);
const char *OpenSSL_version(int);
"""

CRYPTO = """
void OPENSSL_free(void *);
"""

ERR = """
unsigned long ERR_get_error(void);
unsigned long ERR_peek_error(void);
unsigned long ERR_peek_last_error(void);
void ERR_clear_error(void);
void ERR_error_string_n(unsigned long, char *, size_t);
const char *ERR_reason_error_string(unsigned long);
const char *ERR_lib_error_string(unsigned long);
int ERR_GET_LIB(unsigned long);
int ERR_GET_REASON(unsigned long);
static const int ERR_LIB_SSL;
static const int ERR_LIB_X509;
static const int ERR_LIB_PEM;
static const int ERR_LIB_SYS;
"""

BIO = """
typedef ... BIO;
typedef ... BIO_METHOD;
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
"""

X509 = """
typedef ... X509;
typedef ... X509_NAME;
typedef ... EVP_PKEY;
static const int NID_commonName;
void X509_free(X509 *);
int X509_up_ref(X509 *);
X509 *PEM_read_bio_X509(BIO *, X509 **, void *, void *);
X509 *d2i_X509_bio(BIO *, X509 **);
int i2d_X509(X509 *, unsigned char **);
X509_NAME *X509_get_subject_name(const X509 *);
X509_NAME *X509_get_issuer_name(const X509 *);
const char *X509_get_default_cert_file(void);
void EVP_PKEY_free(EVP_PKEY *);
"""

X509_VFY = """
typedef ... X509_STORE_CTX;
typedef ... X509_STORE;
static const int X509_V_OK;
static const int X509_V_ERR_UNSPECIFIED;
static const int X509_V_ERR_APPLICATION_VERIFICATION;
static const int X509_V_ERR_HOSTNAME_MISMATCH;
static const int X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT;
static const int X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN;
static const int X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
static const int X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT;
static const int X509_V_ERR_CERT_HAS_EXPIRED;
X509 *X509_STORE_CTX_get_current_cert(const X509_STORE_CTX *);
int X509_STORE_CTX_get_error(const X509_STORE_CTX *);
void X509_STORE_CTX_set_error(X509_STORE_CTX *, int);
int X509_STORE_CTX_get_error_depth(const X509_STORE_CTX *);
void *X509_STORE_CTX_get_ex_data(const X509_STORE_CTX *, int);
const char *X509_verify_cert_error_string(long);
int X509_STORE_add_cert(X509_STORE *, X509 *);
"""

SSL = """
typedef ... SSL_METHOD;
typedef ... SSL_CTX;
typedef ... SSL;
typedef ... SSL_CIPHER;
static const int SSL_VERIFY_NONE;
static const int SSL_VERIFY_PEER;
static const int SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
static const int SSL_VERIFY_CLIENT_ONCE;
static const int SSL_VERIFY_POST_HANDSHAKE;
static const int SSL_ERROR_NONE;
static const int SSL_ERROR_SSL;
static const int SSL_ERROR_WANT_READ;
static const int SSL_ERROR_WANT_WRITE;
static const int SSL_ERROR_WANT_X509_LOOKUP;
static const int SSL_ERROR_SYSCALL;
static const int SSL_ERROR_ZERO_RETURN;
static const int SSL_FILETYPE_PEM;
static const int TLS1_VERSION;
static const int TLS1_1_VERSION;
static const int TLS1_2_VERSION;
static const int TLS1_3_VERSION;
static const int SSL3_VERSION;
static const long SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
static const long SSL_MODE_ENABLE_PARTIAL_WRITE;
static const long SSL_OP_NO_RENEGOTIATION;
static const long SSL_OP_NO_COMPRESSION;
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

const SSL_METHOD *TLS_method(void);
const SSL_METHOD *TLS_client_method(void);
const SSL_METHOD *TLS_server_method(void);
const SSL_METHOD *SSL_get_ssl_method(const SSL *);
const SSL_METHOD *SSL_CTX_get_ssl_method(const SSL_CTX *);

SSL_CTX *SSL_CTX_new(const SSL_METHOD *);
void SSL_CTX_free(SSL_CTX *);
int SSL_CTX_up_ref(SSL_CTX *);
long SSL_CTX_set_options(SSL_CTX *, long);
long SSL_CTX_get_options(SSL_CTX *);
int SSL_CTX_set_min_proto_version(SSL_CTX *, int);
int SSL_CTX_set_max_proto_version(SSL_CTX *, int);
int SSL_CTX_use_certificate_chain_file(SSL_CTX *, const char *);
int SSL_CTX_use_certificate(SSL_CTX *, X509 *);
long SSL_CTX_add1_chain_cert(SSL_CTX *, X509 *);
int SSL_CTX_use_PrivateKey(SSL_CTX *, EVP_PKEY *);
X509_STORE *SSL_CTX_get_cert_store(const SSL_CTX *);
int SSL_CTX_use_PrivateKey_file(SSL_CTX *, const char *, int);
int SSL_CTX_check_private_key(const SSL_CTX *);
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
int SSL_CTX_set_cipher_list(SSL_CTX *, const char *);
int SSL_CTX_set_ciphersuites(SSL_CTX *, const char *);
int SSL_set_cipher_list(SSL *, const char *);
int SSL_set_ciphersuites(SSL *, const char *);
int SSL_set_min_proto_version(SSL *, int);
int SSL_set_max_proto_version(SSL *, int);
int SSL_CTX_get_min_proto_version(SSL_CTX *);
int SSL_CTX_get_max_proto_version(SSL_CTX *);
int SSL_get_min_proto_version(SSL *);
int SSL_get_max_proto_version(SSL *);

SSL *SSL_new(SSL_CTX *);
void SSL_free(SSL *);
int SSL_up_ref(SSL *);
SSL_CTX *SSL_get_SSL_CTX(const SSL *);
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
long SSL_set_mode(SSL *, long);
long SSL_set_options(SSL *, long);
int SSL_do_handshake(SSL *);
int SSL_read_ex(SSL *, void *, size_t, size_t *);
int SSL_write_ex(SSL *, const void *, size_t, size_t *);
int SSL_pending(const SSL *);
int SSL_shutdown(SSL *);
int SSL_get_shutdown(const SSL *);
void SSL_set_shutdown(SSL *, int);
static const int SSL_SENT_SHUTDOWN;
static const int SSL_RECEIVED_SHUTDOWN;
int SSL_get_error(const SSL *, int);
int SSL_version(const SSL *);
const char *SSL_get_version(const SSL *);
void SSL_set_verify(SSL *, int, int (*)(int, X509_STORE_CTX *));
int SSL_get_verify_mode(const SSL *);
void SSL_set_verify_depth(SSL *, int);
int SSL_get_verify_depth(const SSL *);
long SSL_get_verify_result(const SSL *);
long SSL_set_tlsext_host_name(SSL *, const char *);
const char *SSL_get_servername(const SSL *, const int);
static const int TLSEXT_NAMETYPE_host_name;
int SSL_set1_host(SSL *, const char *);
typedef ... X509_VERIFY_PARAM;
X509_VERIFY_PARAM *SSL_get0_param(SSL *);
int X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *, const char *);
X509 *SSL_get0_peer_certificate(const SSL *);
X509 *SSL_get1_peer_certificate(const SSL *);
int SSL_get_ex_data_X509_STORE_CTX_idx(void);
const char *SSL_get_cipher_name(const SSL *);
const SSL_CIPHER *SSL_get_current_cipher(const SSL *);
const char *SSL_CIPHER_get_name(const SSL_CIPHER *);
const char *SSL_CIPHER_get_version(const SSL_CIPHER *);
int SSL_CIPHER_get_bits(const SSL_CIPHER *, int *);
/* STACK_OF(SSL_CIPHER) is struct stack_st_SSL_CIPHER (opaque here); the sk_ accessors
   are macros or inline functions, which API mode wraps */
struct stack_st_SSL_CIPHER *SSL_get_ciphers(const SSL *);
struct stack_st_SSL_CIPHER *SSL_get_client_ciphers(const SSL *);
int sk_SSL_CIPHER_num(const struct stack_st_SSL_CIPHER *);
const SSL_CIPHER *sk_SSL_CIPHER_value(const struct stack_st_SSL_CIPHER *, int);
int sk_SSL_CIPHER_find(struct stack_st_SSL_CIPHER *, const SSL_CIPHER *);
size_t SSL_get_finished(const SSL *, void *, size_t);
size_t SSL_get_peer_finished(const SSL *, void *, size_t);
"""

# Per-SSL record reached through ex_data: the Python wrapper's handle, what the
# trampolines should call, and the first verification failure seen; and the
# per-SSL_CTX record: the context wrapper's handle and whether the context has a
# Python verify callback / verify_callback(conn). Both records are allocated in C
# and freed by OpenSSL with their SSL or SSL_CTX (ex_data free callbacks), so
# none can dangle; a wrapper clears its handle ("py") when it dies. The structs are
# written once, in src/_cffi_src/commssl.h.
STATE = header_block("records")

HELPERS = STATE + """
static const int COMMSSL_OP_HANDSHAKE;
static const int COMMSSL_OP_READ;
static const int COMMSSL_OP_WRITE;
static const int COMMSSL_OP_SHUTDOWN;
static const int COMMSSL_TIMEOUT;
static const int COMMSSL_EINTR;
static const int COMMSSL_SHUTDOWN_SENT;

int commssl_init(void);
commssl_state *commssl_get_state(const SSL *);
commssl_ctx_state *commssl_ctx_attach(SSL_CTX *, void *);
commssl_ctx_state *commssl_get_ctx_state(const SSL_CTX *);
SSL *commssl_store_ssl(X509_STORE_CTX *);

int commssl_verify_cb(int, X509_STORE_CTX *);
int commssl_cert_verify_cb(X509_STORE_CTX *, void *);
int commssl_decide_no_cert(SSL *);
extern "Python" int _commssl_verify_py(commssl_state *, int, X509_STORE_CTX *);
extern "Python" int _commssl_conn_verify_py(commssl_state *, int, X509_STORE_CTX *);
extern "Python" int _commssl_foreign_verify_py(commssl_ctx_state *, SSL *, int, int, X509_STORE_CTX *);
extern "Python" int _commssl_password_py(char *, int, int, void *);

int commssl_copy_peer_chain(SSL *, X509_STORE_CTX *, X509 **, int);
void commssl_free_certs(X509 **, int);
int commssl_do(SSL *, int, void *, size_t, size_t *);
int commssl_io(SSL *, int, void *, size_t, size_t *, int);
int commssl_cert_info(X509 *, unsigned char *, int);
int commssl_serial(X509 *, unsigned char *, int, int *);
int commssl_common_name(X509 *, unsigned char **);

/* fast paths measured by bench/ */
int commssl_serial_into(X509 *, unsigned char *, int);
int commssl_serial20(X509 *, unsigned char *);
commssl_state *commssl_attach(SSL *, void *, int, int, long);
void commssl_release_ssl(SSL *);
int commssl_client_names(SSL *, const char *, const char *, int);
int commssl_read_more(SSL *, char *, size_t, size_t *, int, int *);
int commssl_set_socket(SSL *, int, int);
int commssl_holds_unread(SSL *);
/* the per-SSL operation lock, for setters and accessors (ownership.py) */
int commssl_lock_ssl(SSL *);
void commssl_unlock_ssl(SSL *);

/* asyncio streams (aio.py): an SSL over a pair of memory BIOs */
int commssl_mem_step(SSL *, char *, size_t, int, int, char *, size_t, size_t *, size_t *);

/* contexts: the pass phrase callback of contexts given no password */
int commssl_no_password(char *, int, int, void *);
"""

# -- revocation: CRLs, OCSP stapling, verified chains, verification errors (revocation.py) --
OCSP = """
typedef ... X509_CRL;
static const long X509_V_FLAG_CRL_CHECK;
static const long X509_V_FLAG_CRL_CHECK_ALL;
static const int X509_V_ERR_UNABLE_TO_GET_CRL;
static const int X509_V_ERR_CERT_REVOKED;
static const int X509_V_ERR_OCSP_VERIFY_NEEDED;
static const int X509_V_ERR_OCSP_VERIFY_FAILED;
static const int X509_V_ERR_OCSP_CERT_UNKNOWN;
static const int SSL_R_INVALID_STATUS_RESPONSE;
static const int SSL_R_TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE;
static const int SSL_TLSEXT_ERR_OK;
static const int SSL_TLSEXT_ERR_ALERT_FATAL;
static const int SSL_TLSEXT_ERR_NOACK;
X509_VERIFY_PARAM *SSL_CTX_get0_param(SSL_CTX *);
int X509_VERIFY_PARAM_set_flags(X509_VERIFY_PARAM *, unsigned long);
int X509_VERIFY_PARAM_clear_flags(X509_VERIFY_PARAM *, unsigned long);
unsigned long X509_VERIFY_PARAM_get_flags(const X509_VERIFY_PARAM *);
long SSL_get_tlsext_status_ocsp_resp(SSL *, unsigned char **);
const char *OCSP_crl_reason_str(long);

/* revocation helpers: src/_cffi_src/revocation.c */
""" + header_block("ocsp_result") + """
int commssl_rv_init(void);
int commssl_copy_verified_chain(SSL *, X509_STORE_CTX *, X509 **, int);
int commssl_failure_chain(SSL *, X509 **, int);
int commssl_verify_errors(SSL *, int, int *, int *, char **);
int commssl_ocsp_failed(SSL *);
int commssl_ocsp_unreadable(SSL *);
int commssl_is_ocsp_der(const unsigned char *, size_t);
int commssl_load_crls(SSL_CTX *, const unsigned char *, size_t);
int commssl_set_ocsp_mode(SSL_CTX *, SSL *, int);
int commssl_set_staple(SSL_CTX *, const unsigned char *, size_t, int);
int commssl_staple_ssl(SSL *, const unsigned char *, size_t);
int commssl_ocsp_check(SSL *, X509_STORE_CTX *, const unsigned char *, long, commssl_ocsp_result *);
extern "Python" int _commssl_staple_py(void *, SSL *);
"""


# ---- TLS features the peers have (owner: features.py, credentials.py, sessions.py) ----
# Cipher/SNI/group accessors, groups, in-memory credentials, ALPN, key logging and
# sessions. Kept apart from the areas above so concurrent work merges cleanly.
FEATURES = """
typedef ... SSL_SESSION;
int SSL_get_negotiated_group(SSL *);
const char *SSL_group_to_name(SSL *, int);
int SSL_CTX_set1_groups_list(SSL_CTX *, const char *);
int SSL_set1_groups_list(SSL *, const char *);
int SSL_CTX_set_alpn_protos(SSL_CTX *, const unsigned char *, unsigned int);
int SSL_set_alpn_protos(SSL *, const unsigned char *, unsigned int);
void SSL_get0_alpn_selected(const SSL *, const unsigned char **, unsigned int *);
SSL_SESSION *SSL_get1_session(SSL *);
SSL_SESSION *SSL_get_session(const SSL *);
void SSL_SESSION_free(SSL_SESSION *);
int SSL_set_session(SSL *, SSL_SESSION *);
int SSL_session_reused(const SSL *);
int SSL_SESSION_is_resumable(const SSL_SESSION *);
int SSL_SESSION_get_protocol_version(const SSL_SESSION *);
int SSL_CTX_set_session_id_context(SSL_CTX *, const unsigned char *, unsigned int);
int SSL_set_session_id_context(SSL *, const unsigned char *, unsigned int);
static const long SSL_OP_NO_TICKET;
int commssl_ctx_keep_chains(SSL_CTX *);

int commssl_features_init(void);
int commssl_ctx_set_alpn_select(SSL_CTX *, const unsigned char *, unsigned int, int);
void commssl_ctx_set_keylog(SSL_CTX *, int);
int commssl_use_chain_mem(SSL_CTX *, const char *, int);
int commssl_use_key_mem(SSL_CTX *, const char *, int, const char *);
int commssl_load_cadata(SSL_CTX *, const char *, int);
int commssl_reverify(SSL *);
/* revocation.c, here for SSL_SESSION: resumption under ocsp_stapling="require" */
int commssl_ocsp_session_ok(SSL *, SSL_SESSION *);
int commssl_ocsp_resumed_ok(SSL *);
extern "Python" int _commssl_alpn_py(void *, const unsigned char *, unsigned int);
extern "Python" void _commssl_keylog_py(void *, const char *);
"""

# ---- LispWorks: options, DH, cert_cb, client hello (owner: options.py, keys.py,
# lispworks_callbacks.py); its C is src/_cffi_src/lispworks.c ---------------------
LISPWORKS = """
int commssl_lw_option(int, const char **, uint64_t *);
uint64_t commssl_lw_ctx_set_options(SSL_CTX *, uint64_t);
uint64_t commssl_lw_ssl_set_options(SSL *, uint64_t);
EVP_PKEY *commssl_lw_read_params(const char *, int);
EVP_PKEY *commssl_lw_read_key(const char *, int, const char *, void *);
int commssl_lw_key_is_dh(EVP_PKEY *);
int EVP_PKEY_get_bits(const EVP_PKEY *);
int commssl_lw_ctx_set_dh(SSL_CTX *, EVP_PKEY *);
int commssl_lw_ssl_set_dh(SSL *, EVP_PKEY *);
int X509_check_private_key(const X509 *, const EVP_PKEY *);
int commssl_lw_use_cert_and_key(SSL *, const char *, int, X509 *, EVP_PKEY *);
int commssl_lw_use_files(SSL *, const char *, const char *, const char *, void *);
void commssl_lw_ctx_set_cert_cb(SSL_CTX *, int);
void commssl_lw_ctx_set_client_hello_cb(SSL_CTX *, int);
static const int COMMSSL_LW_PASSWORD_PY;
extern "Python" int _commssl_lw_password_py(char *, int, int, void *);
extern "Python" int _commssl_lw_cert_cb_py(void *);
extern "Python" int _commssl_lw_client_hello_py(void *, const char *);
"""


CDEF = VERSION + CRYPTO + ERR + BIO + X509 + X509_VFY + SSL + HELPERS + OCSP + FEATURES + LISPWORKS


# commssl._demo's cdef, independent of _openssl's (an ffi.include would make the demo
# module compile every _openssl type): its X509/EVP_PKEY pointers cross to _openssl's
# by ffi.cast in commssl.demo.
DEMO = """
typedef ... X509;
typedef ... EVP_PKEY;
int commssl_demo_cert(const char *, const char *, int, int, uint64_t, long, long,
                      X509 *, EVP_PKEY *, X509 **, EVP_PKEY **);
"""


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
