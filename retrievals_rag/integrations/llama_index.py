"""LlamaIndex adapter (extra ``llama-index``): a ``BaseEmbedding`` over an ``AutoModelForEmbedding``.

Queries get the query instruction, texts (nodes) the document instruction; a batch of texts is embedded in
one ``encode`` call, which batches by tokens inside, and the async methods run in a worker thread so the
event loop keeps running.

Importing this module loads llama-index-core, not torch: the model is loaded when the adapter is built.

Example:
    >>> from llama_index.core import Settings, VectorStoreIndex
    >>> from retrievals_rag.integrations.llama_index import LlamaIndexEmbedding
    >>> Settings.embed_model = LlamaIndexEmbedding(device="cpu")  # the packaged MiniLM  # doctest: +SKIP
    >>> index = VectorStoreIndex.from_documents(documents)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio

from pydantic import ConfigDict, Field, model_validator

from retrievals_rag.integrations._embedding import EmbedderOptions, missing_extra_error

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise missing_extra_error(__name__, "llama-index", error) from error

__all__ = ["LlamaIndexEmbedding"]

# Texts LlamaIndex hands over per call. Our encode sorts them by length and batches them by tokens, so a
# larger group pads less; 256 is our CPU default of rows per forward pass.
DEFAULT_EMBED_BATCH_SIZE = 256


class LlamaIndexEmbedding(EmbedderOptions, BaseEmbedding):
    """A LlamaIndex embedding model over an ``AutoModelForEmbedding``.

    Args:
        model_name_or_path: Model folder (or hub id) to load; None (and no ``model``): the packaged
            all-MiniLM-L6-v2.
        model: An already loaded ``AutoModelForEmbedding`` to use instead; it cannot be combined with
            ``model_name_or_path``, ``device``, ``use_fp16`` or ``model_kwargs``, which apply when loading.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: CUDA when available.
        use_fp16: Half precision on a GPU (the CPU falls back to float32 with a warning).
        model_kwargs: Other ``from_pretrained`` options: ``pooling_method``, ``max_length``,
            ``trust_remote_code``, ``dtype``.
        query_instruction: Prefix for queries (``{}`` is a placeholder for the text); None: the model's own,
            ``""``: none.
        document_instruction: Prefix for texts (nodes), same rules.
        normalize_embeddings: L2-normalise queries and texts alike; None: the model's setting.
        batch_size: Most texts per forward pass; None: the model's default.
        token_budget: Most padded tokens per forward pass; None: the model's default.
        show_progress_bar: Our encode's progress bar; None: for 1,000 texts or more, on a terminal.
        embed_batch_size: Texts LlamaIndex passes per call (each call is one encode); default 256.
        model_name: A label for LlamaIndex's events; default: the model path.

    Raises:
        ValueError: On an unknown option, or a loaded ``model`` given with loading options.
        TypeError: When ``model`` is not an ``AutoModelForEmbedding``.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    embed_batch_size: int = Field(
        default=DEFAULT_EMBED_BATCH_SIZE, gt=0, le=2048, description="Texts passed per call."
    )

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this class under."""
        return "RetrievalsRagEmbedding"

    @model_validator(mode="after")
    def _default_model_name(self) -> LlamaIndexEmbedding:
        if "model_name" not in self.model_fields_set:
            if self.model_name_or_path is not None:
                self.model_name = self.model_name_or_path
            else:
                self.model_name = str(getattr(self._model.model, "name_or_path", "") or "unknown")
        return self

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encode([query], "query")[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encode([text], "document")[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._encode(texts, "document").tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
