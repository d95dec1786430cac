"""Training record formats, loading and validation.

Three formats, as in the reference library:

- pair: ``{"query": str, "positive": [passage, ...]}``, trained with in-batch negatives;
- triplet: ``{"query": str, "positive": [passage, ...], "negative": [passage, ...]}``, hard negatives;
- scored pair: ``{"query": str, "document": passage, "label": float}``, for losses that use a score.

For distillation, a pair or triplet record may also carry a teacher's scores, aligned with its passages:
``"positive_scores": [float, ...]`` and ``"negative_scores": [float, ...]`` (e.g. from a cross-encoder).

A passage is a string or ``{"title": str, "text": str}`` (joined as ``title + " " + text``). Records come from a
.jsonl or .json file, a folder of them, a Hugging Face ``datasets.Dataset`` or a list of dicts. Every record is
validated on load; a bad one raises :class:`DataFormatError` naming the file, the line and the field. Nothing is
silently skipped. Keys other than the format's are ignored (ids, scores from mining, ...).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

RecordFormat = Literal["pair", "triplet", "scored"]


class DataFormatError(ValueError):
    """A training record is malformed. ``source`` is the file (or "records"), ``line`` 1-based, ``field``."""

    def __init__(self, source: str, line: int | None, field: str | None, problem: str) -> None:
        self.source, self.line, self.field = source, line, field
        where = source if line is None else f"{source}, line {line}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class TrainRecord:
    """One validated record: a query with positives and negatives, or a scored (query, document) pair."""

    query: str
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    document: str | None = None
    label: float | None = None
    positive_scores: tuple[float, ...] | None = None
    negative_scores: tuple[float, ...] | None = None
    # where it was read: a file (or "records") and its 1-based line (a .json array's record index), for errors
    # found after loading (a label the loss cannot take, hard negatives a group size needs)
    source: str = field(default="records", compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

    @property
    def format(self) -> RecordFormat:
        if self.label is not None:
            return "scored"
        return "triplet" if self.negatives else "pair"


@dataclass(frozen=True)
class RecordKeys:
    """Field names, for data whose keys differ from ours (e.g. ``query_key="question"``)."""

    query: str = "query"
    positive: str = "positive"
    negative: str = "negative"
    document: str = "document"
    label: str = "label"
    positive_scores: str = "positive_scores"
    negative_scores: str = "negative_scores"


def passage_text(value: Any, source: str, line: int | None, field: str) -> str:
    """A passage as text: a string, or ``{"title", "text"}`` joined as ``title + " " + text``.

    Raises:
        DataFormatError: a value of another type, or a passage with no text (empty or only whitespace).
    """
    text = _passage_text(value, source, line, field)
    if not text.strip():
        raise DataFormatError(source, line, field, "empty passage (no text to train on)")
    return text


def _passage_text(value: Any, source: str, line: int | None, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        text = value.get("text")
        title = value.get("title", "")
        if not isinstance(text, str):
            raise DataFormatError(
                source, line, field, f"a passage object needs a string 'text', got {text!r:.60}"
            )
        if not isinstance(title, str):
            raise DataFormatError(
                source, line, field, f"'title' must be a string, got {type(title).__name__}"
            )
        return f"{title} {text}".strip() if title else text
    raise DataFormatError(
        source, line, field, f"expected a string or {{'title', 'text'}}, got {type(value).__name__}"
    )


def _passages(record: Mapping[str, Any], key: str, source: str, line: int | None) -> tuple[str, ...]:
    value = record[key]
    if isinstance(value, str | Mapping):
        value = [value]  # one passage given without a list
    if not isinstance(value, list):
        raise DataFormatError(source, line, key, f"expected a list of passages, got {type(value).__name__}")
    if not value:
        raise DataFormatError(source, line, key, "empty list")
    return tuple(passage_text(item, source, line, f"{key}[{index}]") for index, item in enumerate(value))


def parse_record(record: Any, keys: RecordKeys, source: str, line: int | None) -> TrainRecord:
    """Validate one raw record (a dict) and return it as a :class:`TrainRecord`."""
    if not isinstance(record, Mapping):
        raise DataFormatError(source, line, None, f"expected a JSON object, got {type(record).__name__}")
    query = record.get(keys.query)
    if keys.query not in record:
        raise DataFormatError(source, line, keys.query, "missing")
    if not isinstance(query, str):
        raise DataFormatError(source, line, keys.query, f"expected a string, got {type(query).__name__}")
    if not query.strip():
        raise DataFormatError(source, line, keys.query, "empty query")
    if keys.label in record or keys.document in record:
        for key in (keys.document, keys.label):
            if key not in record:
                raise DataFormatError(
                    source, line, key, "missing (a scored pair needs 'document' and 'label')"
                )
        label = record[keys.label]
        if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
            raise DataFormatError(source, line, keys.label, f"expected a finite number, got {label!r:.60}")
        document = passage_text(record[keys.document], source, line, keys.document)
        return TrainRecord(query=query, document=document, label=float(label), source=source, line=line)
    if keys.positive not in record:
        raise DataFormatError(
            source,
            line,
            keys.positive,
            "missing (a pair or triplet needs it; a scored pair needs 'document', 'label')",
        )
    positives = _passages(record, keys.positive, source, line)
    negatives = _passages(record, keys.negative, source, line) if keys.negative in record else ()
    positive_scores = _scores(record, keys.positive_scores, len(positives), source, line)
    negative_scores = _scores(record, keys.negative_scores, len(negatives), source, line)
    if negative_scores is not None and positive_scores is None:
        raise DataFormatError(
            source, line, keys.positive_scores, "missing (teacher scores go with every passage)"
        )
    if positive_scores is not None and negatives and negative_scores is None:
        raise DataFormatError(
            source, line, keys.negative_scores, "missing (teacher scores go with every passage)"
        )
    return TrainRecord(
        query=query,
        positives=positives,
        negatives=negatives,
        positive_scores=positive_scores,
        negative_scores=negative_scores,
        source=source,
        line=line,
    )


def _scores(
    record: Mapping[str, Any], key: str, expected: int, source: str, line: int | None
) -> tuple[float, ...] | None:
    if key not in record:
        return None
    values = record[key]
    if not isinstance(values, list) or len(values) != expected:
        raise DataFormatError(source, line, key, f"expected a list of {expected} numbers, one per passage")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise DataFormatError(
                source, line, f"{key}[{index}]", f"expected a finite number, got {value!r:.60}"
            )
    return tuple(float(value) for value in values)


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    # read as bytes and decoded line by line, so that an encoding error names its line; split on "\n" only (a
    # JSON string may hold U+2028 and other characters that str.splitlines would take for line ends)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[
                    3:
                ]  # a byte-order mark, which Windows editors write, is not part of the first record
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataFormatError(
                    str(path),
                    number,
                    None,
                    f"not UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1})",
                ) from error
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(str(path), number, None, f"invalid JSON ({error.msg})") from error


def _json_array(path: Path) -> Iterator[tuple[int | None, Any]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataFormatError(
            str(path), line, None, f"not UTF-8 (byte {data[error.start]:#04x}; save the file as UTF-8)"
        ) from error
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFormatError(str(path), error.lineno, None, f"invalid JSON ({error.msg})") from error
    if isinstance(payload, dict):  # {"data": [...]} as some datasets ship
        lists = [value for value in payload.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise DataFormatError(str(path), None, None, "expected a JSON list of records")
        payload = lists[0]
    if not isinstance(payload, list):
        raise DataFormatError(str(path), None, None, "expected a JSON list of records")
    # A .json array has no useful line numbers; the record index is given as the "line" (1-based).
    yield from enumerate(payload, start=1)


def _file_records(path: Path) -> Iterator[tuple[int | None, Any]]:
    if path.suffix == ".jsonl":
        return _json_lines(path)
    if path.suffix == ".json":
        return _json_array(path)
    raise DataFormatError(str(path), None, None, "expected a .jsonl or .json file")


def load_records(
    data: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | Any,
    keys: RecordKeys | None = None,
) -> list[TrainRecord]:
    """Load and validate training records.

    Args:
        data: a .jsonl / .json file, a folder of them (read in name order), a ``datasets.Dataset``, or a list
            of dicts.
        keys: field names, if they differ from ``query`` / ``positive`` / ``negative`` / ``document`` / ``label``.

    Returns:
        The records, in order.

    Raises:
        DataFormatError: a record is malformed (names the file, line and field), or there are none.
        FileNotFoundError: the path does not exist.
    """
    keys = keys or RecordKeys()
    sources: Iterable[tuple[str, Iterable[tuple[int | None, Any]]]]
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json"))
            if not files:
                raise DataFormatError(str(path), None, None, "no .jsonl or .json files in this folder")
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"training data not found: {path}")
        sources = ((str(file), _file_records(file)) for file in files)
        name = str(path)
    elif isinstance(data, Sequence) or hasattr(data, "__iter__"):
        # a list of dicts or a datasets.Dataset (iterates dicts); the "line" is the 1-based record index
        sources = [("records", enumerate(data, start=1))]
        name = "records"
    else:
        raise TypeError(f"unsupported training data: {type(data).__name__}")
    records = [parse_record(raw, keys, source, line) for source, rows in sources for line, raw in rows]
    if not records:
        raise DataFormatError(name, None, None, "no records")
    first_scored = records[0].format == "scored"
    odd = next((record for record in records if (record.format == "scored") != first_scored), None)
    if odd is not None:
        first, other = (
            ("scored pairs", "a pair / triplet record")
            if first_scored
            else (
                "pair / triplet records",
                "a scored pair",
            )
        )
        raise DataFormatError(
            odd.source,
            odd.line,
            None,
            f"{other} among {first} (from {records[0].source}, line {records[0].line}): scored pairs (query, "
            "document, label) cannot be mixed with groups (query, positive, negative) in one training set",
        )
    return records
