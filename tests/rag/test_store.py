"""The Chroma store: collections, idempotent writes, listing and deleting documents, the embedder guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.rag.store import (
    CollectionNotFoundError,
    EmbedderMismatchError,
    StoreConnectionError,
    VectorStore,
    validate_collection_name,
)
from tests.rag.conftest import text_document


def test_collections_are_created_listed_and_deleted(store: VectorStore) -> None:
    store.create_collection("notes")
    store.create_collection("papers-2024")
    store.create_collection("notes")  # exist_ok

    assert store.list_collections() == ["notes", "papers-2024"]
    with pytest.raises(ValueError, match="already exists"):
        store.create_collection("notes", exist_ok=False)
    store.delete_collection("notes")
    assert store.list_collections() == ["papers-2024"]
    with pytest.raises(
        CollectionNotFoundError, match=r"no collection named 'notes'; existing collections: \['papers-2024'\]"
    ):
        store.delete_collection("notes")


def test_collections_are_cosine_and_record_our_embedder(store: VectorStore) -> None:
    store.create_collection("notes")

    configuration = store.client.get_collection("notes").configuration

    assert configuration["hnsw"]["space"] == "cosine"
    assert configuration["embedding_function"].name() == "retrievals_rag"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ab", "3 to 512"),
        ("-abc", "letters, digits"),
        ("my notes", "letters, digits"),
        ("a..b", "'..'"),
        ("10.0.0.1", "IPv4"),
    ],
)
def test_invalid_collection_names_say_why(store: VectorStore, name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"invalid collection name {name!r}: .*{reason}"):
        store.create_collection(name)
    assert validate_collection_name("my_notes.v2") == "my_notes.v2"


def test_adding_the_same_document_twice_adds_nothing(store: VectorStore) -> None:
    store.create_collection("notes")
    document = text_document("a.txt")
    expected = len(store.split(document))

    assert store.add_document("notes", document) == expected > 1
    assert store.add_document("notes", document) == 0
    assert store.count("notes") == expected


def test_list_and_delete_documents(store: VectorStore) -> None:
    from retrievals_rag.rag.loaders import LoadedDocument, Page

    store.create_collection("notes")
    store.add_document("notes", text_document("a.txt"))
    pdf = LoadedDocument(
        "b.pdf",
        [Page("Magma rises through the crust.", 1), Page("Lava cools into rock.", 3)],
        {"file_type": "pdf"},
    )
    store.add_document("notes", pdf)
    a_chunks = len(store.split(text_document("a.txt")))

    listed = store.list_documents("notes")

    assert [(info.source, info.chunk_count, info.pages, info.file_type) for info in listed] == [
        ("a.txt", a_chunks, [], "text"),
        ("b.pdf", 2, [1, 3], "pdf"),
    ]
    assert store.delete_document("notes", "a.txt") == a_chunks
    assert store.delete_document("notes", "a.txt") == 0
    assert [info.source for info in store.list_documents("notes")] == ["b.pdf"]
    assert store.count("notes") == 2
    assert all(chunk.metadata["source"] == "b.pdf" for chunk in store.all_chunks("notes"))


def test_revision_changes_on_every_write(store: VectorStore) -> None:
    store.create_collection("notes")
    seen = {store.revision("notes")}
    store.add_document("notes", text_document("a.txt"))
    seen.add(store.revision("notes"))
    store.add_document("notes", text_document("a.txt"))  # nothing new: no change
    seen.add(store.revision("notes"))
    store.delete_document("notes", "a.txt")
    seen.add(store.revision("notes"))

    assert len(seen) == 3


def test_query_returns_python_floats_nearest_first(store: VectorStore) -> None:
    store.create_collection("notes")
    store.add_document("notes", text_document("a.txt"))

    results = store.query("notes", store.embed_query("photosynthesis sugar"), n_results=100)

    assert len(results) == store.count("notes")
    assert all(type(result.distance) is float for result in results)
    assert [result.distance for result in results] == sorted(result.distance for result in results)


def test_reopening_with_another_embedder_is_refused(
    tmp_path: Path, tiny_function: Any, minilm_path: Path
) -> None:
    from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction

    first = VectorStore(tmp_path, embedding_function=tiny_function)
    first.create_collection("notes")
    other = VectorStore(tmp_path, embedding_function=ChromaEmbeddingFunction(minilm_path))

    with pytest.raises(EmbedderMismatchError) as caught:
        other.count("notes")
    message = str(caught.value)
    assert message.startswith(
        f"the collection 'notes' was made with the embedder '{tiny_function.model_name_or_path}'"
    )
    assert f"the embedder now chosen is '{minilm_path}'" in message
    assert "create a new collection for this embedder" in message


def test_rename_collection_keeps_its_chunks(store: VectorStore) -> None:
    from retrievals_rag.rag.loaders import LoadedDocument, Page

    store.create_collection("old-name")
    store.add_document("old-name", LoadedDocument("a.txt", [Page("Magma rises through the crust.")]))
    store.create_collection("taken")

    with pytest.raises(ValueError, match="already exists"):
        store.rename_collection("old-name", "taken")
    with pytest.raises(ValueError, match="invalid collection name"):
        store.rename_collection("old-name", "x")
    store.rename_collection("old-name", "new-name")

    assert store.list_collections() == ["new-name", "taken"]
    assert [info.source for info in store.list_documents("new-name")] == ["a.txt"]
    with pytest.raises(CollectionNotFoundError):
        store.count("old-name")


def test_a_collection_another_store_deletes_recreates_or_renames_is_seen(
    store: VectorStore, tiny_function: Any
) -> None:
    other = VectorStore(store.data_dir, embedding_function=tiny_function)  # another engine on the same folder
    store.create_collection("notes")
    store.add_document("notes", text_document("a.txt", paragraphs=2))
    assert store.count("notes") > 0  # this store now holds a handle of 'notes'

    other.delete_collection("notes")
    for read in (
        lambda: store.count("notes"),
        lambda: store.list_documents("notes"),
        lambda: store.query("notes", store.embed_query("sugar"), n_results=2),
    ):
        with pytest.raises(
            CollectionNotFoundError, match=r"no collection named 'notes'; existing collections: none"
        ):
            read()

    other.create_collection("notes")
    other.add_document("notes", text_document("b.txt", paragraphs=3, topic="volcano"))
    assert [info.source for info in store.list_documents("notes")] == ["b.txt"]
    assert store.count("notes") == other.count("notes")
    store.add_document("notes", text_document("c.txt", paragraphs=1))
    assert [info.source for info in other.list_documents("notes")] == ["b.txt", "c.txt"]

    other.rename_collection("notes", "renamed")
    with pytest.raises(CollectionNotFoundError, match=r"existing collections: \['renamed'\]"):
        store.count("notes")
    assert store.count("renamed") == other.count("renamed")


def test_missing_data_dir_and_bad_urls() -> None:
    with pytest.raises(ValueError, match="give data_dir"):
        VectorStore()
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        VectorStore(chroma_url="127.0.0.1:8000")


def test_unreachable_server_names_the_url(free_port: int) -> None:
    url = f"http://127.0.0.1:{free_port}"
    with pytest.raises(StoreConnectionError, match=f"cannot reach the Chroma server at {url}.*chroma run"):
        VectorStore(chroma_url=url)
