"""A vector index over faiss, with document ids: exact by default, approximate through an index factory string.

Needs the ``faiss`` extra (``pip install 'retrievals-rag[faiss]'``); faiss is imported when an index is built.
The interface (``add``, ``search``, ``to_run``) and the id handling are those of
:class:`~retrievals_rag.retrieval.dense.DenseIndex`.

Example:
    >>> import numpy as np
    >>> index = FaissIndex(score_function="cos")
    >>> index.add(["a", "b"], np.array([[1.0, 0.0], [0.0, 2.0]]))
    >>> index.search(np.array([[0.0, 1.0]]), top_k=1)
    [[('b', 1.0)]]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrievals_rag.retrieval.dense import EmbeddingIndexBase
from retrievals_rag.similarity import ScoreFunction

if TYPE_CHECKING:
    import faiss

__all__ = ["FaissIndex"]

_INDEX_FILE = "index.faiss"
_METADATA_FILE = "metadata.json"
_FORMAT_VERSION = 1


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "FaissIndex needs faiss, which is not installed: pip install 'retrievals-rag[faiss]'"
        ) from error
    return faiss


class FaissIndex(EmbeddingIndexBase):
    """Document ids beside a faiss index of their embeddings.

    Scores are inner products (faiss ``METRIC_INNER_PRODUCT``); with ``score_function="cos"`` documents and
    queries are L2-normalised first (zero vectors stay zero and score 0). The default index is the exact
    ``IndexFlatIP``, whose results match :class:`~retrievals_rag.retrieval.dense.DenseIndex` up to float
    rounding. ``index_factory`` builds an approximate one instead (``"HNSW32"``, ``"IVF256,Flat"``,
    ``"IVF256,PQ16"``, ...); indexes that need training are trained on the embeddings of the first
    :meth:`add`, which must then hold enough vectors (an IVF index with n lists needs at least n). Search-time
    settings such as ``nprobe`` or ``efSearch`` can be set on :attr:`faiss_index`, e.g.
    ``faiss.ParameterSpace().set_index_parameters(index.faiss_index, "nprobe=16")``.

    Ties: the documents faiss returns are ordered by score, descending, then insertion order; which of
    several documents tied at the k-th place faiss returns is up to faiss.

    Args:
        score_function: ``"dot"`` or ``"cos"``.
        index_factory: A faiss index factory string; None for the exact ``IndexFlatIP``.

    Raises:
        ImportError: When faiss is not installed.
    """

    def __init__(self, *, score_function: ScoreFunction = "dot", index_factory: str | None = None) -> None:
        super().__init__(score_function)
        if index_factory is not None and (not isinstance(index_factory, str) or not index_factory.strip()):
            raise ValueError(f"index_factory must be a non-empty string or None, got {index_factory!r}")
        self._faiss = _import_faiss()
        self.index_factory = index_factory
        self._index: faiss.Index | None = None

    @property
    def faiss_index(self) -> faiss.Index | None:
        """The underlying faiss index (None before the first :meth:`add`); row ``i`` is ``ids[i]``."""
        return self._index

    def _new_index(self, dim: int) -> faiss.Index:
        if self.index_factory is None:
            return self._faiss.IndexFlatIP(dim)
        try:
            return self._faiss.index_factory(dim, self.index_factory, self._faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ValueError(
                f"faiss could not build index_factory={self.index_factory!r} for dimension {dim}: {error}"
            ) from error

    def _prepare(self, embeddings: np.ndarray) -> np.ndarray:
        """Float32 C-contiguous rows as faiss wants them, normalised for cosine (never the caller's array)."""
        if self.score_function == "cos":
            embeddings = np.array(embeddings, dtype=np.float32, order="C", copy=True)
            self._faiss.normalize_L2(embeddings)
        return embeddings

    def _add_rows(self, embeddings: np.ndarray) -> None:
        index = self._index if self._index is not None else self._new_index(embeddings.shape[1])
        embeddings = self._prepare(embeddings)
        if not index.is_trained:
            try:
                index.train(embeddings)
            except RuntimeError as error:
                raise ValueError(
                    f"training the {self.index_factory!r} index on {embeddings.shape[0]} vectors failed "
                    f"(the first add must hold enough vectors to train it): {error}"
                ) from error
        index.add(embeddings)
        self._index = index

    def _search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:  # search() only calls this on a non-empty index
            raise RuntimeError("FaissIndex has no faiss index yet")
        scores, rows = self._index.search(self._prepare(queries), k)  # (n_queries, k) each
        # Equal scores in insertion order; faiss pads missing results with row -1 and the lowest float.
        order = np.lexsort((rows, -scores), axis=1)
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the folder ``path``: ``index.faiss`` and ``metadata.json`` (ids and settings).

        The folder is created if needed; files of an earlier save there are replaced.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        if self._index is not None:
            self._faiss.write_index(self._index, str(folder / _INDEX_FILE))
        metadata = {
            "format_version": _FORMAT_VERSION,
            "score_function": self.score_function,
            "index_factory": self.index_factory,
            "dim": self._dim,
            "ids": self._ids,
        }
        (folder / _METADATA_FILE).write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaissIndex:
        """Read an index written by :meth:`save`.

        Raises:
            FileNotFoundError: When ``path`` lacks the saved files.
            ValueError: When the ids and the faiss index disagree in size.
        """
        folder = Path(path)
        metadata_path = folder / _METADATA_FILE
        if not metadata_path.is_file():
            raise FileNotFoundError(f"no FaissIndex saved in {folder}: {_METADATA_FILE} is missing")
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        if metadata.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported FaissIndex format_version {metadata.get('format_version')!r}")
        index = cls(score_function=metadata["score_function"], index_factory=metadata["index_factory"])
        ids: list[str] = metadata["ids"]
        if metadata["dim"] is not None:
            index_path = folder / _INDEX_FILE
            if not index_path.is_file():
                raise FileNotFoundError(f"{index_path} is missing")
            faiss_index = index._faiss.read_index(str(index_path))
            if faiss_index.ntotal != len(ids) or faiss_index.d != metadata["dim"]:
                raise ValueError(
                    f"{index_path} holds {faiss_index.ntotal} vectors of dimension {faiss_index.d}, "
                    f"but {metadata_path} lists {len(ids)} ids of dimension {metadata['dim']}"
                )
            index._index = faiss_index
        index._ids = list(ids)
        index._id_set = set(ids)
        index._dim = metadata["dim"]
        return index
