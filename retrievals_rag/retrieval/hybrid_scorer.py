"""A label-free pair scorer: how one hybrid search (an embedder fused with BM25) ranks a passage for a query.

:class:`HybridPairScorer` holds a pool of passages. A ``(query, passage)`` pair scores the passage's
reciprocal-rank-fusion score when the query searches the pool with the embedder (cosine) and with BM25, each
ranking cut at ``candidates`` (:func:`~retrievals_rag.retrieval.fusion.fuse_rankings`: ``sum 1 / (rrf_k +
rank)``), or 0 when neither ranking has it. That is the fusion of the RAG engine's ``use_bm25=True``, read as a
teacher: on a corpus where BM25 and the embedder err differently (on SciFact, BM25 0.6617 and MiniLM 0.6451
nDCG@10, fused 0.6872) the fused order is better than either, with no labels and no model beyond the embedder.
``retrievals-rag adapt --teacher hybrid`` labels its generated pairs with it.

Example:
    >>> scorer = HybridPairScorer(encoder, ["cats purr", "dogs bark"])  # doctest: +SKIP
    >>> scorer.compute_score([("do cats purr", "cats purr"), ("do cats purr", "dogs bark")])  # doctest: +SKIP
    [0.0328, 0.0161]  # first in both rankings; second for the embedder, unmatched by BM25
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from retrievals_rag.retrieval.fusion import fuse_rankings
from retrievals_rag.retrieval.hybrid import check_count

__all__ = ["HybridPairScorer"]


class _Encoder(Protocol):
    def encode_queries(self, queries: list[str], *, show_progress_bar: bool | None = ...) -> Any: ...

    def encode_corpus(self, documents: list[str], *, show_progress_bar: bool | None = ...) -> Any: ...


class HybridPairScorer:
    """Scores ``(query, passage)`` pairs by the fused rank of the passage in a pool (see the module).

    Args:
        encoder: The embedder (``encode_queries`` / ``encode_corpus``, e.g. ``AutoModelForEmbedding``).
        passages: The pool; every passage that will be scored must be in it (repeats are kept once).
        passage_embeddings: ``encoder``'s vectors of ``passages``, in their order, when already computed; None
            encodes them.
        candidates: How many passages each ranking keeps per query (>= 1): a passage beyond it in both scores 0.
        rrf_k: The reciprocal-rank-fusion constant (>= 0).
        bm25_factory: Builds the BM25 index over the pool's texts (default: ``BM25Retriever`` with English
            stopwords); pass one with other stopwords or a stemmer for another language.

    Raises:
        ValueError: An empty pool, a pool without a word BM25 can index, embeddings of another length, or
            ``candidates`` below 1.
    """

    def __init__(
        self,
        encoder: _Encoder,
        passages: Sequence[str],
        *,
        passage_embeddings: Any | None = None,
        candidates: int = 200,
        rrf_k: int = 60,
        bm25_factory: Callable[[list[str]], Any] | None = None,
    ) -> None:
        import numpy as np

        from retrievals_rag.retrieval.bm25 import BM25Retriever

        check_count("candidates", candidates)
        if isinstance(passages, str):
            raise TypeError("passages must be a sequence of texts, not one string")
        texts = list(dict.fromkeys(passages))
        if not texts:
            raise ValueError("the pool is empty: HybridPairScorer needs passages to rank")
        if passage_embeddings is None:
            vectors = np.asarray(encoder.encode_corpus(texts, show_progress_bar=False), dtype=np.float32)
        else:
            given = np.asarray(passage_embeddings, dtype=np.float32)
            if len(given) != len(passages):
                raise ValueError(f"passage_embeddings has {len(given)} rows for {len(passages)} passages")
            first = {text: row for row, text in reversed(list(enumerate(passages)))}
            vectors = given[[first[text] for text in texts]]
        self._vectors = vectors
        self._encoder = encoder
        self._texts = texts
        self._row = {text: row for row, text in enumerate(texts)}
        self._bm25 = (bm25_factory or BM25Retriever)(texts)
        self.rrf_k = rrf_k
        self.candidates = candidates

    def __len__(self) -> int:
        return len(self._texts)

    def compute_score(
        self, pairs: Sequence[tuple[str, str]], *, show_progress_bar: bool | None = None
    ) -> list[float]:
        """The fused score of each pair's passage for its query, in input order (Python floats, higher is better).

        Raises:
            ValueError: A pair's passage is not in the pool.
        """
        missing = next((passage for _, passage in pairs if passage not in self._row), None)
        if missing is not None:
            raise ValueError(f"passage not in the scorer's pool: {missing[:80]!r}")
        queries = list(dict.fromkeys(query for query, _ in pairs))
        if not queries:
            return []
        fused = dict(zip(queries, self._fused(queries), strict=True))
        return [fused[query].get(self._row[passage], 0.0) for query, passage in pairs]

    def dense_scores(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """The embedder's cosine of each pair (the dense half of the fusion), in input order."""
        import torch

        from retrievals_rag.similarity import cos_scores

        queries = list(dict.fromkeys(query for query, _ in pairs))
        if not queries:
            return []
        asked = dict(zip(queries, torch.from_numpy(self._query_vectors(queries)), strict=True))
        passages = torch.from_numpy(self._vectors)
        return [
            float(cos_scores(asked[query][None], passages[self._row[passage]][None])[0, 0])
            for query, passage in pairs
        ]

    def _fused(self, queries: list[str]) -> list[dict[int, float]]:
        from retrievals_rag.retrieval.dense import dense_search

        found = []
        _, rows = dense_search(
            self._query_vectors(queries), self._vectors, top_k=self.candidates, score_function="cos"
        )
        lexical = self._bm25.search(queries, self.candidates)
        for rows_of_query, found_by_bm25 in zip(rows.tolist(), lexical, strict=True):
            rankings = [[str(row) for row in rows_of_query], [doc_id for doc_id, _ in found_by_bm25]]
            found.append({int(doc_id): score for doc_id, score in fuse_rankings(rankings, k=self.rrf_k)})
        return found

    def _query_vectors(self, queries: list[str]) -> Any:
        import numpy as np

        return np.asarray(self._encoder.encode_queries(queries, show_progress_bar=False), dtype=np.float32)
