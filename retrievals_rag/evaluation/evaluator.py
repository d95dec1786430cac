"""Retrieval evaluation of an embedder: encode the queries and the corpus, retrieve, score the ranking."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrievals_rag.evaluation.beir import Document, document_text, load_beir
from retrievals_rag.evaluation.metrics import evaluate_run, format_metrics_table
from retrievals_rag.retrieval.runs import QueryCorpusEncoder, Run
from retrievals_rag.similarity import ScoreFunction

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """Metrics (``"nDCG@10"`` -> value), the run they were computed from, and timings in seconds."""

    metrics: dict[str, float]
    run: Run
    timings: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        return format_metrics_table(self.metrics)


class RetrievalEvaluator:
    """Dense-retrieval evaluation over a corpus, queries and graded relevance judgements.

    Args:
        corpus: document id -> :class:`Document` or text. Documents are encoded as ``title + " " + text``.
        queries: query id -> text; only queries with judgements are encoded.
        qrels: query id -> document id -> graded relevance.
        k_values: cutoffs for every metric; retrieval depth is the largest.
        score_function: ``"cos"`` or ``"dot"``.
        batch_size: most texts per encoding batch (the model's default if None).
        token_budget: most padded tokens per encoding batch (the model's default if None).
        show_progress_bar: passed to the model's encode; None shows bars for long inputs.
        ignore_identical_ids: drop a retrieved document whose id equals the query id (BEIR's option, for
            datasets whose queries are also in the corpus). Off by default.

    Example:
        >>> evaluator = RetrievalEvaluator.from_beir("tests/data/scifact_subset")  # doctest: +SKIP
        >>> print(evaluator.evaluate(model).table())  # doctest: +SKIP
    """

    def __init__(
        self,
        corpus: Mapping[str, Document | str],
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        k_values: Sequence[int] = (1, 3, 5, 10, 100),
        score_function: ScoreFunction = "cos",
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
        ignore_identical_ids: bool = False,
    ) -> None:
        if not corpus:
            raise ValueError("the corpus is empty: nothing to retrieve from")
        missing = [query_id for query_id in qrels if query_id not in queries]
        if missing:
            raise ValueError(f"{len(missing)} judged queries have no text, e.g. {missing[:3]}")
        self.document_ids = list(corpus)
        self.document_texts = [
            document_text(document) if isinstance(document, Document) else document
            for document in corpus.values()
        ]
        self.query_ids = [query_id for query_id in queries if query_id in qrels]
        if not self.query_ids:
            raise ValueError("no query has relevance judgements: nothing to evaluate")
        self.query_texts = [queries[query_id] for query_id in self.query_ids]
        self.qrels = qrels
        self.k_values = tuple(k_values)
        self.score_function = score_function
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.show_progress_bar = show_progress_bar
        self.ignore_identical_ids = ignore_identical_ids

    @classmethod
    def from_beir(
        cls,
        data_dir: str | Path,
        split: str = "test",
        *,
        k_values: Sequence[int] = (1, 3, 5, 10, 100),
        score_function: ScoreFunction = "cos",
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
        ignore_identical_ids: bool = False,
    ) -> RetrievalEvaluator:
        """An evaluator over a BEIR-format folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/SPLIT.tsv``)."""
        dataset = load_beir(data_dir, split)
        return cls(
            dataset.corpus,
            dataset.queries,
            dataset.qrels,
            k_values=k_values,
            score_function=score_function,
            batch_size=batch_size,
            token_budget=token_budget,
            show_progress_bar=show_progress_bar,
            ignore_identical_ids=ignore_identical_ids,
        )

    def retrieve(
        self, model: QueryCorpusEncoder, corpus_embeddings: Any | None = None
    ) -> tuple[Run, dict[str, float]]:
        """Encode, search exactly, and return the run (top ``max(k_values)`` per query) with timings.

        ``corpus_embeddings``: the corpus already encoded by this model, ``(n_documents, dim)`` in the order
        of :attr:`document_ids` (e.g. ``load_encoded_corpus("vecs/").aligned(evaluator.document_ids)``);
        None encodes it.
        """
        from retrievals_rag.retrieval.dense import dense_search

        options = {
            "batch_size": self.batch_size,
            "token_budget": self.token_budget,
            "show_progress_bar": self.show_progress_bar,
        }
        timings: dict[str, float] = {}
        start = time.perf_counter()
        if corpus_embeddings is None:
            corpus_embeddings = model.encode_corpus(self.document_texts, **options)
        elif len(corpus_embeddings) != len(self.document_ids):
            raise ValueError(
                f"corpus_embeddings has {len(corpus_embeddings)} rows, the corpus {len(self.document_ids)} documents"
            )
        timings["encode_corpus"] = time.perf_counter() - start
        start = time.perf_counter()
        query_embeddings = model.encode_queries(self.query_texts, **options)
        timings["encode_queries"] = time.perf_counter() - start
        start = time.perf_counter()
        depth = max(self.k_values) + (1 if self.ignore_identical_ids else 0)
        scores, indices = dense_search(
            query_embeddings, corpus_embeddings, depth, score_function=self.score_function
        )
        run: Run = {}
        for row, query_id in enumerate(self.query_ids):
            hits = {
                self.document_ids[index]: float(score)
                for score, index in zip(scores[row].tolist(), indices[row].tolist(), strict=True)
            }
            if self.ignore_identical_ids:
                hits.pop(query_id, None)
            run[query_id] = hits
        timings["search"] = time.perf_counter() - start
        logger.info("encoded %d documents and %d queries", len(self.document_ids), len(self.query_ids))
        return run, timings

    def evaluate(self, model: QueryCorpusEncoder, corpus_embeddings: Any | None = None) -> EvaluationResult:
        """Retrieve with ``model`` and compute nDCG, MAP, MRR, recall, precision and hit rate at each k
        (``corpus_embeddings`` as in :meth:`retrieve`)."""
        run, timings = self.retrieve(model, corpus_embeddings)
        metrics = evaluate_run(self.qrels, run, k_values=self.k_values)
        return EvaluationResult(metrics=metrics, run=run, timings=timings)

    __call__ = evaluate
