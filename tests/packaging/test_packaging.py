"""The installed distribution's metadata (importlib.metadata, as pip show and PyPI see it),
the package docstring's pointer to the documentation, and the Read the Docs configuration
building the site as ci/docs does."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import commssl

ROOT = Path(__file__).resolve().parents[2]
DOCS_URL = "https://commssl.readthedocs.io"
SOURCE_URL = "https://github.com/commssl/commssl"


def metadata() -> importlib.metadata.PackageMetadata:
    return importlib.metadata.metadata("commssl")


def extra(name: str) -> List[str]:
    """The requirement names of an extra, from the installed metadata."""
    requires = importlib.metadata.requires("commssl") or []
    marker = f'extra == "{name}"'
    return sorted(re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower()
                  for r in requires if marker in r)


def test_project_urls_and_authors() -> None:
    urls: Dict[str, str] = dict(u.split(", ", 1) for u in metadata().get_all("Project-URL") or [])
    assert urls == {
        "Documentation": DOCS_URL,
        "Source": SOURCE_URL,
        "Changelog": f"{DOCS_URL}/en/latest/changelog.html",
        "Issues": f"{SOURCE_URL}/issues",
    }
    assert (ROOT / "docs" / "changelog.md").is_file()  # what the Changelog URL is built from
    assert metadata()["Author"] == "the commssl developers"
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert 'author = "the commssl developers"' in conf  # one name in both places


def test_classifiers() -> None:
    classifiers = set(metadata().get_all("Classifier") or [])
    versions = {f"Programming Language :: Python :: 3.{minor}" for minor in range(9, 15)}
    assert versions <= classifiers
    assert {
        "Framework :: AsyncIO", "Framework :: AnyIO", "Framework :: Trio",
        "Topic :: Security :: Cryptography", "Typing :: Typed",
        "Operating System :: POSIX :: Linux", "Operating System :: MacOS",
        "Operating System :: Microsoft :: Windows",
    } <= classifiers
    # the versions claimed match requires-python
    assert metadata()["Requires-Python"] == ">=3.9"


def test_docs_extra_is_enough_for_autodoc() -> None:
    """autodoc imports every module api.rst documents: the docs extra carries their packages."""
    docs = extra("docs")
    assert {"sphinx", "furo", "myst-parser"} <= set(docs)
    api = (ROOT / "docs" / "api.rst").read_text()
    for module, packages in (("commssl.anyio", extra("anyio")), ("commssl.httpx", extra("httpx"))):
        assert f"{module}." in api
        assert packages and set(packages) <= set(docs), (module, packages, docs)
    # ci/docs installs exactly this extra when the docs' packages are missing
    script = (ROOT / "ci" / "docs").read_text()
    assert "import sphinx, furo, myst_parser, anyio, httpx" in script
    assert 're.search(r"^docs = \\[(.*)\\]"' in script


def test_readthedocs_builds_as_ci_docs() -> None:
    rtd = (ROOT / ".readthedocs.yaml").read_text()
    lines = [line.split("#", 1)[0].rstrip() for line in rtd.splitlines()]
    text = "\n".join(line for line in lines if line.strip())
    assert re.search(r"^version: 2$", text, re.M)
    # Sphinx on docs/ with warnings as errors: ci/docs' `sphinx -W ... docs`
    assert re.search(r"^sphinx:\n  configuration: docs/conf.py\n  builder: html\n  fail_on_warning: true$",
                     text, re.M)
    # the package itself (autodoc imports it) with the docs extra, nothing else
    assert re.search(r"^python:\n  install:\n    - method: pip\n      path: \.\n"
                     r"      extra_requirements:\n        - docs$", text, re.M)
    assert "libssl-dev" in text  # the cffi module compiles against OpenSSL's headers
    assert "-W" in (ROOT / "ci" / "docs").read_text()


def test_help_names_the_documentation_url() -> None:
    assert commssl.__doc__ is not None and DOCS_URL in commssl.__doc__
    out = subprocess.run([sys.executable, "-c", "import commssl; help(commssl)"], capture_output=True,
                         text=True, timeout=60, env={"PAGER": "cat", "TERM": "dumb"}).stdout
    assert DOCS_URL in out and SOURCE_URL in out
