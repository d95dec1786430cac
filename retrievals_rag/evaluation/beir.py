"""Load retrieval benchmarks stored in the BEIR layout.

A BEIR dataset is a folder holding::

    corpus.jsonl      one {"_id": ..., "title": ..., "text": ...} object per line (title optional)
    queries.jsonl     one {"_id": ..., "text": ...} object per line
    qrels/SPLIT.tsv   query-id <TAB> corpus-id <TAB> integer score, with an optional header row

Every file is read as UTF-8, blank lines are skipped, and other fields (such as ``metadata``) are ignored.
A problem raises :class:`BeirFormatError` naming the file, the 1-based line and the field. :func:`load_beir`
checks what the requested split uses: every corpus record, the split's qrels rows (an unknown query or document
id there is an error), and the queries those rows name; a query record the split does not use is not checked
beyond its ``_id``, and a query the split uses whose text is empty is skipped with one warning (file and line)
and listed in :attr:`BeirDataset.skipped_queries`. ``strict=True`` checks every query record as
:func:`load_queries` does, and refuses empty ones.

Example::

    from retrievals_rag.evaluation.beir import document_text, load_beir

    dataset = load_beir("tests/data/scifact_subset", split="test")
    texts = [document_text(document) for document in dataset.corpus.values()]
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BeirDataset",
    "BeirFormatError",
    "Document",
    "SkippedQuery",
    "document_text",
    "load_beir",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "write_beir",
]

_QRELS_HEADER = ("query-id", "corpus-id", "score")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class BeirFormatError(ValueError):
    """A BEIR file is missing or malformed.

    Attributes:
        path: The file (or folder) at fault.
        line: The 1-based line number, or ``None`` when the problem concerns the whole file.
        field: The JSON field or TSV column at fault, or ``None``.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None, field: str | None = None):
        self.path = Path(path)
        self.line = line
        self.field = field
        location = str(path) if line is None else f"{path}, line {line}"
        where = f"{location}, field {field!r}" if field is not None else location
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class Document:
    """One corpus entry.

    Attributes:
        title: The title; an empty string when the corpus gives none.
        text: The body text; may be empty.
    """

    title: str
    text: str


def document_text(document: Document, separator: str = " ") -> str:
    """The text of a document that gets encoded: title and body joined by a space, then stripped.

    This is the BEIR / MTEB convention, and the only place in the package that defines it.
    A document whose title and text are both empty gives an empty string.

    Args:
        document: The corpus entry.
        separator: What joins the title and the body. Adaptation reads a corpus with ``"\\n"``, which the
            tokenizers of this field read as the space, so that the title stays the passage's first line (the
            ``title`` generator's pseudo-query).

    Returns:
        ``(title + separator + text).strip()``.

    Example:
        >>> document_text(Document(title="Aspirin", text="It thins the blood."))
        'Aspirin It thins the blood.'
        >>> document_text(Document(title="", text=" body "))
        'body'
    """
    return (document.title + separator + document.text).strip()


@dataclass(frozen=True, slots=True)
class SkippedQuery:
    """A query of the split left out of a :class:`BeirDataset` because its text is empty.

    Attributes:
        query_id: Its id.
        path: The queries file.
        line: Its 1-based line in that file.
    """

    query_id: str
    path: Path
    line: int


@dataclass(frozen=True, slots=True)
class BeirDataset:
    """One split of a BEIR dataset.

    Attributes:
        corpus: Document id -> document, in file order.
        queries: Query id -> query text, only the queries that appear in the split's qrels, in file order.
        qrels: Query id -> document id -> graded relevance (an integer; > 0 means relevant), in file order;
            without the skipped queries.
        skipped_queries: The split's queries left out because their text is empty (never with ``strict``).
    """

    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    skipped_queries: tuple[SkippedQuery, ...] = ()


def _require_file(path: Path, expected: str) -> None:
    if not path.is_file():
        problem = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise BeirFormatError(path, f"{problem}; expected {expected}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line) for every non-blank line of a UTF-8 file."""
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise BeirFormatError(path, f"not valid UTF-8 ({error.reason})", line=line_number) from None
            if line_number == 1:
                line = line.removeprefix("\ufeff")
            if line.strip():
                yield line_number, line


def _json_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise BeirFormatError(
                path, f"invalid JSON: {error.msg} (column {error.colno})", line_number
            ) from None
        if not isinstance(record, dict):
            raise BeirFormatError(path, f"expected a JSON object, got {type(record).__name__}", line_number)
        yield line_number, record


def _string_field(record: dict[str, Any], field: str, path: Path, line_number: int) -> str:
    if field not in record:
        raise BeirFormatError(path, "missing", line_number, field)
    value = record[field]
    if not isinstance(value, str):
        raise BeirFormatError(
            path, f"expected a string, got {type(value).__name__} ({value!r:.40})", line_number, field
        )
    return value


def _record_id(record: dict[str, Any], seen: dict[str, int], path: Path, line_number: int) -> str:
    record_id = _string_field(record, "_id", path, line_number)
    if record_id in seen:
        raise BeirFormatError(
            path, f"duplicate id {record_id!r} (first seen on line {seen[record_id]})", line_number, "_id"
        )
    seen[record_id] = line_number
    return record_id


def load_corpus(path: str | Path) -> dict[str, Document]:
    """Read a BEIR ``corpus.jsonl``.

    Args:
        path: The JSONL file; each line an object with a string ``_id``, a string ``text`` (may be empty) and
            optionally a string ``title``. Other fields are ignored.

    Returns:
        Document id -> :class:`Document`, in file order.

    Raises:
        BeirFormatError: The file is missing, holds no documents, or a line is malformed or repeats an id.
    """
    path = Path(path)
    _require_file(path, "a BEIR corpus file (JSONL, one {'_id', 'title', 'text'} object per line)")
    seen: dict[str, int] = {}
    corpus: dict[str, Document] = {}
    for line_number, record in _json_records(path):
        document_id = _record_id(record, seen, path, line_number)
        text = _string_field(record, "text", path, line_number)
        title = _string_field(record, "title", path, line_number) if "title" in record else ""
        corpus[document_id] = Document(title=title, text=text)
    if not corpus:
        raise BeirFormatError(path, "the corpus holds no documents")
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    """Read a BEIR ``queries.jsonl``.

    Args:
        path: The JSONL file; each line an object with a string ``_id`` and a non-empty string ``text``.
            Other fields are ignored.

    Returns:
        Query id -> query text, in file order.

    Raises:
        BeirFormatError: The file is missing, holds no queries, or a line is malformed, repeats an id or has
            an empty query text.
    """
    path = Path(path)
    _require_file(path, "a BEIR queries file (JSONL, one {'_id', 'text'} object per line)")
    seen: dict[str, int] = {}
    queries: dict[str, str] = {}
    for line_number, record in _json_records(path):
        query_id = _record_id(record, seen, path, line_number)
        text = _string_field(record, "text", path, line_number)
        if not text.strip():
            raise BeirFormatError(path, "the query text is empty", line_number, "text")
        queries[query_id] = text
    if not queries:
        raise BeirFormatError(path, "the file holds no queries")
    return queries


def load_qrels(
    path: str | Path,
    query_ids: Collection[str] | None = None,
    document_ids: Collection[str] | None = None,
) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels file (``qrels/SPLIT.tsv``).

    Each row is ``query-id <TAB> corpus-id <TAB> score`` with an integer score; a first row reading
    ``query-id	corpus-id	score`` is taken as the header.

    Args:
        path: The TSV file.
        query_ids: When given, every row's query id must be one of these.
        document_ids: When given, every row's corpus id must be one of these.

    Returns:
        Query id -> document id -> score, in file order.

    Raises:
        BeirFormatError: The file is missing or empty, or a row has the wrong number of columns, a
            non-integer score, a repeated (query, document) pair, or an id outside ``query_ids`` /
            ``document_ids``.
    """
    path = Path(path)
    _require_file(path, "a BEIR qrels file (TSV: query-id, corpus-id, integer score)")
    qrels: dict[str, dict[str, int]] = {}
    first_row = True
    for line_number, line in _lines(path):
        fields = line.rstrip("\r\n").split("\t")
        is_first_row, first_row = first_row, False
        if is_first_row and tuple(field.strip() for field in fields) == _QRELS_HEADER:
            continue
        if len(fields) != 3:
            raise BeirFormatError(
                path,
                f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(fields)}",
                line_number,
            )
        query_id, document_id, score_text = (field.strip() for field in fields)
        if not _INTEGER.fullmatch(score_text):
            hint = " (a header row must read 'query-id<TAB>corpus-id<TAB>score')" if is_first_row else ""
            raise BeirFormatError(
                path, f"expected an integer, got {score_text!r}{hint}", line_number, "score"
            )
        for column, value, known in (
            ("query-id", query_id, query_ids),
            ("corpus-id", document_id, document_ids),
        ):
            if not value:
                raise BeirFormatError(path, "empty id", line_number, column)
            if known is not None and value not in known:
                kind = "query" if column == "query-id" else "document"
                raise BeirFormatError(path, f"unknown {kind} id {value!r}", line_number, column)
        judgments = qrels.setdefault(query_id, {})
        if document_id in judgments:
            raise BeirFormatError(
                path, f"duplicate judgment for query {query_id!r}, document {document_id!r}", line_number
            )
        judgments[document_id] = int(score_text)
    if not qrels:
        raise BeirFormatError(path, "the file holds no judgments")
    return qrels


def load_beir(data_dir: str | Path, split: str = "test", *, strict: bool = False) -> BeirDataset:
    """Load one split of a BEIR dataset folder.

    Args:
        data_dir: The folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/``.
        split: The qrels file to use, ``qrels/{split}.tsv``.
        strict: Check every query record (as :func:`load_queries`) and refuse an empty query. False (the
            default): a query record the split does not use is checked only for its ``_id``, and a query of the
            split whose text is empty is skipped, with one warning naming the file and line of each.

    Returns:
        The corpus, the queries judged in this split, and the split's qrels.

    Raises:
        BeirFormatError: A file is missing or malformed, the split does not exist (the message lists the
            splits that do), the qrels name a query or document that the other files lack, a query of the split
            has no string ``text``, or every query of the split is empty.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise BeirFormatError(
            data_dir, "is not a folder; expected a BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)"
        )
    if not split or Path(split).name != split or split in {".", ".."}:
        raise ValueError(f"split must be a plain file stem such as 'test', got {split!r}")
    qrels_dir = data_dir / "qrels"
    qrels_path = qrels_dir / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(path.stem for path in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        listing = ", ".join(repr(name) for name in available) if available else "none"
        raise BeirFormatError(
            qrels_path, f"split {split!r} not found; expected qrels/{split}.tsv. Available splits: {listing}"
        )
    corpus = load_corpus(data_dir / "corpus.jsonl")
    queries_path = data_dir / "queries.jsonl"
    if strict:
        all_queries = load_queries(queries_path)
        qrels = load_qrels(qrels_path, query_ids=all_queries, document_ids=corpus)
        _require_relevant(qrels, qrels_path, split)
        queries = {query_id: text for query_id, text in all_queries.items() if query_id in qrels}
        return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)
    records = _query_records(queries_path)
    qrels = load_qrels(qrels_path, query_ids=records, document_ids=corpus)
    _require_relevant(qrels, qrels_path, split)
    kept: dict[str, str] = {}
    skipped: list[SkippedQuery] = []
    for query_id, (line_number, record) in records.items():
        if query_id not in qrels:
            continue  # a record this split does not use: not checked further
        text = _string_field(record, "text", queries_path, line_number)
        if text.strip():
            kept[query_id] = text
        else:
            skipped.append(SkippedQuery(query_id, queries_path, line_number))
    if skipped:
        listing = ", ".join(f"line {query.line} (id {query.query_id!r})" for query in skipped)
        warnings.warn(
            f"{queries_path}: skipped {len(skipped)} empty quer{'y' if len(skipped) == 1 else 'ies'} of split "
            f"{split!r}: {listing}",
            UserWarning,
            stacklevel=2,
        )
        if not kept:
            raise BeirFormatError(queries_path, f"every query of split {split!r} is empty", field="text")
        qrels = {query_id: judged for query_id, judged in qrels.items() if query_id in kept}
    return BeirDataset(corpus=corpus, queries=kept, qrels=qrels, skipped_queries=tuple(skipped))


def _require_relevant(qrels: Mapping[str, Mapping[str, int]], path: Path, split: str) -> None:
    """A split with no relevant judgement (every grade 0) has nothing to evaluate or train on: say so at load."""
    if not any(grade > 0 for judged in qrels.values() for grade in judged.values()):
        raise BeirFormatError(
            path,
            f"no relevant judgement in split {split!r}: every (query, document) pair is graded 0 or below, so "
            "there is nothing to evaluate or train on (relevant documents need a grade > 0)",
            field="score",
        )


def _query_records(path: Path) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every record of a queries file by id, with its line: each must be JSON with a unique string ``_id``."""
    _require_file(path, "a BEIR queries file (JSONL, one {'_id', 'text'} object per line)")
    seen: dict[str, int] = {}
    records: dict[str, tuple[int, dict[str, Any]]] = {}
    for line_number, record in _json_records(path):
        records[_record_id(record, seen, path, line_number)] = (line_number, record)
    if not records:
        raise BeirFormatError(path, "the file holds no queries")
    return records


def write_beir(
    data_dir: str | Path,
    corpus: Mapping[str, str],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    split: str = "test",
) -> Path:
    """Write a BEIR folder that :func:`load_beir` reads back (documents without titles).

    Args:
        data_dir: the folder (created).
        corpus: document id -> text.
        queries: query id -> text.
        qrels: query id -> document id -> relevance.
        split: the name of the qrels file, ``qrels/SPLIT.tsv``.

    Returns:
        ``data_dir`` as a path.
    """
    folder = Path(data_dir)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for document_id, text in corpus.items():
            handle.write(json.dumps({"_id": document_id, "text": text}, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False) + "\n")
    rows = [
        f"{query_id}\t{document_id}\t{score}\n"
        for query_id, judged in qrels.items()
        for document_id, score in judged.items()
    ]
    (folder / "qrels" / f"{split}.tsv").write_text(
        "\t".join(_QRELS_HEADER) + "\n" + "".join(rows), encoding="utf-8"
    )
    return folder
