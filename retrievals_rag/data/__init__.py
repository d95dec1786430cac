"""Training data: record formats and their validation, datasets, collators, converters, generated questions.

This is the only place that tokenizes for training. Names resolve lazily, so importing it loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrievals_rag._lazy import lazy_names

_LAZY_NAMES: dict[str, str] = {
    "RetrievalTrainDataset": "retrievals_rag.data.datasets",
    "EmbeddingCollator": "retrievals_rag.data.collators",
    "load_records": "retrievals_rag.data.records",
    "DataFormatError": "retrievals_rag.data.records",
    "apply_instruction": "retrievals_rag.data.tokenization",
    "ChatQuestionGenerator": "retrievals_rag.data.generation",
    "CroppingGenerator": "retrievals_rag.data.passage_queries",
    "HeadingGenerator": "retrievals_rag.data.passage_queries",
    "QuestionFilter": "retrievals_rag.data.question_filter",
    "generate_questions": "retrievals_rag.data.generation",
}

__all__ = [
    "ChatQuestionGenerator",
    "CroppingGenerator",
    "DataFormatError",
    "EmbeddingCollator",
    "HeadingGenerator",
    "QuestionFilter",
    "RetrievalTrainDataset",
    "apply_instruction",
    "generate_questions",
    "load_records",
]

if TYPE_CHECKING:
    from retrievals_rag.data.collators import EmbeddingCollator
    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.data.generation import ChatQuestionGenerator, generate_questions
    from retrievals_rag.data.passage_queries import CroppingGenerator, HeadingGenerator
    from retrievals_rag.data.question_filter import QuestionFilter
    from retrievals_rag.data.records import DataFormatError, load_records
    from retrievals_rag.data.tokenization import apply_instruction


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
