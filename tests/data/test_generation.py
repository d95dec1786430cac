"""Question generation: cropping, chat generators (a fake backend, the tiny chat model, a local OpenAI-style server),
the filters and their counts, the resumable questions file, a backend that is down or answers garbage."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from retrievals_rag.data.generation import (
    ChatQuestionGenerator,
    CroppingGenerator,
    generate_questions,
    passage_hash,
)
from retrievals_rag.data.question_filter import QuestionFilter
from retrievals_rag.llm.base import ChatMessage, GenerationError
from tests.local_http import LOOPBACK, loopback_only, serve

PASSAGES = {
    f"d{index}": f"Topic {index} opens here. The protein number {index} binds the receptor of cell type {index} "
    f"in the brain. Patients with variant {index} show a higher risk of cancer. A study of {index} people."
    for index in range(12)
}


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    with loopback_only():
        yield


# ------------------------------------------------------------------------------------------ cropping
def test_cropping_takes_seeded_spans_of_the_passage(tmp_path: Path) -> None:
    generator = CroppingGenerator(2, min_words=4, max_words=6, seed=3)
    keys = [passage_hash(text) for text in PASSAGES.values()]

    first = generator.generate(list(PASSAGES.values()), keys)

    assert first == generator.generate(list(PASSAGES.values()), keys)  # reproducible
    assert first != CroppingGenerator(2, min_words=4, max_words=6, seed=4).generate(
        list(PASSAGES.values()), keys
    )
    for crops, passage in zip(first, PASSAGES.values(), strict=True):
        assert isinstance(crops, list) and len(crops) == 2 and crops[0] != crops[1]
        for crop in crops:
            assert 4 <= len(crop.split()) <= 6 and crop in " ".join(passage.split())
    assert generator.generate(["too short"], ["k"]) == [["too short"]]


def test_cropping_questions_are_stored_and_kept_without_the_copy_filter(tmp_path: Path) -> None:
    result = generate_questions(PASSAGES, CroppingGenerator(1), tmp_path / "q.jsonl", batch_size=5)

    assert [question.passage_id for question in result.questions] == list(PASSAGES)
    assert result.dropped == dict.fromkeys(
        ("empty", "duplicate", "copied", "too_long", "garbage", "off_topic"), 0
    )
    assert result.passages_done == 12 and result.passages_resumed == 0 and result.generated_now == 12
    lines = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [line["passage_id"] for line in lines] == list(PASSAGES)
    assert lines[0]["passage_hash"] == passage_hash(PASSAGES["d0"]) and lines[0]["generator"] == "cropping"


# ------------------------------------------------------------------------------------------ filters
class FakeChat:
    """A chat backend whose reply is given per passage number (or the same reply for all)."""

    name = "fake"

    def __init__(self, replies: dict[str, str] | str, failing: Sequence[str] = ()) -> None:
        self.replies = replies
        self.failing = set(failing)
        self.asked: list[str] = []

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        prompt = messages[-1]["content"]
        passage_id = next((key for key in PASSAGES if PASSAGES[key] in prompt), "?")
        self.asked.append(passage_id)
        if passage_id in self.failing:
            raise GenerationError(f"fake failure on {passage_id}")
        reply = self.replies if isinstance(self.replies, str) else self.replies.get(passage_id, "")
        yield from reply.split(" ")[:1]
        yield from (" " + word for word in reply.split(" ")[1:])


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty"),
        ("1234 ??? --", "garbage"),
        ("The protein binds the receptor.", "garbage"),  # not a question
        ("What " + "cell " * 60 + "?", "too_long"),
        ("Does the protein number 3 binds the receptor of cell type 3 in the brain?", "copied"),
        ("What a fascinating topic! The protein binds cells. Here is more", "garbage"),  # not one question
        ("What is the answer?", "off_topic"),  # no word of the passage
        ("What can a person ask a search engine about this passage?", "off_topic"),
        ("Which receptor does protein 3 bind?", None),
        ("how is risk linked to variant 3", None),  # an interrogative first word suffices
    ],
)
def test_each_filter_drops_with_its_reason(reply: str, reason: str | None) -> None:
    assert QuestionFilter().reason(reply, PASSAGES["d3"], chat=True) == reason


@pytest.mark.parametrize(
    ("question", "passage", "reason"),
    [
        # inflections of one word, and gene names too short for a word of five letters
        (
            "What is the role of SF1 and LRH1 in regulating steroidogenesis?",
            "The nuclear receptors SF1 and LRH1 regulate steroidogenic gene transcription.",
            None,
        ),
        ("How does it regulate the HIV load?", "Viral load of HIV in the brain.", None),
        ("Which cells carry p53?", "Mutations of p53 in tumours.", None),
        ("WHAT IS THE ANSWER?", "THE ANSWER IS IN THE TEXT.", "off_topic"),  # capitals alone name nothing
        # Chinese and Japanese: no spaces, full-width question marks
        ("蛋白质如何结合受体？", "这种蛋白质结合大脑中的受体。", None),
        ("这篇文章讲了什么？", "这种蛋白质结合大脑中的受体。", "off_topic"),
        ("このタンパク質は何に結合しますか？", "このタンパク質は脳の受容体に結合する。", None),
        # Arabic question mark; Russian inflection
        ("ما هو دور البروتين في الدماغ؟", "يرتبط البروتين بالمستقبلات في الدماغ.", None),
        ("Какую роль играет белок рецептора?", "Белок связывается с рецептором в мозге.", None),
    ],
)
def test_topic_and_question_checks_hold_across_scripts_and_word_forms(
    question: str, passage: str, reason: str | None
) -> None:
    assert QuestionFilter().reason(question, passage, chat=True) == reason


@pytest.mark.parametrize(
    ("count", "asked"),
    [(1, "write one question that it answers"), (3, "write 3 questions (one per line) that it answers.")],
)
def test_default_prompt_asks_for_the_count_and_cues_a_question(count: int, asked: str) -> None:
    messages = ChatQuestionGenerator(FakeChat(""), questions_per_passage=count).messages(
        "Insulin lowers glucose."
    )

    assert len(messages) == 1 and asked in messages[0]["content"]
    assert messages[0]["content"].endswith("Passage: Insulin lowers glucose.\n\nQuestion:")
    custom = ChatQuestionGenerator(FakeChat(""), 2, prompt="{count} about: {passage}").messages("x")
    assert custom[0]["content"] == "2 about: x"


def test_a_chat_generator_takes_any_passage_with_text_and_trains_on_it_whole() -> None:
    generator = ChatQuestionGenerator(FakeChat(""))

    assert generator.accepts("# Insulin\nInsulin lowers glucose.") and not generator.accepts("  ")
    assert (
        generator.training_text("# Insulin\nInsulin lowers glucose.") == "# Insulin\nInsulin lowers glucose."
    )
    rng = random.Random(0)
    state = rng.getstate()
    assert generator.training_positive("Does insulin lower glucose?", "Insulin lowers glucose.", rng) == (
        "Insulin lowers glucose."
    )
    assert rng.getstate() == state


def test_chat_replies_are_parsed_filtered_and_counted(tmp_path: Path) -> None:
    replies = {
        "d0": "1. What does protein 0 bind?\n2. Which cells carry receptor 0?",
        "d1": "Question: What does protein 0 bind?",  # a duplicate of d0's
        "d2": "- Who was studied in study 2?",
        "d3": "",
        "d4": "The protein number 4 binds the receptor of cell type 4 in the brain.",
    }
    generator = ChatQuestionGenerator(FakeChat(replies), questions_per_passage=2)
    subset = {key: PASSAGES[key] for key in replies}

    result = generate_questions(subset, generator, tmp_path / "q.jsonl", batch_size=2, max_garbage=5)

    assert [(q.passage_id, q.question) for q in result.questions] == [
        ("d0", "What does protein 0 bind?"),
        ("d0", "Which cells carry receptor 0?"),
        ("d2", "Who was studied in study 2?"),
    ]
    assert result.dropped == {
        "empty": 1, "duplicate": 1, "copied": 0, "too_long": 0, "garbage": 1, "off_topic": 0
    }  # fmt: skip
    assert result.passages_done == 5


# ------------------------------------------------------------------------------------------ resume
def test_an_interrupted_run_resumes_without_generating_a_passage_twice(tmp_path: Path) -> None:
    chat = FakeChat({key: f"Which receptor does protein {key} bind?" for key in PASSAGES})
    generator = ChatQuestionGenerator(chat)
    path = tmp_path / "q.jsonl"

    def stop_after_two_batches(done: int, total: int) -> None:
        if done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_questions(PASSAGES, generator, path, batch_size=4, progress=stop_after_two_batches)
    assert len(path.read_text().splitlines()) == 8
    with path.open("a") as handle:
        handle.write('{"passage_hash": "torn by a cra')  # a write cut short by a crash

    result = generate_questions(PASSAGES, generator, path, batch_size=4)

    assert sorted(chat.asked) == sorted(PASSAGES)  # each passage asked once over both runs
    assert result.passages_resumed == 8 and result.generated_now == 4 and len(result.questions) == 12
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 12 == len({line["passage_hash"] for line in lines})


def test_a_questions_file_of_another_generator_or_not_ours_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    generate_questions(dict(list(PASSAGES.items())[:2]), CroppingGenerator(), path)

    with pytest.raises(ValueError, match=r"q.jsonl, line 1: written by generator 'cropping', not 'fake'"):
        generate_questions(PASSAGES, ChatQuestionGenerator(FakeChat("What?")), path)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match=r"q.jsonl, line 1: not a questions record"):
        generate_questions(PASSAGES, CroppingGenerator(), path)
    with pytest.raises(ValueError, match="no passages"):
        generate_questions({}, CroppingGenerator(), tmp_path / "other.jsonl")


def test_a_questions_file_asked_with_another_prompt_is_refused(tmp_path: Path) -> None:
    chat = FakeChat({key: f"Which receptor does protein {key} bind?" for key in PASSAGES})
    path = tmp_path / "q.jsonl"
    claims = "Write {questions} as claims that this passage supports.\n\nPassage: {passage}\n\nClaim:"
    first = dict(list(PASSAGES.items())[:2])
    generate_questions(first, ChatQuestionGenerator(chat, prompt=claims), path)

    with pytest.raises(
        ValueError, match=r"q.jsonl, line 1: its questions were asked for with another prompt"
    ):
        generate_questions(PASSAGES, ChatQuestionGenerator(chat), path)
    # the same prompt resumes
    assert (
        generate_questions(PASSAGES, ChatQuestionGenerator(chat, prompt=claims), path).passages_resumed == 2
    )
    # a file written before prompts were recorded is taken as it is
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text(
        "".join(json.dumps({k: v for k, v in line.items() if k != "prompt"}) + "\n" for line in lines)
    )
    assert generate_questions(PASSAGES, ChatQuestionGenerator(chat), path).passages_resumed == 12


# ------------------------------------------------------------------------------------------ failing backends
def test_a_backend_failing_in_a_row_stops_the_run_and_keeps_what_was_stored(tmp_path: Path) -> None:
    chat = FakeChat("What binds?", failing=[f"d{index}" for index in range(4, 12)])
    path = tmp_path / "q.jsonl"

    with pytest.raises(
        GenerationError, match=r"failed 3 times in a row: fake failure on d6.*run again to resume"
    ):
        generate_questions(PASSAGES, ChatQuestionGenerator(chat), path, batch_size=4, max_failures=3)

    assert [json.loads(line)["passage_id"] for line in path.read_text().splitlines()] == [
        "d0",
        "d1",
        "d2",
        "d3",
    ]


class QuestionServer(BaseHTTPRequestHandler):
    """An OpenAI-style chat server: ``/ok/v1`` streams a question, ``/garbage/v1`` streams symbols."""

    calls: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls += 1
        prompt = body["messages"][-1]["content"]
        number = next(key for key in PASSAGES if PASSAGES[key] in prompt)[1:]
        reply = f"What does protein {number} bind?" if self.path.startswith("/ok/") else "#### 42 %%"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in (reply[:5], reply[5:]):
            event = {"choices": [{"delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def question_server() -> Iterator[str]:
    QuestionServer.calls = 0
    with serve(QuestionServer) as url:
        yield url


def test_an_openai_compatible_endpoint_writes_questions(tmp_path: Path, question_server: str) -> None:
    from retrievals_rag.llm.chat import OpenAICompatibleChat

    generator = ChatQuestionGenerator(OpenAICompatibleChat(f"{question_server}/ok/v1", "m"), name="openai")

    result = generate_questions(PASSAGES, generator, tmp_path / "q.jsonl", batch_size=5)

    assert [q.question for q in result.questions][:2] == [
        "What does protein 0 bind?",
        "What does protein 1 bind?",
    ]
    assert len(result.questions) == 12 and QuestionServer.calls == 12


def test_an_endpoint_answering_garbage_is_named_and_nothing_of_the_streak_is_stored(
    tmp_path: Path, question_server: str
) -> None:
    from retrievals_rag.llm.chat import OpenAICompatibleChat

    url = f"{question_server}/garbage/v1"
    generator = ChatQuestionGenerator(OpenAICompatibleChat(url, "m"), name="openai")
    path = tmp_path / "q.jsonl"

    with pytest.raises(
        GenerationError, match=rf"{url}/chat/completions gave no usable question for 5 passages"
    ):
        generate_questions(PASSAGES, generator, path, batch_size=3, max_garbage=5)

    assert (
        path.read_text() == ""
    )  # the garbage streak is not stored: a rerun with a working endpoint redoes it


def test_an_endpoint_that_is_down_is_named(tmp_path: Path) -> None:
    from retrievals_rag.llm.chat import OpenAICompatibleChat

    with socket.socket() as probe:  # a port with nothing listening
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    url = f"http://{LOOPBACK}:{port}/v1"
    generator = ChatQuestionGenerator(OpenAICompatibleChat(url, "m", timeout=5), name="openai")

    with pytest.raises(
        GenerationError, match=rf"{url}/chat/completions failed 2 times in a row.*cannot connect"
    ):
        generate_questions(PASSAGES, generator, tmp_path / "q.jsonl", max_failures=2)


# ------------------------------------------------------------------------------------------ local model
def test_transformers_chat_generates_a_batch_like_one_by_one(tiny_chat_path: Path) -> None:
    from retrievals_rag.llm.chat import TransformersChat

    chat = TransformersChat(tiny_chat_path, max_new_tokens=6, repetition_penalty=1.0)
    conversations = [[{"role": "user", "content": "what is the cell"}], [{"role": "user", "content": "gene"}]]

    batch = chat.generate_batch(conversations)

    assert len(batch) == 2
    assert batch[0].strip() == "".join(chat.stream(conversations[0])).strip()
    assert chat.generate_batch([]) == []


def test_the_tiny_chat_model_counts_its_garbage(tmp_path: Path, tiny_chat_path: Path) -> None:
    from retrievals_rag.llm.chat import TransformersChat

    generator = ChatQuestionGenerator(TransformersChat(tiny_chat_path, max_new_tokens=4), name="tiny")
    subset = dict(list(PASSAGES.items())[:3])

    result = generate_questions(subset, generator, tmp_path / "q.jsonl", batch_size=3, max_garbage=10)

    assert result.generated_now == 3 and result.passages_done == 3
    assert len(result.questions) + sum(result.dropped.values()) == 3


def test_spans_cut_from_the_passage_skip_the_chat_checks() -> None:
    span = "The protein number 3 binds the receptor of cell type 3 in the brain."  # copied, not a question

    assert QuestionFilter().reason(span, PASSAGES["d3"], chat=False) is None
    assert QuestionFilter().reason(span, PASSAGES["d3"], chat=True) == "garbage"
    assert QuestionFilter().reason("   ", PASSAGES["d3"], chat=False) == "empty"


def test_a_filter_for_claims_takes_replies_that_are_not_questions() -> None:
    claims = QuestionFilter(reply_form="any")
    claim = "Protein 3 binds a receptor of brain cells."

    assert QuestionFilter().reason(claim, PASSAGES["d3"], chat=True) == "garbage"
    assert claims.reason(claim, PASSAGES["d3"], chat=True) is None
    # the other checks still hold
    assert claims.reason("The weather was fine.", PASSAGES["d3"], chat=True) == "off_topic"
    assert claims.reason("#### 42", PASSAGES["d3"], chat=True) == "garbage"
    with pytest.raises(ValueError, match="reply_form must be 'question' or 'any'"):
        QuestionFilter(reply_form="claim")  # type: ignore[arg-type]
