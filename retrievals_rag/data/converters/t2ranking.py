"""T2Ranking (Xie et al., SIGIR 2023) to our training records."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from retrievals_rag.data.converters._files import (
    ConversionStats,
    PathLike,
    _lines,
    _read_texts,
    _require_file,
)
from retrievals_rag.data.jsonl import sample_in_order, write_jsonl
from retrievals_rag.data.records import DataFormatError

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------- T2Ranking


def _check_sampling(num_negatives: int, rank_range: tuple[int, int]) -> None:
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"num_negatives must be a positive integer, got {num_negatives!r}")
    if len(rank_range) != 2 or not all(
        isinstance(value, int) and not isinstance(value, bool) for value in rank_range
    ):
        raise ValueError(f"rank_range must be two integers (start, end), got {rank_range!r}")
    if not 0 <= rank_range[0] < rank_range[1]:
        raise ValueError(f"rank_range must satisfy 0 <= start < end, got {tuple(rank_range)}")


def _read_t2ranking_qrels(path: Path) -> tuple[dict[str, list[str]], dict[str, int], dict[str, int]]:
    """Query id -> its positive pids (file order, repeats dropped); first line of each qid and of each pid."""
    positives: dict[str, list[str]] = {}
    query_lines: dict[str, int] = {}
    passage_lines: dict[str, int] = {}
    for number, line in _lines(path):
        columns = line.split()
        if len(columns) != 2:
            hint = (
                " (this looks like graded TREC qrels, qid 0 pid grade; use qrels.retrieval.train.tsv)"
                if len(columns) == 4
                else ""
            )
            raise DataFormatError(
                str(path), number, None, f"expected 2 columns (qid, pid), got {len(columns)}{hint}"
            )
        query_id, passage_id = columns
        query_lines.setdefault(query_id, number)
        passage_lines.setdefault(passage_id, number)
        pids = positives.setdefault(query_id, [])
        if passage_id not in pids:
            pids.append(passage_id)
    if not positives:
        raise DataFormatError(str(path), None, None, "the file holds no (qid, pid) rows")
    return positives, query_lines, passage_lines


def _select_t2ranking_negatives(
    path: Path,
    positives: Mapping[str, list[str]],
    rank_range: tuple[int, int],
    num_negatives: int,
    seed: int,
) -> dict[str, list[tuple[str, int]]]:
    """Query id -> its sampled negatives as (pid, line), read in one pass over a ranked negatives file.

    The rank of a row is its position among the rows of its query, in file order, from 0. Only ranks
    ``start <= rank < end`` are candidates; positives and repeated pids are dropped after the cut. A query's
    draw is made as soon as its ``end``-th row is read, so memory holds one rank band per unfinished query.
    """
    start, end = rank_range
    positive_sets = {query_id: set(pids) for query_id, pids in positives.items()}
    rows_seen: dict[str, int] = {}
    open_candidates: dict[str, list[tuple[str, int]]] = {}
    open_pids: dict[str, set[str]] = {}
    selected: dict[str, list[tuple[str, int]]] = {}

    def draw(query_id: str) -> None:
        candidates = open_candidates.pop(query_id, [])
        open_pids.pop(query_id, None)
        if candidates:
            selected[query_id] = sample_in_order(candidates, num_negatives, seed=seed, key=query_id)

    for number, line in _lines(path):
        columns = line.split(None, 2)
        if len(columns) < 2:
            raise DataFormatError(
                str(path), number, None, "expected at least 2 columns (qid, pid[, rank[, score]]), got 1"
            )
        query_id, passage_id = columns[0], columns[1]
        excluded = positive_sets.get(query_id)
        if excluded is None:
            continue  # not a query of the qrels
        rank = rows_seen.get(query_id, 0)
        if rank >= end:
            continue
        rows_seen[query_id] = rank + 1
        if rank >= start and passage_id not in excluded:
            pids = open_pids.setdefault(query_id, set())
            if passage_id not in pids:
                pids.add(passage_id)
                open_candidates.setdefault(query_id, []).append((passage_id, number))
        if rank + 1 == end:
            draw(query_id)
    for query_id in list(open_candidates):
        draw(query_id)
    return selected


def convert_t2ranking(
    collection: PathLike,
    queries: PathLike,
    qrels: PathLike,
    output: PathLike,
    *,
    negatives: PathLike | None = None,
    num_negatives: int = 8,
    rank_range: tuple[int, int] = (0, 200),
    seed: int = 0,
) -> ConversionStats:
    """Convert T2Ranking retrieval training data to pair or triplet records.

    Without ``negatives``, one pair record per query of ``qrels``: ``{"query", "positive": [passages],
    "query_id", "positive_ids"}``. With a ranked negatives file (``train.mined.tsv`` or ``train.bm25.tsv``:
    whitespace-separated ``qid pid [rank [score]]``, each query's rows in rank order), triplet records that add
    ``"negative"`` and ``"negative_ids"``: the candidates of a query are its rows at 0-based positions
    ``rank_range[0] <= position < rank_range[1]`` (the default ``(0, 200)`` is T2Ranking's own
    ``min_index`` / ``max_index``), minus its positives and repeats, and ``num_negatives`` of them are drawn
    with :func:`~retrievals_rag.retrieval.mining.sample_in_order` (keyed by ``seed`` and the query id) and
    kept in rank order; when fewer remain, all are kept. Queries with no candidate are skipped and counted.
    (T2Ranking's training code removes positives before cutting the band; here, as in
    :func:`~retrievals_rag.retrieval.mining.mine_hard_negatives`, positions count every row.)

    Records follow the qrels' order of first appearance; positives keep their qrels order. Passages are
    plain strings; ids are strings. A first row whose first column reads ``qid``, ``pid``, ``id``, ... is a
    header and is skipped, in every file.

    Args:
        collection: ``collection.tsv``: ``pid <TAB> passage`` (the passage is the rest of the line; may be
            empty). Read once, keeping only the passages the output uses.
        queries: ``queries.train.tsv``: ``qid <TAB> query``.
        qrels: ``qrels.retrieval.train.tsv``: ``qid <TAB> pid`` per relevant passage.
        output: The .jsonl file to write (atomically).
        negatives: The ranked negatives file, or None for pair records.
        num_negatives: Negatives per query, at least 1.
        rank_range: ``(start, end)`` positions of the candidates, 0-based, end excluded.
        seed: Seed of the per-query draws.

    Returns:
        The counts of what was written and skipped.

    Raises:
        DataFormatError: A file is missing or malformed (the message names the file, the line and the field),
            or a qrels or negatives row names a query or passage that ``queries`` / ``collection`` lacks (the
            row that names it is given), or a used query or passage id is repeated, or a used query is empty.
        ValueError: On a bad ``num_negatives`` or ``rank_range``.
    """
    _check_sampling(num_negatives, rank_range)
    collection, queries, qrels, output = Path(collection), Path(queries), Path(qrels), Path(output)
    negatives = Path(negatives) if negatives is not None else None
    for path in (collection, queries, *([negatives] if negatives is not None else [])):
        _require_file(path)

    logger.info("reading %s", qrels)
    positives, query_lines, passage_lines = _read_t2ranking_qrels(qrels)
    logger.info("reading %s", queries)
    query_texts = _read_texts(queries, positives, "qid", "query", allow_empty=False)
    for query_id, number in query_lines.items():
        if query_id not in query_texts:
            raise DataFormatError(str(qrels), number, "qid", f"query id {query_id!r} is not in {queries}")

    # pid -> (file, line) of the first row that uses it, for the error on a passage missing from the collection
    used_passages: dict[str, tuple[Path, int]] = {
        pid: (qrels, number) for pid, number in passage_lines.items()
    }
    selected: dict[str, list[tuple[str, int]]] = {}
    if negatives is not None:
        logger.info("reading %s", negatives)
        selected = _select_t2ranking_negatives(negatives, positives, rank_range, num_negatives, seed)
        for picks in selected.values():
            for passage_id, number in picks:
                used_passages.setdefault(passage_id, (negatives, number))
    logger.info("reading %s", collection)
    passages = _read_texts(collection, used_passages, "pid", "passage", allow_empty=True)
    for passage_id, (path, number) in used_passages.items():
        if passage_id not in passages:
            raise DataFormatError(
                str(path), number, "pid", f"passage id {passage_id!r} is not in {collection}"
            )

    stats = ConversionStats(output=output)

    def records() -> Iterator[dict[str, Any]]:
        for query_id, judged_ids in positives.items():
            # a passage without text (the collection has some) is nothing to learn from: left out
            positive_ids = [pid for pid in judged_ids if passages[pid].strip()]
            if not positive_ids:
                stats._skip("queries whose positives have no text")
                continue
            record: dict[str, Any] = {
                "query": query_texts[query_id],
                "positive": [passages[pid] for pid in positive_ids],
            }
            if negatives is not None:
                negative_ids = [pid for pid, _ in selected.get(query_id, []) if passages[pid].strip()]
                if not negative_ids:
                    stats._skip("queries without negatives")
                    continue
                record["negative"] = [passages[pid] for pid in negative_ids]
            record["query_id"] = query_id
            record["positive_ids"] = positive_ids
            if negatives is not None:
                record["negative_ids"] = negative_ids
            stats._add(record)
            yield record

    write_jsonl(records(), output)
    return stats
