"""The error for a module of an optional extra imported without the extra."""

from __future__ import annotations


def missing_extra(module: str, extra: str, exc: ImportError) -> ModuleNotFoundError:
    """A ``ModuleNotFoundError`` that says which package ``module`` lacks and the
    ``pip install`` that brings it; raise it ``from exc``."""
    missing = exc.name or "a dependency"
    return ModuleNotFoundError(
        f"{module} needs {missing!r}, which is not installed: pip install 'commssl[{extra}]'",
        name=exc.name)
