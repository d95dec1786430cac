"""LangChain adapters: the langchain-tests standard suites, and the contracts users complained about."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import json
import time
from collections.abc import Sequence
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from retrievals_rag.integrations import langchain as langchain_adapters
from retrievals_rag.integrations.langchain import (
    BM25_SCORE_KEY,
    DENSE_SCORE_KEY,
    RETRIEVAL_SCORE_KEY,
    LangchainEmbedding,
    LangchainReranker,
    LangchainRetriever,
)
from retrievals_rag.models.loading import default_embedding_model_path
from tests.integrations.conftest import run_with_ticker, shared_minilm, slowed

CORPUS = [
    "Dense retrieval encodes queries and documents into vectors and ranks by similarity.",
    "BM25 ranks documents by the query terms they contain, weighted by rarity.",
    "Photosynthesis converts light, water and carbon dioxide into sugar and oxygen.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Reciprocal rank fusion merges several rankings using only the ranks.",
]
CORPUS_IDS = ["dense", "bm25", "plants", "eiffel", "rrf"]


def test_all_is_pinned() -> None:
    assert langchain_adapters.__all__ == [
        "BM25_SCORE_KEY",
        "DENSE_SCORE_KEY",
        "PREVIOUS_RELEVANCE_SCORE_KEY",
        "RELEVANCE_SCORE_KEY",
        "RETRIEVAL_SCORE_KEY",
        "LangchainEmbedding",
        "LangchainReranker",
        "LangchainRetriever",
    ]


# ---------------------------------------------------------------------------- standard suites (MiniLM)


@pytest.mark.slow
class TestLangchainEmbeddingStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[LangchainEmbedding]:
        return LangchainEmbedding

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        # Built from the path here (the constructor's loading path); from the loaded model below.
        return {"model_name_or_path": str(default_embedding_model_path()), "device": "cpu"}


@pytest.mark.slow
class TestLangchainEmbeddingStandardIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[LangchainEmbedding]:
        return LangchainEmbedding

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": shared_minilm(), "query_instruction": "query: ", "document_instruction": ""}


@pytest.mark.slow
class TestLangchainRetrieverStandardDense(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[LangchainRetriever]:
        return LangchainRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"texts": CORPUS, "ids": CORPUS_IDS, "embeddings": LangchainEmbedding(model=shared_minilm())}

    @property
    def retriever_query_example(self) -> str:
        return "how do sparse and dense retrievers rank documents?"


@pytest.mark.slow
class TestLangchainRetrieverStandardFusion(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[LangchainRetriever]:
        return LangchainRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {
            "texts": CORPUS,
            "embeddings": LangchainEmbedding(model=shared_minilm()),
            "use_bm25": True,
            "k": 2,
        }

    @property
    def retriever_query_example(self) -> str:
        return "how do sparse and dense retrievers rank documents?"


# langchain-chroma creates its collections without a chromadb embedding function, which chromadb calls legacy.
LEGACY_CONFIG_WARNING = "ignore:legacy embedding function config:DeprecationWarning"


@functools.cache
def standard_suite_store() -> Any:
    """An in-memory langchain-chroma store over CORPUS, built once."""
    import chromadb
    from chromadb.config import Settings
    from langchain_chroma import Chroma

    from retrievals_rag.integrations.chroma import cosine_configuration

    store = Chroma(
        collection_name="standard-suite",
        embedding_function=LangchainEmbedding(model=shared_minilm()),
        client=chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False)),
        collection_configuration=cosine_configuration(),
    )
    store.add_texts(CORPUS, ids=CORPUS_IDS)
    return store


@pytest.mark.slow
@pytest.mark.filterwarnings(LEGACY_CONFIG_WARNING)
# Its cosine relevance (1 - distance) is negative for an unrelated document; LangChain warns but keeps it.
@pytest.mark.filterwarnings("ignore:Relevance scores must be between 0 and 1:UserWarning")
class TestLangchainRetrieverStandardVectorStore(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[LangchainRetriever]:
        return LangchainRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"vectorstore": standard_suite_store()}

    @property
    def retriever_query_example(self) -> str:
        return "how do sparse and dense retrievers rank documents?"


# ---------------------------------------------------------------------------- embeddings contracts


@pytest.fixture
def instructed(tiny_model: Any) -> LangchainEmbedding:
    return LangchainEmbedding(model=tiny_model, query_instruction="query: ", document_instruction="passage: ")


def test_documents_get_the_document_instruction(instructed: LangchainEmbedding, tiny_model: Any) -> None:
    with patch.object(tiny_model, "encode", wraps=tiny_model.encode) as encode:
        vectors = instructed.embed_documents(["cells divide", "the brain"])

    encode.assert_called_once()
    assert encode.call_args.args[0] == ["cells divide", "the brain"]
    assert encode.call_args.kwargs["instruction"] == "passage: "
    expected = tiny_model.encode(["cells divide", "the brain"], instruction="passage: ")
    np.testing.assert_allclose(np.array(vectors), expected, atol=1e-6)


def test_queries_get_the_query_instruction(instructed: LangchainEmbedding, tiny_model: Any) -> None:
    with patch.object(tiny_model, "encode", wraps=tiny_model.encode) as encode:
        vector = instructed.embed_query("what do cells do?")

    assert encode.call_args.kwargs["instruction"] == "query: "
    expected = tiny_model.encode(["what do cells do?"], instruction="query: ")[0]
    np.testing.assert_allclose(vector, expected, atol=1e-6)
    assert not np.allclose(vector, instructed.embed_documents(["what do cells do?"])[0], atol=1e-4)


def test_instructions_default_to_the_models_own_and_empty_means_none(tiny_model: Any) -> None:
    settings = dataclasses.replace(tiny_model.settings, query_instruction="Q: ", document_instruction="D: ")
    model = type(tiny_model)(tiny_model.model, tiny_model.tokenizer, settings)  # same weights
    with patch.object(model, "encode", wraps=model.encode) as encode:
        LangchainEmbedding(model=model).embed_query("cells")
        LangchainEmbedding(model=model).embed_documents(["cells"])
        LangchainEmbedding(model=model, query_instruction="", document_instruction="").embed_query("cells")

    assert [call.kwargs["instruction"] for call in encode.call_args_list] == ["Q: ", "D: ", ""]


def test_outputs_are_python_floats_and_json_serialisable(instructed: LangchainEmbedding) -> None:
    documents = instructed.embed_documents(["cells", "protein", "gene"])
    query = instructed.embed_query("cells")

    assert all(type(value) is float for row in documents for value in row)
    assert all(type(value) is float for value in query)
    assert len(documents) == 3 and len({len(row) for row in [*documents, query]}) == 1
    json.dumps({"documents": documents, "query": query})


def test_one_normalisation_setting_for_both_sides(tiny_model: Any) -> None:
    raw = LangchainEmbedding(model=tiny_model, normalize_embeddings=False)
    unit = LangchainEmbedding(model=tiny_model, normalize_embeddings=True)

    for embeddings, unit_norm in ((raw, False), (unit, True)):
        norms = [
            np.linalg.norm(embeddings.embed_query("cells")),
            np.linalg.norm(embeddings.embed_documents(["cells"])[0]),
        ]
        assert np.allclose(norms, 1.0, atol=1e-5) is unit_norm
    assert np.isclose(
        *[np.linalg.norm(v) for v in (raw.embed_query("cells"), raw.embed_documents(["cells"])[0])]
    )


def test_batching_options_reach_encode(tiny_model: Any) -> None:
    embeddings = LangchainEmbedding(model=tiny_model, batch_size=2, token_budget=64, show_progress_bar=False)
    with patch.object(tiny_model, "encode", wraps=tiny_model.encode) as encode:
        embeddings.embed_documents(["cells"] * 5)

    encode.assert_called_once()
    assert encode.call_args.kwargs | {"instruction": None} == {
        "instruction": None,
        "batch_size": 2,
        "token_budget": 64,
        "convert_to": "numpy",
        "normalize_embeddings": None,
        "show_progress_bar": False,
    }


def test_empty_and_wrong_inputs(instructed: LangchainEmbedding) -> None:
    assert instructed.embed_documents([]) == []
    with pytest.raises(TypeError, match="not one string"):
        instructed.embed_documents("cells")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str"):
        instructed.embed_query(["cells"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [{"device": "cpu"}, {"use_fp16": True}, {"model_name_or_path": "x"}, {"model_kwargs": {"max_length": 8}}],
)
def test_a_loaded_model_with_loading_options_raises(tiny_model: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="only apply when loading"):
        LangchainEmbedding(model=tiny_model, **options)


def test_unknown_and_wrong_options_raise(tiny_model: Any) -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        LangchainEmbedding(model=tiny_model, normalize=True)
    with pytest.raises(ValueError, match="model_kwargs got \\['device'\\]"):
        LangchainEmbedding(model_kwargs={"device": "cpu"})
    with pytest.raises(TypeError, match="must be an AutoModelForEmbedding"):
        LangchainEmbedding(model="sentence-transformers/all-MiniLM-L6-v2")


def test_loads_from_a_path_with_options(tiny_bert_path: Any) -> None:
    embeddings = LangchainEmbedding(
        model_name_or_path=tiny_bert_path, device="cpu", model_kwargs={"max_length": 16}
    )

    assert embeddings.model_name_or_path == str(tiny_bert_path)
    assert embeddings._model.max_length == 16
    assert embeddings._model.device.type == "cpu"
    assert "model=" not in repr(embeddings)


async def test_async_embedding_does_not_block_the_event_loop(
    instructed: LangchainEmbedding, tiny_model: Any
) -> None:
    with patch.object(tiny_model, "encode", wraps=slowed(tiny_model.encode)) as encode:
        documents, document_ticks = await run_with_ticker(instructed.aembed_documents(["cells", "gene"]))
        query, query_ticks = await run_with_ticker(instructed.aembed_query("cells"))

    assert document_ticks >= 10 and query_ticks >= 10  # a blocked loop would not tick during the 0.3 s
    assert [call.kwargs["instruction"] for call in encode.call_args_list] == ["passage: ", "query: "]
    assert documents == instructed.embed_documents(["cells", "gene"])
    assert query == instructed.embed_query("cells")


async def test_encode_calls_on_one_model_never_overlap(tiny_model: Any) -> None:
    # encode() switches the model to eval mode and back: overlapping calls on one model can run with dropout
    # on. The adapters serialise the calls on each model, across adapter instances and worker threads.
    from retrievals_rag.integrations.llama_index import LlamaIndexEmbedding

    active = overlaps = 0
    real_encode = tiny_model.encode

    def tracking_encode(*args: Any, **kwargs: Any) -> Any:
        nonlocal active, overlaps
        active += 1
        overlaps += active > 1
        time.sleep(0.05)
        try:
            return real_encode(*args, **kwargs)
        finally:
            active -= 1

    langchain_embedding = LangchainEmbedding(model=tiny_model)
    llama_index_embedding = LlamaIndexEmbedding(model=tiny_model)
    with patch.object(tiny_model, "encode", side_effect=tracking_encode) as encode:
        results = await asyncio.gather(
            *(langchain_embedding.aembed_documents(["cells", "gene"]) for _ in range(3)),
            langchain_embedding.aembed_query("cells"),
            llama_index_embedding.aget_text_embedding_batch(["cells", "gene"]),
        )

    assert encode.call_count == 5
    assert overlaps == 0
    assert results[0] == results[1] == results[2] == results[4]


# ---------------------------------------------------------------------------- retriever contracts


class TableEmbeddings(Embeddings):
    """Fixed vectors per text: rankings known in advance (and any LangChain Embeddings must work)."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.document_calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.document_calls += 1
        return [self.table[text] for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table[text]


# Dense order for both queries: first > second > third. BM25: "zebra" only in the third text, "apple" only in
# the first.
FIRST, SECOND, THIRD = "apple orchard notes", "fruit market report", "zebra sighting log"
TABLE = {
    FIRST: [1.0, 0.0],
    SECOND: [0.8, 0.6],
    THIRD: [0.6, 0.8],
    "zebra": [1.0, 0.0],
    "apple": [1.0, 0.0],
}


def table_retriever(**options: Any) -> LangchainRetriever:
    return LangchainRetriever(
        texts=[FIRST, SECOND, THIRD],
        ids=["first", "second", "third"],
        embeddings=TableEmbeddings(TABLE),
        **options,
    )


def test_dense_ranking_scores_and_ids() -> None:
    documents = table_retriever(k=3).invoke("zebra")

    assert [document.id for document in documents] == ["first", "second", "third"]
    assert [document.page_content for document in documents] == [FIRST, SECOND, THIRD]
    scores = [document.metadata[RETRIEVAL_SCORE_KEY] for document in documents]
    assert all(type(score) is float for score in scores)
    assert scores == pytest.approx([1.0, 0.8, 0.6])
    assert all(DENSE_SCORE_KEY not in document.metadata for document in documents)


def test_k_from_the_constructor_and_from_invoke() -> None:
    retriever = table_retriever(k=2)

    assert len(retriever.invoke("zebra")) == 2
    assert len(retriever.invoke("zebra", k=1)) == 1
    assert len(retriever.invoke("zebra", k=10)) == 3  # at most the corpus
    assert retriever.k == 2  # a per-call k does not stick
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        retriever.invoke("zebra", k=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        retriever.invoke("zebra", top_k=1)


def test_bm25_fusion_lifts_the_exact_term_match() -> None:
    documents = table_retriever(k=3, use_bm25=True, rrf_k=60).invoke("zebra")

    # dense ranks: first 1, second 2, third 3; BM25 ranks: third 1 (the only text containing "zebra").
    assert [document.id for document in documents] == ["third", "first", "second"]
    third, first, second = (document.metadata for document in documents)
    assert third[RETRIEVAL_SCORE_KEY] == pytest.approx(1 / 63 + 1 / 61)
    assert first[RETRIEVAL_SCORE_KEY] == pytest.approx(1 / 61)
    assert third[DENSE_SCORE_KEY] == pytest.approx(0.6) and third[BM25_SCORE_KEY] > 0
    assert BM25_SCORE_KEY not in first and BM25_SCORE_KEY not in second
    assert all(type(value) is float for metadata in (third, first, second) for value in metadata.values())


def test_bm25_fusion_keeps_an_order_it_agrees_with() -> None:
    dense = table_retriever(k=3).invoke("apple")
    fused = table_retriever(k=3, use_bm25=True).invoke("apple")

    assert (
        [document.id for document in fused]
        == [document.id for document in dense]
        == ["first", "second", "third"]
    )
    assert fused[0].metadata[BM25_SCORE_KEY] > 0


def test_the_callers_metadata_is_never_mutated() -> None:
    metadatas = [{"source": "a.txt", "tags": ["x"]}, {"source": "b.txt", "tags": []}, {}]
    snapshot = copy.deepcopy(metadatas)
    retriever = LangchainRetriever(
        texts=[FIRST, SECOND, THIRD], metadatas=metadatas, embeddings=TableEmbeddings(TABLE), use_bm25=True
    )

    first = retriever.invoke("zebra")  # third, first, second
    first[1].metadata["tags"].append("changed by the user")
    first[1].metadata["source"] = "changed"
    second = retriever.invoke("zebra")

    assert metadatas == snapshot
    assert [document.metadata.get("source") for document in second] == [None, "a.txt", "b.txt"]
    assert second[1].metadata["tags"] == ["x"]
    assert [document.id for document in second] == ["2", "0", "1"]  # default ids are positions


def test_from_documents_keeps_ids_and_leaves_the_documents_alone() -> None:
    documents = [
        Document(page_content=FIRST, metadata={"page": 1}, id="doc-a"),
        Document(page_content=SECOND, metadata={"page": 2}, id="doc-b"),
        Document(page_content=THIRD, metadata={"page": 3}),
    ]
    snapshot = [document.model_copy(deep=True) for document in documents]

    results = LangchainRetriever.from_documents(documents, embeddings=TableEmbeddings(TABLE), k=3).invoke(
        "zebra"
    )

    assert [document.id for document in results] == ["doc-a", "doc-b", "2"]
    assert [document.metadata["page"] for document in results] == [1, 2, 3]
    assert documents == snapshot
    assert all(result is not document for result in results for document in documents)


def test_corpus_is_embedded_once() -> None:
    embeddings = TableEmbeddings(TABLE)
    retriever = LangchainRetriever(texts=[FIRST, SECOND, THIRD], embeddings=embeddings)
    retriever.invoke("zebra")
    retriever.invoke("apple")

    assert embeddings.document_calls == 1


def test_an_empty_corpus_returns_nothing() -> None:
    assert (
        LangchainRetriever(texts=[], embeddings=TableEmbeddings(TABLE), use_bm25=True).invoke("zebra") == []
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs texts \\(a corpus\\) or a vectorstore"),
        ({"texts": [FIRST], "ids": ["a", "b"]}, "got 2 ids for 1 texts"),
        ({"texts": [FIRST], "metadatas": []}, "got 0 metadatas for 1 texts"),
        ({"texts": [FIRST, SECOND], "ids": ["a", "a"]}, "ids must be unique"),
        ({"texts": [FIRST], "search_kwargs": {"filter": {}}}, "apply to a vectorstore"),
        ({"texts": [FIRST], "k": 0}, "greater than or equal to 1"),
        ({"texts": [FIRST], "top_k": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_retriever_options_raise(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LangchainRetriever(embeddings=TableEmbeddings(TABLE), **options)


class WordCountReranker(LangchainReranker):
    """Scores a text by its words (no model): the LangChain reranker's scoring without a forward pass."""

    def _score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [float(len(text.split())) + (1.0 if query in text else 0.0) for text in texts]


@pytest.mark.filterwarnings("ignore:.*randomly initialised:UserWarning")
async def test_sync_and_async_retrieval_are_one_search(tiny_bert_path: Any) -> None:
    reranker = WordCountReranker(model_name_or_path=tiny_bert_path, device="cpu")
    retriever = table_retriever(k=2, fetch_k=3, use_bm25=True, reranker=reranker)

    synchronous = retriever.invoke("zebra")
    asynchronous = await retriever.ainvoke("zebra")

    assert [document.metadata for document in synchronous] == [document.metadata for document in asynchronous]
    assert [document.id for document in synchronous] == ["third", "first"]
    metadata = synchronous[0].metadata
    assert metadata["relevance_score"] == 4.0 and metadata[RETRIEVAL_SCORE_KEY] == pytest.approx(
        1 / 61 + 1 / 63
    )
    assert metadata[DENSE_SCORE_KEY] == pytest.approx(0.6) and metadata[BM25_SCORE_KEY] > 0


async def test_async_retrieval_does_not_block_the_event_loop(tiny_model: Any) -> None:
    retriever = LangchainRetriever(
        texts=["cells divide", "the brain study", "gene treatment"],
        embeddings=LangchainEmbedding(model=tiny_model),
        use_bm25=True,
        k=2,
    )
    with patch.object(tiny_model, "encode", wraps=slowed(tiny_model.encode)):
        documents, ticks = await run_with_ticker(retriever.ainvoke("brain study", k=1))

    assert ticks >= 10
    assert [document.id for document in documents] == [retriever.invoke("brain study", k=1)[0].id]
    assert type(documents[0].metadata[RETRIEVAL_SCORE_KEY]) is float


# ---------------------------------------------------------------------------- over a vector store


@pytest.fixture
def chroma_store(tmp_path: Any, minilm_model: Any) -> Any:
    from langchain_chroma import Chroma

    from retrievals_rag.integrations.chroma import cosine_configuration, persistent_client

    return Chroma(
        collection_name="notes",
        embedding_function=LangchainEmbedding(model=minilm_model),
        client=persistent_client(tmp_path / "chroma"),
        collection_configuration=cosine_configuration(),
    )


@pytest.mark.slow
@pytest.mark.filterwarnings(LEGACY_CONFIG_WARNING)
async def test_retriever_over_a_langchain_chroma_store(chroma_store: Any) -> None:
    metadatas = [{"topic": topic} for topic in CORPUS_IDS]
    snapshot = copy.deepcopy(metadatas)
    chroma_store.add_texts(CORPUS, metadatas=metadatas, ids=CORPUS_IDS)
    retriever = LangchainRetriever(vectorstore=chroma_store, k=2)

    documents = retriever.invoke("When was the Eiffel Tower built?")
    async_documents = await retriever.ainvoke("When was the Eiffel Tower built?", k=1)
    raw = LangchainRetriever(vectorstore=chroma_store, vectorstore_score="raw").invoke("Paris tower", k=1)

    assert documents[0].id == "eiffel" and len(documents) == 2
    assert documents[0].metadata["topic"] == "eiffel"
    scores = [document.metadata[RETRIEVAL_SCORE_KEY] for document in documents]
    assert all(type(score) is float and 0.0 <= score <= 1.0 for score in scores)
    assert scores == sorted(scores, reverse=True)
    assert [document.id for document in async_documents] == ["eiffel"]
    assert raw[0].id == "eiffel" and raw[0].metadata[RETRIEVAL_SCORE_KEY] < 1.0  # a cosine distance
    assert metadatas == snapshot


@pytest.mark.slow
@pytest.mark.filterwarnings(LEGACY_CONFIG_WARNING)
def test_retriever_over_a_store_filters_with_search_kwargs(chroma_store: Any) -> None:
    chroma_store.add_texts(CORPUS, metadatas=[{"topic": topic} for topic in CORPUS_IDS], ids=CORPUS_IDS)
    retriever = LangchainRetriever(
        vectorstore=chroma_store, k=3, search_kwargs={"filter": {"topic": "plants"}}
    )

    assert [document.id for document in retriever.invoke("When was the Eiffel Tower built?")] == ["plants"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"texts": ["a"]}, "texts apply to a corpus"),
        ({"use_bm25": True}, "use_bm25 apply to a corpus"),
        ({"embeddings": TableEmbeddings(TABLE)}, "embeddings apply to a corpus"),
        ({"search_kwargs": {"k": 3}}, "not in search_kwargs"),
    ],
)
def test_corpus_options_with_a_vector_store_raise(options: dict[str, Any], message: str) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(TableEmbeddings(TABLE))
    with pytest.raises(ValueError, match=message):
        LangchainRetriever(vectorstore=store, **options)


def test_retriever_over_an_in_memory_store_copies_documents() -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(TableEmbeddings(TABLE))
    originals = [
        Document(page_content=FIRST, metadata={"n": [1]}, id="a"),
        Document(page_content=THIRD, id="c"),
    ]
    store.add_documents(originals)

    documents = LangchainRetriever(vectorstore=store, k=1, vectorstore_score="raw").invoke("zebra")
    documents[0].metadata["n"].append(2)

    assert [document.id for document in documents] == ["a"]
    assert documents[0].metadata[RETRIEVAL_SCORE_KEY] == pytest.approx(1.0)  # its cosine similarity
    assert type(documents[0].metadata[RETRIEVAL_SCORE_KEY]) is float
    assert store.get_by_ids(["a"])[0].metadata == {"n": [1]}
    # This store has no relevance scores: the error says what to do.
    with pytest.raises(NotImplementedError, match="vectorstore_score='raw'"):
        LangchainRetriever(vectorstore=store).invoke("zebra")
