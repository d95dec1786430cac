"""The one tokenization rule of training and inference (retrievals_rag.data.tokenization)."""

from __future__ import annotations

import pytest

from retrievals_rag.data.collators import EmbeddingCollator
from retrievals_rag.data.tokenization import empty_text_token_id, tokenize_texts
from tests.conftest import build_word_tokenizer


def test_an_empty_text_becomes_the_eos_token_never_an_empty_row() -> None:
    """A tokenizer without a BOS (GPT-2, Qwen2, SmolLM2) turns ``""`` into no token; before, the row stayed empty."""
    tokenizer = build_word_tokenizer(bos=False)
    tokenizer.pad_token = tokenizer.eos_token  # as a loaded model's tokenizer is given
    eos = tokenizer.eos_token_id
    assert tokenizer("")["input_ids"] == []

    assert tokenize_texts(tokenizer, ["", "the cell"], max_length=8) == [
        [eos],
        tokenizer("the cell")["input_ids"],
    ]
    assert tokenize_texts(tokenizer, [""], max_length=8, append_eos=True) == [[eos]]  # one EOS, not two
    batch = EmbeddingCollator(tokenizer)([{"query": "", "documents": ["", "the cell"]}])
    assert batch["query"]["attention_mask"].tolist() == [[1]]
    assert batch["documents"]["attention_mask"].sum(dim=1).tolist() == [1, 2]


def test_without_an_eos_the_unk_then_the_pad_token_stands_in() -> None:
    tokenizer = build_word_tokenizer(bos=False)
    tokenizer.eos_token = None
    assert tokenize_texts(tokenizer, [""], max_length=8) == [[tokenizer.unk_token_id]]
    tokenizer.unk_token = None
    tokenizer.pad_token = "<s>"
    assert empty_text_token_id(tokenizer) == tokenizer.pad_token_id
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="no EOS, UNK or pad token"):
        empty_text_token_id(tokenizer)
