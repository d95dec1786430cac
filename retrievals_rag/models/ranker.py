"""The scoring API every ranker shares (cross-encoder, LLM reranker, ColBERT): ``compute_score`` and ``rerank``,
and :class:`PairRanker`, the base of the rankers that read query and document together (cross-encoder, LLM).

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

from retrievals_rag.data.tokenization import empty_text_token_id
from retrievals_rag.models.base import RetrievalModel
from retrievals_rag.models.batching import pad_sequences
from retrievals_rag.models.config import CrossEncoderSettings, LLMRankerSettings
from retrievals_rag.models.windows import (
    best_per_owner,
    fit_query,
    iter_row_batches,
    plan_windows,
    tokenize_content,
)

# Pairs tokenized and windowed together: bounds memory on very large inputs.
PAIRS_PER_CHUNK = 4_096


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
            normalize: map scores to [0, 1]: the sigmoid of a logit (an LLM ranker scoring query likelihood: the
                exponential of the mean log-probability).
            show_progress_bar: None shows one for 1,000 inputs or more (live on a terminal, else redrawn once a minute).

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
            normalize: scores in [0, 1], see :meth:`compute_score`.
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
            scores = self._normalized(scores)
        return [float(score) for score in scores]

    @property
    def scores_are_logits(self) -> bool:
        """Whether a score is a logit, so that its sigmoid (``normalize=True``) is the probability that the
        document is relevant: a cross-encoder's and an LLM ranker's 'Yes' logit; not ColBERT's MaxSim nor a query
        likelihood."""
        return True

    def _normalized(self, scores: np.ndarray) -> np.ndarray:
        """Scores mapped to [0, 1] for ``normalize=True``: the sigmoid of a logit."""
        return torch.sigmoid(torch.from_numpy(scores)).numpy()

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


class PairRanker(Ranker):
    """A ranker that reads query and document together: one forward pass per (query, document window).

    Subclasses give the input layout (``_layout``), the room it leaves for query and document tokens
    (``_content_budget``) and ``forward``.
    """

    settings: CrossEncoderSettings | LLMRankerSettings
    _padding_side: str = "right"

    @property
    def max_length(self) -> int:
        return self.settings.max_length

    @property
    def padding_side(self) -> str:
        """The side inference pads batches on (training collators pad the same way)."""
        return self._padding_side

    @property
    def query_instruction(self) -> str | None:
        return self.settings.query_instruction

    @property
    def document_instruction(self) -> str | None:
        return self.settings.document_instruction

    @abstractmethod
    def _content_budget(self) -> int:
        """Tokens left for query and document content once the layout's own tokens are counted."""

    @abstractmethod
    def _layout(self, query_ids: list[int], window_ids: list[int]) -> tuple[list[int], list[int] | None]:
        """Model input ``(input_ids, token_type_ids or None)`` of a query and one document window."""

    def _forward_batch(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        return self(input_ids, attention_mask)

    def _query_ids(self, queries: list[str]) -> list[list[int]]:
        """Token ids of query texts (no special tokens, no instruction)."""
        return tokenize_content(self.tokenizer, queries)

    def _pair_rows(
        self, query_ids: list[int], document_ids: list[int], max_windows: int
    ) -> list[tuple[list[int], list[int] | None]]:
        budget = self._content_budget()
        keep = fit_query(len(query_ids), len(document_ids), budget)
        windows = plan_windows(len(document_ids), budget - keep, self.settings.window_stride, max_windows)
        rows = [self._layout(query_ids[:keep], document_ids[start:end]) for start, end in windows]
        if not rows[0][
            0
        ]:  # an empty query and document, and a tokenizer that frames them with nothing (GPT-2)
            types = rows[0][1]
            return [([empty_text_token_id(self.tokenizer)], None if types is None else [0])]
        return rows

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int] | None]]:
        """Model inputs ``(input_ids, token_type_ids or None)`` of pairs, documents cut to their first window.

        This is the layout the model scores (instructions, special tokens, truncation), for training code
        that must feed the model exactly what inference does.
        """
        queries, documents, _ = check_pairs(list(pairs))
        query_ids = self._query_ids(queries)
        document_ids = tokenize_content(self.tokenizer, documents)
        return [self._pair_rows(q, d, max_windows=1)[0] for q, d in zip(query_ids, document_ids, strict=True)]

    def _rows_of_pairs(
        self, queries: list[str], documents: list[str]
    ) -> tuple[list[list[int]], list[list[int] | None], np.ndarray]:
        """Model inputs of every window of every pair: ``(input_ids, token_type_ids, owners)``.

        ``owners[i]`` is the index of the pair that row ``i`` belongs to.
        """
        unique = list(dict.fromkeys(queries))
        query_ids = dict(zip(unique, self._query_ids(unique), strict=True))
        rows: list[list[int]] = []
        types: list[list[int] | None] = []
        owners: list[int] = []
        for pair, (query, ids) in enumerate(
            zip(queries, tokenize_content(self.tokenizer, documents), strict=True)
        ):
            for row, row_types in self._pair_rows(query_ids[query], ids, self.settings.max_windows):
                rows.append(row)
                types.append(row_types)
                owners.append(pair)
        return rows, types, np.asarray(owners, dtype=np.int64)

    def _score_pairs(
        self,
        queries: list[str],
        documents: list[str],
        *,
        batch_size: int | None,
        token_budget: int | None,
        show_progress_bar: bool | None,
    ) -> np.ndarray:
        scores = np.empty(len(queries), dtype=np.float64)
        options = self._batch_options(batch_size, token_budget)
        device = self.device
        with self.inference(len(queries), show_progress_bar, "Scoring") as progress:
            for start in range(0, len(queries), PAIRS_PER_CHUNK):
                stop = min(start + PAIRS_PER_CHUNK, len(queries))
                rows, types, owners = self._rows_of_pairs(queries[start:stop], documents[start:stop])
                row_scores = np.empty(len(rows), dtype=np.float32)
                rows_left = np.bincount(owners, minlength=stop - start)  # a pair is done when its windows are
                for batch in iter_row_batches(rows, padding_side=self._padding_side, **options):
                    token_type_ids = None
                    if types[0] is not None:
                        token_type_ids = pad_sequences(
                            [types[i] for i in batch.positions], 0, self._padding_side
                        )[0].to(device, non_blocking=True)
                    batch_scores = self._forward_batch(
                        batch.input_ids.to(device, non_blocking=True),
                        batch.attention_mask.to(device, non_blocking=True),
                        token_type_ids,
                    )
                    row_scores[batch.positions] = batch_scores.float().cpu().numpy()
                    batch_owners = owners[batch.positions]
                    np.subtract.at(rows_left, batch_owners, 1)
                    progress.update(int(np.count_nonzero(rows_left[np.unique(batch_owners)] == 0)))
                scores[start:stop] = best_per_owner(owners, row_scores, stop - start)
        return scores
