"""Versions of a collection: its chunks embedded by another model, searched with that model once chosen.

Two tiny random BERTs with different weights stand for the original embedder and another one; nothing here
trains (adapting is in test_adaptation.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrievals_rag.rag import RagEngine
from tests.conftest import build_tiny_bert
from tests.rag.conftest import TOPICS

UPLOADS = [
    (f"{topic}.txt", " ".join(f"Sentence {index}. {text}" for index in range(4)).encode())
    for topic, text in TOPICS.items()
]


@pytest.fixture(scope="module")
def other_bert_path(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    """A second tiny BERT, with the same tokenizer and other random weights."""
    import torch
    from transformers import BertModel

    path = build_tiny_bert(tmp_path_factory.mktemp("other-bert"), minilm_path)
    torch.manual_seed(1)
    BertModel(BertModel.from_pretrained(path).config).save_pretrained(path)
    return path


def make_engine(data_dir: Path, embedder: Path) -> RagEngine:
    return RagEngine(
        data_dir, embedder_path=embedder, device="cpu", llm="extractive", chunk_size=24, chunk_overlap=4
    )


@pytest.fixture
def engine(tmp_path: Path, tiny_bert_path: Path) -> RagEngine:
    """An engine over the tiny BERT holding the collection ``notes`` of four small files."""
    engine = make_engine(tmp_path / "data", tiny_bert_path)
    report = engine.index_uploads(UPLOADS, "notes")
    assert report.chunks_added > 4 and not report.errors
    return engine


def finished(job: Any) -> Any:
    assert job.wait(120), "the job did not end"
    assert job.state == "done", job.error
    return job


def cosine(left: Any, right: Any) -> float:
    left, right = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
    return float(left @ right / np.linalg.norm(left) / np.linalg.norm(right))


def test_a_version_is_searched_with_its_own_embedder_and_the_original_is_kept(
    engine: RagEngine, other_bert_path: Path, tiny_bert_path: Path
) -> None:
    from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction

    question = "Which hormone lowers glucose?"
    before = [(chunk.chunk_id, chunk.dense_score) for chunk in engine.retrieve(question, "notes")]
    original_ids = engine.store.chunk_ids("notes")

    job = finished(engine.submit_version("notes", other_bert_path))

    assert job.kind == "version" and job.report.name == "reindexed-1" and job.progress.stage == "index"
    original, version = engine.collection_versions("notes")
    assert (original.name, original.active, original.embedder) == ("original", True, str(tiny_bert_path))
    assert (version.name, version.state, version.active) == ("reindexed-1", "ready", False)
    assert version.embedder == str(other_bert_path) and version.chunks == version.chunks_total == len(
        original_ids
    )
    assert engine.list_collections() == ["notes"]  # the version's own Chroma collection is not listed
    # Not chosen yet: questions still use the original.
    assert [(chunk.chunk_id, chunk.dense_score) for chunk in engine.retrieve(question, "notes")] == before

    engine.use_version("notes", "reindexed-1")

    assert engine.versions.active("notes").name == "reindexed-1"
    found = engine.retrieve(question, "notes")
    other = ChromaEmbeddingFunction(other_bert_path, device="cpu")
    query = other.embed_query([question])[0]
    for chunk in found:  # both sides embedded by the version's model
        assert chunk.dense_score == pytest.approx(cosine(query, other([chunk.text])[0]), abs=1e-4)
    assert [chunk.dense_score for chunk in found] != [score for _, score in before]
    assert "".join(engine.ask(question, "notes")) and engine.ask(question, "notes").sources
    # the extractive answer and the support check score sentences with the version's embedder too
    assert engine.sentence_scorer("notes").embedder is engine.versions.search_target("notes")[0].embedder
    assert engine.sentence_scorer("notes").embedder is not engine.embedder
    assert engine.sentence_scorer().embedder is engine.embedder
    # The original is untouched, and chosen again in one call.
    assert engine.store.chunk_ids("notes") == original_ids
    engine.use_version("notes", "original")
    assert [(chunk.chunk_id, chunk.dense_score) for chunk in engine.retrieve(question, "notes")] == before
    assert engine.sentence_scorer("notes").embedder is engine.embedder


def test_versions_are_recorded_in_the_store_for_every_engine(
    engine: RagEngine, other_bert_path: Path, tiny_bert_path: Path
) -> None:
    finished(engine.submit_version("notes", other_bert_path))
    engine.use_version("notes", "reindexed-1")

    again = make_engine(engine.data_dir, tiny_bert_path)  # e.g. after a restart

    assert [(version.name, version.active) for version in again.collection_versions("notes")] == [
        ("original", False),
        ("reindexed-1", True),
    ]
    assert again.retriever("notes").store.embedding_function.model_name_or_path == str(other_bert_path)


def test_documents_added_or_deleted_reach_the_versions(engine: RagEngine, other_bert_path: Path) -> None:
    finished(engine.submit_version("notes", other_bert_path))
    version = engine.versions.get("notes", "reindexed-1")
    view = engine.versions.view(version.embedder)

    finished(
        engine.submit_uploads([("extra.txt", b"Glaciers carve valleys over thousands of years.")], "notes")
    )
    sync = [job for job in engine.jobs("notes") if job.kind == "version"][-1]
    finished(sync)

    assert sync.report == ["reindexed-1"]
    assert view.chunk_ids(version.collection) == engine.store.chunk_ids("notes")
    assert engine.versions.get("notes", "reindexed-1").up_to_date

    removed = engine.delete_document("notes", "extra.txt")

    assert removed == 1
    assert view.chunk_ids(version.collection) == engine.store.chunk_ids("notes")


def test_a_failed_build_is_marked_resumable_and_questions_keep_the_original(
    engine: RagEngine, other_bert_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrievals_rag.rag.store import VectorStore

    original_write = VectorStore.write_stored_chunks
    writes: list[int] = []

    def write_then_fail(self: VectorStore, collection: str, chunks: Any) -> int:
        if writes:
            raise OSError("disk full")
        writes.append(len(chunks))
        return original_write(self, collection, chunks)

    monkeypatch.setattr(VectorStore, "write_stored_chunks", write_then_fail)
    engine.versions.view(str(other_bert_path)).batch_size = 2
    job = engine.submit_version("notes", other_bert_path)
    assert job.wait(120) and job.state == "failed" and job.error == "disk full"

    version = engine.versions.get("notes", "reindexed-1")
    assert (version.state, version.error, version.chunks, version.resumable) == (
        "failed",
        "disk full",
        2,
        True,
    )
    assert version.describe() == (
        "reindexed-1: failed: disk full; resume it or delete it (the original index is untouched)"
    )
    with pytest.raises(ValueError, match="cannot be used before it is built whole"):
        engine.use_version("notes", "reindexed-1")
    assert engine.versions.active("notes").name == "original"

    monkeypatch.setattr(VectorStore, "write_stored_chunks", original_write)
    finished(engine.resume_version("notes", "reindexed-1"))

    version = engine.versions.get("notes", "reindexed-1")
    assert version.usable and version.up_to_date and version.error is None


def test_a_cancelled_build_stops_between_batches(engine: RagEngine, other_bert_path: Path) -> None:
    engine.versions.view(str(other_bert_path)).batch_size = 1
    job = engine.submit_version("notes", other_bert_path)
    job.cancel()  # before or while it runs: it stops at its next progress report
    assert job.wait(120) and job.state == "cancelled"

    version = engine.versions.get("notes", "reindexed-1")
    assert version.state == "cancelled" and version.resumable and version.chunks < version.chunks_total
    assert engine.versions.active("notes").name == "original"
    with pytest.raises(ValueError, match="nothing to resume"):
        engine.resume_version("notes", "original")


def test_deleting_versions_and_collections(engine: RagEngine, other_bert_path: Path) -> None:
    finished(engine.submit_version("notes", other_bert_path))
    finished(engine.submit_version("notes", other_bert_path))
    engine.use_version("notes", "reindexed-2")
    chroma_names = {collection.name for collection in engine.store.client.list_collections()}
    assert len(chroma_names) == 3

    with pytest.raises(ValueError, match="the original index holds the documents"):
        engine.delete_version("notes", "original")
    with pytest.raises(ValueError, match="has no version 'reindexed-9'; its versions: "):
        engine.delete_version("notes", "reindexed-9")
    engine.delete_version("notes", "reindexed-2")

    assert [version.name for version in engine.collection_versions("notes")] == ["original", "reindexed-1"]
    assert engine.versions.active("notes").name == "original"  # it used the deleted one
    assert len(engine.store.client.list_collections()) == 2

    engine.rename_collection("notes", "renamed")
    assert [version.name for version in engine.collection_versions("renamed")] == ["original", "reindexed-1"]
    engine.use_version("renamed", "reindexed-1")
    assert engine.retrieve("What erupts?", "renamed")

    engine.delete_collection("renamed")
    assert engine.store.client.list_collections() == []


def test_a_missing_embedder_or_collection_is_refused_before_any_job(
    engine: RagEngine, tmp_path: Path
) -> None:
    from retrievals_rag.rag.store import CollectionNotFoundError

    with pytest.raises(FileNotFoundError, match="no-such-model"):
        engine.submit_version("notes", tmp_path / "no-such-model")
    with pytest.raises(CollectionNotFoundError):
        engine.submit_version("missing", tmp_path)
    assert [version.name for version in engine.collection_versions("notes")] == ["original"]
    assert engine.jobs("notes") == []


def test_a_version_left_behind_is_told_and_updated_while_it_stays_usable(
    engine: RagEngine, other_bert_path: Path
) -> None:
    from retrievals_rag.rag.indexing import index_documents
    from tests.rag.conftest import text_document

    finished(engine.submit_version("notes", other_bert_path))
    engine.use_version("notes", "reindexed-1")
    # Chunks written by something that does not know about versions (another process that ended, say).
    index_documents(engine.store, [text_document("late.txt", paragraphs=2, topic="volcano")], "notes")

    version = engine.versions.get("notes", "reindexed-1")
    assert version.needs_update and version.usable and not version.resumable
    assert version.describe().endswith(
        f"; out of date: {version.chunks} of {version.chunks_total} chunks, update it"
    )
    job = engine.resume_version("notes", "reindexed-1")
    assert engine.versions.active("notes").name == "reindexed-1"  # still used while it catches up
    finished(job)
    assert engine.versions.get("notes", "reindexed-1").up_to_date

    engine.index_uploads([("more.txt", b"Tides follow the moon.")], "notes")  # the engine's own indexing
    assert engine.versions.get("notes", "reindexed-1").up_to_date  # updated before it returned
    with pytest.raises(ValueError, match="nothing to resume"):
        engine.resume_version("notes", "reindexed-1")


def test_deleting_a_version_releases_its_embedder(engine: RagEngine, other_bert_path: Path) -> None:
    import gc
    import weakref

    finished(engine.submit_version("notes", other_bert_path))
    engine.use_version("notes", "reindexed-1")
    assert engine.ask("Which hormone lowers glucose?", "notes").sources
    embedder = weakref.ref(engine.sentence_scorer("notes").embedder)
    assert embedder() is not engine.embedder

    engine.delete_version("notes", "reindexed-1")
    gc.collect()

    # nothing keeps the deleted version's model (nor its sentence vectors) in memory
    assert embedder() is None
    assert engine.sentence_scorer("notes").embedder is engine.embedder


def test_a_deleted_documents_other_name_reaches_the_versions(
    engine: RagEngine, other_bert_path: Path
) -> None:
    """The same text uploaded under a second name is stored once; deleting the first name passes its chunks to
    the second in the original, and in every version too (they kept the deleted name before), without
    embedding anything again."""
    first_name, text = UPLOADS[0]
    report = engine.index_uploads([("copy-of-" + first_name, text)], "notes")
    assert report.chunks_added == 0  # recorded as another name of the stored text
    finished(engine.submit_version("notes", other_bert_path))
    version = engine.versions.get("notes", "reindexed-1")
    view = engine.versions.view(version.embedder)
    vectors_before = view._collection(version.collection).get(include=["embeddings"])

    engine.delete_document("notes", first_name)

    original = engine.store.chunk_metadata("notes")
    in_version = view.chunk_metadata(version.collection)
    assert in_version == original
    sources = {metadata["source"] for metadata in in_version.values()}
    assert "copy-of-" + first_name in sources and first_name not in sources
    vectors_after = view._collection(version.collection).get(include=["embeddings"])
    before = dict(zip(vectors_before["ids"], vectors_before["embeddings"], strict=True))
    for chunk_id, vector in zip(vectors_after["ids"], vectors_after["embeddings"], strict=True):
        np.testing.assert_array_equal(vector, before[chunk_id])  # relabelled, not embedded again

    engine.use_version("notes", "reindexed-1")
    hits = engine.retrieve(TOPICS[first_name.removesuffix(".txt")], "notes", top_k=50)
    assert first_name not in {hit.source for hit in hits}
