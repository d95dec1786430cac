"""The version of the installed distribution, read from its metadata (pyproject.toml holds the one copy)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("retrievals-rag")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
