"""The app's index versions, driven in-process with AppTest over a tiny random BERT: adapt the embedder to a
collection (cropping questions, a few seconds), see the before / after, switch the index questions use, ask, and
delete the version with confirmation; errors are shown where they happen and the page keeps working."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apps.test_app import ask, button, create_collection, start_app, unescape, upload_and_index, values

PASSAGES = {
    f"{topic}.txt": text.encode()
    for topic, text in {
        "eiffel": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris, France.",
        "insulin": "Insulin is a hormone made by the pancreas that lowers the level of glucose in the blood.",
        "volcano": "A volcano erupts when magma from the mantle rises through the crust to the surface.",
        "photosynthesis": "Photosynthesis converts light, water and carbon dioxide into sugar and oxygen.",
        "glacier": "Glaciers carve deep valleys as they slowly flow down from the mountains.",
        "tides": "Tides rise and fall twice a day, pulled by the gravity of the moon and the sun.",
    }.items()
}
ADAPT_LIMIT_S = 300


@pytest.fixture
def tiny_app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bert_path: Path) -> Iterator[None]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RETRIEVALS_RAG_DATA_DIR", str(tmp_path / "rag-data"))
    monkeypatch.delenv("RETRIEVALS_RAG_CHROMA_URL", raising=False)
    monkeypatch.setenv("RETRIEVALS_RAG_EMBEDDER", str(tiny_bert_path))
    monkeypatch.setenv("RETRIEVALS_RAG_LLM", "extractive")
    monkeypatch.delenv("RETRIEVALS_RAG_LLM_MODEL", raising=False)
    yield


def adapting(at) -> bool:  # AppTest
    return any(element.proto.text.startswith("Adapting the embedder") for element in at.main.get("progress"))


def test_adapt_then_switch_ask_and_delete(tiny_app_env: None, tiny_bert_path: Path) -> None:
    at = create_collection(start_app(), "notes")
    at = upload_and_index(at, PASSAGES)
    (panel,) = [item for item in at.main.expander if item.label.startswith("Index versions")]
    assert [widget.label for widget in panel.button] == ["Adapt the embedder"]
    assert not [
        radio for radio in at.radio if radio.label == "Questions use"
    ]  # one index only, nothing to switch
    assert at.radio(key="generator-notes").options == [
        "Spans of the passages (fast, no LLM)",
        "Titles and headings the passages open with (fast, no LLM)",
        "SmolLM2-135M-Instruct (local)",
    ]  # no OpenAI-compatible server configured: not offered

    button(at, "Adapt the embedder").click().run()
    assert not at.exception, at.exception
    seen_progress = adapting(at)
    deadline = time.monotonic() + ADAPT_LIMIT_S
    while adapting(at):
        assert time.monotonic() < deadline, "the adaptation did not finish"
        time.sleep(0.3)
        at.run()
    assert seen_progress  # drawn at once: the job runs in the background
    assert not at.exception and not at.main.error, values(at.main.error)

    assert [unescape(text) for text in values(at.main.success)] == [
        "adapted-1 is ready: choose it under 'Questions use'."
    ]
    (table,) = at.main.table
    frame = table.value
    assert list(frame.columns) == ["metric", "original", "adapted", "change"]
    assert list(frame["metric"]) == ["nDCG@10", "MRR@10", "Recall@100"]
    boxes = [text for text in values(at.main.text) if text.startswith("adapted-1: ")]
    adapted_line = "adapted-1: 6 chunks embedded by the embedder adapted to these documents (notes-1)"
    assert boxes == [adapted_line], boxes
    switch = at.radio(key="use-version-notes")
    assert switch.options[0] == f"original ({tiny_bert_path.name})"
    assert switch.value == "original" and switch.options[1].startswith("adapted-1 (nDCG@10 ")

    switch.set_value("adapted-1").run()
    assert at.radio(key="use-version-notes").value == "adapted-1"
    # Every passage a source: the random model's order does not matter.
    at.number_input[0].set_value(len(PASSAGES)).run()
    at = ask(at, "When was the Eiffel Tower completed?")
    answer = [unescape(text) for text in values(at.chat_message[1].markdown)]
    assert any("1889" in text for text in answer), answer
    sources = [expander for expander in at.main.expander if expander.label.startswith("Sources")]
    assert sources and sources[-1].label != "Sources (0)", [expander.label for expander in at.main.expander]

    button(at, "Delete adapted-1").click().run()
    assert [unescape(text) for text in values(at.main.warning)] == [
        "Delete adapted-1 (its vectors and its adapted model)?"
    ]
    button(at, "Yes, delete it").click().run()
    assert not at.exception, at.exception
    assert not [radio for radio in at.radio if radio.label == "Questions use"]
    assert not [text for text in values(at.main.text) if text.startswith("adapted-1")]
    at = ask(at, "What does insulin do?")  # back on the original index
    assert len(at.chat_message) == 4


def test_adapting_too_small_a_collection_is_an_error_in_place(tiny_app_env: None) -> None:
    at = create_collection(start_app(), "tiny")
    at = upload_and_index(at, {"eiffel.txt": PASSAGES["eiffel.txt"]})

    button(at, "Adapt the embedder").click().run()

    errors = [unescape(text) for text in values(at.main.error)]
    assert errors == [
        "Cannot adapt: the collection 'tiny' holds 1 chunk(s); adapting needs at least 5 passages (questions of "
        "one held out for the before / after, of two or more trained on, others as negatives): add documents first"
    ]
    assert not adapting(at)
    at = ask(at, "When was the Eiffel Tower completed?")  # the page works
    assert any("1889" in unescape(text) for text in values(at.chat_message[1].markdown))


def test_the_question_prompt_and_reply_form_reach_the_adaptation(
    tiny_app_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An LLM generator shows what it will be asked; an edited prompt, "keep replies that are not questions" and
    "let SmolLM2 judge the training pairs" (the query-likelihood teacher) go into the job's settings, the default
    prompt goes as None (so a resumed run matches), and a prompt without {passage} is refused in place before
    anything starts."""
    from retrievals_rag.rag.engine import RagEngine

    monkeypatch.setenv("RETRIEVALS_RAG_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RETRIEVALS_RAG_LLM_MODEL", "claims-model")
    asked: list = []

    def record(self: RagEngine, collection: str, settings: object) -> None:
        asked.append(settings)
        raise RuntimeError("recorded, not started")

    monkeypatch.setattr(RagEngine, "submit_adaptation", record)
    at = create_collection(start_app(), "notes")
    at = upload_and_index(at, PASSAGES)
    assert not [area for area in at.text_area if area.key == "prompt-notes"]  # spans: no model is asked
    at.radio(key="generator-notes").set_value("title").run()
    assert not [area for area in at.text_area if area.key == "prompt-notes"]  # headings: none either
    button(at, "Adapt the embedder").click().run()
    assert asked[-1].generator == "title" and asked[-1].question_prompt is None
    assert asked[-1].teacher is None
    at.checkbox(key="teacher-notes").check()
    button(at, "Adapt the embedder").click().run()
    assert asked[-1].generator == "title" and asked[-1].teacher == "query-likelihood"
    at.checkbox(key="teacher-notes").uncheck()
    at.radio(key="generator-notes").set_value("openai").run()
    prompt = at.text_area(key="prompt-notes")
    assert "{passage}" in prompt.value

    button(at, "Adapt the embedder").click().run()
    assert asked[-1].question_prompt is None and asked[-1].reply_form == "question"

    claims = "Write one short claim that this passage supports.\n\n{passage}\n\nClaim:"
    at.text_area(key="prompt-notes").set_value(claims)
    at.checkbox(key="any-reply-notes").check()
    button(at, "Adapt the embedder").click().run()
    assert asked[-1].generator == "openai" and asked[-1].openai_model == "claims-model"
    assert asked[-1].question_prompt == claims and asked[-1].reply_form == "any"
    assert [unescape(text) for text in values(at.main.error)] == ["Cannot adapt: recorded, not started"]

    at.text_area(key="prompt-notes").set_value("Write a question.")
    button(at, "Adapt the embedder").click().run()
    assert len(asked) == 4  # refused before the job
    (error,) = [unescape(text) for text in values(at.main.error)]
    assert error.startswith("Cannot adapt: ") and "{passage}" in error
