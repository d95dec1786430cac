"""The command line as a user meets it: every --help shows its defaults, -v anywhere, progress on a terminal only,
a final timing line, a missing model path that fails at once, and `convert gguf` from the machine's cache.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import pytest

from retrievals_rag.cli.common import BATCH_SIZE_HELP, TOKEN_BUDGET_HELP, activity
from retrievals_rag.cli.main import build_parser, main, subcommands

ALWAYS_THERE = {"-h", "-v", "--version"}


def commands() -> list[argparse.ArgumentParser]:
    return [parser for parser in subcommands(build_parser()) if not any(
        isinstance(action, argparse._SubParsersAction) for action in parser._actions
    )]  # fmt: skip


def test_every_command_is_listed() -> None:
    assert sorted(parser.prog.removeprefix("retrievals-rag ") for parser in commands()) == [
        "adapt",
        "app",
        "bench encode",
        "bench rerank",
        "convert dpr",
        "convert gguf",
        "convert t2ranking",
        "encode",
        "evaluate",
        "export",
        "index",
        "merge",
        "mine",
        "train",
    ]


@pytest.mark.parametrize("parser", commands(), ids=lambda parser: parser.prog.removeprefix("retrievals-rag "))
def test_every_option_has_help_that_names_its_default(parser: argparse.ArgumentParser) -> None:
    formatter = parser._get_formatter()
    one_of = {
        id(action)
        for group in parser._mutually_exclusive_groups
        if group.required
        for action in group._group_actions
    }
    for action in parser._actions:
        if ALWAYS_THERE & set(action.option_strings):
            continue
        assert action.help, f"{parser.prog} {action.option_strings or action.dest}: no help"
        if action.option_strings and not action.required and id(action) not in one_of:
            shown = formatter._expand_help(action) if action.help else ""
            assert "default" in shown.lower(), f"{parser.prog} {action.option_strings}: {shown!r}"


@pytest.mark.parametrize("task", ["embedding", "reranker"])
def test_every_training_option_names_its_default_once(task: str) -> None:
    """``train TASK --help`` lists our arguments and transformers' ``TrainingArguments``: each names its default,
    and one whose help already says it gets no second, contradicting ``(default: None)``."""
    from retrievals_rag.cli.train import training_parser

    parser = training_parser(task)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if ALWAYS_THERE & set(action.option_strings):
            continue
        shown = formatter._expand_help(action)
        assert "default" in shown.lower(), f"{parser.prog} {action.option_strings}: {shown!r}"
        assert shown.lower().count("default:") <= 1, f"{parser.prog} {action.option_strings}: {shown!r}"
    help_text = parser.format_help()
    assert "--train_data" in help_text and "--learning_rate" in help_text and "--eval_data" in help_text


def test_the_documented_encoder_defaults_are_the_real_ones() -> None:
    from retrievals_rag.models.base import DEFAULT_MAX_BATCH_SIZE, DEFAULT_TOKEN_BUDGET

    assert (
        f"{DEFAULT_MAX_BATCH_SIZE['cpu']:,} on the CPU, {DEFAULT_MAX_BATCH_SIZE['cuda']:,} on a GPU"
        == BATCH_SIZE_HELP
    )
    assert (
        f"{DEFAULT_TOKEN_BUDGET['cpu']:,} on the CPU, {DEFAULT_TOKEN_BUDGET['cuda']:,} on a GPU"
        == TOKEN_BUDGET_HELP
    )


def test_app_help_lists_the_llm_endpoint_options() -> None:
    (app,) = [parser for parser in commands() if parser.prog.endswith(" app")]
    text = app.format_help()
    for option in ("--llm-base-url", "--llm-model", "--llm-api-key", "--reranker", "--embedder"):
        assert option in text


@pytest.mark.parametrize("argv", [["-v", "encode", "--text", "x"], ["encode", "--text", "x", "-v"]])
def test_verbose_works_before_and_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--output", "out.npy"])
    assert args.verbose is True
    assert build_parser().parse_args(["encode", "--text", "x", "--output", "o.npy"]).verbose is False


def test_verbose_after_the_subcommand_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        main(["encode", "--input", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o.npy"), "-v"])


def test_verbose_after_the_training_options_shows_the_traceback(tmp_path: Path) -> None:
    options = ["--train_data", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path / "out")]
    assert main(["train", "embedding", *options]) == 2  # a message
    with pytest.raises((OSError, ValueError)):
        main(["train", "embedding", *options, "-v"])  # -v among the task's options: the traceback


def test_a_missing_relative_model_path_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # even online: models/ is a local folder
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # no hub round trip: with sockets off in the tests, one would fail with another error than "not found"
    code = main(["encode", "--model", "models/no-such-model", "--text", "x", "--output", "o.npy"])
    assert code == 2
    assert "error: model folder not found: models/no-such-model" in capsys.readouterr().err


def test_a_hub_like_id_is_not_tried_in_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrievals_rag.models.loading import resolve_model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"not found: some-org/some-model .*offline mode is on"):
        resolve_model_path("some-org/some-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_model_path("some-org/some-model") == "some-org/some-model"
    for missing in ("./some-model", "a/b/c", "../x", "/no/such/model"):
        with pytest.raises(FileNotFoundError, match="model folder not found"):
            resolve_model_path(missing)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_activity_ticks_by_time_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import retrievals_rag.cli.common as common

    monkeypatch.setattr(common, "_TICK_SECONDS", 0.05)
    terminal, pipe = Terminal(), io.StringIO()
    with activity("converting", terminal):
        time.sleep(0.3)
    with activity("converting", pipe):
        time.sleep(0.1)
    assert "\rconverting… 0 s" in terminal.getvalue() and terminal.getvalue().endswith("\r\033[K")
    assert pipe.getvalue() == ""


def test_encode_prints_a_final_timing_line(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["encode", "--model", str(tiny_bert_path), "--text", "a", "--text", "b", "--output",
                 str(tmp_path / "o.npy")])  # fmt: skip
    assert code == 0
    assert "encoded 2 text(s) in " in capsys.readouterr().err


def test_convert_gguf_uses_the_machine_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file converted before (same content) is found in $RETRIEVALS_RAG_CACHE at once: no second conversion."""
    import hashlib

    monkeypatch.setenv("RETRIEVALS_RAG_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF not really")
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    folder = tmp_path / "cache" / "models" / f"tiny-{digest[:12]}"
    folder.mkdir(parents=True)
    (folder / "retrievals_rag_conversion.json").write_text(json.dumps({"sha256": digest}))

    assert main(["convert", "gguf", "--input", str(gguf)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(folder)
    assert "tiny.gguf was already converted" in captured.err

    assert main(["convert", "gguf", "--input", str(tmp_path / "missing.gguf")]) == 2
    assert "no GGUF file at" in capsys.readouterr().err
