"""Lexical retrieval with BM25 over the ``bm25s`` library (Lù, 2024), with document ids and a run format.

``bm25s`` does the tokenising (lower-casing, the scikit-learn token pattern ``\\b\\w\\w+\\b``, so one-letter
words are dropped; stopwords; an optional stemmer) and the BM25 scoring, in the variants compared by Kamphuis
et al. (2020). This wrapper adds ids, a defined behaviour on the edge cases where ``bm25s`` raises or returns
arbitrary documents, and a deterministic order.

Behaviour:

- Only documents that contain at least one query term are returned, as in Lucene, so a list can be shorter
  than ``top_k``; a query with no term in the index (empty, only stopwords, unknown words) returns ``[]``.
  (``bm25s`` itself fills the list with arbitrary zero-score documents, and raises when ``k`` exceeds the
  corpus size.)
- Order: score, descending; equal scores by corpus position, lower first.
- An empty corpus, or one in which no document has an indexable token, raises ``ValueError``.
- Chinese, Japanese, Thai...: a script written without spaces between words is indexed by its pairs of adjacent
  characters (:func:`retrievals_rag.data.text_units.segment_unspaced`, the bigrams of Lucene's ``CJKAnalyzer``);
  ``bm25s`` alone makes a whole sentence one term, so that nothing but the same sentence matches it. An index
  saved before this rule (no ``unspaced`` in its ``retriever.json``) keeps the tokenising it was built with.

Example:
    >>> retriever = BM25Retriever(["a cat and a dog and a bird", "dogs bark", "the cat sat"], ids=["d1", "d2", "d3"])
    >>> [doc_id for doc_id, _ in retriever.search(["cat"], top_k=5)[0]]
    ['d3', 'd1']

References:
    Xing Han Lù. 2024. BM25S: Orders of magnitude faster lexical search via eager sparse scoring.
    arXiv:2407.03618.
    Chris Kamphuis, Arjen de Vries, Leonid Boytsov, Jimmy Lin. 2020. Which BM25 do you mean? A large-scale
    reproducibility study of scoring variants. ECIR 2020.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from retrievals_rag.data.text_units import segment_unspaced
from retrievals_rag.retrieval.dense import _check_new_ids, _check_top_k, results_to_run

if TYPE_CHECKING:
    import bm25s

__all__ = ["BM25Method", "BM25Retriever"]

BM25Method = Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]
_METHODS: tuple[str, ...] = get_args(BM25Method)
_METADATA_FILE = "retriever.json"
_FORMAT_VERSION = 1
_UNSPACED_PAIRS = (
    "character-pairs"  # how runs of an unspaced script are tokenised (retriever.json "unspaced")
)


class BM25Retriever:
    """BM25 over a corpus of texts, answering with document ids.

    Args:
        corpus: The documents' texts (at least one, and at least one indexable token overall).
        ids: One unique string id per document; None numbers them ``"0"``, ``"1"``, ...
        k1: Term-frequency saturation (>= 0).
        b: Length normalisation, in [0, 1].
        method: BM25 variant, as named by ``bm25s`` (Kamphuis et al., 2020).
        stopwords: A language that ``bm25s`` knows (``"en"``, ``"de"``, ``"fr"``, ...), a list of lower-case
            words, or None to keep every word.
        stemmer: Called on a list of words, returns their stems, applied to documents and queries alike (for
            example ``Stemmer.Stemmer("english").stemWords`` from PyStemmer). None: no stemming.
        show_progress: Show ``bm25s``'s progress bars.

    Raises:
        ValueError: On an empty corpus, a corpus without indexable tokens, ids that are not unique or do not
            match the corpus in length, an unknown method or stopwords language, or k1 / b out of range.
        TypeError: When corpus or ids are not sequences of strings, or the stemmer is not callable.
    """

    def __init__(
        self,
        corpus: Sequence[str],
        ids: Sequence[str] | None = None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: BM25Method = "lucene",
        stopwords: str | Sequence[str] | None = "en",
        stemmer: Callable[[list[str]], list[str]] | None = None,
        show_progress: bool = False,
    ) -> None:
        texts = _check_texts(corpus, "corpus")
        if not texts:
            raise ValueError("corpus is empty: BM25Retriever needs at least one document")
        doc_ids = (
            [str(position) for position in range(len(texts))] if ids is None else _check_new_ids(ids, set())
        )
        if len(doc_ids) != len(texts):
            raise ValueError(f"got {len(doc_ids)} ids for {len(texts)} documents")
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if not k1 >= 0:
            raise ValueError(f"k1 must be >= 0, got {k1!r}")
        if not 0 <= b <= 1:
            raise ValueError(f"b must be in [0, 1], got {b!r}")
        self._setup(_check_stopwords(stopwords), _check_stemmer(stemmer), show_progress, _UNSPACED_PAIRS)

        corpus_tokens = self._tokenize(texts)
        if not any(corpus_tokens):
            raise ValueError(
                "no document in the corpus has an indexable token (all are empty, stopwords or one-letter words)"
            )
        model = self._bm25s.BM25(k1=k1, b=b, method=method)
        model.index(corpus_tokens, show_progress=show_progress)
        self._model = model
        self._ids = doc_ids

    def _setup(
        self,
        stopwords: str | list[str] | None,
        stemmer: Callable[[list[str]], list[str]] | None,
        show_progress: bool,
        unspaced: str | None,
    ) -> None:
        import bm25s

        self._bm25s = bm25s
        self._unspaced = unspaced
        self._stopwords = stopwords
        self._stemmer = stemmer
        self.show_progress = show_progress

    @property
    def ids(self) -> list[str]:
        """Document ids in corpus order (a copy)."""
        return list(self._ids)

    @property
    def model(self) -> bm25s.BM25:
        """The underlying ``bm25s.BM25`` index (document ``i`` is ``ids[i]``)."""
        return self._model

    @property
    def method(self) -> str:
        return self._model.method

    @property
    def k1(self) -> float:
        return self._model.k1

    @property
    def b(self) -> float:
        return self._model.b

    def __len__(self) -> int:
        return len(self._ids)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        if self._unspaced == _UNSPACED_PAIRS:
            texts = [segment_unspaced(text) for text in texts]
        return self._bm25s.tokenize(
            texts,
            lower=True,
            stopwords=self._stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=self.show_progress,
        )

    def search(self, queries: Sequence[str], top_k: int) -> list[list[tuple[str, float]]]:
        """The best ``top_k`` documents of each query, as ``(doc_id, score)`` with Python floats, best first.

        Only documents containing a query term are returned (see the module docstring), so a list may be
        shorter than ``top_k`` or empty.

        Args:
            queries: Query texts.
            top_k: At least 1.
        """
        query_texts = _check_texts(queries, "queries")
        _check_top_k(top_k)
        if not query_texts:
            return []
        scores_matrix = self._model.scores
        term_starts, term_documents = scores_matrix["indptr"], scores_matrix["indices"]
        # bm25s adds a "" placeholder to its vocabulary with an id past the score matrix; querying it raises.
        n_terms = len(term_starts) - 1
        results: list[list[tuple[str, float]]] = []
        for tokens in self._tokenize(query_texts):
            term_ids = [term_id for term_id in self._model.get_tokens_ids(tokens) if term_id < n_terms]
            if not term_ids:
                results.append([])
                continue
            scores = self._model.get_scores_from_ids(term_ids)  # (n_documents,)
            matched = np.unique(
                np.concatenate(
                    [term_documents[term_starts[term] : term_starts[term + 1]] for term in term_ids]
                )
            )
            positions, top_scores = _top_k_lower_position_first(matched, scores[matched], top_k)
            results.append(
                [
                    (self._ids[position], float(score))
                    for position, score in zip(positions, top_scores, strict=True)
                ]
            )
        return results

    def to_run(
        self, query_ids: Sequence[str], queries: Sequence[str], top_k: int
    ) -> dict[str, dict[str, float]]:
        """Search and return a run: query id -> document id -> score (Python floats).

        Args:
            query_ids: One unique id per query.
            queries: Query texts.
            top_k: Documents kept per query (at most).
        """
        query_texts = _check_texts(queries, "queries")
        if isinstance(query_ids, str) or len(query_ids) != len(query_texts):
            raise ValueError(f"query_ids must be a sequence of one id per query ({len(query_texts)} queries)")
        return results_to_run(query_ids, self.search(query_texts, top_k))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the folder ``path``: the ``bm25s`` files and ``retriever.json`` (ids, settings).

        A stemmer is not saved: pass the same one to :meth:`load`.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self._model.save(folder, show_progress=self.show_progress)
        metadata = {
            "format_version": _FORMAT_VERSION,
            "ids": self._ids,
            "stopwords": self._stopwords,
            "uses_stemmer": self._stemmer is not None,
            "unspaced": self._unspaced,
        }
        (folder / _METADATA_FILE).write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        stemmer: Callable[[list[str]], list[str]] | None = None,
        show_progress: bool = False,
    ) -> BM25Retriever:
        """Read an index written by :meth:`save`.

        Args:
            path: The folder given to :meth:`save`.
            stemmer: The stemmer the index was built with; required exactly when it was built with one.
            show_progress: Show ``bm25s``'s progress bars.

        Raises:
            FileNotFoundError: When ``path`` holds no saved retriever.
            ValueError: When a stemmer is missing or unexpected, or the ids do not match the index.
        """
        import bm25s

        folder = Path(path)
        metadata_path = folder / _METADATA_FILE
        if not metadata_path.is_file():
            raise FileNotFoundError(f"no BM25Retriever saved in {folder}: {_METADATA_FILE} is missing")
        metadata: dict[str, Any] = json.loads(metadata_path.read_text(encoding="utf-8"))
        if metadata.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported BM25Retriever format_version {metadata.get('format_version')!r}")
        if metadata["uses_stemmer"] and stemmer is None:
            raise ValueError(
                f"the index in {folder} was built with a stemmer: pass the same stemmer to load()"
            )
        if not metadata["uses_stemmer"] and stemmer is not None:
            raise ValueError(f"the index in {folder} was built without a stemmer; load it with stemmer=None")
        model = bm25s.BM25.load(folder, show_progress=show_progress)
        ids: list[str] = metadata["ids"]
        if model.scores["num_docs"] != len(ids):
            raise ValueError(f"{folder} holds {model.scores['num_docs']} documents but {len(ids)} ids")
        retriever = cls.__new__(cls)
        if metadata.get("unspaced") not in (None, _UNSPACED_PAIRS):
            raise ValueError(
                f"{metadata_path}: unknown tokenising of unspaced scripts {metadata['unspaced']!r}"
            )
        # an index saved before unspaced scripts were split into character pairs has no "unspaced": its terms
        # are whole runs, and its queries must be tokenised the same way
        retriever._setup(
            metadata["stopwords"], _check_stemmer(stemmer), show_progress, metadata.get("unspaced")
        )
        retriever._model = model
        retriever._ids = list(ids)
        return retriever


def _top_k_lower_position_first(
    positions: np.ndarray, scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``positions`` (ascending) by ``scores``: score descending, then lower position first."""
    if len(positions) > k:
        # Keep every candidate scoring at least the k-th best score, then sort only those.
        kth_best = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= kth_best
        positions, scores = positions[keep], scores[keep]
    order = np.lexsort((positions, -scores))[:k]
    return positions[order], scores[order]


def _check_texts(texts: Sequence[str], name: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a sequence of strings, not one string")
    texts = list(texts)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name} must hold strings; position {position} is {type(text).__name__}")
    return texts


def _check_stopwords(stopwords: str | Sequence[str] | None) -> str | list[str] | None:
    if stopwords is None:
        return None
    if isinstance(stopwords, str):
        import bm25s

        bm25s.tokenize(
            [], stopwords=stopwords, show_progress=False
        )  # raises ValueError on an unknown language
        return stopwords
    words = list(stopwords)
    for word in words:
        if not isinstance(word, str):
            raise TypeError(
                f"stopwords must be a language name, a list of strings or None; got {word!r} in it"
            )
    return words


def _check_stemmer(
    stemmer: Callable[[list[str]], list[str]] | None,
) -> Callable[[list[str]], list[str]] | None:
    if stemmer is not None and not callable(stemmer) and not hasattr(stemmer, "stemWords"):
        raise TypeError(f"stemmer must be callable on a list of words, got {type(stemmer).__name__}")
    return stemmer
