"""The conditions: ``SSLCondition`` and its subclasses, named after LispWorks'."""

from __future__ import annotations

import errno as _errno
import os as _os
from typing import Any, List, Optional, Tuple, Union

#: What ``ssl_code`` holds: ``None`` (not recorded), an ``ERR_get_error()`` value,
#: a keyword such as ``"verify-callback"`` or ``"closed"``, or
#: ``("verification", X509_V_ERR_code)``.
SSLCode = Union[None, int, str, Tuple[str, int]]


class SSLCondition(OSError):
    """Base of every SSL error (LispWorks ``ssl-condition``, a socket error)."""

    def __init__(self, message: str, ssl_code: SSLCode = None) -> None:
        super().__init__(message)
        self.ssl_code = ssl_code

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SSLClosed(SSLCondition):
    """The peer shut the TLS connection down cleanly (``SSL_ERROR_ZERO_RETURN``)."""


class SSLError(SSLCondition):
    """A system call failed, or the peer closed the connection without close_notify."""


class SSLFailure(SSLCondition):
    """A protocol failure (``SSL_ERROR_SSL``), e.g. talking TLS to a plain-text peer."""


class SSLFileNotFound(FileNotFoundError, SSLFailure):
    """A file commssl was told to read (a certificate, key, trust, CRL or DH
    parameters file, or a ``capath`` directory) does not exist.

    A ``FileNotFoundError`` (``errno`` is ``ENOENT``, ``filename`` the path as given)
    and, as before it existed, an ``SSLFailure``: ``except FileNotFoundError`` and
    ``except SSLFailure`` both catch it.
    """

    def __init__(self, message: str, filename: Any, ssl_code: SSLCode = None) -> None:
        SSLFailure.__init__(self, message, ssl_code)
        self.errno = _errno.ENOENT
        self.strerror = _os.strerror(_errno.ENOENT)
        self.filename = filename


class SSLVersionOrCipherMismatch(SSLFailure):
    """No protocol version, cipher or key exchange both sides accept."""


class SSLHandshakeTimeout(SSLCondition):
    """The handshake did not finish within ``handshake_timeout``."""


class SSLVerificationFailure(SSLCondition):
    """The peer's certificate was rejected, by OpenSSL or by a verify callback.

    ``verify_code`` is the ``X509_V_ERR_*`` value, ``verify_message`` its text and
    ``depth`` the chain position that failed first (0 is the peer's own
    certificate; ``None`` when unknown). ``errors`` lists every
    ``(depth, verify_code, subject)`` OpenSSL reported during the handshake, in
    order (subject: RFC 2253 text, or None), and ``chain`` holds the data lists
    (as from ``get_certificate_data``) of the certificates the peer sent, leaf
    first (``[]`` when it sent none or they were not seen).
    """

    def __init__(
        self,
        message: str,
        ssl_code: SSLCode = None,
        verify_code: int = 0,
        verify_message: str = "",
        depth: Optional[int] = None,
        errors: Optional[List[Tuple[int, int, Optional[str]]]] = None,
        chain: Optional[List[List[Tuple[str, Any]]]] = None,
    ) -> None:
        super().__init__(message, ssl_code)
        self.verify_code = verify_code
        self.verify_message = verify_message
        self.depth = depth
        self.errors = list(errors) if errors is not None else []
        self.chain = list(chain) if chain is not None else []


class CertificateReleasedError(ValueError):
    """A released certificate pointer was used or released again, or a borrowed one released."""
