"""Fusion of rankings: reciprocal rank fusion of several retrievers, and a reranker's scores interpolated with its
first stage's.

Reciprocal rank fusion (Cormack, Clarke & Büttcher, 2009) merges rankings from several retrievers.

Each document scores ``sum_r w_r / (k + rank_r(d))`` over the rankings ``r`` that contain it, where
``rank_r(d)`` is its 1-based rank in ``r``; rankings that lack it add nothing. Only ranks matter, so a BM25 run
and a dense run fuse without calibrating their scores.

Tie rule, the one trec_eval and :func:`retrievals_rag.retrieval.runs.rank_documents` use: equal scores
are ordered by document id, descending (Python ``str`` order). It applies both when a run's scores are turned
into ranks and to the fused output, so a fused run is ranked the same way when it is evaluated.

Example:
    >>> fuse_rankings([["a", "b", "c"], ["b", "c"]], k=60)[0]
    ('b', 0.03252247488101534)
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Mapping, Sequence

from retrievals_rag.retrieval.runs import rank_documents

__all__ = [
    "check_interpolation_weight",
    "fuse_rankings",
    "interpolate_runs",
    "interpolate_scores",
    "rank_scores",
    "reciprocal_rank_fusion",
    "standardise_scores",
]


def fuse_rankings(
    rankings: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse ordered lists of document ids for one query by reciprocal rank fusion.

    Args:
        rankings: Document ids, best first, one list per retriever; an id may appear once per list.
        k: The RRF constant (>= 0); 60 in the paper. Larger values flatten the weight of top ranks.
        weights: One weight (>= 0) per ranking; None weights all rankings 1.

    Returns:
        ``(doc_id, fused_score)`` for every document in any ranking, by score descending, ties by document id
        descending.

    Raises:
        ValueError: On a repeated id within a ranking, ``k < 0``, or weights of the wrong length or negative.

    Example:
        >>> fuse_rankings([["a", "b"], ["b"]], k=0, weights=[1.0, 2.0])
        [('b', 2.5), ('a', 1.0)]
    """
    if isinstance(rankings, str) or any(isinstance(ranking, str) for ranking in rankings):
        raise TypeError("rankings must be a sequence of sequences of document ids, not strings")
    _check_k(k)
    run_weights = _check_weights(weights, len(rankings))
    fused: dict[str, float] = {}
    for ranking_number, (ranking, weight) in enumerate(zip(rankings, run_weights, strict=True)):
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"ranking {ranking_number} lists a document id more than once")
        for rank, doc_id in enumerate(ranking, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + weight / (k + rank)
    return [(doc_id, fused[doc_id]) for doc_id in rank_documents(fused)]


def reciprocal_rank_fusion(
    runs: Sequence[Mapping[str, Mapping[str, float]]],
    *,
    k: int = 60,
    weights: Sequence[float] | None = None,
    top_k: int | None = None,
) -> dict[str, dict[str, float]]:
    """Fuse runs (query id -> document id -> score) by reciprocal rank fusion.

    Within each run, a query's documents are ranked by score, descending, ties by document id descending
    (trec_eval's order); the ranks are then fused by :func:`fuse_rankings`.

    Args:
        runs: The runs to fuse, e.g. from ``BM25Retriever.to_run`` and ``DenseIndex.to_run``.
        k: The RRF constant (>= 0); 60 in the paper.
        weights: One weight (>= 0) per run; None weights all runs 1.
        top_k: Keep only the best ``top_k`` documents per query (>= 1); None keeps all.

    Returns:
        A run with every query that appears in any run (a query absent from a run gets nothing from it),
        documents inserted best first.

    Raises:
        ValueError: On weights of the wrong length or negative, ``k < 0``, ``top_k < 1`` or NaN scores.

    Example:
        >>> bm25_run = {"q1": {"d1": 12.0, "d2": 9.5}}
        >>> dense_run = {"q1": {"d2": 0.8, "d3": 0.7}}
        >>> fused = reciprocal_rank_fusion([bm25_run, dense_run], k=60)
        >>> list(fused["q1"])
        ['d2', 'd1', 'd3']
    """
    _check_k(k)
    run_weights = _check_weights(weights, len(runs))
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    query_ids: dict[str, None] = {}  # ordered set: queries in order of first appearance
    for run in runs:
        query_ids.update(dict.fromkeys(run))
    fused_run: dict[str, dict[str, float]] = {}
    for query_id in query_ids:
        rankings: list[list[str]] = []
        for run_number, run in enumerate(runs):
            scores = run.get(query_id, {})
            if any(math.isnan(score) for score in scores.values()):
                raise ValueError(f"run {run_number} has a NaN score for query {query_id!r}")
            rankings.append(rank_documents(scores))
        fused = fuse_rankings(rankings, k=k, weights=run_weights)
        fused_run[query_id] = dict(fused if top_k is None else fused[:top_k])
    return fused_run


def interpolate_runs(
    first_stage: Mapping[str, Mapping[str, float]],
    reranked: Mapping[str, Mapping[str, float]],
    weight: float,
) -> dict[str, dict[str, float]]:
    """A reranker's scores interpolated with its first stage's, per query: ``weight * z(rerank) + (1 - weight) *
    z(first stage)``, each standardised over the query's reranked candidates (mean 0, standard deviation 1), so
    that a cosine similarity and a logit add up without calibration.

    A reranker that knows less than the first stage about some queries (little training, another domain) then
    corrects the first stage's order instead of replacing it: ``weight`` 1 is the reranker alone, 0 the first
    stage alone.

    Args:
        first_stage: the first stage's run (query id -> document id -> score); it must score every reranked
            document.
        reranked: the reranker's scores of the first stage's candidates.
        weight: the reranker's share, in [0, 1].

    Returns:
        A run over the reranked queries and documents, documents inserted best first.

    Raises:
        ValueError: a weight outside [0, 1], a NaN score, or a reranked document the first stage did not score.

    Example:
        >>> first = {"q": {"a": 0.9, "b": 0.8, "c": 0.1}}
        >>> rerank = {"q": {"a": -1.0, "b": 3.0, "c": 2.9}}
        >>> list(interpolate_runs(first, rerank, 0.5)["q"])
        ['b', 'a', 'c']
    """
    check_interpolation_weight(weight)
    interpolated: dict[str, dict[str, float]] = {}
    for query_id, scores in reranked.items():
        if not scores:
            interpolated[query_id] = {}
            continue
        own = first_stage.get(query_id, {})
        missing = [document for document in scores if document not in own]
        if missing:
            raise ValueError(
                f"query {query_id!r}: {len(missing)} reranked documents have no first-stage score "
                f"(e.g. {missing[0]!r})"
            )
        documents = list(scores)
        try:
            values = interpolate_scores([own[d] for d in documents], [scores[d] for d in documents], weight)
        except ValueError as error:
            raise ValueError(f"query {query_id!r}: {error}") from None
        mixed = dict(zip(documents, values, strict=True))
        interpolated[query_id] = {document: mixed[document] for document in rank_documents(mixed)}
    return interpolated


def interpolate_scores(first_stage: Sequence[float], reranked: Sequence[float], weight: float) -> list[float]:
    """One query's candidates: ``weight * z(reranked) + (1 - weight) * z(first_stage)``, each list standardised
    (:func:`standardise_scores`); the scores :func:`interpolate_runs` and
    :class:`~retrievals_rag.retrieval.hybrid.HybridSearch`'s ``rerank_weight`` order by.

    Raises:
        ValueError: a weight outside [0, 1], lists of different lengths, or a NaN score.

    Example:
        >>> [round(score, 3) for score in interpolate_scores([0.9, 0.8, 0.1], [-1.0, 3.0, 2.9], 0.5)]
        [-0.285, 0.648, -0.362]
    """
    check_interpolation_weight(weight)
    if len(first_stage) != len(reranked):
        raise ValueError(f"{len(reranked)} reranked scores for {len(first_stage)} first-stage scores")
    _check_no_nan("a reranked score", reranked)
    _check_no_nan("a first-stage score", first_stage)
    return [
        weight * rerank + (1.0 - weight) * first
        for rerank, first in zip(standardise_scores(reranked), standardise_scores(first_stage), strict=True)
    ]


def rank_scores(
    scores: Sequence[float],
    *,
    top_n: int | None,
    score_threshold: float | None,
    order_by: Sequence[float] | None = None,
) -> list[tuple[int, float]]:
    """``(index, key)`` of the best ``top_n`` items whose score is at or above ``score_threshold``, best first.

    ``scores`` are a reranker's. The key that orders is the score, or ``order_by`` when given (e.g. the rerank
    score mixed with the retrieval score); the threshold always applies to ``scores``. Ties keep the input order;
    ``top_n`` None (or above the number of scores) keeps them all.

    Raises:
        ValueError: On a NaN score or key (it has no place in an order), or keys and scores of different lengths.

    Example:
        >>> rank_scores([0.2, 0.9, 0.5, 0.9], top_n=3, score_threshold=0.3)
        [(1, 0.9), (3, 0.9), (2, 0.5)]
        >>> rank_scores([0.2, 0.9, 0.5], top_n=None, score_threshold=0.3, order_by=[3.0, 1.0, 2.0])
        [(2, 2.0), (1, 1.0)]
    """
    keys = scores if order_by is None else order_by
    if len(keys) != len(scores):
        raise ValueError(f"{len(keys)} ordering keys for {len(scores)} scores")
    _check_no_nan("a reranked score", scores)
    _check_no_nan("an ordering key", keys)
    order = sorted(range(len(scores)), key=lambda index: -keys[index])
    kept = [
        (index, float(keys[index]))
        for index in order
        if score_threshold is None or scores[index] >= score_threshold
    ]
    return kept if top_n is None else kept[:top_n]


def check_interpolation_weight(weight: float) -> None:
    """Raise ``ValueError`` unless ``weight`` (a reranker's share) is a number in [0, 1]."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be a number in [0, 1], got {weight!r}")


def standardise_scores(values: Sequence[float]) -> list[float]:
    """One query's scores shifted and scaled to mean 0 and standard deviation 1 (all-equal scores: centred only),
    so that scores of different models add up without calibration.

    Example:
        >>> standardise_scores([1.0, 3.0])
        [-1.0, 1.0]
    """
    mean = statistics.fmean(values)
    spread = statistics.pstdev(values) or 1.0  # one candidate, or all alike: centred only
    return [(value - mean) / spread for value in values]


def _check_no_nan(what: str, values: Sequence[float]) -> None:
    if any(math.isnan(value) for value in values):
        raise ValueError(f"{what} is NaN")


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | float) or not k >= 0:
        raise ValueError(f"k must be a number >= 0, got {k!r}")


def _check_weights(weights: Sequence[float] | None, n_rankings: int) -> list[float]:
    if weights is None:
        return [1.0] * n_rankings
    weights = [float(weight) for weight in weights]
    if len(weights) != n_rankings:
        raise ValueError(f"got {len(weights)} weights for {n_rankings} runs; give one weight per run")
    if any(not (math.isfinite(weight) and weight >= 0) for weight in weights):
        raise ValueError(f"weights must be finite and >= 0, got {weights}")
    return weights
