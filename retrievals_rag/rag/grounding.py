"""Grounding an answer in the retrieved chunks: sentences, their relevance to the question, a relevance floor.

The pieces the answer modes of :mod:`retrievals_rag.rag.generate` share:

- :func:`split_units` cuts a chunk into answer units: sentences of prose, lines of lists, and whole records where
  a paragraph is a record (a CSV row as ``name: value`` lines, a JSON-lines record), so that "price: 24.50" is
  never shown without the item it prices; headings and fragments of fewer than four words are left out.
- :func:`plain_text` renders a unit as clean text: Markdown markup (headings, emphasis, links, code, list
  markers) removed.
- A :class:`SentenceScorer` scores units against the question on one documented scale:
  :class:`EmbeddingScorer` (the embedder's cosine similarity, query instruction on the question and document
  instruction on the units) or :class:`RerankerScorer` (a cross-encoder's probability).
- :func:`rank_units` scores every unit of the best chunks and says whether the question's words support it:
  a unit is *supported* when it (or the section heading it sits under) shares a content word with the question
  that is not a word of the chunk's title. A question about a document's subject shares the title's words with
  every sentence of it ("Norrvik Tools"); only a sentence that also speaks of what is asked ("parental leave")
  can answer it. A question whose words are all in the title ("What does insulin do?" over a page titled
  "Insulin") is about the subject as a whole: any sentence sharing one of its words supports it. Words are
  compared lower-cased, stopwords left out, with a crude suffix stemmer.
- :data:`DEFAULT_RELEVANCE_FLOORS` holds, per scale, the score below which the documents are taken not to contain
  the answer. An answer is grounded only in a supported unit at or above the floor; when there is none the
  answer says plainly that the documents do not contain it, and no language model is called.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "DEFAULT_RELEVANCE_FLOORS",
    "EmbeddingScorer",
    "RerankerScorer",
    "ScoredUnit",
    "SentenceScorer",
    "Unit",
    "content_words",
    "plain_text",
    "rank_units",
    "split_units",
]

DEFAULT_RELEVANCE_FLOORS: dict[str, float] = {"cosine similarity": 0.45}
"""Per scale, the best supported sentence's score below which the documents are taken not to answer the question.

The cosine floor was set with the packaged MiniLM on the question set of ``examples/rag/answer_quality.py``: the
answerable questions' best supported sentences score 0.53 to 0.89; of the 5 absent ones, one has a supported
sentence at all (0.09). No floor is set for the reranker's probability (not measured): give ``relevance_floor``
to :func:`retrievals_rag.rag.generate.answer` when scoring with :class:`RerankerScorer`.
"""

_MIN_WORDS = 4
_MAX_HEADING_WORDS = 10
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TERMINAL = re.compile(r"[.!?:;]['\")\]]*$")
_MARKDOWN_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")
_EMPHASIS_UNDERSCORE = re.compile(r"(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])")
_CODE = re.compile(r"`([^`]+)`")
_HEADING_MARKS = re.compile(r"^\s{0,3}#{1,6}\s+|\s+#+\s*$")
_BLOCKQUOTE = re.compile(r"^\s*>\s?")


def plain_text(text: str) -> str:
    """``text`` without Markdown markup, on one line.

    Example:
        >>> plain_text("- Every employee has **27 days** of [paid holiday](https://x.example) a `year`.")
        'Every employee has 27 days of paid holiday a year.'
        >>> plain_text("## Opening *hours*")
        'Opening hours'
        >>> plain_text("price_eur: 24.50")
        'price_eur: 24.50'
    """
    lines = []
    for line in text.splitlines():
        line = _BLOCKQUOTE.sub("", line)
        line = _HEADING_MARKS.sub("", line)
        line = _LIST_MARKER.sub("", line)
        line = _IMAGE.sub(r"\1", line)
        line = _LINK.sub(r"\1", line)
        line = _CODE.sub(r"\1", line)
        line = _STRONG.sub(r"\2", line)
        line = _EMPHASIS_STAR.sub(r"\1", line)
        line = _EMPHASIS_UNDERSCORE.sub(r"\1", line)
        lines.append(line.strip())
    return " ".join(line for line in lines if line)


def _is_record(lines: list[str]) -> bool:
    """A paragraph of several short lines most of which end without punctuation: a CSV row, a JSON record."""
    if len(lines) < 2:
        return False
    unterminated = sum(1 for line in lines if not _TERMINAL.search(line))
    return unterminated * 2 >= len(lines)


def _is_heading(line: str) -> bool:
    """A Markdown heading, or a short line of prose without end punctuation (a title, an HTML heading)."""
    if _MARKDOWN_HEADING.match(line):
        return True
    return not _TERMINAL.search(line) and " | " not in line and len(_WORD.findall(line)) <= _MAX_HEADING_WORDS


STOPWORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being below between "
    "both but by can could did do does doing down during each few for from further had has have having he her "
    "here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not "
    "now of off on once only or other our ours ourselves out over own same she should so some such than that the "
    "their theirs them themselves then there these they this those through to too under until up very was we "
    "were what when where which while who whom why will with would you your yours yourself yourselves".split()
)
"""English function words, left out when words of a question and a passage are compared (one list for rag/)."""
# a sentence's support also ignores quantity words, which match too much
_STOPWORDS = STOPWORDS | {"much", "many", "per"}
_SUFFIXES = ("ing", "ed", "es", "s")


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` without stopwords or one-letter words, crudely stemmed.

    Example:
        >>> sorted(content_words("Which laptops can the new employees choose?"))
        ['choose', 'employe', 'laptop', 'new']
    """
    words = set()
    for word in _WORD.findall(text.lower()):
        if len(word) < 2 or word in _STOPWORDS:
            continue
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        words.add(word)
    return words


@dataclass(frozen=True)
class Unit:
    """An answer unit of a chunk.

    Attributes:
        text: The unit as clean text (what an answer shows).
        title: The chunk's first heading, "" when none.
        section: The latest heading before the unit when it is not the title, "" when none.
    """

    text: str
    title: str = ""
    section: str = ""

    @property
    def context(self) -> str:
        """The headings the unit sits under, scored with it so that a sentence is matched with its subject."""
        return " - ".join(heading for heading in (self.title, self.section) if heading)

    @property
    def scored_text(self) -> str:
        """What a scorer reads: ``"context: text"``, or the text alone."""
        return f"{self.context}: {self.text}" if self.context else self.text


def split_units(text: str) -> list[Unit]:
    """The answer units of a chunk, in order (see the module's description).

    Example:
        >>> units = split_units("# Hours\\n\\nWe open at 8 am. We close at 4 pm on weekdays.\\n\\nitem: kettle\\nprice: 24.50")
        >>> [unit.text for unit in units]
        ['We open at 8 am.', 'We close at 4 pm on weekdays.', 'item: kettle; price: 24.50']
        >>> units[0].scored_text
        'Hours: We open at 8 am.'
    """
    units: list[Unit] = []
    title = ""
    section = ""
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        if not lines:
            continue
        if _is_record(lines) and not all(
            _is_heading(line) and _MARKDOWN_HEADING.match(line) for line in lines
        ):
            pieces = ["; ".join(plain_text(line) for line in lines if not _MARKDOWN_HEADING.match(line))]
        else:
            pieces = []
            for line in lines:
                if _is_heading(line):
                    section = plain_text(line)
                    title = title or section
                    continue
                pieces.extend(_SENTENCE_END.split(plain_text(line)))
        subsection = "" if section == title else section
        units.extend(
            Unit(piece.strip(), title, subsection)
            for piece in pieces
            if len(_WORD.findall(piece)) >= _MIN_WORDS
        )
    return units


@runtime_checkable
class SentenceScorer(Protocol):
    """Scores answer units against a question on one scale (higher is more relevant).

    Attributes:
        scale: The scale's name (a key of :data:`DEFAULT_RELEVANCE_FLOORS` for the built-in scorers).
    """

    scale: str

    def score(self, question: str, units: Sequence[str]) -> list[float]:
        """One score per unit, in input order, as Python floats."""
        ...


class EmbeddingScorer:
    """The embedder's cosine similarity between the question and each unit (``scale = "cosine similarity"``).

    The question gets the embedder's query instruction and the units its document instruction, as in retrieval.
    Embeddings of units are cached by text (a chunk's sentences are scored again for the next question).

    Args:
        embedder: An ``AutoModelForEmbedding`` (anything with ``encode_queries`` and ``encode_corpus``).
        cache_size: Most unit embeddings kept.
    """

    scale = "cosine similarity"

    def __init__(self, embedder: Any, *, cache_size: int = 20_000) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self._cache: dict[str, np.ndarray] = {}

    def score(self, question: str, units: Sequence[str]) -> list[float]:
        if not units:
            return []
        missing = [unit for unit in dict.fromkeys(units) if unit not in self._cache]
        if missing:
            vectors = _unit_rows(self.embedder.encode_corpus(missing))
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, vectors, strict=True))
        query = _unit_rows(self.embedder.encode_queries([question]))[0]  # (dim,)
        matrix = np.stack([self._cache[unit] for unit in units])  # (n_units, dim)
        return [float(value) for value in matrix @ query]


class RerankerScorer:
    """A cross-encoder's (or LLM ranker's) probability that a unit answers the question.

    Args:
        ranker: An ``AutoModelForRanking`` or ``LLMRanker`` (anything with ``compute_score(pairs, normalize=)``).
    """

    scale = "reranker probability"

    def __init__(self, ranker: Any) -> None:
        self.ranker = ranker

    def score(self, question: str, units: Sequence[str]) -> list[float]:
        if not units:
            return []
        scores = self.ranker.compute_score([(question, unit) for unit in units], normalize=True)
        return [float(score) for score in np.atleast_1d(np.asarray(scores, dtype=np.float64))]


def _unit_rows(embeddings: Any) -> np.ndarray:
    """L2-normalised float32 rows from an embedder's output (numpy or torch)."""
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().float().cpu().numpy()
    matrix = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class ScoredUnit:
    """An answer unit with its score and where it comes from.

    Attributes:
        text: The unit, as clean text.
        score: Its relevance to the question, on the scorer's scale.
        source_number: The citation number of its chunk (1 for the best chunk).
        position: Its position within the chunk's units.
        supported: Whether it shares a content word with the question outside the chunk's title (see the
            module's description).
    """

    text: str
    score: float
    source_number: int
    position: int
    supported: bool = True


def _supported(asked: set[str], unit: Unit) -> bool:
    """Whether the unit (or its section heading) shares a question word that is not a word of the chunk's title;
    when every word of the question is in the title (a question about the subject as a whole), any shared word."""
    beyond_title = asked - content_words(unit.title)
    return bool((beyond_title or asked) & content_words(f"{unit.section} {unit.text}"))


def rank_units(
    question: str, chunk_texts: Sequence[str], scorer: SentenceScorer, *, max_chunks: int | None = None
) -> list[ScoredUnit]:
    """Score every unit of the first ``max_chunks`` chunks (None: all); best first, ties by chunk then position.

    Each unit is scored with its headings (:attr:`Unit.scored_text`). A unit repeated in two chunks (an overlap)
    is kept once, under the better-ranked chunk.
    """
    seen: set[str] = set()
    located: list[tuple[Unit, int, int]] = []
    for number, text in enumerate(chunk_texts[:max_chunks], start=1):
        for position, unit in enumerate(split_units(text)):
            if unit.text not in seen:
                seen.add(unit.text)
                located.append((unit, number, position))
    scores = scorer.score(question, [unit.scored_text for unit, _, _ in located])
    asked = content_words(question)
    ranked = [
        ScoredUnit(unit.text, score, number, position, supported=_supported(asked, unit))
        for (unit, number, position), score in zip(located, scores, strict=True)
    ]
    ranked.sort(key=lambda unit: (-unit.score, unit.source_number, unit.position))
    return ranked
