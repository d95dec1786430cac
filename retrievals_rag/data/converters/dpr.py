"""DPR wikipedia-nq (Karpukhin et al., EMNLP 2020) to our training records."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from retrievals_rag.data.converters._files import ConversionStats, PathLike, _open_text, _require_file
from retrievals_rag.data.jsonl import sample_in_order, write_jsonl
from retrievals_rag.data.records import DataFormatError

logger = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20  # characters read at a time from a JSON file
_NON_SPACE = re.compile(r"\S")

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
    """The ``{"title", "text"}`` passages of one context list, each with its passage id (or None); contexts
    without any text are left out."""
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
        if not (title.strip() or text.strip()):
            continue  # a context without text is nothing to learn from (training refuses an empty passage)
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
