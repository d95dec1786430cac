"""examples/scifact/finetune_scifact.py runs end to end (tiny model, one step) and writes its results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO_ROOT, SCIFACT_SUBSET


def test_finetune_scifact_example_runs_small(tiny_bert_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "beir"
    shutil.copytree(SCIFACT_SUBSET, data)
    shutil.copy(data / "qrels" / "test.tsv", data / "qrels" / "train.tsv")  # the subset has no train split
    output = tmp_path / "run"
    command = [
        sys.executable, str(REPO_ROOT / "examples" / "scifact" / "finetune_scifact.py"),
        "--data", str(data), "--output", str(output), "--model", str(tiny_bert_path),
        "--epochs", "0.1", "--batch-size", "8", "--group-size", "2", "--document-max-length", "32",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fine-tuned nDCG@10" in result.stdout
    summary = json.loads((output / "results.json").read_text())
    assert set(summary["zero_shot"]) == set(summary["fine_tuned"])
    assert (output / "train_triplets.jsonl").is_file()
    # reusing the mined triplets and skipping the zero-shot pass (the bug this test was written for)
    command += [
        "--triplets",
        str(output / "train_triplets.jsonl"),
        "--skip-zero-shot",
        "--output",
        str(tmp_path / "b"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["zero_shot"] is None
