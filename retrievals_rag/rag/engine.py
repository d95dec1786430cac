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

import contextlib
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from retrievals_rag.rag.answer_modes import DEFAULT_LLM, LLM_CHOICES, LLMChoice
from retrievals_rag.rag.generate import (
    AnswerStream,
    ChatBackend,
    ExtractiveAnswer,
    answer,
)
from retrievals_rag.rag.grounding import EmbeddingScorer
from retrievals_rag.rag.indexing import IndexReport, ProgressCallback, index_paths, index_uploads
from retrievals_rag.rag.jobs import IndexJob, JobRunner
from retrievals_rag.rag.loaders import DEFAULT_MAX_BYTES, display_name, safe_upload_path
from retrievals_rag.rag.retrieve import Reranker, RetrievedChunk, Retriever
from retrievals_rag.rag.store import DocumentInfo, VectorStore
from retrievals_rag.rag.version_info import CollectionVersion, VersionProgress
from retrievals_rag.rag.versions import CollectionVersions
from retrievals_rag.retrieval.fusion import check_interpolation_weight
from retrievals_rag.retrieval.hybrid import check_count

if TYPE_CHECKING:
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.training.adapt_settings import AdaptSettings

__all__ = ["LLMChoice", "LLMState", "RagEngine"]

LLMState = Literal["not loaded", "loading", "ready", "failed"]
INDEX_BATCH_SIZE = 16
"""Chunks embedded and written per batch by the engine: a progress report every few seconds on a CPU."""
_PENDING_UPLOADS = "pending-uploads"  # uploads kept until their document is complete, for resuming


class RagEngine:
    """Index documents into Chroma and answer questions over them with citations.

    Args:
        data_dir: The engine's folder: the embedded Chroma database (``data_dir/chroma``) and uploads kept until
            indexed. The local LLM is converted once per machine, in ``$RETRIEVALS_RAG_CACHE/models`` (default
            ``~/.cache/retrievals_rag/models``), see :func:`~retrievals_rag.llm.gguf.convert_gguf`.
        chroma_url: A Chroma server (``http://127.0.0.1:8000``) instead of the embedded database.
        embedder_path: The embedding model's folder; None: the packaged all-MiniLM-L6-v2.
        device: Device of the embedder and the local LLM (``"cpu"``, ``"cuda"``); None: CUDA when available for
            the embedder, the CPU for the LLM.
        reranker: Reorders retrieved candidates: any object with ``rerank(query, documents, top_k)``, or the folder
            of one of our rankers (cross-encoder, LLM ranker or ColBERT, loaded as the kind it was saved as, with
            the fastest backend the folder holds on the device; a ColBERT loaded from a folder caches each chunk's
            token vectors in ``data_dir/colbert-vectors``, so a chunk is encoded once, restarts included);
            ``"query-likelihood"``: the packaged SmolLM2's query likelihood (see :meth:`load_reranker`); None: none.
        llm: An answer mode of :mod:`~retrievals_rag.rag.answer_modes`: ``"smollm2"`` (the local
            SmolLM2-135M-Instruct, its answers checked against the sources, the extractive answer when they do
            not support it: the default), ``"openai"`` (an OpenAI-compatible server, see ``llm_base_url``, checked
            the same way), ``"extractive"`` (no LLM: the sentences of the sources that answer); or a chat backend
            object (checked the same way).
        llm_base_url: The server's API root for ``llm="openai"`` (``http://127.0.0.1:11434/v1`` for Ollama).
        llm_model: The model name for ``llm="openai"``.
        llm_api_key: A bearer token for ``llm="openai"``.
        max_new_tokens: Most tokens per generated answer.
        top_k: Chunks used as sources (the attribute of that name can be changed later).
        use_bm25: Fuse BM25 with dense retrieval by default.
        rerank_candidates: Candidates given to the reranker, and returned by each first-stage retriever when
            fusing (the attribute of that name can be changed later).
        rerank_weight: The reranker's share of the order, in [0, 1]: 1 (the default) orders by the reranker
            alone; below 1, its standardised scores are mixed with the retrieval scores (a reranker fine-tuned
            on little data often does better mixed: see :mod:`retrievals_rag.retrieval.hybrid`).
        chunk_size: Tokens per chunk; None: from the embedder's window (200 for MiniLM).
        chunk_overlap: Tokens of overlap; None: a fifth of the chunk size.
        fallback_to_extractive: When the LLM fails, say so and answer extractively; False: raise.
        max_file_bytes: Larger files are refused (reported as errors); None: no limit.

    Raises:
        ValueError: On an unknown ``llm``, ``llm="openai"`` without ``llm_base_url`` and ``llm_model``, or
            ``top_k`` or ``rerank_candidates`` below 1.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        chroma_url: str | None = None,
        embedder_path: str | os.PathLike[str] | None = None,
        device: str | None = None,
        reranker: Reranker | str | os.PathLike[str] | None = None,
        llm: LLMChoice | ChatBackend = DEFAULT_LLM,
        llm_base_url: str | None = None,
        llm_model: str | None = None,
        llm_api_key: str | None = None,
        max_new_tokens: int = 256,
        top_k: int = 5,
        use_bm25: bool = False,
        rerank_candidates: int = 20,
        rerank_weight: float = 1.0,
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
            batch_size=INDEX_BATCH_SIZE,
        )
        self.device = device
        self._lock = threading.Lock()
        # (collection, Chroma collection, BM25, id of the reranker, rerank weight) -> retriever, built with the
        # current top_k and rerank_candidates (their setters empty it)
        self._retrievers: dict[tuple[str, str, bool, int | None, float], Retriever] = {}
        self.top_k = top_k
        self.rerank_candidates = rerank_candidates
        self._rerankers: dict[str, Reranker] = {}
        self.reranker = self.load_reranker(reranker) if isinstance(reranker, str | os.PathLike) else reranker
        self.use_bm25 = use_bm25
        check_interpolation_weight(rerank_weight)
        self.rerank_weight = float(rerank_weight)
        self.fallback_to_extractive = fallback_to_extractive
        self.max_file_bytes = max_file_bytes
        self.system_prompt: str | None = None  # None: the answer mode's own (generate.GROUNDED_SYSTEM_PROMPT)
        self._sentence_scorers: dict[str | None, EmbeddingScorer] = {}  # by the path of their embedder
        self._jobs = JobRunner.shared(chroma_url or str(self.data_dir.resolve()))
        self.versions = CollectionVersions(self.store, self._jobs, self.data_dir, device)
        """The versions of each collection (:mod:`retrievals_rag.rag.versions`)."""
        self.llm_state: LLMState = "not loaded"
        self.llm_error: str | None = None
        self._prepared = threading.Event()
        self._prepare_lock = threading.Lock()

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
                raise TypeError(f"llm must be one of {LLM_CHOICES} or have a stream(messages) method")
            return llm
        if llm not in LLM_CHOICES:
            raise ValueError(f"llm must be one of {LLM_CHOICES} or a chat backend, got {llm!r}")
        if llm == "extractive":
            return ExtractiveAnswer()
        if llm == "openai":
            from retrievals_rag.llm.chat import OpenAICompatibleChat

            if not base_url or not model:
                raise ValueError(
                    "llm='openai' needs llm_base_url (e.g. http://127.0.0.1:11434/v1) and llm_model"
                )
            return OpenAICompatibleChat(base_url, model, api_key, max_tokens=max_new_tokens)
        from retrievals_rag.llm.chat import TransformersChat

        # Converted once per machine (RETRIEVALS_RAG_CACHE), not once per data folder.
        return TransformersChat(cache_dir=None, max_new_tokens=max_new_tokens, device=device or "cpu")

    # -------------------------------------------------------------------------------- settings
    @property
    def top_k(self) -> int:
        """Chunks used as sources when a question does not say; a new value applies to the next question."""
        return self._top_k

    @top_k.setter
    def top_k(self, value: int) -> None:
        check_count("top_k", value)
        with self._lock:
            self._top_k = int(value)
            self._retrievers.clear()

    @property
    def rerank_candidates(self) -> int:
        """Candidates given to the reranker (and returned by each first-stage retriever when fusing); a new
        value applies to the next question."""
        return self._rerank_candidates

    @rerank_candidates.setter
    def rerank_candidates(self, value: int) -> None:
        check_count("rerank_candidates", value)
        with self._lock:
            self._rerank_candidates = int(value)
            self._retrievers.clear()

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
        with self._prepare_lock:
            self.llm_state = "loading"
            try:
                _ = self.store.chunker  # loads the embedder
                load = getattr(self.backend, "load", None)
                if callable(load):
                    load()
            except Exception as error:
                self.llm_state, self.llm_error = "failed", str(error) or type(error).__name__
                raise
            else:
                self.llm_state, self.llm_error = "ready", None
            finally:
                self._prepared.set()

    def prepare_in_background(self) -> None:
        """Start :meth:`prepare` in a thread (once); :attr:`llm_state` says where it stands."""
        with self._lock:
            if self.llm_state != "not loaded":
                return
            self.llm_state = "loading"
        threading.Thread(target=self._prepare_quietly, name="retrievals-rag-prepare", daemon=True).start()

    def _prepare_quietly(self) -> None:
        # A failure is kept in llm_error; a question then falls back (or raises) with the same reason.
        with contextlib.suppress(Exception):
            self.prepare()

    def wait_until_prepared(self, timeout: float | None = None) -> bool:
        """Wait for a preparation started by :meth:`prepare_in_background`; True when it has ended."""
        return self.llm_state == "not loaded" or self._prepared.wait(timeout)

    def load_reranker(self, path: str | os.PathLike[str]) -> Reranker:
        """Load (once per path) the ranker saved in ``path``: cross-encoder, LLM ranker or ColBERT; or, for
        ``"query-likelihood"`` (:data:`~retrievals_rag.llm.query_likelihood.QUERY_LIKELIHOOD`), the packaged
        SmolLM2 scoring how likely each chunk makes the question (UPR: zero-shot, no training, no folder; slow on
        a CPU, 1 to 2 chunks a second).

        Raises:
            FileNotFoundError: When ``path`` does not exist.
            ValueError, OSError: When it holds no ranker (the message names the folder).
            BackendUnavailableError: When SmolLM2 cannot be loaded for ``"query-likelihood"``.
        """
        from retrievals_rag.integrations._ranking import load_ranker
        from retrievals_rag.llm.query_likelihood import QUERY_LIKELIHOOD, query_likelihood_ranker

        key = os.fspath(path)
        with self._lock:
            cached = self._rerankers.get(key)
        if cached is not None:
            return cached
        reranker: Any
        if key == QUERY_LIKELIHOOD and not Path(key).exists():  # a folder of that name would win
            reranker = query_likelihood_ranker(device=self.device)
            with self._lock:
                return self._rerankers.setdefault(key, reranker)
        if not Path(key).expanduser().exists():
            raise FileNotFoundError(f"reranker folder not found: {key}")
        reranker = load_ranker(key, model_kind="auto", device=self.device, use_fp16=False, model_kwargs={})
        if callable(getattr(reranker, "enable_document_cache", None)):
            # ColBERT: a chunk's token vectors do not depend on the question; keep them between questions, and
            # on disk beside the collections so that a restart does not encode the chunks again
            from retrievals_rag.models.token_store import model_fingerprint

            fingerprint = model_fingerprint(key, reranker.settings, reranker.backend, "float16")
            reranker.enable_document_cache(path=self.data_dir / "colbert-vectors" / f"{fingerprint}.sqlite3")
        with self._lock:
            return self._rerankers.setdefault(key, reranker)

    # -------------------------------------------------------------------------------- collections
    def list_collections(self) -> list[str]:
        """Collection names, sorted."""
        return self.store.list_collections()

    def create_collection(self, name: str) -> None:
        """Create a collection (an existing one made with the same embedder is kept)."""
        self.store.create_collection(name)

    def delete_collection(self, name: str) -> None:
        """Delete a collection, its chunks, its versions (and their adapted models) and its uploads kept.

        Raises:
            ValueError: While a job works on it.
        """
        self._check_idle(name)
        self._forget(name)
        self.versions.delete_all(name)
        self.store.delete_collection(name)
        shutil.rmtree(self._pending_dir(name), ignore_errors=True)

    def rename_collection(self, name: str, new_name: str) -> None:
        """Rename a collection (its chunks, embedder, versions and uploads kept for resuming follow).

        Raises:
            ValueError: On an invalid or taken new name, or while a job indexes into it.
        """
        self._check_idle(name)
        self.store.rename_collection(name, new_name)
        self._forget(name)
        if self._pending_dir(name).is_dir():
            self._pending_dir(name).rename(self._pending_dir(new_name))

    def _forget(self, collection: str) -> None:
        """Drop the cached retrievers of ``collection``, and the sentence scorers of embedders that no version
        uses any more (each holds its embedder and up to thousands of sentence vectors)."""
        live = {self.store.embedding_function.model_name_or_path} | {
            view.embedding_function.model_name_or_path for view in self.versions.loaded_views()
        }
        with self._lock:
            self._retrievers = {key: value for key, value in self._retrievers.items() if key[0] != collection}
            self._sentence_scorers = {
                key: value for key, value in self._sentence_scorers.items() if key in live
            }

    def _check_idle(self, collection: str) -> None:
        if any(job.active for job in self._jobs.jobs(collection)):
            raise ValueError(f"a job works on {collection!r}: wait for its end, or cancel it")

    def list_documents(self, collection: str) -> list[DocumentInfo]:
        """The documents of a collection with their chunk counts and pages."""
        return self.store.list_documents(collection)

    def delete_document(self, collection: str, source: str) -> int:
        """Remove a document (or one of its other names) from the collection and its versions; returns how many
        chunks were removed."""
        removed = self.store.delete_document(collection, source)
        self.versions.prune(collection)
        self._discard_pending(collection, [source])
        return removed

    # -------------------------------------------------------------------------------- indexing
    def index_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        collection: str,
        *,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index files and folders (resumable; a file that fails is reported, the others are indexed).

        The collection's usable versions are brought up to date afterwards (their chunks embedded too).
        """
        report = index_paths(self.store, paths, collection, progress=progress, max_bytes=self.max_file_bytes)
        self.versions.sync(collection)
        return report

    def index_uploads(
        self,
        files: Sequence[tuple[str, bytes]],
        collection: str,
        *,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index uploaded ``(file name, bytes)`` pairs; nothing is written to disk but the index.

        The collection's usable versions are brought up to date afterwards (their chunks embedded too).
        """
        report = index_uploads(
            self.store, files, collection, progress=progress, max_bytes=self.max_file_bytes
        )
        self.versions.sync(collection)
        return report

    # -------------------------------------------------------------------------------- background jobs
    def submit_uploads(self, files: Sequence[tuple[str, bytes]], collection: str) -> IndexJob:
        """Index uploads in the background (see :mod:`retrievals_rag.rag.jobs`); returns the job at once.

        The collection's usable versions are then brought up to date by a job of their own.

        Each upload is kept in ``data_dir/pending-uploads/COLLECTION/`` until its document is complete, so that
        a run stopped half way (the process killed) can be resumed with :meth:`resume`.
        """
        self.store.create_collection(collection)  # a bad name or another embedder fails here, not in the job
        folder = self._pending_dir(collection)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files:
            safe_upload_path(folder, display_name(name)).write_bytes(data)
        names = [display_name(name) for name, _ in files]

        def run(progress: ProgressCallback) -> IndexReport:
            return index_uploads(
                self.store, files, collection, progress=progress, max_bytes=self.max_file_bytes
            )

        def finish(job: IndexJob[Any, Any]) -> None:
            self._clean_pending(job)
            self.versions.submit_sync(collection)  # a job of its own, with its progress

        return self._jobs.submit(collection, names, run, on_finish=finish)

    def submit_paths(self, paths: Iterable[str | os.PathLike[str]], collection: str) -> IndexJob:
        """Index files and folders in the background; returns the job at once."""
        self.store.create_collection(collection)
        paths = [os.fspath(path) for path in paths]

        def run(progress: ProgressCallback) -> IndexReport:
            return index_paths(
                self.store, paths, collection, progress=progress, max_bytes=self.max_file_bytes
            )

        return self._jobs.submit(
            collection, paths, run, on_finish=lambda job: self.versions.submit_sync(collection)
        )

    def jobs(self, collection: str | None = None) -> list[IndexJob[Any, Any]]:
        """Background jobs (see :attr:`IndexJob.kind`), in submission order: queued, running, last finished."""
        return self._jobs.jobs(collection)

    def job(self, job_id: int) -> IndexJob[Any, Any] | None:
        """The job with this id (None once forgotten)."""
        return self._jobs.get(job_id)

    def resumable(self, collection: str, source: str) -> bool:
        """Whether a partial document can be finished here: its upload was kept, or its file is on disk."""
        return self._pending_file(collection, source).is_file() or Path(source).is_file()

    def resume(self, collection: str, source: str) -> IndexJob:
        """Finish indexing a partial document in the background: only its missing chunks are written.

        Raises:
            FileNotFoundError: When neither its upload nor its file is here any more (upload it again).
        """
        kept = self._pending_file(collection, source)
        if kept.is_file():
            return self.submit_uploads([(source, kept.read_bytes())], collection)
        if Path(source).is_file():
            return self.submit_paths([source], collection)
        raise FileNotFoundError(
            f"{source} is no longer here to finish indexing it: upload it again (the chunks already stored are kept)"
        )

    def _pending_dir(self, collection: str) -> Path:
        return self.data_dir / _PENDING_UPLOADS / collection

    def _pending_file(self, collection: str, source: str) -> Path:
        return self._pending_dir(collection) / display_name(source)

    def _discard_pending(self, collection: str, names: Iterable[str]) -> None:
        for name in names:
            self._pending_file(collection, name).unlink(missing_ok=True)

    def _clean_pending(self, job: IndexJob[Any, Any]) -> None:
        """After a job: drop the kept uploads of documents now complete, and of files that failed to load."""
        if job.report is not None:
            self._discard_pending(job.collection, job.report.indexed)
            self._discard_pending(job.collection, [error.path for error in job.report.errors])

    # -------------------------------------------------------------------------------- versions
    def collection_versions(self, collection: str) -> list[CollectionVersion]:
        """The original index of ``collection`` and its versions (see :meth:`CollectionVersions.list`)."""
        return self.versions.list(collection)

    def use_version(self, collection: str, version: str) -> None:
        """Make questions on ``collection`` use ``version`` (``"original"`` or a ready version's name)."""
        self.versions.use(collection, version)
        self._forget(collection)

    def delete_version(self, collection: str, version: str) -> None:
        """Delete a version, its vectors and its adapted model (see :meth:`CollectionVersions.delete`)."""
        self.versions.delete(collection, version)
        self._forget(collection)

    def submit_adaptation(
        self, collection: str, settings: AdaptSettings | None = None
    ) -> IndexJob[VersionProgress, CollectionVersion]:
        """Adapt the embedder to the collection's documents, as a new version, in the background (see
        :meth:`CollectionVersions.submit_adaptation`); returns the job at once."""
        return self.versions.submit_adaptation(collection, settings)

    def submit_version(
        self, collection: str, embedder_path: str | os.PathLike[str]
    ) -> IndexJob[VersionProgress, CollectionVersion]:
        """Embed the collection's chunks with another embedder, as a new version, in the background."""
        return self.versions.submit_reindex(collection, embedder_path)

    def resume_version(self, collection: str, version: str) -> IndexJob[VersionProgress, CollectionVersion]:
        """Finish a version that failed or was stopped, in the background (see :meth:`CollectionVersions.resume`)."""
        return self.versions.resume(collection, version)

    # -------------------------------------------------------------------------------- questions
    def retriever(
        self,
        collection: str,
        *,
        use_bm25: bool | None = None,
        rerank: bool | None = None,
        reranker: Reranker | None = None,
        rerank_weight: float | None = None,
    ) -> Retriever:
        """The (cached) retriever of a collection with these options; None takes the engine's defaults.

        It searches the collection's active version (:meth:`use_version`) with that version's embedder.
        ``reranker`` replaces the engine's own (e.g. one from :meth:`load_reranker`); ``rerank=False`` uses none;
        ``rerank_weight`` replaces the engine's share of the reranker in the order.
        """
        bm25 = self.use_bm25 if use_bm25 is None else use_bm25
        chosen = reranker if reranker is not None else self.reranker
        if rerank is not None and not rerank:
            chosen = None
        weight = self.rerank_weight if rerank_weight is None else float(rerank_weight)
        check_interpolation_weight(weight)
        store, target = self.versions.search_target(collection)
        key = (collection, target, bm25, None if chosen is None else id(chosen), weight)
        with self._lock:
            retriever = self._retrievers.get(key)
            if retriever is None:
                retriever = Retriever(
                    store,
                    target,
                    top_k=self._top_k,
                    use_bm25=bm25,
                    reranker=chosen,
                    candidates=self._rerank_candidates,
                    rerank_weight=weight,
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
        reranker: Reranker | None = None,
        rerank_weight: float | None = None,
    ) -> list[RetrievedChunk]:
        """The chunks that best answer ``question``, best first (see :class:`Retriever`)."""
        retriever = self.retriever(
            collection, use_bm25=use_bm25, rerank=rerank, reranker=reranker, rerank_weight=rerank_weight
        )
        return retriever.retrieve(question, top_k=top_k)

    def ask(
        self,
        question: str,
        collection: str,
        *,
        top_k: int | None = None,
        use_bm25: bool | None = None,
        rerank: bool | None = None,
        reranker: Reranker | None = None,
        backend: ChatBackend | ExtractiveAnswer | None = None,
        rerank_weight: float | None = None,
    ) -> AnswerStream:
        """Retrieve sources for ``question`` and stream an answer that cites them.

        Args:
            question: The question.
            collection: The collection to search.
            top_k: Sources used; None: the engine's ``top_k``.
            use_bm25: Fuse BM25; None: the engine's default.
            rerank: Use the reranker (when there is one); None: yes.
            reranker: Rerank with this one instead of the engine's.
            backend: Answer with this backend instead of the engine's.
            rerank_weight: The reranker's share of the order, in [0, 1]; None: the engine's.

        Returns:
            The :class:`AnswerStream`: iterate it for the text; ``sources`` and ``citations`` are already there,
            ``fallback_reason`` says why the LLM was not used, once iterated. On an empty collection it says so
            at once, and no model is loaded.
        """
        if self.store.count(collection) == 0:
            text = f"The collection {collection!r} has no documents yet: add some, then ask again."
            return AnswerStream(question, [], iter([text]), "engine")
        chunks = self.retrieve(
            question,
            collection,
            top_k=top_k,
            use_bm25=use_bm25,
            rerank=rerank,
            reranker=reranker,
            rerank_weight=rerank_weight,
        )
        return answer(
            question,
            chunks,
            backend if backend is not None else self.backend,
            fallback=self.fallback_to_extractive,
            system_prompt=self.system_prompt,
            scorer=self.sentence_scorer(collection),
        )

    def sentence_scorer(self, collection: str | None = None) -> EmbeddingScorer:
        """Scores the sentences of the sources against a question (an embedder's cosine similarity), for the
        extractive answer and the support check: with the embedder of ``collection``'s active version (the one
        its chunks were found with: an adapted model, or another language's), the engine's own for None."""
        store = self.store if collection is None else self.versions.search_target(collection)[0]
        embedder = store.embedder
        key = store.embedding_function.model_name_or_path
        with self._lock:
            scorer = self._sentence_scorers.get(key)
            if scorer is None or scorer.embedder is not embedder:
                scorer = self._sentence_scorers[key] = EmbeddingScorer(embedder)
            return scorer

    def __repr__(self) -> str:
        return f"RagEngine(store={self.store!r}, backend={self.backend!r}, reranker={self.reranker!r})"
