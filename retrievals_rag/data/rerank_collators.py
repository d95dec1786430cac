"""Collators for rerankers: batches tokenized by the model's own input layout, so training sees what inference scores.

Both take :class:`~retrievals_rag.data.datasets.RetrievalTrainDataset` examples: groups
``{"query", "documents": [positive, negative, ...]}`` (with ``"teacher_scores"`` for distillation) or scored
pairs ``{"query", "document", "label"}``. The dataset must not apply instructions: rankers frame the query and
the document with their own (saved) instructions when they tokenize.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from retrievals_rag.data.tokenization import pad_sequences

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = ["ColBERTCollator", "PairRankerCollator"]


class PairTokenizingRanker(Protocol):
    """What :class:`PairRankerCollator` needs of a model (``AutoModelForRanking`` and ``LLMRanker`` have it)."""

    tokenizer: PreTrainedTokenizerBase

    @property
    def padding_side(self) -> str: ...

    def tokenize_pairs(
        self, pairs: Sequence[tuple[str, str]]
    ) -> list[tuple[list[int], list[int] | None]]: ...


class TextTokenizingRanker(Protocol):
    """What :class:`ColBERTCollator` needs of a model (``ColBERT`` has it)."""

    tokenizer: PreTrainedTokenizerBase

    def tokenize_queries(self, queries: Sequence[str]) -> list[list[int]]: ...

    def tokenize_documents(self, documents: Sequence[str]) -> list[list[int]]: ...


def _group_size(features: list[dict[str, Any]]) -> int:
    sizes = {len(feature["documents"]) for feature in features}
    if len(sizes) != 1:
        raise ValueError(
            f"every query of a batch needs the same number of documents, got sizes {sorted(sizes)}"
        )
    return sizes.pop()


def _teacher_scores(features: list[dict[str, Any]], batch: dict[str, Any]) -> None:
    import torch

    if "teacher_scores" in features[0]:
        # (batch, group_size), aligned with the documents of each query
        batch["teacher_scores"] = torch.tensor(
            [feature["teacher_scores"] for feature in features], dtype=torch.float32
        )


class PairRankerCollator:
    """Batches for cross-encoders and LLM rankers: every (query, document) pair as one model input.

    Pairs are tokenized by ``model.tokenize_pairs``, the layout :meth:`compute_score` scores (instructions,
    special tokens, truncation to the model's ``max_length``, the document's first window), and padded to the
    batch's longest input on the model's padding side.

    Output:
        ``{"pairs": {"input_ids", "attention_mask"[, "token_type_ids"]}}`` with one row per pair, plus for groups
        ``"group_size"`` (int; rows ordered ``[q0_pos, q0_neg1, ..., q1_pos, ...]``) and, from records with a
        teacher's scores, ``"teacher_scores"`` ``(batch, group_size)``; for scored pairs ``"labels"``
        ``(batch,)`` float.

    Args:
        model: an :class:`~retrievals_rag.AutoModelForRanking` or :class:`~retrievals_rag.LLMRanker` (only its
            tokenization is used).
    """

    def __init__(self, model: PairTokenizingRanker) -> None:
        self.model = model

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if not features:
            raise ValueError("an empty batch")
        batch: dict[str, Any] = {}
        if "documents" in features[0]:
            group_size = _group_size(features)
            pairs = [
                (feature["query"], document) for feature in features for document in feature["documents"]
            ]
            batch["group_size"] = group_size
            _teacher_scores(features, batch)
        else:
            pairs = [(feature["query"], feature["document"]) for feature in features]
            batch["labels"] = torch.tensor([feature["label"] for feature in features], dtype=torch.float32)
        rows = self.model.tokenize_pairs(pairs)
        side = self.model.padding_side
        input_ids, attention_mask = pad_sequences(
            [ids for ids, _ in rows], self.model.tokenizer.pad_token_id, side
        )
        inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if rows[0][1] is not None:
            inputs["token_type_ids"] = pad_sequences([types or [] for _, types in rows], 0, side)[0]
        batch["pairs"] = inputs
        return batch


class ColBERTCollator:
    """Batches for ColBERT: queries and documents tokenized apart, by the model's own rows.

    Queries go through ``model.tokenize_queries`` (marker, mask-token augmentation), documents through
    ``model.tokenize_documents`` (marker, truncation to ``max_length``); both are right-padded as in encoding.

    Output:
        ``{"query": {"input_ids", "attention_mask"}, "documents": {...}}`` with ``batch * group_size`` document
        rows grouped per query (positive first), plus ``"teacher_scores"`` ``(batch, group_size)`` from records
        with a teacher's scores.

    Args:
        model: a :class:`~retrievals_rag.ColBERT` (only its tokenization is used).

    Raises:
        ValueError: on scored pairs, which ColBERT does not train on (its MaxSim scores are not logits).
    """

    def __init__(self, model: TextTokenizingRanker) -> None:
        self.model = model

    def _pad(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_sequences(rows, self.model.tokenizer.pad_token_id, "right")
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("an empty batch")
        if "documents" not in features[0]:
            raise ValueError(
                "ColBERT trains on grouped records (query, positive[, negative]), not on scored pairs"
            )
        _group_size(features)
        documents = [document for feature in features for document in feature["documents"]]
        batch: dict[str, Any] = {
            "query": self._pad(self.model.tokenize_queries([feature["query"] for feature in features])),
            "documents": self._pad(self.model.tokenize_documents(documents)),
        }
        _teacher_scores(features, batch)
        return batch
