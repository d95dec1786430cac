"""The run format shared by retrieval, fusion and evaluation, its one ranking rule, and the encoder and scorer
protocols.

A run maps query id -> document id -> score (the pytrec_eval format), with Python floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

Run = dict[str, dict[str, float]]


class QueryCorpusEncoder(Protocol):
    """What dense retrieval needs from a model: the public encode interface of
    :class:`~retrievals_rag.models.embedding.AutoModelForEmbedding` (queries and documents get their own
    instructions)."""

    def encode_queries(
        self,
        queries: Sequence[str],
        *,
        batch_size: int | None = ...,
        token_budget: int | None = ...,
        show_progress_bar: bool | None = ...,
    ) -> Any: ...

    def encode_corpus(
        self,
        documents: Sequence[str],
        *,
        batch_size: int | None = ...,
        token_budget: int | None = ...,
        show_progress_bar: bool | None = ...,
    ) -> Any: ...


class PairScorer(Protocol):
    """What reranking and pseudo-labelling need from a model: the public ``compute_score`` of every ranker."""

    def compute_score(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int | None = ...,
        token_budget: int | None = ...,
        show_progress_bar: bool | None = ...,
    ) -> Any: ...


class CorpusEmbeddingCache:
    """Wraps an encoder so that encoding the same corpus again returns the first result.

    For pipelines that run dense retrieval over one corpus several times with the same model (zero-shot
    evaluation, then hard-negative mining): the corpus is encoded once. Queries are always encoded.

    Args:
        encoder: any :class:`QueryCorpusEncoder`, e.g. an ``AutoModelForEmbedding``.
    """

    def __init__(self, encoder: QueryCorpusEncoder) -> None:
        self.encoder = encoder
        self._texts: list[str] | None = None
        self._embeddings: Any = None

    def encode_corpus(
        self,
        documents: Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> Any:
        texts = list(documents)
        if texts != self._texts:
            self._embeddings = self.encoder.encode_corpus(
                texts, batch_size=batch_size, token_budget=token_budget, show_progress_bar=show_progress_bar
            )
            self._texts = texts
        return self._embeddings

    def encode_queries(
        self,
        queries: Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> Any:
        return self.encoder.encode_queries(
            queries, batch_size=batch_size, token_budget=token_budget, show_progress_bar=show_progress_bar
        )


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Order one query's retrieved documents as trec_eval does.

    Args:
        scores: Document id -> retrieval score.

    Returns:
        Document ids by score, descending; ties by document id, descending (trec_eval's rule, so that
        metrics computed here equal pytrec_eval's on runs with ties).

    Example:
        >>> rank_documents({"a": 1.0, "b": 2.0, "c": 1.0})
        ['b', 'c', 'a']
    """
    return [document_id for document_id, _ in sorted(scores.items(), key=_score_then_id, reverse=True)]


def _score_then_id(item: tuple[str, float]) -> tuple[float, str]:
    return item[1], item[0]
