"""``retrievals-rag index``: bulk indexing with per-file errors, resumable, and ``retrievals-rag app``'s command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from retrievals_rag.cli.main import main

EIFFEL = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris, France.\n"
INSULIN = (
    "# Insulin\n\nInsulin is a hormone made by the pancreas that lowers the level of glucose in the blood.\n"
)


def documents(data_dir: Path, collection: str) -> dict[str, int]:
    from retrievals_rag.rag import RagEngine

    engine = RagEngine(data_dir, llm="extractive")
    return {document.source: document.chunk_count for document in engine.list_documents(collection)}


@pytest.mark.slow  # the packaged MiniLM
def test_index_reports_broken_files_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "eiffel.txt").write_text(EIFFEL)
    (docs / "sub" / "insulin.md").write_text(INSULIN)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF")
    (docs / "slides.pptx").write_bytes(b"PK")  # types the folder walk leaves out: said, not silent
    (docs / "sub" / "photo.png").write_bytes(b"png")
    data_dir = tmp_path / "data"
    args = ["index", str(docs), "--collection", "notes", "--data-dir", str(data_dir), "--no-progress"]

    assert main(args) == 1
    out, err = capsys.readouterr()
    assert "2 file(s) indexed into 'notes': 2 chunk(s) added, 0 already indexed; 1 file(s) failed" in out
    assert f"failed: {docs / 'broken.pdf'}: " in err
    assert (
        "left out of the folders: 2 file(s) of types that cannot be read (1 .png, 1 .pptx); supported: "
        in out
    )
    assert documents(data_dir, "notes") == {
        str((docs / "eiffel.txt").resolve()): 1,
        str((docs / "sub" / "insulin.md").resolve()): 1,
    }

    # Again, the good files only, one of them through a path with "..": the same documents, nothing new.
    again = [str(docs / "eiffel.txt"), str(docs / "sub" / ".." / "sub" / "insulin.md")]
    assert main(["index", *again, "--collection", "notes", "--data-dir", str(data_dir), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "2 file(s) indexed into 'notes': 0 chunk(s) added, 2 already indexed; 0 file(s) failed" in out
    assert "failed" not in err
    assert len(documents(data_dir, "notes")) == 2


def test_index_refuses_a_bad_collection_name_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", str(tmp_path), "--collection", "../x", "--data-dir", str(tmp_path / "d")]) == 2
    assert "invalid collection name '../x'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_index_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.txt"
    code = main(
        ["index", str(missing), "--collection", "notes", "--data-dir", str(tmp_path / "d"), "--no-progress"]
    )
    assert code == 1
    out, err = capsys.readouterr()
    assert "0 file(s) indexed" in out and f"failed: {missing}: cannot read the file" in err


def test_app_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retrievals_rag.cli import app
    from retrievals_rag.cli.main import build_parser

    args = build_parser().parse_args(
        ["app", "--data-dir", str(tmp_path), "--port", "8600", "--llm", "extractive"]
    )
    assert isinstance(args, argparse.Namespace)
    argv = app.command(args)
    assert argv[1:4] == ["-m", "streamlit", "run"]
    assert Path(argv[4]) == Path(__file__).resolve().parents[2] / "apps" / "app.py"
    assert argv[5:] == [
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", "8600",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    monkeypatch.delenv("RETRIEVALS_RAG_CHROMA_URL", raising=False)
    env = app.environment(args)
    assert env["RETRIEVALS_RAG_DATA_DIR"] == str(tmp_path.resolve())
    assert env["RETRIEVALS_RAG_LLM"] == "extractive" and "RETRIEVALS_RAG_CHROMA_URL" not in env

    monkeypatch.setattr(
        app, "app_path", lambda: (_ for _ in ()).throw(FileNotFoundError("the app is not at X"))
    )
    assert main(["app", "--data-dir", str(tmp_path)]) == 2
