"""Collators: tokenize each role with its own maximum length and pad per batch (never to the maximum)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from retrievals_rag.data.tokenization import EMBEDDING_PADDING_SIDE, pad_sequences, tokenize_texts

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


class EmbeddingCollator:
    """Batches of :class:`~retrievals_rag.data.datasets.RetrievalTrainDataset` examples for bi-encoders.

    Output: ``{"query": {"input_ids", "attention_mask"}, "documents": {...}}`` with documents grouped per query
    (``batch * group_size`` rows, positive first), plus ``"labels"`` (float) for scored pairs and
    ``"teacher_scores"`` ``(batch, group_size)`` for distillation records.

    Args:
        tokenizer: the model's tokenizer. Its ``padding_side`` is not used: batches are padded on the right, as
            ``AutoModelForEmbedding.encode`` pads them, so that a text's positions do not depend on its batch.
        query_max_length: tokens per query, special tokens included.
        document_max_length: tokens per document.
        append_eos: append EOS after truncation (decoder LLMs whose tokenizer does not add it; take it from the
            model's settings, so training and ``encode`` tokenize alike).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        query_max_length: int = 64,
        document_max_length: int = 256,
        append_eos: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.query_max_length = query_max_length
        self.document_max_length = document_max_length
        self.append_eos = append_eos

    def _tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_sequences(
            tokenize_texts(self.tokenizer, texts, max_length, self.append_eos),
            self.tokenizer.pad_token_id,
            EMBEDDING_PADDING_SIDE,
        )
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        queries = [feature["query"] for feature in features]
        if "documents" in features[0]:
            documents = [document for feature in features for document in feature["documents"]]
        else:
            documents = [feature["document"] for feature in features]
        batch: dict[str, Any] = {
            "query": self._tokenize(queries, self.query_max_length),
            "documents": self._tokenize(documents, self.document_max_length),
        }
        if "label" in features[0]:
            batch["labels"] = torch.tensor([feature["label"] for feature in features], dtype=torch.float32)
        if "teacher_scores" in features[0]:
            # (batch, group_size), aligned with the documents of each query
            batch["teacher_scores"] = torch.tensor([feature["teacher_scores"] for feature in features])
        return batch
