"""Sphinx configuration of commssl's documentation (``bash ci/docs`` builds it)."""

from __future__ import annotations

import datetime

import commssl

project = "commssl"
author = "the commssl developers"
copyright = f"2026-{datetime.date.today().year}, {author}"
release = commssl.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # links to headings: page.md#a-heading

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# io.BufferedIOBase's docstrings describe non-blocking raw streams: not what SocketStream does
autodoc_inherit_docstrings = False

html_theme = "furo"
html_title = f"commssl {release}"
pygments_style = "default"
