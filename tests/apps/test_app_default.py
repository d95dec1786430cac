"""The app's default answer mode, driven with AppTest: SmolLM2's answers checked against the sources.

Fast and offline: a tiny random embedder (every supported sentence let through: the floor is tested in
tests/rag), and SmolLM2 replaced by a fake that answers one question with a fact of the document and another with
an invented one. Nothing but the reply is faked: the default mode, the prompt, the check, the fallback and the
page's note are the app's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.apps.test_app import ask, create_collection, start_app, unescape, upload_and_index, values

GARDEN = b"A plot costs 35 pounds a year. The committee meets on the first Monday of each month."
REPLIES = {
    "How much does a plot cost?": "A plot costs 35 pounds a year [1]. Plots are cheap.",
    "When does the committee meet?": "The committee meets every Wednesday [1].",
}


@pytest.fixture
def default_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bert_path: Path
) -> list[list[dict[str, str]]]:
    """The app's environment with no answer mode set; returns the prompts the fake SmolLM2 receives."""
    from retrievals_rag.llm import chat, gguf
    from retrievals_rag.rag.grounding import DEFAULT_RELEVANCE_FLOORS

    prompts: list[list[dict[str, str]]] = []

    def stream(self: object, messages: Sequence[dict[str, str]]) -> Iterator[str]:
        prompts.append(list(messages))
        question = messages[-1]["content"].rsplit("Question: ", 1)[1]
        yield from (word + " " for word in REPLIES[question].split())

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RETRIEVALS_RAG_DATA_DIR", str(tmp_path / "rag-data"))
    monkeypatch.setenv("RETRIEVALS_RAG_EMBEDDER", str(tiny_bert_path))
    monkeypatch.delenv("RETRIEVALS_RAG_CHROMA_URL", raising=False)
    monkeypatch.delenv("RETRIEVALS_RAG_LLM", raising=False)
    monkeypatch.setattr(gguf, "smollm2_gguf_path", lambda: tmp_path / "SmolLM2.gguf")
    monkeypatch.setattr(chat.TransformersChat, "load", lambda self: None)
    monkeypatch.setattr(chat.TransformersChat, "stream", stream)
    monkeypatch.setitem(DEFAULT_RELEVANCE_FLOORS, "cosine similarity", -1.0)  # a random embedder's scores
    return prompts


def test_the_default_is_smollm2_checked_against_the_sources(default_app: list[list[dict[str, str]]]) -> None:
    at = start_app()
    assert at.radio(key="llm").value == "smollm2"
    at = upload_and_index(create_collection(at, "garden"), {"garden.txt": GARDEN})

    at = ask(at, "How much does a plot cost?")
    at = ask(at, "When does the committee meet?")

    assert len(default_app) == 2 and default_app[0][-1]["content"].endswith(
        "Question: How much does a plot cost?"
    )
    kept, replaced = at.chat_message[1], at.chat_message[3]
    assert unescape(kept.markdown[0].value) == "A plot costs 35 pounds a year. [1]"
    assert [unescape(text) for text in values(kept.caption)] == [
        "Written by smollm2 and checked against the sources: its numbers, names and most of its words are in them."
    ]
    assert (
        unescape(replaced.markdown[0].value) == "The committee meets on the first Monday of each month. [1]"
    )
    assert [unescape(text) for text in values(replaced.caption)] == [
        "Quoted from the sources: smollm2's answer is not supported by the sources: 'Wednesday' is in none of "
        "the sources."
    ]
    assert not at.exception and not at.main.error
