"""The chat model as a query-likelihood reranker (UPR): ``query_likelihood_ranker`` finds the model and returns an
``LLMRanker`` scoring query likelihood (the scoring itself is tested in tests/models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrievals_rag import LLMRanker
from retrievals_rag.llm.query_likelihood import QUERY_LIKELIHOOD_MAX_LENGTH, query_likelihood_ranker

PASSAGE = "the cell divides and the protein folds in the cell"


def test_a_transformers_folder_loads_as_a_query_likelihood_llm_ranker(tiny_llama_path: Path) -> None:
    ranker = query_likelihood_ranker(tiny_llama_path, prompt="answers :", device="cpu")
    assert isinstance(ranker, LLMRanker) and ranker.scoring == "query_likelihood"
    assert ranker.prompt == "answers :" and ranker.settings.max_windows == 1
    assert ranker.max_length == QUERY_LIKELIHOOD_MAX_LENGTH
    [score] = ranker.compute_score([("the protein folds", PASSAGE)])
    assert score < 0
    longer = query_likelihood_ranker(tiny_llama_path, max_length=64, max_windows=3, device="cpu")
    assert (longer.max_length, longer.settings.max_windows) == (64, 3)


def test_a_folder_without_a_model_is_named(tmp_path: Path) -> None:
    from retrievals_rag.llm.base import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match=r"config\.json is missing"):
        query_likelihood_ranker(tmp_path)


def test_bad_options_are_refused(tiny_llama_path: Path) -> None:
    with pytest.raises(ValueError, match="max_windows must be an int >= 1"):
        query_likelihood_ranker(tiny_llama_path, max_windows=0, device="cpu")
    with pytest.raises(ValueError, match="leaves no room for query and document"):
        query_likelihood_ranker(tiny_llama_path, max_length=4, device="cpu")


@pytest.mark.slow
def test_smollm2_prefers_the_passage_a_question_was_written_about() -> None:
    ranker = query_likelihood_ranker(device="cpu")
    question = "Does aspirin lower the risk of heart attacks?"
    relevant = (
        "In a trial of 22,000 physicians, taking aspirin every other day cut heart attacks by 44 percent."
    )
    unrelated = (
        "The Baroque violin has a shorter fingerboard and gut strings, and is played without a chin rest."
    )
    on_topic, off_topic = ranker.compute_score([(question, relevant), (question, unrelated)])
    assert on_topic > off_topic + 0.2
    ids, mask = ranker.tokenize_pairs([(question, relevant)])[0]
    text = ranker.tokenizer.decode(ids)
    assert text.startswith("Passage: In a trial") and text.endswith(
        "\nA question or claim about this passage: Does aspirin lower the risk of heart attacks?"
    )
    assert ranker.tokenizer.decode([token for token, flag in zip(ids, mask, strict=True) if flag]) == (
        " Does aspirin lower the risk of heart attacks?"
    )
