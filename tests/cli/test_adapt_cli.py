"""``retrievals-rag adapt``: help with real defaults, a BEIR corpus and a folder of documents, bad input."""

from __future__ import annotations

import json
import re
import socket
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from retrievals_rag.cli.adapt import read_passages
from retrievals_rag.cli.main import main
from tests.local_http import serve

from ..conftest import SCIFACT_SUBSET

TOPICS = [
    "insulin",
    "the heart",
    "neurons",
    "the liver",
    "bone marrow",
    "the kidney",
    "antibodies",
    "enzymes",
]


def test_help_shows_the_settings_and_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["adapt", "--help"])
    shown = " ".join(capsys.readouterr().out.split())

    for expected in (
        "--generator {cropping,title,smollm2,openai}",
        "(default: cropping)",
        "(default: 2000)",
        "(default: (5, 50))",
        "--rank-range START END",
        "--teacher TEACHER",
        "(default: OPENAI_API_KEY)",
        "warm-up over 10% of the steps",
    ):
        assert expected in shown


def test_adapt_a_beir_corpus_prints_the_verdict_and_the_time(
    tmp_path: Path, tiny_bert_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "adapted"
    arguments = ["adapt", "--corpus", str(SCIFACT_SUBSET), "--output_dir", str(output)]
    arguments += ["--base-model", str(tiny_bert_path), "--max-passages", "24", "--holdout-fraction", "0.25"]
    arguments += ["--max-length", "64", "--batch-size", "8", "--rank-range", "2", "20", "--no-progress"]

    assert main(arguments) == 0

    captured = capsys.readouterr()
    assert "600 passages read from" in captured.err
    assert "verdict on" in captured.out and "nDCG@10" in captured.out
    assert "generator cropping: 24 questions for 24 passages (18 trained on, 6 held out)" in captured.out
    assert "adapted on 24 passages (24 questions) in" in captured.err
    report = json.loads((output / "adapt_report.json").read_text())
    assert report["verdict"]["before"]["nDCG@10"] >= 0 and report["holdout_questions"] == 6


def test_documents_are_split_into_chunks_that_are_the_passages(
    tmp_path: Path, tiny_bert_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for index, topic in enumerate(TOPICS):
        sentences = [f"Fact {number} about {topic} is written here in words." for number in range(12)]
        (folder / f"doc{index}.txt").write_text(" ".join(sentences))
    (folder / "notes.md").write_text("# Heading\n\nA short note about " + TOPICS[0] + ".")
    (folder / "budget.xlsx").write_bytes(b"PK")

    passages = read_passages([folder], base_model=str(tiny_bert_path), max_length=64)

    assert len(passages) > len(TOPICS) + 1  # long documents give several chunks
    assert all(text.strip() for text in passages.values())
    assert any("A short note about insulin." in text for text in passages.values())
    assert (
        "left out of the folders: 1 file(s) of types that cannot be read (1 .xlsx)" in capsys.readouterr().out
    )


def test_bad_corpus_input_is_a_message(
    tmp_path: Path, tiny_bert_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "one.txt").write_text("Only one passage here.")
    output = tmp_path / "out"
    common = ["--output-dir", str(output), "--base-model", str(tiny_bert_path), "--no-progress"]

    assert main(["adapt", "--corpus", str(tmp_path / "missing"), *common]) == 2
    assert "error: --corpus: " in capsys.readouterr().err
    assert main(["adapt", "--corpus", str(empty), *common]) == 2
    assert "the corpus is empty" in capsys.readouterr().err
    assert main(["adapt", "--corpus", str(tmp_path / "one.txt"), *common]) == 2
    assert "has 1 distinct passage(s); adapting needs at least 5" in capsys.readouterr().err
    assert not output.exists()


def test_an_openai_endpoint_that_is_down_is_named(
    tmp_path: Path, tiny_bert_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    arguments = ["adapt", "--corpus", str(SCIFACT_SUBSET), "--output-dir", str(tmp_path / "out")]
    arguments += ["--base-model", str(tiny_bert_path), "--generator", "openai", "--no-progress"]
    arguments += ["--openai-base-url", url, "--openai-model", "m", "--max-passages", "10"]

    assert main(arguments) == 2

    error = capsys.readouterr().err
    assert (
        f"error: question generation stopped: the chat backend {url}/chat/completions failed 3 times" in error
    )
    assert "run again to resume" in error


class ClaimServer(BaseHTTPRequestHandler):
    """An OpenAI-style chat server that keeps the prompts it is sent and answers with a claim (not a question)
    about the passage's longest word."""

    prompts: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        type(self).prompts.append(prompt)
        passage = prompt.split("Passage: ", 1)[-1]
        reply = f"Levels of {max(re.findall(r'[A-Za-z]+', passage), key=len)} rise with age."  # a claim
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        event = {"choices": [{"delta": {"content": reply}}]}
        self.wfile.write(f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_question_prompt_is_what_the_model_is_asked(
    tmp_path: Path, tiny_bert_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ClaimServer.prompts = []
    output = tmp_path / "out"
    prompt = "Write {questions} that a reader might check against this abstract.\nPassage: {passage}"
    with serve(ClaimServer) as url:
        arguments = ["adapt", "--corpus", str(SCIFACT_SUBSET), "--output-dir", str(output)]
        arguments += ["--base-model", str(tiny_bert_path), "--generator", "openai", "--no-progress"]
        arguments += ["--openai-base-url", f"{url}/v1", "--openai-model", "m", "--max-passages", "12"]
        arguments += [
            "--max-length",
            "64",
            "--batch-size",
            "4",
            "--reply-form",
            "any",
            "--question-prompt",
            prompt,
        ]

        assert main(arguments) == 0

    assert len(ClaimServer.prompts) == 12
    assert all(
        sent.startswith("Write one question that a reader might check against this abstract.\nPassage: ")
        for sent in ClaimServer.prompts
    )
    lines = [
        json.loads(line) for line in (output / "generated_questions-openai.jsonl").read_text().splitlines()
    ]
    assert len(lines) == 12 and all(line["questions"] and line["prompt"] for line in lines)
    # a rerun with another prompt is refused, naming the questions file; nothing is asked
    with serve(ClaimServer) as url:
        arguments[arguments.index("--openai-base-url") + 1] = f"{url}/v1"
        arguments[-1] = "Write {questions} about: {passage}"

        assert main(arguments) == 2
    assert "generated_questions-openai.jsonl, line 1: its questions were asked for with another prompt" in (
        capsys.readouterr().err
    )
    assert len(ClaimServer.prompts) == 12


def test_a_question_prompt_is_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    arguments = ["adapt", "--corpus", str(SCIFACT_SUBSET), "--output-dir", str(tmp_path / "out")]

    assert main([*arguments, "--generator", "smollm2", "--question-prompt", "Ask about it."]) == 2
    assert "question_prompt must contain the {passage} placeholder" in capsys.readouterr().err
    assert main([*arguments, "--question-prompt", "Ask about {passage}"]) == 2
    assert "question_prompt is for the smollm2 and openai generators" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_beir_corpus_keeps_each_title_on_its_own_line(tiny_bert_path: Path) -> None:
    first = json.loads((SCIFACT_SUBSET / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[0])

    passages = read_passages([SCIFACT_SUBSET], base_model=str(tiny_bert_path), max_length=64)

    assert passages[first["_id"]] == f"{first['title']}\n{first['text']}".strip()
