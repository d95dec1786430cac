"""The engine facade: index files and uploads, ask with citations, fallback, collections and documents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.llm.chat import OpenAICompatibleChat, TransformersChat
from retrievals_rag.rag.engine import RagEngine
from retrievals_rag.rag.generate import ExtractiveAnswer
from tests.rag.conftest import LOOPBACK, TOPICS, make_pdf


@pytest.fixture(scope="module")
def minilm_engine(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> RagEngine:
    """An engine over the packaged MiniLM with extractive answers, holding one collection of four files."""
    data = tmp_path_factory.mktemp("engine")
    docs = data / "docs"
    docs.mkdir()
    (docs / "biology.pdf").write_bytes(make_pdf(["Cells divide by mitosis.", TOPICS["photosynthesis"]]))
    (docs / "paris.html").write_text(
        f"<html><body><p>{TOPICS['eiffel']}</p><script>tower()</script></body></html>"
    )
    (docs / "medicine.txt").write_text(TOPICS["insulin"])
    (docs / "geology.md").write_text(f"# Volcanoes\n\n{TOPICS['volcano']}")
    engine = RagEngine(data / "store", embedder_path=minilm_path, device="cpu", llm="extractive", top_k=2)
    report = engine.index_files([docs], "science")
    assert report.errors == [] and len(report.indexed) == 4
    return engine


def test_ask_streams_an_answer_citing_the_right_source(minilm_engine: RagEngine) -> None:
    stream = minilm_engine.ask("Which hormone lowers the glucose level in the blood?", "science")

    assert stream.sources[0].source.endswith("medicine.txt")
    text = "".join(stream)
    assert text.startswith("Insulin is a hormone made by the pancreas") and text.endswith("[1]")
    assert [Path(citation.chunk.source).name for citation in stream.cited()] == ["medicine.txt"]
    assert all(type(chunk.score) is float for chunk in stream.sources)


def test_pdf_sources_keep_their_page(minilm_engine: RagEngine) -> None:
    chunks = minilm_engine.retrieve("How do plants make sugar from light?", "science", top_k=1)

    assert (Path(chunks[0].source).name, chunks[0].page) == ("biology.pdf", 2)
    stream = minilm_engine.ask("How do plants make sugar from light?", "science", top_k=1)
    assert stream.citations[0].label == "biology.pdf, page 2"


def test_bm25_and_collections_and_documents(minilm_engine: RagEngine) -> None:
    fused = minilm_engine.retrieve("magma mantle crust", "science", use_bm25=True)
    assert Path(fused[0].source).name == "geology.md"

    documents = {Path(info.source).name: info for info in minilm_engine.list_documents("science")}
    assert sorted(documents) == ["biology.pdf", "geology.md", "medicine.txt", "paris.html"]
    assert documents["biology.pdf"].pages == [1, 2]
    assert minilm_engine.list_collections() == ["science"]


def test_the_reranker_s_share_is_per_question_and_checked(minilm_engine: RagEngine) -> None:
    class Reversed:  # ranks the dense order backwards
        def rerank(self, query: str, documents: list[str], top_k: int | None = None) -> list[Any]:
            from types import SimpleNamespace

            scored = [SimpleNamespace(index=i, score=float(i)) for i in range(len(documents))]
            return sorted(scored, key=lambda result: -result.score)[:top_k]

    question, reranker = "Which hormone lowers the glucose level in the blood?", Reversed()
    dense = minilm_engine.retrieve(question, "science", top_k=minilm_engine.rerank_candidates, rerank=False)
    alone = minilm_engine.retrieve(question, "science", top_k=4, reranker=reranker)
    first = minilm_engine.retrieve(question, "science", top_k=4, reranker=reranker, rerank_weight=0.0)

    assert minilm_engine.rerank_weight == 1.0
    assert [chunk.chunk_id for chunk in alone] == [chunk.chunk_id for chunk in dense[::-1][:4]]
    assert [chunk.chunk_id for chunk in first] == [chunk.chunk_id for chunk in dense[:4]]
    stream = minilm_engine.ask(question, "science", top_k=1, reranker=reranker, rerank_weight=0.0)
    assert stream.sources[0].source.endswith("medicine.txt")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        minilm_engine.retrieve(question, "science", reranker=reranker, rerank_weight=1.5)


def test_uploads_and_deletion(minilm_engine: RagEngine) -> None:
    report = minilm_engine.index_uploads(
        [("../../secret/notes.txt", b"Mitochondria make ATP."), ("x.exe", b"MZ")], "uploads"
    )

    assert report.indexed == ["notes.txt"]
    assert [error.path for error in report.errors] == ["x.exe"]
    assert not (minilm_engine.data_dir.parent / "secret").exists()
    assert minilm_engine.retrieve("What makes ATP?", "uploads")[0].source == "notes.txt"
    assert minilm_engine.delete_document("uploads", "notes.txt") == 1
    minilm_engine.delete_collection("uploads")
    assert minilm_engine.list_collections() == ["science"]


def test_an_unreachable_llm_falls_back_with_the_reason(minilm_engine: RagEngine, free_port: int) -> None:
    backend = OpenAICompatibleChat(f"http://{LOOPBACK}:{free_port}/v1", "m", timeout=5)

    stream = minilm_engine.ask(
        "Which hormone lowers the glucose level in the blood?", "science", backend=backend
    )

    text = stream.read()
    assert "cannot connect to the chat server" in (stream.fallback_reason or "")
    assert text.startswith("(The language model failed: cannot connect")
    assert "Insulin is a hormone" in text


def test_llm_choices(tmp_path: Path, tiny_bert_path: Path) -> None:
    from retrievals_rag.rag.answer_modes import DEFAULT_LLM

    assert DEFAULT_LLM == "smollm2"
    default = RagEngine(tmp_path / "a", embedder_path=tiny_bert_path).backend  # nothing is loaded yet
    # SmolLM2, converted once per machine (RETRIEVALS_RAG_CACHE), not per data folder.
    assert isinstance(default, TransformersChat) and default.cache_dir is None
    extractive = RagEngine(tmp_path / "b", embedder_path=tiny_bert_path, llm="extractive").backend
    assert isinstance(extractive, ExtractiveAnswer)
    openai = RagEngine(
        tmp_path / "c",
        embedder_path=tiny_bert_path,
        llm="openai",
        llm_base_url="http://127.0.0.1:1/v1",
        llm_model="m",
    ).backend
    assert isinstance(openai, OpenAICompatibleChat) and openai.url == "http://127.0.0.1:1/v1/chat/completions"
    with pytest.raises(ValueError, match="llm_base_url"):
        RagEngine(tmp_path / "d", embedder_path=tiny_bert_path, llm="openai")
    with pytest.raises(ValueError, match="llm must be one of"):
        RagEngine(tmp_path / "e", embedder_path=tiny_bert_path, llm="gpt")  # type: ignore[arg-type]


def test_top_k_and_rerank_candidates_can_be_changed_and_are_checked(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    from types import SimpleNamespace

    class Counting:  # keeps the order; records how many candidates it was given
        def __init__(self) -> None:
            self.given: list[int] = []

        def rerank(self, query: str, documents: list[str], top_k: int | None = None) -> list[Any]:
            self.given.append(len(documents))
            return [SimpleNamespace(index=i, score=-float(i)) for i in range(len(documents))]

    engine = RagEngine(tmp_path / "data", embedder_path=tiny_bert_path, llm="extractive", top_k=5)
    files = [(f"d{i}.txt", f"Station {i} opens at {i + 5} am every weekday.".encode()) for i in range(8)]
    engine.index_uploads(files, "stations")
    question = "When does station 3 open?"
    assert len(engine.retrieve(question, "stations")) == 5

    engine.top_k = 2
    assert len(engine.retrieve(question, "stations")) == 2
    assert len(engine.ask(question, "stations").sources) == 2
    assert engine.retriever("stations").top_k == 2
    engine.reranker = reranker = Counting()
    engine.rerank_candidates = 6
    engine.retrieve(question, "stations")
    engine.rerank_candidates = 3
    engine.retrieve(question, "stations", use_bm25=True)
    engine.retrieve(question, "stations")
    assert reranker.given == [6, 3, 3]

    for option, value in [("top_k", 0), ("top_k", -3), ("rerank_candidates", 0), ("top_k", 2.5)]:
        with pytest.raises(ValueError, match=f"^{option} must be an integer >= 1, got {value}$"):
            RagEngine(tmp_path / "bad", embedder_path=tiny_bert_path, llm="extractive", **{option: value})
        with pytest.raises(ValueError, match=f"^{option} must be an integer >= 1"):
            setattr(engine, option, value)
    assert (engine.top_k, engine.rerank_candidates) == (2, 3)
    assert len(engine.retrieve(question, "stations")) == 2


def _loaded_after(code: str) -> dict[str, Any]:
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps({name: name in sys.modules for name in "
        "['torch', 'transformers', 'chromadb', 'langchain_text_splitters', 'httpx', 'pypdf', 'bs4', 'docx']}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_importing_the_engine_loads_nothing_heavy() -> None:
    loaded = _loaded_after(
        "import retrievals_rag.rag\nfrom retrievals_rag.rag import RagEngine, VectorStore, TransformersChat"
    )

    assert not any(loaded.values()), loaded


EXPECTED_ALL = [
    "SUPPORTED_EXTENSIONS",
    "AdaptSettings",
    "AdaptationResult",
    "AnswerStream",
    "BackendUnavailableError",
    "ChatBackend",
    "Chunk",
    "Chunker",
    "Citation",
    "CollectionNotFoundError",
    "CollectionVersion",
    "CollectionVersions",
    "DocumentInfo",
    "DocumentLoadError",
    "DocumentResult",
    "EmbedderMismatchError",
    "ExtractiveAnswer",
    "FileError",
    "GenerationError",
    "IndexCancelledError",
    "IndexJob",
    "IndexProgress",
    "IndexReport",
    "JobRunner",
    "LoadedDocument",
    "OpenAICompatibleChat",
    "Page",
    "RagEngine",
    "Reranker",
    "RetrievedChunk",
    "Retriever",
    "StoreConnectionError",
    "TransformersChat",
    "UnsafePathError",
    "VectorStore",
    "VersionProgress",
    "answer",
    "build_prompt",
    "convert_gguf",
    "index_documents",
    "index_paths",
    "index_uploads",
    "load_bytes",
    "load_document",
    "safe_upload_path",
]


def test_public_names_are_pinned() -> None:
    import retrievals_rag.rag as rag

    assert rag.__all__ == EXPECTED_ALL
    for name in rag.__all__:
        # the chat backends live in retrievals_rag.llm, the adaptation settings in retrievals_rag.training
        assert name == "SUPPORTED_EXTENSIONS" or getattr(rag, name).__module__.startswith(
            ("retrievals_rag.rag.", "retrievals_rag.llm.", "retrievals_rag.training.adapt_settings")
        )


def test_a_reranker_folder_is_loaded_as_its_kind(tmp_path: Path, tiny_bert_path: Path) -> None:
    from retrievals_rag import AutoModelForRanking, ColBERT

    AutoModelForRanking.from_pretrained(tiny_bert_path).save_pretrained(tmp_path / "cross-encoder")
    ColBERT.from_pretrained(tiny_bert_path).save_pretrained(tmp_path / "colbert")
    for folder, kind in (("cross-encoder", AutoModelForRanking), ("colbert", ColBERT)):
        engine = RagEngine(
            tmp_path / f"data-{folder}",
            embedder_path=tiny_bert_path,
            reranker=tmp_path / folder,
            llm="extractive",
        )
        assert isinstance(engine.reranker, kind)
        if kind is ColBERT:  # a chunk's token vectors are kept between questions
            assert engine.reranker.document_cache is not None


def test_query_likelihood_is_a_reranker_by_name(
    tmp_path: Path, tiny_bert_path: Path, tiny_llama_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "query-likelihood" loads the chat model as a query-likelihood LLM ranker (here the tiny Llama in place of
    SmolLM2), whose log-probabilities are shown as a reranker score, not as a probability."""
    from retrievals_rag import LLMRanker
    from retrievals_rag.llm import query_likelihood

    made: list[LLMRanker] = []

    def tiny(model_path: object = None, **options: Any) -> LLMRanker:
        made.append(LLMRanker.from_pretrained(tiny_llama_path, scoring="query_likelihood", device="cpu"))
        return made[-1]

    monkeypatch.setattr(query_likelihood, "query_likelihood_ranker", tiny)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cells.txt").write_text("the cell is the unit of the human brain")
    (docs / "genes.txt").write_text("patients with a gene study of cancer risk")
    engine = RagEngine(
        tmp_path / "data",
        embedder_path=tiny_bert_path,
        reranker="query-likelihood",
        llm="extractive",
        device="cpu",
    )
    assert engine.reranker is made[0] and engine.load_reranker("query-likelihood") is made[0]  # loaded once
    assert engine.index_files([docs], "notes").errors == []
    chunks = engine.retrieve("cancer risk", "notes", top_k=2)
    assert {chunk.relevance_scale for chunk in chunks} == {"reranker score"}
    assert all(chunk.relevance is not None and chunk.relevance < 0 for chunk in chunks)
    assert [chunk.rerank_score for chunk in chunks] == sorted((c.rerank_score for c in chunks), reverse=True)
    with pytest.raises(FileNotFoundError, match="reranker folder not found: query-likelihoods"):
        engine.load_reranker("query-likelihoods")


def test_a_restarted_engine_reranks_with_colbert_without_encoding_a_chunk_again(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    """The ColBERT reranker's chunk vectors are kept on disk beside the collections: a new engine on the same
    folder (an app restart) answers its first question from them, with the same scores."""
    from retrievals_rag import ColBERT

    ColBERT.from_pretrained(tiny_bert_path).save_pretrained(tmp_path / "colbert")
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in TOPICS.items():
        (docs / f"{name}.txt").write_text(text)
    options: dict[str, Any] = {
        "embedder_path": tiny_bert_path,
        "reranker": tmp_path / "colbert",
        "llm": "extractive",
        "device": "cpu",
    }
    first = RagEngine(tmp_path / "data", **options)
    assert first.index_files([docs], "notes").errors == []
    question = "Which hormone lowers the glucose level in the blood?"
    before = [(hit.chunk_id, hit.rerank_score) for hit in first.retrieve(question, "notes", rerank=True)]
    assert list((tmp_path / "data" / "colbert-vectors").glob("*.sqlite3"))

    restarted = RagEngine(tmp_path / "data", **options)
    assert restarted.wait_until_prepared(timeout=120)
    encoded: list[list[str]] = []
    colbert = restarted.reranker
    original = colbert._document_vectors
    colbert._document_vectors = lambda documents, batch: (  # type: ignore[method-assign]
        encoded.append(documents) or original(documents, batch)
    )
    after = [(hit.chunk_id, hit.rerank_score) for hit in restarted.retrieve(question, "notes", rerank=True)]
    assert encoded == []  # every chunk's vectors came from the file
    assert [chunk for chunk, _ in after] == [chunk for chunk, _ in before]
    assert [score for _, score in after] == pytest.approx([score for _, score in before], abs=1e-5)
