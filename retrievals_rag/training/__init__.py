"""Training: argument dataclasses (which also drive the command line) and thin ``transformers.Trainer`` subclasses.

Names resolve lazily, so importing this package loads neither torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY_NAMES: dict[str, str] = {
    "EmbeddingModelArguments": "retrievals_rag.training.arguments",
    "RetrievalDataArguments": "retrievals_rag.training.arguments",
    "RetrievalTrainingArguments": "retrievals_rag.training.arguments",
    "RetrievalTrainer": "retrievals_rag.training.trainer",
}

__all__ = [
    "EmbeddingModelArguments",
    "RetrievalDataArguments",
    "RetrievalTrainer",
    "RetrievalTrainingArguments",
]

if TYPE_CHECKING:
    from retrievals_rag.training.arguments import (
        EmbeddingModelArguments,
        RetrievalDataArguments,
        RetrievalTrainingArguments,
    )
    from retrievals_rag.training.trainer import RetrievalTrainer


def __getattr__(name: str) -> Any:
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'retrievals_rag.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
