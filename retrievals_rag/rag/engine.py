"""The RAG engine behind the app: index files, manage collections, answer questions with cited sources.

:class:`RagEngine` puts the parts together once (the embedder, the store, the reranker, the chat backend), so an
app creates one engine per data folder and keeps it (``st.cache_resource``); the UI only displays what the engine
decides: which files failed and why, which chunks were retrieved with which scores, which sources an answer cites,
and why an answer fell back to extractive.

Example:
    >>> engine = RagEngine("rag-data", llm="extractive")  # doctest: +SKIP
    >>> engine.index_files(["docs/"], "notes").errors  # doctest: +SKIP
    []
    >>> stream = engine.ask("What is dense retrieval?", "notes")  # doctest: +SKIP
    >>> for piece in stream:  # doctest: +SKIP
    ...     print(piece, end="")
    >>> [(citation.number, citation.label) for citation in stream.cited()]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from retrievals_rag.rag.generate import (
    AnswerStream,
    ChatBackend,
    ExtractiveAnswer,
    answer,
)
from retrievals_rag.rag.grounding import EmbeddingScorer
from retrievals_rag.rag.indexing import IndexReport, ProgressCallback, index_paths, index_uploads
from retrievals_rag.rag.loaders import DEFAULT_MAX_BYTES
from retrievals_rag.rag.retrieve import Reranker, RetrievedChunk, Retriever
from retrievals_rag.rag.store import DocumentInfo, VectorStore

if TYPE_CHECKING:
    from retrievals_rag.models.embedding import AutoModelForEmbedding

__all__ = ["LLMChoice", "RagEngine"]

LLMChoice = Literal["smollm2", "openai", "extractive"]
_LLM_CHOICES: tuple[str, ...] = get_args(LLMChoice)


class RagEngine:
    """Index documents into Chroma and answer questions over them with citations.

    Args:
        data_dir: The engine's folder: the embedded Chroma database (``data_dir/chroma``) and, for the default
            local LLM, the converted model (``data_dir/models``).
        chroma_url: A Chroma server (``http://127.0.0.1:8000``) instead of the embedded database.
        embedder_path: The embedding model's folder; None: the packaged all-MiniLM-L6-v2.
        device: Device of the embedder and the local LLM (``"cpu"``, ``"cuda"``); None: CUDA when available for
            the embedder, the CPU for the LLM.
        reranker: Reorders retrieved candidates: any object with ``rerank(query, documents, top_k)``, or the folder
            of one of our rankers (cross-encoder, LLM ranker or ColBERT, loaded as the kind it was saved as; a
            ColBERT loaded from a folder caches each chunk's token vectors, so a chunk is encoded once);
            None: none.
        llm: ``"extractive"`` (no LLM: the sentences of the sources that answer, the default), ``"smollm2"``
            (local SmolLM2-135M-Instruct), ``"openai"`` (an OpenAI-compatible server, see ``llm_base_url``), or a
            chat backend object. Extractive is the default by measurement: on the question set of
            ``examples/rag/answer_quality.py`` it answers 27 of 27 with the right file cited, SmolLM2 16 of 27;
            both say "not in the documents" for the 5 absent answers.
        llm_base_url: The server's API root for ``llm="openai"`` (``http://127.0.0.1:11434/v1`` for Ollama).
        llm_model: The model name for ``llm="openai"``.
        llm_api_key: A bearer token for ``llm="openai"``.
        max_new_tokens: Most tokens per generated answer.
        top_k: Chunks used as sources.
        use_bm25: Fuse BM25 with dense retrieval by default.
        rerank_candidates: Candidates given to the reranker.
        chunk_size: Tokens per chunk; None: from the embedder's window (200 for MiniLM).
        chunk_overlap: Tokens of overlap; None: a fifth of the chunk size.
        fallback_to_extractive: When the LLM fails, say so and answer extractively; False: raise.
        max_file_bytes: Larger files are refused (reported as errors); None: no limit.

    Raises:
        ValueError: On an unknown ``llm``, or ``llm="openai"`` without ``llm_base_url`` and ``llm_model``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        chroma_url: str | None = None,
        embedder_path: str | os.PathLike[str] | None = None,
        device: str | None = None,
        reranker: Reranker | str | os.PathLike[str] | None = None,
        llm: LLMChoice | ChatBackend = "extractive",
        llm_base_url: str | None = None,
        llm_model: str | None = None,
        llm_api_key: str | None = None,
        max_new_tokens: int = 256,
        top_k: int = 5,
        use_bm25: bool = False,
        rerank_candidates: int = 20,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        fallback_to_extractive: bool = True,
        max_file_bytes: int | None = DEFAULT_MAX_BYTES,
    ) -> None:
        from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction

        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.backend = self._make_backend(llm, llm_base_url, llm_model, llm_api_key, max_new_tokens, device)
        self.store = VectorStore(
            self.data_dir,
            chroma_url=chroma_url,
            embedding_function=ChromaEmbeddingFunction(embedder_path, device=device),
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
        )
        if isinstance(reranker, str | os.PathLike):
            from retrievals_rag.integrations._ranking import load_ranker

            reranker = load_ranker(
                os.fspath(reranker), model_kind="auto", device=device, use_fp16=False, model_kwargs={}
            )
            if callable(getattr(reranker, "enable_document_cache", None)):
                # ColBERT: a chunk's token vectors do not depend on the question; keep them between questions
                reranker.enable_document_cache()
        self.reranker = reranker
        self.top_k = top_k
        self.use_bm25 = use_bm25
        self.rerank_candidates = rerank_candidates
        self.fallback_to_extractive = fallback_to_extractive
        self.max_file_bytes = max_file_bytes
        self.system_prompt: str | None = None  # None: the answer mode's own (generate.GROUNDED_SYSTEM_PROMPT)
        self._sentence_scorer: EmbeddingScorer | None = None
        self._retrievers: dict[tuple[str, bool, bool], Retriever] = {}
        self._lock = threading.Lock()

    def _make_backend(
        self,
        llm: LLMChoice | ChatBackend,
        base_url: str | None,
        model: str | None,
        api_key: str | None,
        max_new_tokens: int,
        device: str | None,
    ) -> ChatBackend | ExtractiveAnswer:
        if not isinstance(llm, str):
            if not callable(getattr(llm, "stream", None)):
                raise TypeError(f"llm must be one of {_LLM_CHOICES} or have a stream(messages) method")
            return llm
        if llm not in _LLM_CHOICES:
            raise ValueError(f"llm must be one of {_LLM_CHOICES} or a chat backend, got {llm!r}")
        if llm == "extractive":
            return ExtractiveAnswer()
        if llm == "openai":
            from retrievals_rag.rag.llm import OpenAICompatibleChat

            if not base_url or not model:
                raise ValueError(
                    "llm='openai' needs llm_base_url (e.g. http://127.0.0.1:11434/v1) and llm_model"
                )
            return OpenAICompatibleChat(base_url, model, api_key, max_tokens=max_new_tokens)
        from retrievals_rag.rag.llm import TransformersChat

        return TransformersChat(
            cache_dir=self.data_dir / "models", max_new_tokens=max_new_tokens, device=device or "cpu"
        )

    # -------------------------------------------------------------------------------- parts
    @property
    def embedder(self) -> AutoModelForEmbedding:
        """The embedding model, loaded on first use and kept."""
        return self.store.embedder

    def prepare(self) -> None:
        """Load the embedder and the local LLM now (converting SmolLM2 the first time) instead of on first use.

        Raises:
            GenerationError: When the local LLM is not available (the message says how to install it).
        """
        _ = self.store.chunker  # loads the embedder
        load = getattr(self.backend, "load", None)
        if callable(load):
            load()

    # -------------------------------------------------------------------------------- collections
    def list_collections(self) -> list[str]:
        """Collection names, sorted."""
        return self.store.list_collections()

    def create_collection(self, name: str) -> None:
        """Create a collection (an existing one made with the same embedder is kept)."""
        self.store.create_collection(name)

    def delete_collection(self, name: str) -> None:
        """Delete a collection and its chunks."""
        with self._lock:
            self._retrievers = {key: value for key, value in self._retrievers.items() if key[0] != name}
        self.store.delete_collection(name)

    def list_documents(self, collection: str) -> list[DocumentInfo]:
        """The documents of a collection with their chunk counts and pages."""
        return self.store.list_documents(collection)

    def delete_document(self, collection: str, source: str) -> int:
        """Remove a document's chunks; returns how many were removed."""
        return self.store.delete_document(collection, source)

    # -------------------------------------------------------------------------------- indexing
    def index_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        collection: str,
        *,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index files and folders (resumable; a file that fails is reported, the others are indexed)."""
        return index_paths(self.store, paths, collection, progress=progress, max_bytes=self.max_file_bytes)

    def index_uploads(
        self,
        files: Sequence[tuple[str, bytes]],
        collection: str,
        *,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index uploaded ``(file name, bytes)`` pairs; nothing is written to disk but the index."""
        return index_uploads(self.store, files, collection, progress=progress, max_bytes=self.max_file_bytes)

    # -------------------------------------------------------------------------------- questions
    def retriever(
        self, collection: str, *, use_bm25: bool | None = None, rerank: bool | None = None
    ) -> Retriever:
        """The (cached) retriever of a collection with these options; None takes the engine's defaults."""
        bm25 = self.use_bm25 if use_bm25 is None else use_bm25
        with_reranker = self.reranker is not None and (rerank is None or rerank)
        key = (collection, bm25, with_reranker)
        with self._lock:
            retriever = self._retrievers.get(key)
            if retriever is None:
                retriever = Retriever(
                    self.store,
                    collection,
                    top_k=self.top_k,
                    use_bm25=bm25,
                    reranker=self.reranker if with_reranker else None,
                    candidates=self.rerank_candidates,
                )
                self._retrievers[key] = retriever
            return retriever

    def retrieve(
        self,
        question: str,
        collection: str,
        *,
        top_k: int | None = None,
        use_bm25: bool | None = None,
        rerank: bool | None = None,
    ) -> list[RetrievedChunk]:
        """The chunks that best answer ``question``, best first (see :class:`Retriever`)."""
        retriever = self.retriever(collection, use_bm25=use_bm25, rerank=rerank)
        return retriever.retrieve(question, top_k=top_k)

    def ask(
        self,
        question: str,
        collection: str,
        *,
        top_k: int | None = None,
        use_bm25: bool | None = None,
        rerank: bool | None = None,
        backend: ChatBackend | ExtractiveAnswer | None = None,
    ) -> AnswerStream:
        """Retrieve sources for ``question`` and stream an answer that cites them.

        Args:
            question: The question.
            collection: The collection to search.
            top_k: Sources used; None: the engine's ``top_k``.
            use_bm25: Fuse BM25; None: the engine's default.
            rerank: Use the reranker (when there is one); None: yes.
            backend: Answer with this backend instead of the engine's.

        Returns:
            The :class:`AnswerStream`: iterate it for the text; ``sources`` and ``citations`` are already there,
            ``fallback_reason`` says why the LLM was not used, once iterated.
        """
        chunks = self.retrieve(question, collection, top_k=top_k, use_bm25=use_bm25, rerank=rerank)
        return answer(
            question,
            chunks,
            backend if backend is not None else self.backend,
            fallback=self.fallback_to_extractive,
            system_prompt=self.system_prompt,
            scorer=self.sentence_scorer,
        )

    @property
    def sentence_scorer(self) -> EmbeddingScorer:
        """Scores the sentences of the sources against a question (the embedder's cosine similarity)."""
        if self._sentence_scorer is None:
            self._sentence_scorer = EmbeddingScorer(self.embedder)
        return self._sentence_scorer

    def __repr__(self) -> str:
        return f"RagEngine(store={self.store!r}, backend={self.backend!r}, reranker={self.reranker!r})"
