"""LlamaIndex embedding adapter: retrieval in a VectorStoreIndex, batching, instructions, async, serialisation.

LlamaIndex has no conformance suite for embeddings: these are the contract tests. No LLM is involved except
``MockLLM``, so nothing reaches OpenAI or any network.
"""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.schema import TextNode

from retrievals_rag.integrations import llama_index as llama_index_adapters
from retrievals_rag.integrations.llama_index import LlamaIndexEmbedding
from tests.integrations.conftest import run_with_ticker, slowed

NODES = {
    "photosynthesis": "Photosynthesis converts light, water and carbon dioxide into sugar and oxygen.",
    "eiffel": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "bm25": "BM25 ranks documents by the query terms they contain, weighted by rarity.",
    "insulin": "Insulin is a hormone that lowers the level of glucose in the blood.",
}


def make_nodes() -> list[TextNode]:
    return [TextNode(id_=node_id, text=text) for node_id, text in NODES.items()]


@pytest.fixture
def instructed(tiny_model: Any) -> LlamaIndexEmbedding:
    return LlamaIndexEmbedding(
        model=tiny_model, query_instruction="query: ", document_instruction="passage: "
    )


def test_all_is_pinned() -> None:
    assert llama_index_adapters.__all__ == [
        "PREVIOUS_RELEVANCE_SCORE_KEY",
        "RELEVANCE_SCORE_KEY",
        "RETRIEVAL_SCORE_KEY",
        "LlamaIndexEmbedding",
        "LlamaIndexReranker",
    ]


@pytest.mark.slow
def test_vector_store_index_retrieves_the_right_node(minilm_model: Any) -> None:
    embed_model = LlamaIndexEmbedding(model=minilm_model)
    index = VectorStoreIndex(make_nodes(), embed_model=embed_model)

    retrieved = index.as_retriever(similarity_top_k=2).retrieve("When was the tower in Paris built?")
    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=1).query(
        "Which hormone lowers blood sugar?"
    )

    assert retrieved[0].node.node_id == "eiffel"
    assert all(type(result.score) is float for result in retrieved)
    assert retrieved[0].score > retrieved[1].score
    assert [source.node.node_id for source in response.source_nodes] == ["insulin"]


@pytest.mark.slow
async def test_async_retrieval_in_a_running_loop(minilm_model: Any) -> None:
    embed_model = LlamaIndexEmbedding(model=minilm_model)
    index = VectorStoreIndex(make_nodes(), embed_model=embed_model, use_async=True)

    retrieved = await index.as_retriever(similarity_top_k=1).aretrieve("How does BM25 rank documents?")

    assert [result.node.node_id for result in retrieved] == ["bm25"]


def test_a_batch_of_texts_is_one_encode_call_with_the_document_instruction(
    instructed: LlamaIndexEmbedding, tiny_model: Any
) -> None:
    texts = ["cells divide", "the brain", "gene treatment", "protein study", "risk of cancer"]
    with patch.object(tiny_model, "encode", wraps=tiny_model.encode) as encode:
        embeddings = instructed.get_text_embedding_batch(texts)

    encode.assert_called_once()
    assert encode.call_args.args[0] == texts
    assert encode.call_args.kwargs["instruction"] == "passage: "
    np.testing.assert_allclose(embeddings, tiny_model.encode(texts, instruction="passage: "), atol=1e-6)
    assert all(type(value) is float for row in embeddings for value in row)


def test_building_an_index_encodes_the_nodes_in_one_call(
    instructed: LlamaIndexEmbedding, tiny_model: Any
) -> None:
    with patch.object(tiny_model, "encode", wraps=tiny_model.encode) as encode:
        VectorStoreIndex(make_nodes(), embed_model=instructed)

    encode.assert_called_once()
    assert len(encode.call_args.args[0]) == len(NODES)


def test_default_embed_batch_size_is_raised(instructed: LlamaIndexEmbedding) -> None:
    assert instructed.embed_batch_size == 256


def test_queries_get_the_query_instruction(instructed: LlamaIndexEmbedding, tiny_model: Any) -> None:
    with patch.object(tiny_model, "encode", wraps=tiny_model.encode) as encode:
        query = instructed.get_query_embedding("what do cells do?")
        text = instructed.get_text_embedding("what do cells do?")

    assert [call.kwargs["instruction"] for call in encode.call_args_list] == ["query: ", "passage: "]
    np.testing.assert_allclose(
        query, tiny_model.encode("what do cells do?", instruction="query: "), atol=1e-6
    )
    assert not np.allclose(query, text, atol=1e-4)
    assert all(type(value) is float for value in query)


async def test_async_methods_do_not_block_the_event_loop(
    instructed: LlamaIndexEmbedding, tiny_model: Any
) -> None:
    texts = ["cells divide", "the brain", "gene treatment"]
    with patch.object(tiny_model, "encode", wraps=slowed(tiny_model.encode)) as encode:
        batch, batch_ticks = await run_with_ticker(instructed.aget_text_embedding_batch(texts))
        query, query_ticks = await run_with_ticker(instructed.aget_query_embedding("cells"))
        text, text_ticks = await run_with_ticker(instructed.aget_text_embedding("cells"))

    assert min(batch_ticks, query_ticks, text_ticks) >= 10  # a blocked loop would not tick during the 0.3 s
    assert [call.kwargs["instruction"] for call in encode.call_args_list] == [
        "passage: ",
        "query: ",
        "passage: ",
    ]
    assert len(encode.call_args_list[0].args[0]) == 3  # the batch stays one call
    assert batch == instructed.get_text_embedding_batch(texts)
    assert query == instructed.get_query_embedding("cells")
    assert text == instructed.get_text_embedding("cells")


def test_serialisation_round_trip_reloads_from_the_path(tiny_bert_path: Any) -> None:
    embed_model = LlamaIndexEmbedding(
        model_name_or_path=tiny_bert_path,
        device="cpu",
        query_instruction="query: ",
        model_kwargs={"max_length": 32},
    )

    data = embed_model.to_dict()
    rebuilt = LlamaIndexEmbedding.from_dict(json.loads(json.dumps(data)))

    assert data["class_name"] == "RetrievalsRagEmbedding"
    assert "model" not in data
    assert data["model_name"] == data["model_name_or_path"] == str(tiny_bert_path)
    assert rebuilt.query_instruction == "query: " and rebuilt._model.max_length == 32
    assert rebuilt.get_query_embedding("cells") == pytest.approx(
        embed_model.get_query_embedding("cells"), abs=1e-6
    )


def test_options_are_checked(tiny_model: Any) -> None:
    with pytest.raises(ValueError, match="only apply when loading"):
        LlamaIndexEmbedding(model=tiny_model, device="cpu")
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        LlamaIndexEmbedding(model=tiny_model, instruction="query: ")
    with pytest.raises(ValueError, match="less than or equal to 2048"):
        LlamaIndexEmbedding(model=tiny_model, embed_batch_size=4096)
