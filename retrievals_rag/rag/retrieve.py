"""Retrieval over a collection: dense search, optional BM25 fused by RRF, optional reranking.

:class:`Retriever` embeds the query with the embedder's query instruction and asks the store for the nearest
chunks (cosine). With ``use_bm25=True`` a BM25 index over the collection's chunks, built on first use and rebuilt
when the collection's revision changes, ranks them too, and the two rankings are fused by reciprocal rank fusion
(:func:`retrievals_rag.retrieval.fusion.fuse_rankings`). With a ``reranker`` (any object with
``rerank(query, documents, top_k=None)`` returning items with ``index`` and ``score``: ``AutoModelForRanking``,
``LLMRanker``, ``ColBERT``), the best ``rerank_candidates`` are reordered by it.

Every :class:`RetrievedChunk` keeps both scores, as Python floats: ``retrieval_score`` (the cosine similarity, or
the RRF score when BM25 is fused) and ``rerank_score`` (None without a reranker); ``score`` is the one that set
the order.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from retrievals_rag.rag.store import StoredChunk, VectorStore

if TYPE_CHECKING:
    from retrievals_rag.retrieval.bm25 import BM25Retriever

__all__ = ["QueryEncoder", "Reranker", "RetrievedChunk", "Retriever"]


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
    """

    text: str
    source: str
    page: int | None
    chunk_id: str
    score: float
    retrieval_score: float
    rerank_score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class Retriever:
    """Find the chunks of a collection that best answer a query.

    Args:
        store: The store holding the collection.
        collection: The collection's name.
        embedder: Embeds queries (``encode_queries``); None: the store's embedding function. It must be the
            embedder the collection was built with.
        top_k: Chunks returned.
        use_bm25: Fuse BM25 over the collection's chunks with the dense ranking (RRF).
        reranker: Reorders the best ``rerank_candidates`` (see :class:`Reranker`); None: no reranking.
        rerank_candidates: Candidates given to the reranker (at least ``top_k`` are).
        rrf_k: The reciprocal-rank-fusion constant.

    Raises:
        ValueError: On ``top_k`` or ``rerank_candidates`` below 1.
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
        rerank_candidates: int = 20,
        rrf_k: int = 60,
    ) -> None:
        _check_positive("top_k", top_k)
        _check_positive("rerank_candidates", rerank_candidates)
        if reranker is not None and not callable(getattr(reranker, "rerank", None)):
            raise TypeError(
                f"reranker must have a rerank(query, documents, top_k) method, got {type(reranker).__name__}"
            )
        if embedder is not None and not callable(getattr(embedder, "encode_queries", None)):
            raise TypeError(f"embedder must have an encode_queries method, got {type(embedder).__name__}")
        self.store = store
        self.collection = collection
        self.embedder = embedder
        self.top_k = top_k
        self.use_bm25 = use_bm25
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self.rrf_k = rrf_k
        self._bm25_lock = threading.Lock()
        self._bm25_state: tuple[tuple[str, int], BM25Retriever | None, dict[str, StoredChunk]] | None = None

    def _embed(self, query: str) -> Any:
        if self.embedder is None:
            return self.store.embed_query(query)
        return self.embedder.encode_queries([query])[0]

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

    def candidates(self, query: str, n_candidates: int) -> list[RetrievedChunk]:
        """The first stage: dense (and BM25, fused) candidates, best first, without reranking."""
        dense = self.store.query(self.collection, self._embed(query), n_candidates)
        if not self.use_bm25:
            return [_to_retrieved(chunk, 1.0 - float(chunk.distance or 0.0)) for chunk in dense]
        from retrievals_rag.retrieval.fusion import fuse_rankings

        index, chunks = self._bm25()
        lexical = [] if index is None else index.search([query], top_k=n_candidates)[0]
        by_id = {chunk.id: chunk for chunk in dense}
        for chunk_id, _ in lexical:
            if chunk_id not in by_id and chunk_id in chunks:
                by_id[chunk_id] = chunks[chunk_id]
        fused = fuse_rankings(
            [[chunk.id for chunk in dense], [chunk_id for chunk_id, _ in lexical if chunk_id in by_id]],
            k=self.rrf_k,
        )
        return [_to_retrieved(by_id[chunk_id], score) for chunk_id, score in fused[:n_candidates]]

    def retrieve(self, query: str, *, top_k: int | None = None) -> list[RetrievedChunk]:
        """The best chunks for ``query``, best first.

        Args:
            query: The question.
            top_k: Chunks returned; None: the retriever's ``top_k``.

        Returns:
            At most ``top_k`` chunks (fewer when the collection is smaller), scores as Python floats.

        Raises:
            ValueError: On an empty query.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError("the query is empty")
        k = self.top_k if top_k is None else top_k
        _check_positive("top_k", k)
        if self.reranker is None:
            return self.candidates(query, k)[:k]
        first_stage = self.candidates(query, max(k, self.rerank_candidates))
        if not first_stage:
            return []
        results = self.reranker.rerank(query, [chunk.text for chunk in first_stage], top_k=k)
        reranked: list[RetrievedChunk] = []
        for result in list(results)[:k]:
            index = int(result.index)
            if not 0 <= index < len(first_stage):
                raise ValueError(f"the reranker returned index {index} for {len(first_stage)} documents")
            chunk = first_stage[index]
            score = float(result.score)
            reranked.append(
                RetrievedChunk(
                    text=chunk.text,
                    source=chunk.source,
                    page=chunk.page,
                    chunk_id=chunk.chunk_id,
                    score=score,
                    retrieval_score=chunk.retrieval_score,
                    rerank_score=score,
                    metadata=dict(chunk.metadata),
                )
            )
        return reranked


def _to_retrieved(chunk: StoredChunk, retrieval_score: float) -> RetrievedChunk:
    page = chunk.metadata.get("page")
    score = float(retrieval_score)
    return RetrievedChunk(
        text=chunk.text,
        source=str(chunk.metadata.get("source", "")),
        page=page if isinstance(page, int) else None,
        chunk_id=chunk.id,
        score=score,
        retrieval_score=score,
        metadata=dict(chunk.metadata),
    )


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
