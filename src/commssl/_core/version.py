"""The package's version and the OpenSSL it runs on (``commssl.__version__``,
``commssl.openssl_version``): here so the CLI reads them without importing the package."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Dict, Union

from commssl._core.binding import lib, text

try:  # one source of truth: the version in pyproject.toml, as installed
    __version__: str = version("commssl")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def openssl_version() -> Dict[str, Union[str, int]]:
    """The OpenSSL the extension was built against and the one loaded now:
    ``{"built": text, "loaded": text, "built_number": int, "loaded_number": int}``."""
    return {
        "built": text(lib.OPENSSL_VERSION_TEXT),
        "loaded": text(lib.OpenSSL_version(lib.OPENSSL_VERSION)),
        "built_number": int(lib.OPENSSL_VERSION_NUMBER),
        "loaded_number": int(lib.OpenSSL_version_num()),
    }
