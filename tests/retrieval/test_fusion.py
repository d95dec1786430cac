from __future__ import annotations

import pytest

from retrievals_rag.retrieval.fusion import (
    fuse_rankings,
    interpolate_runs,
    rank_scores,
    reciprocal_rank_fusion,
)


def test_hand_computed_example() -> None:
    bm25_run = {"q1": {"d1": 12.0, "d2": 9.5, "d3": 1.0}}
    dense_run = {"q1": {"d3": 0.9, "d1": 0.8, "d4": 0.1}}
    # ranks: d1 (1, 2), d2 (2, -), d3 (3, 1), d4 (-, 3)
    expected = {
        "d1": 1 / 61 + 1 / 62,
        "d3": 1 / 63 + 1 / 61,
        "d2": 1 / 62,
        "d4": 1 / 63,
    }

    fused = reciprocal_rank_fusion([bm25_run, dense_run])

    assert list(fused) == ["q1"]
    assert list(fused["q1"]) == ["d1", "d3", "d2", "d4"]
    assert fused["q1"] == pytest.approx(expected, abs=1e-15)


def test_weights_and_k() -> None:
    first = {"q": {"a": 2.0, "b": 1.0}}
    second = {"q": {"b": 2.0, "a": 1.0}}

    fused = reciprocal_rank_fusion([first, second], k=0, weights=[1.0, 3.0])

    assert fused == {"q": pytest.approx({"b": 1 / 2 + 3 / 1, "a": 1 / 1 + 3 / 2})}
    assert list(fused["q"]) == ["b", "a"]
    assert list(reciprocal_rank_fusion([first, second], k=0, weights=[3.0, 1.0])["q"]) == ["a", "b"]


def test_document_in_one_run_only_gets_that_runs_share() -> None:
    fused = reciprocal_rank_fusion([{"q": {"shared": 1.0, "only": 0.5}}, {"q": {"shared": 3.0}}], k=10)
    assert fused["q"]["only"] == pytest.approx(1 / 12)
    assert fused["q"]["shared"] == pytest.approx(2 / 11)


def test_queries_from_every_run_are_kept() -> None:
    fused = reciprocal_rank_fusion([{"q1": {"a": 1.0}}, {"q2": {"b": 1.0}, "q3": {}}])
    assert fused == {"q1": {"a": pytest.approx(1 / 61)}, "q2": {"b": pytest.approx(1 / 61)}, "q3": {}}


def test_ties_rank_by_document_id_descending() -> None:
    # Within a run, "b" outranks "a" on equal scores (trec_eval's order).
    fused = reciprocal_rank_fusion([{"q": {"a": 1.0, "b": 1.0}}], k=0)
    assert fused["q"] == {"b": 1.0, "a": 0.5}
    # Equal fused scores: document id descending in the output too.
    assert fuse_rankings([["x", "m"], ["m", "x"]]) == [
        ("x", pytest.approx(1 / 61 + 1 / 62)),
        ("m", pytest.approx(1 / 61 + 1 / 62)),
    ]


def test_top_k_truncates_each_query() -> None:
    runs = [{"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"q": {"c": 3.0, "d": 2.0}}]
    assert list(reciprocal_rank_fusion(runs, top_k=2)["q"]) == ["c", "a"]


def test_fuse_rankings_matches_reciprocal_rank_fusion() -> None:
    rankings = [["a", "b", "c"], ["c", "a"], ["d"]]
    runs = [{"q": {doc_id: -float(rank) for rank, doc_id in enumerate(ranking)}} for ranking in rankings]
    weights = [0.5, 2.0, 1.0]

    assert fuse_rankings(rankings, k=5, weights=weights) == list(
        reciprocal_rank_fusion(runs, k=5, weights=weights)["q"].items()
    )


def test_empty_inputs() -> None:
    assert reciprocal_rank_fusion([]) == {}
    assert fuse_rankings([]) == []
    assert fuse_rankings([[], []]) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"weights": [1.0]}, "got 1 weights for 2 runs"),
        ({"weights": [1.0, -1.0]}, "weights must be finite and >= 0"),
        ({"k": -1}, "k must be a number >= 0, got -1"),
        ({"top_k": 0}, "top_k must be an integer >= 1 or None, got 0"),
    ],
)
def test_invalid_options_raise(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reciprocal_rank_fusion([{"q": {"a": 1.0}}, {"q": {"a": 1.0}}], **arguments)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="run 1 has a NaN score for query 'q'"):
        reciprocal_rank_fusion([{"q": {"a": 1.0}}, {"q": {"a": float("nan")}}])
    with pytest.raises(ValueError, match="ranking 0 lists a document id more than once"):
        fuse_rankings([["a", "b", "a"]])
    with pytest.raises(TypeError, match="not strings"):
        fuse_rankings(["abc"])


# ---------------------------------------------------------------- a reranker interpolated with its first stage


FIRST = {"q1": {"a": 0.90, "b": 0.80, "c": 0.70, "d": 0.10}, "q2": {"x": 0.5, "y": 0.4}}
RERANK = {"q1": {"a": 1.0, "b": 9.0, "c": 8.0, "d": 8.5}, "q2": {"x": 2.0, "y": 2.0}}


def test_interpolation_ends_are_the_first_stage_and_the_reranker() -> None:
    alone = interpolate_runs(FIRST, RERANK, 1.0)
    assert list(alone["q1"]) == ["b", "d", "c", "a"]
    assert list(interpolate_runs(FIRST, RERANK, 0.0)["q1"]) == ["a", "b", "c", "d"]
    # scale-free: a reranker's logits times 100 give the same order at every weight
    scaled = {q: {d: 100 * s for d, s in hits.items()} for q, hits in RERANK.items()}
    for weight in (0.25, 0.5, 0.75):
        assert list(interpolate_runs(FIRST, scaled, weight)["q1"]) == list(
            interpolate_runs(FIRST, RERANK, weight)["q1"]
        )


def test_interpolation_mixes_the_standardised_scores() -> None:
    mixed = interpolate_runs(FIRST, RERANK, 0.5)["q1"]
    # d: the reranker likes it, the first stage puts it far last: the mix keeps it below b and c
    assert list(mixed) == ["b", "c", "a", "d"]
    # a reranker that cannot tell two documents apart leaves the first stage's order
    assert list(interpolate_runs(FIRST, RERANK, 0.5)["q2"]) == ["x", "y"]


def test_interpolation_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"weight must be a number in \[0, 1\]"):
        interpolate_runs(FIRST, RERANK, 1.5)
    with pytest.raises(ValueError, match="query 'q1': 1 reranked documents have no first-stage score"):
        interpolate_runs(FIRST, {"q1": {"a": 1.0, "zz": 2.0}}, 0.5)
    with pytest.raises(ValueError, match="query 'q1': a reranked score is NaN"):
        interpolate_runs(FIRST, {"q1": {"a": float("nan")}}, 0.5)
    assert interpolate_runs(FIRST, {"q3": {}}, 0.5) == {"q3": {}}


def test_rank_scores_refuses_a_nan_score_or_key_wherever_it_is() -> None:
    nan = float("nan")
    for scores in ([nan, 1.0, 2.0], [1.0, 2.0, nan], [nan]):
        with pytest.raises(ValueError, match=r"^a reranked score is NaN$"):
            rank_scores(scores, top_n=1, score_threshold=None)
    with pytest.raises(ValueError, match=r"^a reranked score is NaN$"):
        rank_scores([1.0, nan], top_n=None, score_threshold=0.5, order_by=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"^an ordering key is NaN$"):
        rank_scores([1.0, 2.0], top_n=None, score_threshold=None, order_by=[nan, 2.0])
    assert rank_scores([1.0, float("inf")], top_n=None, score_threshold=None) == [(1, float("inf")), (0, 1.0)]
