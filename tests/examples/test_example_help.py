"""Every example's --help names each option's default, and the defaults it shows are the ones it uses."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HF_EXAMPLES = [  # HfArgumentParser scripts with defaults of their own
    "embedding/train_llm.py",
    "reranking/train_colbert.py",
    "reranking/train_cross_encoder.py",
    "reranking/train_llm.py",
]
ARGPARSE_EXAMPLES = [
    "adapt/scifact_adapt.py",
    "benchmarks/bench_query_likelihood.py",
    "benchmarks/bench_rag.py",
    "benchmarks/bench_restart.py",
    "benchmarks/bench_rerank.py",
    "benchmarks/bench_train.py",
    "benchmarks/gpu_suite.py",
    "benchmarks/import_cost.py",
    "benchmarks/rerank_backends_quality.py",
    "rag/answer_quality.py",
    "rag/rag_langchain.py",
    "rag/rag_llama_index.py",
    "reranking/compare_runs.py",
    "reranking/distill_cross_encoder.py",
    "reranking/scifact_rerank.py",
    "scifact/finetune_scifact.py",
    "scifact/smollm2.py",
]


class Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def parser_of(script: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The script's parser, taken when it parses its arguments (nothing after that runs)."""

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    monkeypatch.setattr(sys, "argv", [script])
    with pytest.raises(Parsed) as parsed:
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    return parsed.value.parser


@pytest.mark.parametrize("script", ARGPARSE_EXAMPLES)
def test_every_option_names_its_default(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = parser_of(script, monkeypatch)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if "-h" in action.option_strings:
            continue
        assert action.help, f"{script} {action.option_strings or action.dest}: no help"
        if action.option_strings and not action.required:
            shown = formatter._expand_help(action)
            assert "default" in shown.lower(), f"{script} {action.option_strings}: {shown!r}"


@pytest.mark.parametrize("script", HF_EXAMPLES)
def test_the_defaults_set_by_the_script_are_the_ones_help_shows(
    script: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = parser_of(script, monkeypatch)
    defaults = runpy.run_path(str(EXAMPLES / script))["DEFAULTS"]
    shown = {action.dest: action.default for action in parser._actions}
    assert defaults and {name: shown[name] for name in defaults} == defaults
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)  # shown in --help
