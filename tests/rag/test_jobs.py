"""Indexing in the background: jobs run apart from the caller, report progress, can be cancelled and resumed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.rag.indexing import IndexProgress, IndexReport, ProgressCallback, index_loaded
from retrievals_rag.rag.jobs import JobRunner
from retrievals_rag.rag.loaders import load_bytes


def test_jobs_run_in_order_in_their_own_thread() -> None:
    runner = JobRunner()
    threads: list[str] = []
    release = threading.Event()

    def work(name: str) -> Any:
        def run(progress: ProgressCallback) -> IndexReport:
            release.wait(10)
            threads.append(threading.current_thread().name)
            progress(IndexProgress(1, 1, 3, 0, None, chunks_total=3, elapsed=1.0))
            return IndexReport(indexed=[name], chunks_added=3)

        return run

    first = runner.submit("notes", ["a.txt"], work("a.txt"))
    second = runner.submit("notes", ["b.txt"], work("b.txt"))
    assert first.active and second.state == "queued"  # submit returned before any work was done
    release.set()

    assert second.wait(10) and first.state == second.state == "done"
    assert first.report is not None and first.report.indexed == ["a.txt"]
    assert first.progress is not None and first.progress.fraction == 1.0
    assert threads == ["retrievals-rag-indexing"] * 2
    assert [job.id for job in runner.jobs("notes")] == [first.id, second.id] and runner.jobs("other") == []


def test_a_failing_job_records_its_error_and_the_next_one_runs() -> None:
    runner = JobRunner()

    def fail(progress: ProgressCallback) -> IndexReport:
        raise OSError("disk full")

    failed = runner.submit("notes", ["a.txt"], fail)
    done = runner.submit("notes", ["b.txt"], lambda progress: IndexReport())

    assert done.wait(10)
    assert (failed.state, failed.error) == ("failed", "disk full")
    assert done.state == "done"


def test_cancel_stops_between_batches() -> None:
    runner = JobRunner()
    started = threading.Event()
    batches: list[int] = []

    def run(progress: ProgressCallback) -> IndexReport:
        for batch in range(1000):
            batches.append(batch)
            progress(IndexProgress(0, 1, batch, 0, "a.txt", chunks_total=1000))
            started.set()
            threading.Event().wait(0.01)
        return IndexReport()

    job = runner.submit("notes", ["a.txt"], run)
    assert started.wait(10)
    job.cancel()
    assert job.wait(10) and job.state == "cancelled" and len(batches) < 1000


@pytest.fixture
def engine(tmp_path: Path, tiny_bert_path: Path) -> Any:  # -> RagEngine
    from retrievals_rag.rag import RagEngine

    return RagEngine(
        tmp_path / "data",
        embedder_path=tiny_bert_path,
        device="cpu",
        llm="extractive",
        chunk_size=24,
        chunk_overlap=4,
    )


def test_engine_uploads_in_the_background_are_kept_until_complete(engine: Any) -> None:
    text = " ".join(f"Sentence {index} tells about volcanoes and magma." for index in range(60)).encode()
    job = engine.submit_uploads([("volcano.txt", text), ("empty.txt", b"")], "notes")
    kept = engine.data_dir / "pending-uploads" / "notes"

    assert job.wait(60) and job.state == "done", job.error
    assert [info.source for info in engine.list_documents("notes") if info.complete] == ["volcano.txt"]
    assert [error.path for error in job.report.errors] == ["empty.txt"]
    assert not list(kept.iterdir())  # complete, or failed to load: nothing kept to resume


def test_engine_resumes_a_partial_upload_from_its_kept_copy(engine: Any) -> None:
    text = " ".join(f"Sentence {index} tells about insulin and glucose." for index in range(60)).encode()
    kept = engine.data_dir / "pending-uploads" / "notes" / "insulin.txt"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(text)
    engine.create_collection("notes")
    chunks = engine.store.split(load_bytes(text, "insulin.txt"))

    def stop(progress: IndexProgress) -> None:
        if progress.chunks_added:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):  # a run stopped after its first batch (as a killed process would)
        index_loaded(engine.store, [("insulin.txt", lambda: load_bytes(text, "insulin.txt"))], "notes", stop)
    (partial,) = engine.list_documents("notes")
    assert not partial.complete and partial.expected_chunks == len(chunks)
    assert engine.resumable("notes", "insulin.txt") and not engine.resumable("notes", "gone.txt")
    with pytest.raises(FileNotFoundError, match="upload it again"):
        engine.resume("notes", "gone.txt")

    job = engine.resume("notes", "insulin.txt")

    assert job.wait(60) and job.state == "done", job.error
    (complete,) = engine.list_documents("notes")
    assert complete.complete and complete.chunk_count == len(chunks)
    assert not kept.exists()


def test_engine_collections_rename_and_delete(engine: Any) -> None:
    job = engine.submit_uploads([("a.txt", b"Magma rises through the crust.")], "first")
    assert job.wait(60) and job.state == "done"
    engine.rename_collection("first", "second")
    assert engine.list_collections() == ["second"]
    assert [info.source for info in engine.list_documents("second")] == ["a.txt"]
    answer = engine.ask("What rises?", "second").read()
    assert "Magma" in answer
    engine.delete_collection("second")
    assert engine.list_collections() == []


def test_engine_answers_at_once_on_an_empty_collection(engine: Any) -> None:
    engine.create_collection("empty")
    stream = engine.ask("Anything?", "empty")
    assert stream.read() == "The collection 'empty' has no documents yet: add some, then ask again."
    assert engine.store.embedding_function._model is None  # no model was loaded to say so
    assert stream.citations == []
