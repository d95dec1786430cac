"""Datasets of training examples, built from validated records."""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from retrievals_rag.data.records import DataFormatError, RecordKeys, TrainRecord, load_records
from retrievals_rag.data.tokenization import apply_instruction


class RetrievalTrainDataset:
    """Training examples for embedders (and rerankers): a query with its group of documents, or a scored pair.

    For pair and triplet records an example is ``{"query": str, "documents": [positive, negative, ...]}`` with
    ``train_group_size`` documents: one positive (drawn from the record's positives) and
    ``train_group_size - 1`` hard negatives (drawn from its negatives without replacement, or with replacement
    when it has fewer). Draws change every epoch (:meth:`set_epoch`) and are reproducible from ``seed``.
    Records with teacher scores add ``"teacher_scores"``, aligned with ``"documents"`` (for distillation).
    For scored pairs an example is ``{"query": str, "document": str, "label": float}``.
    Instructions are applied here, with the same function ``encode`` uses.

    Args:
        data: a file, folder, ``datasets.Dataset`` or list of dicts (see :func:`load_records`).
        train_group_size: documents per query; 1 trains on positives with in-batch negatives only.
        query_instruction: prefix for queries (``{}`` is a placeholder for the text).
        document_instruction: prefix for documents.
        query_key, positive_key, negative_key, document_key, label_key: field names of the records.
        seed: seed of the per-epoch draws.
    """

    def __init__(
        self,
        data: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | Any,
        train_group_size: int = 1,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        query_key: str = "query",
        positive_key: str = "positive",
        negative_key: str = "negative",
        document_key: str = "document",
        label_key: str = "label",
        seed: int = 42,
    ) -> None:
        if not isinstance(train_group_size, int) or train_group_size < 1:
            raise ValueError(f"train_group_size must be an int >= 1, got {train_group_size!r}")
        keys = RecordKeys(query_key, positive_key, negative_key, document_key, label_key)
        self.keys = keys
        self.records: list[TrainRecord] = load_records(data, keys)
        self.format = "scored" if self.records[0].format == "scored" else "group"
        if self.format == "group" and train_group_size > 1:
            lacking = [record for record in self.records if not record.negatives]
            if lacking:
                raise DataFormatError(
                    lacking[0].source,
                    lacking[0].line,
                    negative_key,
                    f"missing: train_group_size={train_group_size} needs hard negatives, and {len(lacking)} of "
                    f"{len(self.records)} records have none (this is the first); mine some (retrievals-rag mine) "
                    "or use train_group_size=1 for in-batch negatives",
                )
        self.train_group_size = train_group_size
        self.query_instruction = query_instruction
        self.document_instruction = document_instruction
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw other positives / negatives for ``epoch`` (called by the trainer at each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _rng(self, index: int) -> np.random.Generator:
        # Independent of worker processes and iteration order: one stream per (seed, epoch, record).
        return np.random.default_rng([self.seed, self.epoch, index, zlib.crc32(b"retrievals-rag")])

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        query = apply_instruction(self.query_instruction, record.query)
        if self.format == "scored":
            assert record.document is not None and record.label is not None
            return {
                "query": query,
                "document": apply_instruction(self.document_instruction, record.document),
                "label": record.label,
            }
        rng = self._rng(index)
        positive = int(rng.integers(len(record.positives)))
        wanted = self.train_group_size - 1
        negatives = (
            [
                int(i)
                for i in rng.choice(
                    len(record.negatives), size=wanted, replace=len(record.negatives) < wanted
                )
            ]
            if wanted
            else []
        )
        documents = [record.positives[positive], *(record.negatives[i] for i in negatives)]
        example: dict[str, Any] = {
            "query": query,
            "documents": [apply_instruction(self.document_instruction, document) for document in documents],
        }
        if record.positive_scores is not None:
            negative_scores = record.negative_scores or ()
            example["teacher_scores"] = [
                record.positive_scores[positive],
                *(negative_scores[i] for i in negatives),
            ]
        return example
