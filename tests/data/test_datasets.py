from __future__ import annotations

from pathlib import Path

import pytest

from retrievals_rag.data.collators import EmbeddingCollator
from retrievals_rag.data.datasets import RetrievalTrainDataset
from retrievals_rag.data.records import DataFormatError
from retrievals_rag.data.tokenization import tokenize_texts

RECORDS = [
    {"query": f"q{i}", "positive": [f"p{i}a", f"p{i}b"], "negative": [f"n{i}_{j}" for j in range(5)]}
    for i in range(6)
]


def test_group_has_one_positive_then_distinct_negatives() -> None:
    dataset = RetrievalTrainDataset(RECORDS, train_group_size=4, seed=1)
    example = dataset[2]
    assert example["query"] == "q2"
    assert example["documents"][0] in ("p2a", "p2b")
    negatives = example["documents"][1:]
    assert len(negatives) == 3
    assert len(set(negatives)) == 3
    assert all(n.startswith("n2_") for n in negatives)


def test_draws_are_reproducible_and_change_per_epoch() -> None:
    first = RetrievalTrainDataset(RECORDS, train_group_size=3, seed=7)
    second = RetrievalTrainDataset(RECORDS, train_group_size=3, seed=7)
    assert [first[i] for i in range(6)] == [second[i] for i in reversed(range(6))][::-1]
    epoch0 = [first[i]["documents"] for i in range(6)]
    first.set_epoch(1)
    epoch1 = [first[i]["documents"] for i in range(6)]
    assert epoch0 != epoch1
    first.set_epoch(0)
    assert [first[i]["documents"] for i in range(6)] == epoch0


def test_fewer_negatives_than_needed_are_reused() -> None:
    dataset = RetrievalTrainDataset(
        [{"query": "q", "positive": ["p"], "negative": ["n"]}], train_group_size=4
    )
    assert dataset[0]["documents"] == ["p", "n", "n", "n"]


def test_group_size_above_one_needs_negatives(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="needs hard negatives"):
        RetrievalTrainDataset([{"query": "q", "positive": ["p"]}], train_group_size=2)
    assert RetrievalTrainDataset([{"query": "q", "positive": ["p"]}])[0] == {"query": "q", "documents": ["p"]}
    with pytest.raises(ValueError, match="train_group_size"):
        RetrievalTrainDataset(RECORDS, train_group_size=0)


def test_instructions_are_applied_with_the_encode_rule() -> None:
    dataset = RetrievalTrainDataset(
        RECORDS, train_group_size=2, query_instruction="query: ", document_instruction="Represent {} now"
    )
    example = dataset[0]
    assert example["query"] == "query: q0"
    assert all(d.startswith("Represent ") and d.endswith(" now") for d in example["documents"])


def test_scored_pairs() -> None:
    dataset = RetrievalTrainDataset(
        [{"query": "q", "document": "d", "label": 0.25}], query_instruction="Q: ", document_instruction="D: "
    )
    assert dataset[0] == {"query": "Q: q", "document": "D: d", "label": 0.25}


def test_collator_pads_per_batch_with_each_role_max_length(tiny_bert_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_path)
    collator = EmbeddingCollator(tokenizer, query_max_length=8, document_max_length=12)
    dataset = RetrievalTrainDataset(
        [
            {"query": "short", "positive": ["cell " * 50], "negative": ["gene"]},
            {"query": "a much longer query about the brain " * 3, "positive": ["p"], "negative": ["n"]},
        ],
        train_group_size=2,
    )
    batch = collator([dataset[0], dataset[1]])
    assert batch["query"]["input_ids"].shape == (2, 8)
    assert batch["documents"]["input_ids"].shape == (4, 12)
    short_batch = collator([dataset[0]])
    assert short_batch["query"]["input_ids"].shape[1] == 3  # [CLS] short [SEP]: padded per batch, not to 8
    expected = tokenize_texts(tokenizer, [dataset[0]["query"]], 8)
    assert short_batch["query"]["input_ids"].tolist() == expected
    labels = collator([{"query": "q", "document": "d", "label": 1.0}])["labels"]
    assert labels.tolist() == [1.0]
