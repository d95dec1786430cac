"""What both converters share: their statistics and streamed, validated file reading."""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from retrievals_rag.data.records import DataFormatError

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

# A first row whose first column is one of these is a header and is skipped.
_HEADER_FIRST_COLUMNS = frozenset(
    {"qid", "pid", "id", "docid", "query_id", "query-id", "passage_id", "corpus-id"}
)


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
