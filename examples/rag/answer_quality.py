"""Answer quality of the RAG engine on a question set with known answers, per answer mode, with time to first token.

The question set (``tests/data/rag_questions``): seven small documents, one of every supported type (PDF, text,
Markdown, HTML, DOCX, CSV, JSON lines), written for this test, so no model has seen them; 27 questions whose
answer is in one of them and 5 whose answer is in none. An answer counts as correct when it contains every
expected string (case-insensitive) and its first cited source is the expected file; for a question whose answer
is absent, when it says that the documents do not contain it (and cites nothing).

Modes (the engine's default offline configuration: ``RagEngine(folder)``, the packaged MiniLM, the packaged
SmolLM2-135M chat model):

- ``smollm2``: the default answer mode (``retrievals_rag.rag.answer_modes``), asked through ``RagEngine.ask`` as
  the app does: SmolLM2 writes one sentence from the three best sentences of the sources, kept when the check
  finds it supported by them, else the extractive answer; the relevance floor before it;
- ``extractive``: the ``extractive`` answer mode (sentences scored by the embedder, relevance floor), no LLM;
- ``smollm2-chunks``: the first SmolLM2 answer (five whole chunks, the long prompt, no floor, no check);
- ``word-overlap``: the first extractive answer (sentences by shared rare words, no floor).

For ``smollm2`` it also prints how many answers SmolLM2 wrote (kept by the check), how many the check replaced
with the quoted sentences, how many of SmolLM2's own sentences were right (before the check), and any failure.

Time to first token: from the question to the first piece of text, for the first question after start-up (each
mode on a new engine, the documents indexed, the chat model not loaded yet: it is loaded by that question) and the
median of the later ones. A checked answer's first piece is SmolLM2's whole first sentence (it is checked before
it is shown). Run on an idle machine; the figures printed are what this machine did.

Usage:
    python examples/rag/answer_quality.py                       # smollm2 and extractive (a few minutes)
    python examples/rag/answer_quality.py --modes extractive    # no LLM (about 20 s)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUESTIONS_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "rag_questions"
MODES = ("smollm2", "extractive", "smollm2-chunks", "word-overlap")
DEFAULT_MODES = ("smollm2", "extractive")
_ABSENT = re.compile(
    r"(documents|sources|passages|context) (do|does) not (contain|answer|mention|say|provide)|"
    r"not (in|mentioned in) the (documents|sources)|no (information|mention)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Question:
    """A question with the strings its answer must contain and the file that holds it (None: absent)."""

    text: str
    expect: tuple[str, ...]
    source: str | None


@dataclass(frozen=True)
class Outcome:
    """One answer: its text, the files it cites (in order), its correctness and its time to first token.

    For a checked model answer: ``note`` (what the answer shown is), ``model_sentence`` (the model's own
    sentence, before the check), ``kept`` (whether the check kept it) and ``failure`` (why the model failed).
    """

    answer: str
    cited: tuple[str, ...]
    correct: bool
    first_token_s: float
    note: str | None = None
    model_sentence: str | None = None
    kept: bool | None = None
    failure: str | None = None


def load_questions(folder: Path) -> list[Question]:
    """The questions of ``folder/questions.jsonl``."""
    questions = []
    for line in (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            questions.append(Question(record["question"], tuple(record["expect"]), record["source"]))
    return questions


def document_paths(folder: Path) -> list[Path]:
    """The documents of the question set (every file but the questions and the generator script)."""
    return sorted(
        path for path in folder.iterdir() if path.suffix not in (".py",) and path.name != "questions.jsonl"
    )


def has_facts(question: Question, text: str) -> bool:
    """Whether ``text`` holds every expected string of ``question`` (case-insensitive)."""
    return all(expected.lower() in text.lower() for expected in question.expect)


def is_correct(question: Question, text: str, cited: Sequence[str], grounded: bool | None) -> bool:
    """The rule of the module's description."""
    if question.source is None:
        return grounded is False or (bool(_ABSENT.search(text)) and not cited)
    return has_facts(question, text) and bool(cited) and (cited[0] == question.source)


def run_mode(mode: str, engine: Any, questions: Sequence[Question], collection: str) -> list[Outcome]:
    """Ask every question in ``mode``; the chat model is loaded by the first question (timed)."""
    from retrievals_rag.rag.generate import ExtractiveAnswer, answer

    outcomes = []
    for question in questions:
        start = time.perf_counter()
        if mode in ("smollm2", "extractive"):  # the engine's answer mode, asked as the app asks
            stream = engine.ask(question.text, collection)
        else:
            chunks = engine.retrieve(question.text, collection)
            if mode == "word-overlap":  # the first extractive answer
                stream = answer(question.text, chunks, ExtractiveAnswer(max_sentences=3))
            else:  # smollm2-chunks: whole chunks, unchecked
                stream = answer(question.text, chunks, engine.backend, fallback=False)
        first_token = None
        for _ in stream:
            if first_token is None:
                first_token = time.perf_counter() - start
        cited = tuple(Path(citation.chunk.source).name for citation in stream.cited())
        correct = is_correct(question, stream.text, cited, stream.grounded)
        support = stream.support
        outcomes.append(
            Outcome(
                stream.text.strip(),
                cited,
                correct,
                first_token or 0.0,
                note=stream.note,
                model_sentence=None if support is None else support.sentence,
                kept=None if support is None else support.supported,
                failure=stream.fallback_reason if support is None else None,
            )
        )
    return outcomes


def print_model_counts(questions: Sequence[Question], outcomes: Sequence[Outcome]) -> None:
    """For a checked mode: answers the model wrote, answers the check replaced, its own sentences right."""
    checked = [(q, o) for q, o in zip(questions, outcomes, strict=True) if o.kept is not None]
    kept = [(q, o) for q, o in checked if o.kept]
    own_right = sum(has_facts(q, o.model_sentence or "") for q, o in checked)
    kept_right = sum(o.correct for _, o in kept)
    failures = [o.failure for o in outcomes if o.failure]
    print(
        f"  model asked {len(checked)} times: answer kept {len(kept)} ({kept_right} of them right), replaced by "
        f"the quoted sentences {len(checked) - len(kept)}; its own sentence held the expected facts "
        f"{own_right}/{len(checked)}; failures: {len(failures)}{' ' + repr(failures[0]) if failures else ''}"
    )


def print_table(questions: Sequence[Question], results: dict[str, list[Outcome]]) -> None:
    """One row per question (y / n per mode), then the totals and the times to first token."""
    modes = list(results)
    width = max(len(mode) for mode in modes) + 2
    print(f"{'#':>3} {'file':15}" + "".join(f"{mode:>{width}}" for mode in modes) + "  question")
    for number, question in enumerate(questions, start=1):
        marks = "".join(f"{'y' if results[mode][number - 1].correct else 'n':>{width}}" for mode in modes)
        print(f"{number:>3} {question.source or '(absent)':15}{marks}  {question.text}")
    answerable = [index for index, question in enumerate(questions) if question.source is not None]
    absent = [index for index, question in enumerate(questions) if question.source is None]
    print()
    for label, indices in (("answerable, right file cited", answerable), ("absent, said so", absent)):
        cells = ""
        for mode in modes:
            right = sum(results[mode][index].correct for index in indices)
            cells += f"{f'{right}/{len(indices)} {100 * right / len(indices):.0f}%':>{width}}"
        print(f"{label:>19}" + cells)
    for label, pick in (
        ("first token, 1st question (s)", lambda outcomes: outcomes[0].first_token_s),
        (
            "first token, later median (s)",
            lambda outcomes: statistics.median(o.first_token_s for o in outcomes[1:]),
        ),
    ):
        print(f"{label:>19}" + "".join(f"{pick(results[mode]):>{width}.2f}" for mode in modes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=QUESTIONS_DIR, help="question set folder (default: %(default)s)"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, default=list(DEFAULT_MODES), help="default: %(default)s"
    )
    parser.add_argument("--show-answers", action="store_true", help="print every answer (default: no)")
    parser.add_argument(
        "--output-json", type=Path, default=None, help="also write the answers to this file (default: none)"
    )
    args = parser.parse_args()

    from retrievals_rag.rag.answer_modes import DEFAULT_LLM
    from retrievals_rag.rag.engine import RagEngine

    questions = load_questions(args.data)
    results: dict[str, list[Outcome]] = {}
    for mode in args.modes:  # each on a new engine: its first question is the first after start-up
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as data_dir:
            # the default (MiniLM, SmolLM2 converted once per machine, checked), or no LLM
            engine = RagEngine(data_dir, llm="extractive" if mode == "extractive" else DEFAULT_LLM)
            engine.create_collection("questions")
            report = engine.index_files(document_paths(args.data), "questions")
            if report.errors:
                raise SystemExit(f"indexing failed: {report.errors}")
            ready = time.perf_counter()
            results[mode] = run_mode(mode, engine, questions, "questions")
            print(
                f"{mode}: start-up (engine, MiniLM, {len(report.indexed)} documents indexed) "
                f"{ready - started:.1f} s, {len(questions)} questions {time.perf_counter() - ready:.1f} s"
            )
    print()
    print_table(questions, results)
    for mode, outcomes in results.items():
        if any(outcome.kept is not None for outcome in outcomes):
            print(f"{mode}:")
            print_model_counts(questions, outcomes)
    if args.show_answers:
        for mode, outcomes in results.items():
            print(f"\n== {mode}")
            for question, outcome in zip(questions, outcomes, strict=True):
                print(
                    f"{'y' if outcome.correct else 'n'} {question.text}\n    {outcome.answer!r} {list(outcome.cited)}"
                )
                if outcome.note:
                    print(f"    ({outcome.note}; model: {outcome.model_sentence!r})")
    if args.output_json is not None:
        payload = {
            mode: [
                {
                    "question": q.text,
                    "answer": o.answer,
                    "cited": list(o.cited),
                    "correct": o.correct,
                    "first_token_s": o.first_token_s,
                    "note": o.note,
                    "model_sentence": o.model_sentence,
                    "kept": o.kept,
                }
                for q, o in zip(questions, outcomes, strict=True)
            ]
            for mode, outcomes in results.items()
        }
        args.output_json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
