"""ColBERT's scoring engine: MaxSim over documents streamed through the encoder or taken from a vector cache.

Split from the model (``retrievals_rag.models.colbert``) at its seam: the model encodes texts into token vectors
(:meth:`ColBERT.forward`, ``_encode_rows``) and scores two sets of them (:meth:`ColBERT.score`); this mixin
plans which document windows are encoded or fetched, scores them against the queries paired with them in
batched MaxSim operations, keeps each pair's best window, and owns the document vector cache.

The cache belongs to the weights it was filled with: it is emptied when the weights change (an optimizer step,
a checkpoint loaded, LoRA added or merged), found by the parameters' version counters, not when the model
switches between train and eval mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch

from retrievals_rag.models.batching import plan_batches
from retrievals_rag.models.token_cache import DocumentVectorCache
from retrievals_rag.models.windows import tokenize_content

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

TextKind = Literal["query", "document"]
# Unique documents tokenized and windowed together: bounds memory on very large inputs.
DOCUMENTS_PER_CHUNK = 4_096
# Most elements of the (queries, documents, query_len, doc_len) token-score tensor of one MaxSim operation.
MAXSIM_MAX_ELEMENTS = 1 << 26
# Bytes of document vectors the cache keeps by default.
DEFAULT_CACHE_BYTES = 2 << 30


class TokenEmbeddings(NamedTuple):
    """Per-token vectors of a batch of texts.

    Attributes:
        embeddings: ``(batch, seq_len, colbert_dim)`` L2-normalised float32 vectors.
        mask: ``(batch, seq_len)`` bool, True for the tokens that count (not padding; for documents not
            punctuation).
    """

    embeddings: torch.Tensor
    mask: torch.Tensor


class LateInteractionScoring:
    """Scoring and the document vector cache of :class:`~retrievals_rag.models.colbert.ColBERT`.

    The host class provides ``colbert_dim``, ``device``, ``tokenizer``, ``inference()``, ``_batch_options``,
    ``_progress``, ``parameters()``, ``tokenize_queries``, ``_document_windows``, ``_encode_rows`` and
    ``score``.
    """

    document_cache: DocumentVectorCache | None = None
    _cache_weights_version: int | None = None

    def _weights_version(self) -> int:
        """A number that grows whenever a parameter is changed in place (optimizer steps, loading)."""
        return sum(parameter._version for parameter in self.parameters())  # type: ignore[attr-defined]

    def _current_cache(self) -> DocumentVectorCache | None:
        """The document cache, emptied first if the weights changed since it was filled."""
        cache = self.document_cache
        if cache is None:
            return None
        version = self._weights_version()
        if version != self._cache_weights_version:
            cache.clear()
            self._cache_weights_version = version
        return cache

    def _weights_changed(self) -> None:
        if self.document_cache is not None:
            self.document_cache.clear()
        self._cache_weights_version = None

    # ------------------------------------------------------------------ document vector cache
    def enable_document_cache(
        self, max_bytes: int | None = None, dtype: torch.dtype | None = None
    ) -> DocumentVectorCache:
        """Keep every scored document's token vectors, so later queries score it by MaxSim alone.

        Late interaction's document vectors do not depend on the query: with the cache on, ``rerank`` and
        ``compute_score`` encode a document the first time it is seen and only the query afterwards
        (:meth:`cache_documents` fills it ahead, e.g. at indexing time). The cache is emptied whenever the
        weights change (a training step, ``load_weights``, LoRA); switching between train and eval mode keeps it.

        Called again on an enabled cache, the arguments given are applied to it: a new ``max_bytes`` keeps the
        most recently used vectors that fit; a new ``dtype`` starts an empty cache of that type (vectors are
        encoded again as documents are scored).

        Args:
            max_bytes: most bytes of vectors kept (default 2 GiB); least recently used documents are forgotten
                beyond it.
            dtype: storage type, float16 by default (float32 gives the uncached scores exactly).

        Returns:
            The cache.
        """
        cache = self.document_cache
        if cache is None or (dtype is not None and dtype != cache.dtype):
            size = max_bytes if max_bytes is not None else (cache.max_bytes if cache else DEFAULT_CACHE_BYTES)
            self.document_cache = DocumentVectorCache(max_bytes=size, dtype=dtype)
            self._cache_weights_version = None
        elif max_bytes is not None and max_bytes != cache.max_bytes:
            cache.resize(max_bytes)
        return self.document_cache  # type: ignore[return-value]

    def disable_document_cache(self) -> None:
        """Drop the cache and its vectors; documents are encoded at every call again."""
        self.document_cache = None

    def cache_documents(
        self,
        documents: Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> int:
        """Encode the ``documents`` not cached yet into the document cache (enabled with its defaults if it is
        off), windows included, so that scoring them later encodes only queries. Returns how many were added.
        """
        self.enable_document_cache()
        cache = self._current_cache()
        assert cache is not None
        for index, document in enumerate(documents):
            if not isinstance(document, str):
                raise TypeError(f"documents[{index}] is {type(document).__name__}, expected str")
        missing = [document for document in dict.fromkeys(documents) if document not in cache]
        options = self._batch_options(batch_size, token_budget)
        with self.inference(len(missing), show_progress_bar, "Encoding documents") as progress:
            for start in range(0, len(missing), DOCUMENTS_PER_CHUNK):
                chunk = missing[start : start + DOCUMENTS_PER_CHUNK]
                for document, windows in zip(chunk, self._document_vectors(chunk, options), strict=True):
                    cache.put(document, windows)
                progress.update(len(chunk))
        return len(missing)

    def _window_rows(self, documents: list[str], first: int = 0) -> tuple[list[list[int]], list[int]]:
        """The documents' window rows, and each row's document (numbered from ``first``)."""
        rows: list[list[int]] = []
        owners: list[int] = []
        for offset, ids in enumerate(tokenize_content(self.tokenizer, documents)):
            windows = self._document_windows(ids)
            rows.extend(windows)
            owners.extend([first + offset] * len(windows))
        return rows, owners

    def _document_vectors(self, documents: list[str], options: dict[str, Any]) -> list[list[torch.Tensor]]:
        """Each document's windows as matrices of the vectors that count, ``(n_tokens, colbert_dim)``."""
        rows, owners = self._window_rows(documents)
        by_row: list[torch.Tensor] = [torch.empty(0)] * len(rows)
        for positions, encoded in self._encode_rows(rows, "document", options):
            for row, position in enumerate(positions):
                by_row[int(position)] = encoded.embeddings[row][encoded.mask[row]]
        vectors: list[list[torch.Tensor]] = [[] for _ in documents]
        for row, owner in enumerate(owners):
            vectors[owner].append(by_row[row])
        return vectors

    def _cached_batches(
        self, windows: list[tuple[int, torch.Tensor]], options: dict[str, Any]
    ) -> Iterator[tuple[list[int], TokenEmbeddings]]:
        """Padded float batches of cached window matrices, planned by tokens, with each row's document."""
        for rows in plan_batches(
            [len(matrix) for _, matrix in windows], options["token_budget"], options["max_batch_size"]
        ):
            longest = max(1, max(len(windows[int(row)][1]) for row in rows))
            embeddings = torch.zeros((len(rows), longest, self.colbert_dim), device=self.device)
            mask = torch.zeros((len(rows), longest), dtype=torch.bool, device=self.device)
            for slot, row in enumerate(rows):
                matrix = windows[int(row)][1]
                embeddings[slot, : len(matrix)] = matrix.to(self.device, torch.float32, non_blocking=True)
                mask[slot, : len(matrix)] = True
            yield [windows[int(row)][0] for row in rows], TokenEmbeddings(embeddings, mask)

    def _streamed_batches(
        self, documents: list[str], options: dict[str, Any]
    ) -> Iterator[tuple[list[int], TokenEmbeddings]]:
        """Encoded batches of the documents' windows, chunk by chunk, with each row's document."""
        for start in range(0, len(documents), DOCUMENTS_PER_CHUNK):
            rows, owners = self._window_rows(documents[start : start + DOCUMENTS_PER_CHUNK], start)
            for positions, encoded in self._encode_rows(rows, "document", options):
                yield [owners[int(p)] for p in positions], encoded

    # ------------------------------------------------------------------ scoring
    def _score_pairs(
        self,
        queries: list[str],
        documents: list[str],
        *,
        batch_size: int | None,
        token_budget: int | None,
        show_progress_bar: bool | None,
    ) -> np.ndarray:
        options = self._batch_options(batch_size, token_budget)
        unique_queries = list(dict.fromkeys(queries))
        unique_documents = list(dict.fromkeys(documents))
        query_index = {query: index for index, query in enumerate(unique_queries)}
        query_of_pair = np.asarray([query_index[query] for query in queries])
        document_index = {document: index for index, document in enumerate(unique_documents)}
        pairs_of_document: list[list[int]] = [[] for _ in unique_documents]
        for pair, document in enumerate(documents):
            pairs_of_document[document_index[document]].append(pair)
        scores = np.full(len(queries), -np.inf, dtype=np.float64)
        cache = self._current_cache()
        with self.inference(len(unique_documents), show_progress_bar, "Scoring") as progress:
            query_vectors = self._encode_queries_padded(self.tokenize_queries(unique_queries), options)
            if cache is None:
                batches = self._streamed_batches(unique_documents, options)
            else:
                found = [cache.get(document) for document in unique_documents]
                missing = [index for index, vectors in enumerate(found) if vectors is None]
                for start in range(0, len(missing), DOCUMENTS_PER_CHUNK):
                    chunk = missing[start : start + DOCUMENTS_PER_CHUNK]
                    encoded = self._document_vectors([unique_documents[i] for i in chunk], options)
                    for index, vectors in zip(chunk, encoded, strict=True):
                        # kept for this call even where a small cache cannot hold them all
                        found[index] = cache.put(unique_documents[index], vectors)
                windows = [(index, matrix) for index, vectors in enumerate(found) for matrix in vectors or []]
                batches = self._cached_batches(windows, options)
            seen: set[int] = set()
            for owners, encoded in batches:
                self._score_batch(query_vectors, encoded, owners, pairs_of_document, query_of_pair, scores)
                progress.update(len(set(owners) - seen))
                seen.update(owners)
        return scores

    def _encode_queries_padded(self, rows: list[list[int]], options: dict[str, Any]) -> TokenEmbeddings:
        """Query rows encoded into one padded ``(n, longest, dim)`` tensor and mask, on the model's device."""
        longest = max(len(row) for row in rows)
        embeddings = torch.zeros((len(rows), longest, self.colbert_dim), device=self.device)
        mask = torch.zeros((len(rows), longest), dtype=torch.bool, device=self.device)
        for positions, encoded in self._encode_rows(rows, "query", options):
            index = torch.from_numpy(positions).to(self.device)
            width = encoded.embeddings.shape[1]
            embeddings[index, :width] = encoded.embeddings
            mask[index, :width] = encoded.mask
        return TokenEmbeddings(embeddings, mask)

    def _score_batch(
        self,
        queries: TokenEmbeddings,
        documents: TokenEmbeddings,
        row_documents: list[int],
        pairs_of_document: list[list[int]],
        query_of_pair: np.ndarray,
        scores: np.ndarray,
    ) -> None:
        """Score one batch of document windows against the queries paired with them; keep each pair's best."""
        pair_list: list[int] = []
        row_list: list[int] = []
        for row, document in enumerate(row_documents):
            pairs = pairs_of_document[document]
            pair_list.extend(pairs)
            row_list.extend([row] * len(pairs))
        pair_index, row_index = np.asarray(pair_list), np.asarray(row_list)
        needed = np.unique(query_of_pair[pair_index])  # sorted query indices this batch needs
        column = np.searchsorted(needed, query_of_pair[pair_index])  # each pair's row in `needed`
        n_rows, doc_len = documents.mask.shape
        per_query = max(1, queries.mask.shape[1] * n_rows * doc_len)
        group = max(1, MAXSIM_MAX_ELEMENTS // per_query)
        for first in range(0, len(needed), group):
            chosen = torch.from_numpy(needed[first : first + group]).to(self.device)
            block = self.score(
                TokenEmbeddings(queries.embeddings[chosen], queries.mask[chosen]), documents
            )  # (group, n_rows): one MaxSim operation per query group x document batch
            values = block.float().cpu().numpy()
            selected = (column >= first) & (column < first + group)
            np.maximum.at(
                scores,
                pair_index[selected],
                values[column[selected] - first, row_index[selected]].astype(np.float64),
            )
