"""HybridSearch: the one orchestration of dense search, BM25 fusion (RRF) and reranking."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from retrievals_rag.retrieval.fusion import fuse_rankings, interpolate_scores
from retrievals_rag.retrieval.hybrid import Candidate, HybridSearch

TEXTS = {"a": "apple pie", "b": "banana bread", "c": "cherry tart", "d": "date cake", "e": "elder wine"}
DENSE_ORDER = ["a", "b", "c", "d", "e"]
LEXICAL_ORDER = ["e", "c"]


class Stage:
    """A first stage with a fixed order; records what it was asked for."""

    def __init__(self, order: list[str], scores: list[float]) -> None:
        self.order, self.scores = order, scores
        self.calls: list[tuple[str, int]] = []

    def __call__(self, query: str, n: int) -> list[Candidate]:
        self.calls.append((query, n))
        return [
            Candidate(doc_id, TEXTS[doc_id], score, {"id": doc_id})
            for doc_id, score in zip(self.order, self.scores, strict=True)
        ][:n]


def dense_stage() -> Stage:
    return Stage(DENSE_ORDER, [0.9, 0.8, 0.7, 0.6, 0.5])


def lexical_stage() -> Stage:
    return Stage(LEXICAL_ORDER, [7.5, 2.0])


class LengthScorer:
    """Scores a text by its length (so 'elder wine' and 'banana bread' lead); records its inputs."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, query: str, texts: Sequence[str]) -> list[float]:
        self.calls.append(list(texts))
        return [float(len(text)) for text in texts]


def test_dense_only_asks_for_top_k_and_keeps_the_dense_scores_and_ranks() -> None:
    dense = dense_stage()
    hits = HybridSearch(dense, top_k=3, candidates=10).search("q")

    assert dense.calls == [("q", 3)]
    assert [hit.id for hit in hits] == ["a", "b", "c"]
    assert [hit.rank for hit in hits] == [1, 2, 3] == [hit.dense_rank for hit in hits]
    assert [hit.retrieval_score for hit in hits] == [0.9, 0.8, 0.7] == [hit.score for hit in hits]
    assert all(type(hit.retrieval_score) is float and not hit.fused for hit in hits)
    assert all(hit.bm25_rank is None and hit.rerank_score is None for hit in hits)


def test_fusion_takes_candidates_from_each_stage_and_keeps_each_score() -> None:
    dense, lexical = dense_stage(), lexical_stage()
    search = HybridSearch(dense, lexical=lexical, top_k=3, candidates=4, rrf_k=60)

    hits = search.search("q")

    assert dense.calls == [("q", 4)] and lexical.calls == [("q", 4)]
    expected = fuse_rankings([DENSE_ORDER[:4], LEXICAL_ORDER], k=60)[:3]
    assert [(hit.id, hit.retrieval_score) for hit in hits] == [
        (doc_id, pytest.approx(s)) for doc_id, s in expected
    ]
    by_id = {hit.id: hit for hit in hits}
    assert by_id["c"].dense_rank == 3 and by_id["c"].bm25_rank == 2 and by_id["c"].bm25_score == 2.0
    assert by_id["a"].bm25_rank is None and by_id["a"].bm25_score is None and by_id["a"].dense_score == 0.9
    assert all(hit.fused for hit in hits)
    # 'e' is found by BM25 only (dense stopped at 4): it carries BM25's item and no dense score
    all_hits = search.search("q", top_k=4)
    only_bm25 = next(hit for hit in all_hits if hit.id == "e")
    assert only_bm25.dense_score is None and only_bm25.dense_rank is None and only_bm25.item == {"id": "e"}


def test_items_are_carried_not_copied() -> None:
    item = {"id": "a"}

    def dense(query: str, n: int) -> list[Candidate]:
        return [Candidate("a", "apple", 1.0, item)]

    assert HybridSearch(dense).search("q")[0].item is item


def test_reranking_scores_the_candidates_and_keeps_the_retrieval_score() -> None:
    dense, scorer = dense_stage(), LengthScorer()
    search = HybridSearch(dense, reranker=scorer, top_k=2, candidates=4)

    hits = search.search("q")

    assert dense.calls == [("q", 4)]
    assert scorer.calls == [[TEXTS[doc_id] for doc_id in DENSE_ORDER[:4]]]
    assert [hit.id for hit in hits] == [
        "b",
        "c",
    ]  # 'banana bread' (12), then 'cherry tart' (11) before 'date cake'
    assert [hit.rank for hit in hits] == [1, 2]
    assert hits[0].rerank_score == 12.0 == hits[0].score and hits[0].retrieval_score == 0.8
    assert hits[0].retrieval_rank == 2 and hits[0].dense_rank == 2


def test_rerank_ties_keep_the_first_stage_order_and_the_threshold_drops() -> None:
    def flat(query: str, texts: Sequence[str]) -> list[float]:
        return [1.0 if "a" in text else 0.0 for text in texts]

    hits = HybridSearch(dense_stage(), reranker=flat, top_k=5, rerank_threshold=0.5).search("q")

    assert [hit.id for hit in hits] == ["a", "b", "c", "d"]  # ties keep the dense order; "elder wine" dropped
    none_kept = HybridSearch(dense_stage(), reranker=flat, rerank_threshold=2.0).search("q")
    assert none_kept == []


def test_a_rerank_weight_below_one_mixes_the_standardised_scores_and_keeps_each_one() -> None:
    # dense: a 0.9, b 0.8, c 0.7, d 0.6; lengths: a 9, b 12, c 11, d 9
    alone = HybridSearch(dense_stage(), reranker=LengthScorer(), top_k=4, candidates=4).search("q")
    mixed = HybridSearch(
        dense_stage(), reranker=LengthScorer(), top_k=4, candidates=4, rerank_weight=0.5
    ).search("q")
    first = HybridSearch(
        dense_stage(), reranker=LengthScorer(), top_k=4, candidates=4, rerank_weight=0.0
    ).search("q")

    assert [hit.id for hit in alone] == ["b", "c", "a", "d"]
    assert all(hit.interpolated_score is None for hit in alone)
    expected = dict(
        zip("abcd", interpolate_scores([0.9, 0.8, 0.7, 0.6], [9.0, 12.0, 11.0, 9.0], 0.5), strict=True)
    )
    assert (
        [hit.id for hit in mixed]
        == sorted(expected, key=lambda doc_id: -expected[doc_id])
        == ["b", "a", "c", "d"]
    )
    for hit in mixed:
        assert hit.score == hit.interpolated_score == pytest.approx(expected[hit.id])
        assert hit.rerank_score == float(len(TEXTS[hit.id])) and hit.retrieval_score == hit.dense_score
    assert [hit.id for hit in first] == DENSE_ORDER[:4]  # the first stage's order, rerank scores kept
    assert first[0].rerank_score == 9.0
    # the threshold still reads the reranker's own score
    kept = HybridSearch(
        dense_stage(),
        reranker=LengthScorer(),
        top_k=4,
        candidates=4,
        rerank_weight=0.5,
        rerank_threshold=10.0,
    ).search("q")
    assert [hit.id for hit in kept] == ["b", "c"]


def test_complete_is_search_with_the_dense_answer_given() -> None:
    search = HybridSearch(
        dense_stage(), lexical=lexical_stage(), reranker=LengthScorer(), top_k=3, candidates=4
    )

    dense = dense_stage()("q", search.first_stage_size())

    assert search.complete("q", dense) == search.search("q")
    assert search.first_stage_size(10) == 10 and HybridSearch(dense_stage(), top_k=2).first_stage_size() == 2


def test_bad_knobs_and_a_scorer_that_loses_documents() -> None:
    for options, message in (
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"candidates": 0}, "candidates must be an integer >= 1"),
        ({"rrf_k": -1}, "rrf_k must be an integer >= 0"),
        ({"top_k": True}, "top_k"),
        ({"rerank_weight": 1.5}, r"rerank_weight must be a number in \[0, 1\], got 1.5"),
        ({"rerank_weight": -0.1}, "rerank_weight"),
        ({"rerank_weight": float("nan")}, "rerank_weight"),
        ({"rerank_weight": True}, "rerank_weight"),
    ):
        with pytest.raises(ValueError, match=message):
            HybridSearch(dense_stage(), **options)
    with pytest.raises(ValueError, match="top_k"):
        HybridSearch(dense_stage()).search("q", top_k=0)
    with pytest.raises(ValueError, match="returned 1 scores for 5 documents"):
        HybridSearch(dense_stage(), reranker=lambda query, texts: [1.0]).search("q")
    assert HybridSearch(lambda query, n: [], reranker=LengthScorer()).search("q") == []


@pytest.mark.parametrize("rerank_weight", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("nan_at", [0, 3])
def test_a_nan_rerank_score_is_refused_whatever_the_reranker_s_share(
    rerank_weight: float, nan_at: int
) -> None:
    def one_nan(query: str, texts: Sequence[str]) -> list[float]:
        return [float("nan") if index == nan_at else float(index) for index in range(len(texts))]

    search = HybridSearch(dense_stage(), reranker=one_nan, top_k=2, candidates=5, rerank_weight=rerank_weight)

    with pytest.raises(ValueError, match=r"^a reranked score is NaN$"):
        search.search("q")
