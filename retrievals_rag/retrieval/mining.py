"""Hard-negative mining with an embedder, and atomic JSONL output.

:func:`mine_hard_negatives` encodes a corpus and a set of queries, retrieves the top documents of each query
exactly (:func:`~retrievals_rag.retrieval.dense.dense_search`, cosine), and samples negatives from a band of
ranks below the top, never a positive. The band skips the very top on purpose: the best-ranked unjudged
documents are often relevant documents that the judges missed (false negatives).

Sampling is reproducible and per query: the random generator of a query is derived from ``seed`` and the
query id (:func:`sample_in_order`), so a query gets the same negatives whatever other queries are mined with
it and in whatever order.

Example::

    from retrievals_rag import AutoModelForEmbedding
    from retrievals_rag.data.jsonl import write_jsonl
    from retrievals_rag.retrieval.mining import mine_hard_negatives

    records = mine_hard_negatives(
        AutoModelForEmbedding.from_pretrained("path/to/model"),
        corpus_ids=["d1", "d2", ...],
        corpus_texts=["Aspirin It thins the blood.", ...],
        queries={"q1": "what thins the blood?"},
        positives={"q1": ["d1"]},
        rank_range=(10, 100),
        num_negatives=8,
    )
    write_jsonl(records, "triplets.jsonl")
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from retrievals_rag.data.jsonl import sample_in_order
from retrievals_rag.retrieval.runs import QueryCorpusEncoder

__all__ = ["QueryCorpusEncoder", "mine_hard_negatives"]

logger = logging.getLogger(__name__)

_SHOWN_IDS = 10  # ids quoted in an error message before "... and N more"


def _quote_ids(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(value) for value in ids[:_SHOWN_IDS])
    more = len(ids) - _SHOWN_IDS
    return f"{shown} ... and {more} more" if more > 0 else shown


def _check_arguments(
    corpus_ids: Sequence[str],
    corpus_texts: Sequence[str],
    rank_range: tuple[int, int],
    num_negatives: int,
) -> dict[str, int]:
    """Validate the arguments; return document id -> corpus position."""
    if len(rank_range) != 2 or not all(
        isinstance(value, int) and not isinstance(value, bool) for value in rank_range
    ):
        raise ValueError(f"rank_range must be two integers (start, end), got {rank_range!r}")
    start, end = rank_range
    if start < 0 or start >= end:
        raise ValueError(f"rank_range must satisfy 0 <= start < end, got ({start}, {end})")
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"num_negatives must be a positive integer, got {num_negatives!r}")
    if len(corpus_ids) != len(corpus_texts):
        raise ValueError(f"got {len(corpus_ids)} corpus ids but {len(corpus_texts)} corpus texts")
    position: dict[str, int] = {}
    duplicates: list[str] = []
    for index, document_id in enumerate(corpus_ids):
        if document_id in position:
            duplicates.append(document_id)
        else:
            position[document_id] = index
    if duplicates:
        raise ValueError(f"corpus_ids must be unique; repeated: {_quote_ids(duplicates)}")
    return position


def mine_hard_negatives(
    encoder: QueryCorpusEncoder,
    corpus_ids: Sequence[str],
    corpus_texts: Sequence[str],
    queries: Mapping[str, str],
    positives: Mapping[str, Collection[str]],
    *,
    rank_range: tuple[int, int] = (10, 100),
    num_negatives: int = 8,
    seed: int = 0,
    exclude_query_id: bool = True,
    batch_size: int | None = None,
    token_budget: int | None = None,
    show_progress_bar: bool | None = None,
    corpus_embeddings: Any | None = None,
) -> list[dict[str, Any]]:
    """Mine hard negatives for each query from a band of the encoder's own ranking.

    Each query (that has positives) is ranked against the whole corpus by cosine similarity; the candidates
    are the documents at 0-based ranks ``start <= rank < end`` (``rank_range = (10, 100)`` skips the best ten
    and stops at the hundredth), minus the query's positives, minus any document whose text equals a
    positive's text (a duplicate of a positive is not a negative), minus documents without text (neither
    positives nor negatives), and minus the document whose id is the query id when ``exclude_query_id`` is set (corpora where queries are documents too, e.g. ArguAna, Quora).
    Positives are removed *after* the band is cut, so a band of ``end - start`` ranks may hold fewer
    candidates. ``num_negatives`` of them are drawn without replacement with :func:`sample_in_order`
    (keyed by ``seed`` and the query id) and kept in rank order, best first; when fewer remain, all are kept.

    Queries are skipped, and the numbers logged at INFO level, in two cases: no positives (missing from
    ``positives``, an empty collection, or only documents without text), or no candidate left in the band (e.g. a corpus smaller than
    ``start``). Every returned record has at least one negative. Positives of queries that are not in
    ``queries`` are ignored, so a subset of the queries can be mined with the full judgments.

    Args:
        encoder: Anything with ``encode_queries`` and ``encode_corpus`` taking a list of texts and the
            keyword arguments ``batch_size``, ``token_budget`` and ``show_progress_bar`` and returning a
            ``(n, dim)`` array, e.g. :class:`~retrievals_rag.models.embedding.AutoModelForEmbedding`.
        corpus_ids: Unique document ids.
        corpus_texts: The text to encode for each id (for BEIR data, ``document_text``: title + " " + text).
        queries: Query id -> query text; records come out in this order.
        positives: Query id -> ids of its relevant documents (every id must be in ``corpus_ids``).
        rank_range: ``(start, end)``, 0-based, end excluded; ``0 <= start < end``.
        num_negatives: Negatives per query, at least 1.
        seed: Seed of the per-query draws.
        exclude_query_id: Never take the document whose id equals the query id.
        batch_size: Passed to the encoder.
        token_budget: Passed to the encoder.
        show_progress_bar: Passed to the encoder (None: its default).
        corpus_embeddings: The corpus already encoded by ``encoder``, ``(len(corpus_ids), dim)`` in the order
            of ``corpus_ids`` (e.g. ``load_encoded_corpus("vecs/").aligned(corpus_ids)``); None encodes it.

    Returns:
        One record per mined query: ``{"query": text, "positive": [texts], "negative": [texts],
        "query_id": id, "positive_ids": [ids], "negative_ids": [ids]}``, positives in corpus order. The first
        three keys are the training triplet format; the ids are extra keys that trainers ignore.

    Raises:
        ValueError: On a bad ``rank_range`` or ``num_negatives``, ids and texts of different lengths,
            repeated corpus ids, or positives naming ids that are not in the corpus (the message lists them).
    """
    import numpy as np

    from retrievals_rag.retrieval.dense import dense_search

    position = _check_arguments(corpus_ids, corpus_texts, rank_range, num_negatives)
    start, end = rank_range
    unknown = sorted(
        {
            document_id
            for query_id in queries
            for document_id in positives.get(query_id, ())
            if document_id not in position
        }
    )
    if unknown:
        raise ValueError(
            f"positives name {len(unknown)} document ids that the corpus lacks: {_quote_ids(unknown)}"
        )

    # Positives in corpus order: reproducible even when the caller passes sets. A document without text (a BEIR
    # corpus may hold one) is neither a positive nor a negative: there is nothing in it to learn from, and
    # training refuses an empty passage.
    query_positives = {
        query_id: sorted(
            {
                position[document_id]
                for document_id in positives.get(query_id, ())
                if corpus_texts[position[document_id]].strip()
            }
        )
        for query_id in queries
    }
    mined_ids = [query_id for query_id, rows in query_positives.items() if rows]
    skipped_no_positives = len(queries) - len(mined_ids)
    if not mined_ids or not corpus_ids:
        logger.info("mining: no query to mine (%d without positives)", skipped_no_positives)
        return []

    options: dict[str, Any] = {
        "batch_size": batch_size,
        "token_budget": token_budget,
        "show_progress_bar": show_progress_bar,
    }
    if corpus_embeddings is None:
        corpus_embeddings = encoder.encode_corpus(list(corpus_texts), **options)
    elif len(corpus_embeddings) != len(corpus_ids):
        raise ValueError(
            f"corpus_embeddings has {len(corpus_embeddings)} rows for {len(corpus_ids)} corpus ids"
        )
    corpus_embeddings = np.asarray(corpus_embeddings)
    query_embeddings = np.asarray(
        encoder.encode_queries([queries[query_id] for query_id in mined_ids], **options)
    )
    _, ranked = dense_search(query_embeddings, corpus_embeddings, top_k=end, score_function="cos")
    # (n_mined, min(end, n_corpus)): corpus rows, best first

    records: list[dict[str, Any]] = []
    skipped_no_candidates = 0
    for query_id, rows in zip(mined_ids, ranked.tolist(), strict=True):
        positive_rows = query_positives[query_id]
        excluded = set(positive_rows)
        positive_texts = {corpus_texts[row] for row in positive_rows}
        candidates = [
            row
            for row in rows[start:end]
            if row not in excluded
            and corpus_texts[row].strip()
            and corpus_texts[row] not in positive_texts
            and not (exclude_query_id and corpus_ids[row] == query_id)
        ]
        if not candidates:
            skipped_no_candidates += 1
            continue
        negative_rows = sample_in_order(candidates, num_negatives, seed=seed, key=query_id)
        records.append(
            {
                "query": queries[query_id],
                "positive": [corpus_texts[row] for row in positive_rows],
                "negative": [corpus_texts[row] for row in negative_rows],
                "query_id": query_id,
                "positive_ids": [corpus_ids[row] for row in positive_rows],
                "negative_ids": [corpus_ids[row] for row in negative_rows],
            }
        )
    logger.info(
        "mining: %d queries mined, %d skipped without positives, %d skipped without candidates in ranks [%d, %d)",
        len(records),
        skipped_no_positives,
        skipped_no_candidates,
        start,
        end,
    )
    return records
