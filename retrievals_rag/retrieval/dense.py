"""Exact dense retrieval: top-k search over embeddings, chunked so that memory stays bounded.

:func:`dense_search` scores a corpus chunk by chunk (one matrix product and one ``torch.topk`` per chunk) and
merges the running top k, so the score matrix never holds more than ``chunk_size`` documents at a time.
Scores come from :func:`retrievals_rag.similarity.pairwise_scores`, the package's only copy of cos / dot.

Tie rule (everywhere in this module): results are sorted by score, descending; equal scores are ordered by
corpus position, lower first. The chunked merge keeps this rule exactly, so results do not depend on
``chunk_size``.

:class:`DenseIndex` keeps document ids beside their embeddings and answers with ids, in the run format used
across the package (query id -> document id -> score). :class:`~retrievals_rag.retrieval.faiss_index.FaissIndex`
shares its id handling through :class:`EmbeddingIndexBase`.

Example:
    >>> import numpy as np
    >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    >>> scores, indices = dense_search(np.array([[1.0, 0.0]]), corpus, top_k=2)
    >>> indices.tolist(), scores.tolist()
    ([[0, 2]], [[1.0, 1.0]])
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from retrievals_rag.similarity import ScoreFunction, pairwise_scores

if TYPE_CHECKING:
    import torch

__all__ = ["DenseIndex", "EmbeddingIndexBase", "dense_search", "results_to_run"]

_SCORE_FUNCTIONS: tuple[str, ...] = ("cos", "dot")
# Upper bound on the elements of one (query block x corpus chunk) score matrix: 2**25 float32 = 128 MiB.
_MAX_SCORE_MATRIX_ELEMENTS = 2**25


def dense_search(
    query_embeddings: np.ndarray | torch.Tensor,
    corpus_embeddings: np.ndarray | torch.Tensor,
    top_k: int,
    *,
    score_function: ScoreFunction = "dot",
    chunk_size: int = 50_000,
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k search of every query over a corpus of embeddings.

    The corpus is scored in chunks of ``chunk_size`` rows, and queries in blocks small enough that one score
    matrix stays under about 128 MiB, so memory is bounded for any corpus that fits in memory (a numpy
    memmap works too: only one chunk at a time is converted). Inputs may be numpy arrays or torch tensors of
    any float (or integer) dtype, float16 and bfloat16 included; scores are computed in float32.

    Results are sorted by score, descending; equal scores are ordered by corpus index, lower first, whatever
    the chunk size.

    Args:
        query_embeddings: ``(n_queries, dim)``.
        corpus_embeddings: ``(n_corpus, dim)``.
        top_k: How many documents to return per query (at least 1); at most ``n_corpus`` are returned.
        score_function: ``"dot"`` (inner product) or ``"cos"`` (cosine; zero vectors score 0).
        chunk_size: Corpus rows scored at once.
        device: Torch device for the computation. None: the corpus's device if it is a tensor, else the
            queries' device if they are a tensor, else ``"cpu"``.

    Returns:
        ``(scores, indices)``: float32 and int64 arrays of shape ``(n_queries, k)`` with
        ``k = min(top_k, n_corpus)``; ``indices`` are row numbers in ``corpus_embeddings``.

    Raises:
        ValueError: On inputs that are not 2-D, dimensions that differ, ``top_k`` or ``chunk_size`` below 1,
            an unknown ``score_function``, or NaN scores (NaN or inf in the embeddings).
        TypeError: On a non-numeric dtype.
    """
    import torch

    _check_top_k(top_k)
    _check_positive_int(chunk_size, "chunk_size")
    if score_function not in _SCORE_FUNCTIONS:
        raise ValueError(f"score_function must be 'cos' or 'dot', got {score_function!r}")
    query_embeddings = _as_matrix(query_embeddings, "query_embeddings")
    corpus_embeddings = _as_matrix(corpus_embeddings, "corpus_embeddings")
    n_queries, query_dim = query_embeddings.shape
    n_corpus, corpus_dim = corpus_embeddings.shape
    if query_dim != corpus_dim:
        raise ValueError(
            f"query_embeddings have dimension {query_dim} but corpus_embeddings have dimension {corpus_dim}"
        )
    k = min(top_k, n_corpus)
    if n_queries == 0 or k == 0:
        return np.zeros((n_queries, k), dtype=np.float32), np.zeros((n_queries, k), dtype=np.int64)

    device = device if device is not None else _default_device(query_embeddings, corpus_embeddings)
    chunk_rows = min(chunk_size, n_corpus)
    query_block_rows = max(1, _MAX_SCORE_MATRIX_ELEMENTS // chunk_rows)

    all_scores: list[np.ndarray] = []
    all_indices: list[np.ndarray] = []
    with torch.inference_mode():
        for query_start in range(0, n_queries, query_block_rows):
            queries = _rows_as_float32(
                query_embeddings, query_start, query_start + query_block_rows, device
            )  # (block, dim)
            best_scores = torch.empty((queries.shape[0], 0), dtype=torch.float32, device=device)
            best_indices = torch.empty((queries.shape[0], 0), dtype=torch.int64, device=device)
            for corpus_start in range(0, n_corpus, chunk_rows):
                documents = _rows_as_float32(
                    corpus_embeddings, corpus_start, corpus_start + chunk_rows, device
                )
                scores = pairwise_scores(queries, documents, score_function)  # (block, chunk)
                chunk_scores, chunk_positions = _top_k_lower_index_first(scores, k)
                # The running best holds lower corpus indices than this chunk and both halves are already
                # ordered by the tie rule, so a stable sort by score keeps the rule for the merged list.
                merged_scores = torch.cat([best_scores, chunk_scores], dim=1)
                merged_indices = torch.cat([best_indices, chunk_positions + corpus_start], dim=1)
                merged_scores, order = merged_scores.sort(dim=1, descending=True, stable=True)
                best_scores = merged_scores[:, :k]
                best_indices = merged_indices.gather(1, order[:, :k])
            all_scores.append(best_scores.cpu().numpy())
            all_indices.append(best_indices.cpu().numpy())
    return np.concatenate(all_scores).astype(np.float32, copy=False), np.concatenate(all_indices)


def _top_k_lower_index_first(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each row of ``scores``: score descending, equal scores by lower column first.

    ``torch.topk`` leaves open which of several equal scores at the k-th place it returns. It is asked for
    ``k + 1`` scores: where the k-th and the (k+1)-th are equal, the row is redone so that the lowest tied
    columns are kept; elsewhere the top-k set is unambiguous and only needs ordering.

    Returns:
        ``(values, columns)``, both ``(rows, k)``.

    Raises:
        ValueError: On a NaN score (torch ranks NaN above every number, so one shows up in the top values).
    """

    if k >= scores.shape[1]:
        values, columns = scores.sort(dim=1, descending=True, stable=True)
        _check_no_nan(values)
        return values, columns
    values, columns = _torch_topk(scores, k + 1)  # (rows, k + 1), descending
    _check_no_nan(values)
    redo = (values[:, k] == values[:, k - 1]).nonzero().squeeze(1)
    values, columns = values[:, :k].contiguous(), columns[:, :k].contiguous()
    if redo.numel() > 0:
        rows = scores[redo]  # (n_redo, n_columns)
        threshold = values[redo, k - 1 :]  # (n_redo, 1): the k-th best score
        above = rows > threshold
        tied = rows == threshold
        free_slots = k - above.sum(dim=1, keepdim=True)
        keep = above | (tied & (tied.cumsum(dim=1) <= free_slots))  # exactly k per row
        kept_columns = keep.nonzero()[:, 1].view(redo.shape[0], k)  # ascending within each row
        columns[redo] = kept_columns
        values[redo] = rows.gather(1, kept_columns)
    # Order by column, then stable-sort by score: equal scores keep the lower column first.
    columns, order = columns.sort(dim=1)
    values = values.gather(1, order)
    values, order = values.sort(dim=1, descending=True, stable=True)
    return values, columns.gather(1, order)


def _check_no_nan(values: torch.Tensor) -> None:
    import torch

    if torch.isnan(values).any():
        raise ValueError("dense_search produced NaN scores: the embeddings contain NaN or infinite values")


def _torch_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk`` along dimension 1, largest first, sorted (a seam for tests that vary its tie order)."""
    import torch

    result = torch.topk(scores, k, dim=1, largest=True, sorted=True)
    return result.values, result.indices


class EmbeddingIndexBase(ABC):
    """Document ids beside their embeddings: the id handling shared by the vector indexes.

    Row ``i`` of the stored embeddings belongs to ``ids[i]``. Subclasses store rows (:meth:`_add_rows`) and
    search them (:meth:`_search_rows`); this class validates ids and shapes and maps rows back to ids.
    """

    def __init__(self, score_function: ScoreFunction = "dot") -> None:
        if score_function not in _SCORE_FUNCTIONS:
            raise ValueError(f"score_function must be 'cos' or 'dot', got {score_function!r}")
        self.score_function: ScoreFunction = score_function
        self._ids: list[str] = []
        self._id_set: set[str] = set()
        self._dim: int | None = None

    @property
    def ids(self) -> list[str]:
        """Document ids in insertion order (a copy)."""
        return list(self._ids)

    @property
    def dim(self) -> int | None:
        """Embedding dimension, or None before the first :meth:`add`."""
        return self._dim

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[str], embeddings: np.ndarray | torch.Tensor) -> None:
        """Add documents.

        Args:
            ids: One new, unique string id per row of ``embeddings``.
            embeddings: ``(len(ids), dim)``; ``dim`` must match what the index already holds.

        Raises:
            ValueError: On a duplicate id (within ``ids`` or with the index), a length mismatch, or a
                dimension mismatch. Nothing is added then.
            TypeError: On an id that is not a string.
        """
        new_ids = _check_new_ids(ids, self._id_set)
        matrix = _as_float32_numpy(embeddings, "embeddings")
        if matrix.shape[0] != len(new_ids):
            raise ValueError(f"got {len(new_ids)} ids but {matrix.shape[0]} embedding rows")
        if self._dim is not None and matrix.shape[1] != self._dim:
            raise ValueError(
                f"embeddings have dimension {matrix.shape[1]}, the index holds dimension {self._dim}"
            )
        self._add_rows(matrix)
        self._ids.extend(new_ids)
        self._id_set.update(new_ids)
        self._dim = matrix.shape[1]

    def search(
        self, query_embeddings: np.ndarray | torch.Tensor, top_k: int
    ) -> list[list[tuple[str, float]]]:
        """The best ``top_k`` documents of each query, as ``(doc_id, score)`` with Python floats.

        Args:
            query_embeddings: ``(n_queries, dim)``.
            top_k: At least 1; at most ``len(self)`` documents come back per query.

        Returns:
            One list per query, best first. An empty index gives empty lists.
        """
        _check_top_k(top_k)
        queries = _as_float32_numpy(query_embeddings, "query_embeddings")
        if self._dim is not None and queries.shape[1] != self._dim:
            raise ValueError(
                f"query_embeddings have dimension {queries.shape[1]}, the index holds dimension {self._dim}"
            )
        if not self._ids or queries.shape[0] == 0:
            return [[] for _ in range(queries.shape[0])]
        scores, rows = self._search_rows(queries, min(top_k, len(self._ids)))
        return [
            [
                (self._ids[row], float(score))
                for score, row in zip(row_scores, row_ids, strict=True)
                if row >= 0
            ]
            for row_scores, row_ids in zip(scores.tolist(), rows.tolist(), strict=True)
        ]

    def to_run(
        self, query_ids: Sequence[str], query_embeddings: np.ndarray | torch.Tensor, top_k: int
    ) -> dict[str, dict[str, float]]:
        """Search and return a run: query id -> document id -> score (Python floats).

        Args:
            query_ids: One unique id per row of ``query_embeddings``.
            query_embeddings: ``(n_queries, dim)``.
            top_k: Documents kept per query.
        """
        _check_query_ids(query_ids)
        return results_to_run(query_ids, self.search(query_embeddings, top_k))

    @abstractmethod
    def _add_rows(self, embeddings: np.ndarray) -> None:
        """Store validated float32 rows ``(n, dim)``, appended after the current ones."""

    @abstractmethod
    def _search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, rows)`` of shape ``(n_queries, k)``; a row of -1 marks a missing result."""


class DenseIndex(EmbeddingIndexBase):
    """A small in-memory exact index: document ids beside float32 embeddings, searched by :func:`dense_search`.

    Ties follow :func:`dense_search`: equal scores come in insertion order. For approximate search or very
    large corpora use :class:`~retrievals_rag.retrieval.faiss_index.FaissIndex`.

    Args:
        score_function: ``"dot"`` or ``"cos"``.
        chunk_size: Passed to :func:`dense_search`.
        device: Passed to :func:`dense_search` (None: CPU, where the embeddings are kept).

    Example:
        >>> import numpy as np
        >>> index = DenseIndex(score_function="cos")
        >>> index.add(["a", "b"], np.array([[1.0, 0.0], [0.0, 2.0]]))
        >>> index.search(np.array([[0.0, 1.0]]), top_k=1)
        [[('b', 1.0)]]
    """

    def __init__(
        self, *, score_function: ScoreFunction = "dot", chunk_size: int = 50_000, device: str | None = None
    ) -> None:
        super().__init__(score_function)
        _check_positive_int(chunk_size, "chunk_size")
        self.chunk_size = chunk_size
        self.device = device
        self._blocks: list[np.ndarray] = []

    @property
    def embeddings(self) -> np.ndarray:
        """All stored embeddings, ``(len(self), dim)`` float32 (``(0, 0)`` when empty)."""
        if not self._blocks:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        if len(self._blocks) > 1:
            self._blocks = [np.concatenate(self._blocks)]
        return self._blocks[0]

    def _add_rows(self, embeddings: np.ndarray) -> None:
        self._blocks.append(embeddings)

    def _search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return dense_search(
            queries,
            self.embeddings,
            k,
            score_function=self.score_function,
            chunk_size=self.chunk_size,
            device=self.device,
        )


def results_to_run(
    query_ids: Sequence[str], results: Sequence[Sequence[tuple[str, float]]]
) -> dict[str, dict[str, float]]:
    """Turn per-query ``(doc_id, score)`` lists into a run: query id -> document id -> score.

    Args:
        query_ids: Unique string ids, one per entry of ``results``.
        results: Per query, ``(doc_id, score)`` pairs, best first.

    Raises:
        ValueError: On a length mismatch or duplicate query ids.
    """
    _check_query_ids(query_ids)
    if len(query_ids) != len(results):
        raise ValueError(f"got {len(query_ids)} query ids for {len(results)} queries")
    return {
        query_id: {doc_id: float(score) for doc_id, score in hits}
        for query_id, hits in zip(query_ids, results, strict=True)
    }


def _check_query_ids(query_ids: Sequence[str]) -> None:
    if isinstance(query_ids, str):
        raise TypeError("query_ids must be a sequence of strings, not one string")
    _check_string_ids(query_ids, "query id")
    if len(set(query_ids)) != len(query_ids):
        raise ValueError(f"query ids must be unique; repeated: {_repeated(query_ids)}")


def _check_new_ids(ids: Sequence[str], existing: set[str]) -> list[str]:
    """Return ``ids`` as a list after checking that they are strings, unique, and not in ``existing``."""
    if isinstance(ids, str):
        raise TypeError("ids must be a sequence of strings, not one string")
    new_ids = list(ids)
    _check_string_ids(new_ids, "id")
    if len(set(new_ids)) != len(new_ids):
        raise ValueError(f"ids must be unique; repeated: {_repeated(new_ids)}")
    clashes = [doc_id for doc_id in new_ids if doc_id in existing]
    if clashes:
        raise ValueError(f"ids already in the index: {clashes[:5]}{' ...' if len(clashes) > 5 else ''}")
    return new_ids


def _check_string_ids(ids: Sequence[Any], what: str) -> None:
    for position, doc_id in enumerate(ids):
        if not isinstance(doc_id, str):
            raise TypeError(f"every {what} must be a str; position {position} is {type(doc_id).__name__}")


def _repeated(ids: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for doc_id in ids:
        if doc_id in seen and doc_id not in repeated:
            repeated.append(doc_id)
        seen.add(doc_id)
    return repeated[:5]


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")


def _check_positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _is_torch_tensor(value: Any) -> bool:
    """True for a torch tensor, without importing torch (a tensor cannot exist before torch is imported)."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(value, torch_module.Tensor)


def _as_matrix(embeddings: Any, name: str) -> Any:
    """Check that ``embeddings`` is a 2-D numeric tensor or array; return it (non-tensors via ``np.asarray``)."""
    if _is_torch_tensor(embeddings):
        import torch

        if embeddings.is_complex() or embeddings.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got dtype {embeddings.dtype}")
    else:
        embeddings = np.asarray(embeddings)
        if embeddings.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {embeddings.dtype}")
    if embeddings.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, dim), got shape {tuple(embeddings.shape)}")
    return embeddings


def _as_float32_numpy(embeddings: Any, name: str) -> np.ndarray:
    """A 2-D C-contiguous float32 numpy copy-or-view of a numpy array or torch tensor (any device, dtype)."""
    embeddings = _as_matrix(embeddings, name)
    if _is_torch_tensor(embeddings):
        import torch

        return embeddings.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    return np.ascontiguousarray(embeddings, dtype=np.float32)


def _rows_as_float32(embeddings: Any, start: int, stop: int, device: str) -> torch.Tensor:
    """Rows ``start:stop`` of a 2-D array or tensor as a float32 tensor on ``device``."""
    import torch

    if _is_torch_tensor(embeddings):
        return embeddings[start:stop].detach().to(device=device, dtype=torch.float32)
    # np.array copies: the chunk is writable (torch warns on read-only memory) and float32.
    return torch.from_numpy(np.array(embeddings[start:stop], dtype=np.float32)).to(device)


def _default_device(query_embeddings: Any, corpus_embeddings: Any) -> str:
    if _is_torch_tensor(corpus_embeddings):
        return str(corpus_embeddings.device)
    if _is_torch_tensor(query_embeddings):
        return str(query_embeddings.device)
    return "cpu"
