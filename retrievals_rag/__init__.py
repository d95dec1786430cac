"""retrievals_rag: fine-tune retrieval models and drop them into RAG systems.

Public names are resolved lazily, so ``import retrievals_rag`` loads neither torch nor transformers::

    from retrievals_rag import AutoModelForEmbedding

    model = AutoModelForEmbedding.from_pretrained("path/to/model")
    vectors = model.encode_corpus(["a document", "another document"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrievals_rag._lazy import lazy_names
from retrievals_rag._version import __version__

# public name -> module that defines it
_LAZY_NAMES: dict[str, str] = {
    "AutoModelForEmbedding": "retrievals_rag.models.embedding",
    "AutoModelForRanking": "retrievals_rag.models.ranking",
    "LLMRanker": "retrievals_rag.models.llm_ranking",
    "ColBERT": "retrievals_rag.models.colbert",
    "default_embedding_model_path": "retrievals_rag.models.loading",
    "RetrievalEvaluator": "retrievals_rag.evaluation.evaluator",
    "load_beir": "retrievals_rag.evaluation.beir",
    "evaluate_run": "retrievals_rag.evaluation.metrics",
    "dense_search": "retrievals_rag.retrieval.dense",
    "BM25Retriever": "retrievals_rag.retrieval.bm25",
    "reciprocal_rank_fusion": "retrievals_rag.retrieval.fusion",
}

__all__ = [
    "AutoModelForEmbedding",
    "AutoModelForRanking",
    "BM25Retriever",
    "ColBERT",
    "LLMRanker",
    "RetrievalEvaluator",
    "__version__",
    "default_embedding_model_path",
    "dense_search",
    "evaluate_run",
    "load_beir",
    "reciprocal_rank_fusion",
]

if TYPE_CHECKING:
    from retrievals_rag.evaluation.beir import load_beir
    from retrievals_rag.evaluation.evaluator import RetrievalEvaluator
    from retrievals_rag.evaluation.metrics import evaluate_run
    from retrievals_rag.models.colbert import ColBERT
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.models.llm_ranking import LLMRanker
    from retrievals_rag.models.loading import default_embedding_model_path
    from retrievals_rag.models.ranking import AutoModelForRanking
    from retrievals_rag.retrieval.bm25 import BM25Retriever
    from retrievals_rag.retrieval.dense import dense_search
    from retrievals_rag.retrieval.fusion import reciprocal_rank_fusion


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
