"""The RAG engine of the app: loaders, chunking, the Chroma store, retrieval and answers with citations.

Names are resolved lazily: ``import retrievals_rag.rag`` loads neither torch, transformers nor chromadb::

    from retrievals_rag.rag import RagEngine

    engine = RagEngine("rag-data", llm="extractive")
    report = engine.index_files(["docs/"], "notes")
    stream = engine.ask("What is dense retrieval?", "notes")
    print("".join(stream), [citation.label for citation in stream.cited()])

Modules: :mod:`~retrievals_rag.rag.loaders` (files to text), :mod:`~retrievals_rag.rag.chunking` (token-sized
chunks with content ids), :mod:`~retrievals_rag.rag.store` (Chroma), :mod:`~retrievals_rag.rag.indexing` (bulk,
resumable), :mod:`~retrievals_rag.rag.jobs` (indexing in the background), :mod:`~retrievals_rag.rag.retrieve` (dense, BM25 fusion, reranking),
:mod:`~retrievals_rag.rag.grounding` (sentences, relevance floor, the support check of a model's answer),
:mod:`~retrievals_rag.rag.generate` (prompt, citations, extractive and checked answers),
:mod:`~retrievals_rag.rag.answer_modes` (the answer modes and the default), :mod:`~retrievals_rag.rag.versions`
(a collection's versions embedded by other models, adapted ones included: :mod:`~retrievals_rag.rag.adaptation`),
:mod:`~retrievals_rag.rag.engine` (the facade). The chat backends it answers with live in :mod:`retrievals_rag.llm`
(SmolLM2 through transformers, OpenAI-compatible servers; their names are importable from here too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrievals_rag._lazy import lazy_names

# public name -> module that defines it
_LAZY_NAMES: dict[str, str] = {
    "DocumentLoadError": "retrievals_rag.rag.loaders",
    "LoadedDocument": "retrievals_rag.rag.loaders",
    "Page": "retrievals_rag.rag.loaders",
    "SUPPORTED_EXTENSIONS": "retrievals_rag.rag.loaders",
    "UnsafePathError": "retrievals_rag.rag.loaders",
    "load_bytes": "retrievals_rag.rag.loaders",
    "load_document": "retrievals_rag.rag.loaders",
    "safe_upload_path": "retrievals_rag.rag.loaders",
    "Chunk": "retrievals_rag.rag.chunking",
    "Chunker": "retrievals_rag.rag.chunking",
    "CollectionNotFoundError": "retrievals_rag.rag.store",
    "DocumentInfo": "retrievals_rag.rag.store",
    "EmbedderMismatchError": "retrievals_rag.rag.store",
    "StoreConnectionError": "retrievals_rag.rag.store",
    "VectorStore": "retrievals_rag.rag.store",
    "DocumentResult": "retrievals_rag.rag.indexing",
    "FileError": "retrievals_rag.rag.indexing",
    "IndexCancelledError": "retrievals_rag.rag.jobs",
    "IndexJob": "retrievals_rag.rag.jobs",
    "JobRunner": "retrievals_rag.rag.jobs",
    "IndexProgress": "retrievals_rag.rag.indexing",
    "IndexReport": "retrievals_rag.rag.indexing",
    "index_documents": "retrievals_rag.rag.indexing",
    "index_paths": "retrievals_rag.rag.indexing",
    "index_uploads": "retrievals_rag.rag.indexing",
    "Reranker": "retrievals_rag.rag.retrieve",
    "RetrievedChunk": "retrievals_rag.rag.retrieve",
    "Retriever": "retrievals_rag.rag.retrieve",
    "AnswerStream": "retrievals_rag.rag.generate",
    "BackendUnavailableError": "retrievals_rag.llm.base",
    "ChatBackend": "retrievals_rag.llm.base",
    "Citation": "retrievals_rag.rag.generate",
    "ExtractiveAnswer": "retrievals_rag.rag.generate",
    "GenerationError": "retrievals_rag.llm.base",
    "answer": "retrievals_rag.rag.generate",
    "build_prompt": "retrievals_rag.rag.generate",
    "OpenAICompatibleChat": "retrievals_rag.llm.chat",
    "TransformersChat": "retrievals_rag.llm.chat",
    "convert_gguf": "retrievals_rag.llm.gguf",
    "RagEngine": "retrievals_rag.rag.engine",
    "AdaptationResult": "retrievals_rag.rag.version_info",
    "CollectionVersion": "retrievals_rag.rag.version_info",
    "VersionProgress": "retrievals_rag.rag.version_info",
    "CollectionVersions": "retrievals_rag.rag.versions",
    "AdaptSettings": "retrievals_rag.training.adapt_settings",
}

__all__ = [
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

if TYPE_CHECKING:
    from retrievals_rag.llm.base import BackendUnavailableError, ChatBackend, GenerationError
    from retrievals_rag.llm.chat import OpenAICompatibleChat, TransformersChat
    from retrievals_rag.llm.gguf import convert_gguf
    from retrievals_rag.rag.chunking import Chunk, Chunker
    from retrievals_rag.rag.engine import RagEngine
    from retrievals_rag.rag.generate import AnswerStream, Citation, ExtractiveAnswer, answer, build_prompt
    from retrievals_rag.rag.indexing import (
        DocumentResult,
        FileError,
        IndexProgress,
        IndexReport,
        index_documents,
        index_paths,
        index_uploads,
    )
    from retrievals_rag.rag.jobs import IndexCancelledError, IndexJob, JobRunner
    from retrievals_rag.rag.loaders import (
        SUPPORTED_EXTENSIONS,
        DocumentLoadError,
        LoadedDocument,
        Page,
        UnsafePathError,
        load_bytes,
        load_document,
        safe_upload_path,
    )
    from retrievals_rag.rag.retrieve import Reranker, RetrievedChunk, Retriever
    from retrievals_rag.rag.store import (
        CollectionNotFoundError,
        DocumentInfo,
        EmbedderMismatchError,
        StoreConnectionError,
        VectorStore,
    )
    from retrievals_rag.rag.version_info import AdaptationResult, CollectionVersion, VersionProgress
    from retrievals_rag.rag.versions import CollectionVersions
    from retrievals_rag.training.adapt_settings import AdaptSettings


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
