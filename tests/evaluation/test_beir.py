"""Tests for retrievals_rag.evaluation.beir: the SciFact subset, and every malformed-input case."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrievals_rag.evaluation.beir import (
    BeirFormatError,
    Document,
    document_text,
    load_beir,
    load_corpus,
    load_qrels,
    load_queries,
)

SCIFACT_SUBSET = Path(__file__).parent.parent / "data" / "scifact_subset"

CORPUS = (
    '{"_id": "d1", "title": "First", "text": "one"}\n'
    '{"_id": "d2", "title": "Second", "text": "two", "metadata": {}}\n'
    '{"_id": "d3", "text": ""}\n'
)
QUERIES = (
    '{"_id": "q1", "text": "query one"}\n{"_id": "q2", "text": "query two"}\n{"_id": "q3", "text": "three"}\n'
)
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t2\n"


def _write_dataset(
    root: Path, corpus: str = CORPUS, queries: str = QUERIES, qrels: str = QRELS, split: str = "test"
) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    (root / "queries.jsonl").write_text(queries, encoding="utf-8")
    (root / "qrels" / f"{split}.tsv").write_text(qrels, encoding="utf-8")
    return root


def test_scifact_subset_loads() -> None:
    dataset = load_beir(SCIFACT_SUBSET, split="test")
    assert len(dataset.corpus) == 600
    assert len(dataset.queries) == 50
    assert sum(len(judged) for judged in dataset.qrels.values()) == 60
    assert set(dataset.queries) == set(dataset.qrels)
    assert all(grade == 1 for judged in dataset.qrels.values() for grade in judged.values())
    first_query = next(iter(dataset.qrels))
    assert first_query == "1"
    assert dataset.qrels[first_query] == {"31715818": 1}
    document = dataset.corpus["31715818"]
    assert document_text(document).startswith(document.title + " ")


def test_subset_lines_are_copied_from_the_source() -> None:
    source = Path("/work/shared/data/scifact/corpus.jsonl")
    if not source.is_file():
        pytest.skip("the full SciFact corpus is not on this machine")
    source_lines = set(source.read_bytes().splitlines())
    assert all(line in source_lines for line in (SCIFACT_SUBSET / "corpus.jsonl").read_bytes().splitlines())


def test_small_dataset(tmp_path: Path) -> None:
    dataset = load_beir(_write_dataset(tmp_path))
    assert dataset.corpus == {
        "d1": Document(title="First", text="one"),
        "d2": Document(title="Second", text="two"),
        "d3": Document(title="", text=""),
    }
    assert dataset.queries == {"q1": "query one", "q2": "query two"}  # q3 has no judgment in this split
    assert dataset.qrels == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    assert document_text(dataset.corpus["d1"]) == "First one"
    assert document_text(dataset.corpus["d3"]) == ""  # an empty document is encoded as ""


def test_header_optional_blank_lines_and_crlf(tmp_path: Path) -> None:
    dataset = load_beir(
        _write_dataset(tmp_path, corpus="\n" + CORPUS + "\n\n", qrels="q1\td1\t1\r\n\r\nq2\td3\t-1\r\n")
    )
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d3": -1}}


def test_helpers_work_separately(tmp_path: Path) -> None:
    root = _write_dataset(tmp_path)
    assert list(load_corpus(root / "corpus.jsonl")) == ["d1", "d2", "d3"]
    assert load_queries(root / "queries.jsonl")["q3"] == "three"
    assert load_qrels(root / "qrels" / "test.tsv") == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}


BAD_CORPUS = [
    ('{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n', 2, "invalid JSON"),
    ('{"_id": "d1", "text": "a"}\n["d2", "text"]\n', 2, "expected a JSON object"),
    ('{"_id": "d1", "text": "a"}\n\n{"title": "t", "text": "b"}\n', 3, "field '_id': missing"),
    ('{"_id": 7, "text": "a"}\n', 1, "field '_id': expected a string, got int"),
    ('{"_id": "d1", "title": "t"}\n', 1, "field 'text': missing"),
    ('{"_id": "d1", "text": null}\n', 1, "field 'text': expected a string, got NoneType"),
    ('{"_id": "d1", "title": 3, "text": "a"}\n', 1, "field 'title': expected a string"),
    (
        '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n',
        2,
        "field '_id': duplicate id 'd1' \\(first seen on line 1\\)",
    ),
]


@pytest.mark.parametrize(("corpus", "line", "message"), BAD_CORPUS)
def test_bad_corpus(tmp_path: Path, corpus: str, line: int, message: str) -> None:
    root = _write_dataset(tmp_path, corpus=corpus, qrels="q1\td1\t1\n")
    with pytest.raises(BeirFormatError, match=rf"corpus\.jsonl, line {line}[,:] {message}") as caught:
        load_beir(root)
    assert caught.value.line == line
    assert caught.value.path == root / "corpus.jsonl"


BAD_QUERIES = [
    ('{"_id": "q1", "text": "a"}\n{"_id": "q2" "text": "b"}\n', 2, "invalid JSON"),
    ('{"_id": "q1"}\n', 1, "field 'text': missing"),
    ('{"_id": "q1", "text": ["a"]}\n', 1, "field 'text': expected a string, got list"),
    ('{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n', 2, "field '_id': duplicate id 'q1'"),
    ('{"_id": "q1", "text": "  "}\n', 1, "field 'text': the query text is empty"),
]


@pytest.mark.parametrize(("queries", "line", "message"), BAD_QUERIES)
def test_bad_queries(tmp_path: Path, queries: str, line: int, message: str) -> None:
    root = _write_dataset(tmp_path, queries=queries, qrels="q1\td1\t1\n")
    with pytest.raises(BeirFormatError, match=rf"queries\.jsonl, line {line}[,:] {message}"):
        load_beir(root, strict=True)
    if "empty" not in message:  # the split uses q1: the same error without strict
        with pytest.raises(BeirFormatError, match=rf"queries\.jsonl, line {line}[,:] {message}"):
            load_beir(root)


def test_records_the_split_does_not_use_do_not_block_it(tmp_path: Path) -> None:
    queries = (
        '{"_id": "q1", "text": "query one"}\n'
        '{"_id": "q7", "text": ""}\n'  # empty, not in the split
        '{"_id": "q8"}\n'  # no text, not in the split
        '{"_id": "q9", "text": ["a"]}\n'  # not a string, not in the split
    )
    root = _write_dataset(tmp_path, queries=queries, qrels="q1\td1\t1\n")

    dataset = load_beir(root)

    assert dataset.queries == {"q1": "query one"}
    assert dataset.skipped_queries == ()
    with pytest.raises(
        BeirFormatError, match=r"queries\.jsonl, line 2, field 'text': the query text is empty"
    ):
        load_beir(root, strict=True)


def test_empty_query_of_the_split_is_skipped_with_one_warning(tmp_path: Path) -> None:
    queries = '{"_id": "q1", "text": "query one"}\n\n{"_id": "q2", "text": " "}\n{"_id": "q3", "text": ""}\n'
    root = _write_dataset(tmp_path, queries=queries, qrels="q1\td1\t1\nq2\td2\t1\nq3\td1\t1\n")

    with pytest.warns(UserWarning) as caught:
        dataset = load_beir(root)

    assert len(caught) == 1
    message = str(caught[0].message)
    assert str(root / "queries.jsonl") in message
    assert "skipped 2 empty queries of split 'test'" in message
    assert "line 3 (id 'q2')" in message and "line 4 (id 'q3')" in message
    assert dataset.queries == {"q1": "query one"}
    assert dataset.qrels == {"q1": {"d1": 1}}
    assert [(query.query_id, query.line) for query in dataset.skipped_queries] == [("q2", 3), ("q3", 4)]
    assert dataset.skipped_queries[0].path == root / "queries.jsonl"


def test_split_of_only_empty_queries_is_an_error(tmp_path: Path) -> None:
    root = _write_dataset(tmp_path, queries='{"_id": "q1", "text": ""}\n', qrels="q1\td1\t1\n")
    with (
        pytest.warns(UserWarning),
        pytest.raises(BeirFormatError, match="every query of split 'test' is empty"),
    ):
        load_beir(root)


def test_unknown_ids_in_the_split_stay_errors_without_strict(tmp_path: Path) -> None:
    root = _write_dataset(tmp_path, queries='{"_id": "q1", "text": ""}\n{"_id": "q2", "text": "b"}\n')
    (root / "qrels" / "test.tsv").write_text("q2\td1\t1\nq5\td1\t1\n", encoding="utf-8")
    with pytest.raises(BeirFormatError, match=r"test\.tsv, line 2, field 'query-id': unknown query id 'q5'"):
        load_beir(root)
    (root / "qrels" / "test.tsv").write_text("q2\td1\t1\nq2\td42\t1\n", encoding="utf-8")
    with pytest.raises(BeirFormatError, match=r"test\.tsv, line 2, field 'corpus-id': unknown document id"):
        load_beir(root)


BAD_QRELS = [
    ("query-id\tcorpus-id\tscore\nq1\td1\n", 2, "expected 3 tab-separated columns .*got 2"),
    ("q1\td1\t1\nq1 d2 1\n", 2, "expected 3 tab-separated columns .*got 1"),
    ("q1\td1\t1\t0\n", 1, "expected 3 tab-separated columns .*got 4"),
    ("q1\td1\t1.5\n", 1, "field 'score': expected an integer, got '1.5'"),
    ("qid\tdocid\trel\nq1\td1\t1\n", 1, "field 'score': expected an integer, got 'rel' \\(a header row"),
    ("q1\td1\t1\nq9\td1\t1\n", 2, "field 'query-id': unknown query id 'q9'"),
    ("q1\td1\t1\nq1\td99\t1\n", 2, "field 'corpus-id': unknown document id 'd99'"),
    ("q1\td1\t1\nq1\td1\t0\n", 2, "duplicate judgment for query 'q1', document 'd1'"),
    ("q1\t\t1\n", 1, "field 'corpus-id': empty id"),
]


@pytest.mark.parametrize(("qrels", "line", "message"), BAD_QRELS)
def test_bad_qrels(tmp_path: Path, qrels: str, line: int, message: str) -> None:
    root = _write_dataset(tmp_path, qrels=qrels)
    with pytest.raises(BeirFormatError, match=rf"test\.tsv, line {line}[,:] {message}"):
        load_beir(root)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    root = _write_dataset(tmp_path)
    (root / "corpus.jsonl").write_bytes(b'{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "\xff"}\n')
    with pytest.raises(BeirFormatError, match=r"corpus\.jsonl, line 2: not valid UTF-8"):
        load_corpus(root / "corpus.jsonl")


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl"])
def test_missing_file_names_path_and_expectation(tmp_path: Path, missing: str) -> None:
    root = _write_dataset(tmp_path)
    (root / missing).unlink()
    with pytest.raises(BeirFormatError, match=rf"{missing}: does not exist; expected a BEIR"):
        load_beir(root)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BeirFormatError, match=r"nowhere: is not a folder; expected a BEIR dataset folder"):
        load_beir(tmp_path / "nowhere")


def test_missing_split_lists_available_splits(tmp_path: Path) -> None:
    root = _write_dataset(tmp_path, split="train")
    (root / "qrels" / "dev.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    with pytest.raises(
        BeirFormatError, match=r"test\.tsv: split 'test' not found.*Available splits: 'dev', 'train'"
    ):
        load_beir(root, split="test")
    assert load_beir(root, split="dev").qrels == {"q1": {"d1": 1}}
    with pytest.raises(ValueError, match="split must be a plain file stem"):
        load_beir(root, split="../train")


@pytest.mark.parametrize(
    ("file_name", "message"),
    [
        ("corpus.jsonl", "the corpus holds no documents"),
        ("queries.jsonl", "the file holds no queries"),
        ("qrels/test.tsv", "the file holds no judgments"),
    ],
)
def test_empty_files_are_errors(tmp_path: Path, file_name: str, message: str) -> None:
    root = _write_dataset(tmp_path)
    (root / file_name).write_text("\n\n" if file_name != "qrels/test.tsv" else "query-id\tcorpus-id\tscore\n")
    with pytest.raises(BeirFormatError, match=message):
        load_beir(root)


def test_error_is_a_value_error() -> None:
    error = BeirFormatError("corpus.jsonl", "invalid JSON", line=4, field="_id")
    assert isinstance(error, ValueError)
    assert str(error) == "corpus.jsonl, line 4, field '_id': invalid JSON"


@pytest.mark.parametrize("strict", [True, False])
def test_a_split_without_a_relevant_judgement_is_refused_at_load_naming_the_file_and_split(
    tmp_path: Path, strict: bool
) -> None:
    """Before, it loaded, and the first evaluation (after a model had loaded) said only 'no query in qrels has a
    relevant document', without the folder or the split."""
    root = _write_dataset(tmp_path, qrels="q1\td1\t0\n")
    with pytest.raises(
        BeirFormatError, match=r"test\.tsv, field 'score': no relevant judgement in split 'test'"
    ):
        load_beir(root, strict=strict)
