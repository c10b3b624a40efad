"""The conditions: ``SSLCondition`` and its subclasses, named after LispWorks'."""

from __future__ import annotations

from typing import Optional, Tuple, Union

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


class SSLVersionOrCipherMismatch(SSLFailure):
    """No protocol version, cipher or key exchange both sides accept."""


class SSLHandshakeTimeout(SSLCondition):
    """The handshake did not finish within ``handshake_timeout``."""


class SSLVerificationFailure(SSLCondition):
    """The peer's certificate was rejected, by OpenSSL or by a verify callback.

    ``verify_code`` is the ``X509_V_ERR_*`` value, ``verify_message`` its text and
    ``depth`` the chain position that failed first (0 is the peer's own
    certificate; ``None`` when unknown).
    """

    def __init__(
        self,
        message: str,
        ssl_code: SSLCode = None,
        verify_code: int = 0,
        verify_message: str = "",
        depth: Optional[int] = None,
    ) -> None:
        super().__init__(message, ssl_code)
        self.verify_code = verify_code
        self.verify_message = verify_message
        self.depth = depth


class CertificateReleasedError(ValueError):
    """A released certificate pointer was used or released again, or a borrowed one released."""
