"""Shared set-up of the app tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_main_module() -> Iterator[None]:
    """Streamlit's script runner installs the app as ``sys.modules["__main__"]`` and leaves it there. A process
    spawned later by another test (torch.distributed, Ray) would then run apps/app.py as its main module, outside
    Streamlit and without apps/ on its path; so the pytest process gets its own ``__main__`` back."""
    main = sys.modules["__main__"]
    try:
        yield
    finally:
        sys.modules["__main__"] = main
