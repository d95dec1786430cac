"""What the README shows must run: its Python blocks are executed in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_has_the_two_commands_first() -> None:
    text = README.read_text(encoding="utf-8")
    bash_blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    run_command, test_command = bash_blocks[0].strip(), bash_blocks[1].strip()
    assert "pip install" in run_command and "retrievals-rag" in run_command
    assert "pip install" in test_command and "pytest" in test_command
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "test-command" in ci and "README.md" in ci


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # the files the RAG engine snippet indexes
    (tmp_path / "notes.md").write_text(
        "# Paris\n\nThe Eiffel Tower is 330 metres tall and stands in Paris.\n"
    )
    (tmp_path / "guide.txt").write_text("BM25 ranks documents by the terms they share with the query.\n")
    namespace: dict[str, object] = {}
    ran = 0
    for block in _python_blocks():
        if "path/to/" in block:  # a template naming the reader's own folder
            continue
        exec(compile(block, str(README), "exec"), namespace)
        ran += 1
    assert ran >= 2
    fused = namespace["fused"]
    assert list(fused["q1"]) == ["d2", "d1"]  # the BM25 document wins both rankings
    assert (tmp_path / "my-embedder" / "modules.json").is_file()
    answer = namespace["answer"]
    assert "330" in answer.text
    assert any("notes.md" in citation.label for citation in answer.citations)
