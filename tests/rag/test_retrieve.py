"""Retrieval: dense, BM25 fused by RRF (with its cache invalidated on changes), and reranking by any reranker."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from retrievals_rag.rag.loaders import LoadedDocument, Page
from retrievals_rag.rag.retrieve import Reranker, Retriever
from retrievals_rag.rag.store import VectorStore


@dataclass
class Result:
    index: int
    document: str
    score: Any


class KeywordReranker:
    """Scores a document by how many times it says ``keyword``, as a numpy float (the store must convert)."""

    def __init__(self, keyword: str) -> None:
        self.keyword = keyword
        self.calls: list[tuple[str, list[str], int | None]] = []

    def rerank(self, query: str, documents: list[str], top_k: int | None = None) -> list[Result]:
        import numpy as np

        self.calls.append((query, list(documents), top_k))
        scored = [
            Result(index, text, np.float32(text.count(self.keyword) + index / 1000))
            for index, text in enumerate(documents)
        ]
        scored.sort(key=lambda result: -result.score)
        return scored[:top_k]


@pytest.fixture
def filled(store: VectorStore) -> VectorStore:
    store.create_collection("notes")
    for index in range(8):
        words = "ordinary filler words about cells and proteins"
        store.add_document("notes", LoadedDocument(f"doc{index}.txt", [Page(f"Document {index}: {words}.")]))
    return store


def test_dense_results_carry_float_scores(filled: VectorStore) -> None:
    results = Retriever(filled, "notes", top_k=3).retrieve("cells and proteins")

    assert len(results) == 3
    for result in results:
        assert type(result.score) is float and type(result.retrieval_score) is float
        assert result.rerank_score is None and result.score == result.retrieval_score
        assert -1.0 <= result.score <= 1.0
        assert result.text.startswith("Document") and result.source.endswith(".txt") and result.page is None
    assert [result.score for result in results] == sorted((result.score for result in results), reverse=True)


def test_bm25_fusion_brings_up_the_only_chunk_with_a_rare_word(filled: VectorStore) -> None:
    filled.add_document("notes", LoadedDocument("zebra.txt", [Page("Document about a zebra and cells.")]))
    retriever = Retriever(filled, "notes", top_k=1, use_bm25=True)

    results = retriever.retrieve("zebra")

    assert [result.source for result in results] == ["zebra.txt"]
    assert type(results[0].retrieval_score) is float
    assert results[0].retrieval_score == pytest.approx(
        1 / 61 + 1 / (60 + _dense_rank(filled, "zebra", "zebra.txt"))
    )


def _dense_rank(store: VectorStore, query: str, source: str) -> int:
    dense = Retriever(store, "notes", top_k=100).retrieve(query)
    return 1 + [result.source for result in dense].index(source)


def test_bm25_index_follows_changes_to_the_collection(filled: VectorStore) -> None:
    retriever = Retriever(filled, "notes", top_k=1, use_bm25=True)
    assert retriever.retrieve("giraffe")[0].source != "giraffe.txt"  # builds the index without it

    filled.add_document("notes", LoadedDocument("giraffe.txt", [Page("A giraffe document.")]))
    assert retriever.retrieve("giraffe")[0].source == "giraffe.txt"

    filled.delete_document("notes", "giraffe.txt")
    assert all(result.source != "giraffe.txt" for result in retriever.retrieve("giraffe", top_k=20))


def test_reranker_sets_the_order_and_both_scores_are_kept(filled: VectorStore) -> None:
    filled.add_document("notes", LoadedDocument("kiwi.txt", [Page("kiwi kiwi kiwi and more kiwi.")]))
    filled.add_document("notes", LoadedDocument("kiwi-once.txt", [Page("one kiwi here.")]))
    reranker = KeywordReranker("kiwi")
    assert isinstance(reranker, Reranker)

    results = Retriever(filled, "notes", top_k=3, reranker=reranker, candidates=6).retrieve("fruit")

    query, documents, top_k = reranker.calls[0]
    assert (query, len(documents), top_k) == ("fruit", 6, None)  # every candidate is scored
    expected = sorted(documents, key=lambda text: -(text.count("kiwi") + documents.index(text) / 1000))[:3]
    assert [result.text for result in results] == expected
    for result in results:
        assert (
            type(result.score) is float
            and type(result.rerank_score) is float
            and type(result.retrieval_score) is float
        )
        assert result.score == result.rerank_score
    assert [result.score for result in results] == sorted((result.score for result in results), reverse=True)


def test_a_rerank_weight_mixes_the_reranker_with_the_dense_scores(filled: VectorStore) -> None:
    from retrievals_rag.retrieval.fusion import interpolate_scores

    filled.add_document("notes", LoadedDocument("kiwi.txt", [Page("kiwi kiwi kiwi and more kiwi.")]))
    reranker = KeywordReranker("kiwi")
    candidates = Retriever(filled, "notes", top_k=6).retrieve("fruit")

    retriever = Retriever(filled, "notes", top_k=6, reranker=reranker, candidates=6, rerank_weight=0.5)
    results = retriever.retrieve("fruit")

    assert retriever.rerank_weight == 0.5
    alone = {
        hit.chunk_id: hit.rerank_score
        for hit in Retriever(filled, "notes", top_k=6, reranker=reranker, candidates=6).retrieve("fruit")
    }
    mixed = interpolate_scores(
        [hit.retrieval_score for hit in candidates], [alone[hit.chunk_id] for hit in candidates], 0.5
    )
    expected = sorted(range(len(candidates)), key=lambda index: -mixed[index])
    assert [result.chunk_id for result in results] == [candidates[index].chunk_id for index in expected]
    for result in results:
        assert result.score != result.rerank_score and type(result.score) is float
    with pytest.raises(ValueError, match="rerank_weight"):
        Retriever(filled, "notes", reranker=reranker, rerank_weight=2.0)


def test_reranking_the_whole_collection_puts_the_keyword_chunks_first(filled: VectorStore) -> None:
    filled.add_document("notes", LoadedDocument("kiwi.txt", [Page("kiwi kiwi kiwi and more kiwi.")]))
    filled.add_document("notes", LoadedDocument("kiwi-once.txt", [Page("one kiwi here.")]))

    results = Retriever(filled, "notes", top_k=2, reranker=KeywordReranker("kiwi"), candidates=50).retrieve(
        "x"
    )

    assert [result.source for result in results] == ["kiwi.txt", "kiwi-once.txt"]
    assert 4 <= results[0].rerank_score < 5 and 1 <= results[1].rerank_score < 2


def test_empty_collection_and_bad_arguments(store: VectorStore) -> None:
    store.create_collection("empty")
    retriever = Retriever(store, "empty", use_bm25=True, reranker=KeywordReranker("x"))

    assert retriever.retrieve("anything") == []
    with pytest.raises(ValueError, match="empty"):
        retriever.retrieve("  ")
    with pytest.raises(ValueError, match="top_k"):
        Retriever(store, "empty", top_k=0)
    with pytest.raises(TypeError, match="rerank"):
        Retriever(store, "empty", reranker=object())  # type: ignore[arg-type]


def test_relevance_is_the_cosine_and_fused_results_show_ranks(filled: VectorStore) -> None:
    filled.add_document("notes", LoadedDocument("zebra.txt", [Page("Document about a zebra and cells.")]))

    dense = Retriever(filled, "notes", top_k=3).retrieve("zebra")
    fused = Retriever(filled, "notes", top_k=3, use_bm25=True).retrieve("zebra")

    for result in dense:
        assert result.relevance == result.dense_score == result.retrieval_score
        assert result.relevance_scale == "cosine similarity" and not result.fused
        assert result.describe() == f"cosine similarity {result.relevance:.2f}"
    top = fused[0]
    assert top.source == "zebra.txt" and top.fused and top.rank == 1 and top.bm25_rank == 1
    assert top.relevance == top.dense_score != top.retrieval_score  # the cosine, not the tiny RRF score
    assert (
        top.describe() == f"cosine similarity {top.relevance:.2f} · rank 1 (dense #{top.dense_rank}, BM25 #1)"
    )
    assert "0.03" not in top.describe()


@pytest.mark.filterwarnings("ignore:.*randomly initialised:UserWarning")
def test_a_cross_encoder_gives_a_probability_and_the_old_knob_name_still_works(
    filled: VectorStore, tiny_bert_path: Any
) -> None:
    from retrievals_rag.models.ranking import AutoModelForRanking

    ranker = AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu")
    with pytest.warns(DeprecationWarning, match="candidates"):
        retriever = Retriever(filled, "notes", top_k=2, reranker=ranker, rerank_candidates=4)

    results = retriever.retrieve("cells")

    assert retriever.candidates == 4 and retriever.relevance_scale == "reranker probability"
    for result in results:
        assert result.rerank_score is not None and result.relevance is not None
        assert 0.0 < result.relevance < 1.0
        assert result.relevance == pytest.approx(1 / (1 + math.exp(-result.rerank_score)))
        assert result.describe().startswith("reranker probability ")
    keyword = Retriever(filled, "notes", reranker=KeywordReranker("cells"), candidates=4)
    assert keyword.relevance_scale == "reranker score"
    assert keyword.retrieve("cells")[0].relevance == keyword.retrieve("cells")[0].rerank_score
    with pytest.raises(ValueError, match="not both"):
        Retriever(filled, "notes", candidates=3, rerank_candidates=4)
