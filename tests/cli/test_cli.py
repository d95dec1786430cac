"""Tests of the ``retrievals-rag`` command line: evaluate, encode and bench encode, run in-process on the tiny
random BERT, plus one run of the installed console script.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrievals_rag.cli.main import main
from tests.conftest import SCIFACT_SUBSET

METRIC_ROWS = ("nDCG", "MAP", "MRR", "Recall", "P", "HitRate")
CORPUS_RECORDS = [  # ids out of sorted order, so that an order change shows
    {"_id": "z9", "title": "Aspirin", "text": "It thins the blood."},
    {"_id": "a1", "text": "A document without a title."},
    {"_id": "m5", "title": "Cells", "text": "Stem cells divide.", "metadata": {}},
]
CORPUS_TEXTS = ["Aspirin It thins the blood.", "A document without a title.", "Cells Stem cells divide."]


@pytest.fixture(scope="module")
def tiny_model(tiny_bert_path: Path) -> Any:
    from retrievals_rag.models.embedding import AutoModelForEmbedding

    return AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")


def _write_beir(root: Path, corpus: str, queries: str, qrels: str, split: str = "test") -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    (root / "queries.jsonl").write_text(queries, encoding="utf-8")
    (root / "qrels" / f"{split}.tsv").write_text(qrels, encoding="utf-8")
    return root


def _write_corpus_jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in CORPUS_RECORDS), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ evaluate


def test_evaluate_prints_the_table_and_writes_json(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out" / "results.json"

    exit_code = main(
        [
            "evaluate",
            "--model",
            str(tiny_bert_path),
            "--device",
            "cpu",
            "--data",
            str(SCIFACT_SUBSET),
            "--k",
            "1",
            "10",
            "--output-json",
            str(output),
        ]
    )

    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].split() == ["@1", "@10"]
    assert [line.split()[0] for line in lines[1:]] == list(METRIC_ROWS)
    assert all(len(line.split()) == 3 for line in lines[1:])
    payload = json.loads(output.read_text(encoding="utf-8"))
    assert set(payload["metrics"]) == {f"{row}@{k}" for row in METRIC_ROWS for k in (1, 10)}
    assert all(0.0 <= value <= 1.0 for value in payload["metrics"].values())
    assert payload["num_queries"] == 50
    assert payload["num_documents"] == 600
    assert payload["split"] == "test"
    assert set(payload["timings"]) == {"encode_corpus", "encode_queries", "search", "total"}
    # The table shows the JSON's values, to 4 decimals.
    ndcg_row = next(line for line in lines if line.startswith("nDCG"))
    assert float(ndcg_row.split()[2]) == pytest.approx(payload["metrics"]["nDCG@10"], abs=5e-5)


def _evaluate_error(
    tiny_bert_path: Path, data: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    exit_code = main(["evaluate", "--model", str(tiny_bert_path), "--data", str(data), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.out == ""
    return exit_code, captured.err


def test_evaluate_missing_data_folder_exits_2(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dataset"

    exit_code, error = _evaluate_error(tiny_bert_path, missing, capsys)

    assert exit_code == 2
    assert error.startswith("error: ")
    assert str(missing) in error
    assert "not a folder" in error


def test_evaluate_broken_corpus_line_names_file_and_line(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _write_beir(
        tmp_path / "broken",
        corpus='{"_id": "d1", "text": "fine"}\n{"_id": "d2", "text": "cut off\n',
        queries='{"_id": "q1", "text": "a query"}\n',
        qrels="q1\td1\t1\n",
    )

    exit_code, error = _evaluate_error(tiny_bert_path, data, capsys)

    assert exit_code == 2
    assert str(data / "corpus.jsonl") in error
    assert "line 2" in error
    assert "invalid JSON" in error


def test_evaluate_skips_an_empty_query_and_counts_it_unless_strict(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _write_beir(
        tmp_path / "with-empty",
        corpus='{"_id": "d1", "text": "aspirin thins the blood"}\n{"_id": "d2", "text": "cells divide"}\n',
        queries='{"_id": "q1", "text": "aspirin"}\n{"_id": "q2", "text": ""}\n{"_id": "q3", "text": ""}\n',
        qrels="q1\td1\t1\nq2\td2\t1\n",  # q3 is not in the split
    )
    arguments = [
        "evaluate",
        "--model",
        str(tiny_bert_path),
        "--device",
        "cpu",
        "--data",
        str(data),
        "--k",
        "1",
    ]

    with pytest.warns(UserWarning, match=r"queries\.jsonl: skipped 1 empty query of split 'test': line 2"):
        exit_code = main(arguments)

    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    assert "1 queries, 2 documents, 1 empty query skipped" in captured.err
    exit_code, error = _evaluate_error(tiny_bert_path, data, capsys, "--strict")
    assert exit_code == 2
    assert "queries.jsonl, line 2, field 'text': the query text is empty" in error


def test_evaluate_unknown_split_lists_the_splits(
    tiny_bert_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code, error = _evaluate_error(tiny_bert_path, SCIFACT_SUBSET, capsys, "--split", "dev")

    assert exit_code == 2
    assert "'dev' not found" in error
    assert "Available splits: 'test'" in error


# -------------------------------------------------------------------------------------------------- encode


def _encode(tiny_bert_path: Path, *arguments: str) -> int:
    return main(["encode", "--model", str(tiny_bert_path), "--device", "cpu", *arguments])


def test_encode_repeated_text_to_npy(tiny_bert_path: Path, tiny_model: Any, tmp_path: Path) -> None:
    output = tmp_path / "vectors.npy"

    assert (
        _encode(
            tiny_bert_path, "--text", "dense retrieval", "--text", "a second text", "--output", str(output)
        )
        == 0
    )

    vectors = np.load(output)
    assert vectors.shape == (2, 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, tiny_model.encode(["dense retrieval", "a second text"]), atol=1e-5)
    assert not (tmp_path / "vectors.ids.json").exists()  # --text has no ids


def test_encode_jsonl_to_safetensors_keeps_ids_and_order(
    tiny_bert_path: Path, tiny_model: Any, tmp_path: Path
) -> None:
    from safetensors import safe_open

    corpus = _write_corpus_jsonl(tmp_path / "corpus.jsonl")
    output = tmp_path / "nested" / "corpus.safetensors"

    assert _encode(tiny_bert_path, "--input", str(corpus), "--output", str(output)) == 0

    with safe_open(str(output), framework="numpy") as handle:
        ids = json.loads(handle.metadata()["ids"])
        vectors = handle.get_tensor("embeddings")
    assert ids == ["z9", "a1", "m5"]
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(vectors, tiny_model.encode(CORPUS_TEXTS), atol=1e-5)


def test_encode_jsonl_to_npy_writes_an_ids_sidecar(
    tiny_bert_path: Path, tiny_model: Any, tmp_path: Path
) -> None:
    corpus = _write_corpus_jsonl(tmp_path / "corpus.jsonl")
    output = tmp_path / "X.npy"

    assert _encode(tiny_bert_path, "--input", str(corpus), "--output", str(output)) == 0

    assert json.loads((tmp_path / "X.ids.json").read_text(encoding="utf-8")) == ["z9", "a1", "m5"]
    np.testing.assert_allclose(np.load(output), tiny_model.encode(CORPUS_TEXTS), atol=1e-5)


def test_encode_txt_input_is_one_text_per_line(tiny_bert_path: Path, tiny_model: Any, tmp_path: Path) -> None:
    texts = ["first line of text", "second line", "the third"]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    output = tmp_path / "texts.npy"

    assert _encode(tiny_bert_path, "--input", str(source), "--output", str(output)) == 0

    vectors = np.load(output)
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(vectors, tiny_model.encode(texts), atol=1e-5)
    assert not (tmp_path / "texts.ids.json").exists()


def test_a_txt_line_holding_a_form_feed_or_line_separator_stays_one_text(
    tiny_bert_path: Path, tiny_model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, str.splitlines cut a line at a form feed (pdftotext's page break), U+2028 or a group separator:
    a 3-line file gave 6 texts, and every line-number id after the cut was shifted."""
    texts = ["page one\x0cpage two", "a\u2028b", "third\x1dline"]
    source = tmp_path / "texts.txt"
    source.write_bytes(("\r\n".join(texts) + "\r\n").encode())
    output = tmp_path / "texts.npy"

    assert _encode(tiny_bert_path, "--input", str(source), "--output", str(output)) == 0
    np.testing.assert_allclose(np.load(output), tiny_model.encode(texts), atol=1e-5)

    source.write_bytes(b"fine\nstill fine\ncaf\xe9\n")
    assert _encode(tiny_bert_path, "--input", str(source), "--output", str(output)) == 2
    assert "texts.txt, line 3: not UTF-8 (byte 0xe9)" in capsys.readouterr().err


def test_encoding_texts_over_an_earlier_corpus_removes_its_ids_sidecar(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    """Before, the earlier encode's X.ids.json stayed beside the new X.npy and named rows it does not hold."""
    output = tmp_path / "X.npy"
    corpus = _write_corpus_jsonl(tmp_path / "corpus.jsonl")
    assert _encode(tiny_bert_path, "--input", str(corpus), "--output", str(output)) == 0
    assert (tmp_path / "X.ids.json").exists()

    assert _encode(tiny_bert_path, "--text", "one", "--text", "two", "--output", str(output)) == 0

    assert np.load(output).shape == (2, 32)
    assert not (tmp_path / "X.ids.json").exists()


def test_encode_kind_query_applies_the_query_instruction(
    tiny_bert_path: Path, tiny_model: Any, tmp_path: Path
) -> None:
    texts = ["what is dense retrieval", "cancer risk"]
    arguments = ["--text", texts[0], "--text", texts[1], "--query-instruction", "query: "]

    assert _encode(tiny_bert_path, *arguments, "--kind", "query", "--output", str(tmp_path / "q.npy")) == 0
    assert _encode(tiny_bert_path, *arguments, "--kind", "document", "--output", str(tmp_path / "d.npy")) == 0

    queries = np.load(tmp_path / "q.npy")
    np.testing.assert_allclose(queries, tiny_model.encode(texts, instruction="query: "), atol=1e-5)
    documents = np.load(tmp_path / "d.npy")
    np.testing.assert_allclose(documents, tiny_model.encode(texts), atol=1e-5)
    assert np.abs(queries - documents).max() > 1e-3  # the instruction changed the vectors


def test_encode_bad_output_suffix_fails_clearly(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "vectors.csv"

    assert _encode(tiny_bert_path, "--text", "hello", "--output", str(output)) == 2

    assert f"error: --output must end in .npy or .safetensors, got {output}" in capsys.readouterr().err
    assert not output.exists()


# --------------------------------------------------------------------------------------------------- bench


def test_bench_encode_reports_ratio_and_agreement(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sentence_transformers")
    from retrievals_rag.models.embedding import AutoModelForEmbedding

    folder = tmp_path / "tiny-st"
    AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(folder)

    exit_code = main(
        [
            "bench",
            "encode",
            "--data",
            str(SCIFACT_SUBSET),
            "--model",
            str(folder),
            "--device",
            "cpu",
            "--n-docs",
            "16",
            "--rounds",
            "1",
        ]
    )

    output = capsys.readouterr().out
    assert exit_code == 0
    assert "encode 16 documents" in output
    match = re.search(r"ratio: ([0-9.]+)x\s+max \|difference\|: ([0-9.e+-]+)", output)
    assert match is not None, output
    assert float(match.group(1)) > 0.0
    assert float(match.group(2)) < 1e-4


# ----------------------------------------------------------------------------------------- console script


def test_console_script_help() -> None:
    script = Path(sys.executable).with_name("retrievals-rag")
    assert script.is_file(), f"the console script is not installed beside {sys.executable}"

    completed = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: retrievals-rag")
    for command in ("evaluate", "encode", "bench"):
        assert command in completed.stdout


def test_merge_refuses_a_bad_collection_name_before_reading_the_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, the shards were read and chromadb's own traceback ended the run ('Expected a name containing
    3-512 characters')."""
    code = main(
        ["merge", str(tmp_path / "no-shards"), "--data-dir", str(tmp_path / "rag"), "--collection", "c"]
    )

    printed = capsys.readouterr().err
    assert code == 2
    assert "collection" in printed and "'c'" in printed
    assert "no-shards" not in printed


@pytest.mark.parametrize("option", ["--batch-size", "--token-budget"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_batch_size_or_token_budget_below_one_is_refused_by_the_option(
    tmp_path: Path, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, 0 fell back to the default without a word and -1 failed after the model had loaded, naming
    internal parameters (max_batch_size)."""
    with pytest.raises(SystemExit) as raised:
        main(
            [
                "encode",
                "--model",
                str(tmp_path / "no-model"),
                "--text",
                "a",
                "--output",
                "x.npy",
                option,
                value,
            ]
        )

    assert raised.value.code == 2
    assert f"argument {option}: expected a positive integer, got {value}" in capsys.readouterr().err
