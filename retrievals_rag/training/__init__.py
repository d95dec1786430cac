"""Training: argument dataclasses (which also drive the command line), thin ``transformers.Trainer`` subclasses,
and label-free adaptation (:mod:`~retrievals_rag.training.adapt`).

Names resolve lazily, so importing this package loads neither torch nor transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrievals_rag._lazy import lazy_names

_LAZY_NAMES: dict[str, str] = {
    "AdaptProgress": "retrievals_rag.training.adapt_settings",
    "AdaptReport": "retrievals_rag.training.adapt_settings",
    "AdaptSettings": "retrievals_rag.training.adapt_settings",
    "adapt_embedder": "retrievals_rag.training.adapt",
    "EmbeddingModelArguments": "retrievals_rag.training.arguments",
    "RetrievalDataArguments": "retrievals_rag.training.arguments",
    "RetrievalTrainingArguments": "retrievals_rag.training.arguments",
    "RetrievalTrainer": "retrievals_rag.training.trainer",
    "RerankerModelArguments": "retrievals_rag.training.arguments",
    "RerankerDataArguments": "retrievals_rag.training.arguments",
    "RerankerTrainingArguments": "retrievals_rag.training.arguments",
    "RerankTrainer": "retrievals_rag.training.rerank_trainer",
    "train_embedding": "retrievals_rag.training.run",
    "train_reranker": "retrievals_rag.training.run",
}

__all__ = [
    "AdaptProgress",
    "AdaptReport",
    "AdaptSettings",
    "EmbeddingModelArguments",
    "RerankTrainer",
    "RerankerDataArguments",
    "RerankerModelArguments",
    "RerankerTrainingArguments",
    "RetrievalDataArguments",
    "RetrievalTrainer",
    "RetrievalTrainingArguments",
    "adapt_embedder",
    "train_embedding",
    "train_reranker",
]

if TYPE_CHECKING:
    from retrievals_rag.training.adapt import adapt_embedder
    from retrievals_rag.training.adapt_settings import AdaptProgress, AdaptReport, AdaptSettings
    from retrievals_rag.training.arguments import (
        EmbeddingModelArguments,
        RerankerDataArguments,
        RerankerModelArguments,
        RerankerTrainingArguments,
        RetrievalDataArguments,
        RetrievalTrainingArguments,
    )
    from retrievals_rag.training.rerank_trainer import RerankTrainer
    from retrievals_rag.training.run import train_embedding, train_reranker
    from retrievals_rag.training.trainer import RetrievalTrainer


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
