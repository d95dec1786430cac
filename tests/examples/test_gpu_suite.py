"""The GPU suite runs in its reduced mode on the CPU (tiny shapes): every section gives both sides' figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO_ROOT

pytest.importorskip("sentence_transformers")
pytest.importorskip("peft")


def test_gpu_suite_reduced_mode_runs(tmp_path: Path) -> None:
    output = tmp_path / "suite.json"
    environment = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    completed = subprocess.run(
        ["bash", str(REPO_ROOT / "examples" / "benchmarks" / "gpu_suite.sh"), str(output), "--reduced"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["mode"] == "reduced" and results["device"].startswith("cpu")
    expected = {
        "encode_bert_base",
        "encode_minilm",
        "cross_encoder_bert_base",
        "train_bi_encoder",
        "llm_embedder",
    }
    assert set(results["sections"]) == expected
    for section, entries in results["sections"].items():
        assert "error" not in entries, f"{section}: {entries.get('error')}"
        for row in entries.values():
            assert row["ours"] > 0 and row["sentence_transformers"] > 0, section
    # the encoders load the same weights on both sides: the vectors agree
    assert results["sections"]["encode_minilm"]["float32"]["max_difference"] < 1e-4
    assert "encode_minilm float32" in completed.stdout
