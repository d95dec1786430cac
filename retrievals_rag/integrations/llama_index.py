"""LlamaIndex adapters (extra ``llama-index``): a ``BaseEmbedding`` and a reranking node postprocessor.

:class:`LlamaIndexEmbedding`: queries get the query instruction, texts (nodes) the document instruction; a
batch of texts is embedded in one ``encode`` call, which batches by tokens inside, and the async methods run in
a worker thread so the event loop keeps running.

:class:`LlamaIndexReranker`: a ``BaseNodePostprocessor`` over any of our rankers (cross-encoder, LLM ranker,
ColBERT) that scores all the nodes in one batched call, emits LlamaIndex's rerank events, and returns new
nodes (the caller's are never modified) with the rerank score and the retrieval score kept in the metadata;
with ``rerank_weight`` below 1 it orders by the rerank score mixed with the score each node arrived with.

Importing this module loads llama-index-core, not torch: the model is loaded when an adapter is built.

Example:
    >>> from llama_index.core import Settings, VectorStoreIndex
    >>> from retrievals_rag.integrations.llama_index import LlamaIndexEmbedding, LlamaIndexReranker
    >>> Settings.embed_model = LlamaIndexEmbedding(device="cpu")  # the packaged MiniLM  # doctest: +SKIP
    >>> index = VectorStoreIndex.from_documents(documents)  # doctest: +SKIP
    >>> reranker = LlamaIndexReranker(model_name_or_path="path/to/cross-encoder", top_n=3)  # doctest: +SKIP
    >>> index.as_retriever(similarity_top_k=20)  # then reranker.postprocess_nodes(nodes, query_str=q)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio

from pydantic import ConfigDict, Field, model_validator

from retrievals_rag.integrations._embedding import EmbedderOptions, missing_extra_error
from retrievals_rag.integrations._ranking import (
    PREVIOUS_RELEVANCE_SCORE_KEY,
    RELEVANCE_SCORE_KEY,
    RETRIEVAL_SCORE_KEY,
    RankerOptions,
    metadata_with_incoming_score,
)
from retrievals_rag.retrieval.fusion import interpolate_scores, rank_scores

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise missing_extra_error(__name__, "llama-index", error) from error

__all__ = [
    "PREVIOUS_RELEVANCE_SCORE_KEY",
    "RELEVANCE_SCORE_KEY",
    "RETRIEVAL_SCORE_KEY",
    "LlamaIndexEmbedding",
    "LlamaIndexReranker",
]

dispatcher = get_dispatcher(__name__)

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
        show_progress_bar: Our encode's progress bar; None: for 1,000 texts or more (redrawn once a minute away from a terminal).
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


class LlamaIndexReranker(RankerOptions, BaseNodePostprocessor):
    """A LlamaIndex node postprocessor that reranks nodes with one of our rankers.

    ``postprocess_nodes`` scores ``node.get_content(metadata_mode=MetadataMode.EMBED)`` of every node against
    the query in one batched ``compute_score`` call, and returns NEW ``NodeWithScore`` objects (deep copies of
    the nodes; the caller's are never modified), best first, cut to ``top_n`` and to ``score_threshold``, with
    the rerank score as a Python float in ``.score``. The score a node arrived with is kept in the copy's
    metadata: under ``"retrieval_score"``, or, when a retrieval score is already kept there (the node was
    reranked before), under ``"previous_relevance_score"``. These keys are excluded from the text that
    embedders, rerankers and LLMs see (``excluded_embed_metadata_keys`` / ``excluded_llm_metadata_keys``), so
    keeping them changes no later score and no prompt.

    ``rerank_weight`` below 1 orders by ``rerank_weight * z(rerank) + (1 - rerank_weight) * z(incoming score)``,
    both standardised over the nodes given (:func:`~retrievals_rag.retrieval.fusion.interpolate_scores`): on
    SciFact a fine-tuned cross-encoder alone ranked the dense top-100 below dense retrieval, and mixed at 0.5
    above it (see the README). The mix is then the copy's ``.score``, the ranker's own score goes to its metadata
    under ``"relevance_score"``, and ``score_threshold`` still applies to the ranker's score. Every node needs a
    score then (a retriever's, not None).

    Like LlamaIndex's own rerankers it emits ``ReRankStartEvent`` (before checking its input) and
    ``ReRankEndEvent`` through the instrumentation dispatcher, and the ``RERANKING`` callback event; it raises
    ValueError without a query and returns ``[]`` for no nodes. ``apostprocess_nodes`` runs it in a worker
    thread, so the event loop keeps running.

    Args:
        model_name_or_path: The ranker's folder (or hub id); or give ``model``.
        model: An already loaded ``AutoModelForRanking``, ``LLMRanker`` or ``ColBERT``; it cannot be combined
            with ``model_name_or_path``, ``model_kind``, ``device``, ``use_fp16`` or ``model_kwargs``.
        model_kind: ``"auto"`` (the kind the folder was saved as: ColBERT, LLM ranker, else cross-encoder), or
            ``"cross_encoder"``, ``"llm_ranker"``, ``"colbert"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: CUDA when available.
        use_fp16: Half precision on a GPU (the CPU falls back to float32 with a warning).
        model_kwargs: Other ``from_pretrained`` options of that kind (``max_length``, ``dtype``, ...).
        top_n: Nodes returned (best first); None: all; more than there are: all. Default 3.
        score_threshold: Drop nodes whose returned score is below it (the normalised score when ``normalize``).
        normalize: Return the sigmoid of the scores, in (0, 1): a usable threshold scale for a cross-encoder or
            an LLM ranker; for ColBERT the sigmoid of MaxSim is a monotone squashing, not a probability.
        batch_size: Most inputs per forward pass; None: the model's default.
        token_budget: Most padded tokens per forward pass; None: the model's default.
        show_progress_bar: None: a progress bar for 1,000 nodes or more, on a terminal.
        rerank_weight: The ranker's share of the order, in [0, 1]; 1 (the default): the rerank score alone.

    Raises:
        ValueError: On an unknown option, no model, a loaded ``model`` given with loading options, or a
            ``model_kwargs`` key the model's kind does not take; when reranking, with ``rerank_weight`` below 1,
            a node without a score (its position and id are named).
        TypeError: When ``model`` is not one of our rankers.

    Example:
        >>> reranker = LlamaIndexReranker(model_name_or_path="path/to/cross-encoder", top_n=2)  # doctest: +SKIP
        >>> engine = index.as_query_engine(similarity_top_k=10, node_postprocessors=[reranker])  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    rerank_weight: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="The ranker's share of the order; below 1, mixed with the score each node arrived with.",
    )

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this class under."""
        return "RetrievalsRagReranker"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        model_name = self.ranker_name
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=len(nodes) if self.top_n is None else self.top_n,
                model_name=model_name,
            )
        )
        if query_bundle is None:
            raise ValueError("LlamaIndexReranker needs a query: pass query_str or query_bundle")
        if not nodes:
            return []
        texts = [node.node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: model_name,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            if self.rerank_weight < 1.0:
                reranked = self._mixed(query_bundle.query_str, nodes, texts)
            else:
                ranked = self._rank(query_bundle.query_str, texts, self.top_n)
                reranked = [_rescored_copy(nodes[index], score) for index, score in ranked]
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _mixed(self, query: str, nodes: list[NodeWithScore], texts: list[str]) -> list[NodeWithScore]:
        """The nodes ordered by the rerank score mixed with their incoming score (``rerank_weight`` below 1)."""
        for position, node in enumerate(nodes):
            if node.score is None:
                raise ValueError(
                    f"rerank_weight {self.rerank_weight} mixes in the score each node arrived with, and node "
                    f"{position} ({node.node.node_id}) has none: rerank a retriever's scored nodes, or use "
                    "rerank_weight=1"
                )
        scores = self._score(query, texts)
        mixed = interpolate_scores([float(node.score) for node in nodes], scores, self.rerank_weight)
        ranked = rank_scores(scores, top_n=self.top_n, score_threshold=self.score_threshold, order_by=mixed)
        return [_rescored_copy(nodes[index], score, rerank_score=scores[index]) for index, score in ranked]

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)


def _rescored_copy(
    node_with_score: NodeWithScore, score: float, rerank_score: float | None = None
) -> NodeWithScore:
    """A deep copy of the node with ``score``; its incoming score (and the ranker's own score, when ``score`` is a
    mix) kept in metadata, hidden from its text."""
    node = node_with_score.node.model_copy(deep=True)
    node.metadata, written = metadata_with_incoming_score(node.metadata, node_with_score.score)
    if rerank_score is not None:
        node.metadata[RELEVANCE_SCORE_KEY] = float(rerank_score)
        written.append(RELEVANCE_SCORE_KEY)
    for key in written:
        for excluded in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
            if key not in excluded:
                excluded.append(key)
    return NodeWithScore(node=node, score=float(score))
