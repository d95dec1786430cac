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
- :class:`SupportCheck` decides whether a sentence a language model wrote from the best units is supported by
  them (its numbers and names are in them, most of its words are, it tells something the question does not, and
  a question asking for a quantity gets a number), and which sources it rests on: the citations to show.
  :func:`sentence_end` finds where the first sentence of a text being generated ends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from retrievals_rag.data.text_units import UNSPACED_RUN, UNSPACED_SENTENCE_MARKS, character_pairs, word_weight

__all__ = [
    "DEFAULT_RELEVANCE_FLOORS",
    "EmbeddingScorer",
    "RerankerScorer",
    "ScoredUnit",
    "SentenceScorer",
    "SupportCheck",
    "SupportVerdict",
    "Unit",
    "content_words",
    "plain_text",
    "rank_units",
    "sentence_end",
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
SENTENCE_MARKS = ".!?\u061f\u06d4\u0964"
"""Marks that end a sentence when white space follows: ``. ! ?``, the Arabic question mark and full stop, the
Devanagari danda. Chinese and Japanese end one with a full-width mark and no space
(:data:`~retrievals_rag.data.text_units.UNSPACED_SENTENCE_MARKS`)."""
# after a spaced mark, a sentence starts only where a lower-case letter does not follow ("e.g. the")
_SENTENCE_END = re.compile(
    rf"(?<=[{SENTENCE_MARKS}])(?P<space>\s+)(?=\S)|(?<=[{UNSPACED_SENTENCE_MARKS}])\s*(?=\S)"
)
_TERMINAL = re.compile(
    rf"[{SENTENCE_MARKS}:;{UNSPACED_SENTENCE_MARKS}\uff1a\uff1b]['\")\]\u300d\u300f\uff09]*$"
)
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
_REPLY_END = re.compile(
    rf"[{SENTENCE_MARKS}]['\")\]]*(?:\s*\[\d{{1,3}}\])*(?=\s)"
    rf"|[{UNSPACED_SENTENCE_MARKS}][\u300d\u300f\uff09]*(?:\s*\[\d{{1,3}}\])*(?=[^\[])|\n"
)
_ABBREVIATIONS = frozenset("dr mr mrs ms prof st mt no nr vs approx etc ca".split())
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_CITATION_MARK = re.compile(r"\s*\[\d{1,3}\]")
_QUANTITY_QUESTION = re.compile(
    r"\bhow (?:much|many|long|tall|old|far|soon|big|high|heavy|large|wide|deep)\b|\bwhat time\b|"
    r"\b(?:which|what) (?:year|date|century|decade)\b|\b(?:hours|price|cost|costs)\b",
    re.IGNORECASE,
)
# "When ...?", "Since when ...?", "..., and when ...?"; not "What happens when ...?" (a condition)
_TIME_QUESTION = re.compile(
    r"(?:^|[,;:(]|\b(?:and|but)\b)\W*(?:(?:since|until|till|by|from)\s+)?when\b", re.IGNORECASE
)
_DATE_WORD = re.compile(  # capitalised: "May", not "may"
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December|Monday|"
    r"Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)s?\b|\b(?:noon|midnight)\b"
)


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


def _after_abbreviation(text: str) -> bool:
    """Whether ``text`` ends with a title's abbreviation or an initial ("Dr.", "J."): no sentence ends there."""
    words = _WORD.findall(text[-12:])
    if not words or not text.endswith("."):
        return False
    last = words[-1]
    return last.lower() in _ABBREVIATIONS or (len(last) == 1 and last.isupper())


def _split_sentences(text: str) -> list[str]:
    """Sentences of one line of prose; "Dr. Ana Ruiz" and "e.g. the" stay in one sentence.

    After an end mark and white space, a sentence starts with a digit, a quote, a parenthesis or a letter that is
    not lower-case: a capital, or a letter of a script without case (Arabic, Hebrew, Devanagari...).
    """
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        following = text[match.end()]
        if match.group("space") and not (
            following.isdigit() or following in "\"'(" or (following.isalpha() and not following.islower())
        ):
            continue
        pieces.append(text[start : match.start()])
        start = match.end()
    pieces.append(text[start:])
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _after_abbreviation(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def sentence_end(text: str) -> int | None:
    """Where the first sentence of ``text`` ends (past its end mark and any ``[n]`` after it), or None when
    ``text`` holds no complete sentence yet: an end mark followed by white space, or a line break.

    Example:
        >>> text = "Dr. Ana Ruiz leads it [1]. Bring a torch."
        >>> text[: sentence_end(text)]
        'Dr. Ana Ruiz leads it [1].'
        >>> sentence_end("It costs 24.50") is None
        True
    """
    for match in _REPLY_END.finditer(text):
        if match.group() == "\n":
            if text[: match.start()].strip():
                return match.start()
            continue
        if not _after_abbreviation(text[: match.start() + 1]):
            return match.end()
    return None


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
    return not _TERMINAL.search(line) and " | " not in line and word_weight(line) <= _MAX_HEADING_WORDS


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
    """Lower-cased words of ``text`` without stopwords or one-letter words, crudely stemmed; in a script written
    without spaces (Chinese, Japanese, ...), each pair of adjacent characters
    (:mod:`retrievals_rag.data.text_units`).

    Example:
        >>> sorted(content_words("Which laptops can the new employees choose?"))
        ['choose', 'employe', 'laptop', 'new']
        >>> sorted(content_words("胰岛素的作用"))
        ['作用', '岛素', '的作', '素的', '胰岛']
    """
    words = set()
    lowered = text.lower()
    for run in UNSPACED_RUN.findall(lowered):
        words.update(character_pairs(run))
    for word in _WORD.findall(UNSPACED_RUN.sub(" ", lowered)):
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
                pieces.extend(_split_sentences(plain_text(line)))
        subsection = "" if section == title else section
        units.extend(
            Unit(piece.strip(), title, subsection) for piece in pieces if word_weight(piece) >= _MIN_WORDS
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


def _numbers(text: str) -> set[str]:
    """The numbers written in digits in ``text`` ("24.50", "7:45", "1872")."""
    return {number.rstrip(".,:") for number in _NUMBER.findall(text)}


def _is_written(word: str, written: set[str]) -> bool:
    """Whether ``word`` is in ``written`` as it is, or with a plural ending more or less ("Monday", "Mondays")."""
    return any(
        form in written
        for form in (word, f"{word}s", f"{word}es", word.removesuffix("s"), word.removesuffix("es"))
    )


def _names(sentence: str) -> list[str]:
    """Capitalised words of ``sentence`` other than its first: names, places, days, months."""
    return [word for word in _WORD.findall(sentence)[1:] if word[0].isupper() and not word.isdigit()]


@dataclass(frozen=True)
class SupportVerdict:
    """What :class:`SupportCheck` found about a sentence written by a language model.

    Attributes:
        sentence: The sentence as checked: clean text, its own ``[n]`` marks removed.
        supported: Whether it passed every rule.
        reason: Why not (``"the number 160 is in none of the sources"``); ``""`` when supported.
        source_numbers: The sources it rests on, the one it shares most with first: the citations to show.
            Empty when it is not supported.
    """

    sentence: str
    supported: bool
    reason: str = ""
    source_numbers: tuple[int, ...] = ()


@dataclass(frozen=True)
class SupportCheck:
    """Whether a sentence a language model wrote from some sources is supported by them, and which ones.

    The rules, in order (the first that fails is the reason):

    1. Every number written in digits in it is in the sources or the question.
    2. Every capitalised word after its first (a name, a place, a day) is written in the sources or the question
       (a plural ending aside: "Highland Star Coaching" is not "Highland Star Coaches").
    3. A question asking for a quantity, a time or a price ("how much", "how many", "what time", "what year",
       "hours"...) is answered with a number of the sources that the question does not hold; a "when" question
       with such a number or a month's or weekday's name of the sources.
    4. It tells something the question does not: a word or number of the sources beyond the question's.
    5. At least ``min_supported_fraction`` of its content words are words of the sources or the question.

    Words are compared as in :func:`content_words` (lower-cased, stopwords left out, crudely stemmed). The
    sentence is cited with the source it shares the most such words with, then any other source that alone
    holds one of its numbers or names. The rules catch what a small model invents (a date, a person, a place,
    arithmetic on the sources' numbers, a refusal although the sources answer); they cannot tell a true
    sentence that misses the point from the answer, which is why the question's kind is checked (rule 3).

    Args:
        min_supported_fraction: Rule 5's share; 0.6 measured on the question set of
            ``examples/rag/answer_quality.py`` with SmolLM2-135M (at 0.75, correct answers that add a word such as
            "located" or "takes place" were refused).

    Example:
        >>> check = SupportCheck()
        >>> sources = [(1, "A plot costs 35 pounds a year, paid every April.")]
        >>> check.check("A plot costs 35 pounds a year [1].", "How much does a plot cost?", sources)
        SupportVerdict(sentence='A plot costs 35 pounds a year.', supported=True, reason='', source_numbers=(1,))
        >>> check.check("It costs 35 * 4 = 140 pounds.", "How much does a plot cost?", sources).reason
        'the number 140 is in none of the sources'
    """

    min_supported_fraction: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_supported_fraction <= 1.0:
            raise ValueError(f"min_supported_fraction must be in [0, 1], got {self.min_supported_fraction!r}")

    def check(self, sentence: str, question: str, sources: Sequence[tuple[int, str]]) -> SupportVerdict:
        """Check ``sentence`` (the model's answer to ``question``) against ``sources``.

        Args:
            sentence: One sentence written by the model.
            question: The question it answers.
            sources: ``(citation number, text the model was given from that source)`` pairs, best first.
        """
        text = plain_text(_CITATION_MARK.sub("", sentence))
        text = re.sub(r"\s+([.!?,;:])", r"\1", text).strip()

        def refused(reason: str) -> SupportVerdict:
            return SupportVerdict(text, False, reason)

        if not _WORD.search(text):
            return refused("it is empty")
        given = " ".join(source for _, source in sources)
        known_numbers = _numbers(given) | _numbers(question)
        known_words = content_words(given) | content_words(question)
        numbers = _numbers(text)
        for number in sorted(numbers - known_numbers):
            return refused(f"the number {number} is in none of the sources")
        written = {word.lower() for word in _WORD.findall(f"{given} {question}")}
        for name in _names(text):
            if not _is_written(name.lower(), written):
                return refused(f"{name!r} is in none of the sources")
        asked_words, asked_numbers = content_words(question), _numbers(question)
        new_numbers = (numbers & _numbers(given)) - asked_numbers
        if _TIME_QUESTION.search(question) and not new_numbers:
            # a day or a month of the sources answers "when" too ("on Mondays", "every April")
            if not (_date_words(text) & _date_words(given)) - _date_words(question):
                return refused("the question asks for a time and it gives none from the sources")
        elif _QUANTITY_QUESTION.search(question) and not new_numbers:
            return refused("the question asks for a number and it gives none from the sources")
        words = content_words(text)
        if not ((words & content_words(given)) - asked_words) and not new_numbers:
            return refused("it tells nothing the question does not")
        share = len(words & known_words) / len(words) if words else 1.0
        if share < self.min_supported_fraction:
            return refused(f"only {share:.0%} of its words are in the sources")
        return SupportVerdict(text, True, "", _resting_on(text, words - asked_words, sources, asked_numbers))


def _date_words(text: str) -> set[str]:
    """The names of months and weekdays (and noon, midnight) in ``text``, lower-cased, without a plural ending."""
    return {word.lower().removesuffix("s") for word in _DATE_WORD.findall(text)}


def _resting_on(
    text: str, words: set[str], sources: Sequence[tuple[int, str]], asked_numbers: set[str]
) -> tuple[int, ...]:
    """The sources a supported sentence rests on: the one sharing most words (numbers included) beyond the
    question, then others that alone hold one of its numbers or names."""
    numbers = _numbers(text) - asked_numbers
    shared = [
        (len(words & content_words(source)) + len(numbers & _numbers(source)), index)
        for index, (_, source) in enumerate(sources)
    ]
    best = max(shared, key=lambda pair: (pair[0], -pair[1]))[1]
    chosen = [sources[best][0]]
    best_words, best_numbers = content_words(sources[best][1]), _numbers(sources[best][1])
    specific = {word for name in _names(text) for word in content_words(name)} - best_words
    for number, source in sources:
        if number not in chosen and (
            (numbers - best_numbers) & _numbers(source) or specific & content_words(source)
        ):
            chosen.append(number)
    return tuple(chosen)
