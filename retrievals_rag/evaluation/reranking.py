"""Reranking evaluation: a reranker reorders a first stage's top-k of each query, and the reordered lists are scored.

The first stage is a run (query id -> document id -> score): read from a file (a pytrec-style ``.json`` or a
TREC run), or computed here by dense retrieval with an embedder (the packaged MiniLM by default). The reranker is
used through its public ``compute_score``, so every kind works: cross-encoders, LLM rankers and ColBERT.

What the figures mean: nDCG@10 and MRR@10 measure the reranker's order of the first stage's candidates; the
Recall@k for ``k >= top_k`` is the first stage's, since a reranker only reorders (it cannot find what the first
stage missed). :meth:`RerankingEvaluator.first_stage_metrics` gives the first stage's own figures, the bar a
reranker must clear.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrievals_rag.evaluation.beir import Document, document_text, load_beir
from retrievals_rag.evaluation.evaluator import EvaluationResult, RetrievalEvaluator
from retrievals_rag.evaluation.metrics import evaluate_run
from retrievals_rag.retrieval.runs import PairScorer, QueryCorpusEncoder, Run, rank_documents

logger = logging.getLogger(__name__)

__all__ = ["PairScorer", "RerankingEvaluator", "read_run", "write_run"]


def read_run(path: str | os.PathLike[str]) -> Run:
    """A run from a file: ``.json`` ``{query_id: {document_id: score}}``, else TREC lines
    ``query_id Q0 document_id rank score tag``.

    Raises:
        ValueError: a malformed file, naming it and the line.
    """
    file = Path(path)
    text = file.read_text(encoding="utf-8-sig")
    run: Run = {}
    if file.suffix == ".json":
        try:
            loaded = json.loads(text)
            run = {
                str(query): {str(document): float(score) for document, score in hits.items()}
                for query, hits in loaded.items()
            }
        except (ValueError, AttributeError, TypeError) as error:
            raise ValueError(
                f"{file}: not a run (expected {{query_id: {{document_id: score}}}}): {error}"
            ) from None
        return run
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            query, _, document, _, score = fields[:5]
            run.setdefault(query, {})[document] = float(score)
        except ValueError:
            raise ValueError(
                f"{file}, line {number}: expected 'query_id Q0 document_id rank score tag', got {line!r}"
            ) from None
    return run


def write_run(path: str | os.PathLike[str], run: Run, tag: str = "retrievals_rag") -> None:
    """Write ``run`` where :func:`read_run` reads it back: ``.json`` ``{query_id: {document_id: score}}``, else
    TREC lines ``query_id Q0 document_id rank score tag`` (best first per query). Parent folders are made.

    Raises:
        ValueError: a TREC run with an id or ``tag`` holding white space (the line could not be read back).
    """
    file = Path(path)
    if file.suffix == ".json":
        plain = {
            str(query): {str(doc): float(score) for doc, score in hits.items()} for query, hits in run.items()
        }
        text = json.dumps(plain) + "\n"
    else:
        if not tag or any(character.isspace() for character in tag):
            raise ValueError(f"{file}: a TREC run's tag must be one word, got {tag!r}")
        lines = []
        for query, hits in run.items():
            for rank, (document, score) in enumerate(
                sorted(hits.items(), key=lambda hit: -float(hit[1])), start=1
            ):
                if not str(query) or not str(document) or any(c.isspace() for c in f"{query}{document}"):
                    raise ValueError(
                        f"{file}: query {query!r} / document {document!r}: a TREC run's ids cannot hold white space "
                        "(write a .json run instead)"
                    )
                lines.append(f"{query} Q0 {document} {rank} {float(score)!r} {tag}\n")
        text = "".join(lines)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")


@dataclass
class _Candidates:
    """The pairs to score: for each query its first-stage top-k, in first-stage order."""

    owners: list[tuple[str, str]]  # (query id, document id) per pair
    pairs: list[tuple[str, str]]  # (query text, document text) per pair


class RerankingEvaluator:
    """Rerank each judged query's first-stage top-k and compute nDCG, MRR, recall... of the reranked lists.

    Args:
        corpus: document id -> :class:`Document` or text (documents are scored as ``title + " " + text``).
        queries: query id -> text; only queries with judgements are evaluated.
        qrels: query id -> document id -> graded relevance.
        first_stage: the first stage's run; each query's ``top_k`` best are reranked.
        top_k: candidates per query.
        k_values: cutoffs for every metric.
        batch_size, token_budget, show_progress_bar: passed to the reranker's ``compute_score``.

    Raises:
        ValueError: no judged query, or a first-stage document missing from the corpus.

    Example:
        >>> evaluator = RerankingEvaluator.from_beir("tests/data/scifact_subset", first_stage="dense.json")  # doctest: +SKIP
        >>> print(evaluator.evaluate(cross_encoder).table())  # doctest: +SKIP
    """

    def __init__(
        self,
        corpus: Mapping[str, Document | str],
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        first_stage: Mapping[str, Mapping[str, float]],
        *,
        top_k: int = 100,
        k_values: Sequence[int] = (1, 3, 5, 10, 100),
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.query_ids = [query_id for query_id in queries if query_id in qrels]
        if not self.query_ids:
            raise ValueError("no query has relevance judgements: nothing to evaluate")
        self.qrels = {query_id: dict(qrels[query_id]) for query_id in self.query_ids}
        self.top_k = top_k
        self.k_values = tuple(k_values)
        self.first_stage: Run = {
            query_id: {
                document_id: float(first_stage[query_id][document_id])
                for document_id in rank_documents(first_stage[query_id])[:top_k]
            }
            for query_id in self.query_ids
            if query_id in first_stage
        }
        missing = [query_id for query_id in self.query_ids if query_id not in self.first_stage]
        if missing:
            logger.warning("%d judged queries have no first-stage results (they count as 0)", len(missing))
        owners = [
            (query_id, document_id) for query_id, hits in self.first_stage.items() for document_id in hits
        ]
        unknown = sorted({document_id for _, document_id in owners if document_id not in corpus})
        if unknown:
            raise ValueError(
                f"{len(unknown)} first-stage documents are not in the corpus, e.g. {unknown[:3]}"
            )
        texts = {
            document_id: document_text(document) if isinstance(document, Document) else document
            for document_id, document in corpus.items()
        }
        self._candidates = _Candidates(
            owners, [(queries[query_id], texts[document_id]) for query_id, document_id in owners]
        )
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.show_progress_bar = show_progress_bar

    @classmethod
    def from_beir(
        cls,
        data_dir: str | os.PathLike[str],
        split: str = "test",
        first_stage: Mapping[str, Mapping[str, float]]
        | str
        | os.PathLike[str]
        | QueryCorpusEncoder
        | None = None,
        *,
        top_k: int = 100,
        k_values: Sequence[int] = (1, 3, 5, 10, 100),
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> RerankingEvaluator:
        """An evaluator over a BEIR folder, reranking ``first_stage``'s top-k.

        Args:
            data_dir: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/SPLIT.tsv``.
            split: the qrels split.
            first_stage: a run; a run file (``.json`` or TREC); an embedder folder, or an embedder, whose dense
                top-k is computed here; None: the packaged all-MiniLM-L6-v2's dense top-k.
            top_k, k_values, batch_size, token_budget, show_progress_bar: as for the constructor.
        """
        dataset = load_beir(data_dir, split)
        run = _first_stage_run(first_stage, dataset.corpus, dataset.queries, dataset.qrels, top_k)
        return cls(
            dataset.corpus,
            dataset.queries,
            dataset.qrels,
            run,
            top_k=top_k,
            k_values=k_values,
            batch_size=batch_size,
            token_budget=token_budget,
            show_progress_bar=show_progress_bar,
        )

    def first_stage_metrics(self) -> dict[str, float]:
        """The first stage's own metrics over the same top-k: what reranking must beat."""
        return evaluate_run(self.qrels, self.first_stage, k_values=self.k_values)

    def rerank(self, model: PairScorer) -> tuple[Run, dict[str, float]]:
        """Score every (query, candidate) pair in one ``compute_score`` call; the run and the time it took."""
        start = time.perf_counter()
        scores = model.compute_score(
            self._candidates.pairs,
            batch_size=self.batch_size,
            token_budget=self.token_budget,
            show_progress_bar=self.show_progress_bar,
        )
        run: Run = {query_id: {} for query_id in self.first_stage}
        for (query_id, document_id), score in zip(self._candidates.owners, scores, strict=True):
            run[query_id][document_id] = float(score)
        return run, {"rerank": time.perf_counter() - start}

    def evaluate(self, model: PairScorer) -> EvaluationResult:
        """Rerank with ``model`` and compute nDCG, MAP, MRR, recall, precision and hit rate at each k."""
        run, timings = self.rerank(model)
        metrics = evaluate_run(self.qrels, run, k_values=self.k_values)
        return EvaluationResult(metrics=metrics, run=run, timings=timings)

    __call__ = evaluate


def _first_stage_run(
    first_stage: Mapping[str, Mapping[str, float]] | str | os.PathLike[str] | QueryCorpusEncoder | None,
    corpus: Mapping[str, Document | str],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    top_k: int,
) -> Run:
    """The first stage's run: given, read from a file, or retrieved with an embedder."""
    if isinstance(first_stage, Mapping):
        return {query: dict(hits) for query, hits in first_stage.items()}
    encoder = first_stage
    if first_stage is None or isinstance(first_stage, str | os.PathLike):
        if first_stage is not None and Path(first_stage).is_file():
            return read_run(first_stage)
        from retrievals_rag.models.embedding import AutoModelForEmbedding
        from retrievals_rag.models.loading import default_embedding_model_path

        encoder = AutoModelForEmbedding.from_pretrained(first_stage or default_embedding_model_path())
    retriever = RetrievalEvaluator(corpus, queries, qrels, k_values=(top_k,))
    run, _ = retriever.retrieve(encoder)  # type: ignore[arg-type]
    return run
