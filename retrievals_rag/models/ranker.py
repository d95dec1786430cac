"""The scoring API every ranker shares (cross-encoder, LLM reranker, ColBERT): ``compute_score`` and ``rerank``.

Subclasses say how a batch of (query, document) pairs is scored; this base validates the input, batches,
normalises and sorts. What every model kind shares (loading, LoRA, checkpoints) is in ``models/base.py``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from retrievals_rag.models.base import RetrievalModel


@dataclass(frozen=True)
class RerankResult:
    """One document of a :meth:`Ranker.rerank` result.

    Attributes:
        index: the document's position in the list given to ``rerank``.
        document: the document text.
        score: its score (a Python float); higher is more relevant.
    """

    index: int
    document: str
    score: float


def check_pairs(pairs: Any) -> tuple[list[str], list[str], bool]:
    """Split ``pairs`` into queries and documents; the flag says a single ``(query, document)`` was given.

    Raises:
        TypeError: naming the first item that is not a pair of strings.
    """
    if isinstance(pairs, str) or not isinstance(pairs, Sequence):
        raise TypeError(
            f"pairs must be a (query, document) pair or a list of them, got {type(pairs).__name__}"
        )
    if len(pairs) == 2 and isinstance(pairs[0], str) and isinstance(pairs[1], str):
        return [pairs[0]], [pairs[1]], True
    queries: list[str] = []
    documents: list[str] = []
    for index, pair in enumerate(pairs):
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"pairs[{index}] must be a (query, document) pair, got {type(pair).__name__}")
        for side in (0, 1):
            if not isinstance(pair[side], str):
                raise TypeError(f"pairs[{index}][{side}] is {type(pair[side]).__name__}, expected str")
        queries.append(pair[0])
        documents.append(pair[1])
    return queries, documents, False


class Ranker(RetrievalModel, metaclass=ABCMeta):
    """The scoring API shared by every ranker: :meth:`compute_score` and :meth:`rerank`.

    Subclasses implement ``_score_pairs``, which scores each (query, document) pair as a float64 array.
    They keep their transformer in ``model`` (wrapped by peft when LoRA adapters train); loading, LoRA and
    checkpoint support come from :class:`~retrievals_rag.models.base.RetrievalModel`.
    """

    def compute_score(
        self,
        pairs: Sequence[tuple[str, str]] | tuple[str, str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        normalize: bool = False,
        show_progress_bar: bool | None = None,
    ) -> list[float] | float:
        """Score (query, document) pairs; long documents are scored by their best window.

        Args:
            pairs: one ``(query, document)`` pair (gives one float) or a list of pairs (gives a list).
            batch_size: most inputs per batch (default 256 on CPU, 1024 on GPU).
            token_budget: most padded tokens per batch (default 4,096 on CPU, 131,072 on GPU).
            normalize: map scores to (0, 1) with a sigmoid.
            show_progress_bar: None shows one for 1,000 inputs or more (on a terminal).

        Returns:
            Python floats, in input order.

        Raises:
            TypeError: an item is not a pair of strings (its index is named).
        """
        queries, documents, single = check_pairs(pairs)
        values = self._python_scores(
            queries,
            documents,
            batch_size=batch_size,
            token_budget=token_budget,
            normalize=normalize,
            show_progress_bar=show_progress_bar,
        )
        return values[0] if single else values

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        normalize: bool = False,
        show_progress_bar: bool | None = None,
    ) -> list[RerankResult]:
        """Order ``documents`` by relevance to ``query``, best first.

        Args:
            query: the query.
            documents: the candidate documents.
            top_k: keep the best ``top_k`` (None: all; more than there are: all).
            batch_size: see :meth:`compute_score`.
            token_budget: see :meth:`compute_score`.
            normalize: sigmoid scores, see :meth:`compute_score`.
            show_progress_bar: see :meth:`compute_score`.

        Returns:
            :class:`RerankResult` items (original index, document, score) by descending score; ties keep the
            input order.
        """
        if not isinstance(query, str):
            raise TypeError(f"query is {type(query).__name__}, expected str")
        if isinstance(documents, str) or not isinstance(documents, Sequence):
            raise TypeError(f"documents must be a list of strings, got {type(documents).__name__}")
        for index, document in enumerate(documents):
            if not isinstance(document, str):
                raise TypeError(f"documents[{index}] is {type(document).__name__}, expected str")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
            raise ValueError(f"top_k must be None or an int >= 0, got {top_k!r}")
        if not documents or top_k == 0:
            return []
        scores = self._python_scores(
            [query] * len(documents),
            list(documents),
            batch_size=batch_size,
            token_budget=token_budget,
            normalize=normalize,
            show_progress_bar=show_progress_bar,
        )
        order = sorted(range(len(documents)), key=lambda index: -scores[index])
        return [RerankResult(index, documents[index], scores[index]) for index in order[:top_k]]

    def _python_scores(
        self,
        queries: list[str],
        documents: list[str],
        *,
        batch_size: int | None,
        token_budget: int | None,
        normalize: bool,
        show_progress_bar: bool | None,
    ) -> list[float]:
        if not queries:
            return []
        scores = self._score_pairs(
            queries,
            documents,
            batch_size=batch_size,
            token_budget=token_budget,
            show_progress_bar=show_progress_bar,
        )
        if normalize:
            scores = torch.sigmoid(torch.from_numpy(scores)).numpy()
        return [float(score) for score in scores]

    @abstractmethod
    def _score_pairs(
        self,
        queries: list[str],
        documents: list[str],
        *,
        batch_size: int | None,
        token_budget: int | None,
        show_progress_bar: bool | None,
    ) -> np.ndarray:
        """Scores of the pairs ``(queries[i], documents[i])``, float64."""
