"""LangChain reranker: the compressor contract (LangChain has no suite for compressors), and the retriever with it.

The tiny rankers score randomly but deterministically: every order is checked against the model's own
``compute_score``, never against what the texts mean.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from retrievals_rag.integrations import langchain as langchain_adapters
from retrievals_rag.integrations.langchain import (
    PREVIOUS_RELEVANCE_SCORE_KEY,
    RELEVANCE_SCORE_KEY,
    RETRIEVAL_SCORE_KEY,
    LangchainEmbedding,
    LangchainReranker,
    LangchainRetriever,
)
from tests.integrations.conftest import OverlapTracker, run_with_ticker, slowed

QUERY = "what do cells and genes do in the brain?"
TEXTS = [
    "cells divide and the study of cells",
    "the brain is a human organ",
    "gene treatment for cancer patients",
    "protein results in a study",
    "risk of cancer and the effect of treatment",
]


def make_documents() -> list[Document]:
    return [
        Document(
            page_content=text,
            id=f"doc-{position}",
            metadata={"source": f"{position}.txt", "tags": ["a", {"nested": [position]}], "page": position},
        )
        for position, text in enumerate(TEXTS)
    ]


def expected_order(model: Any, texts: list[str], *, normalize: bool = False) -> tuple[list[int], list[float]]:
    """Positions by descending score (ties in input order), and the scores, from the model's own API."""
    scores = model.compute_score([(QUERY, text) for text in texts], normalize=normalize)
    return sorted(range(len(texts)), key=lambda position: -scores[position]), scores


def test_public_names_are_exported() -> None:
    assert {"LangchainReranker", "RELEVANCE_SCORE_KEY", "PREVIOUS_RELEVANCE_SCORE_KEY"} <= set(
        langchain_adapters.__all__
    )
    assert (RELEVANCE_SCORE_KEY, PREVIOUS_RELEVANCE_SCORE_KEY) == (
        "relevance_score",
        "previous_relevance_score",
    )


# ---------------------------------------------------------------------------- every kind of ranker


def test_order_and_scores_are_the_models_own(any_ranker: Any) -> None:
    documents = make_documents()
    order, scores = expected_order(any_ranker, TEXTS)

    results = LangchainReranker(model=any_ranker, top_n=None).compress_documents(documents, QUERY)

    assert [document.id for document in results] == [f"doc-{position}" for position in order]
    returned = [document.metadata[RELEVANCE_SCORE_KEY] for document in results]
    assert all(type(score) is float for score in returned)
    assert returned == pytest.approx([scores[position] for position in order], abs=1e-5)
    assert returned == sorted(returned, reverse=True)
    json.dumps([document.metadata for document in results])


@pytest.mark.parametrize(
    ("folder", "options", "expected_class"),
    [
        ("cross_encoder_path", {}, "AutoModelForRanking"),
        ("llm_ranker_path", {}, "LLMRanker"),
        ("colbert_path", {}, "ColBERT"),
        # a bare causal LM, with an answer token its tiny vocabulary has
        (
            "tiny_llama_path",
            {"model_kind": "llm_ranker", "model_kwargs": {"target_token": "relevant"}},
            "LLMRanker",
        ),
        ("tiny_bert_path", {"model_kind": "colbert"}, "ColBERT"),  # a bare encoder
    ],
)
@pytest.mark.filterwarnings("ignore:.*(randomly initialised|fresh|newly initialized).*")
def test_a_folder_loads_as_the_kind_it_was_saved_as(
    request: pytest.FixtureRequest, folder: str, options: dict[str, Any], expected_class: str
) -> None:
    path: Path = request.getfixturevalue(folder)

    reranker = LangchainReranker(model_name_or_path=path, device="cpu", **options)

    assert type(reranker.ranker).__name__ == expected_class
    assert reranker.ranker.device.type == "cpu"
    assert reranker.model_name_or_path == str(path)
    assert "model=" not in repr(reranker)
    assert len(reranker.compress_documents(make_documents(), QUERY)) == 3  # top_n defaults to 3


def test_model_kwargs_reach_the_loader_of_the_folders_kind(
    cross_encoder_path: Path, colbert_path: Path
) -> None:
    cross_encoder = LangchainReranker(model_name_or_path=cross_encoder_path, model_kwargs={"max_length": 24})
    colbert = LangchainReranker(model_name_or_path=colbert_path, model_kwargs={"query_max_length": 8})

    assert cross_encoder.ranker.max_length == 24
    assert colbert.ranker.query_max_length == 8
    with pytest.raises(
        ValueError, match="\\['query_max_length'\\], which a cross_encoder model does not take"
    ):
        LangchainReranker(model_name_or_path=cross_encoder_path, model_kwargs={"query_max_length": 8})
    with pytest.raises(ValueError, match="\\['device'\\], which a reranker does not take"):
        LangchainReranker(model_name_or_path=cross_encoder_path, model_kwargs={"device": "cpu"})


# ---------------------------------------------------------------------------- the compressor contract


@pytest.fixture
def reranker(tiny_cross_encoder: Any) -> LangchainReranker:
    return LangchainReranker(model=tiny_cross_encoder)


def test_empty_input_returns_an_empty_list_without_calling_the_model(
    reranker: LangchainReranker, tiny_cross_encoder: Any
) -> None:
    with patch.object(tiny_cross_encoder, "compute_score") as compute_score:
        assert reranker.compress_documents([], QUERY) == []
    compute_score.assert_not_called()


def test_one_document_and_top_n_above_the_input_size(tiny_cross_encoder: Any) -> None:
    one = LangchainReranker(model=tiny_cross_encoder, top_n=3).compress_documents(make_documents()[:1], QUERY)
    many = LangchainReranker(model=tiny_cross_encoder, top_n=50).compress_documents(make_documents(), QUERY)
    every = LangchainReranker(model=tiny_cross_encoder, top_n=None).compress_documents(
        make_documents(), QUERY
    )
    best = LangchainReranker(model=tiny_cross_encoder, top_n=1).compress_documents(make_documents(), QUERY)

    assert [document.id for document in one] == ["doc-0"]
    assert type(one[0].metadata[RELEVANCE_SCORE_KEY]) is float
    assert len(many) == len(every) == len(TEXTS)
    assert [document.id for document in many] == [document.id for document in every]
    assert [document.id for document in best] == [every[0].id]


def test_default_top_n_is_three(reranker: LangchainReranker) -> None:
    assert reranker.top_n == 3
    assert len(reranker.compress_documents(make_documents(), QUERY)) == 3


def test_threshold_on_normalised_scores(tiny_cross_encoder: Any) -> None:
    order, probabilities = expected_order(tiny_cross_encoder, TEXTS, normalize=True)
    threshold = sorted(probabilities)[2]  # the median: keeps three
    reranker = LangchainReranker(
        model=tiny_cross_encoder, normalize=True, score_threshold=threshold, top_n=None
    )

    results = reranker.compress_documents(make_documents(), QUERY)

    returned = [document.metadata[RELEVANCE_SCORE_KEY] for document in results]
    assert [document.id for document in results] == [f"doc-{position}" for position in order[:3]]
    assert all(0.0 < score < 1.0 and score >= threshold for score in returned)
    raw = tiny_cross_encoder.compute_score([(QUERY, TEXTS[position]) for position in order[:3]])
    assert returned == pytest.approx([1 / (1 + math.exp(-score)) for score in raw], abs=1e-6)


def test_threshold_on_raw_scores(tiny_cross_encoder: Any) -> None:
    order, scores = expected_order(tiny_cross_encoder, TEXTS)
    threshold = scores[order[1]]  # keeps the best two

    results = LangchainReranker(
        model=tiny_cross_encoder, score_threshold=threshold, top_n=None
    ).compress_documents(make_documents(), QUERY)
    above_all = LangchainReranker(
        model=tiny_cross_encoder, score_threshold=max(scores) + 1.0
    ).compress_documents(make_documents(), QUERY)

    assert [document.id for document in results] == [f"doc-{position}" for position in order[:2]]
    assert above_all == []


@pytest.mark.parametrize("threshold", [float("nan"), float("inf")])
def test_a_threshold_that_is_not_a_finite_number_is_refused(
    tiny_cross_encoder: Any, threshold: float
) -> None:
    """Before, NaN was taken and every document was dropped (no score is >= NaN)."""
    from pydantic import ValidationError

    from retrievals_rag.integrations.llama_index import LlamaIndexReranker

    for adapter in (LangchainReranker, LlamaIndexReranker):
        with pytest.raises(ValidationError, match="score_threshold"):
            adapter(model=tiny_cross_encoder, score_threshold=threshold)


def test_inputs_are_never_modified_and_results_are_copies(reranker: LangchainReranker) -> None:
    documents = make_documents()
    documents[0].metadata[RELEVANCE_SCORE_KEY] = 7.5
    snapshot = [document.model_copy(deep=True) for document in documents]

    results = reranker.compress_documents(documents, QUERY)
    for result in results:  # what a caller may do with the results
        result.metadata["tags"][1]["nested"].append("changed")
        result.metadata["source"] = "changed"

    assert documents == snapshot
    assert [document.metadata for document in documents] == [document.metadata for document in snapshot]
    originals = {id(document) for document in documents}
    assert all(id(result) not in originals for result in results)


def test_metadata_and_ids_are_kept(reranker: LangchainReranker) -> None:
    by_id = {document.id: document for document in make_documents()}

    for result in reranker.compress_documents(make_documents(), QUERY):
        original = by_id[result.id]
        assert result.page_content == original.page_content
        assert {key: value for key, value in result.metadata.items() if key != RELEVANCE_SCORE_KEY} == (
            original.metadata
        )


def test_earlier_scores_are_kept_under_their_keys(tiny_cross_encoder: Any) -> None:
    documents = [
        document.model_copy(update={"metadata": {**document.metadata, RETRIEVAL_SCORE_KEY: 0.25 * position}})
        for position, document in enumerate(make_documents())
    ]
    first = LangchainReranker(model=tiny_cross_encoder, top_n=None, normalize=True)
    second = LangchainReranker(model=tiny_cross_encoder, top_n=None)

    once = first.compress_documents(documents, QUERY)
    twice = second.compress_documents(once, QUERY)

    retrieval = {document.id: document.metadata[RETRIEVAL_SCORE_KEY] for document in documents}
    normalised = {document.id: document.metadata[RELEVANCE_SCORE_KEY] for document in once}
    for document in twice:
        assert document.metadata[RETRIEVAL_SCORE_KEY] == retrieval[document.id]
        assert document.metadata[PREVIOUS_RELEVANCE_SCORE_KEY] == normalised[document.id]
        assert document.metadata[RELEVANCE_SCORE_KEY] == pytest.approx(
            math.log(normalised[document.id] / (1 - normalised[document.id])), abs=1e-4
        )
    assert all(PREVIOUS_RELEVANCE_SCORE_KEY not in document.metadata for document in once)


def test_a_custom_score_key(tiny_cross_encoder: Any) -> None:
    results = LangchainReranker(model=tiny_cross_encoder, score_key="cross_encoder_score").compress_documents(
        make_documents(), QUERY
    )

    assert all(type(document.metadata["cross_encoder_score"]) is float for document in results)
    assert all(RELEVANCE_SCORE_KEY not in document.metadata for document in results)
    with pytest.raises(ValueError, match="keeps the retrieval score"):
        LangchainReranker(model=tiny_cross_encoder, score_key=RETRIEVAL_SCORE_KEY)


def test_documents_are_scored_in_one_batched_call_with_the_options(tiny_cross_encoder: Any) -> None:
    reranker = LangchainReranker(
        model=tiny_cross_encoder, batch_size=2, token_budget=64, normalize=True, show_progress_bar=False
    )
    with patch.object(tiny_cross_encoder, "compute_score", wraps=tiny_cross_encoder.compute_score) as spy:
        reranker.compress_documents(make_documents(), QUERY)

    spy.assert_called_once()
    assert spy.call_args.args[0] == [(QUERY, text) for text in TEXTS]
    assert spy.call_args.kwargs == {
        "batch_size": 2,
        "token_budget": 64,
        "normalize": True,
        "show_progress_bar": False,
    }


async def test_async_reranking_does_not_block_the_event_loop(
    reranker: LangchainReranker, tiny_cross_encoder: Any
) -> None:
    documents = make_documents()
    snapshot = [document.model_copy(deep=True) for document in documents]
    expected = reranker.compress_documents(documents, QUERY)
    with patch.object(
        tiny_cross_encoder, "compute_score", wraps=slowed(tiny_cross_encoder.compute_score)
    ) as spy:
        results, ticks = await run_with_ticker(reranker.acompress_documents(documents, QUERY))

    assert ticks >= 10  # a blocked loop would not tick during the 0.3 s
    spy.assert_called_once()
    assert results == expected
    assert documents == snapshot


async def test_concurrent_calls_on_one_model_never_overlap(tiny_cross_encoder: Any) -> None:
    tracker = OverlapTracker(tiny_cross_encoder.compute_score)
    rerankers = [LangchainReranker(model=tiny_cross_encoder), LangchainReranker(model=tiny_cross_encoder)]
    with patch.object(tiny_cross_encoder, "compute_score", side_effect=tracker):
        results = await asyncio.gather(
            *(reranker.acompress_documents(make_documents(), QUERY) for reranker in rerankers * 2)
        )

    assert tracker.overlaps == 0
    assert all(result == results[0] for result in results)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, ValueError, "needs model_name_or_path"),
        ({"model": "cross-encoder/ms-marco"}, TypeError, "model must be a ranker"),
        ({"top_n": 0}, ValueError, "greater than or equal to 1"),
        ({"top_k": 3}, ValueError, "Extra inputs are not permitted"),
        ({"model_kind": "bi_encoder"}, ValueError, "model_kind"),
    ],
)
def test_invalid_options_raise(options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        LangchainReranker(**options)


@pytest.mark.parametrize(
    "options",
    [{"device": "cpu"}, {"use_fp16": True}, {"model_name_or_path": "x"}, {"model_kind": "colbert"},
     {"model_kwargs": {"max_length": 8}}],
)  # fmt: skip
def test_a_loaded_model_with_loading_options_raises(tiny_cross_encoder: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="only apply when loading"):
        LangchainReranker(model=tiny_cross_encoder, **options)


def test_wrong_inputs_raise(reranker: LangchainReranker) -> None:
    with pytest.raises(TypeError, match="query must be a str"):
        reranker.compress_documents(make_documents(), ["a query"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="documents\\[1\\] is str"):
        reranker.compress_documents([make_documents()[0], "text"], QUERY)  # type: ignore[list-item]


# ---------------------------------------------------------------------------- with LangChain retrievers


@pytest.fixture
def tiny_embeddings(tiny_model: Any) -> LangchainEmbedding:
    return LangchainEmbedding(model=tiny_model)


def test_contextual_compression_retriever_keeps_both_scores(
    reranker: LangchainReranker, tiny_embeddings: LangchainEmbedding, tiny_cross_encoder: Any
) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever

    base = LangchainRetriever(
        texts=TEXTS, ids=[f"doc-{i}" for i in range(5)], embeddings=tiny_embeddings, k=4
    )
    retriever = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base)

    candidates = base.invoke(QUERY)
    results = retriever.invoke(QUERY)

    candidate_texts = [document.page_content for document in candidates]
    order, _ = expected_order(tiny_cross_encoder, candidate_texts)
    assert [document.id for document in results] == [candidates[position].id for position in order[:3]]
    retrieval = {document.id: document.metadata[RETRIEVAL_SCORE_KEY] for document in candidates}
    for document in results:
        assert document.metadata[RETRIEVAL_SCORE_KEY] == retrieval[document.id]
        assert type(document.metadata[RELEVANCE_SCORE_KEY]) is float


def test_retriever_reranks_fetch_k_candidates_down_to_k(
    reranker: LangchainReranker, tiny_embeddings: LangchainEmbedding, tiny_cross_encoder: Any
) -> None:
    retriever = LangchainRetriever(texts=TEXTS, embeddings=tiny_embeddings, k=2, fetch_k=4, reranker=reranker)
    plain = LangchainRetriever(texts=TEXTS, embeddings=tiny_embeddings, k=4)

    with patch.object(tiny_cross_encoder, "compute_score", wraps=tiny_cross_encoder.compute_score) as spy:
        results = retriever.invoke(QUERY)
        one = retriever.invoke(QUERY, k=1)

    candidates = plain.invoke(QUERY)
    assert spy.call_count == 2
    assert [pair[1] for pair in spy.call_args_list[0].args[0]] == [
        document.page_content for document in candidates
    ]
    order, _ = expected_order(tiny_cross_encoder, [document.page_content for document in candidates])
    assert [document.id for document in results] == [candidates[position].id for position in order[:2]]
    assert [document.id for document in one] == [results[0].id]
    for document in results:
        assert type(document.metadata[RETRIEVAL_SCORE_KEY]) is float
        assert type(document.metadata[RELEVANCE_SCORE_KEY]) is float
    assert reranker.top_n == 3  # the retriever's k decides, per call, and the reranker is left as it was


def test_retriever_rerank_weight_mixes_the_retrieval_score_and_is_checked(
    reranker: LangchainReranker, tiny_embeddings: LangchainEmbedding
) -> None:
    from retrievals_rag.retrieval.fusion import interpolate_scores

    alone = LangchainRetriever(texts=TEXTS, embeddings=tiny_embeddings, k=4, fetch_k=4, reranker=reranker)
    mixed = LangchainRetriever(
        texts=TEXTS, embeddings=tiny_embeddings, k=4, fetch_k=4, reranker=reranker, rerank_weight=0.5
    )

    scored = alone.invoke(QUERY)
    results = mixed.invoke(QUERY)

    by_id = {document.id: document.metadata for document in scored}
    ids = list(by_id)
    values = interpolate_scores(
        [by_id[i][RETRIEVAL_SCORE_KEY] for i in ids], [by_id[i][RELEVANCE_SCORE_KEY] for i in ids], 0.5
    )
    expected = [ids[index] for index in sorted(range(len(ids)), key=lambda index: -values[index])]
    assert [document.id for document in results] == expected
    with pytest.raises(ValueError, match="rerank_weight"):
        LangchainRetriever(texts=TEXTS, embeddings=tiny_embeddings, rerank_weight=1.5)


def test_retriever_with_fusion_and_a_reranker(
    reranker: LangchainReranker, tiny_embeddings: LangchainEmbedding
) -> None:
    retriever = LangchainRetriever(
        texts=TEXTS, embeddings=tiny_embeddings, use_bm25=True, k=3, fetch_k=5, reranker=reranker
    )

    results = retriever.invoke(QUERY)

    assert len(results) == 3
    assert all({RETRIEVAL_SCORE_KEY, RELEVANCE_SCORE_KEY} <= set(document.metadata) for document in results)
    scores = [document.metadata[RELEVANCE_SCORE_KEY] for document in results]
    assert scores == sorted(scores, reverse=True)


async def test_async_retriever_with_a_reranker_does_not_block(
    reranker: LangchainReranker, tiny_embeddings: LangchainEmbedding, tiny_cross_encoder: Any
) -> None:
    retriever = LangchainRetriever(texts=TEXTS, embeddings=tiny_embeddings, k=2, reranker=reranker)
    expected = retriever.invoke(QUERY)
    with patch.object(tiny_cross_encoder, "compute_score", wraps=slowed(tiny_cross_encoder.compute_score)):
        results, ticks = await run_with_ticker(retriever.ainvoke(QUERY))

    assert ticks >= 10
    assert results == expected


def test_retriever_over_a_vector_store_with_a_reranker(
    reranker: LangchainReranker, tiny_embeddings: Any
) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(tiny_embeddings)
    originals = make_documents()
    store.add_documents(originals)
    retriever = LangchainRetriever(
        vectorstore=store, k=2, fetch_k=5, vectorstore_score="raw", reranker=reranker
    )

    results = retriever.invoke(QUERY)

    assert len(results) == 2
    assert all(type(document.metadata[RELEVANCE_SCORE_KEY]) is float for document in results)
    assert all(type(document.metadata[RETRIEVAL_SCORE_KEY]) is float for document in results)
    assert store.get_by_ids(["doc-0"])[0].metadata == make_documents()[0].metadata


# ---------------------------------------------------------------------------- the standard retriever suite


class TestLangchainRetrieverWithRerankerStandard(RetrieversIntegrationTests):
    """langchain-tests' retriever suite (k=3 gives 3, invoke(q, k=1) one...) with a reranker in the loop."""

    @pytest.fixture(autouse=True)
    def _tiny_models(self, tiny_model: Any, tiny_cross_encoder: Any) -> None:
        self._params = {
            "texts": TEXTS,
            "embeddings": LangchainEmbedding(model=tiny_model),
            "fetch_k": 5,
            "reranker": LangchainReranker(model=tiny_cross_encoder, top_n=1),
        }

    @property
    def retriever_constructor(self) -> type[LangchainRetriever]:
        return LangchainRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return copy.copy(self._params)

    @property
    def retriever_query_example(self) -> str:
        return QUERY
