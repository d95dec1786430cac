"""Lazy public names for package ``__init__`` modules: one copy of the mechanism.

A package lists ``{public name: defining module}`` and gets ``__getattr__`` / ``__dir__`` that import the
defining module on first access, so importing the package itself loads nothing heavy (no torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, names: Mapping[str, str], namespace: dict[str, Any], public: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, resolving ``names`` into ``namespace`` on first use.

    Example (in a package's ``__init__.py``)::

        __getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
    """

    def __getattr__(name: str) -> Any:
        module_name = names.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
