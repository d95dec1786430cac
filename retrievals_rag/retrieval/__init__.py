"""Retrieval: exact dense search, a faiss index, BM25, reciprocal rank fusion and one hybrid search over them.

Every retriever answers in the same run format (query id -> document id -> score, Python floats), so runs
from different retrievers fuse with :func:`reciprocal_rank_fusion` and evaluate with
:func:`retrievals_rag.evaluation.metrics.evaluate_run`.

Names are resolved lazily: importing this package loads neither torch, faiss nor bm25s::

    from retrievals_rag.retrieval import BM25Retriever, DenseIndex, reciprocal_rank_fusion

    bm25_run = BM25Retriever(texts, ids=doc_ids).to_run(query_ids, queries, top_k=100)
    index = DenseIndex(score_function="cos")
    index.add(doc_ids, document_embeddings)
    dense_run = index.to_run(query_ids, query_embeddings, top_k=100)
    fused = reciprocal_rank_fusion([bm25_run, dense_run], top_k=10)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrievals_rag._lazy import lazy_names

# public name -> module that defines it
_LAZY_NAMES: dict[str, str] = {
    "dense_search": "retrievals_rag.retrieval.dense",
    "DenseIndex": "retrievals_rag.retrieval.dense",
    "FaissIndex": "retrievals_rag.retrieval.faiss_index",
    "BM25Retriever": "retrievals_rag.retrieval.bm25",
    "reciprocal_rank_fusion": "retrievals_rag.retrieval.fusion",
    "fuse_rankings": "retrievals_rag.retrieval.fusion",
    "interpolate_runs": "retrievals_rag.retrieval.fusion",
    "Candidate": "retrievals_rag.retrieval.hybrid",
    "Hit": "retrievals_rag.retrieval.hybrid",
    "HybridSearch": "retrievals_rag.retrieval.hybrid",
    "HybridPairScorer": "retrievals_rag.retrieval.hybrid_scorer",
}

__all__ = [
    "BM25Retriever",
    "Candidate",
    "DenseIndex",
    "FaissIndex",
    "Hit",
    "HybridPairScorer",
    "HybridSearch",
    "dense_search",
    "fuse_rankings",
    "interpolate_runs",
    "reciprocal_rank_fusion",
]

if TYPE_CHECKING:
    from retrievals_rag.retrieval.bm25 import BM25Retriever
    from retrievals_rag.retrieval.dense import DenseIndex, dense_search
    from retrievals_rag.retrieval.faiss_index import FaissIndex
    from retrievals_rag.retrieval.fusion import fuse_rankings, interpolate_runs, reciprocal_rank_fusion
    from retrievals_rag.retrieval.hybrid import Candidate, Hit, HybridSearch
    from retrievals_rag.retrieval.hybrid_scorer import HybridPairScorer


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
