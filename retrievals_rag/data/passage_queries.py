"""Pseudo-queries taken from the passage itself, with no model: a span of it, or its heading.

- :class:`CroppingGenerator`: a sentence of the passage (cut to at most ``max_words`` words) is its pseudo-query:
  the inverse-cloze / cropping method (Lee et al. 2019, ICT; Izacard et al. 2022, Contriever).
- :class:`HeadingGenerator`: the passage's first line, when it reads as a heading (a title, a Markdown heading), is
  the pseudo-query for the text below it; the heading is then cut from every passage that training sees
  (:func:`split_heading`), so the model learns to find a text from what its title says, not to match the title's
  words (title / body pairs are a classic weak supervision for retrieval: Chang et al. 2020, "Pre-training Tasks
  for Embedding-based Large-scale Retrieval"; the title / abstract pairs of S2ORC in all-MiniLM's training data).

Both are used through :func:`retrievals_rag.data.generation.generate_questions` like the chat generators, at
thousands of passages a second.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from retrievals_rag.data.text_units import UNSPACED_RUN, UNSPACED_SENTENCE_MARKS, word_spans, word_weight
from retrievals_rag.llm.base import GenerationError

__all__ = ["CroppingGenerator", "HeadingGenerator", "check_question_count", "cut_span", "split_heading"]

_SENTENCE_END = re.compile(rf"(?<=[.!?])\s+|(?<=[{UNSPACED_SENTENCE_MARKS}])\s*|\n+")
_MARKDOWN_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s+|$)")
_WORD_CHARACTER = re.compile(r"\w")
_CLOSING_HASHES = re.compile(r"\s+#+\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s*(?:=+|-+)\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022|>]|\d{1,3}[.)])\s")
# a line ending with one of these goes on in the next one (full-width: ，、；（ of Chinese and Japanese)
_CONTINUED = ",;-\u2013\u2014(/&\uff0c\u3001\uff1b\uff08"


def check_question_count(questions_per_passage: int) -> None:
    """Raise ``ValueError`` unless ``questions_per_passage`` is an integer >= 1."""
    if (
        isinstance(questions_per_passage, bool)
        or not isinstance(questions_per_passage, int)
        or questions_per_passage < 1
    ):
        raise ValueError(f"questions_per_passage must be an integer >= 1, got {questions_per_passage!r}")


def split_heading(passage: str, *, max_words: int = 32, max_chars: int = 300) -> tuple[str, str] | None:
    r"""The heading of ``passage`` and the text below it, or None when its first line is not a heading.

    The first non-empty line is a heading when it is a Markdown heading (``# Title``, or a line underlined with
    ``===`` / ``---``), or a line of at most ``max_words`` words (a character of Chinese, Japanese, Thai... weighs
    half a word: :func:`~retrievals_rag.data.text_units.word_weight`) and ``max_chars`` characters that is not a list
    item or table row, does not end as if the sentence went on (a comma, a hyphen...), and is not followed by a
    line that starts in lower case (hard-wrapped prose). The text below must be non-empty and longer than the
    heading. Markdown marks are removed from the heading; the text below is stripped.

    Example:
        >>> split_heading("# Insulin\nInsulin lowers the level of glucose in the blood.")
        ('Insulin', 'Insulin lowers the level of glucose in the blood.')
        >>> split_heading("The cell divides when\nthe signal arrives, and then it grows.") is None
        True
    """
    first, newline, rest = passage.strip().partition("\n")
    if not newline:
        return None
    lines = rest.split("\n")
    underlined = bool(lines) and bool(_SETEXT_UNDERLINE.match(lines[0]))
    if underlined:
        lines = lines[1:]
    body = "\n".join(lines).strip()
    marked = underlined or bool(_MARKDOWN_HEADING.match(first))
    heading = _CLOSING_HASHES.sub("", _MARKDOWN_HEADING.sub("", first)).strip() if marked else first.strip()
    if not _WORD_CHARACTER.search(heading) or not body or len(body) <= len(heading):
        return None
    if word_weight(heading) > max_words or len(heading) > max_chars:
        return None
    if not marked and (_LIST_ITEM.match(first) or heading[-1] in _CONTINUED or body[0].islower()):
        return None
    return heading, body


class CroppingGenerator:
    """Pseudo-queries cut from the passage itself: a sentence, or a window of it when it is long.

    For each passage, ``questions_per_passage`` different sentences (of at least ``min_words`` words) are drawn,
    and one longer than ``max_words`` is cut to a random window of ``max_words`` words. Draws depend on ``seed``
    and the passage's text only. A passage too short for a sentence of ``min_words`` words gives its first
    ``max_words`` words.

    Args:
        questions_per_passage: spans per passage.
        min_words: shortest sentence taken as it is.
        max_words: longest span.
        seed: seed of the draws.
        span_removal: share of the training examples whose span is cut out of their positive passage
            (:meth:`training_positive`; 0 keeps every positive whole).
    """

    name = "cropping"
    chat = False
    accepted = "have text"

    def __init__(
        self,
        questions_per_passage: int = 1,
        *,
        min_words: int = 5,
        max_words: int = 24,
        seed: int = 0,
        span_removal: float = 0.0,
    ) -> None:
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
        if isinstance(span_removal, bool) or not 0 <= span_removal <= 1:
            raise ValueError(f"span_removal must be in [0, 1], got {span_removal!r}")
        self.span_removal = float(span_removal)
        check_question_count(questions_per_passage)
        self.questions_per_passage = questions_per_passage
        self.min_words = min_words
        self.max_words = max_words
        self.seed = seed

    def generate(self, passages: Sequence[str], keys: Sequence[str]) -> list[list[str] | GenerationError]:
        return [self._crops(passage, key) for passage, key in zip(passages, keys, strict=True)]

    def accepts(self, passage: str) -> bool:
        return bool(passage.split())

    def training_text(self, passage: str) -> str:
        return passage  # as a negative, whole; as its own span's positive, see training_positive

    def training_positive(self, question: str, passage: str, rng: random.Random) -> str:
        """The inverse cloze task (Lee et al. 2019): in a ``span_removal`` share of the examples (one draw of
        ``rng`` each), the span is cut out of its positive (:func:`cut_span`), so that it must be matched to the
        rest of its passage, not found in it word for word."""
        return (
            cut_span(question, passage) if self.span_removal and rng.random() < self.span_removal else passage
        )

    def _crops(self, passage: str, key: str) -> list[str]:
        """Spans of whole words (:func:`~retrievals_rag.data.text_units.word_spans`: a character of Chinese,
        Japanese, Thai... is a word), cut from the passage as written, white space runs made single spaces."""
        rng = random.Random(f"{self.seed}\x00{key}")
        sentences = [(part, word_spans(part)) for part in _SENTENCE_END.split(passage)]
        usable = [(text, spans) for text, spans in sentences if len(spans) >= self.min_words]
        if not usable:
            spans = word_spans(passage)
            return [_span_text(passage, spans[: self.max_words])] if spans else []
        chosen = rng.sample(usable, min(self.questions_per_passage, len(usable)))
        crops = []
        for text, spans in chosen:
            if len(spans) > self.max_words:
                start = rng.randrange(len(spans) - self.max_words + 1)
                spans = spans[start : start + self.max_words]
            crops.append(_span_text(text, spans))
        return crops

    def __repr__(self) -> str:
        return (
            f"CroppingGenerator(questions_per_passage={self.questions_per_passage}, max_words={self.max_words}, "
            f"span_removal={self.span_removal})"
        )


class HeadingGenerator:
    """The passage's heading as its pseudo-query (:func:`split_heading`): one per passage that has one.

    A passage without a heading gets an empty question (counted as ``empty`` by the filter); in a chunked
    document only the chunks that open with a heading have one, and
    :func:`~retrievals_rag.training.adapt.adapt_embedder` samples among those. Training then sees each passage
    without its heading (:meth:`training_text`).

    Args:
        max_words: the longest first line taken as a heading, in words (a character of an unspaced script weighs
            half a word: 32 words are 64 characters of Chinese).
        max_chars: ... and in characters.
    """

    name = "title"
    chat = False
    accepted = "open with a title or heading"

    def __init__(self, *, max_words: int = 32, max_chars: int = 300) -> None:
        if max_words < 1 or max_chars < 1:
            raise ValueError(f"max_words and max_chars must be >= 1, got {max_words} and {max_chars}")
        self.max_words = max_words
        self.max_chars = max_chars

    def generate(self, passages: Sequence[str], keys: Sequence[str]) -> list[list[str] | GenerationError]:
        del keys  # nothing drawn at random
        return [[self.heading(passage) or ""] for passage in passages]

    def heading(self, passage: str) -> str | None:
        """The heading of ``passage``, or None when it has none."""
        parts = split_heading(passage, max_words=self.max_words, max_chars=self.max_chars)
        return parts[0] if parts else None

    def accepts(self, passage: str) -> bool:
        """Whether ``passage`` opens with a heading."""
        return self.heading(passage) is not None

    def training_text(self, passage: str) -> str:
        """``passage`` without its heading (the whole passage when it has none): a heading must lead to its
        text, not to its own words."""
        parts = split_heading(passage, max_words=self.max_words, max_chars=self.max_chars)
        return parts[1] if parts else passage.strip()

    def training_positive(self, question: str, passage: str, rng: random.Random) -> str:
        del question, rng  # the heading is already off every passage (training_text)
        return passage

    def __repr__(self) -> str:
        return f"HeadingGenerator(max_words={self.max_words}, max_chars={self.max_chars})"


def _span_text(text: str, spans: list[tuple[int, int]]) -> str:
    """The text from the first span's start to the last one's end, its white space runs made single spaces."""
    return " ".join(text[spans[0][0] : spans[-1][1]].split())


def cut_span(span: str, passage: str) -> str:
    """``passage`` without the first occurrence of ``span`` (matched word by word across the passage's own
    whitespace, which the rest keeps); the passage itself when it does not hold the span or nothing would be left.
    """
    words = span.split()
    if not words:
        return passage
    match = re.search(r"\s+".join(re.escape(word) for word in words), passage)
    if match is None:
        return passage
    before, after = passage[: match.start()], passage[match.end() :]
    # the cut leaves a space, except beside a script written without spaces (Chinese, Japanese...)
    unspaced = bool(UNSPACED_RUN.fullmatch(before[-1:]) or UNSPACED_RUN.fullmatch(after[:1]))
    rest = f"{before}{'' if unspaced else ' '}{after}".strip()
    return re.sub(r" {2,}", " ", rest) if rest else passage
