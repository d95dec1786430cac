"""chromadb adapter: the embedding-function protocol, registration, reopening in a second process, langchain-chroma.

Sockets are off in this process; the second process refuses connections itself and runs under a timeout, so
a download attempt (chromadb's default ONNX model) fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from chromadb.utils.embedding_functions import known_embedding_functions

from retrievals_rag.integrations import chroma as chroma_adapters
from retrievals_rag.integrations.chroma import (
    ChromaEmbeddingFunction,
    cosine_configuration,
    get_or_create_collection,
    persistent_client,
)
from retrievals_rag.integrations.langchain import LangchainEmbedding

DOCUMENTS = {
    "photosynthesis": "Photosynthesis converts light, water and carbon dioxide into sugar and oxygen.",
    "eiffel": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "bm25": "BM25 ranks documents by the query terms they contain, weighted by rarity.",
    "insulin": "Insulin is a hormone that lowers the level of glucose in the blood.",
}
SUBPROCESS_TIMEOUT_S = 180

# Run in a fresh interpreter: refuse every network connection, reopen the collection by name only.
REOPEN_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys

    def refuse(*args, **kwargs):
        raise OSError("network access is not allowed in this test")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    path, name, query, register = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "register"
    if register:
        from retrievals_rag.integrations.chroma import persistent_client
        client = persistent_client(path)
    else:
        import chromadb
        from chromadb.config import Settings
        client = chromadb.PersistentClient(path, settings=Settings(anonymized_telemetry=False))
    collection = client.get_collection(name)
    result = collection.query(query_texts=[query], n_results=2)
    function = collection.configuration["embedding_function"]
    print(json.dumps({"ids": result["ids"][0], "distances": result["distances"][0],
                      "function": type(function).__name__, "config": function.get_config()}))
    """
)


def reopen_in_a_new_process(
    path: Path, name: str, query: str, register: bool
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REOPEN_SCRIPT, str(path), name, query, "register" if register else "no"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        check=False,
    )


def test_all_is_pinned() -> None:
    assert chroma_adapters.__all__ == [
        "EMBEDDING_FUNCTION_NAME",
        "ChromaEmbeddingFunction",
        "cosine_configuration",
        "get_or_create_collection",
        "persistent_client",
    ]


# ---------------------------------------------------------------------------- the protocol (tiny model)


@pytest.fixture
def function(tiny_bert_path: Path) -> ChromaEmbeddingFunction:
    return ChromaEmbeddingFunction(
        tiny_bert_path, query_instruction="query: ", document_instruction="passage: ", device="cpu"
    )


def test_registered_with_chromadb() -> None:
    assert known_embedding_functions["retrievals_rag"] is ChromaEmbeddingFunction
    assert ChromaEmbeddingFunction.name() == "retrievals_rag"


def test_documents_and_queries_get_their_instructions(function: ChromaEmbeddingFunction) -> None:
    texts = ["cells divide", "the brain"]
    with patch.object(function.model, "encode", wraps=function.model.encode) as encode:
        documents = function(input=texts)
        queries = function.embed_query(input=texts)

    assert [call.kwargs["instruction"] for call in encode.call_args_list] == ["passage: ", "query: "]
    assert encode.call_args_list[0].args[0] == texts  # one call for the batch
    for rows in (documents, queries):
        assert isinstance(rows, list) and len(rows) == 2
        assert all(isinstance(row, np.ndarray) and row.dtype == np.float32 and row.ndim == 1 for row in rows)
    np.testing.assert_allclose(
        np.stack(documents), function.model.encode(texts, instruction="passage: "), atol=1e-6
    )
    assert not np.allclose(documents[0], queries[0], atol=1e-4)


def test_config_holds_the_path_and_instructions_not_the_model(
    function: ChromaEmbeddingFunction, tiny_bert_path: Path
) -> None:
    config = function.get_config()

    assert config == {
        "model_name_or_path": str(tiny_bert_path),
        "query_instruction": "query: ",
        "document_instruction": "passage: ",
        "normalize_embeddings": None,
        "model_kwargs": {},
    }
    assert json.loads(json.dumps(config)) == config
    rebuilt = ChromaEmbeddingFunction.build_from_config(config)
    assert rebuilt.get_config() == config
    assert rebuilt._model is None  # loaded on first use, not when chromadb rebuilds it


def test_a_relative_path_is_stored_absolute(tiny_bert_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_bert_path.parent)

    function = ChromaEmbeddingFunction(tiny_bert_path.name)

    assert function.get_config()["model_name_or_path"] == str(tiny_bert_path.resolve())


def test_the_packaged_default_is_stored_as_none() -> None:
    assert ChromaEmbeddingFunction().get_config()["model_name_or_path"] is None


def test_spaces_are_cosine_by_default_and_never_l2(function: ChromaEmbeddingFunction) -> None:
    assert function.default_space() == "cosine"
    assert set(function.supported_spaces()) == {"cosine", "ip"}


def test_config_validation(function: ChromaEmbeddingFunction) -> None:
    with pytest.raises(ValueError, match="unknown retrievals_rag embedding function config keys"):
        ChromaEmbeddingFunction.build_from_config({**function.get_config(), "model": "x"})
    with pytest.raises(ValueError, match="would make new vectors incomparable"):
        function.validate_config_update(function.get_config(), {"query_instruction": "other: "})
    function.validate_config_update(function.get_config(), {"query_instruction": "query: "})
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        ChromaEmbeddingFunction("./no/such/model")
    with pytest.raises(ValueError, match="model_kwargs got"):
        ChromaEmbeddingFunction(model_kwargs={"device": "cpu"})


def test_client_has_telemetry_off(tmp_path: Path) -> None:
    client = persistent_client(tmp_path / "index")

    assert client.get_settings().anonymized_telemetry is False


def test_collection_with_another_config_is_refused(tmp_path: Path, tiny_bert_path: Path) -> None:
    client = persistent_client(tmp_path / "index")
    first = ChromaEmbeddingFunction(tiny_bert_path, query_instruction="query: ")
    get_or_create_collection(client, "notes", embedding_function=first)

    again = get_or_create_collection(
        client,
        "notes",
        embedding_function=ChromaEmbeddingFunction(tiny_bert_path, query_instruction="query: "),
    )
    assert again.configuration["hnsw"]["space"] == "cosine"
    with pytest.raises(ValueError, match="exists with embedding function"):
        get_or_create_collection(
            client,
            "notes",
            embedding_function=ChromaEmbeddingFunction(tiny_bert_path, query_instruction="q: "),
        )


def test_each_collection_keeps_its_own_function(tmp_path: Path, tiny_bert_path: Path) -> None:
    # chromadb writes the function into the configuration dict it is given: a shared dict would leak it.
    client = persistent_client(tmp_path / "index")
    first = get_or_create_collection(
        client, "first", embedding_function=ChromaEmbeddingFunction(tiny_bert_path, query_instruction="a: ")
    )
    second = get_or_create_collection(
        client, "second", embedding_function=ChromaEmbeddingFunction(tiny_bert_path, query_instruction="b: ")
    )

    assert first.configuration["embedding_function"].query_instruction == "a: "
    assert second.configuration["embedding_function"].query_instruction == "b: "
    assert cosine_configuration() == {"hnsw": {"space": "cosine"}}


# ---------------------------------------------------------------------------- persistence (MiniLM)


@pytest.mark.slow
def test_a_persistent_collection_reopens_in_a_second_process(tmp_path: Path) -> None:
    path = tmp_path / "index"
    function = ChromaEmbeddingFunction(query_instruction="", device="cpu")
    collection = get_or_create_collection(persistent_client(path), "notes", embedding_function=function)
    collection.add(ids=list(DOCUMENTS), documents=list(DOCUMENTS.values()))

    here = collection.query(query_texts=["Which hormone lowers blood sugar?"], n_results=2)
    reopened = reopen_in_a_new_process(path, "notes", "Which hormone lowers blood sugar?", register=True)

    assert here["ids"][0][0] == "insulin"
    assert collection.configuration["hnsw"]["space"] == "cosine"
    assert reopened.returncode == 0, reopened.stderr
    answer = json.loads(reopened.stdout.strip().splitlines()[-1])
    assert answer["function"] == "ChromaEmbeddingFunction"
    assert answer["config"] == function.get_config()
    assert answer["ids"] == here["ids"][0]
    assert answer["distances"] == pytest.approx(here["distances"][0], abs=1e-4)


@pytest.mark.slow
def test_reopening_without_the_adapter_imported_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "index"
    collection = get_or_create_collection(persistent_client(path), "notes")
    collection.add(ids=list(DOCUMENTS), documents=list(DOCUMENTS.values()))

    reopened = reopen_in_a_new_process(path, "notes", "Which hormone lowers blood sugar?", register=False)

    # chromadb cannot rebuild the function it does not know: a clear error, never its default ONNX download.
    assert reopened.returncode != 0
    assert "Embedding function retrievals_rag not found" in reopened.stderr
    assert "network access is not allowed" not in reopened.stderr


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:legacy embedding function config:DeprecationWarning")
def test_langchain_chroma_with_langchain_embedding(tmp_path: Path, minilm_model: Any) -> None:
    from langchain_chroma import Chroma

    store = Chroma(
        collection_name="notes",
        embedding_function=LangchainEmbedding(
            model=minilm_model, query_instruction="", document_instruction=""
        ),
        client=persistent_client(tmp_path / "index"),
        collection_configuration=cosine_configuration(),
    )
    metadatas = [{"topic": topic} for topic in DOCUMENTS]
    store.add_texts(list(DOCUMENTS.values()), metadatas=metadatas, ids=list(DOCUMENTS))

    found = store.similarity_search("When was the tower in Paris built?", k=2)
    scored = store.similarity_search_with_relevance_scores("When was the tower in Paris built?", k=1)

    assert len(found) == 2 and found[0].id == "eiffel"
    assert found[0].metadata == {"topic": "eiffel"}
    assert scored[0][0].id == "eiffel" and 0.0 < scored[0][1] <= 1.0
    assert store._collection.configuration["hnsw"]["space"] == "cosine"
