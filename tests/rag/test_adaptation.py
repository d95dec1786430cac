"""Adapting the embedder to a collection in the background: a new version with its before / after, the original
kept; too small a collection refused; a cancelled or failed adaptation marked and resumed.

A tiny random BERT is adapted with the cropping generator (no LLM) to a handful of chunks, in a few seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.rag import RagEngine
from retrievals_rag.rag.jobs import IndexJob
from retrievals_rag.training.adapt_settings import AdaptSettings
from tests.rag.conftest import TOPICS

FAST = AdaptSettings(max_passages=30, holdout_fraction=0.2, batch_size=4, max_length=64, learning_rate=1e-3)
UPLOADS = [
    (f"{topic}.txt", " ".join(f"Sentence {index} about {topic}. {text}" for index in range(4)).encode())
    for topic, text in TOPICS.items()
]


@pytest.fixture
def engine(tmp_path: Path, tiny_bert_path: Path) -> RagEngine:
    """An engine over the tiny BERT holding the collection ``notes`` (four files, a dozen chunks or more)."""
    engine = RagEngine(
        tmp_path / "data",
        embedder_path=tiny_bert_path,
        device="cpu",
        llm="extractive",
        chunk_size=24,
        chunk_overlap=4,
    )
    report = engine.index_uploads(UPLOADS, "notes")
    assert report.chunks_added >= 12 and not report.errors
    return engine


def ended(job: Any, state: str = "done") -> Any:
    assert job.wait(300), "the job did not end"
    assert job.state == state, job.error
    return job


def test_adapting_makes_a_ready_version_with_its_before_and_after(
    engine: RagEngine, tiny_bert_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original_ids = engine.store.chunk_ids("notes")
    stages: list[str] = []
    update = IndexJob._update

    def recording(job: IndexJob, progress: Any) -> None:  # every report the page could poll, none missed
        if progress.stage not in stages:
            stages.append(progress.stage)
        update(job, progress)

    monkeypatch.setattr(IndexJob, "_update", recording)
    job = engine.submit_adaptation("notes", FAST)
    assert job.kind == "adapt" and job.names == ["adapted-1"]
    ended(job)

    assert {"generate", "train", "index"} <= set(stages)
    version = job.report
    assert (version.name, version.state, version.origin) == ("adapted-1", "ready", "adapted")
    assert version.chunks == version.chunks_total == len(original_ids) and not version.active
    model_dir = engine.data_dir / "adapted" / "notes-1"
    assert version.embedder == version.model_dir == str(model_dir) and (model_dir / "config.json").is_file()
    result = version.result
    assert result is not None and result.generator == "cropping" and result.passages_used >= 5
    assert [row[0] for row in result.rows()] == ["nDCG@10", "MRR@10", "Recall@100"]
    assert all(after == pytest.approx(before + change) for _, before, after, change in result.rows())
    assert result.questions_per_second > 0 and "generate" in result.seconds
    # Recorded with the version, for every engine over this store.
    again = RagEngine(engine.data_dir, embedder_path=tiny_bert_path, device="cpu", llm="extractive")
    assert again.versions.get("notes", "adapted-1").result == result

    engine.use_version("notes", "adapted-1")
    stream = engine.ask("Which hormone lowers glucose?", "notes")
    assert "".join(stream) and stream.sources
    assert engine.retriever("notes").store.embedding_function.model_name_or_path == str(model_dir)
    assert engine.store.chunk_ids("notes") == original_ids  # the original is untouched

    engine.delete_version("notes", "adapted-1")
    assert not model_dir.exists() and [v.name for v in engine.collection_versions("notes")] == ["original"]


def test_too_small_a_collection_is_refused_before_any_job(engine: RagEngine) -> None:
    engine.create_collection("empty")
    with pytest.raises(ValueError, match="'empty' has no documents yet"):
        engine.submit_adaptation("empty", FAST)
    engine.index_uploads([("one.txt", b"Glaciers carve valleys.")], "tiny")
    with pytest.raises(ValueError, match=r"'tiny' holds 1 chunk\(s\); adapting needs at least 5 passages"):
        engine.submit_adaptation("tiny", FAST)
    assert engine.jobs("empty") == engine.jobs("tiny") == []
    assert [version.name for version in engine.collection_versions("tiny")] == ["original"]


def test_a_cancelled_adaptation_is_marked_and_resumes(engine: RagEngine) -> None:
    job = engine.submit_adaptation("notes", FAST)
    while job.progress is None or job.progress.stage != "train":
        assert not job.wait(0.02), f"the job ended before training: {job.state} {job.error}"
    job.cancel()
    ended(job, "cancelled")

    version = engine.versions.get("notes", "adapted-1")
    assert (version.state, version.resumable, version.result, version.chunks) == ("cancelled", True, None, 0)
    assert (
        version.describe() == "adapted-1: cancelled; resume it or delete it (the original index is untouched)"
    )
    assert not (Path(version.model_dir) / "config.json").exists()  # no half-made model
    with pytest.raises(ValueError, match="cannot be used before it is built whole"):
        engine.use_version("notes", "adapted-1")
    assert engine.versions.active("notes").name == "original"

    resumed = ended(engine.resume_version("notes", "adapted-1"))

    assert resumed.kind == "adapt" and resumed.report.usable and resumed.report.result is not None
    engine.use_version("notes", "adapted-1")


def test_a_failed_generator_leaves_a_failed_version_and_the_original(
    engine: RagEngine, free_port: int
) -> None:
    down = AdaptSettings(
        generator="openai",
        openai_base_url=f"http://127.0.0.1:{free_port}/v1",
        openai_model="nothing-here",
        max_passages=30,
    )
    job = ended(engine.submit_adaptation("notes", down), "failed")

    version = engine.versions.get("notes", "adapted-1")
    assert version.state == "failed" and version.error == job.error and version.resumable
    assert "127.0.0.1" in job.error, job.error
    assert engine.versions.active("notes").name == "original"
    assert engine.retrieve("Which hormone lowers glucose?", "notes")


def test_an_adaptation_killed_with_its_process_resumes_from_its_questions(
    engine: RagEngine, tiny_bert_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import retrievals_rag.rag.jobs as jobs
    from retrievals_rag.training.adapt_settings import questions_file

    job = engine.submit_adaptation("notes", FAST)
    while job.progress is None or job.progress.stage != "train":
        assert not job.wait(0.02), f"the job ended before training: {job.state} {job.error}"
    job.cancel()
    ended(job, "cancelled")
    # What a killed process leaves: the record as the job last wrote it, and no job; a new process, a new runner.
    engine.versions._update("notes", "adapted-1", {"state": "training"})
    monkeypatch.setattr(jobs, "_SHARED", {})
    restarted = RagEngine(engine.data_dir, embedder_path=tiny_bert_path, device="cpu", llm="extractive")

    version = restarted.versions.get("notes", "adapted-1")
    assert version.resumable and not version.running
    assert version.describe() == (
        "adapted-1: interrupted while training; resume it or delete it (the original index is untouched)"
    )
    assert questions_file(version.model_dir, "cropping").is_file()  # the questions written before the kill

    resumed = ended(restarted.resume_version("notes", "adapted-1"))

    assert resumed.report.usable and resumed.report.chunks == resumed.report.chunks_total
    assert resumed.report.result.questions_per_second == 0  # every question was read back, none written again
