"""Words in every script: what counts as a word where a language writes no spaces between words.

Chinese, Japanese, Thai, Lao and Burmese write a sentence as one run of characters, so splitting on white space
(or matching ``\\w+``) makes a whole sentence one "word": a BM25 index that matches nothing, a sentence that
counts as a one-word fragment, a "span" that is the whole passage. The rule used everywhere in the package
instead, one copy of it:

- **cutting**: each character of such a run is a word (:func:`word_spans`), so a span never splits a character;
- **weighing** (how long a text is: a heading, a question, a copied run): each such character weighs half a word
  (:func:`word_weight`, :data:`UNSPACED_WORD_WEIGHT`), a Chinese or Japanese word being about two characters, so
  a limit of ten words is twenty of their characters;
- **matching**: a run is compared by its pairs of adjacent characters (:func:`character_pairs`,
  :func:`segment_unspaced`), the overlapping bigrams of Lucene's ``CJKAnalyzer``: most Chinese words are two
  characters, and a pair matches across the word boundaries that no segmenter is needed to find;
- **sentence ends**: the full-width marks ``。！？`` end a sentence without white space after them
  (:data:`UNSPACED_SENTENCE_MARKS`).

Korean, written with spaces between words, is split like English.

Example:
    >>> word_weight("胰岛素降低血糖 insulin")
    4.5
    >>> character_pairs("胰岛素")
    ['胰岛', '岛素']
    >>> segment_unspaced("β细胞分泌胰岛素").split()
    ['β', '细胞', '胞分', '分泌', '泌胰', '胰岛', '岛素']
"""

from __future__ import annotations

import re

__all__ = [
    "UNSPACED_CHARACTERS",
    "UNSPACED_RUN",
    "UNSPACED_SENTENCE_MARKS",
    "UNSPACED_WORD_WEIGHT",
    "character_pairs",
    "segment_unspaced",
    "word_spans",
    "word_tokens",
    "word_weight",
]

UNSPACED_CHARACTERS = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Burmese
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
)
"""A regular-expression character class body: the characters of scripts written without spaces between words."""
UNSPACED_RUN = re.compile(f"[{UNSPACED_CHARACTERS}]+")
UNSPACED_SENTENCE_MARKS = "\u3002\uff01\uff1f"
"""``。！？``: sentence ends that need no white space after them."""
UNSPACED_WORD_WEIGHT = 0.5
"""What one character of an unspaced script weighs as a word: most Chinese words are two characters (the fact the
character pairs rest on too)."""

_UNIT = re.compile(f"[{UNSPACED_CHARACTERS}]|[^\\s{UNSPACED_CHARACTERS}]+")
_WORD_TOKEN = re.compile(f"[{UNSPACED_CHARACTERS}]|(?:(?![{UNSPACED_CHARACTERS}])\\w)+")


def character_pairs(run: str) -> list[str]:
    """The pairs of adjacent characters of ``run`` (none for a single character)."""
    return [run[index : index + 2] for index in range(len(run) - 1)]


def segment_unspaced(text: str) -> str:
    """``text`` with each run of an unspaced script written as its character pairs, separated by spaces (a
    run of one character stays as it is); text in other scripts is unchanged. What a word tokenizer (BM25's)
    should read."""
    return UNSPACED_RUN.sub(
        lambda match: f" {' '.join(character_pairs(match.group())) or match.group()} ", text
    )


def word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of the words of ``text``: runs of characters between white space, each
    character of an unspaced script on its own (punctuation stays with the word it touches)."""
    return [match.span() for match in _UNIT.finditer(text)]


def word_tokens(text: str) -> list[str]:
    """The words of ``text`` without punctuation (``\\w`` runs), each character of an unspaced script one word:
    what comparing two texts word by word (a copied run) reads."""
    return _WORD_TOKEN.findall(text)


def word_weight(text: str) -> float:
    """How many words long ``text`` is: each ``\\w`` run of a spaced script one, each character of an unspaced
    script :data:`UNSPACED_WORD_WEIGHT`. The one measure of a text's length in words that limits compare with
    (a heading's, a question's, a copied run's)."""
    return sum(UNSPACED_WORD_WEIGHT if UNSPACED_RUN.fullmatch(token) else 1.0 for token in word_tokens(text))
