"""Pseudo-queries with no model: a passage's heading (what counts as one, what does not) and the title generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrievals_rag.data.generation import build_generator, generate_questions
from retrievals_rag.data.passage_queries import HeadingGenerator, split_heading


@pytest.mark.parametrize(
    ("passage", "expected"),
    [
        ("# Insulin\n\nInsulin lowers blood sugar.", ("Insulin", "Insulin lowers blood sugar.")),
        ("## Results ##\nThe dose halved the risk.", ("Results", "The dose halved the risk.")),
        ("Results\n=======\nThe dose halved the risk.", ("Results", "The dose halved the risk.")),
        ("Methods\n---\nMice were fed for ten weeks.", ("Methods", "Mice were fed for ten weeks.")),
        (  # a paper's title, with its full stop
            "Aspirin lowers the risk of stroke in adults.\nIn a trial of 2,000 adults, aspirin halved strokes.",
            (
                "Aspirin lowers the risk of stroke in adults.",
                "In a trial of 2,000 adults, aspirin halved strokes.",
            ),
        ),
        (
            "胰岛素的作用\n胰岛素降低血糖水平，由胰腺分泌，作用于肝脏。",
            ("胰岛素的作用", "胰岛素降低血糖水平，由胰腺分泌，作用于肝脏。"),
        ),
        ("  \n  Title  \n  Body text that is longer.  ", ("Title", "Body text that is longer.")),
    ],
)
def test_a_heading_is_the_first_line_and_the_text_below_is_the_body(
    passage: str, expected: tuple[str, str]
) -> None:
    assert split_heading(passage) == expected


@pytest.mark.parametrize(
    "passage",
    [
        "One line only, with no text below it.",
        "The cell divides when\nthe signal arrives and the protein binds.",  # hard-wrapped prose
        "The dose, the route,\nAnd the time were varied across all the groups.",  # ends as if it went on
        "- first item of a list\n- second item of the same list, longer",
        "1. first step\n2. second step, which is longer than the first",
        "| a | b |\n| 1 | 2 | and a much longer row below it",
        "A long title that is longer than its body\nShort.",
        "#\nA heading mark with no heading in it.",
        " ".join(["word"] * 40) + "\nBody " + "text " * 60,  # too long for a heading
    ],
)
def test_what_is_not_a_heading(passage: str) -> None:
    assert split_heading(passage) is None


def test_the_limits_of_a_heading_are_settings() -> None:
    passage = "Five words in this title\nAnd the text below it, which is longer than the title."
    assert split_heading(passage, max_words=5) is not None
    assert split_heading(passage, max_words=4) is None
    assert split_heading(passage, max_chars=10) is None
    with pytest.raises(ValueError, match="max_words and max_chars must be >= 1"):
        HeadingGenerator(max_words=0)


def test_the_title_generator_keeps_headings_and_counts_passages_without_one(tmp_path: Path) -> None:
    passages = {
        "a": "Insulin and glucose\nInsulin lowers the level of glucose in the blood.",
        "b": "# Statins\nStatins lower LDL cholesterol in most adults.",
        "c": "no heading: one line of text",
        "d": "Insulin and glucose\nThe same title over another text that is long enough.",
    }
    generator = build_generator("title")
    assert isinstance(generator, HeadingGenerator) and not generator.chat

    result = generate_questions(passages, generator, tmp_path / "q.jsonl")

    assert [(q.passage_id, q.question) for q in result.questions] == [
        ("a", "Insulin and glucose"),
        ("b", "Statins"),
    ]
    assert result.dropped["empty"] == 1 and result.dropped["duplicate"] == 1
    assert generator.training_text(passages["b"]) == "Statins lower LDL cholesterol in most adults."
    assert generator.training_text(passages["c"]) == passages["c"]  # no heading: the passage whole
    assert [generator.accepts(text) for text in passages.values()] == [True, True, False, True]


def test_cropping_takes_any_passage_with_text_and_trains_on_it_whole() -> None:
    generator = build_generator("cropping")

    assert generator.accepts("one line of text") and not generator.accepts(" \n ")
    assert generator.training_text("# Statins\nStatins lower LDL.") == "# Statins\nStatins lower LDL."


def test_the_title_generator_takes_no_prompt_and_one_question_per_passage() -> None:
    with pytest.raises(ValueError, match="title asks no model"):
        build_generator("title", prompt="Ask about {passage}")
    with pytest.raises(ValueError, match="one question per passage"):
        build_generator("title", questions_per_passage=2)
