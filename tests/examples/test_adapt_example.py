"""examples/adapt/scifact_adapt.py runs end to end (tiny model, 30 passages) and keeps earlier generators' figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from retrievals_rag.evaluation.reranking import read_run

from ..conftest import REPO_ROOT, SCIFACT_SUBSET


def test_scifact_adapt_example_runs_small_and_keeps_earlier_generators(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    output = tmp_path / "adapt"
    command = [
        sys.executable, str(REPO_ROOT / "examples" / "adapt" / "scifact_adapt.py"),
        "--data", str(SCIFACT_SUBSET), "--output", str(output), "--model", str(tiny_bert_path),
        "--generators", "cropping", "--max-passages", "30", "--batch-size", "8", "--max-length", "64",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cropping: test nDCG@10 = " in result.stdout
    results_file = output / "results.json"
    first = json.loads(results_file.read_text())
    assert (
        list(first["adapted"]) == ["cropping"] and first["adapted"]["cropping"]["report"]["questions"] == 30
    )
    # the baselines that need no training, and the adapted model fused with BM25
    assert set(first["no_training"]) == {"bm25", "zero-shot + bm25"}
    assert 0 < first["no_training"]["bm25"]["nDCG@10"] <= 1
    assert 0 < first["adapted"]["cropping"]["test_with_bm25"]["Recall@100"] <= 1
    table = result.stdout.split("SciFact test")[-1]
    assert "bm25" in table and "cropping + bm25" in table
    # each model's ranking of every judged query, which examples/reranking/compare_runs.py compares
    judged = {
        line.split("\t")[0] for line in (SCIFACT_SUBSET / "qrels" / "test.tsv").read_text().splitlines()[1:]
    }
    for name in ("zero-shot", "cropping"):
        run = read_run(output / f"test_run-{name}.json")
        assert set(run) == judged and all(len(hits) == 100 for hits in run.values())

    # a figure of another generator from an earlier run stays when this one runs again
    first["adapted"] = {"smollm2": first["adapted"]["cropping"]}
    results_file.write_text(json.dumps(first))
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads(results_file.read_text())
    assert list(again["adapted"]) == ["smollm2", "cropping"]
    assert "smollm2" in result.stdout.split("SciFact test")[-1]  # in the final table too
