"""Checked model answers: the support rules, and the answer that keeps a supported sentence or quotes the sources.

A fake chat backend replies with a fixed text, piece by piece, and records whether it was read to the end; a
word-overlap scorer stands in for the embedder. No model is loaded: these run in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from retrievals_rag.rag.generate import (
    GROUNDED_EXAMPLES,
    GROUNDED_SYSTEM_PROMPT,
    NOT_IN_DOCUMENTS_ANSWER,
    ChatMessage,
    GenerationError,
    answer,
)
from retrievals_rag.rag.grounding import SupportCheck, content_words, sentence_end
from retrievals_rag.rag.retrieve import RetrievedChunk


class OverlapScorer:
    """Share of the question's content words in the unit (a stand-in for the embedder)."""

    scale = "word overlap"

    def score(self, question: str, units: Sequence[str]) -> list[float]:
        asked = content_words(question)
        return [len(asked & content_words(unit)) / max(len(asked), 1) for unit in units]


class FakeChat:
    """Replies with ``reply`` word by word; records the prompts and how many pieces were read."""

    name = "fake-llm"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.messages: list[list[ChatMessage]] = []
        self.pieces_read = 0
        self.closed_early = False

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        self.messages.append(list(messages))
        words = self.reply.split(" ")
        try:
            for index, word in enumerate(words):
                self.pieces_read += 1
                yield word if index == 0 else " " + word
        except GeneratorExit:
            self.closed_early = True
            raise


def chunk(text: str, source: str) -> RetrievedChunk:
    return RetrievedChunk(text, source, None, f"id-{source}", 0.5, 0.5)


GARDEN = chunk(
    "A plot costs 35 pounds a year, paid every April. The committee meets on the first Monday of each month.",
    "garden.txt",
)
TRIP = chunk(
    "The coach leaves at 7:45 am on Mondays. The coach company is Highland Star Coaches. Lunch is eaten at the "
    "Loch Morlich picnic area.",
    "trip.docx",
)
FLOOR = 0.1


def ask(question: str, chat: FakeChat, chunks: Sequence[RetrievedChunk] = (GARDEN, TRIP)):  # -> AnswerStream
    stream = answer(question, list(chunks), chat, scorer=OverlapScorer(), relevance_floor=FLOOR)
    stream.read()
    return stream


# ------------------------------------------------------------------------------------------------ the rules
SOURCES = [(1, GARDEN.text), (2, TRIP.text)]


@pytest.mark.parametrize(
    ("sentence", "question", "reason"),
    [
        ("A plot costs 35 * 4 = 140 pounds.", "How much does a plot cost?", "the number 140 is in none"),
        ("The committee meets every Wednesday.", "When does the committee meet?", "'Wednesday' is in none"),
        ("It is run by Lena Berg.", "Who runs the garden?", "'Lena' is in none"),
        ("The company is Highland Star Coaching.", "Which company?", "'Coaching' is in none"),  # names exact
        ("A plot is paid in April.", "How much does a plot cost?", "asks for a number and it gives none"),
        (
            "The committee meets sometimes.",
            "When does the committee meet?",
            "asks for a time and it gives none",
        ),
        ("The committee meets sometimes.", "Does the committee meet?", "tells nothing the question"),
        ("The coach is run by Highland Star Coaches.", "When does the coach leave?", "asks for a time"),
        ("The coach leaves from Loch Morlich.", "Lunch aside, when does the coach leave?", "asks for a time"),
        (
            "The coach leaves from Loch Morlich.",
            "Since when does the coach leave at 7:45?",
            "asks for a time",
        ),
        ("A plot is paid in April.", "In what year was the garden founded?", "asks for a number"),
        (
            "Plots cost little and are a wonderful hobby for retired gardeners.",
            "What is a plot?",
            "of its words are in the sources",
        ),
        ("[1]", "How much does a plot cost?", "it is empty"),
    ],
)
def test_an_unsupported_sentence_is_refused_with_the_reason(
    sentence: str, question: str, reason: str
) -> None:
    verdict = SupportCheck().check(sentence, question, SOURCES)

    assert not verdict.supported and reason in verdict.reason
    assert verdict.source_numbers == ()


def test_a_supported_sentence_is_cited_with_the_sources_it_rests_on() -> None:
    check = SupportCheck()

    plot = check.check("A plot costs 35 pounds a year [2].", "How much does a plot cost?", SOURCES)
    both = check.check(
        "The plot costs 35 pounds and the coach leaves at 7:45.",
        "What do the plot and the coach cost?",
        SOURCES,
    )

    assert plot.supported and plot.sentence == "A plot costs 35 pounds a year."  # its own [2] is dropped
    assert plot.source_numbers == (1,)
    assert both.supported and both.source_numbers == (1, 2)  # 7:45 is in the trip only
    assert check.check("Lunch is at Loch Morlich.", "Where is lunch eaten?", SOURCES).source_numbers == (2,)
    plural = check.check("It leaves on Monday.", "When does the coach leave?", SOURCES)  # "Mondays" in it
    assert plural.supported
    assert (
        not SupportCheck(min_supported_fraction=1.0)
        .check("Lunch is eaten somewhere near Loch Morlich.", "Where is lunch eaten?", SOURCES)
        .supported
    )
    with pytest.raises(ValueError, match="min_supported_fraction"):
        SupportCheck(min_supported_fraction=1.5)


@pytest.mark.parametrize(
    ("sentence", "question"),
    [
        ("The coach leaves at 7:45 am [2].", "When does the coach leave?"),
        ("A plot is paid every April [1].", "When is a plot paid?"),
        ("The committee meets on the first Monday of each month.", "When does the committee meet?"),
        ("A plot costs 35 pounds, paid in April.", "How much is a plot, and when is it paid?"),
        (
            "The coach company is Highland Star Coaches.",
            "What happens when the coach is late?",
        ),  # a condition
    ],
)
def test_a_when_question_is_answered_by_a_number_or_a_day_or_month_of_the_sources(
    sentence: str, question: str
) -> None:
    assert SupportCheck().check(sentence, question, SOURCES).supported


def test_a_when_question_answered_without_a_date_is_refused_as_a_what_year_one_is() -> None:
    sources = [
        (1, "The Eiffel Tower was built in 1889 for the World's Fair. Gustave Eiffel's company built it.")
    ]
    reply = "The Eiffel Tower was built by Gustave Eiffel's company [1]."

    for question in ("When was the Eiffel Tower built?", "What year was the Eiffel Tower built?"):
        verdict = SupportCheck().check(reply, question, sources)
        assert not verdict.supported, question
    assert (
        SupportCheck()
        .check("It was built in 1889 [1].", "When was the Eiffel Tower built?", sources)
        .supported
    )


def test_sentence_end_waits_for_a_whole_sentence() -> None:
    assert sentence_end("It costs 24.50") is None
    assert sentence_end("It costs 24.50 euros.") is None  # the stream may go on with " [1]"
    assert sentence_end("It costs 24.50 euros. Next") == len("It costs 24.50 euros.")
    assert sentence_end("Dr. Ana Ruiz leads it [1]. Bring a torch.") == len("Dr. Ana Ruiz leads it [1].")
    assert sentence_end("\nThe first line\nthe second") == len("\nThe first line")


# ------------------------------------------------------------------------------------------------ the answer
def test_a_supported_answer_is_kept_with_its_citation_and_the_model_is_stopped_after_it() -> None:
    chat = FakeChat(
        "A plot costs 35 pounds a year [2]. It is also very cheap compared to other gardens nearby."
    )

    stream = ask("How much does a plot in the garden cost?", chat)

    assert stream.text == "A plot costs 35 pounds a year. [1]"  # the source it rests on, not the model's [2]
    assert [citation.label for citation in stream.cited()] == ["garden.txt"]
    assert stream.backend_name == "fake-llm" and stream.fallback_reason is None
    assert stream.support is not None and stream.support.supported
    assert stream.note is not None and stream.note.startswith("Written by fake-llm")
    assert chat.closed_early and chat.pieces_read < len(chat.reply.split(" "))  # the rest was not generated
    [messages] = chat.messages
    assert messages[0] == {"role": "system", "content": GROUNDED_SYSTEM_PROMPT}
    assert len(messages) == 2 + 2 * len(GROUNDED_EXAMPLES)
    assert messages[-1]["content"].startswith("[1] A plot costs 35 pounds a year, paid every April.")
    assert messages[-1]["content"].endswith("\n\nQuestion: How much does a plot in the garden cost?")


@pytest.mark.parametrize(
    "reply",
    [
        "A plot costs 35 * 4 = 140 pounds a year [1].",  # arithmetic on the sources' numbers
        "The garden is run by Lena Berg [2].",  # a name copied from the prompt's example
        "The documents do not say how much a plot costs.",  # a refusal although the sources answer
    ],
)
def test_an_unsupported_answer_is_replaced_by_the_quoted_sentences(reply: str) -> None:
    chat = FakeChat(reply)

    stream = ask("How much does a plot in the garden cost?", chat)

    assert stream.text == "A plot costs 35 pounds a year, paid every April. [1]"
    assert [citation.label for citation in stream.cited()] == ["garden.txt"]
    assert stream.backend_name == "extractive"
    assert stream.support is not None and not stream.support.supported
    assert (
        stream.fallback_reason
        == f"fake-llm's answer is not supported by the sources: {stream.support.reason}"
    )
    assert stream.note == f"Quoted from the sources: {stream.fallback_reason}."
    assert chat.messages  # the model was asked


def test_below_the_floor_the_documents_do_not_contain_it_and_the_model_is_not_called() -> None:
    chat = FakeChat("Canberra is the capital [1].")

    stream = ask("What is the capital of Australia?", chat)

    assert stream.text == NOT_IN_DOCUMENTS_ANSWER
    assert chat.messages == [] and stream.cited() == [] and stream.grounded is False
    assert stream.support is None and stream.note is None


def test_a_failing_model_says_so_and_quotes_the_sources() -> None:
    class Broken(FakeChat):
        def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
            yield "A plot"
            raise GenerationError("out of memory")

    stream = ask("How much does a plot in the garden cost?", Broken(""))

    assert stream.text.startswith("(The language model failed: out of memory.")
    assert stream.text.endswith("A plot costs 35 pounds a year, paid every April. [1]")
    assert stream.fallback_reason == "out of memory" and stream.support is None
    with pytest.raises(GenerationError, match="out of memory"):
        answer(
            "How much does a plot cost?",
            [GARDEN],
            Broken(""),
            scorer=OverlapScorer(),
            relevance_floor=FLOOR,
            fallback=False,
        ).read()


def test_without_a_check_the_whole_reply_is_shown() -> None:
    chat = FakeChat("A plot costs 140 pounds. Really.")

    stream = answer(
        "How much does a plot cost?",
        [GARDEN],
        chat,
        scorer=OverlapScorer(),
        relevance_floor=FLOOR,
        support_check=None,
    )

    assert stream.read() == "A plot costs 140 pounds. Really. [1]"
    assert stream.support is None and stream.note is None
