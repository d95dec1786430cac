"""examples/scifact/smollm2.py, end to end on the tiny random Llama and the SciFact subset: both recipes train,
save, reload and write their figures (the real SmolLM2 runs are examples, far too slow for CI)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from retrievals_rag.data.jsonl import write_jsonl

from ..conftest import REPO_ROOT, SCIFACT_SUBSET
from ..training.conftest import make_records


def _example():  # -> module
    path = REPO_ROOT / "examples" / "scifact" / "smollm2.py"
    spec = importlib.util.spec_from_file_location("scifact_example_smollm2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def triplets(tmp_path: Path) -> Path:
    path = tmp_path / "triplets.jsonl"
    write_jsonl(make_records(8), path)
    return path


def test_reranker_recipe_judges_a_sample_of_test_queries_alone_and_mixed_with_dense(
    tmp_path: Path, tiny_llama_path: Path, triplets: Path
) -> None:
    output = tmp_path / "reranker"
    found = _example().main(
        [
            "reranker",
            "--data", str(SCIFACT_SUBSET),
            "--output", str(output),
            "--model", str(tiny_llama_path),
            "--triplets", str(triplets),
            "--batch-size", "4",
            "--max-length", "64",
            "--top-k", "5",
            "--test-queries", "3",
            "--target-token", "answer",
            "--interpolation-weight", "0.5",
            "--zero-shot",
        ]
    )  # fmt: skip
    results = found["results"]
    assert list(results) == [
        "dense (MiniLM) top-5",
        "SmolLM2 zero-shot",
        "SmolLM2 LoRA fine-tuned",
        "fine-tuned + dense, weight 0.5",
    ]
    for metrics in results.values():
        assert 0.0 <= metrics["nDCG@10"] <= 1.0
    run = json.loads((output / "test-run.json").read_text(encoding="utf-8"))
    assert len(run) == 3  # the sample only
    assert all(len(hits) == 5 for hits in run.values())
    saved = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert saved["arguments"]["test_queries"] == "3"


def test_embedder_recipe_takes_the_pooling_and_temperature_and_checks_the_adapter(
    tmp_path: Path, tiny_llama_path: Path, triplets: Path
) -> None:
    output = tmp_path / "embedder"
    found = _example().main(
        [
            "embedder",
            "--data", str(SCIFACT_SUBSET),
            "--output", str(output),
            "--model", str(tiny_llama_path),
            "--triplets", str(triplets),
            "--batch-size", "4",
            "--temperature", "0.1",
            "--pooling", "mean",
            "--no-verdict",
        ]
    )  # fmt: skip
    assert 0.0 <= found["fine-tuned"]["nDCG@10"] <= 1.0
    assert found["adapter"]["merged vs unmerged (queries)"] < 1e-4
    summary = json.loads((output / "training_summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 2
    arguments = json.loads((output / "results.json").read_text(encoding="utf-8"))["arguments"]
    assert arguments["temperature"] == "0.1"
    assert arguments["learning_rate"] == "0.001"  # the default of both recipes
