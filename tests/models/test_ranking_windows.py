"""Tests of the pieces every ranker shares: windows, token frames, settings and input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrievals_rag.data.tokenization import apply_instruction
from retrievals_rag.models.base import resolve_settings
from retrievals_rag.models.config import (
    ColBERTSettings,
    CrossEncoderSettings,
    LLMRankerSettings,
)
from retrievals_rag.models.ranking import check_pairs
from retrievals_rag.models.windows import (
    best_per_owner,
    find_token_frame,
    fit_query,
    iter_row_batches,
    plan_windows,
    split_instruction,
)
from tests.conftest import build_word_tokenizer


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_bert_path: Path):  # -> PreTrainedTokenizerBase
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert_path)


def test_a_text_that_fits_is_one_window() -> None:
    assert plan_windows(5, 8, None, 8) == [(0, 5)]
    assert plan_windows(8, 8, None, 8) == [(0, 8)]
    assert plan_windows(0, 8, None, 8) == [(0, 0)]


def test_windows_overlap_by_half_and_the_last_one_ends_at_the_end() -> None:
    assert plan_windows(10, 4, None, 8) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert plan_windows(11, 4, None, 8) == [(0, 4), (2, 6), (4, 8), (6, 10), (7, 11)]
    assert plan_windows(10, 4, 3, 8) == [(0, 4), (3, 7), (6, 10)]
    # A stride longer than the window is clamped so no token is skipped.
    assert plan_windows(10, 4, 100, 8) == [(0, 4), (4, 8), (6, 10)]


def test_max_windows_keeps_the_first_windows() -> None:
    assert plan_windows(100, 10, 10, 3) == [(0, 10), (10, 20), (20, 30)]
    assert plan_windows(100, 10, None, 1) == [(0, 10)]
    with pytest.raises(ValueError, match="window_size"):
        plan_windows(10, 0, None, 8)


def test_fit_query_keeps_short_queries_and_halves_long_ones() -> None:
    assert fit_query(5, 10, 100) == 5  # everything fits
    assert fit_query(5, 1000, 100) == 5  # short query, long document: the document is windowed
    assert fit_query(80, 1000, 100) == 50  # long query: cut to half the room
    assert fit_query(80, 30, 100) == 70  # long query, short document: the query takes what is left
    with pytest.raises(ValueError, match="no room"):
        fit_query(1, 1, 1)


@pytest.mark.parametrize(
    "instruction", [None, "", "query: ", "Represent {} for retrieval", "{}!", "Instruct: x\nQuery: "]
)
def test_split_instruction_follows_apply_instruction(instruction: str | None) -> None:
    before, after = split_instruction(instruction)
    for text in ("cells", "", "text with {} braces"):
        assert before + text + after == apply_instruction(instruction, text)


def test_pair_frame_reproduces_the_tokenizer(bert_tokenizer) -> None:  # type: ignore[no-untyped-def]
    frame = find_token_frame(bert_tokenizer, pair=True)
    for query, document in [("what is a cell?", "The cell, a unit of life."), ("", "x"), ("q", "")]:
        query_ids = bert_tokenizer(query, add_special_tokens=False)["input_ids"]
        document_ids = bert_tokenizer(document, add_special_tokens=False)["input_ids"]
        # The batch form, as sentence-transformers calls it (a lone empty second text would drop the pair).
        expected = bert_tokenizer([query], [document])
        ids, types = frame.assemble(query_ids, document_ids)
        assert ids == expected["input_ids"][0]
        assert types == expected["token_type_ids"][0]


def test_single_frame_of_a_llama_like_tokenizer_is_the_bos_token() -> None:
    tokenizer = build_word_tokenizer()
    frame = find_token_frame(tokenizer, pair=False)
    assert frame.prefix == (tokenizer.bos_token_id,)
    assert frame.suffix == ()
    assert frame.assemble([5, 6]) == ([tokenizer.bos_token_id, 5, 6], None)


def test_best_per_owner_takes_each_owners_maximum() -> None:
    owners = np.array([0, 0, 1, 2, 2, 2])
    scores = np.array([0.5, 2.0, -1.0, 3.0, -4.0, 3.5], dtype=np.float32)
    np.testing.assert_allclose(best_per_owner(owners, scores, 4), [2.0, -1.0, 3.5, -np.inf])


def test_row_batches_cover_every_row_once() -> None:
    rows = [[1] * length for length in (5, 1, 9, 3, 3, 7)]
    seen: list[int] = []
    for batch in iter_row_batches(rows, token_budget=10, max_batch_size=4, pad_id=0):
        assert batch.input_ids.numel() <= max(10, batch.input_ids.shape[1])
        for row, position in enumerate(batch.positions):
            assert int(batch.attention_mask[row].sum()) == len(rows[position])
        seen.extend(int(p) for p in batch.positions)
    assert sorted(seen) == list(range(len(rows)))


def test_check_pairs_accepts_one_pair_or_a_list() -> None:
    assert check_pairs(("q", "d")) == (["q"], ["d"], True)
    assert check_pairs(["q", "d"]) == (["q"], ["d"], True)
    assert check_pairs([("q", "d"), ["q2", "d2"]]) == (["q", "q2"], ["d", "d2"], False)
    assert check_pairs([]) == ([], [], False)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ("query", r"pairs must be"),
        ([("q", "d"), ("q", 3)], r"pairs\[1\]\[1\] is int"),
        ([(None, "d")], r"pairs\[0\]\[0\] is NoneType"),
        ([("q", "d", "e")], r"pairs\[0\] must be a \(query, document\) pair"),
        ([("q", "d"), "qd"], r"pairs\[1\] must be"),
    ],
)
def test_check_pairs_names_the_bad_item(pairs: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        check_pairs(pairs)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="num_labels"):
        CrossEncoderSettings(max_length=32, num_labels=3)
    with pytest.raises(ValueError, match="max_windows"):
        CrossEncoderSettings(max_length=32, max_windows=0)
    with pytest.raises(ValueError, match="window_stride"):
        LLMRankerSettings(max_length=32, window_stride=0)
    with pytest.raises(ValueError, match="target_token"):
        LLMRankerSettings(max_length=32, target_token="")
    with pytest.raises(ValueError, match="score_reduction"):
        ColBERTSettings(colbert_dim=8, max_length=32, score_reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="colbert_dim"):
        ColBERTSettings(colbert_dim=0, max_length=32)


def test_settings_precedence_explicit_then_saved_then_sentence_transformers_then_defaults() -> None:
    settings = resolve_settings(
        CrossEncoderSettings,
        explicit={"max_length": None, "max_windows": 2},
        saved={"max_length": 64, "max_windows": 4, "query_instruction": "q: "},
        sentence_transformers={"max_length": 128, "document_instruction": "d: ", "num_labels": None},
        defaults={"max_length": 512, "num_labels": 2},
    )
    assert settings == CrossEncoderSettings(
        max_length=64, max_windows=2, query_instruction="q: ", document_instruction="d: ", num_labels=2
    )
