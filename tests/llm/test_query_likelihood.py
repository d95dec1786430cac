"""The query-likelihood reranker (UPR): a causal LM's mean log-probability of the query after the passage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from retrievals_rag.llm.query_likelihood import QueryLikelihoodRanker

PASSAGE = "the cell divides and the protein folds in the cell"


def test_scores_are_mean_token_log_probabilities_of_the_query_after_the_prompt(tiny_llama_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ranker = QueryLikelihoodRanker(tiny_llama_path, prompt="{passage} :", device="cpu")
    [score] = ranker.compute_score([("the protein folds", PASSAGE)])

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()
    prefix = tokenizer(f"{PASSAGE} :", add_special_tokens=False).input_ids
    query = tokenizer(" the protein folds", add_special_tokens=False).input_ids
    with torch.no_grad():
        log_probs = model(torch.tensor([prefix + query])).logits[0].log_softmax(-1)
    expected = sum(log_probs[len(prefix) - 1 + i, token] for i, token in enumerate(query)) / len(query)
    assert score == pytest.approx(float(expected), abs=1e-5)
    assert score < 0


def test_batching_and_padding_do_not_change_a_score(tiny_llama_path: Path) -> None:
    ranker = QueryLikelihoodRanker(tiny_llama_path, device="cpu")
    pairs = [
        ("the protein folds", PASSAGE),
        ("cell", "a much longer passage " * 20),
        ("what divides the cell and why does it divide", "cell"),
    ]
    one_by_one = [ranker.compute_score([pair])[0] for pair in pairs]
    assert ranker.compute_score(pairs, batch_size=3) == pytest.approx(one_by_one, abs=1e-5)


def test_a_passage_longer_than_the_context_is_cut_and_the_query_kept_whole(tiny_llama_path: Path) -> None:
    # 256 positions in the tiny model: 400 words of passage cannot fit, the query still scores
    ranker = QueryLikelihoodRanker(tiny_llama_path, max_passage_words=1000, device="cpu")
    [long, long_query, empty] = ranker.compute_score(
        [("the protein folds", "cell " * 400), ("protein " * 300, PASSAGE), ("", PASSAGE)]
    )
    assert math.isfinite(long) and long < 0 and math.isfinite(long_query)
    assert empty == float("-inf")


def test_a_prompt_may_hold_other_braces(tiny_llama_path: Path) -> None:
    ranker = QueryLikelihoodRanker(tiny_llama_path, prompt="{json} {passage} {0} :", device="cpu")
    [score] = ranker.compute_score([("the protein folds", PASSAGE)])
    assert math.isfinite(score)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt": "Passage without a slot:"}, r"\{passage\} placeholder"),
        ({"max_passage_words": 0}, "max_passage_words must be an integer >= 1"),
        ({"batch_size": True}, "batch_size must be an integer >= 1"),
    ],
)
def test_bad_options_are_refused_when_made(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QueryLikelihoodRanker(**options)


def test_a_folder_without_a_model_is_named(tmp_path: Path) -> None:
    from retrievals_rag.llm.base import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match=r"config\.json is missing"):
        QueryLikelihoodRanker(tmp_path).compute_score([("q", "p")])


@pytest.mark.slow
def test_smollm2_prefers_the_passage_a_question_was_written_about() -> None:
    ranker = QueryLikelihoodRanker(device="cpu")
    question = "Does aspirin lower the risk of heart attacks?"
    relevant = (
        "In a trial of 22,000 physicians, taking aspirin every other day cut heart attacks by 44 percent."
    )
    unrelated = (
        "The Baroque violin has a shorter fingerboard and gut strings, and is played without a chin rest."
    )
    on_topic, off_topic = ranker.compute_score([(question, relevant), (question, unrelated)])
    assert on_topic > off_topic + 0.2
