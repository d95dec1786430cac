"""Answers with numbered sources: the prompt, the citations, an extractive answerer and the streaming answer.

The chunks found for a question are numbered ``[1]``, ``[2]``...; :class:`Citation` maps each number back to its
chunk, and :func:`cited_numbers` finds which ones an answer cites. Chat backends (:mod:`retrievals_rag.llm`)
share one small interface, :class:`ChatBackend`: ``stream(messages) -> Iterator[str]``.

Grounded answers (``answer(..., scorer=...)``, what the engine does): every sentence (or record) of the best
``max_sources`` chunks is scored against the question by a :class:`~retrievals_rag.rag.grounding.SentenceScorer`
(the embedder's cosine similarity, or a reranker's probability), see :mod:`retrievals_rag.rag.grounding`. When no
sentence that speaks of what is asked reaches the relevance floor, the answer is
:data:`NOT_IN_DOCUMENTS_ANSWER` and no model is called. Otherwise :class:`ExtractiveAnswer` answers with the best
sentences as clean text, each with its citation, and a chat model gets a short prompt: only the three best
sentences, under their sources' numbers, after two worked examples, the question last
(:func:`build_grounded_prompt`). Its answer is checked (``support_check``, a
:class:`~retrievals_rag.rag.grounding.SupportCheck`): the first sentence it writes is read to its end (the rest is
not generated), and shown with the citations of the sources it rests on when the sentences it was given support
it; when they do not, the extractive answer is shown instead, and :attr:`AnswerStream.note` says which one the
reader sees. Without a check (``support_check=None``) the model's whole reply is passed through, and when it
cites no source, the source whose sentences it used (the most shared words) is cited after it. Without a scorer,
the extractive answer picks the sentences that share the most (rare) words with the question, and a chat model
gets the whole chunks (:func:`build_prompt`).

:func:`answer` returns an :class:`AnswerStream`: iterate it for the text as it is generated; its ``citations``
are known before the first piece. When the backend fails (:class:`GenerationError`: server down, model missing,
generation error, no text), the stream says so in one line and goes on with the extractive answer, unless
``fallback=False``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from retrievals_rag.llm.base import BackendUnavailableError, ChatBackend, ChatMessage, GenerationError
from retrievals_rag.rag.grounding import (
    DEFAULT_RELEVANCE_FLOORS,
    SENTENCE_MARKS,
    STOPWORDS,
    ScoredUnit,
    SentenceScorer,
    SupportCheck,
    SupportVerdict,
    content_words,
    rank_units,
    sentence_end,
)
from retrievals_rag.rag.retrieve import RetrievedChunk

__all__ = [
    "DEFAULT_SUPPORT_CHECK",
    "DEFAULT_SYSTEM_PROMPT",
    "GROUNDED_EXAMPLES",
    "GROUNDED_SYSTEM_PROMPT",
    "NOT_IN_DOCUMENTS_ANSWER",
    "NO_SOURCES_ANSWER",
    "AnswerStream",
    "BackendUnavailableError",
    "ChatBackend",
    "ChatMessage",
    "Citation",
    "ExtractiveAnswer",
    "GenerationError",
    "answer",
    "build_grounded_prompt",
    "build_prompt",
    "cited_numbers",
    "make_citations",
]

DEFAULT_SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources you are given. After each statement, cite the "
    "sources it comes from by their numbers in square brackets, like [1] or [2][3]. If the sources do not "
    "contain the answer, say that the documents do not answer the question. Be concise."
)
NO_SOURCES_ANSWER = "No passage of the indexed documents matches this question."
NOT_IN_DOCUMENTS_ANSWER = "The documents do not contain the answer to this question."
"""The answer when no sentence of the sources is relevant enough (no model is called)."""
GROUNDED_SYSTEM_PROMPT = (
    "Answer the question with one short sentence from the sources, then the source number in square brackets."
)
"""The instruction for a chat model given a grounded prompt: short, for small models."""
GROUNDED_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "[1] The library opens at 9 am on weekdays and at 10 am on Saturdays. It is closed on Sundays.\n\n"
        "Question: When does the library open on Saturdays?",
        "The library opens at 10 am on Saturdays [1].",
    ),
    (
        "[1] item: Wool blanket; colour: green; price_eur: 39.00; in_stock: 8\n\n"
        "[2] The shop was founded in 1998 by Lena Berg.\n\nQuestion: Who founded the shop?",
        "The shop was founded by Lena Berg [2].",
    ),
)
"""Worked examples (prompt, reply) given to the model before the question, in the grounded prompt's format.

With them SmolLM2-135M writes one sentence that cites its source; without them it often wrote "The answer is:"
and copied the prompt, or an essay. A detail it copies from them ("Lena Berg") is in none of the sources, so the
support check refuses it.
"""
DEFAULT_SUPPORT_CHECK = SupportCheck()
"""The check a chat model's grounded answer must pass to be shown (see :class:`SupportCheck`)."""

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(rf"(?<=[{SENTENCE_MARKS}])\s+|\n+")
_CITATION = re.compile(r"\[(\d{1,3})\]")
_MAX_SENTENCE_CHARS = 400


@dataclass(frozen=True)
class Citation:
    """A numbered source of an answer.

    Attributes:
        number: Its number in the prompt and the answer (``[number]``), from 1.
        chunk: The retrieved chunk.
        name: The source's name as shown (see :func:`make_citations`); "": its file name.
    """

    number: int
    chunk: RetrievedChunk
    name: str = ""

    @property
    def label(self) -> str:
        """``"report.pdf, page 3"``: the source's name and page."""
        name = self.name or PurePath(self.chunk.source).name or self.chunk.source
        return name if self.chunk.page is None else f"{name}, page {self.chunk.page}"


def make_citations(chunks: Sequence[RetrievedChunk]) -> list[Citation]:
    """Number the chunks from 1, in the order given (best first).

    Each source is named by its file name, preceded by as many of its folders as tell it apart from another
    source of these chunks with the same file name (``2023/fees.txt`` and ``2024/fees.txt``).

    Example:
        >>> chunks = [RetrievedChunk("...", source, None, source, 0.9, 0.9) for source in
        ...           ["/d/2023/fees.txt", "/d/2024/fees.txt", "/d/notes.md", "fees.txt"]]
        >>> [citation.label for citation in make_citations(chunks)]
        ['2023/fees.txt', '2024/fees.txt', 'notes.md', 'fees.txt']
    """
    names = _distinct_names([chunk.source for chunk in chunks])
    return [Citation(number, chunk, names[chunk.source]) for number, chunk in enumerate(chunks, start=1)]


def _distinct_names(sources: Sequence[str]) -> dict[str, str]:
    """Each source's shortest trailing part of its path (its file name at least) that no other source ends with."""
    parts = {source: PurePath(source).parts or (source,) for source in dict.fromkeys(sources)}
    depth = dict.fromkeys(parts, 1)
    while True:
        shown = {source: parts[source][-depth[source] :] for source in parts}
        clashing = [
            source
            for source in parts
            if depth[source] < len(parts[source])
            and any(other != source and shown[other] == shown[source] for other in parts)
        ]
        if not clashing:
            return {source: str(PurePath(*shown[source])) if source else "" for source in parts}
        for source in clashing:
            depth[source] += 1


def build_prompt(
    question: str, citations: Sequence[Citation], *, system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> list[ChatMessage]:
    """The chat messages that ask a model to answer ``question`` from the numbered sources.

    Example:
        >>> chunk = RetrievedChunk("Paris is in France.", "geo.txt", None, "c1", 0.9, 0.9)
        >>> print(build_prompt("Where is Paris?", make_citations([chunk]))[1]["content"])
        Sources:
        <BLANKLINE>
        [1] geo.txt
        Paris is in France.
        <BLANKLINE>
        Question: Where is Paris?
    """
    sources = "\n\n".join(
        f"[{citation.number}] {citation.label}\n{citation.chunk.text.strip()}" for citation in citations
    )
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: {question.strip()}"},
    ]


def build_grounded_prompt(
    question: str,
    passages: Sequence[tuple[Citation, Sequence[str]]],
    *,
    system_prompt: str = GROUNDED_SYSTEM_PROMPT,
    examples: Sequence[tuple[str, str]] = GROUNDED_EXAMPLES,
) -> list[ChatMessage]:
    """The chat messages that ask a model to answer from short passages (a few sentences per source).

    The worked ``examples`` come first, as earlier turns of the chat; each passage keeps its source's citation
    number; the question comes last.

    Example:
        >>> chunk = RetrievedChunk("We open at 8 am. Dogs welcome.", "cafe.html", None, "c1", 0.9, 0.9)
        >>> messages = build_grounded_prompt("When do you open?", [(make_citations([chunk])[0], ["We open at 8 am."])])
        >>> [message["role"] for message in messages]
        ['system', 'user', 'assistant', 'user', 'assistant', 'user']
        >>> print(messages[-1]["content"])
        [1] We open at 8 am.
        <BLANKLINE>
        Question: When do you open?
    """
    sources = "\n\n".join(f"[{citation.number}] {' '.join(units)}" for citation, units in passages)
    messages: list[ChatMessage] = [{"role": "system", "content": system_prompt}]
    for prompt, reply in examples:
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
    messages.append({"role": "user", "content": f"{sources}\n\nQuestion: {question.strip()}"})
    return messages


def cited_numbers(text: str, citations: Sequence[Citation]) -> list[int]:
    """The citation numbers that ``text`` cites (``[n]`` with a known ``n``), in order of first appearance.

    Example:
        >>> chunks = [RetrievedChunk("a", "s", None, str(i), 1.0, 1.0) for i in range(2)]
        >>> cited_numbers("Yes [2], and [1][2]; not [7].", make_citations(chunks))
        [2, 1]
    """
    known = {citation.number for citation in citations}
    found: list[int] = []
    for match in _CITATION.finditer(text):
        number = int(match.group(1))
        if number in known and number not in found:
            found.append(number)
    return found


def _words(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if len(word) > 1 and word not in STOPWORDS]


def _sentences(text: str) -> list[str]:
    return [sentence.strip() for sentence in _SENTENCE_END.split(text) if sentence and sentence.strip()]


class ExtractiveAnswer:
    """An answer without a language model: the source sentences most like the question, each with its citation.

    In a grounded answer (:func:`answer` with a scorer) it shows the best sentence and, when another sentence of
    the same source also clears the floor, the next best (``max_sentences`` in all), as clean text.
    Without a scorer, sentences are scored by the inverse document frequency (over all the sources' sentences)
    of the question words they contain (stopwords and one-letter words ignored); ties go to the better-ranked
    source, then to the earlier sentence. Deterministic.

    Args:
        max_sentences: Most sentences in the answer.
    """

    name = "extractive"

    def __init__(self, *, max_sentences: int = 2) -> None:
        if isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 1:
            raise ValueError(f"max_sentences must be an integer >= 1, got {max_sentences!r}")
        self.max_sentences = max_sentences

    def select(self, question: str, citations: Sequence[Citation]) -> list[tuple[str, int]]:
        """The chosen ``(sentence, citation number)`` pairs, best first."""
        candidates = [
            (citation.number, position, sentence)
            for citation in citations
            for position, sentence in enumerate(_sentences(citation.chunk.text))
        ]
        if not candidates:
            return []
        sentence_words = [set(_words(sentence)) for _, _, sentence in candidates]
        question_words = set(_words(question))
        document_frequency = {
            word: sum(1 for words in sentence_words if word in words) for word in question_words
        }
        n_sentences = len(candidates)
        scored = []
        for (number, position, sentence), words in zip(candidates, sentence_words, strict=True):
            score = sum(
                math.log(1.0 + n_sentences / document_frequency[word]) for word in question_words & words
            )
            scored.append((-score, number, position, sentence))
        scored.sort()
        chosen = [(sentence, number) for negative_score, number, _, sentence in scored if negative_score < 0]
        if not chosen:  # no shared word: the first sentence of the best source
            first = min(candidates)
            return [(_shorten(first[2]), first[0])]
        return [(_shorten(sentence), number) for sentence, number in chosen[: self.max_sentences]]

    def choose(self, units: Sequence[ScoredUnit]) -> list[ScoredUnit]:
        """From grounded units (best first, all above the floor): the best, and the next best of its source."""
        if not units:
            return []
        source = units[0].source_number
        return [unit for unit in units if unit.source_number == source][: self.max_sentences]

    def stream_units(self, units: Sequence[ScoredUnit]) -> Iterator[str]:
        """Yield :meth:`choose`'s sentences, each followed by its citation (:data:`NO_SOURCES_ANSWER` if none)."""
        chosen = self.choose(units)
        if not chosen:
            yield NO_SOURCES_ANSWER
            return
        for position, unit in enumerate(chosen):
            yield f"{'' if position == 0 else ' '}{_shorten(unit.text)} [{unit.source_number}]"

    def stream_answer(self, question: str, citations: Sequence[Citation]) -> Iterator[str]:
        """Yield the answer sentence by sentence, each followed by its citation (word-overlap selection)."""
        selected = self.select(question, citations)
        if not selected:
            yield NO_SOURCES_ANSWER
            return
        for position, (sentence, number) in enumerate(selected):
            yield f"{'' if position == 0 else ' '}{sentence} [{number}]"


def _shorten(sentence: str) -> str:
    sentence = " ".join(sentence.split())
    if len(sentence) <= _MAX_SENTENCE_CHARS:
        return sentence
    return sentence[:_MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …"


class AnswerStream(Iterator[str]):
    """An answer being generated: iterate it for text pieces; sources and citations are known from the start.

    Attributes:
        question: The question.
        sources: The retrieved chunks, best first (citation ``n`` is ``sources[n - 1]``).
        citations: The numbered sources.
        backend_name: The backend that answers (``"extractive"`` after a fallback).
        fallback_reason: Why the backend failed and the extractive answer was used; None otherwise.
        text: The text yielded so far (the whole answer once iterated to the end).
        grounded: False when no sentence of the sources reached the relevance floor (the answer says the
            documents do not contain it, and no model was called); True when one did; None without a scorer.
        relevance: The best supported sentence's score on ``relevance_scale`` (None without a scorer, or when
            no sentence speaks of what is asked).
        relevance_scale: The scorer's scale (``"cosine similarity"``, ``"reranker probability"``); None without.
        support: The support check's verdict on the chat model's answer, once it is read (None when no model
            answer was checked: extractive, below the floor, no check, or the model failed).
        note: One line for the reader saying what the answer shown is, once the stream is read: the model's
            checked answer, or the sources quoted because the model's answer was not supported (and why);
            None when the text says it itself or there is nothing to say.
    """

    def __init__(
        self,
        question: str,
        citations: list[Citation],
        pieces: Iterator[str],
        backend_name: str,
    ) -> None:
        self.question = question
        self.citations = citations
        self.sources = [citation.chunk for citation in citations]
        self.backend_name = backend_name
        self.fallback_reason: str | None = None
        self.text = ""
        self.grounded: bool | None = None
        self.relevance: float | None = None
        self.relevance_scale: str | None = None
        self.support: SupportVerdict | None = None
        self.note: str | None = None
        self._units: list[ScoredUnit] | None = None
        self._pieces = pieces

    def __next__(self) -> str:
        piece = next(self._pieces)
        self.text += piece
        return piece

    def read(self) -> str:
        """Consume the rest of the stream and return the whole answer."""
        for _ in self:
            continue
        return self.text

    def cited(self) -> list[Citation]:
        """The citations the answer text (so far) refers to, in order of first mention."""
        numbers = cited_numbers(self.text, self.citations)
        return [self.citations[number - 1] for number in numbers]


def answer(
    question: str,
    chunks: Sequence[RetrievedChunk],
    backend: ChatBackend | ExtractiveAnswer | None = None,
    *,
    fallback: bool = True,
    system_prompt: str | None = None,
    scorer: SentenceScorer | None = None,
    relevance_floor: float | None = None,
    max_sources: int = 3,
    support_check: SupportCheck | None = DEFAULT_SUPPORT_CHECK,
) -> AnswerStream:
    """Answer ``question`` from ``chunks``, citing them by number, as a stream of text.

    Args:
        question: The question.
        chunks: Retrieved chunks, best first; they become sources ``[1]``, ``[2]``...
        backend: A chat backend, or an :class:`ExtractiveAnswer`; None: extractive.
        fallback: When the chat backend fails (a :class:`GenerationError`), say so and answer extractively;
            False: raise the error from the iteration.
        system_prompt: The instruction given to a chat model; None: :data:`GROUNDED_SYSTEM_PROMPT` with a
            scorer, :data:`DEFAULT_SYSTEM_PROMPT` without.
        scorer: Scores the sentences of the sources against the question (see the module's description);
            None: no grounding check, word-overlap extraction, whole chunks in the prompt.
        relevance_floor: The score a supported sentence must reach (on the scorer's scale); None: the scale's
            :data:`~retrievals_rag.rag.grounding.DEFAULT_RELEVANCE_FLOORS` entry (no floor for another scale).
        max_sources: With a scorer, the best chunks whose sentences are scored (and may reach the model).
        support_check: With a scorer, what a chat model's answer must pass to be shown (the extractive answer is
            shown otherwise, whatever ``fallback`` says); None: the model's whole reply is shown unchecked.

    Returns:
        The :class:`AnswerStream`. Without chunks it holds a fixed "no passage matches" answer, below the floor
        :data:`NOT_IN_DOCUMENTS_ANSWER`; in both cases no model is called.
    """
    citations = make_citations(chunks)
    if backend is None:
        backend = ExtractiveAnswer()
    name = getattr(backend, "name", type(backend).__name__)
    is_extractive = isinstance(backend, ExtractiveAnswer)
    if not is_extractive and not callable(getattr(backend, "stream", None)):
        raise TypeError(f"backend must have a stream(messages) method, got {type(backend).__name__}")
    if scorer is None or not citations:
        if is_extractive or not citations:
            extractive = backend if isinstance(backend, ExtractiveAnswer) else ExtractiveAnswer()
            return AnswerStream(question, citations, extractive.stream_answer(question, citations), name)
        messages = build_prompt(question, citations, system_prompt=system_prompt or DEFAULT_SYSTEM_PROMPT)
        stream = AnswerStream(question, citations, iter(()), name)
        stream._pieces = _with_fallback(stream, backend, messages, fallback)
        return stream

    ranked = rank_units(
        question, [citation.chunk.text for citation in citations], scorer, max_chunks=max_sources
    )
    supported = [unit for unit in ranked if unit.supported]
    floor = relevance_floor if relevance_floor is not None else DEFAULT_RELEVANCE_FLOORS.get(scorer.scale)
    units = [unit for unit in supported if floor is None or unit.score >= floor]
    stream = AnswerStream(question, citations, iter(()), name)
    stream.relevance = supported[0].score if supported else None
    stream.relevance_scale = scorer.scale
    stream.grounded = bool(units)
    stream._units = units
    if not units:
        stream.backend_name = "relevance floor"
        stream._pieces = iter([NOT_IN_DOCUMENTS_ANSWER])
    elif isinstance(backend, ExtractiveAnswer):
        stream._pieces = backend.stream_units(units)
    else:
        passages = _passages(units, citations)
        messages = build_grounded_prompt(
            question, passages, system_prompt=system_prompt or GROUNDED_SYSTEM_PROMPT
        )
        if support_check is None:
            pieces = _with_fallback(stream, backend, messages, fallback)
            stream._pieces = _with_citation(stream, pieces, passages)
        else:
            stream._pieces = _checked(stream, backend, messages, passages, support_check, fallback)
    return stream


def _passages(
    units: Sequence[ScoredUnit], citations: Sequence[Citation], *, max_units: int = 3
) -> list[tuple[Citation, list[str]]]:
    """The best ``max_units`` units grouped by source (the best unit's source first), in document order."""
    by_source: dict[int, list[ScoredUnit]] = {}
    for unit in units[:max_units]:  # best first, so the first source seen is the best
        by_source.setdefault(unit.source_number, []).append(unit)
    return [
        (citations[number - 1], [unit.text for unit in sorted(chosen, key=lambda unit: unit.position)])
        for number, chosen in by_source.items()
    ]


def _with_citation(
    stream: AnswerStream, pieces: Iterator[str], passages: Sequence[tuple[Citation, Sequence[str]]]
) -> Iterator[str]:
    """Pass the model's reply through; if it cites none of the passages, cite the one it used most."""
    yield from pieces
    if stream.fallback_reason is not None or not passages:
        return
    given = [citation for citation, _ in passages]
    if cited_numbers(stream.text, given):
        return
    reply = content_words(stream.text)
    overlaps = [len(reply & content_words(" ".join(units))) for _, units in passages]
    best = max(range(len(passages)), key=lambda index: (overlaps[index], -index))
    yield f" [{given[best].number}]"


def _with_fallback(
    stream: AnswerStream, backend: ChatBackend, messages: list[ChatMessage], fallback: bool
) -> Iterator[str]:
    produced = False
    try:
        for piece in backend.stream(messages):
            if piece:
                produced = True
                yield piece
        if produced:
            return
        error = GenerationError(f"{stream.backend_name} returned no text")
    except GenerationError as caught:
        error = caught
    yield from _failed(stream, error, fallback, produced)


def _failed(stream: AnswerStream, error: GenerationError, fallback: bool, produced: bool) -> Iterator[str]:
    """Say that the model failed, then answer extractively (or raise ``error`` without ``fallback``)."""
    if not fallback:
        raise error
    stream.fallback_reason = str(error)
    stream.backend_name = ExtractiveAnswer.name
    separator = "\n\n" if produced else ""
    yield f"{separator}(The language model failed: {error}. Showing the most relevant passages instead.)\n\n"
    if stream._units is not None:
        yield from ExtractiveAnswer().stream_units(stream._units)
    else:
        yield from ExtractiveAnswer().stream_answer(stream.question, stream.citations)


def _checked(
    stream: AnswerStream,
    backend: ChatBackend,
    messages: list[ChatMessage],
    passages: Sequence[tuple[Citation, Sequence[str]]],
    check: SupportCheck,
    fallback: bool,
) -> Iterator[str]:
    """The model's first sentence with the citations of the sources it rests on, when they support it; else the
    extractive answer. The model is stopped once its first sentence is complete."""
    model = stream.backend_name
    reply = ""
    try:
        pieces = backend.stream(messages)
        try:
            for piece in pieces:
                reply += piece
                if sentence_end(reply) is not None:
                    break
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):
                close()  # stops the generation (the rest of the reply is not read)
        if not reply.strip():
            raise GenerationError(f"{model} returned no text")
    except GenerationError as error:
        yield from _failed(stream, error, fallback, produced=False)
        return
    end = sentence_end(reply)
    sources = [(citation.number, " ".join(units)) for citation, units in passages]
    verdict = check.check(reply[:end] if end is not None else reply, stream.question, sources)
    stream.support = verdict
    if verdict.supported:
        stream.note = (
            f"Written by {model} and checked against the sources: its numbers, names and most of its words "
            "are in them."
        )
        yield f"{verdict.sentence} " + "".join(f"[{number}]" for number in verdict.source_numbers)
        return
    stream.backend_name = ExtractiveAnswer.name
    stream.fallback_reason = f"{model}'s answer is not supported by the sources: {verdict.reason}"
    stream.note = f"Quoted from the sources: {stream.fallback_reason}."
    assert stream._units is not None  # a checked answer is a grounded one
    yield from ExtractiveAnswer().stream_units(stream._units)
