"""Generated training data: questions written for passages, filtered, kept in a resumable JSON Lines file.

- :class:`~retrievals_rag.data.passage_queries.CroppingGenerator` and
  :class:`~retrievals_rag.data.passage_queries.HeadingGenerator`: no model at all. A span of the passage (the
  inverse-cloze / cropping method), or its heading. Thousands of passages a second.
- :class:`ChatQuestionGenerator`: a chat model of :mod:`retrievals_rag.llm` (the packaged SmolLM2 offline, or
  any OpenAI-compatible endpoint) is asked for questions that the passage answers (as GPL, Wang et al. 2022).

:func:`generate_questions` drives either over a mapping of passages in batches, filters what comes back and
appends one line per passage to a JSON Lines file as each batch ends, keyed by the passage's content hash, so an
interrupted run (a crash, Ctrl-C, a progress callback that raises to cancel) loses at most the batch in flight,
and a rerun with the same file skips the passages already done. Each line reads::

    {"passage_hash": "9f2c...", "passage_id": "doc-3", "generator": "smollm2", "prompt": "51d0...",
     "questions": ["What does insulin regulate?"], "dropped": {"copied": 1}}

(``prompt``: the hash of a chat generator's prompt. A rerun with another generator or another prompt is refused,
naming the file: its questions were asked for differently.)

Every candidate passes :class:`~retrievals_rag.data.question_filter.QuestionFilter` (empty, duplicate, copied,
too long, not a question, off the passage's topic); what it drops is counted by reason in the file and the result.

A chat backend that fails ``max_failures`` times in a row (a server that is down, a model that cannot load), or
that answers only empty, garbage or off-topic text for ``max_garbage`` passages in a row, stops the run with a
:class:`~retrievals_rag.llm.base.GenerationError` naming it; what was stored before is kept, and the passages of
a garbage streak are not stored, so a rerun against a working endpoint generates them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from retrievals_rag.data.jsonl import append_records, open_for_append
from retrievals_rag.data.passage_queries import CroppingGenerator, HeadingGenerator, check_question_count
from retrievals_rag.data.question_filter import DROP_REASONS, QuestionFilter, normalized_question
from retrievals_rag.llm.base import ChatBackend, ChatMessage, GenerationError, complete

__all__ = [
    "DEFAULT_QUESTION_PROMPT",
    "ChatQuestionGenerator",
    "GeneratedQuestion",
    "GenerationResult",
    "QuestionGenerator",
    "build_generator",
    "check_question_prompt",
    "generate_questions",
    "passage_hash",
]

GeneratorName = Literal["cropping", "title", "smollm2", "openai"]
_UNUSABLE = frozenset({"empty", "garbage", "off_topic"})  # what a broken backend answers

DEFAULT_QUESTION_PROMPT = (
    "Read the passage and write {questions} that it answers.\n\nPassage: {passage}\n\nQuestion:"
)
"""The user message of :class:`ChatQuestionGenerator`: ``{questions}`` becomes "one question" or "3 questions (one
per line)", ``{count}`` the number alone, ``{passage}`` the passage. Instruction first and a ``Question:`` cue after
the passage: on 40 SciFact passages the packaged SmolLM2-135M wrote a question that passed the filters for 37 with it,
and for 22 with the previous wording (an instruction with "use your own words", "one per line", no cue), whose other
replies were "What is the answer?" or restated the passage."""

_LIST_MARKER = re.compile(
    r"^\s*(?:[-*\u2022]+|\(?\d{1,2}[.):]|q(?:uestion)?\s*\d*\s*[:.)-])\s*", re.IGNORECASE
)


def check_question_prompt(prompt: str, name: str = "prompt") -> None:
    """Raise ``ValueError`` (naming the setting ``name``) unless ``prompt`` has the ``{passage}`` placeholder."""
    if "{passage}" not in prompt:
        raise ValueError(f"{name} must contain the {{passage}} placeholder, got {prompt!r}")


def passage_hash(text: str) -> str:
    """The key of a passage in the questions file: the first 16 hex digits of the SHA-256 of its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class GeneratedQuestion:
    """One kept question and the passage it was written for (its positive)."""

    passage_id: str
    question: str


@dataclass
class GenerationResult:
    """What :func:`generate_questions` produced.

    Attributes:
        questions: every kept question, this run's and the file's earlier ones, in passage order.
        dropped: reason -> questions dropped (earlier runs' counts included).
        passages_done: passages with a line in the file (skipped ones included).
        passages_resumed: passages found done in the file, not generated again.
        generated_now: questions written by this run (before filtering).
        seconds: time spent generating in this run.
    """

    questions: list[GeneratedQuestion]
    dropped: dict[str, int]
    passages_done: int
    passages_resumed: int
    generated_now: int
    seconds: float

    @property
    def questions_per_second(self) -> float:
        """Raw questions generated per second by this run (0 when it generated nothing)."""
        return self.generated_now / self.seconds if self.seconds > 0 and self.generated_now else 0.0


class QuestionGenerator(Protocol):
    """Writes candidate questions for a batch of passages."""

    name: str
    chat: (
        bool  # True: written by a chat model (question, topic and copy filters); False: spans of the passage
    )
    accepted: (
        str  # the passages that accepts() takes, for an error: "have text", "open with a title or heading"
    )

    def generate(self, passages: Sequence[str], keys: Sequence[str]) -> list[list[str] | GenerationError]:
        """Candidates for each passage (``keys``: their hashes, for seeded draws), or the error that stopped
        one passage's generation."""
        ...

    def accepts(self, passage: str) -> bool:
        """Whether this generator can write a question for ``passage``: adapting samples only among those (what
        such a passage looks like, in the ``accepted`` attribute, completes the sentence "passages that ...")."""
        ...

    def training_text(self, passage: str) -> str:
        """``passage`` as training sees it, as a positive or a negative (the passage itself, or what is left
        once the part a question was taken from is cut off)."""
        ...

    def training_positive(self, question: str, passage: str, rng: random.Random) -> str:
        """The positive that a training example of ``question`` pairs it with (``passage``, already through
        :meth:`training_text`, or a variant of it, e.g. without the span the question was cut from); ``rng``:
        the job's seeded draws, taken in example order."""
        ...


class ChatQuestionGenerator:
    """Questions written by a chat model of :mod:`retrievals_rag.llm`.

    A backend with ``generate_batch(conversations)`` (:class:`~retrievals_rag.llm.chat.TransformersChat`)
    answers a whole batch of passages in one padded forward pass per token; any other
    :class:`~retrievals_rag.llm.base.ChatBackend` is asked passage by passage.

    Args:
        backend: the chat model.
        questions_per_passage: questions asked for per passage (more lines in the reply are ignored).
        prompt: the user message, with a ``{passage}`` placeholder and ``{questions}`` or ``{count}`` (see
            :data:`DEFAULT_QUESTION_PROMPT`).
        system_prompt: a system message before it, or None.
        max_passage_chars: a longer passage is cut (at a word) before it goes into the prompt.
        name: the generator's name in the questions file (default: the backend's ``name``, else ``"chat"``).
    """

    chat = True
    accepted = "have text"

    def __init__(
        self,
        backend: ChatBackend,
        questions_per_passage: int = 1,
        *,
        prompt: str = DEFAULT_QUESTION_PROMPT,
        system_prompt: str | None = None,
        max_passage_chars: int = 1000,
        name: str | None = None,
    ) -> None:
        check_question_count(questions_per_passage)
        check_question_prompt(prompt)
        if max_passage_chars < 1:
            raise ValueError(f"max_passage_chars must be >= 1, got {max_passage_chars}")
        self.backend = backend
        self.questions_per_passage = questions_per_passage
        self.prompt = prompt
        self.system_prompt = system_prompt
        self.max_passage_chars = max_passage_chars
        self.name = name or str(getattr(backend, "name", "chat"))

    @property
    def endpoint(self) -> str:
        """What to name in an error: the backend's URL, else its repr."""
        return str(getattr(self.backend, "url", None) or repr(self.backend))

    def messages(self, passage: str) -> list[ChatMessage]:
        """The conversation that asks for questions about ``passage``."""
        if len(passage) > self.max_passage_chars:
            passage = passage[: self.max_passage_chars].rsplit(" ", 1)[0]
        count = self.questions_per_passage
        asked = "one question" if count == 1 else f"{count} questions (one per line)"
        user = (
            self.prompt.replace("{questions}", asked)
            .replace("{count}", str(count))
            .replace("{passage}", passage)
        )
        messages: list[ChatMessage] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": user})
        return messages

    def generate(self, passages: Sequence[str], keys: Sequence[str]) -> list[list[str] | GenerationError]:
        conversations = [self.messages(passage) for passage in passages]
        generate_batch = getattr(self.backend, "generate_batch", None)
        if callable(generate_batch):
            try:
                replies: list[str | GenerationError] = list(generate_batch(conversations))
            except GenerationError as error:
                replies = [error] * len(conversations)
        else:
            replies = []
            for conversation in conversations:
                try:
                    replies.append(complete(self.backend, conversation))
                except GenerationError as error:
                    replies.append(error)
        return [reply if isinstance(reply, GenerationError) else self.parse(reply) for reply in replies]

    def accepts(self, passage: str) -> bool:
        return bool(passage.strip())  # a chat model can be asked about any text

    def training_text(self, passage: str) -> str:
        return passage

    def training_positive(self, question: str, passage: str, rng: random.Random) -> str:
        del question, rng
        return passage

    def parse(self, reply: str) -> list[str]:
        """The questions of a reply: its non-empty lines, list markers and ``Question:`` prefixes removed."""
        lines = [_LIST_MARKER.sub("", line).strip().strip('"').strip() for line in reply.splitlines()]
        found = [line for line in lines if line]
        if not found:
            return [""]  # counted as empty
        return found[: self.questions_per_passage]

    def __repr__(self) -> str:
        return f"ChatQuestionGenerator(backend={self.backend!r}, questions_per_passage={self.questions_per_passage})"


def build_generator(
    name: GeneratorName,
    *,
    questions_per_passage: int = 1,
    seed: int = 0,
    span_removal: float = 0.0,
    chat_model: str | os.PathLike[str] | None = None,
    max_new_tokens: int = 40,
    device: str | None = None,
    openai_base_url: str | None = None,
    openai_model: str | None = None,
    openai_api_key: str | None = None,
    prompt: str | None = None,
) -> QuestionGenerator:
    """The generator called ``name``: ``"cropping"`` (its spans cut out of their positives in a ``span_removal``
    share of the training examples), ``"title"`` (each passage's heading, one per passage),
    ``"smollm2"`` (the packaged SmolLM2-135M-Instruct, or
    ``chat_model``: a transformers chat folder or ``.gguf`` file, on ``device``; None: a GPU when there is one)
    or ``"openai"`` (``openai_base_url`` and ``openai_model``, with ``openai_api_key`` when given). ``prompt``:
    the chat generators' user message (None: :data:`DEFAULT_QUESTION_PROMPT`).

    Raises:
        ValueError: an unknown name, ``"openai"`` without a URL and a model, a prompt for cropping or title,
            or more than one question per passage for title.
    """
    chat_prompt = DEFAULT_QUESTION_PROMPT if prompt is None else prompt
    if name in ("cropping", "title") and prompt is not None:
        raise ValueError(f"a prompt is for the chat generators (smollm2, openai): {name} asks no model")
    if name == "cropping":
        return CroppingGenerator(questions_per_passage, seed=seed, span_removal=span_removal)
    if name == "title":
        if questions_per_passage != 1:
            raise ValueError(
                f"the title generator gives one question per passage, got {questions_per_passage!r}"
            )
        return HeadingGenerator()
    if name == "openai":
        from retrievals_rag.llm.chat import OpenAICompatibleChat

        if not (openai_base_url and openai_model):
            raise ValueError("the openai generator needs openai_base_url and openai_model")
        backend: Any = OpenAICompatibleChat(
            openai_base_url, openai_model, openai_api_key, max_tokens=max_new_tokens
        )
        return ChatQuestionGenerator(backend, questions_per_passage, prompt=chat_prompt, name="openai")
    if name != "smollm2":
        raise ValueError(f"generator must be 'cropping', 'title', 'smollm2' or 'openai', got {name!r}")
    from retrievals_rag.llm.chat import TransformersChat

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = TransformersChat(chat_model, max_new_tokens=max_new_tokens, device=device)
    return ChatQuestionGenerator(backend, questions_per_passage, prompt=chat_prompt, name="smollm2")


@dataclass
class _State:
    """The questions file read back, and what this run adds to it."""

    questions: dict[str, list[str]] = field(default_factory=dict)  # passage hash -> kept questions
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    seen: set[str] = field(default_factory=set)  # normalized kept questions

    def add(self, records: Sequence[Mapping[str, Any]]) -> None:
        for record in records:
            self.questions[record["passage_hash"]] = list(record["questions"])
            for reason, count in record["dropped"].items():
                self.dropped[reason] = self.dropped.get(reason, 0) + int(count)


def _prompt_key(generator: QuestionGenerator) -> str | None:
    """The hash of a generator's ``prompt`` (chat generators have one), recorded on each line it writes."""
    prompt = getattr(generator, "prompt", None)
    return passage_hash(prompt) if isinstance(prompt, str) else None


def _read_done(path: Path, generator_name: str, prompt: str | None) -> _State:
    """The lines of an earlier run with this generator and prompt (its :func:`_prompt_key`); a torn last line (a
    killed write) is ignored. Lines written before prompts were recorded are taken as they are."""
    state = _State()
    if not path.is_file():
        return state
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                break  # torn by a crash mid-write; rewritten by this run
            try:
                record = json.loads(line)
                key, questions, dropped = record["passage_hash"], record["questions"], record["dropped"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(
                    f"{path}, line {number}: not a questions record ({error}); delete the file to start over"
                ) from error
            if record.get("generator") != generator_name:
                raise ValueError(
                    f"{path}, line {number}: written by generator {record.get('generator')!r}, not "
                    f"{generator_name!r}; use another output folder, or delete the file to start over"
                )
            if "prompt" in record and record["prompt"] != prompt:
                raise ValueError(
                    f"{path}, line {number}: its questions were asked for with another prompt; use another "
                    "output folder, or delete the file to start over"
                )
            state.add([{"passage_hash": key, "questions": questions, "dropped": dropped}])
            state.seen.update(normalized_question(question) for question in questions)
    return state


def generate_questions(
    passages: Mapping[str, str],
    generator: QuestionGenerator,
    questions_file: str | os.PathLike[str],
    *,
    question_filter: QuestionFilter = QuestionFilter(),
    batch_size: int = 16,
    max_failures: int = 3,
    max_garbage: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationResult:
    """Generate, filter and store questions for every passage not yet in ``questions_file``.

    Args:
        passages: passage id -> text; questions come out in this order.
        generator: :class:`~retrievals_rag.data.passage_queries.CroppingGenerator`,
            :class:`~retrievals_rag.data.passage_queries.HeadingGenerator`, :class:`ChatQuestionGenerator` or another
            :class:`QuestionGenerator`.
        questions_file: the JSON Lines file appended to (created with its folder); a rerun resumes from it.
        question_filter: the filters' settings.
        batch_size: passages per generator call; the file is appended to after each.
        max_failures: consecutive failed passages after which the backend is declared down.
        max_garbage: consecutive passages answered with only empty, garbage or off-topic text after which the
            backend is declared broken.
        progress: called as ``progress(passages_done, passages_total)`` after each batch is stored; it may
            raise to stop the run (what is stored stays).

    Returns:
        A :class:`GenerationResult`.

    Raises:
        ValueError: an empty ``passages``, a bad ``batch_size``, or a questions file that is not ours or
            was written by another generator (its line is named).
        GenerationError: the backend failed ``max_failures`` times, or answered garbage ``max_garbage`` times,
            in a row; the message names it and says that a rerun resumes.
    """
    if not passages:
        raise ValueError("no passages to generate questions for")
    if batch_size < 1 or max_failures < 1 or max_garbage < 1:
        raise ValueError(
            f"batch_size, max_failures and max_garbage must be >= 1, got {batch_size}, {max_failures}, "
            f"{max_garbage}"
        )
    path = Path(questions_file)
    prompt = _prompt_key(generator)
    state = _read_done(path, generator.name, prompt)
    keys = {passage_id: passage_hash(text) for passage_id, text in passages.items()}
    resumed = sum(1 for key in set(keys.values()) if key in state.questions)
    todo: dict[str, str] = {}  # passage hash -> the first id with that text, for passages not done yet
    for passage_id, key in keys.items():
        if key not in state.questions:
            todo.setdefault(key, passage_id)
    total = len(set(keys.values()))
    done = resumed
    generated_now = 0
    failures: list[GenerationError] = []
    garbage_streak: list[dict[str, Any]] = []
    seconds = 0.0
    pending = list(todo.values())
    if generator.chat:  # similar lengths batched together: less padding
        pending.sort(key=lambda passage_id: len(passages[passage_id]))
    with open_for_append(path) as handle:
        for offset in range(0, len(pending), batch_size):
            batch = pending[offset : offset + batch_size]
            texts = [passages[passage_id] for passage_id in batch]
            batch_started = time.perf_counter()
            outputs = generator.generate(texts, [keys[passage_id] for passage_id in batch])
            seconds += time.perf_counter() - batch_started
            lines = []
            for passage_id, text, output in zip(batch, texts, outputs, strict=True):
                if isinstance(output, GenerationError):
                    failures.append(output)
                    if len(failures) >= max_failures:
                        append_records(handle, lines)
                        raise _stopped(generator, f"failed {len(failures)} times in a row", output, path)
                    continue
                failures.clear()
                generated_now += len(output)
                record = _filtered(
                    passage_id, keys[passage_id], text, output, generator, prompt, question_filter, state
                )
                if generator.chat and not record["questions"] and set(record["dropped"]) <= _UNUSABLE:
                    garbage_streak.append(record)
                    if len(garbage_streak) >= max_garbage:
                        append_records(handle, lines)
                        raise _stopped(
                            generator,
                            f"gave no usable question for {len(garbage_streak)} passages in a row "
                            f"(dropped: {_counts(garbage_streak)})",
                            None,
                            path,
                        )
                    continue
                lines += [*garbage_streak, record]
                garbage_streak.clear()
            append_records(handle, lines)
            state.add(lines)
            done += len(lines)
            if progress is not None:
                progress(done, total)
        append_records(handle, garbage_streak)  # a short streak at the end is the passages' own fault
        state.add(garbage_streak)
    first_ids: dict[str, str] = {}  # passage hash -> the first id with that text (duplicate texts count once)
    for passage_id, key in keys.items():
        first_ids.setdefault(key, passage_id)
    questions = [
        GeneratedQuestion(passage_id, question)
        for key, passage_id in first_ids.items()
        for question in state.questions.get(key, [])
    ]
    return GenerationResult(
        questions=questions,
        dropped=dict(state.dropped),
        passages_done=sum(1 for key in set(keys.values()) if key in state.questions),
        passages_resumed=resumed,
        generated_now=generated_now,
        seconds=seconds,
    )


def _filtered(
    passage_id: str,
    key: str,
    passage: str,
    candidates: Sequence[str],
    generator: QuestionGenerator,
    prompt: str | None,
    question_filter: QuestionFilter,
    state: _State,
) -> dict[str, Any]:
    kept: list[str] = []
    dropped: dict[str, int] = {}
    for candidate in candidates:
        question = " ".join(candidate.split())
        reason = question_filter.reason(question, passage, generator.chat)
        if reason is None and normalized_question(question) in state.seen:
            reason = "duplicate"
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        state.seen.add(normalized_question(question))
        kept.append(question)
    return {
        "passage_hash": key,
        "passage_id": passage_id,
        "generator": generator.name,
        **({"prompt": prompt} if prompt is not None else {}),
        "questions": kept,
        "dropped": dropped,
    }


def _counts(records: Sequence[Mapping[str, Any]]) -> str:
    totals: dict[str, int] = {}
    for record in records:
        for reason, count in record["dropped"].items():
            totals[reason] = totals.get(reason, 0) + count
    return ", ".join(f"{reason} {count}" for reason, count in sorted(totals.items())) or "nothing"


def _stopped(
    generator: QuestionGenerator, what: str, error: GenerationError | None, path: Path
) -> GenerationError:
    endpoint = getattr(generator, "endpoint", generator.name)
    detail = f": {error}" if error is not None else ""
    stopped = GenerationError(
        f"question generation stopped: the chat backend {endpoint} {what}{detail}. The questions generated so far "
        f"are kept in {path}; run again to resume once the backend works."
    )
    stopped.__cause__ = error
    return stopped
