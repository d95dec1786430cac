"""The LLM ranker's query-likelihood scoring (UPR) on a tiny random Llama: the mean log-probability of the query's
tokens after the document and the prompt, checked against the causal LM's own full forward."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from retrievals_rag import LLMRanker
from retrievals_rag.models.config import (
    CONFIG_FILE_NAME,
    QUERY_LIKELIHOOD_DOCUMENT_INSTRUCTION,
    QUERY_LIKELIHOOD_PROMPT,
    LLMRankerSettings,
)
from retrievals_rag.models.llm_ranking import LIKELIHOOD_POSITIONS_PER_STEP

PAIRS = [
    ("what is a cell", "the cell is the unit of the human brain"),
    ("cancer risk", "patients with a gene study"),
    ("the protein", ""),
    ("treatment effect in patients", "results " * 30),
    ("how does the gene change the risk of cancer in patients", "the protein"),
]


@pytest.fixture(scope="module")
def ranker(tiny_llama_path: Path) -> LLMRanker:
    return LLMRanker.from_pretrained(tiny_llama_path, scoring="query_likelihood", device="cpu")


def _reference(ranker: LLMRanker, ids: list[int], query_mask: list[int]) -> float:
    """The mean log-probability of the masked tokens, from the model's own full-vocabulary forward."""
    with torch.no_grad():
        log_probs = ranker.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    positions = [position for position, flag in enumerate(query_mask) if flag and position > 0]
    return float(sum(log_probs[position - 1, ids[position]] for position in positions) / len(positions))


def test_defaults_and_layout(ranker: LLMRanker) -> None:
    assert ranker.scoring == "query_likelihood" and ranker.target_token_id is None
    assert not ranker.scores_are_logits  # its sigmoid would be no probability: the engine shows it as a score
    assert ranker.prompt == QUERY_LIKELIHOOD_PROMPT
    assert ranker.settings.query_instruction is None
    assert ranker.settings.document_instruction == QUERY_LIKELIHOOD_DOCUMENT_INSTRUCTION
    tokenizer = ranker.tokenizer
    ids, mask = ranker.tokenize_pairs([PAIRS[0]])[0]
    assert mask is not None and len(mask) == len(ids)
    query_ids = tokenizer("what is a cell", add_special_tokens=False).input_ids
    document_ids = tokenizer(PAIRS[0][1], add_special_tokens=False).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-len(query_ids) :] == query_ids and mask == [0] * (len(ids) - len(query_ids)) + [1] * len(
        query_ids
    )
    start = ids.index(document_ids[0])  # "Passage: " (unknown words here) before it
    assert ids[start : start + len(document_ids)] == document_ids and start > 1
    assert "scoring='query_likelihood'" in repr(ranker)


def test_scores_are_the_causal_lm_s_mean_log_probability_of_the_query(ranker: LLMRanker) -> None:
    scores = ranker.compute_score(PAIRS)
    for score, (ids, mask) in zip(scores, ranker.tokenize_pairs(PAIRS), strict=True):
        assert score == pytest.approx(_reference(ranker, ids, mask), abs=1e-5)
        assert score < 0
    assert ranker.compute_score(PAIRS, normalize=True) == pytest.approx(np.exp(scores), rel=1e-5)


def test_padding_side_batching_and_chunked_head_do_not_change_a_score(
    tiny_llama_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = LLMRanker.from_pretrained(tiny_llama_path, scoring="query_likelihood", device="cpu")
    one_by_one = [model.compute_score(pair) for pair in PAIRS]
    model.tokenizer.padding_side = "left"
    left = model.compute_score(PAIRS, batch_size=8)
    model.tokenizer.padding_side = "right"
    right = model.compute_score(PAIRS, batch_size=8)
    np.testing.assert_allclose(left, one_by_one, atol=1e-5)
    np.testing.assert_allclose(right, one_by_one, atol=1e-5)
    monkeypatch.setattr("retrievals_rag.models.llm_ranking.LIKELIHOOD_POSITIONS_PER_STEP", 3)
    np.testing.assert_allclose(
        model.compute_score(PAIRS, token_budget=64, batch_size=2), one_by_one, atol=1e-5
    )
    assert LIKELIHOOD_POSITIONS_PER_STEP >= 3


def test_only_query_positions_go_through_the_lm_head(ranker: LLMRanker) -> None:
    rows: list[int] = []
    hook = ranker.model.get_output_embeddings().register_forward_hook(
        lambda module, inputs, output: rows.append(inputs[0].shape[0])
    )
    try:
        ranker.compute_score(PAIRS, batch_size=8)
    finally:
        hook.remove()
    query_tokens = sum(sum(mask) for _, mask in ranker.tokenize_pairs(PAIRS))  # type: ignore[arg-type]
    assert sum(rows) == query_tokens


def test_an_empty_query_a_long_document_and_a_long_query(ranker: LLMRanker) -> None:
    empty, long_document, long_query = ranker.compute_score(
        [("", "the cell"), ("cell", "gene " * 1000), ("protein " * 400, "the cell")]
    )
    assert empty == float("-inf") and ranker.compute_score(("", "cell"), normalize=True) == 0.0
    assert math.isfinite(long_document) and math.isfinite(long_query)
    for ids, _ in ranker.tokenize_pairs([("cell", "gene " * 1000), ("protein " * 400, "the cell")]):
        assert len(ids) <= ranker.max_length


def test_the_best_window_of_a_long_document_counts(tiny_llama_path: Path) -> None:
    windows = LLMRanker.from_pretrained(
        tiny_llama_path, scoring="query_likelihood", device="cpu", max_length=40, max_windows=8
    )
    first = LLMRanker.from_pretrained(
        tiny_llama_path, scoring="query_likelihood", device="cpu", max_length=40, max_windows=1
    )
    document = "the study of the brain " * 12 + "cancer risk in patients " * 3
    assert windows.compute_score(("cancer risk", document)) >= first.compute_score(("cancer risk", document))


def test_ranking_order_follows_the_scores(ranker: LLMRanker) -> None:
    documents = [document for _, document in PAIRS]
    results = ranker.rerank("cancer risk", documents)
    scores = ranker.compute_score([("cancer risk", document) for document in documents])
    assert [result.index for result in results] == sorted(range(len(documents)), key=lambda i: -scores[i])


def test_training_forward_is_refused(ranker: LLMRanker) -> None:
    ids, _ = ranker.tokenize_pairs([PAIRS[0]])[0]
    with pytest.raises(ValueError, match="query-likelihood scoring is zero-shot and is not trained"):
        ranker(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))


def test_a_query_instruction_is_refused() -> None:
    with pytest.raises(ValueError, match="query_instruction='A: ' cannot be used with query-likelihood"):
        LLMRankerSettings(max_length=64, query_instruction="A: ", scoring="query_likelihood")
    with pytest.raises(ValueError, match="scoring must be one of target_token, query_likelihood"):
        LLMRankerSettings(max_length=64, scoring="likelihood")  # type: ignore[arg-type]


def test_scoring_is_saved_and_another_scoring_s_prompt_is_not_carried_over(
    ranker: LLMRanker, tiny_llama_path: Path, tmp_path: Path
) -> None:
    ranker.save_pretrained(tmp_path / "likelihood")
    assert '"scoring": "query_likelihood"' in (tmp_path / "likelihood" / CONFIG_FILE_NAME).read_text()
    reloaded = LLMRanker.from_pretrained(tmp_path / "likelihood", device="cpu")
    assert reloaded.scoring == "query_likelihood" and reloaded.prompt == QUERY_LIKELIHOOD_PROMPT
    assert reloaded.compute_score(PAIRS) == pytest.approx(ranker.compute_score(PAIRS), abs=1e-6)

    yes_no = LLMRanker.from_pretrained(tiny_llama_path, target_token="relevant", max_length=128, device="cpu")
    yes_no.save_pretrained(tmp_path / "target")
    switched = LLMRanker.from_pretrained(tmp_path / "target", scoring="query_likelihood", device="cpu")
    assert switched.prompt == QUERY_LIKELIHOOD_PROMPT and switched.settings.query_instruction is None
    assert switched.max_length == 128  # length and windows kept
    back = LLMRanker.from_pretrained(tmp_path / "likelihood", scoring="target_token", target_token="relevant")
    assert back.scoring == "target_token" and back.settings.query_instruction == "A: "


def test_auto_model_for_ranking_passes_the_llm_options_and_refuses_them_for_a_cross_encoder(
    ranker: LLMRanker, tiny_llama_path: Path, tiny_bert_path: Path
) -> None:
    from retrievals_rag import AutoModelForRanking

    through_auto = AutoModelForRanking.from_pretrained(
        tiny_llama_path, causal_lm=True, scoring="query_likelihood", device="cpu"
    )
    assert isinstance(through_auto, LLMRanker) and through_auto.scoring == "query_likelihood"
    np.testing.assert_allclose(through_auto.compute_score(PAIRS), ranker.compute_score(PAIRS), atol=1e-6)
    asked = AutoModelForRanking.from_pretrained(
        tiny_llama_path, causal_lm=True, prompt="is it relevant", target_token="relevant", device="cpu"
    )
    assert (asked.settings.prompt, asked.settings.target_token, asked.scoring) == (
        "is it relevant",
        "relevant",
        "target_token",
    )
    with pytest.raises(ValueError, match=r"scoring is for LLM rankers: .* causal_lm=True"):
        AutoModelForRanking.from_pretrained(tiny_bert_path, scoring="query_likelihood")
