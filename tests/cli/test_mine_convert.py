"""Tests of ``retrievals-rag mine`` (tiny random BERT) and ``retrievals-rag convert``, run in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.cli.main import main
from retrievals_rag.data.records import load_records
from retrievals_rag.evaluation.beir import document_text, load_beir
from tests.conftest import SCIFACT_SUBSET

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------------ mine


def test_mine_on_the_scifact_subset_writes_triplets_without_positives(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "triplets.jsonl"

    exit_code = main(
        [
            "mine",
            "--model",
            str(tiny_bert_path),
            "--device",
            "cpu",
            "--max-length",  # short texts keep the test fast; the ranking is the tiny model's anyway
            "32",
            "--data",
            str(SCIFACT_SUBSET),
            "--split",
            "test",
            "--output",
            str(output),
            "--rank-range",
            "5",
            "30",
            "--num-negatives",
            "3",
        ]
    )

    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    dataset = load_beir(SCIFACT_SUBSET, "test")
    records = read_jsonl(output)
    assert [record["query_id"] for record in records] == list(dataset.queries)
    for record in records:
        positives = set(dataset.qrels[record["query_id"]])
        assert record["query"] == dataset.queries[record["query_id"]]
        assert set(record["positive_ids"]) == positives
        assert len(record["negative_ids"]) == len(set(record["negative_ids"])) == 3
        assert not set(record["negative_ids"]) & positives
        assert record["negative"] == [document_text(dataset.corpus[doc]) for doc in record["negative_ids"]]
        assert record["positive"] == [document_text(dataset.corpus[doc]) for doc in record["positive_ids"]]
    assert len(load_records(output)) == 50
    assert "mined 50 of 50 queries; skipped 0 without positives, 0 without candidates in ranks [5, 30)" in (
        captured.out
    )
    assert "negatives per query: 3 to 3, mean 3.00 (asked for 3)" in captured.out
    assert f"wrote {output}" in captured.out


def test_mine_skips_queries_judged_only_non_relevant(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    documents = [
        {"_id": f"d{index}", "title": f"Title {index}", "text": f"cell protein {index}"} for index in range(6)
    ]
    (data / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in documents), encoding="utf-8")
    queries = [{"_id": "q1", "text": "what protein"}, {"_id": "q2", "text": "which cells"}]
    (data / "queries.jsonl").write_text(
        "".join(json.dumps(query) + "\n" for query in queries), encoding="utf-8"
    )
    (data / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td0\t1\nq1\td1\t0\nq2\td2\t0\n", encoding="utf-8"
    )
    output = tmp_path / "triplets.jsonl"

    exit_code = main(
        [
            "mine",
            *("--model", str(tiny_bert_path), "--device", "cpu"),
            *("--data", str(data), "--output", str(output)),
            *("--rank-range", "0", "6", "--num-negatives", "10"),
        ]
    )

    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    (record,) = read_jsonl(output)
    assert record["positive_ids"] == ["d0"]
    assert sorted(record["negative_ids"]) == ["d1", "d2", "d3", "d4", "d5"]  # grade 0 is not a positive
    assert record["positive"] == ["Title 0 cell protein 0"]
    assert "mined 1 of 2 queries; skipped 1 without positives" in captured.out


def test_mine_rejects_a_bad_rank_range_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "triplets.jsonl"

    exit_code = main(
        ["mine", "--data", str(SCIFACT_SUBSET), "--output", str(output), "--rank-range", "9", "3"]
    )

    assert exit_code == 2
    assert "--rank-range must satisfy 0 <= START < END, got 9 3" in capsys.readouterr().err
    assert not output.exists()


def test_mine_names_a_missing_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["mine", "--data", str(SCIFACT_SUBSET), "--output", str(tmp_path / "out.jsonl")])

    assert exit_code == 2
    assert "split 'train' not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ convert


def test_convert_t2ranking_writes_triplets_and_prints_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, output = FIXTURES / "t2ranking", tmp_path / "t2ranking.jsonl"

    exit_code = main(
        [
            *("convert", "t2ranking", "--collection", str(folder / "collection.tsv")),
            *(
                "--queries",
                str(folder / "queries.train.tsv"),
                "--qrels",
                str(folder / "qrels.retrieval.train.tsv"),
            ),
            *(
                "--negatives",
                str(folder / "train.mined.tsv"),
                "--rank-range",
                "1",
                "4",
                "--num-negatives",
                "2",
            ),
            *("--output", str(output)),
        ]
    )

    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    assert output.read_bytes() == (folder / "expected_triplets_ranks_1_4.jsonl").read_bytes()
    assert captured.out == (
        f"wrote 2 records to {output}; negatives per record: 2 to 2, mean 2.00; "
        "skipped: 1 queries without negatives\n"
    )


def test_convert_dpr_writes_triplets_and_prints_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "dpr.jsonl"

    exit_code = main(
        [
            "convert",
            "dpr",
            "--input",
            str(FIXTURES / "dpr" / "biencoder-nq-sample.json"),
            "--output",
            str(output),
        ]
    )

    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    assert output.read_bytes() == (FIXTURES / "dpr" / "expected_triplets.jsonl").read_bytes()
    assert captured.out == (
        f"wrote 2 records to {output}; negatives per record: 1 to 2, mean 1.50; "
        "skipped: 1 items without positives, 1 items without negatives\n"
    )


def test_convert_bad_input_exits_2_naming_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nq.json"
    path.write_text('[\n{"question": "q", "positive_ctxs": [{"title": "t"}]}\n]', encoding="utf-8")

    exit_code = main(["convert", "dpr", "--input", str(path), "--output", str(tmp_path / "out.jsonl")])

    assert exit_code == 2
    assert f"error: {path}, line 2, field '[0].positive_ctxs[0].text': missing" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
