"""The verdict of a training run: the starting model and the trained one, judged on the same data, side by side.

Judged on a BEIR folder given with ``--eval_data`` (rerankers: reordering its first stage's top-k), or, without
one, on a slice of the training queries held out of training (:func:`split_holdout`).

What the held-out slice measures. Each held-out query keeps its training record's positives (relevant) and hard
negatives (not relevant); no record of those queries is trained on.

- An embedder retrieves, for each held-out query, from every document of the slice: its own positives and hard
  negatives and those of every other held-out query. That is retrieval from a small corpus made hard by the
  mined negatives: it tells whether fine-tuning made ranking better or worse on queries like the training ones,
  not what the model would score on a full corpus (there are fewer distractors, so figures run higher).
- A reranker reorders, for each held-out query, its own positives and hard negatives: the candidates a first
  stage gave it when the negatives were mined from a first stage's ranking. Its Recall@100 is 1 by
  construction (all candidates are there); nDCG@10 and MRR@10 carry the verdict.

Either way the figures compare the start with the end on identical data, which is what the verdict is for.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["HOLDOUT_MIN_QUERIES", "Holdout", "Verdict", "split_holdout"]

VERDICT_METRICS = ("nDCG@10", "MRR@10", "Recall@100")
HOLDOUT_MIN_QUERIES = 50  # the default holdout applies to training data with at least this many queries
DEFAULT_HOLDOUT_FRACTION = 0.1
MAX_HOLDOUT_QUERIES = 500  # enough for a verdict, cheap to evaluate twice


@dataclass
class Holdout:
    """Held-out training queries as a small judged collection (ids ``h0``, ``h1``... and ``d0``, ``d1``...).

    Attributes:
        queries: query id -> text.
        corpus: document id -> text: the positives and hard negatives of every held-out query.
        qrels: query id -> its positives' ids -> 1.
        candidates: query id -> its own positives and negatives (score 0): what a reranker reorders.
    """

    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, dict[str, int]]
    candidates: dict[str, dict[str, float]]

    def describe(self) -> str:
        return f"{len(self.queries)} held-out training queries ({len(self.corpus)} documents)"

    def evaluator(self, reranker: bool) -> Any:
        """A retrieval evaluator over the slice (embedders), or a reranking one over each query's group."""
        if reranker:
            from retrievals_rag.evaluation.reranking import RerankingEvaluator

            return RerankingEvaluator(self.corpus, self.queries, self.qrels, self.candidates)
        from retrievals_rag.evaluation.evaluator import RetrievalEvaluator

        return RetrievalEvaluator(self.corpus, self.queries, self.qrels)


def split_holdout(dataset: Any, fraction: float | None, seed: int) -> tuple[Any, Holdout | None]:
    """Hold out a share of a :class:`~retrievals_rag.data.datasets.RetrievalTrainDataset`'s queries.

    Args:
        dataset: the training dataset (grouped records; scored pairs are not held out).
        fraction: the share of distinct queries held out; None: 0.1 when there are at least
            :data:`HOLDOUT_MIN_QUERIES` queries, else none; 0: none.
        seed: which queries are drawn.

    Returns:
        The dataset to train on (a copy without the held-out queries' records; ``dataset`` itself when nothing
        is held out) and the :class:`Holdout`, or None.
    """
    records = getattr(dataset, "records", None)
    if not records or getattr(dataset, "format", None) != "group" or fraction == 0:
        return dataset, None
    queries = list(dict.fromkeys(record.query for record in records))
    if fraction is None:
        if len(queries) < HOLDOUT_MIN_QUERIES:
            return dataset, None
        fraction = DEFAULT_HOLDOUT_FRACTION
    count = min(MAX_HOLDOUT_QUERIES, max(1, round(len(queries) * fraction)))
    if count >= len(queries):
        raise ValueError(f"holdout_fraction {fraction} would hold out all {len(queries)} training queries")
    rng = np.random.default_rng(seed)
    held = {queries[int(index)] for index in sorted(rng.choice(len(queries), size=count, replace=False))}
    train = copy.copy(dataset)
    train.records = [record for record in records if record.query not in held]
    document_ids: dict[str, str] = {}
    holdout = Holdout({}, {}, {}, {})
    query_ids: dict[str, str] = {}
    for record in records:
        if record.query not in held:
            continue
        query_id = query_ids.setdefault(record.query, f"h{len(query_ids)}")
        holdout.queries[query_id] = record.query
        for text in (*record.positives, *record.negatives):
            document_id = document_ids.setdefault(text, f"d{len(document_ids)}")
            holdout.corpus[document_id] = text
            holdout.candidates.setdefault(query_id, {})[document_id] = 0.0
        for text in record.positives:
            holdout.qrels.setdefault(query_id, {})[document_ids[text]] = 1
    logger.info("held out %s from training", holdout.describe())
    return train, holdout


@dataclass
class Verdict:
    """The start and the end of a run on the same data, and, for rerankers, the first stage alone.

    Attributes:
        data: what was evaluated (a BEIR folder and split, or the held-out slice).
        before: the starting model's metrics.
        after: the trained model's metrics.
        first_stage: the first stage's own metrics (rerankers evaluated on a BEIR folder), else None.
    """

    data: str
    before: dict[str, float]
    after: dict[str, float]
    first_stage: dict[str, float] | None = None
    metrics: tuple[str, ...] = field(default=VERDICT_METRICS)

    @property
    def change(self) -> dict[str, float]:
        return {name: self.after[name] - self.before[name] for name in self._shown()}

    @property
    def worse(self) -> bool:
        """The trained model ranks worse than the one it started from (by nDCG@10)."""
        return self.after["nDCG@10"] < self.before["nDCG@10"] - 1e-9

    @property
    def below_first_stage(self) -> bool:
        return self.first_stage is not None and self.after["nDCG@10"] < self.first_stage["nDCG@10"] - 1e-9

    def _shown(self) -> list[str]:
        return [name for name in self.metrics if name in self.before and name in self.after]

    def table(self) -> str:
        """The figures side by side: ``metric  start  trained  change  [first stage]``."""
        header = f"{'':<11}{'start':>9}{'trained':>9}{'change':>9}"
        if self.first_stage is not None:
            header += f"{'first stage':>13}"
        lines = [f"verdict on {self.data}:", header]
        for name in self._shown():
            line = f"{name:<11}{self.before[name]:>9.4f}{self.after[name]:>9.4f}{self.change[name]:>+9.4f}"
            if self.first_stage is not None and name in self.first_stage:
                line += f"{self.first_stage[name]:>13.4f}"
            lines.append(line)
        return "\n".join(lines)

    def warnings(self, output_dir: str) -> list[str]:
        """Plain sentences for what went wrong (none when the run helped)."""
        found = []
        if self.worse:
            found.append(
                f"Warning: the trained model ranks worse than the model it started from on {self.data} "
                f"(nDCG@10 {self.before['nDCG@10']:.4f} -> {self.after['nDCG@10']:.4f}), yet it was saved to "
                f"{output_dir}: lower the learning rate, check the training data, or keep the starting model."
            )
        if self.below_first_stage and self.first_stage is not None:
            found.append(
                f"Warning: reranking with the trained model is worse than the first stage alone on {self.data} "
                f"(nDCG@10 {self.after['nDCG@10']:.4f} vs {self.first_stage['nDCG@10']:.4f}): serve the first "
                "stage without this reranker."
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["metrics"] = list(self.metrics)
        payload["change"] = self.change
        payload["worse_than_start"] = self.worse
        return payload


def strip_prefix(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    """``{"eval_nDCG@10": x}`` -> ``{"nDCG@10": x}`` (finite values only)."""
    return {
        name[len(prefix) + 1 :]: float(value)
        for name, value in metrics.items()
        if name.startswith(f"{prefix}_") and isinstance(value, int | float) and math.isfinite(value)
    }
