"""HybridPairScorer: a pair scores its passage's RRF score in the embedder + BM25 ranking of the pool."""

from __future__ import annotations

import numpy as np
import pytest

from retrievals_rag.retrieval.bm25 import BM25Retriever
from retrievals_rag.retrieval.fusion import fuse_rankings
from retrievals_rag.retrieval.hybrid_scorer import HybridPairScorer

POOL = [
    "insulin lowers blood glucose in diabetic patients",
    "the mitochondria produce energy for the cell",
    "glucose uptake rises after exercise in muscle",
    "vitamin d deficiency and bone fractures in the elderly",
    "statins reduce cholesterol and heart attacks",
    "exercise improves insulin sensitivity",
]


class LetterEncoder:
    """Counts letters: a deterministic embedder whose ranking differs from BM25's word matches."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def _vectors(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for row, text in enumerate(texts):
            for char in text.lower():
                if "a" <= char <= "z":
                    out[row, ord(char) - 97] += 1
        return out

    def encode_queries(self, queries: list[str], *, show_progress_bar: bool | None = None) -> np.ndarray:
        return self._vectors(list(queries))

    def encode_corpus(self, documents: list[str], *, show_progress_bar: bool | None = None) -> np.ndarray:
        return self._vectors(list(documents))


def expected_scores(query: str, candidates: int, rrf_k: int = 60) -> dict[str, float]:
    vectors = LetterEncoder()._vectors([query, *POOL])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = unit[1:] @ unit[0]
    dense = [str(row) for row in sorted(range(len(POOL)), key=lambda row: (-cosines[row], row))][:candidates]
    lexical = [doc_id for doc_id, _ in BM25Retriever(POOL).search([query], candidates)[0]]
    return {POOL[int(doc_id)]: score for doc_id, score in fuse_rankings([dense, lexical], k=rrf_k)}


@pytest.mark.parametrize("candidates", [2, 6])
def test_each_pair_scores_its_passage_s_fused_rank_and_0_beyond_the_candidates(candidates: int) -> None:
    scorer = HybridPairScorer(LetterEncoder(), POOL, candidates=candidates)
    queries = ["does insulin lower glucose", "exercise and muscle"]
    pairs = [(query, passage) for query in queries for passage in POOL]

    scores = scorer.compute_score(pairs)

    assert all(type(score) is float for score in scores)
    for (query, passage), score in zip(pairs, scores, strict=True):
        assert score == pytest.approx(expected_scores(query, candidates).get(passage, 0.0))
    if candidates == 2:  # at most two per ranking: the others score 0
        assert 0 < sum(score > 0 for score in scores[:6]) <= 4 and 0.0 in scores[:6]


def test_the_passage_found_by_both_rankings_first_scores_2_over_61() -> None:
    scorer = HybridPairScorer(LetterEncoder(), POOL)
    assert scorer.compute_score([(POOL[1], POOL[1])]) == [pytest.approx(2 / 61)]


def test_given_embeddings_are_used_and_repeated_passages_kept_once() -> None:
    encoder = LetterEncoder()
    passages = [*POOL, POOL[0]]
    vectors = LetterEncoder()._vectors(passages)

    scorer = HybridPairScorer(encoder, passages, passage_embeddings=vectors)

    assert len(scorer) == len(POOL) and encoder.calls == []  # nothing encoded but the queries
    query = "insulin and glucose"
    scores = scorer.compute_score([(query, passage) for passage in POOL])
    assert scores == pytest.approx([expected_scores(query, 200)[passage] for passage in POOL])
    assert encoder.calls == [1]


def test_dense_scores_are_the_embedder_s_cosines() -> None:
    scorer = HybridPairScorer(LetterEncoder(), POOL)
    query = "vitamin d and bones"
    vectors = LetterEncoder()._vectors([query, POOL[3], POOL[4]])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    assert scorer.dense_scores([(query, POOL[3]), (query, POOL[4])]) == pytest.approx(
        [float(unit[1] @ unit[0]), float(unit[2] @ unit[0])], rel=1e-5
    )
    assert scorer.dense_scores([]) == [] == scorer.compute_score([])


def test_bad_input_is_refused_with_what_is_wrong() -> None:
    scorer = HybridPairScorer(LetterEncoder(), POOL)
    with pytest.raises(ValueError, match="not in the scorer's pool: 'a passage nobody indexed'"):
        scorer.compute_score([("q", POOL[0]), ("q", "a passage nobody indexed")])
    with pytest.raises(ValueError, match="pool is empty"):
        HybridPairScorer(LetterEncoder(), [])
    with pytest.raises(TypeError, match="not one string"):
        HybridPairScorer(LetterEncoder(), "one passage")
    with pytest.raises(ValueError, match="passage_embeddings has 2 rows for 6 passages"):
        HybridPairScorer(LetterEncoder(), POOL, passage_embeddings=np.zeros((2, 26)))
    with pytest.raises(ValueError, match="candidates must be an integer >= 1"):
        HybridPairScorer(LetterEncoder(), POOL, candidates=0)
    with pytest.raises(ValueError, match="no document in the corpus has an indexable token"):
        HybridPairScorer(LetterEncoder(), ["the", "a"])
