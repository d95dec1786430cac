"""Training data that does not fit the loss is refused before a model loads, naming the file, line and field;
data that fits trains (a teacher's scores in the records of a loss that does not distil are left aside)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import make_records


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    return path


def _train(task: str, model: Path, data: Path, output: Path, *options: str) -> int:
    from retrievals_rag.cli.main import main

    return main(
        [
            "train", task,
            "--model_name_or_path", str(model),
            "--train_data", str(data),
            "--output_dir", str(output),
            "--report_to", "none",
            "--save_strategy", "no",
            "--use_cpu", "true",
            "--holdout_fraction", "0",
            "--per_device_train_batch_size", "4",
            "--max_steps", "2",
            *options,
        ]
    )  # fmt: skip


def _scored_pairs(count: int = 8) -> list[dict]:
    return [
        {"query": record["query"], "document": document, "label": label}
        for record in make_records(count // 2)
        for document, label in ((record["positive"][0], 1.0), (record["negative"][0], 0.0))
    ]


def _with_teacher(records: list[dict]) -> list[dict]:
    return [
        record | {"positive_scores": [5.0], "negative_scores": [1.0] * len(record["negative"])}
        for record in records
    ]


@pytest.mark.parametrize(
    ("records", "options", "message"),
    [
        (_scored_pairs(), [], "InfoNCELoss learns from groups"),
        (make_records(8), ["--loss", "cosent"], "CoSENTLoss learns from scored pairs"),
        (
            make_records(8),
            ["--loss", "margin_mse", "--train_group_size", "2"],
            "line 1, field 'positive_scores'",
        ),
        (make_records(8), ["--loss", "triplet", "--train_group_size", "1"], "train_group_size >= 2, got 1"),
    ],
    ids=["scored-pairs-with-infonce", "triplets-with-cosent", "margin-mse-without-teacher", "triplet-of-one"],
)
def test_an_embedder_refuses_data_its_loss_cannot_learn_from_before_loading_the_model(
    records: list[dict],
    options: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _write(tmp_path / "train.jsonl", records)
    # no model at this path: the data are judged before any model is loaded
    code = _train("embedding", tmp_path / "no-model-here", data, tmp_path / "out", *options)
    printed = capsys.readouterr().err
    assert code == 2
    assert message in printed
    assert "no-model-here" not in printed
    assert not (tmp_path / "out").exists()


def test_distillation_records_train_a_loss_that_does_not_distil(tiny_bert_path: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "train.jsonl", _with_teacher(make_records(8)))
    for options in (["--train_group_size", "2"], ["--train_group_size", "2", "--grad_cache_chunk_size", "2"]):
        output = tmp_path / f"out{len(options)}"
        assert _train("embedding", tiny_bert_path, data, output, *options) == 0
        summary = json.loads((output / "training_summary.json").read_text())
        assert summary["final_loss"] is not None and summary["final_loss"] > 0


def test_a_scored_pair_label_outside_zero_to_one_is_refused_with_its_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = _scored_pairs()
    records[2]["label"] = 3  # graded relevance, as in a qrels file
    data = _write(tmp_path / "scored.jsonl", records)
    code = _train("reranker", tmp_path / "no-model-here", data, tmp_path / "out")
    printed = capsys.readouterr().err
    assert code == 2
    assert f"{data}, line 3, field 'label': label 3 is outside [0, 1]" in printed


def test_cosent_takes_labels_of_any_range(tiny_bert_path: Path, tmp_path: Path) -> None:
    records = _scored_pairs()
    for record in records:
        record["label"] *= 5  # a 0-5 similarity scale
    data = _write(tmp_path / "scored.jsonl", records)
    assert _train("embedding", tiny_bert_path, data, tmp_path / "out", "--loss", "cosent") == 0


def test_missing_negatives_name_the_file_and_line_of_the_first_record_without_them(tmp_path: Path) -> None:
    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.data.records import DataFormatError

    records = make_records(4)
    del records[2]["negative"]
    data = _write(tmp_path / "train.jsonl", records)
    with pytest.raises(DataFormatError, match=r"train\.jsonl, line 3, field 'negative': missing") as raised:
        RetrievalTrainDataset(data, train_group_size=2)
    assert "1 of 4 records" in str(raised.value)


def test_a_wrapped_loss_needs_what_the_loss_it_wraps_needs(tmp_path: Path) -> None:
    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.data.records import DataFormatError
    from retrievals_rag.losses.cached import GradCacheLoss
    from retrievals_rag.losses.distillation import MarginMSELoss
    from retrievals_rag.losses.matryoshka import MatryoshkaLoss
    from retrievals_rag.training.trainer import check_loss_fits_data

    loss = GradCacheLoss(MatryoshkaLoss(MarginMSELoss(), [8, 4]), chunk_size=2)
    with pytest.raises(DataFormatError, match="positive_scores"):
        check_loss_fits_data(loss, RetrievalTrainDataset(make_records(4), train_group_size=2))
    check_loss_fits_data(loss, RetrievalTrainDataset(_with_teacher(make_records(4)), train_group_size=2))
