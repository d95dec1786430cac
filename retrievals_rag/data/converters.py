"""Converters from public retrieval training sets to our training records (JSON Lines).

- **T2Ranking** (Xie et al., SIGIR 2023; https://github.com/THUIR/T2Ranking): ``collection.tsv``
  (``pid <TAB> passage``), ``queries.train.tsv`` (``qid <TAB> query``), ``qrels.retrieval.train.tsv``
  (``qid <TAB> pid``, the relevant passages) and optionally a ranked negatives file, ``train.mined.tsv``
  (``qid pid index score``) or ``train.bm25.tsv`` (``qid pid index``), to pair records, or to triplet
  records when a negatives file is given (:func:`convert_t2ranking`).
- **DPR** (Karpukhin et al., EMNLP 2020; https://github.com/facebookresearch/DPR): ``biencoder-nq-train.json``,
  a JSON list of ``{"question", "answers", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}`` whose
  contexts are ``{"title", "text", "score", "title_score", "passage_id"}``, to triplet records with
  ``{"title", "text"}`` passages (:func:`convert_dpr`).

Inputs may be gzip-compressed (a ``.gz`` name). They are streamed: the T2Ranking negatives file (200 million
rows) is read once, keeping per query only its rank band, and the collection is read once, keeping only the
passages that the output uses. A malformed input raises :class:`~retrievals_rag.data.records.DataFormatError`
naming the file, the line and the field (for a DPR JSON list, the field starts with the item's list index,
e.g. ``[12].positive_ctxs[0].text``). Output is written atomically by
:func:`~retrievals_rag.retrieval.mining.write_jsonl`.

Example::

    from retrievals_rag.data.converters import convert_t2ranking

    stats = convert_t2ranking(
        "T2Ranking/data/collection.tsv",
        "T2Ranking/data/queries.train.tsv",
        "T2Ranking/data/qrels.retrieval.train.tsv",
        "t2ranking-triplets.jsonl",
        negatives="T2Ranking/data/train.mined.tsv",
    )
    print(stats.summary())
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from retrievals_rag.data.records import DataFormatError
from retrievals_rag.retrieval.mining import sample_in_order, write_jsonl

__all__ = ["ConversionStats", "convert_dpr", "convert_t2ranking"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

# A first row whose first column is one of these is a header and is skipped.
_HEADER_FIRST_COLUMNS = frozenset(
    {"qid", "pid", "id", "docid", "query_id", "query-id", "passage_id", "corpus-id"}
)
_READ_CHUNK = 1 << 20  # characters read at a time from a JSON file
_NON_SPACE = re.compile(r"\S")


@dataclass
class ConversionStats:
    """What a conversion wrote and what it skipped.

    Attributes:
        output: The written file.
        records: Records written.
        negatives: Negatives written in all (0 for pair records).
        min_negatives: Fewest negatives in one record (None when no record has negatives).
        max_negatives: Most negatives in one record.
        skipped: Reason -> number of queries (T2Ranking) or items (DPR) skipped for it.
    """

    output: Path
    records: int = 0
    negatives: int = 0
    min_negatives: int | None = None
    max_negatives: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def _add(self, record: Mapping[str, Any]) -> None:
        self.records += 1
        if "negative" in record:
            count = len(record["negative"])
            self.negatives += count
            self.min_negatives = count if self.min_negatives is None else min(self.min_negatives, count)
            self.max_negatives = max(self.max_negatives, count)

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def summary(self) -> str:
        """One line for people, e.g. ``wrote 3 records to out.jsonl; negatives per record: 1 to 2, mean 1.67``."""
        text = f"wrote {self.records} records to {self.output}"
        if self.min_negatives is not None:
            text += (
                f"; negatives per record: {self.min_negatives} to {self.max_negatives}, "
                f"mean {self.negatives / self.records:.2f}"
            )
        if any(self.skipped.values()):
            text += "; skipped: " + ", ".join(f"{count} {reason}" for reason, count in self.skipped.items())
        return text


# ----------------------------------------------------------------------------------------------- file reading


def _require_file(path: Path) -> None:
    if not path.is_file():
        problem = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataFormatError(str(path), None, None, problem)


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _open_text(path: Path) -> IO[str]:
    return (
        gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open("r", encoding="utf-8")
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line break) for every non-blank line; a header row is skipped."""
    _require_file(path)
    first = True
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise DataFormatError(str(path), number, None, f"not valid UTF-8 ({error.reason})") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            if first:
                first = False
                if line.split(None, 1)[0].lower() in _HEADER_FIRST_COLUMNS:
                    continue
            yield number, line


def _id_text_rows(path: Path, id_field: str, text_field: str) -> Iterator[tuple[int, str, str]]:
    """(line number, id, text) of a two-column ``id <TAB> text`` file; the text is everything after the tab."""
    for number, line in _lines(path):
        identifier, tab, text = line.partition("\t")
        if not tab:
            raise DataFormatError(
                str(path), number, None, f"expected 2 tab-separated columns ({id_field}, {text_field}), got 1"
            )
        identifier = identifier.strip()
        if not identifier:
            raise DataFormatError(str(path), number, id_field, "empty id")
        yield number, identifier, text


def _read_texts(
    path: Path, wanted: Collection[str], id_field: str, text_field: str, *, allow_empty: bool
) -> dict[str, str]:
    """The texts of the ``wanted`` ids (every row's layout is checked; only wanted ids are kept)."""
    texts: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, identifier, text in _id_text_rows(path, id_field, text_field):
        if identifier not in wanted:
            continue
        if identifier in texts:
            raise DataFormatError(
                str(path), number, id_field, f"repeated id {identifier!r} (first on line {lines[identifier]})"
            )
        if not allow_empty and not text.strip():
            raise DataFormatError(str(path), number, text_field, "empty text")
        texts[identifier] = text
        lines[identifier] = number
    return texts


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
        for query_id, positive_ids in positives.items():
            record: dict[str, Any] = {
                "query": query_texts[query_id],
                "positive": [passages[pid] for pid in positive_ids],
            }
            if negatives is not None:
                negative_ids = [pid for pid, _ in selected.get(query_id, [])]
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


# ----------------------------------------------------------------------------------------------- DPR


class _JsonCursor:
    """Reads a large JSON file a chunk at a time, tracking the line number of the read position."""

    def __init__(self, handle: IO[str], path: Path) -> None:
        self.handle, self.path = handle, path
        self.buffer, self.position, self.line, self.at_end = "", 0, 1, False
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        if self.at_end:
            return False
        try:
            chunk = self.handle.read(_READ_CHUNK)
        except UnicodeDecodeError as error:
            raise DataFormatError(str(self.path), None, None, f"not valid UTF-8 ({error.reason})") from None
        if not chunk:
            self.at_end = True
            return False
        self.buffer = self.buffer[self.position :] + chunk
        self.position = 0
        return True

    def _move_to(self, position: int) -> None:
        self.line += self.buffer.count("\n", self.position, position)
        self.position = position

    def error(self, problem: str, field: str | None = None, line: int | None = None) -> DataFormatError:
        return DataFormatError(str(self.path), self.line if line is None else line, field, problem)

    def peek(self) -> str | None:
        """The next character that is not white space (white space is consumed); None at the end."""
        while True:
            match = _NON_SPACE.search(self.buffer, self.position)
            if match is not None:
                self._move_to(match.start())
                return self.buffer[self.position]
            self._move_to(len(self.buffer))
            if not self._fill():
                return None

    def take(self) -> None:
        """Consume the character that :meth:`peek` returned."""
        self._move_to(self.position + 1)

    def value(self, field: str | None) -> Any:
        """Decode the JSON value at the read position (after :meth:`peek`)."""
        last_offset: int | None = None
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError as error:
                offset = error.pos - self.position
                # Stopped by the end of the buffer rather than by bad JSON: the error moves when more text comes
                # (an unterminated string reports where the string starts, so it gets more text every time).
                if not self.at_end and (offset != last_offset or error.msg.startswith("Unterminated string")):
                    last_offset = offset
                    self._fill()
                    continue
                line = self.line + self.buffer.count("\n", self.position, error.pos)
                raise self.error(f"invalid JSON: {error.msg}", field, line) from None
            self._move_to(end)
            return value


def _json_items(path: Path) -> Iterator[tuple[str, int, Any]]:
    """(field prefix, line, item) for each item of a JSON list (prefix ``[index]``) or a JSON Lines file."""
    _require_file(path)
    with _open_text(path) as handle:
        cursor = _JsonCursor(handle, path)
        first = cursor.peek()
        if first is None:
            raise cursor.error("the file is empty")
        if first == "{":  # JSON Lines: one object after another
            while cursor.peek() is not None:
                line = cursor.line
                yield "", line, cursor.value(None)
            return
        if first != "[":
            raise cursor.error(f"expected a JSON list of objects, found {first!r}")
        cursor.take()
        if cursor.peek() == "]":
            cursor.take()
        else:
            index = 0
            while True:
                if cursor.peek() is None:
                    raise cursor.error("the file ends inside the list")
                line = cursor.line
                yield f"[{index}]", line, cursor.value(f"[{index}]")
                following = cursor.peek()
                if following == ",":
                    cursor.take()
                    index += 1
                elif following == "]":
                    cursor.take()
                    break
                elif following is None:
                    raise cursor.error("the file ends inside the list (no closing ']')")
                else:
                    raise cursor.error(
                        f"expected ',' or ']' after the item, found {following!r}", f"[{index}]"
                    )
        if cursor.peek() is not None:
            raise cursor.error("unexpected text after the closing ']'")


def _dpr_contexts(
    item: Mapping[str, Any], key: str, required: bool, path: Path, line: int, prefix: str
) -> list[tuple[dict[str, str], str | None]]:
    """The ``{"title", "text"}`` passages of one context list, each with its passage id (or None)."""
    name = f"{prefix}.{key}" if prefix else key
    if key not in item:
        if required:
            raise DataFormatError(str(path), line, name, "missing")
        return []
    contexts = item[key]
    if not isinstance(contexts, list):
        raise DataFormatError(
            str(path), line, name, f"expected a list of contexts, got {type(contexts).__name__}"
        )
    passages = []
    for index, context in enumerate(contexts):
        where = f"{name}[{index}]"
        if not isinstance(context, Mapping):
            raise DataFormatError(
                str(path), line, where, f"expected a {{'title', 'text'}} object, got {type(context).__name__}"
            )
        text = context.get("text")
        title = context.get("title", "")
        if not isinstance(text, str):
            problem = "missing" if "text" not in context else f"expected a string, got {type(text).__name__}"
            raise DataFormatError(str(path), line, f"{where}.text", problem)
        if not isinstance(title, str):
            raise DataFormatError(
                str(path), line, f"{where}.title", f"expected a string, got {type(title).__name__}"
            )
        passage_id = context.get("passage_id")
        passages.append(({"title": title, "text": text}, None if passage_id is None else str(passage_id)))
    return passages


def convert_dpr(
    input: PathLike,
    output: PathLike,
    *,
    num_negatives: int | None = None,
    include_negative_ctxs: bool = False,
    seed: int = 0,
) -> ConversionStats:
    """Convert DPR bi-encoder training data (``biencoder-nq-train.json`` and the like) to triplet records.

    Each item becomes ``{"query": question, "positive": [passages], "negative": [passages]}`` with passages as
    ``{"title", "text"}`` (other context fields are dropped). Negatives are the ``hard_negative_ctxs``, then,
    with ``include_negative_ctxs``, the ``negative_ctxs`` (DPR's random BM25-free negatives); a negative equal to
    a positive (same ``passage_id``, or same title and text) or to an earlier negative is dropped. With
    ``num_negatives``, that many are drawn with :func:`~retrievals_rag.retrieval.mining.sample_in_order`
    (keyed by ``seed`` and the item's position) and kept in their listed order; by default all are kept.
    Items without positives, or left without negatives, are skipped and counted.

    The input is a JSON list (streamed, never loaded whole) or JSON Lines; ``.gz`` is read compressed.
    ``question`` must be a non-empty string and ``positive_ctxs`` a list; the negative lists are optional;
    every context needs a string ``text`` and, if present, a string ``title``.

    Args:
        input: The DPR file.
        output: The .jsonl file to write (atomically).
        num_negatives: Negatives per record (at least 1), or None for all.
        include_negative_ctxs: Also take ``negative_ctxs``.
        seed: Seed of the per-item draws.

    Returns:
        The counts of what was written and skipped.

    Raises:
        DataFormatError: The file is missing or malformed; the message names the file, the line and the field,
            the field starting with the item's list index (``[3].positive_ctxs[0].text``).
        ValueError: On a bad ``num_negatives``.
    """
    if num_negatives is not None and (
        isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1
    ):
        raise ValueError(f"num_negatives must be a positive integer or None, got {num_negatives!r}")
    path, output = Path(input), Path(output)
    _require_file(path)
    stats = ConversionStats(output=output)

    def records() -> Iterator[dict[str, Any]]:
        for ordinal, (prefix, line, item) in enumerate(_json_items(path)):
            if not isinstance(item, Mapping):
                raise DataFormatError(
                    str(path), line, prefix or None, f"expected a JSON object, got {type(item).__name__}"
                )
            question_field = f"{prefix}.question" if prefix else "question"
            question = item.get("question")
            if not isinstance(question, str) or not question.strip():
                problem = (
                    "missing"
                    if "question" not in item
                    else "empty"
                    if isinstance(question, str)
                    else f"expected a string, got {type(question).__name__}"
                )
                raise DataFormatError(str(path), line, question_field, problem)
            positives = _dpr_contexts(item, "positive_ctxs", True, path, line, prefix)
            candidates = _dpr_contexts(item, "hard_negative_ctxs", False, path, line, prefix)
            if include_negative_ctxs:
                candidates += _dpr_contexts(item, "negative_ctxs", False, path, line, prefix)
            if not positives:
                stats._skip("items without positives")
                continue
            seen_ids = {passage_id for _, passage_id in positives if passage_id is not None}
            seen_texts = {(passage["title"], passage["text"]) for passage, _ in positives}
            kept: list[dict[str, str]] = []
            for passage, passage_id in candidates:
                text_key = (passage["title"], passage["text"])
                if text_key in seen_texts or (passage_id is not None and passage_id in seen_ids):
                    continue
                seen_texts.add(text_key)
                if passage_id is not None:
                    seen_ids.add(passage_id)
                kept.append(passage)
            if not kept:
                stats._skip("items without negatives")
                continue
            if num_negatives is not None:
                kept = sample_in_order(kept, num_negatives, seed=seed, key=str(ordinal))
            record = {
                "query": question,
                "positive": [passage for passage, _ in positives],
                "negative": kept,
            }
            stats._add(record)
            yield record

    write_jsonl(records(), output)
    return stats
