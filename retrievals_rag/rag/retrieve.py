"""Retrieval over a collection: dense search, optional BM25 fused by RRF, optional reranking.

:class:`Retriever` is the RAG engine's adapter over :class:`retrievals_rag.retrieval.hybrid.HybridSearch`, the
one orchestration of these steps (the LangChain retriever uses it too), with the same knob names: ``top_k``,
``candidates``, ``rrf_k``. Its dense stage embeds the query with the embedder's query instruction and asks the
store for the nearest chunks (cosine). With ``use_bm25=True`` a BM25 index over the collection's chunks, built on
first use and rebuilt when the collection's revision changes, ranks them too, and the two rankings are fused by
reciprocal rank fusion. With a ``reranker`` (any object with ``rerank(query, documents, top_k=None)`` returning
items with ``index`` and ``score``: ``AutoModelForRanking``, ``LLMRanker``, ``ColBERT``), the best ``candidates``
are reordered by it.

Every :class:`RetrievedChunk` keeps each score under its own name, as Python floats: ``retrieval_score`` (the
cosine similarity, or the RRF score when BM25 is fused), ``dense_score`` (the cosine similarity), ``rerank_score``
(None without a reranker); ``score`` is the one that set the order. For people, :attr:`RetrievedChunk.relevance`
is on one documented scale, named by :attr:`RetrievedChunk.relevance_scale` (see :data:`RelevanceScale`), and
:meth:`RetrievedChunk.describe` renders it with the ranks (never the tiny fused numbers).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from retrievals_rag.rag.store import StoredChunk, VectorStore
from retrievals_rag.retrieval.hybrid import Candidate, Hit, HybridSearch, check_count

if TYPE_CHECKING:
    from retrievals_rag.retrieval.bm25 import BM25Retriever

__all__ = ["QueryEncoder", "RelevanceScale", "Reranker", "RetrievedChunk", "Retriever"]

RelevanceScale = Literal["cosine similarity", "reranker probability", "reranker score"]
"""The scale of :attr:`RetrievedChunk.relevance`:

- ``"cosine similarity"``: the embedder's cosine similarity between the question and the chunk, in [-1, 1]
  (without a reranker; with BM25 fused too, for the chunks dense search found);
- ``"reranker probability"``: a cross-encoder's or LLM ranker's sigmoid of its score, in (0, 1): the
  probability it gives that the chunk answers the question;
- ``"reranker score"``: another reranker's own score (ColBERT's MaxSim, a sum over the query's tokens; an LLM
  ranker's query likelihood, a mean log-probability per token, at most 0), which has no fixed range: compare it
  only between chunks of one question.
"""


@runtime_checkable
class Reranker(Protocol):
    """What the retriever needs of a reranker: ``AutoModelForRanking``, ``LLMRanker`` and ``ColBERT`` fit.

    ``rerank`` returns the documents best first, as items with ``index`` (position in ``documents``) and
    ``score`` (higher is more relevant).
    """

    def rerank(self, query: str, documents: list[str], top_k: int | None = None) -> Sequence[Any]: ...


@runtime_checkable
class QueryEncoder(Protocol):
    """An embedder that embeds queries with its own query instruction (``AutoModelForEmbedding`` fits)."""

    def encode_queries(self, queries: Sequence[str]) -> Any: ...


@dataclass(frozen=True)
class RetrievedChunk:
    """A chunk found for a query.

    Attributes:
        text: The chunk's text.
        source: Its document's source (file name or path).
        page: Its page number, None where the format has none.
        chunk_id: Its id in the store.
        score: The score that ordered the results: ``rerank_score`` when reranked, else ``retrieval_score``.
        retrieval_score: Cosine similarity to the query; the reciprocal-rank-fusion score when BM25 was fused.
        rerank_score: The reranker's score; None without a reranker.
        metadata: The chunk's stored metadata (a copy).
        dense_score: Cosine similarity to the query; None when only BM25 found the chunk.
        relevance: The relevance shown to people, on :attr:`relevance_scale`; None when there is none (a chunk
            only BM25 found, without a reranker).
        relevance_scale: The scale of ``relevance`` (:data:`RelevanceScale`).
        rank: Its 1-based rank in the results (0 when not made by a :class:`Retriever`).
        dense_rank: Its rank in dense search; None when dense search did not return it.
        bm25_rank: Its rank in BM25's answer; None without BM25 or when BM25 did not return it.
        fused: Whether BM25 was fused (``retrieval_score`` is then an RRF score).
    """

    text: str
    source: str
    page: int | None
    chunk_id: str
    score: float
    retrieval_score: float
    rerank_score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    dense_score: float | None = None
    relevance: float | None = None
    relevance_scale: RelevanceScale = "cosine similarity"
    rank: int = 0
    dense_rank: int | None = None
    bm25_rank: int | None = None
    fused: bool = False

    def describe(self) -> str:
        """The relevance for people: its scale and value, and the ranks when rankings were fused or reranked.

        Example:
            >>> RetrievedChunk("t", "a.txt", None, "c", 0.61, 0.61, dense_score=0.61, relevance=0.61).describe()
            'cosine similarity 0.61'
            >>> RetrievedChunk(
            ...     "t", "a.txt", None, "c", 0.03, 0.03, relevance=None, rank=1, bm25_rank=1, fused=True
            ... ).describe()
            'rank 1 (BM25 #1, not found by dense search)'
        """
        parts = []
        if self.relevance is not None:
            parts.append(f"{self.relevance_scale} {self.relevance:.2f}")
        if self.fused:
            dense = "not found by dense search" if self.dense_rank is None else f"dense #{self.dense_rank}"
            bm25 = "not found by BM25" if self.bm25_rank is None else f"BM25 #{self.bm25_rank}"
            order = f"{bm25}, {dense}" if self.dense_rank is None else f"{dense}, {bm25}"
            parts.append(f"rank {self.rank} ({order})")
        return " · ".join(parts) if parts else f"rank {self.rank}"


class Retriever:
    """Find the chunks of a collection that best answer a query (an adapter over ``HybridSearch``).

    Args:
        store: The store holding the collection.
        collection: The collection's name.
        embedder: Embeds queries (``encode_queries``); None: the store's embedding function. It must be the
            embedder the collection was built with.
        top_k: Chunks returned.
        use_bm25: Fuse BM25 over the collection's chunks with the dense ranking (RRF).
        reranker: Reorders the best ``candidates`` (see :class:`Reranker`); None: no reranking.
        candidates: When fusing or reranking, the chunks each first-stage retriever returns, and the number
            given to the reranker (at least ``top_k`` are).
        rrf_k: The reciprocal-rank-fusion constant.
        rerank_weight: The reranker's share of the order, in [0, 1]: 1 orders by the reranker alone; below 1, by
            its standardised score mixed with the retrieval score's (see :mod:`retrievals_rag.retrieval.hybrid`).
        rerank_candidates: The former name of ``candidates`` (deprecated; give one or the other).

    Raises:
        ValueError: On ``top_k`` or ``candidates`` below 1, or both ``candidates`` and ``rerank_candidates``.
        TypeError: When ``reranker`` has no ``rerank`` method or ``embedder`` no ``encode_queries``.
    """

    def __init__(
        self,
        store: VectorStore,
        collection: str,
        embedder: QueryEncoder | None = None,
        *,
        top_k: int = 5,
        use_bm25: bool = False,
        reranker: Reranker | None = None,
        candidates: int | None = None,
        rrf_k: int = 60,
        rerank_candidates: int | None = None,
        rerank_weight: float = 1.0,
    ) -> None:
        if rerank_candidates is not None:
            if candidates is not None:
                raise ValueError("give candidates (rerank_candidates is its former name), not both")
            warnings.warn(
                "Retriever(rerank_candidates=...) is now candidates=...", DeprecationWarning, stacklevel=2
            )
            candidates = rerank_candidates
        if reranker is not None and not callable(getattr(reranker, "rerank", None)):
            raise TypeError(
                f"reranker must have a rerank(query, documents, top_k) method, got {type(reranker).__name__}"
            )
        if embedder is not None and not callable(getattr(embedder, "encode_queries", None)):
            raise TypeError(f"embedder must have an encode_queries method, got {type(embedder).__name__}")
        self.store = store
        self.collection = collection
        self.embedder = embedder
        self.use_bm25 = use_bm25
        self.reranker = reranker
        self._search = HybridSearch(
            self._dense,
            lexical=self._lexical if use_bm25 else None,
            reranker=None if reranker is None else self._rerank_scores,
            top_k=top_k,
            candidates=20 if candidates is None else candidates,
            rrf_k=rrf_k,
            rerank_weight=rerank_weight,
        )
        self._relevance_scale: RelevanceScale = "cosine similarity"
        if reranker is not None:
            # a ranker of ours says whether its score is a logit (whose sigmoid is a probability)
            probability = getattr(reranker, "scores_are_logits", False) is True
            self._relevance_scale = "reranker probability" if probability else "reranker score"
        self._bm25_lock = threading.Lock()
        self._bm25_state: tuple[tuple[str, int], BM25Retriever | None, dict[str, StoredChunk]] | None = None

    @property
    def top_k(self) -> int:
        """Chunks returned by default."""
        return self._search.top_k

    @property
    def candidates(self) -> int:
        """Chunks each first-stage retriever returns when fusing or reranking, and given to the reranker."""
        return self._search.candidates

    @property
    def rerank_candidates(self) -> int:
        """The former name of :attr:`candidates`."""
        return self._search.candidates

    @property
    def rerank_weight(self) -> float:
        """The reranker's share of the order (1: the reranker alone)."""
        return self._search.rerank_weight

    @property
    def rrf_k(self) -> int:
        """The reciprocal-rank-fusion constant."""
        return self._search.rrf_k

    @property
    def relevance_scale(self) -> RelevanceScale:
        """The scale of the results' ``relevance`` (:data:`RelevanceScale`)."""
        return self._relevance_scale

    def _embed(self, query: str) -> Any:
        if self.embedder is None:
            return self.store.embed_query(query)
        return self.embedder.encode_queries([query])[0]

    def _dense(self, query: str, n_results: int) -> list[Candidate]:
        found = self.store.query(self.collection, self._embed(query), n_results)
        return [Candidate(chunk.id, chunk.text, 1.0 - float(chunk.distance or 0.0), chunk) for chunk in found]

    def _lexical(self, query: str, n_results: int) -> list[Candidate]:
        index, chunks = self._bm25()
        if index is None:
            return []
        return [
            Candidate(chunk_id, chunks[chunk_id].text, score, chunks[chunk_id])
            for chunk_id, score in index.search([query], top_k=n_results)[0]
            if chunk_id in chunks
        ]

    def _rerank_scores(self, query: str, texts: Sequence[str]) -> list[float]:
        assert self.reranker is not None
        results = list(self.reranker.rerank(query, list(texts), top_k=None))
        scores: list[float | None] = [None] * len(texts)
        for result in results:
            index = int(result.index)
            if not 0 <= index < len(texts):
                raise ValueError(f"the reranker returned index {index} for {len(texts)} documents")
            scores[index] = float(result.score)
        if any(score is None for score in scores):
            raise ValueError(f"the reranker scored {len(results)} of {len(texts)} documents; expected all")
        return [float(score) for score in scores if score is not None]

    def _bm25(self) -> tuple[BM25Retriever | None, dict[str, StoredChunk]]:
        """The BM25 index of the collection, rebuilt when its revision changed since it was built."""
        from retrievals_rag.retrieval.bm25 import BM25Retriever

        revision = self.store.revision(self.collection)
        with self._bm25_lock:
            if self._bm25_state is None or self._bm25_state[0] != revision:
                chunks = {chunk.id: chunk for chunk in self.store.all_chunks(self.collection)}
                try:
                    index: BM25Retriever | None = BM25Retriever(
                        [chunk.text for chunk in chunks.values()], ids=list(chunks)
                    )
                except ValueError:  # empty collection, or no indexable word in it
                    index = None
                self._bm25_state = (revision, index, chunks)
            return self._bm25_state[1], self._bm25_state[2]

    def retrieve(self, query: str, *, top_k: int | None = None) -> list[RetrievedChunk]:
        """The best chunks for ``query``, best first.

        Args:
            query: The question.
            top_k: Chunks returned; None: the retriever's ``top_k``.

        Returns:
            At most ``top_k`` chunks (fewer when the collection is smaller), scores as Python floats.

        Raises:
            ValueError: On an empty query or ``top_k`` below 1.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError("the query is empty")
        if top_k is not None:
            check_count("top_k", top_k)
        return [self._to_retrieved(hit) for hit in self._search.search(query, top_k)]

    def _to_retrieved(self, hit: Hit) -> RetrievedChunk:
        chunk: StoredChunk = hit.item
        page = chunk.metadata.get("page")
        if hit.rerank_score is None:
            relevance = hit.dense_score
        elif self._relevance_scale == "reranker probability":
            relevance = _sigmoid(hit.rerank_score)
        else:
            relevance = hit.rerank_score
        return RetrievedChunk(
            text=chunk.text,
            source=str(chunk.metadata.get("source", "")),
            page=page if isinstance(page, int) else None,
            chunk_id=chunk.id,
            score=hit.score,
            retrieval_score=hit.retrieval_score,
            rerank_score=hit.rerank_score,
            metadata=dict(chunk.metadata),
            dense_score=hit.dense_score,
            relevance=relevance,
            relevance_scale=self._relevance_scale,
            rank=hit.rank,
            dense_rank=hit.dense_rank,
            bm25_rank=hit.bm25_rank,
            fused=hit.fused,
        )


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exponential = math.exp(value)
    return exponential / (1.0 + exponential)
