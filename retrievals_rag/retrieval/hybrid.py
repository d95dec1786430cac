"""One hybrid search: dense retrieval, optionally fused with BM25 by reciprocal rank fusion, optionally reranked.

:class:`HybridSearch` is the one orchestration of these steps; the LangChain retriever
(:class:`retrievals_rag.integrations.langchain.LangchainRetriever`, sync and async) and the RAG engine's
:class:`retrievals_rag.rag.retrieve.Retriever` are adapters over it that only say where the candidates come from
(an exact dense index, a vector store, a Chroma collection) and how results are returned.

The knobs, with the one name each has everywhere:

- ``top_k``: results returned;
- ``candidates``: when fusing or reranking, how many each first-stage retriever returns (at least ``top_k``): they
  are fused, and the best ``candidates`` of the first stage are given to the reranker;
- ``rrf_k``: the reciprocal-rank-fusion constant (60 in Cormack et al., 2009);
- ``rerank_weight``: the reranker's share of the final order, in [0, 1]: 1 (the default) orders by the reranker
  alone; below 1, by ``rerank_weight * z(rerank) + (1 - rerank_weight) * z(first stage)``, both standardised over
  the query's candidates (:func:`~retrievals_rag.retrieval.fusion.interpolate_scores`). A reranker fine-tuned on
  little data often corrects the first stage better than it replaces it: on SciFact, a cross-encoder distilled
  from MiniLM reached nDCG@10 0.6541 alone and 0.7112 at 0.5 (the README's cross-encoder recipe).

A first stage is a function ``(query, n) -> [Candidate, ...]`` (best first); the reranker is a function
``(query, texts) -> scores`` in input order (higher is more relevant), with an optional ``rerank_threshold``.
Every :class:`Hit` keeps each score under its own name, as Python floats: the dense score and rank, the BM25
score and rank, the retrieval score (the dense score, or the fused score when fusing) and the rerank score; the
caller's objects are carried in ``Candidate.item`` and never copied or changed here.

Example:
    >>> corpus = {"a": "cats purr", "b": "dogs bark", "c": "cats and dogs"}
    >>> def dense(query, n):
    ...     return [Candidate(doc_id, text, 1.0 / (1 + position)) for position, (doc_id, text) in enumerate(corpus.items())][:n]
    >>> search = HybridSearch(dense, top_k=2)
    >>> [(hit.id, hit.retrieval_score, hit.dense_rank) for hit in search.search("cats")]
    [('a', 1.0, 1), ('b', 0.5, 2)]
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from retrievals_rag.retrieval.fusion import (
    check_interpolation_weight,
    fuse_rankings,
    interpolate_scores,
    rank_scores,
)

__all__ = ["Candidate", "FirstStage", "Hit", "HybridSearch", "RerankScorer"]


@dataclass(frozen=True)
class Candidate:
    """A document found by one first-stage retriever.

    Attributes:
        id: The document's id (unique within one retriever's answer).
        text: The text a reranker reads.
        score: The retriever's score (higher is better, or as the retriever defines it).
        item: The caller's object for this document (a LangChain ``Document``, a stored chunk), carried as is.
    """

    id: str
    text: str
    score: float
    item: Any = None


FirstStage = Callable[[str, int], Sequence[Candidate]]
"""``(query, n) -> candidates``: at most ``n`` documents, best first."""
RerankScorer = Callable[[str, Sequence[str]], Sequence[float]]
"""``(query, texts) -> scores``: one score per text, in input order, higher is more relevant."""


@dataclass(frozen=True)
class Hit:
    """A result of :class:`HybridSearch`.

    Attributes:
        id: The document's id.
        text: Its text.
        item: The caller's object (from the :class:`Candidate` that found it first: dense before BM25).
        rank: Its 1-based rank in the results.
        retrieval_score: The first stage's score: the dense score, or the reciprocal-rank-fusion score when BM25
            is fused (a sum of ``1 / (rrf_k + rank)``: small numbers, only their order means something).
        dense_score: The dense retriever's score; None when it did not return the document.
        dense_rank: Its 1-based rank in the dense retriever's answer; None likewise.
        bm25_score: BM25's score; None without fusion or when BM25 did not return the document.
        bm25_rank: Its 1-based rank in BM25's answer; None likewise.
        retrieval_rank: Its 1-based rank after the first stage (fused when fusing), before any reranking.
        rerank_score: The reranker's score; None without a reranker.
        fused: Whether BM25 was fused (then ``retrieval_score`` is the RRF score, not a similarity).
        interpolated_score: With a ``rerank_weight`` below 1, the standardised mix of the rerank and the retrieval
            score that set the order; else None.
    """

    id: str
    text: str
    item: Any
    rank: int
    retrieval_score: float
    dense_score: float | None
    dense_rank: int | None
    bm25_score: float | None = None
    bm25_rank: int | None = None
    retrieval_rank: int = 0
    rerank_score: float | None = None
    fused: bool = False
    interpolated_score: float | None = None

    @property
    def score(self) -> float:
        """The score that set the order: the interpolated score when the reranker's share was below 1, the
        rerank score when reranked, else the retrieval score."""
        if self.interpolated_score is not None:
            return self.interpolated_score
        return self.retrieval_score if self.rerank_score is None else self.rerank_score


class HybridSearch:
    """Dense search, optional BM25 fusion (RRF) and optional reranking, with one set of knob names.

    Args:
        dense: The dense first stage (see :data:`FirstStage`).
        lexical: A lexical first stage (BM25) to fuse with the dense one by RRF; None: dense only.
        reranker: Scores the first stage's best ``candidates`` (see :data:`RerankScorer`); None: no reranking.
        top_k: Results returned by default (>= 1).
        candidates: Documents each first-stage retriever returns when fusing or reranking, and the number given
            to the reranker (>= 1; at least ``top_k`` are taken).
        rrf_k: The reciprocal-rank-fusion constant (>= 0).
        rerank_threshold: Drop reranked documents whose rerank score is below it; None: keep all.
        rerank_weight: The reranker's share of the order, in [0, 1] (see the module's knobs); 1: the reranker
            alone.

    Raises:
        ValueError: On ``top_k`` or ``candidates`` below 1, ``rrf_k`` below 0, or ``rerank_weight`` outside
            [0, 1].
    """

    def __init__(
        self,
        dense: FirstStage,
        *,
        lexical: FirstStage | None = None,
        reranker: RerankScorer | None = None,
        top_k: int = 5,
        candidates: int = 20,
        rrf_k: int = 60,
        rerank_threshold: float | None = None,
        rerank_weight: float = 1.0,
    ) -> None:
        check_count("top_k", top_k)
        try:
            check_interpolation_weight(rerank_weight)
        except ValueError:
            raise ValueError(f"rerank_weight must be a number in [0, 1], got {rerank_weight!r}") from None
        check_count("candidates", candidates)
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
            raise ValueError(f"rrf_k must be an integer >= 0, got {rrf_k!r}")
        self.dense = dense
        self.lexical = lexical
        self.reranker = reranker
        self.top_k = top_k
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.rerank_threshold = rerank_threshold
        self.rerank_weight = float(rerank_weight)

    def first_stage_size(self, top_k: int | None = None) -> int:
        """How many documents each first-stage retriever returns for ``top_k`` results (None: the default).

        ``top_k`` alone for dense search; ``max(top_k, candidates)`` when fusing or reranking.
        """
        k = self._resolve_top_k(top_k)
        return k if self.lexical is None and self.reranker is None else max(k, self.candidates)

    def search(self, query: str, top_k: int | None = None) -> list[Hit]:
        """The best documents for ``query``, best first (at most ``top_k``; None: the default).

        Raises:
            ValueError: On ``top_k`` below 1.
        """
        dense = list(self.dense(query, self.first_stage_size(top_k)))
        return self.complete(query, dense, top_k)

    def complete(self, query: str, dense: Sequence[Candidate], top_k: int | None = None) -> list[Hit]:
        """The rest of :meth:`search` once the dense candidates are known (e.g. from an async vector store).

        Args:
            query: The query.
            dense: The dense first stage's answer for :meth:`first_stage_size` documents, best first.
            top_k: Results returned; None: the default.

        Returns:
            At most ``top_k`` hits, best first, ranked from 1.
        """
        k = self._resolve_top_k(top_k)
        size = self.first_stage_size(k)
        dense = list(dense)[:size]
        if self.lexical is None:
            hits = [_dense_hit(candidate, rank) for rank, candidate in enumerate(dense, start=1)]
        else:
            hits = self._fuse(dense, list(self.lexical(query, size))[:size])
        if self.reranker is None:
            return hits[:k]
        return self._rerank(query, hits[:size], k)

    def _fuse(self, dense: list[Candidate], lexical: list[Candidate]) -> list[Hit]:
        dense_by_id = {candidate.id: (rank, candidate) for rank, candidate in enumerate(dense, start=1)}
        lexical_by_id = {candidate.id: (rank, candidate) for rank, candidate in enumerate(lexical, start=1)}
        fused = fuse_rankings([list(dense_by_id), list(lexical_by_id)], k=self.rrf_k)
        hits = []
        for rank, (doc_id, fused_score) in enumerate(fused, start=1):
            dense_rank, dense_candidate = dense_by_id.get(doc_id, (None, None))
            bm25_rank, bm25_candidate = lexical_by_id.get(doc_id, (None, None))
            found = dense_candidate if dense_candidate is not None else bm25_candidate
            assert found is not None  # every fused id comes from one of the two rankings
            hits.append(
                Hit(
                    id=doc_id,
                    text=found.text,
                    item=found.item,
                    rank=rank,
                    retrieval_score=float(fused_score),
                    dense_score=None if dense_candidate is None else float(dense_candidate.score),
                    dense_rank=dense_rank,
                    bm25_score=None if bm25_candidate is None else float(bm25_candidate.score),
                    bm25_rank=bm25_rank,
                    retrieval_rank=rank,
                    fused=True,
                )
            )
        return hits

    def _rerank(self, query: str, hits: list[Hit], top_k: int) -> list[Hit]:
        if not hits:
            return []
        assert self.reranker is not None
        scores = [float(score) for score in self.reranker(query, [hit.text for hit in hits])]
        if len(scores) != len(hits):
            raise ValueError(f"the reranker returned {len(scores)} scores for {len(hits)} documents")
        mixed = (
            interpolate_scores([hit.retrieval_score for hit in hits], scores, self.rerank_weight)
            if self.rerank_weight < 1.0
            else None
        )
        kept = rank_scores(scores, top_n=top_k, score_threshold=self.rerank_threshold, order_by=mixed)
        return [
            replace(
                hits[index],
                rank=rank,
                rerank_score=scores[index],
                interpolated_score=None if mixed is None else mixed[index],
            )
            for rank, (index, _) in enumerate(kept, start=1)
        ]

    def _resolve_top_k(self, top_k: int | None) -> int:
        k = self.top_k if top_k is None else top_k
        check_count("top_k", k)
        return int(k)


def _dense_hit(candidate: Candidate, rank: int) -> Hit:
    score = float(candidate.score)
    return Hit(
        id=candidate.id,
        text=candidate.text,
        item=candidate.item,
        rank=rank,
        retrieval_score=score,
        dense_score=score,
        dense_rank=rank,
        retrieval_rank=rank,
    )


def check_count(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= 1 (numpy integers accepted, bools not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
