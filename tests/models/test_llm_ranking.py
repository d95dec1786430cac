"""Tests of the LLM ranker on a tiny random Llama (LlamaForCausalLM with a word-level tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retrievals_rag import AutoModelForRanking, LLMRanker
from retrievals_rag.models.batching import pad_sequences
from retrievals_rag.models.config import CONFIG_FILE_NAME, DEFAULT_LLM_RANKING_PROMPT

# The tiny word vocabulary has no "yes"; "relevant" stands in for the answer token.
TARGET = "relevant"
PAIRS = [
    ("what is a cell", "the cell is the unit of the human brain"),
    ("cancer risk", "patients with a gene study"),
    ("", "the protein"),
    ("how", ""),
    ("treatment effect in patients", "results " * 30),
]


@pytest.fixture(scope="module")
def ranker(tiny_llama_path: Path) -> LLMRanker:
    return LLMRanker.from_pretrained(tiny_llama_path, target_token=TARGET, device="cpu")


def _manual_score(ranker: LLMRanker, ids: list[int]) -> float:
    """The target logit at the last position of one unpadded input, by the model's own forward."""
    with torch.no_grad():
        return float(ranker.model(input_ids=torch.tensor([ids])).logits[0, -1, ranker.target_token_id])


def test_defaults(ranker: LLMRanker) -> None:
    assert ranker.prompt == DEFAULT_LLM_RANKING_PROMPT
    assert ranker.settings.query_instruction == "A: "
    assert ranker.settings.document_instruction == "B: "
    assert ranker.max_length == 256  # the tokenizer's limit (under the 1,024 cap)
    assert ranker.device == torch.device("cpu")
    assert not ranker.training


def test_an_unknown_target_token_is_an_error(tiny_llama_path: Path) -> None:
    # The default target "Yes" is not in the tiny vocabulary; AutoModelForRanking routes to the LLM ranker.
    with pytest.raises(ValueError, match="target_token 'Yes' is not in the tokenizer's vocabulary"):
        LLMRanker.from_pretrained(tiny_llama_path, device="cpu")
    with pytest.raises(ValueError, match="target_token 'Yes'"):
        AutoModelForRanking.from_pretrained(tiny_llama_path, causal_lm=True, device="cpu")


def test_layout_is_bos_query_document_prompt(ranker: LLMRanker) -> None:
    tokenizer = ranker.tokenizer
    ids, types = ranker.tokenize_pairs([PAIRS[0]])[0]
    assert types is None
    assert ids[0] == tokenizer.bos_token_id
    words = tokenizer.convert_ids_to_tokens(ids)
    assert words[1:6] == ["a", "<unk>", "what", "is", "a"]  # "A: what is a cell" (":" is unknown)
    prompt_ids = tokenizer(DEFAULT_LLM_RANKING_PROMPT, add_special_tokens=False)["input_ids"]
    assert ids[-len(prompt_ids) :] == prompt_ids


def test_a_long_document_keeps_the_prompt_whole(ranker: LLMRanker) -> None:
    ids, _ = ranker.tokenize_pairs([("cell", "gene " * 1000)])[0]
    prompt_ids = ranker.tokenizer(ranker.prompt, add_special_tokens=False)["input_ids"]
    assert len(ids) == ranker.max_length
    assert ids[-len(prompt_ids) :] == prompt_ids


def test_the_score_is_the_target_logit_of_a_manual_forward(ranker: LLMRanker) -> None:
    rows = ranker.tokenize_pairs(PAIRS)
    expected = [_manual_score(ranker, ids) for ids, _ in rows]
    np.testing.assert_allclose(ranker.compute_score(PAIRS), expected, atol=1e-5)
    assert ranker.compute_score(PAIRS[0]) == pytest.approx(expected[0], abs=1e-5)
    assert ranker.compute_score(PAIRS[0], normalize=True) == pytest.approx(
        1 / (1 + np.exp(-expected[0])), abs=1e-6
    )


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_forward_reads_the_true_last_token_on_either_padding_side(
    ranker: LLMRanker, padding_side: str
) -> None:
    rows = [ids for ids, _ in ranker.tokenize_pairs(PAIRS)]
    assert len({len(ids) for ids in rows}) > 1  # the batch is padded
    input_ids, attention_mask = pad_sequences(rows, ranker.tokenizer.pad_token_id, padding_side)
    with torch.no_grad():
        scores = ranker(input_ids, attention_mask)
    np.testing.assert_allclose(scores.numpy(), [_manual_score(ranker, ids) for ids in rows], atol=1e-5)


def test_left_and_right_padding_give_the_same_scores(tiny_llama_path: Path) -> None:
    model = LLMRanker.from_pretrained(tiny_llama_path, target_token=TARGET, device="cpu")
    model.tokenizer.padding_side = "left"
    left = model.compute_score(PAIRS, batch_size=8)
    model.tokenizer.padding_side = "right"
    right = model.compute_score(PAIRS, batch_size=8)
    np.testing.assert_allclose(left, right, atol=1e-5)
    np.testing.assert_allclose(model.compute_score(PAIRS, token_budget=16, batch_size=2), right, atol=1e-5)


def test_only_the_last_positions_go_through_the_lm_head(ranker: LLMRanker) -> None:
    shapes: list[tuple[int, ...]] = []
    hook = ranker.model.get_output_embeddings().register_forward_hook(
        lambda module, inputs, output: shapes.append(tuple(inputs[0].shape))
    )
    try:
        ranker.compute_score(PAIRS, batch_size=8)
    finally:
        hook.remove()
    assert shapes and all(len(shape) == 2 for shape in shapes)  # (batch, hidden): no sequence dimension
    assert sum(shape[0] for shape in shapes) == len(PAIRS)


def test_a_long_document_is_scored_by_its_best_window_even_at_its_end(tiny_llama_path: Path) -> None:
    model = LLMRanker.from_pretrained(
        tiny_llama_path, target_token=TARGET, device="cpu", max_length=48, document_instruction=""
    )
    query = "cancer"
    query_ids = model.tokenizer(query, add_special_tokens=False)["input_ids"]
    # Find a tail whose window beats every window of filler, so the document's relevant part is its end.
    for word in ("cancer", "study", "risk", "gene", "protein", "brain", "cell", "human"):
        document = "the " * 40 + (word + " ") * 6
        document_ids = model.tokenizer(document, add_special_tokens=False)["input_ids"]
        rows = model._pair_rows(query_ids, document_ids, model.settings.max_windows)
        window_scores = [_manual_score(model, ids) for ids, _ in rows]
        if len(rows) > 2 and int(np.argmax(window_scores)) == len(rows) - 1:
            break
    else:
        pytest.fail("no tail made the last window the best; change the candidates")
    assert model.compute_score((query, document)) == pytest.approx(max(window_scores), abs=1e-5)
    truncated = LLMRanker.from_pretrained(
        tiny_llama_path,
        target_token=TARGET,
        device="cpu",
        max_length=48,
        document_instruction="",
        max_windows=1,
    )
    assert truncated.compute_score((query, document)) == pytest.approx(window_scores[0], abs=1e-5)
    assert model.compute_score((query, document)) > truncated.compute_score((query, document))


def test_edge_cases(ranker: LLMRanker) -> None:
    assert ranker.compute_score([]) == []
    assert ranker.rerank("cell", []) == []
    results = ranker.rerank("cell", ["the cell", "", "gene"], top_k=10)
    assert sorted(result.index for result in results) == [0, 1, 2]
    assert [result.score for result in results] == sorted((result.score for result in results), reverse=True)
    assert type(ranker.compute_score(("", ""))) is float
    with pytest.raises(TypeError, match=r"pairs\[0\]\[1\] is bytes"):
        ranker.compute_score([("q", b"d")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"documents\[0\] is int"):
        ranker.rerank("q", [1])  # type: ignore[list-item]


def test_save_and_reload_keep_the_settings(ranker: LLMRanker, tmp_path: Path) -> None:
    ranker.save_pretrained(tmp_path)
    assert json.loads((tmp_path / CONFIG_FILE_NAME).read_text())["model_kind"] == "llm_ranker"
    assert (tmp_path / "model.safetensors").is_file()
    # The saved kind wins: the folder loads as an LLM ranker even without causal_lm=True.
    reloaded = AutoModelForRanking.from_pretrained(tmp_path, device="cpu")
    assert isinstance(reloaded, LLMRanker)
    assert reloaded.settings == ranker.settings
    np.testing.assert_allclose(reloaded.compute_score(PAIRS), ranker.compute_score(PAIRS), atol=1e-6)
    custom = LLMRanker.from_pretrained(tmp_path, device="cpu", prompt="is it relevant", max_length=64)
    assert custom.settings.target_token == TARGET
    assert custom.settings.prompt == "is it relevant"
    through_auto = AutoModelForRanking.from_pretrained(tmp_path, causal_lm=True, max_length=64, max_windows=2)
    assert isinstance(through_auto, LLMRanker)
    assert (through_auto.max_length, through_auto.settings.max_windows) == (64, 2)
    with pytest.raises(ValueError, match="num_labels"):
        AutoModelForRanking.from_pretrained(tmp_path, causal_lm=True, num_labels=2)


def test_forward_keeps_gradients_for_training(ranker: LLMRanker) -> None:
    ids, _ = ranker.tokenize_pairs([PAIRS[0]])[0]
    scores = ranker(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
    assert scores.shape == (1,)
    assert scores.requires_grad
