"""The verdict after a training run: the start beside the end, in the output folder, with a warning when worse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ..conftest import SCIFACT_SUBSET
from .conftest import WORDS, make_records


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    return path


def _train(task: str, *options: str) -> int:
    from retrievals_rag.cli.main import main

    return main(
        ["train", task, "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true", *options]
    )


def test_a_run_worse_than_its_start_warns_and_leaves_both_figures_in_the_output_folder(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    code = _train(
        "embedding",
        "--model_name_or_path", str(tiny_bert_path),
        "--train_data", str(_write(tmp_path / "train.jsonl", make_records(16))),
        "--train_group_size", "2",
        "--output_dir", str(output),
        "--per_device_train_batch_size", "4",
        "--max_steps", "8",
        "--learning_rate", "1.0",  # destroys the model
        "--eval_data", str(SCIFACT_SUBSET),
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().err
    assert "Warning: the trained model ranks worse than the model it started from" in printed
    assert "verdict on" in printed and "nDCG@10" in printed
    verdict = json.loads((output / "verdict.json").read_text())
    assert verdict["worse_than_start"] is True
    assert verdict["after"]["nDCG@10"] < verdict["before"]["nDCG@10"]
    for name in ("nDCG@10", "MRR@10", "Recall@100"):
        assert verdict["change"][name] == pytest.approx(verdict["after"][name] - verdict["before"][name])
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["verdict"] == verdict
    # no --logging_steps: an 8-step run logs its loss at every step, not every 500
    assert len(summary["loss_history"]) == 8 and summary["final_loss"] is not None


def _distinct_records(count: int) -> list[dict]:
    return [
        {
            "query": f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} case {i}",
            "positive": [f"the {WORDS[i % 10]} study of {WORDS[(i * 3) % 10]} case {i}"],
            "negative": [f"{WORDS[(i + 1) % 10]} risk", f"{WORDS[(i + 2) % 10]} human case {i + 1}"],
        }
        for i in range(count)
    ]


@pytest.mark.parametrize("task", ["embedding", "reranker"])
def test_without_eval_data_a_slice_of_the_training_queries_judges_the_run(
    task: str, tiny_bert_path: Path, tmp_path: Path
) -> None:
    data = _write(tmp_path / "train.jsonl", _distinct_records(60))
    output = tmp_path / "out"
    options = [
        "--model_name_or_path", str(tiny_bert_path),
        "--train_data", str(data),
        "--train_group_size", "2",
        "--output_dir", str(output),
        "--per_device_train_batch_size", "9",
        "--num_train_epochs", "1",
    ]  # fmt: skip
    assert _train(task, *options) == 0
    summary = json.loads((output / "training_summary.json").read_text())
    assert "6 held-out training queries" in summary["verdict"]["data"]
    assert summary["steps"] == 6  # 54 queries left to train on, 9 per batch
    assert set(summary["verdict"]["before"]) >= {"nDCG@10", "MRR@10", "Recall@100"}
    # turned off, or too few queries: no verdict
    assert _train(task, *options, "--holdout_fraction", "0") == 0
    assert json.loads((output / "training_summary.json").read_text())["verdict"] is None


def test_a_reranker_is_judged_over_the_given_first_stage(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from retrievals_rag.evaluation.beir import load_beir

    dataset = load_beir(SCIFACT_SUBSET, "test")
    documents = list(dataset.corpus)
    run = {
        query_id: {document_id: float(-rank) for rank, document_id in enumerate([*documents[:3], *judged])}
        for query_id, judged in dataset.qrels.items()
    }  # each query's relevant documents after three others
    (tmp_path / "dense.json").write_text(json.dumps(run))
    output = tmp_path / "out"
    code = _train(
        "reranker",
        "--kind", "cross_encoder",  # the saved spelling works as well as cross-encoder
        "--model_name_or_path", str(tiny_bert_path),
        "--max_length", "48",
        "--train_data", str(_write(tmp_path / "train.jsonl", make_records(8))),
        "--train_group_size", "2",
        "--output_dir", str(output),
        "--per_device_train_batch_size", "4",
        "--max_steps", "2",
        "--eval_data", str(SCIFACT_SUBSET),
        "--first_stage", str(tmp_path / "dense.json"),
        "--rerank_top_k", "5",
    )  # fmt: skip
    assert code == 0
    verdict = json.loads((output / "verdict.json").read_text())
    assert "top-5" in verdict["data"]
    # the first stage's own figures stand beside the reranker's: the relevant documents come fourth
    assert verdict["first_stage"]["MRR@10"] == pytest.approx(0.25, abs=0.01)
    assert "first stage" in capsys.readouterr().err
    assert json.loads((output / "training_summary.json").read_text())["kind"] == "cross_encoder"


def test_a_run_whose_loss_stays_at_chance_says_it_learned_nothing(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every document reads the same within its 6 tokens, so every candidate scores alike whatever the model
    learns: the loss stays at log(4 queries x 2 documents), which the summary must call out (a collapsed LoRA
    run looks like this, and its verdict can read "no change")."""
    prefix = "the same opening words of every document here "
    records = [
        {
            "query": f"{WORDS[i % 10]} case {i}",
            "positive": [f"{prefix}{i}"],
            "negative": [f"{prefix}{i} other"],
        }
        for i in range(16)
    ]
    output = tmp_path / "out"
    code = _train(
        "embedding",
        "--model_name_or_path", str(tiny_bert_path),
        "--train_data", str(_write(tmp_path / "train.jsonl", records)),
        "--train_group_size", "2",
        "--document_max_length", "6",
        "--output_dir", str(output),
        "--per_device_train_batch_size", "4",
        "--max_steps", "8",
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().err
    level = f"({math.log(8):.4f})"
    assert "Warning: the training loss ended at" in printed and level in printed
    summary = json.loads((output / "training_summary.json").read_text())
    assert any(
        "no lower than a model that scores every candidate alike" in line for line in summary["warnings"]
    )
    assert summary["final_loss"] >= 0.95 * math.log(8)  # at chance (dropout keeps it a little above)


def test_a_run_that_learns_gets_no_chance_warning(tiny_bert_path: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    code = _train(
        "embedding",
        "--model_name_or_path", str(tiny_bert_path),
        "--train_data", str(_write(tmp_path / "train.jsonl", _distinct_records(8))),
        "--train_group_size", "2",
        "--output_dir", str(output),
        "--per_device_train_batch_size", "4",
        "--max_steps", "12",
        "--learning_rate", "1e-3",
    )  # fmt: skip
    assert code == 0
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["loss_history"][-1] < 0.95 * math.log(8)
    assert not any("scores every candidate alike" in line for line in summary["warnings"])
