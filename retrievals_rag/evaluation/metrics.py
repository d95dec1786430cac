"""Standard information-retrieval metrics over a run, following trec_eval (as used by BEIR's pytrec_eval).

A *run* maps each query id to the documents retrieved for it and their scores; *qrels* map each query id to
judged documents and their integer relevance grades. The conventions, all those of trec_eval:

- **Relevant** means grade > 0. Documents in the run that the qrels do not judge are non-relevant.
- **Ranking**: by score, descending; equal scores are ordered by document id in *descending* lexicographic
  order (trec_eval sorts with ``strcmp(b, a)`` on UTF-8 bytes, which matches Python's ``str`` order). This
  was checked against pytrec_eval: with qrels ``{"9": 1, "10": 0}`` and both scored 1.0, "9" ranks first.
- **nDCG@k** (trec_eval ``ndcg_cut_k``): linear gain (the grade; grades <= 0 give no gain), discount
  ``log2(rank + 1)``. The ideal DCG sorts *all* judged grades of the query, not the retrieved ones, cut at k.
- **MAP@k** (``map_cut_k``): the sum, over relevant documents in the top k, of the precision at their rank,
  divided by the number of relevant documents in the qrels.
- **MRR@k**: 1 / rank of the first relevant document in the top k, else 0 (``recip_rank`` on the top k).
- **Recall@k** (``recall_k``): relevant documents in the top k / relevant documents in the qrels.
- **P@k** (``P_k``): relevant documents in the top k / k, also when fewer than k documents were retrieved.
- **HitRate@k** (``success_k``): 1 when a relevant document is in the top k, else 0.

Queries evaluated: every query in the qrels with at least one relevant document. A query of that kind that is
absent from the run scores 0 on every metric (BEIR's pytrec_eval route drops it instead, which raises the
mean). Queries with no relevant document are skipped, as are run queries that the qrels do not mention.

Example:
    >>> qrels = {"q1": {"d1": 1, "d2": 0}}
    >>> run = {"q1": {"d2": 0.9, "d1": 0.5}}
    >>> evaluate_run(qrels, run, k_values=[1, 2], metrics=["mrr", "hit_rate"])
    {'MRR@1': 0.0, 'MRR@2': 0.5, 'HitRate@1': 0.0, 'HitRate@2': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import numpy as np

from retrievals_rag.retrieval.runs import rank_documents

__all__ = [
    "METRIC_NAMES",
    "MetricName",
    "evaluate_run",
    "evaluate_run_per_query",
    "format_metrics_table",
    "rank_documents",
]

MetricName = Literal["ndcg", "map", "mrr", "recall", "precision", "hit_rate"]
METRIC_NAMES: tuple[MetricName, ...] = get_args(MetricName)

# metric option -> prefix of the result keys ("nDCG@10")
_LABELS: dict[str, str] = {
    "ndcg": "nDCG",
    "map": "MAP",
    "mrr": "MRR",
    "recall": "Recall",
    "precision": "P",
    "hit_rate": "HitRate",
}


def _check_options(k_values: Sequence[int], metrics: Sequence[str]) -> tuple[list[int], list[str]]:
    if isinstance(k_values, int | str) or isinstance(metrics, str):
        raise TypeError("k_values and metrics must be sequences, e.g. k_values=[10], metrics=['ndcg']")
    if not k_values:
        raise ValueError("k_values is empty; give at least one cutoff, e.g. [10]")
    for k in k_values:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"every k must be a positive integer, got {k!r}")
    if not metrics:
        raise ValueError(f"metrics is empty; choose from {list(METRIC_NAMES)}")
    for metric in metrics:
        if metric not in _LABELS:
            raise ValueError(f"unknown metric {metric!r}; valid metrics are {list(METRIC_NAMES)}")
    return sorted({int(k) for k in k_values}), list(dict.fromkeys(metrics))


def _judged_grades(qrels: Mapping[str, Mapping[str, int]]) -> dict[str, Mapping[str, int]]:
    """Validate the qrels; return those of queries with at least one relevant document."""
    evaluated: dict[str, Mapping[str, int]] = {}
    for query_id, judgments in qrels.items():
        has_relevant = False
        for document_id, grade in judgments.items():
            if isinstance(grade, bool) or not isinstance(grade, int | np.integer):
                raise ValueError(
                    f"qrels[{query_id!r}][{document_id!r}] must be an integer grade, got {grade!r}"
                )
            has_relevant = has_relevant or grade > 0
        if has_relevant:
            evaluated[query_id] = judgments
    return evaluated


def evaluate_run_per_query(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    k_values: Sequence[int] = (1, 3, 5, 10, 100),
    metrics: Sequence[MetricName] = METRIC_NAMES,
) -> dict[str, dict[str, float]]:
    """Compute the metrics for each evaluated query (see the module docstring for the definitions).

    Args:
        qrels: Query id -> document id -> integer relevance grade (> 0 is relevant).
        run: Query id -> document id -> score (higher is better). NaN scores are rejected.
        k_values: Cutoffs, positive integers; duplicates are dropped and the keys come in ascending k.
        metrics: Metric families, in the order wanted in the result.

    Returns:
        Query id -> ``{"nDCG@10": ..., "MAP@10": ..., ...}``, for every query in ``qrels`` with at least one
        relevant document, in qrels order. Queries absent from ``run`` get 0 on every metric.

    Raises:
        ValueError: An unknown metric, a cutoff that is not a positive integer, a non-integer grade or a
            NaN score.
    """
    cutoffs, metric_names = _check_options(k_values, metrics)
    evaluated = _judged_grades(qrels)
    if not evaluated:
        return {}
    # Ranks past the longest ranking and the most relevant documents of a query change no metric: the arrays stop
    # there, so a cutoff far beyond the corpus (--k 100000000) costs nothing.
    longest = max(
        max((len(run.get(query_id) or ()) for query_id in evaluated), default=0),
        max(sum(1 for grade in judgments.values() if grade > 0) for judgments in evaluated.values()),
    )
    depth = max(1, min(cutoffs[-1], longest))
    query_count = len(evaluated)

    # Relevance grade of the document at each rank, and the ideal (sorted) grades: (queries, depth).
    retrieved = np.zeros((query_count, depth))
    ideal = np.zeros((query_count, depth))
    relevant_counts = np.zeros(query_count)
    for row, (query_id, judgments) in enumerate(evaluated.items()):
        positive = sorted((grade for grade in judgments.values() if grade > 0), reverse=True)
        relevant_counts[row] = len(positive)
        ideal[row, : min(depth, len(positive))] = positive[:depth]
        scores = run.get(query_id)
        if not scores:
            continue
        if any(math.isnan(score) for score in scores.values()):
            raise ValueError(f"run[{query_id!r}] holds a NaN score")
        ranking = rank_documents(scores)[:depth]
        retrieved[row, : len(ranking)] = [judgments.get(document_id, 0) for document_id in ranking]

    gains = np.maximum(retrieved, 0.0)  # (queries, depth)
    is_relevant = (retrieved > 0).astype(float)  # (queries, depth)
    ranks = np.arange(1, depth + 1, dtype=float)  # (depth,)
    discounts = 1.0 / np.log2(ranks + 1.0)
    hits = np.cumsum(is_relevant, axis=1)  # relevant documents in the top r: (queries, depth)
    columns: dict[str, np.ndarray] = {}  # "nDCG@10" -> (queries,)
    if "ndcg" in metric_names:
        dcg = np.cumsum(gains * discounts, axis=1)
        ideal_dcg = np.cumsum(ideal * discounts, axis=1)  # > 0: every evaluated query has a relevant doc
        for k in cutoffs:
            columns[f"nDCG@{k}"] = dcg[:, min(k, depth) - 1] / ideal_dcg[:, min(k, depth) - 1]
    if "map" in metric_names:
        precision_sums = np.cumsum(is_relevant * hits / ranks, axis=1)
        for k in cutoffs:
            columns[f"MAP@{k}"] = precision_sums[:, min(k, depth) - 1] / relevant_counts
    if "mrr" in metric_names:
        # no relevant document retrieved: a first rank past every cutoff
        missing = cutoffs[-1] + 1
        first_rank = np.where(hits[:, -1] > 0, np.argmax(is_relevant, axis=1) + 1, missing)  # (queries,)
        for k in cutoffs:
            columns[f"MRR@{k}"] = np.where(first_rank <= k, 1.0 / first_rank, 0.0)
    if "recall" in metric_names:
        for k in cutoffs:
            columns[f"Recall@{k}"] = hits[:, min(k, depth) - 1] / relevant_counts
    if "precision" in metric_names:
        for k in cutoffs:
            columns[f"P@{k}"] = hits[:, min(k, depth) - 1] / k
    if "hit_rate" in metric_names:
        for k in cutoffs:
            columns[f"HitRate@{k}"] = (hits[:, min(k, depth) - 1] > 0).astype(float)

    keys = [f"{_LABELS[metric]}@{k}" for metric in metric_names for k in cutoffs]
    values = np.stack([columns[key] for key in keys], axis=1).tolist()  # (queries, metrics)
    return {
        query_id: dict(zip(keys, row, strict=True)) for query_id, row in zip(evaluated, values, strict=True)
    }


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    k_values: Sequence[int] = (1, 3, 5, 10, 100),
    metrics: Sequence[MetricName] = METRIC_NAMES,
) -> dict[str, float]:
    """Compute the metrics averaged over the evaluated queries (see the module docstring).

    Args:
        qrels: Query id -> document id -> integer relevance grade (> 0 is relevant).
        run: Query id -> document id -> score (higher is better).
        k_values: Cutoffs, positive integers.
        metrics: Metric families, in the order wanted in the result.

    Returns:
        ``{"nDCG@10": ..., "MAP@10": ..., "MRR@10": ..., "Recall@10": ..., "P@10": ..., "HitRate@10": ...}``,
        the mean over every query in ``qrels`` that has a relevant document (queries missing from ``run``
        count as 0).

    Raises:
        ValueError: As :func:`evaluate_run_per_query`, or no query in ``qrels`` has a relevant document.
    """
    per_query = evaluate_run_per_query(qrels, run, k_values=k_values, metrics=metrics)
    if not per_query:
        raise ValueError("no query in qrels has a relevant document (grade > 0); nothing to evaluate")
    keys = next(iter(per_query.values())).keys()
    return {key: math.fsum(values[key] for values in per_query.values()) / len(per_query) for key in keys}


def format_metrics_table(results: Mapping[str, float]) -> str:
    """Render ``evaluate_run`` output as a text table: one row per metric family, one column per k.

    Args:
        results: Keys of the form ``"<name>@<k>"`` such as ``"nDCG@10"``.

    Returns:
        The table, values to 4 decimals; a family without a value at some k shows ``-`` there.

    Raises:
        ValueError: A key is not of the form ``"<name>@<k>"``.

    Example:
        >>> print(format_metrics_table({"nDCG@1": 0.5, "nDCG@10": 0.625, "P@1": 0.5}))
                    @1     @10
        nDCG    0.5000  0.6250
        P       0.5000       -
    """
    table: dict[str, dict[int, float]] = {}
    for key, value in results.items():
        name, separator, k_text = key.rpartition("@")
        if not separator or not name or not k_text.isdigit():
            raise ValueError(f"metric key {key!r} is not of the form '<name>@<k>', e.g. 'nDCG@10'")
        table.setdefault(name, {})[int(k_text)] = value
    cutoffs = sorted({k for row in table.values() for k in row})
    name_width = max([len(name) for name in table] + [6])
    cell_width = max([len(f"@{k}") for k in cutoffs] + [6])
    header = " " * name_width + "".join(f"  {f'@{k}':>{cell_width}}" for k in cutoffs)
    lines = [header]
    for name, row in table.items():
        cells = "".join(
            f"  {row[k]:>{cell_width}.4f}" if k in row else f"  {'-':>{cell_width}}" for k in cutoffs
        )
        lines.append(f"{name:<{name_width}}{cells}")
    return "\n".join(lines)
