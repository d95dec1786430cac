"""LangChain adapters (extra ``langchain``, langchain-core only): ``Embeddings``, a reranker, a retriever.

:class:`LangchainEmbedding` puts an :class:`~retrievals_rag.models.embedding.AutoModelForEmbedding` behind
LangChain's ``Embeddings`` interface, so any LangChain vector store (langchain-chroma's ``Chroma``, FAISS,
...) can use it. :class:`LangchainReranker` is a ``BaseDocumentCompressor`` over any of our rankers
(cross-encoder, LLM ranker, ColBERT), for ``ContextualCompressionRetriever`` or on its own; it returns copies
of the documents with the rerank score in their metadata. :class:`LangchainRetriever` answers queries over a
corpus of texts (exact dense search, optionally fused with BM25 by reciprocal rank fusion) or over any
LangChain ``VectorStore``, optionally reranked, and returns new documents whose metadata carries the
retrieval score (and the rerank score) as Python floats.

Importing this module loads langchain-core, not torch: the model is loaded when an adapter is built.

Example:
    >>> from retrievals_rag.integrations.langchain import LangchainEmbedding, LangchainRetriever
    >>> embeddings = LangchainEmbedding(device="cpu")  # the packaged all-MiniLM-L6-v2  # doctest: +SKIP
    >>> retriever = LangchainRetriever(
    ...     texts=["BM25 ranks documents by shared terms.", "Dense retrieval maps text to vectors."],
    ...     embeddings=embeddings,
    ...     use_bm25=True,
    ...     k=1,
    ... )  # doctest: +SKIP
    >>> retriever.invoke("what is dense retrieval?")[0].metadata["retrieval_score"]  # doctest: +SKIP
    0.032...
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Self

import numpy as np
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from retrievals_rag.integrations._embedding import EmbedderOptions, missing_extra_error
from retrievals_rag.integrations._ranking import (
    PREVIOUS_RELEVANCE_SCORE_KEY,
    RELEVANCE_SCORE_KEY,
    RETRIEVAL_SCORE_KEY,
    RankerOptions,
    metadata_with_score,
)
from retrievals_rag.retrieval.bm25 import BM25Retriever
from retrievals_rag.retrieval.dense import DenseIndex
from retrievals_rag.retrieval.hybrid import Candidate, Hit, HybridSearch, check_count
from retrievals_rag.similarity import ScoreFunction

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
        Callbacks,
    )
    from langchain_core.documents import Document
    from langchain_core.documents.compressor import BaseDocumentCompressor
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.vectorstores import VectorStore
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise missing_extra_error(__name__, "langchain", error) from error

__all__ = [
    "BM25_SCORE_KEY",
    "DENSE_SCORE_KEY",
    "PREVIOUS_RELEVANCE_SCORE_KEY",
    "RELEVANCE_SCORE_KEY",
    "RETRIEVAL_SCORE_KEY",
    "LangchainEmbedding",
    "LangchainReranker",
    "LangchainRetriever",
]

# RETRIEVAL_SCORE_KEY ("retrieval_score"): the score the retriever ranked by (the fused score when fusing).
# RELEVANCE_SCORE_KEY ("relevance_score"): a reranker's score; PREVIOUS_RELEVANCE_SCORE_KEY: an earlier one's.
DENSE_SCORE_KEY = "dense_score"
"""Metadata key of the dense score when fusing with BM25 (absent if dense search did not return the document)."""
BM25_SCORE_KEY = "bm25_score"
"""Metadata key of the BM25 score when fusing (absent if BM25 did not return the document)."""


class LangchainEmbedding(EmbedderOptions, Embeddings):
    """A LangChain ``Embeddings`` over an ``AutoModelForEmbedding``.

    ``embed_documents`` applies the document instruction and ``embed_query`` the query instruction; both use
    the same normalisation and batching options and return lists of Python floats. The async methods run the
    encode in a worker thread, so the event loop keeps running meanwhile.

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
        document_instruction: Prefix for documents, same rules.
        normalize_embeddings: L2-normalise queries and documents alike; None: the model's setting.
        batch_size: Most texts per forward pass; None: the model's default.
        token_budget: Most padded tokens per forward pass; None: the model's default.
        show_progress_bar: None: a progress bar for 1,000 texts or more (redrawn once a minute away from a terminal).

    Raises:
        ValueError: On an unknown option, or a loaded ``model`` given with loading options.
        TypeError: When ``model`` is not an ``AutoModelForEmbedding``.

    Example:
        >>> embeddings = LangchainEmbedding(query_instruction="query: ", document_instruction="passage: ")  # doctest: +SKIP
        >>> len(embeddings.embed_query("what is BM25?"))  # doctest: +SKIP
        384
    """

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents with the document instruction.

        Args:
            texts: The documents.

        Returns:
            One list of Python floats per document, in input order.
        """
        return self._encode(texts, "document").tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the query instruction.

        Args:
            text: The query.

        Returns:
            The embedding as a list of Python floats.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._encode([text], "query")[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_documents` in a worker thread."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)


class LangchainReranker(RankerOptions, BaseDocumentCompressor):
    """A LangChain document compressor that reranks documents with one of our rankers.

    ``compress_documents`` scores every document against the query in one batched ``compute_score`` call,
    and returns NEW documents (the caller's are never modified), best first, cut to ``top_n`` and to
    ``score_threshold``. Each copy has the id, the text and a deep copy of the metadata of its original, plus
    the score as a Python float under ``score_key`` (``"relevance_score"``). A score already under that key
    (an earlier reranker's) moves to ``"previous_" + score_key``; any other score, such as the
    ``"retrieval_score"`` of :class:`LangchainRetriever`, is kept as it was. ``acompress_documents`` runs the
    scoring in a worker thread, so the event loop keeps running.

    The ranker is loaded from ``model_name_or_path`` as the kind the folder was saved as (``model_kind="auto"``):
    a ColBERT folder as :class:`~retrievals_rag.models.colbert.ColBERT`, an LLM-ranker folder as an
    :class:`~retrievals_rag.models.llm_ranking.LLMRanker`, anything else as a cross-encoder
    (:class:`~retrievals_rag.models.ranking.AutoModelForRanking`).

    Args:
        model_name_or_path: The ranker's folder (or hub id); or give ``model``.
        model: An already loaded ``AutoModelForRanking``, ``LLMRanker`` or ``ColBERT``; it cannot be combined
            with ``model_name_or_path``, ``model_kind``, ``device``, ``use_fp16`` or ``model_kwargs``, which
            apply when loading.
        model_kind: ``"auto"``, or ``"cross_encoder"``, ``"llm_ranker"`` (a bare causal LM folder needs it),
            ``"colbert"`` (a bare encoder folder needs it).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: CUDA when available.
        use_fp16: Half precision on a GPU (the CPU falls back to float32 with a warning).
        model_kwargs: Other ``from_pretrained`` options of that kind, e.g. ``max_length``, ``dtype``,
            ``max_windows``, the instructions; ``prompt`` for an LLM ranker, ``query_max_length`` for ColBERT.
        top_n: Documents returned (best first); None: all; more than there are: all. Default 3.
        score_threshold: Drop documents whose returned score is below it (the normalised score when
            ``normalize``). Raw cross-encoder logits have no fixed scale: normalise to threshold them.
        normalize: Return the sigmoid of the scores, in (0, 1): a usable scale for thresholds with a
            cross-encoder or an LLM ranker. For ColBERT the sigmoid of a MaxSim score (a sum of cosine
            similarities over the query tokens) is a monotone squashing, not a probability.
        batch_size: Most inputs per forward pass; None: the model's default.
        token_budget: Most padded tokens per forward pass (bounds memory on long documents); None: default.
        show_progress_bar: None: a progress bar for 1,000 documents or more (redrawn once a minute away from a terminal).
        score_key: The metadata key of the score.

    Raises:
        ValueError: On an unknown option, no model, a loaded ``model`` given with loading options, or a
            ``model_kwargs`` key the model's kind does not take.
        TypeError: When ``model`` is not one of our rankers.

    Example:
        >>> from langchain_classic.retrievers import ContextualCompressionRetriever  # doctest: +SKIP
        >>> reranker = LangchainReranker(model_name_or_path="path/to/cross-encoder", top_n=3, normalize=True)  # doctest: +SKIP
        >>> retriever = ContextualCompressionRetriever(
        ...     base_compressor=reranker, base_retriever=LangchainRetriever(vectorstore=store, k=20)
        ... )  # doctest: +SKIP
        >>> retriever.invoke("what is dense retrieval?")[0].metadata  # doctest: +SKIP
        {'source': 'notes.txt', 'retrieval_score': 0.61, 'relevance_score': 0.97}
    """

    score_key: str = Field(
        default=RELEVANCE_SCORE_KEY, min_length=1, description="Metadata key of the score."
    )

    @field_validator("score_key")
    @classmethod
    def _not_the_retrieval_key(cls, value: str) -> str:
        if value == RETRIEVAL_SCORE_KEY:
            raise ValueError(
                f"score_key cannot be {RETRIEVAL_SCORE_KEY!r}: that key keeps the retrieval score"
            )
        return value

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> list[Document]:
        """Rerank ``documents`` for ``query``.

        Args:
            documents: The candidates (not modified).
            query: The query.
            callbacks: Unused (scoring runs no LangChain component).

        Returns:
            New documents, best first, at most ``top_n``, with the score in ``metadata[score_key]``.
        """
        return self.rerank_documents(documents, query, top_n=self.top_n)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> list[Document]:
        """:meth:`compress_documents` in a worker thread."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)

    def rerank_documents(
        self, documents: Sequence[Document], query: str, *, top_n: int | None
    ) -> list[Document]:
        """:meth:`compress_documents` with another ``top_n`` (None: all); the threshold still applies."""
        if isinstance(documents, Document) or not isinstance(documents, Sequence):
            raise TypeError(f"documents must be a list of Documents, got {type(documents).__name__}")
        documents = list(documents)
        for position, document in enumerate(documents):
            if not isinstance(document, Document):
                raise TypeError(f"documents[{position}] is {type(document).__name__}, expected a Document")
        ranked = self._rank(query, [document.page_content for document in documents], top_n)
        return [
            documents[index].model_copy(
                update={"metadata": metadata_with_score(documents[index].metadata, score, self.score_key)}
            )
            for index, score in ranked
        ]


class LangchainRetriever(BaseRetriever):
    """A LangChain retriever over a corpus (dense, optionally with BM25) or a ``VectorStore``, optionally reranked.

    The search is :class:`~retrievals_rag.retrieval.hybrid.HybridSearch`, the one orchestration of dense search,
    BM25 fusion and reranking that the RAG engine uses too. LangChain's conventional names map onto its knobs:
    ``k`` is its ``top_k`` (documents returned) and ``fetch_k`` its ``candidates`` (documents each first-stage
    retriever returns when fusing or reranking, and the number given to the reranker); ``rrf_k`` is ``rrf_k``.

    Over a corpus, the texts are embedded once, when the retriever is built, with ``embeddings`` (any
    LangChain ``Embeddings``; None: a :class:`LangchainEmbedding` of the packaged MiniLM), and searched
    exactly with :class:`~retrievals_rag.retrieval.dense.DenseIndex`. With ``use_bm25=True`` the best
    ``max(k, fetch_k)`` documents of dense search and of BM25 are fused by reciprocal rank fusion.

    Over a ``vectorstore``, the store's own search is called: ``similarity_search_with_relevance_scores``
    (``vectorstore_score="relevance"``: higher is better, normalised by the store; langchain-chroma in cosine
    space gives ``1 - cosine distance``, the cosine similarity, which LangChain warns about when it is below 0)
    or ``similarity_search_with_score`` (``"raw"``: the store's own score, e.g. a distance, lower is better).

    With a ``reranker`` (a :class:`LangchainReranker`), the best ``max(k, fetch_k)`` candidates are retrieved
    as above, then reranked in one batched call and cut to ``k`` (the reranker's ``top_n`` does not apply
    here; its ``score_threshold`` does, so fewer than ``k`` may come back).

    The number of documents is ``k``, or ``k`` given per call: ``retriever.invoke(query, k=2)``. Results are
    new ``Document`` objects: the id and a deep copy of the metadata of the original, plus
    ``metadata["retrieval_score"]`` (a Python float; the fused score when fusing) and, when fusing,
    ``metadata["dense_score"]`` and ``metadata["bm25_score"]`` for the retrievers that returned the document;
    when reranking, the rerank score under the reranker's ``score_key`` (``metadata["relevance_score"]``).
    The caller's texts, metadata and documents are never modified.

    Args:
        texts: The corpus; give this or ``vectorstore``.
        ids: One unique id per text; None: ``"0"``, ``"1"``, ...
        metadatas: One metadata dict per text; None: empty metadata.
        vectorstore: A LangChain vector store to search instead of a corpus.
        embeddings: Embeddings for the corpus and the queries (corpus only).
        k: Documents returned per query (at least 1).
        use_bm25: Fuse dense search with BM25 (corpus only).
        rrf_k: The reciprocal rank fusion constant (60 in Cormack et al., 2009).
        fetch_k: Candidates taken from each retriever before fusion, and given to the reranker (at least ``k``
            are taken).
        score_function: ``"cos"`` or ``"dot"`` for dense search over the corpus.
        vectorstore_score: ``"relevance"`` or ``"raw"`` (see above).
        search_kwargs: Passed to the vector store's search (for example ``{"filter": {...}}``).
        reranker: A :class:`LangchainReranker` that reorders the candidates; None: no reranking.
        rerank_weight: The reranker's share of the order, in [0, 1]: 1 orders by the rerank score alone; below
            1, by ``rerank_weight * z(rerank) + (1 - rerank_weight) * z(retrieval score)`` over the candidates
            (see :mod:`retrievals_rag.retrieval.hybrid`); not with ``vectorstore_score="raw"``, whose scores may
            be distances.

    Raises:
        ValueError: On neither or both of ``texts`` and ``vectorstore``, corpus options given with a vector
            store (or store options with a corpus), ids or metadatas of the wrong length, duplicate ids, or
            ``k`` inside ``search_kwargs``.

    Example:
        >>> retriever = LangchainRetriever(texts=["a cat", "a dog"], ids=["c", "d"], k=1)  # doctest: +SKIP
        >>> [document.id for document in retriever.invoke("kitten")]  # doctest: +SKIP
        ['c']
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    texts: list[str] | None = Field(default=None, description="The corpus (or give vectorstore).")
    ids: list[str] | None = Field(default=None, description="One unique id per text.")
    metadatas: list[dict[str, Any]] | None = Field(default=None, description="One metadata dict per text.")
    vectorstore: VectorStore | None = Field(default=None, description="A vector store to search instead.")
    embeddings: Embeddings | None = Field(default=None, description="Embeddings for a corpus.")
    k: int = Field(default=4, ge=1, description="Documents returned per query.")
    use_bm25: bool = Field(default=False, description="Fuse dense search with BM25 (corpus only).")
    rrf_k: int = Field(default=60, ge=0, description="Reciprocal rank fusion constant.")
    fetch_k: int = Field(
        default=20, ge=1, description="Candidates per retriever before fusion, and given to the reranker."
    )
    score_function: ScoreFunction = Field(default="cos", description="Dense score over a corpus.")
    vectorstore_score: Literal["relevance", "raw"] = Field(
        default="relevance", description="Which vector store search to call."
    )
    search_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the vector store's search."
    )
    reranker: LangchainReranker | None = Field(
        default=None, description="Reranks the fetch_k candidates down to k; None: no reranking."
    )
    rerank_weight: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="The reranker's share of the order; below 1, mixed with the retrieval score.",
    )

    _documents: list[Document] = PrivateAttr(default_factory=list)
    _embeddings: Embeddings | None = PrivateAttr(default=None)
    _dense_index: DenseIndex | None = PrivateAttr(default=None)
    _bm25: BM25Retriever | None = PrivateAttr(default=None)
    _positions: dict[str, int] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[Document],
        *,
        embeddings: Embeddings | None = None,
        k: int = 4,
        use_bm25: bool = False,
        rrf_k: int = 60,
        fetch_k: int = 20,
        score_function: ScoreFunction = "cos",
        reranker: LangchainReranker | None = None,
    ) -> LangchainRetriever:
        """A retriever over LangChain documents: their text, metadata and ids (their position where None).

        The arguments after ``documents`` are those of the class.
        """
        return cls(
            texts=[document.page_content for document in documents],
            ids=[
                str(position) if document.id is None else document.id
                for position, document in enumerate(documents)
            ],
            metadatas=[document.metadata for document in documents],
            embeddings=embeddings,
            k=k,
            use_bm25=use_bm25,
            rrf_k=rrf_k,
            fetch_k=fetch_k,
            score_function=score_function,
            reranker=reranker,
        )

    @model_validator(mode="after")
    def _build(self) -> Self:
        if self.rerank_weight < 1.0 and self.vectorstore_score == "raw":
            raise ValueError(
                'rerank_weight below 1 mixes the retrieval score in, which vectorstore_score="raw" may give as a '
                'distance (lower is better): use vectorstore_score="relevance"'
            )
        if self.vectorstore is not None:
            self._check_vectorstore_options()
            return self
        if self.texts is None:
            raise ValueError("LangchainRetriever needs texts (a corpus) or a vectorstore")
        store_options = [
            name
            for name, given in (
                ("search_kwargs", bool(self.search_kwargs)),
                ("vectorstore_score", self.vectorstore_score != "relevance"),
            )
            if given
        ]
        if store_options:
            raise ValueError(f"{', '.join(store_options)} apply to a vectorstore, not to a corpus")
        self._index_corpus(self.texts)
        return self

    def _hybrid_search(self) -> HybridSearch:
        """The core search with this retriever's current knobs: ``k`` is its ``top_k``, ``fetch_k`` its
        ``candidates`` (built per query: it holds no state, so a changed field takes effect at once)."""
        reranker = self.reranker
        return HybridSearch(
            self._dense,
            lexical=None if self._bm25 is None else self._lexical,
            reranker=None if reranker is None else reranker._score,
            top_k=self.k,
            candidates=self.fetch_k,
            rrf_k=self.rrf_k,
            rerank_threshold=None if reranker is None else reranker.score_threshold,
            rerank_weight=self.rerank_weight,
        )

    def _check_vectorstore_options(self) -> None:
        corpus_options = [
            name
            for name, given in (
                ("texts", self.texts is not None),
                ("ids", self.ids is not None),
                ("metadatas", self.metadatas is not None),
                ("embeddings", self.embeddings is not None),
                ("use_bm25", self.use_bm25),
                ("score_function", self.score_function != "cos"),
            )
            if given
        ]
        if corpus_options:
            raise ValueError(
                f"{', '.join(corpus_options)} apply to a corpus, not to a vectorstore, which searches its own "
                "documents with its own embeddings"
            )
        if "k" in self.search_kwargs:
            raise ValueError("give the number of documents as the retriever's k, not in search_kwargs")

    def _index_corpus(self, texts: list[str]) -> None:
        n_texts = len(texts)
        ids = [str(position) for position in range(n_texts)] if self.ids is None else self.ids
        metadatas = [{} for _ in range(n_texts)] if self.metadatas is None else self.metadatas
        for name, values in (("ids", ids), ("metadatas", metadatas)):
            if len(values) != n_texts:
                raise ValueError(f"got {len(values)} {name} for {n_texts} texts")
        self._embeddings = self.embeddings if self.embeddings is not None else LangchainEmbedding()
        self._dense_index = DenseIndex(score_function=self.score_function)
        self._documents = [
            Document(page_content=text, metadata=copy.deepcopy(metadata), id=doc_id)
            for text, metadata, doc_id in zip(texts, metadatas, ids, strict=True)
        ]
        self._positions = {doc_id: position for position, doc_id in enumerate(ids)}
        if len(self._positions) != n_texts:
            raise ValueError("ids must be unique")
        if n_texts == 0:
            return
        embeddings = np.asarray(self._embeddings.embed_documents(texts), dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != n_texts:
            raise ValueError(f"embed_documents returned shape {embeddings.shape} for {n_texts} texts")
        self._dense_index.add(ids, embeddings)  # (n_texts, dim)
        if self.use_bm25:
            self._bm25 = BM25Retriever(texts, ids=ids)

    # ------------------------------------------------------------------ retrieval
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        top_k = self._top_k(k)
        return [self._result(hit) for hit in self._hybrid_search().search(query, top_k)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        search = self._hybrid_search()
        top_k = self._top_k(k)
        dense = await self._adense(query, search.first_stage_size(top_k))
        hits = await asyncio.to_thread(search.complete, query, dense, top_k)
        return [self._result(hit) for hit in hits]

    def _top_k(self, k: int | None) -> int:
        top_k = self.k if k is None else k
        check_count("k", top_k)
        return int(top_k)

    def _dense(self, query: str, n_results: int) -> list[Candidate]:
        """The dense first stage: the vector store's search, or exact search over the corpus."""
        if self.vectorstore is None:
            if not self._documents:
                return []
            return self._search_corpus(self._embeddings.embed_query(query), n_results)
        with _relevance_scores_supported(self.vectorstore):
            if self.vectorstore_score == "relevance":
                pairs = self.vectorstore.similarity_search_with_relevance_scores(
                    query, k=n_results, **self.search_kwargs
                )
            else:
                pairs = self.vectorstore.similarity_search_with_score(
                    query, k=n_results, **self.search_kwargs
                )
        return _store_candidates(pairs)

    async def _adense(self, query: str, n_results: int) -> list[Candidate]:
        """:meth:`_dense` with the store's (or the embeddings') own async methods."""
        if self.vectorstore is None:
            if not self._documents:
                return []
            query_embedding = await self._embeddings.aembed_query(query)
            return await asyncio.to_thread(self._search_corpus, query_embedding, n_results)
        with _relevance_scores_supported(self.vectorstore):
            if self.vectorstore_score == "relevance":
                pairs = await self.vectorstore.asimilarity_search_with_relevance_scores(
                    query, k=n_results, **self.search_kwargs
                )
            else:
                pairs = await self.vectorstore.asimilarity_search_with_score(
                    query, k=n_results, **self.search_kwargs
                )
        return _store_candidates(pairs)

    def _search_corpus(self, query_embedding: Sequence[float], n_results: int) -> list[Candidate]:
        query_matrix = np.asarray([query_embedding], dtype=np.float32)  # (1, dim)
        hits = self._dense_index.search(query_matrix, n_results)[0]
        return [self._candidate(doc_id, score) for doc_id, score in hits]

    def _lexical(self, query: str, n_results: int) -> list[Candidate]:
        assert self._bm25 is not None
        return [self._candidate(doc_id, score) for doc_id, score in self._bm25.search([query], n_results)[0]]

    def _candidate(self, doc_id: str, score: float) -> Candidate:
        document = self._documents[self._positions[doc_id]]
        return Candidate(doc_id, document.page_content, float(score), document)

    def _result(self, hit: Hit) -> Document:
        """A new document: the original's fields, a deep copy of its metadata, and the hit's scores as floats."""
        scores: dict[str, float] = {RETRIEVAL_SCORE_KEY: hit.retrieval_score}
        if hit.fused:
            if hit.dense_score is not None:
                scores[DENSE_SCORE_KEY] = hit.dense_score
            if hit.bm25_score is not None:
                scores[BM25_SCORE_KEY] = hit.bm25_score
        document = _copy_with_scores(hit.item, scores)
        if hit.rerank_score is None or self.reranker is None:
            return document
        metadata = metadata_with_score(document.metadata, hit.rerank_score, self.reranker.score_key)
        return document.model_copy(update={"metadata": metadata})


def _store_candidates(pairs: Sequence[tuple[Document, float]]) -> list[Candidate]:
    """A vector store's ``(document, score)`` pairs as candidates, identified by position (ids may be None)."""
    return [
        Candidate(str(position), document.page_content, float(score), document)
        for position, (document, score) in enumerate(pairs)
    ]


@contextlib.contextmanager
def _relevance_scores_supported(vectorstore: VectorStore) -> Iterator[None]:
    """Turn LangChain's bare NotImplementedError for a store without relevance scores into advice."""
    try:
        yield
    except NotImplementedError as error:
        raise NotImplementedError(
            f"{type(vectorstore).__name__} gives no relevance scores: use vectorstore_score='raw' (its own score)"
        ) from error


def _copy_with_scores(document: Document, scores: dict[str, Any]) -> Document:
    """A new document: ``document``'s fields with a deep copy of its metadata, plus ``scores`` as floats."""
    metadata = copy.deepcopy(document.metadata)
    metadata.update({key: float(score) for key, score in scores.items()})
    return document.model_copy(update={"metadata": metadata})
