"""The rules a generated question must pass before it becomes training data (:class:`QuestionFilter`).

Each dropped question is counted by its reason (:data:`DROP_REASONS`): ``empty``; ``duplicate`` (kept already:
judged by :func:`~retrievals_rag.data.generation.generate_questions`, which holds the run's state, on
:func:`normalized_question`); ``copied`` (a run of ``copy_ngram`` words taken verbatim from the passage, or the
whole question when shorter, where a character of a script written without spaces weighs half a word: chat
generators only, copying is what cropping does); ``too_long``; ``garbage`` (no
letters, or, from a chat model and unless ``reply_form="any"``, not a question: neither ending with a question
mark of any script nor one sentence that opens with an interrogative word); ``off_topic`` (from a chat model: no
topic term in common with the passage; see :func:`topic_terms`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from retrievals_rag.data.text_units import UNSPACED_RUN, character_pairs, word_tokens, word_weight

__all__ = ["DROP_REASONS", "DropReason", "QuestionFilter", "ReplyForm", "normalized_question", "topic_terms"]

ReplyForm = Literal["question", "any"]
DropReason = Literal["empty", "duplicate", "copied", "too_long", "garbage", "off_topic"]
DROP_REASONS: tuple[str, ...] = ("empty", "duplicate", "copied", "too_long", "garbage", "off_topic")

_WORD = re.compile(r"\w+", re.UNICODE)
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_QUESTION_MARKS = "?\uff1f\u061f\u037e"  # ASCII, full-width (Chinese, Japanese), Arabic, Greek
_INTERROGATIVES = frozenset(
    "what which who whom whose when where why how is are was were do does did can could should would will shall "
    "may might has have had".split()
)
_NOT_CONTENT = frozenset(
    "about which where there their these those would could should might answer answers answered question "
    "questions passage passages text texts above below given write person search engine please thank".split()
)


@dataclass(frozen=True)
class QuestionFilter:
    """The rules a generated question must pass (see the module's docstring).

    Args:
        max_words: most words in a question (a character of Chinese, Japanese, Thai... weighs half a word:
            :func:`~retrievals_rag.data.text_units.word_weight`; 48 words are 96 of them).
        copy_ngram: a run of this many words shared with the passage means copied (chat generators only; eight
            words are sixteen characters of Chinese, Japanese, Thai...).
        min_copy_words: a question of at least this many words found whole in the passage is copied too.
        reply_form: ``"question"``: a chat model's reply must read as a question (a question mark, or one sentence
            that opens with an interrogative word), else it is ``garbage``; ``"any"``: for prompts that ask for
            claims, statements or keywords, only the other checks apply.
    """

    max_words: int = 48
    copy_ngram: int = 8
    min_copy_words: int = 4
    reply_form: ReplyForm = "question"

    def __post_init__(self) -> None:
        for name in ("max_words", "copy_ngram", "min_copy_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"QuestionFilter.{name} must be an integer >= 1, got {value!r}")
        if self.reply_form not in ("question", "any"):
            raise ValueError(
                f"QuestionFilter.reply_form must be 'question' or 'any', got {self.reply_form!r}"
            )

    def reason(self, question: str, passage: str, chat: bool = True) -> DropReason | None:
        """Why ``question``, written for ``passage``, is dropped (duplicates aside, which need the run's state), or
        None. ``chat``: written by a chat model (the question, topic and copy checks apply), not cut from the
        passage."""
        if not question.strip():
            return "empty"
        if not _LETTER.search(question):
            return "garbage"
        words = [word.lower() for word in _WORD.findall(question)]
        if word_weight(question) > self.max_words:
            return "too_long"
        if chat and self.reply_form == "question" and not _question_like(question, words):
            return "garbage"
        if chat and not topic_terms(question) & topic_terms(passage):
            return "off_topic"
        if chat and self._copied(question, passage):
            return "copied"
        return None

    def _copied(self, question: str, passage: str) -> bool:
        """A run of the question's words weighing ``copy_ngram`` (the whole question when it weighs less, if at
        least ``min_copy_words``) found verbatim, case-blind, in the passage."""
        tokens = [token.lower() for token in word_tokens(question)]
        weights = [word_weight(token) for token in tokens]
        total = sum(weights)
        passage_tokens = [token.lower() for token in word_tokens(passage)]
        grams: dict[int, set[tuple[str, ...]]] = {}  # the passage's runs, by their length in tokens

        def in_passage(run: list[str]) -> bool:
            if len(run) not in grams:
                grams[len(run)] = {
                    tuple(passage_tokens[i : i + len(run)]) for i in range(len(passage_tokens) - len(run) + 1)
                }
            return tuple(run) in grams[len(run)]

        if total < self.copy_ngram:
            return total >= min(self.copy_ngram, self.min_copy_words) and in_passage(tokens)
        for start in range(len(tokens)):
            end, weight = start, 0.0
            while end < len(tokens) and weight < self.copy_ngram:
                weight += weights[end]
                end += 1
            if weight < self.copy_ngram:
                return False
            if in_passage(tokens[start:end]):
                return True
        return False


def _question_like(question: str, words: list[str]) -> bool:
    """Ends with a question mark (of any script), or is one sentence that opens with an interrogative word."""
    if question.rstrip()[-1:] in _QUESTION_MARKS:
        return True
    return bool(words and words[0] in _INTERROGATIVES) and not re.search(r"[.!?]\s", question)


def topic_terms(text: str) -> set[str]:
    """What a question must share with its passage to be on its topic, compared case-blind.

    - a word of five characters or more, not of the vocabulary of asking itself, by its first six characters (so
      "regulating" meets "regulate", "steroidogenesis" meets "steroidogenic");
    - a short name: a word with a digit and a letter ("SF1", "p53", "H1N1") or in capitals ("HIV", "DNA"), unless the
      whole text is in capitals;
    - in scripts written without spaces (Chinese, Japanese, Thai, ...), each pair of adjacent characters.
    """
    terms: set[str] = set()
    shouting = text.upper() == text
    for run in UNSPACED_RUN.findall(text):
        terms.update(character_pairs(run))
    for word in _WORD.findall(UNSPACED_RUN.sub(" ", text)):
        lower = word.lower()
        if len(lower) >= 5 and lower not in _NOT_CONTENT:
            terms.add(lower[:6])
        elif (
            len(word) >= 2
            and _LETTER.search(word)
            and (any(char.isdigit() for char in word) or (word.isupper() and not shouting))
        ):
            terms.add(lower)
    return terms


def normalized_question(question: str) -> str:
    """The question lower-cased, its words joined by single spaces: what two duplicates share."""
    return " ".join(_WORD.findall(question.lower()))
