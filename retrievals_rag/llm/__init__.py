"""Chat backends: the packaged SmolLM2 run by transformers, and OpenAI-compatible servers; and a zero-shot
reranker made of a chat model's query likelihood (:func:`query_likelihood_ranker`, UPR).

Used by the RAG engine to answer (:mod:`retrievals_rag.rag.generate`) and by label-free adaptation to write
questions for passages (:mod:`retrievals_rag.data.generation`). Names are resolved lazily: ``import
retrievals_rag.llm`` loads neither torch nor transformers nor httpx::

    from retrievals_rag.llm import OpenAICompatibleChat, TransformersChat, complete

    chat = TransformersChat(max_new_tokens=64)  # SmolLM2-135M-Instruct, converted once
    print(complete(chat, [{"role": "user", "content": "Say hello."}]))

Modules: :mod:`~retrievals_rag.llm.base` (messages, errors, the :class:`ChatBackend` interface),
:mod:`~retrievals_rag.llm.chat` (the backends), :mod:`~retrievals_rag.llm.gguf` (the SmolLM2 file and its
conversion), :mod:`~retrievals_rag.llm.query_likelihood` (the chat model's query likelihood as a relevance
score, an ``LLMRanker``: adaptation's label-free teacher and a zero-shot reranker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrievals_rag._lazy import lazy_names

# public name -> module that defines it
_LAZY_NAMES: dict[str, str] = {
    "BackendUnavailableError": "retrievals_rag.llm.base",
    "ChatBackend": "retrievals_rag.llm.base",
    "ChatMessage": "retrievals_rag.llm.base",
    "GenerationError": "retrievals_rag.llm.base",
    "complete": "retrievals_rag.llm.base",
    "OpenAICompatibleChat": "retrievals_rag.llm.chat",
    "TransformersChat": "retrievals_rag.llm.chat",
    "QUERY_LIKELIHOOD": "retrievals_rag.llm.query_likelihood",
    "QUERY_LIKELIHOOD_MAX_LENGTH": "retrievals_rag.llm.query_likelihood",
    "query_likelihood_ranker": "retrievals_rag.llm.query_likelihood",
    "SMOLLM2_GGUF_FILE": "retrievals_rag.llm.gguf",
    "SMOLLM2_PACKAGE": "retrievals_rag.llm.gguf",
    "convert_gguf": "retrievals_rag.llm.gguf",
    "converted_folder": "retrievals_rag.llm.gguf",
    "default_cache_dir": "retrievals_rag.llm.gguf",
    "smollm2_gguf_path": "retrievals_rag.llm.gguf",
}

__all__ = [
    "QUERY_LIKELIHOOD",
    "QUERY_LIKELIHOOD_MAX_LENGTH",
    "SMOLLM2_GGUF_FILE",
    "SMOLLM2_PACKAGE",
    "BackendUnavailableError",
    "ChatBackend",
    "ChatMessage",
    "GenerationError",
    "OpenAICompatibleChat",
    "TransformersChat",
    "complete",
    "convert_gguf",
    "converted_folder",
    "default_cache_dir",
    "query_likelihood_ranker",
    "smollm2_gguf_path",
]

if TYPE_CHECKING:
    from retrievals_rag.llm.base import (
        BackendUnavailableError,
        ChatBackend,
        ChatMessage,
        GenerationError,
        complete,
    )
    from retrievals_rag.llm.chat import OpenAICompatibleChat, TransformersChat
    from retrievals_rag.llm.gguf import (
        SMOLLM2_GGUF_FILE,
        SMOLLM2_PACKAGE,
        convert_gguf,
        converted_folder,
        default_cache_dir,
        smollm2_gguf_path,
    )
    from retrievals_rag.llm.query_likelihood import (
        QUERY_LIKELIHOOD,
        QUERY_LIKELIHOOD_MAX_LENGTH,
        query_likelihood_ranker,
    )


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
