"""The RAG examples run end to end on two tiny text files: tiny models (or the packaged MiniLM), no LLM, no network."""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REPO_ROOT

QUESTION = "When was the Eiffel Tower completed?"
FILES = {
    "tower.txt": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.\n\n"
    "It is made of wrought iron and is 330 metres tall.",
    "plants.txt": "Photosynthesis converts light, water and carbon dioxide into sugar and oxygen.\n\n"
    "Insulin is a hormone that lowers the level of glucose in the blood.",
}
SOURCE_LINE = re.compile(
    r"^\[(\d)\] (\S+\.txt).*?(relevance|rerank)=(\d\.\d{4}) retrieval=(-?\d\.\d{4})$", re.M
)


def _example(name: str) -> Any:  # -> module
    path = REPO_ROOT / "examples" / "rag" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    import pytest_socket

    pytest_socket.disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        pytest_socket.enable_socket()


@pytest.fixture
def text_files(tmp_path: Path) -> list[Path]:
    paths = []
    for name, text in FILES.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def cross_encoder_folder(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path) -> Path:
    from retrievals_rag.models.ranking import AutoModelForRanking

    path = tmp_path_factory.mktemp("example-cross-encoder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fresh head
        AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(path)
    return path


def sources(output: str) -> list[tuple[int, str, float]]:
    """(number, file name, rerank score) of each printed source."""
    return [(int(number), name, float(score)) for number, name, _, score, _ in SOURCE_LINE.findall(output)]


def best_retrieved(output: str) -> str:
    """The file of the printed source with the highest retrieval score."""
    return max(SOURCE_LINE.findall(output), key=lambda match: float(match[4]))[1]


def test_langchain_example_extractive(
    text_files: list[Path], tmp_path: Path, tiny_bert_path: Path, cross_encoder_folder: Path, capsys: Any
) -> None:
    module = _example("rag_langchain")
    argv = [*map(str, text_files), "--question", QUESTION, "--data-dir", str(tmp_path / "chroma"),
            "--embedding-model", str(tiny_bert_path), "--reranker", str(cross_encoder_folder),
            "--device", "cpu", "--llm", "extractive", "--top-n", "3", "--chunk-chars", "80"]  # fmt: skip

    assert module.main(argv) == 0
    first = capsys.readouterr()
    assert module.main(argv) == 0  # a second run re-indexes the same passages: no duplicates
    second = capsys.readouterr()

    assert "Indexed 4 passages" in first.out and "Indexed 4 passages" in second.out
    assert "Answer (extractive):" in first.out
    assert re.search(r"\[[123]\]", first.out.split("Sources:")[0])  # the answer cites its sources
    found = sources(first.out)
    assert [number for number, _, _ in found] == [1, 2, 3]
    assert {name for _, name, _ in found} <= set(FILES)
    scores = [score for _, _, score in found]
    assert scores == sorted(scores, reverse=True) and all(0.0 < score < 1.0 for score in scores)
    assert sources(second.out) == found
    assert "UNTRAINED" not in first.err


def test_langchain_example_rejects_a_missing_file(tmp_path: Path, capsys: Any) -> None:
    argv = [str(tmp_path / "missing.txt"), "--question", QUESTION, "--data-dir", str(tmp_path / "chroma")]
    assert _example("rag_langchain").main(argv) == 2
    assert "not a file" in capsys.readouterr().err


def test_langchain_example_splits_paragraphs() -> None:
    split = _example("rag_langchain").split_passages

    assert split("a b\n\nc d\n\n\n", 100) == ["a b c d"]
    assert split("a b\n\nc d", 4) == ["a b", "c d"]
    assert split("one two three four", 9) == ["one two", "three", "four"]
    assert split("", 10) == []


def test_llama_index_example(
    text_files: list[Path], tiny_bert_path: Path, cross_encoder_folder: Path, capsys: Any
) -> None:
    argv = [*map(str, text_files), "--question", QUESTION, "--embedding-model", str(tiny_bert_path),
            "--reranker", str(cross_encoder_folder), "--device", "cpu", "--top-n", "2",
            "--chunk-size", "32"]  # fmt: skip

    assert _example("rag_llama_index").main(argv) == 0

    output = capsys.readouterr().out
    found = sources(output)
    assert [number for number, _, _ in found] == [1, 2]
    assert {name for _, name, _ in found} <= set(FILES)
    scores = [score for _, _, score in found]
    assert scores == sorted(scores, reverse=True) and all(0.0 < score < 1.0 for score in scores)


@pytest.mark.slow
def test_examples_with_the_default_untrained_reranker(
    text_files: list[Path], tmp_path: Path, capsys: Any
) -> None:
    common = [*map(str, text_files), "--question", QUESTION, "--device", "cpu"]

    assert (
        _example("rag_langchain").main(
            [*common, "--data-dir", str(tmp_path / "chroma"), "--llm", "extractive"]
        )
        == 0
    )
    langchain_run = capsys.readouterr()
    assert _example("rag_llama_index").main(common) == 0
    llama_index_run = capsys.readouterr()

    for run in (langchain_run, llama_index_run):
        assert "UNTRAINED classification head" in run.err
        assert len(sources(run.out)) >= 1
    # The packaged MiniLM is trained: the tower passage has the best retrieval score, whatever the reranker did.
    assert best_retrieved(langchain_run.out) == best_retrieved(llama_index_run.out) == "tower.txt"
