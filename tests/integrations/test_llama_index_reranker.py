"""LlamaIndex reranker: the node-postprocessor contract (LlamaIndex has no suite for it), events, an index.

The tiny rankers score randomly but deterministically: every order is checked against the model's own
``compute_score``, never against what the texts mean. No LLM is involved except ``MockLLM``.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from retrievals_rag.integrations import llama_index as llama_index_adapters
from retrievals_rag.integrations.llama_index import (
    PREVIOUS_RELEVANCE_SCORE_KEY,
    RELEVANCE_SCORE_KEY,
    RETRIEVAL_SCORE_KEY,
    LlamaIndexEmbedding,
    LlamaIndexReranker,
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


def make_nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(
                id_=f"node-{position}",
                text=text,
                metadata={"source": f"{position}.txt", "tags": ["a", {"nested": [position]}]},
                excluded_llm_metadata_keys=["tags"],
            ),
            score=1.0 - 0.1 * position,
        )
        for position, text in enumerate(TEXTS)
    ]


def embed_texts(nodes: list[NodeWithScore]) -> list[str]:
    """What a LlamaIndex reranker scores: the node's text with its metadata, as an embedder sees it."""
    return [node.node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]


def expected_order(model: Any, texts: list[str], *, normalize: bool = False) -> tuple[list[int], list[float]]:
    scores = model.compute_score([(QUERY, text) for text in texts], normalize=normalize)
    return sorted(range(len(texts)), key=lambda position: -scores[position]), scores


def node_ids(nodes: list[NodeWithScore]) -> list[str]:
    return [node.node.node_id for node in nodes]


@pytest.fixture
def reranker(tiny_cross_encoder: Any) -> LlamaIndexReranker:
    return LlamaIndexReranker(model=tiny_cross_encoder)


def test_public_names_are_exported() -> None:
    assert {
        "LlamaIndexReranker",
        "RETRIEVAL_SCORE_KEY",
        "RELEVANCE_SCORE_KEY",
        "PREVIOUS_RELEVANCE_SCORE_KEY",
    } <= set(llama_index_adapters.__all__)
    assert LlamaIndexReranker.class_name() == "RetrievalsRagReranker"


# ---------------------------------------------------------------------------- every kind of ranker


def test_order_and_scores_are_the_models_own(any_ranker: Any) -> None:
    nodes = make_nodes()
    order, scores = expected_order(any_ranker, embed_texts(nodes))

    results = LlamaIndexReranker(model=any_ranker, top_n=None).postprocess_nodes(nodes, query_str=QUERY)

    assert node_ids(results) == [f"node-{position}" for position in order]
    returned = [result.score for result in results]
    assert all(type(score) is float for score in returned)
    assert returned == pytest.approx([scores[position] for position in order], abs=1e-5)
    json.dumps(returned)


def test_the_scored_text_is_the_embed_content_in_one_batched_call(tiny_cross_encoder: Any) -> None:
    nodes = make_nodes()
    reranker = LlamaIndexReranker(model=tiny_cross_encoder, batch_size=2, token_budget=64, normalize=True)
    with patch.object(tiny_cross_encoder, "compute_score", wraps=tiny_cross_encoder.compute_score) as spy:
        reranker.postprocess_nodes(nodes, QueryBundle(QUERY))

    spy.assert_called_once()
    pairs = spy.call_args.args[0]
    assert pairs == [(QUERY, text) for text in embed_texts(nodes)]
    assert pairs[0][1].startswith("source: 0.txt") and pairs[0][1].endswith(TEXTS[0])
    assert spy.call_args.kwargs == {
        "batch_size": 2,
        "token_budget": 64,
        "normalize": True,
        "show_progress_bar": None,
    }


# ---------------------------------------------------------------------------- the postprocessor contract


def test_a_missing_query_raises(reranker: LlamaIndexReranker) -> None:
    with pytest.raises(ValueError, match="needs a query"):
        reranker.postprocess_nodes(make_nodes())


def test_no_nodes_return_an_empty_list_without_calling_the_model(
    reranker: LlamaIndexReranker, tiny_cross_encoder: Any
) -> None:
    with patch.object(tiny_cross_encoder, "compute_score") as compute_score:
        assert reranker.postprocess_nodes([], query_str=QUERY) == []
    compute_score.assert_not_called()


def test_one_node_and_top_n_above_the_input_size(tiny_cross_encoder: Any) -> None:
    one = LlamaIndexReranker(model=tiny_cross_encoder).postprocess_nodes(make_nodes()[:1], query_str=QUERY)
    many = LlamaIndexReranker(model=tiny_cross_encoder, top_n=50).postprocess_nodes(
        make_nodes(), query_str=QUERY
    )
    every = LlamaIndexReranker(model=tiny_cross_encoder, top_n=None).postprocess_nodes(
        make_nodes(), query_str=QUERY
    )
    default = LlamaIndexReranker(model=tiny_cross_encoder).postprocess_nodes(make_nodes(), query_str=QUERY)

    assert node_ids(one) == ["node-0"] and type(one[0].score) is float
    assert node_ids(many) == node_ids(every) and len(every) == len(TEXTS)
    assert node_ids(default) == node_ids(every)[:3]


def test_threshold_on_normalised_scores(tiny_cross_encoder: Any) -> None:
    nodes = make_nodes()
    order, probabilities = expected_order(tiny_cross_encoder, embed_texts(nodes), normalize=True)
    threshold = sorted(probabilities)[2]  # the median: keeps three
    reranker = LlamaIndexReranker(
        model=tiny_cross_encoder, normalize=True, score_threshold=threshold, top_n=None
    )

    results = reranker.postprocess_nodes(nodes, query_str=QUERY)

    assert node_ids(results) == [f"node-{position}" for position in order[:3]]
    assert all(0.0 < result.score < 1.0 and result.score >= threshold for result in results)


def test_threshold_on_raw_scores(tiny_cross_encoder: Any) -> None:
    nodes = make_nodes()
    order, scores = expected_order(tiny_cross_encoder, embed_texts(nodes))

    results = LlamaIndexReranker(
        model=tiny_cross_encoder, score_threshold=scores[order[1]], top_n=None
    ).postprocess_nodes(nodes, query_str=QUERY)
    none = LlamaIndexReranker(model=tiny_cross_encoder, score_threshold=max(scores) + 1.0).postprocess_nodes(
        nodes, query_str=QUERY
    )

    assert node_ids(results) == [f"node-{position}" for position in order[:2]]
    assert none == []


def test_inputs_are_never_modified_and_results_are_copies(reranker: LlamaIndexReranker) -> None:
    nodes = make_nodes()
    snapshot = [node.model_copy(deep=True) for node in nodes]

    results = reranker.postprocess_nodes(nodes, query_str=QUERY)
    for result in results:  # what a caller may do with the results
        result.node.metadata["tags"][1]["nested"].append("changed")
        result.node.excluded_llm_metadata_keys.append("source")

    assert nodes == snapshot
    assert [node.node.metadata for node in nodes] == [node.node.metadata for node in snapshot]
    assert [node.score for node in nodes] == [node.score for node in snapshot]
    assert all(RETRIEVAL_SCORE_KEY not in node.node.metadata for node in nodes)
    inputs = {id(node) for node in nodes} | {id(node.node) for node in nodes}
    assert all(id(result) not in inputs and id(result.node) not in inputs for result in results)


def test_metadata_kept_with_the_retrieval_score_hidden_from_the_text(reranker: LlamaIndexReranker) -> None:
    nodes = make_nodes()
    by_id = {node.node.node_id: node for node in nodes}

    for result in reranker.postprocess_nodes(nodes, query_str=QUERY):
        original = by_id[result.node.node_id]
        assert result.node.metadata == {**original.node.metadata, RETRIEVAL_SCORE_KEY: original.score}
        assert type(result.node.metadata[RETRIEVAL_SCORE_KEY]) is float
        for mode in (MetadataMode.EMBED, MetadataMode.LLM):  # no later score nor prompt changes
            assert result.node.get_content(metadata_mode=mode) == original.node.get_content(
                metadata_mode=mode
            )


def test_a_second_reranker_keeps_the_retrieval_and_the_earlier_score(tiny_cross_encoder: Any) -> None:
    nodes = make_nodes()
    retrieval = {node.node.node_id: node.score for node in nodes}
    first = LlamaIndexReranker(model=tiny_cross_encoder, top_n=None, normalize=True)
    second = LlamaIndexReranker(model=tiny_cross_encoder, top_n=None)

    once = first.postprocess_nodes(nodes, query_str=QUERY)
    twice = second.postprocess_nodes(once, query_str=QUERY)

    normalised = {node.node.node_id: node.score for node in once}
    for node in twice:
        metadata = node.node.metadata
        assert metadata[RETRIEVAL_SCORE_KEY] == retrieval[node.node.node_id]
        assert metadata[PREVIOUS_RELEVANCE_SCORE_KEY] == normalised[node.node.node_id]
        probability = normalised[node.node.node_id]
        assert node.score == pytest.approx(math.log(probability / (1 - probability)), abs=1e-4)
    # The kept scores are not in the text, so the second reranker scored what the first one did.
    assert node_ids(twice) == node_ids(once)


def test_nodes_without_a_score_get_no_retrieval_score(reranker: LlamaIndexReranker) -> None:
    nodes = [NodeWithScore(node=node.node) for node in make_nodes()]

    results = reranker.postprocess_nodes(nodes, query_str=QUERY)

    assert all(RETRIEVAL_SCORE_KEY not in result.node.metadata for result in results)
    assert all(type(result.score) is float for result in results)


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5])
def test_rerank_weight_orders_by_the_mix_and_thresholds_the_rankers_score(
    tiny_cross_encoder: Any, weight: float
) -> None:
    from retrievals_rag.retrieval.fusion import interpolate_scores

    nodes = make_nodes()
    _, scores = expected_order(tiny_cross_encoder, embed_texts(nodes))
    mixed = interpolate_scores([node.score for node in nodes], scores, weight)
    threshold = sorted(scores)[1]  # drops the lowest rerank score, whatever its mix
    expected = [p for p in sorted(range(len(nodes)), key=lambda p: -mixed[p]) if scores[p] >= threshold][:3]

    results = LlamaIndexReranker(
        model=tiny_cross_encoder, rerank_weight=weight, score_threshold=threshold
    ).postprocess_nodes(nodes, query_str=QUERY)

    assert node_ids(results) == [f"node-{position}" for position in expected]
    for result, position in zip(results, expected, strict=True):
        assert result.score == pytest.approx(mixed[position]) and type(result.score) is float
        metadata = result.node.metadata
        assert metadata[RELEVANCE_SCORE_KEY] == pytest.approx(scores[position], abs=1e-6)
        assert metadata[RETRIEVAL_SCORE_KEY] == nodes[position].score
        assert result.node.get_content(MetadataMode.LLM) == nodes[position].node.get_content(MetadataMode.LLM)
    if weight == 0.0:  # the retriever's order, the threshold aside
        assert node_ids(results) == [f"node-{p}" for p in range(len(nodes)) if scores[p] >= threshold][:3]


def test_rerank_weight_below_one_needs_scored_nodes(tiny_cross_encoder: Any) -> None:
    nodes = make_nodes()
    nodes[2] = NodeWithScore(node=nodes[2].node)

    with pytest.raises(ValueError, match=r"node 2 \(node-2\) has none"):
        LlamaIndexReranker(model=tiny_cross_encoder, rerank_weight=0.5).postprocess_nodes(
            nodes, query_str=QUERY
        )
    with pytest.raises(ValueError, match="less than or equal to 1"):
        LlamaIndexReranker(model=tiny_cross_encoder, rerank_weight=1.5)


# ---------------------------------------------------------------------------- events


class EventCollector(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventCollector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def collector() -> Any:
    root = get_dispatcher()
    handler = EventCollector()
    root.add_event_handler(handler)
    try:
        yield handler
    finally:
        root.event_handlers.remove(handler)


def rerank_events(collector: EventCollector) -> list[BaseEvent]:
    return [event for event in collector.events if isinstance(event, ReRankStartEvent | ReRankEndEvent)]


def test_rerank_start_and_end_events_are_emitted(tiny_cross_encoder: Any, collector: EventCollector) -> None:
    debug = LlamaDebugHandler()
    reranker = LlamaIndexReranker(
        model=tiny_cross_encoder, top_n=2, callback_manager=CallbackManager([debug])
    )
    nodes = make_nodes()

    results = reranker.postprocess_nodes(nodes, query_str=QUERY)

    start, end = rerank_events(collector)
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.query.query_str == QUERY
    assert start.nodes == nodes and start.top_n == 2
    assert start.model_name == reranker.ranker_name
    assert end.nodes == results
    ((callback_start, callback_end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert callback_start.payload[EventPayload.QUERY_STR] == QUERY
    assert callback_start.payload[EventPayload.TOP_K] == 2
    assert callback_end.payload[EventPayload.NODES] == results


def test_events_on_a_missing_query_and_no_nodes_are_those_of_the_built_in_rerankers(
    reranker: LlamaIndexReranker, collector: EventCollector
) -> None:
    # Like LlamaIndex's own rerankers: the start event first, then the checks; no end event without a result.
    with pytest.raises(ValueError):
        reranker.postprocess_nodes(make_nodes())
    reranker.postprocess_nodes([], query_str=QUERY)

    events = rerank_events(collector)
    assert [type(event) for event in events] == [ReRankStartEvent, ReRankStartEvent]
    assert events[0].query is None and events[1].nodes == []


def test_top_n_none_is_reported_as_the_number_of_nodes(
    tiny_cross_encoder: Any, collector: EventCollector
) -> None:
    LlamaIndexReranker(model=tiny_cross_encoder, top_n=None).postprocess_nodes(make_nodes(), query_str=QUERY)

    assert rerank_events(collector)[0].top_n == len(TEXTS)


# ---------------------------------------------------------------------------- async


async def test_async_postprocessing_does_not_block_the_event_loop(
    reranker: LlamaIndexReranker, tiny_cross_encoder: Any, collector: EventCollector
) -> None:
    nodes = make_nodes()
    snapshot = [node.model_copy(deep=True) for node in nodes]
    expected = reranker.postprocess_nodes(nodes, query_str=QUERY)
    with patch.object(
        tiny_cross_encoder, "compute_score", wraps=slowed(tiny_cross_encoder.compute_score)
    ) as spy:
        results, ticks = await run_with_ticker(reranker.apostprocess_nodes(nodes, query_str=QUERY))

    assert ticks >= 10  # a blocked loop would not tick during the 0.3 s
    spy.assert_called_once()
    assert results == expected
    assert nodes == snapshot
    assert [type(event) for event in rerank_events(collector)] == [ReRankStartEvent, ReRankEndEvent] * 2


async def test_async_missing_query_raises(reranker: LlamaIndexReranker) -> None:
    with pytest.raises(ValueError, match="needs a query"):
        await reranker.apostprocess_nodes(make_nodes())


async def test_concurrent_calls_on_one_model_never_overlap(tiny_cross_encoder: Any) -> None:
    tracker = OverlapTracker(tiny_cross_encoder.compute_score)
    rerankers = [LlamaIndexReranker(model=tiny_cross_encoder) for _ in range(3)]
    with patch.object(tiny_cross_encoder, "compute_score", side_effect=tracker):
        results = await asyncio.gather(
            *(reranker.apostprocess_nodes(make_nodes(), query_str=QUERY) for reranker in rerankers)
        )

    assert tracker.overlaps == 0
    assert all(result == results[0] for result in results)


# ---------------------------------------------------------------------------- in an index


def test_vector_store_index_with_the_reranker_as_node_postprocessor(
    tiny_model: Any, tiny_cross_encoder: Any
) -> None:
    nodes = [node.node for node in make_nodes()]
    index = VectorStoreIndex(nodes, embed_model=LlamaIndexEmbedding(model=tiny_model))
    reranker = LlamaIndexReranker(model=tiny_cross_encoder, top_n=2)

    candidates = index.as_retriever(similarity_top_k=4).retrieve(QUERY)
    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=4, node_postprocessors=[reranker]).query(
        QUERY
    )

    order, scores = expected_order(tiny_cross_encoder, embed_texts(candidates))
    sources = response.source_nodes
    assert node_ids(sources) == [candidates[position].node.node_id for position in order[:2]]
    assert [source.score for source in sources] == pytest.approx([scores[p] for p in order[:2]], abs=1e-5)
    assert all(type(source.score) is float for source in sources)
    retrieval = {candidate.node.node_id: candidate.score for candidate in candidates}
    for source in sources:
        assert source.node.metadata[RETRIEVAL_SCORE_KEY] == pytest.approx(retrieval[source.node.node_id])


async def test_async_query_engine_with_the_reranker(tiny_model: Any, tiny_cross_encoder: Any) -> None:
    nodes = [node.node for node in make_nodes()]
    index = VectorStoreIndex(nodes, embed_model=LlamaIndexEmbedding(model=tiny_model))
    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=4, node_postprocessors=[LlamaIndexReranker(model=tiny_cross_encoder)]
    )

    response = await engine.aquery(QUERY)
    expected = engine.query(QUERY)

    assert node_ids(response.source_nodes) == node_ids(expected.source_nodes)
    assert len(response.source_nodes) == 3


# ---------------------------------------------------------------------------- options and serialisation


@pytest.mark.filterwarnings("ignore:.*(randomly initialised|fresh|newly initialized).*")
def test_serialisation_round_trip_reloads_from_the_path(cross_encoder_path: Path, colbert_path: Path) -> None:
    for path, kind in ((cross_encoder_path, "AutoModelForRanking"), (colbert_path, "ColBERT")):
        reranker = LlamaIndexReranker(model_name_or_path=path, device="cpu", top_n=2, normalize=True)

        data = reranker.to_dict()
        rebuilt = LlamaIndexReranker.from_dict(json.loads(json.dumps(data)))

        assert data["class_name"] == "RetrievalsRagReranker" and "model" not in data
        assert type(rebuilt.ranker).__name__ == kind
        assert (rebuilt.top_n, rebuilt.normalize) == (2, True)
        assert [
            node.score for node in rebuilt.postprocess_nodes(make_nodes(), query_str=QUERY)
        ] == pytest.approx(
            [node.score for node in reranker.postprocess_nodes(make_nodes(), query_str=QUERY)], abs=1e-6
        )


def test_options_are_checked(tiny_cross_encoder: Any) -> None:
    with pytest.raises(ValueError, match="only apply when loading"):
        LlamaIndexReranker(model=tiny_cross_encoder, device="cpu")
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        LlamaIndexReranker(model=tiny_cross_encoder, keep_retrieval_score=True)
    with pytest.raises(ValueError, match="needs model_name_or_path"):
        LlamaIndexReranker()
    with pytest.raises(TypeError, match="model must be a ranker"):
        LlamaIndexReranker(model=LlamaIndexEmbedding)
