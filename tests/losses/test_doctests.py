"""The runnable examples in the losses' docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "retrievals_rag.losses._grouped",
    "retrievals_rag.losses.cached",
    "retrievals_rag.losses.cosent",
    "retrievals_rag.losses.distillation",
    "retrievals_rag.losses.distributed",
    "retrievals_rag.losses.infonce",
    "retrievals_rag.losses.late_interaction",
    "retrievals_rag.losses.listwise",
    "retrievals_rag.losses.matryoshka",
    "retrievals_rag.losses.pointwise",
    "retrievals_rag.losses.protocol",
    "retrievals_rag.losses.registry",
    "retrievals_rag.losses.triplet",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name: str) -> None:
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.NORMALIZE_WHITESPACE)

    assert result.attempted > 0
    assert result.failed == 0
