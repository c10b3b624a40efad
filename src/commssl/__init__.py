"""commssl: the OpenSSL side of the LispWorks COMM SSL interface for Python.

Verification modes with Python or C verify callbacks, and the peer's
certificates as real ``X509*`` pointers that are copied (reference count +1)
and released explicitly.

Documentation: https://commssl.readthedocs.io (a tour, the user guide, the API
reference and the differences from LispWorks; also docs/ in the source).
Source and issues: https://github.com/commssl/commssl
"""


from commssl._core.binding import ffi, lib
from commssl._core.pointers import (
    SSLCtxPointer,
    SSLPointer,
    X509Pointer,
    X509StoreCtxPointer,
    outstanding_certificates,
    release_certificate,
)
from commssl._core.version import __version__, openssl_version
from commssl.aio import (
    AsyncSSLStream,
    attach_ssl_async,
    detach_ssl_async,
    open_tcp_stream_async,
    start_ssl_server,
)
from commssl.config.abstract import (
    SSLAbstractContext,
    create_ssl_client_context,
    create_ssl_server_context,
    reset_ssl_abstract_context,
)
from commssl.config.certificate_bytes import dump_certificate, load_certificate
from commssl.config.certificates import (
    copy_certificate,
    get_certificate_common_name,
    get_certificate_data,
    get_certificate_serial_number,
    pem_read,
    release_certificates_vector,
)
from commssl.config.certvector import CertificateVector
from commssl.config.ciphers import get_protocol_versions, set_ciphers, set_ciphersuites, set_protocol_versions
from commssl.config.contexts import (
    destroy_ssl_ctx,
    make_ssl_ctx,
    set_ssl_ctx_password_callback,
    ssl_ctx_load_verify_locations,
    ssl_ctx_use_certificate_chain_file,
    ssl_ctx_use_privatekey_file,
)
from commssl.config.credentials import ssl_ctx_use_certificate_chain, ssl_ctx_use_privatekey
from commssl.config.features import (
    set_alpn_protocols,
    set_alpn_select_callback,
    set_groups,
    set_keylog,
    ssl_connection_alpn_protocol,
    ssl_connection_cipher,
    ssl_connection_group,
    ssl_connection_server_name,
    ssl_connection_session,
    ssl_connection_session_reused,
)
from commssl.config.keys import (
    KeyPointer,
    read_certificate_key_pairs,
    read_dhparams,
    set_ssl_ctx_dh,
    ssl_connection_read_dh_params_file,
)
from commssl.config.lispworks_callbacks import set_ssl_ctx_cert_cb, ssl_connection_read_certificates
from commssl.config.options import set_ssl_ctx_options
from commssl.config.revocation import (
    OCSPStatus,
    set_crl_checking,
    set_ocsp_staple,
    set_ocsp_stapling,
    ssl_ctx_load_crl,
)
from commssl.config.sessions import Session, release_session
from commssl.config.verification import (
    get_verification_mode,
    set_verification_depth,
    set_verification_mode,
    x509_store_ctx_get_connection,
    x509_store_ctx_get_current_cert,
    x509_store_ctx_get_error,
    x509_store_ctx_get_error_depth,
    x509_store_ctx_set_error,
    x509_verify_cert_error_string,
)
from commssl.errors import (
    CertificateReleasedError,
    SSLClosed,
    SSLCondition,
    SSLError,
    SSLFailure,
    SSLFileNotFound,
    SSLHandshakeTimeout,
    SSLVerificationFailure,
    SSLVersionOrCipherMismatch,
)
from commssl.io.connection import (
    peer_certificates,
    ssl_connection_copy_peer_certificates,
    ssl_connection_copy_verified_certificates,
    ssl_connection_get_peer_certificates_data,
    ssl_connection_ocsp_response,
    ssl_connection_ocsp_status,
    ssl_connection_protocol_version,
    ssl_connection_ssl_ref,
    ssl_connection_verify,
)
from commssl.streams import (
    SocketStream,
    attach_ssl,
    create_ssl_socket_stream,
    detach_ssl,
    open_tcp_stream,
    socket_stream_ctx,
    socket_stream_handshake,
    socket_stream_ssl,
    socket_stream_ssl_side,
)

__all__ = [
    "AsyncSSLStream", "attach_ssl_async", "detach_ssl_async", "open_tcp_stream_async", "start_ssl_server",
    "OCSPStatus", "set_crl_checking", "set_ocsp_staple", "set_ocsp_stapling", "ssl_ctx_load_crl",
    "ssl_connection_copy_verified_certificates", "ssl_connection_ocsp_response",
    "ssl_connection_ocsp_status",
    "CertificateReleasedError", "CertificateVector", "SSLAbstractContext", "SSLClosed", "SSLCondition",
    "SSLCtxPointer", "SSLError", "SSLFailure", "SSLFileNotFound", "SSLHandshakeTimeout", "SSLPointer",
    "SSLVerificationFailure",
    "SSLVersionOrCipherMismatch", "SocketStream", "X509Pointer", "X509StoreCtxPointer",
    "__version__", "attach_ssl", "copy_certificate", "create_ssl_client_context",
    "create_ssl_server_context", "create_ssl_socket_stream", "destroy_ssl_ctx", "detach_ssl", "ffi",
    "get_certificate_common_name", "get_certificate_data", "get_certificate_serial_number",
    "get_verification_mode", "lib", "make_ssl_ctx", "open_tcp_stream", "openssl_version",
    "outstanding_certificates", "peer_certificates", "pem_read", "release_certificate",
    "release_certificates_vector", "set_ssl_ctx_password_callback", "set_verification_depth",
    "set_verification_mode", "socket_stream_ctx", "socket_stream_handshake", "socket_stream_ssl",
    "socket_stream_ssl_side", "ssl_connection_copy_peer_certificates",
    "ssl_connection_get_peer_certificates_data", "ssl_connection_protocol_version",
    "ssl_connection_ssl_ref", "ssl_connection_verify", "ssl_ctx_load_verify_locations",
    "ssl_ctx_use_certificate_chain_file", "ssl_ctx_use_privatekey_file",
    "x509_store_ctx_get_connection", "x509_store_ctx_get_current_cert", "x509_store_ctx_get_error",
    "x509_store_ctx_get_error_depth", "x509_store_ctx_set_error", "x509_verify_cert_error_string",
    # TLS features the peers have (features.py)
    "set_groups", "ssl_connection_cipher", "ssl_connection_group", "ssl_connection_server_name",
    "ssl_ctx_use_certificate_chain", "ssl_ctx_use_privatekey",
    "set_alpn_protocols", "set_alpn_select_callback", "ssl_connection_alpn_protocol", "set_keylog",
    "Session", "release_session", "ssl_connection_session", "ssl_connection_session_reused",
    # more of LispWorks (options.py, keys.py, lispworks_callbacks.py)
    "set_ssl_ctx_options", "KeyPointer", "read_dhparams", "set_ssl_ctx_dh",
    "ssl_connection_read_dh_params_file", "read_certificate_key_pairs", "set_ssl_ctx_cert_cb",
    "ssl_connection_read_certificates", "reset_ssl_abstract_context",
    # certificates as bytes (certificate_bytes.py)
    "dump_certificate", "load_certificate",
    # cipher and version knobs (ciphers.py)
    "set_ciphers", "set_ciphersuites", "set_protocol_versions", "get_protocol_versions",
]
