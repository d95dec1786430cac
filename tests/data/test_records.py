from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from retrievals_rag.data.records import DataFormatError, RecordKeys, load_records


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    return path


GOOD = {"query": "q", "positive": ["p"], "negative": ["n1", "n2"]}


def test_three_formats_and_passage_objects(tmp_path: Path) -> None:
    records = load_records(
        [
            {"query": "q1", "positive": ["p1", {"title": "T", "text": "body"}]},
            {"query": "q2", "positive": ["p2"], "negative": [{"text": "no title"}], "query_id": "ignored"},
        ]
    )
    assert records[0].format == "pair"
    assert records[0].positives == ("p1", "T body")
    assert records[1].format == "triplet"
    assert records[1].negatives == ("no title",)
    scored = load_records([{"query": "q", "document": {"title": "A", "text": "b"}, "label": 1}])
    assert scored[0].format == "scored"
    assert scored[0].document == "A b"
    assert scored[0].label == 1.0


def test_json_file_folder_and_custom_keys(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _write_jsonl(folder / "a.jsonl", [GOOD, "", GOOD])  # a blank line is skipped
    (folder / "b.json").write_text(json.dumps([GOOD]))
    (folder / "notes.txt").write_text("not data")
    assert len(load_records(folder)) == 3
    renamed = load_records([{"question": "q", "pos": ["p"]}], RecordKeys(query="question", positive="pos"))
    assert renamed[0].query == "q"


def test_hf_dataset_is_accepted() -> None:
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list([GOOD, GOOD])
    assert [record.negatives for record in load_records(dataset)] == [("n1", "n2")] * 2


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"query": "q"}, "positive", "missing"),
        ({"positive": ["p"]}, "query", "missing"),
        ({"query": "q", "positive": []}, "positive", "empty list"),
        ({"query": "q", "positive": ["p"], "negative": []}, "negative", "empty list"),
        ({"query": 3, "positive": ["p"]}, "query", "expected a string"),
        ({"query": "q", "positive": ["p", 7]}, "positive[1]", "expected a string"),
        ({"query": "q", "positive": [{"title": "t"}]}, "positive[0]", "needs a string 'text'"),
        ({"query": "q", "positive": "p", "negative": {"a": 1}}, "negative[0]", "needs a string 'text'"),
        ({"query": "q", "document": "d", "label": "high"}, "label", "expected a finite number"),
        ({"query": "q", "document": "d", "label": True}, "label", "expected a finite number"),
        ({"query": "q", "document": "d"}, "label", "missing"),
        ({"query": "q", "document": "d", "label": float("nan")}, "label", "finite"),
    ],
)
def test_bad_record_names_file_line_and_field(tmp_path: Path, row: dict, field: str, problem: str) -> None:
    path = _write_jsonl(tmp_path / "train.jsonl", [GOOD, row])
    with pytest.raises(DataFormatError, match=problem) as raised:
        load_records(path)
    assert raised.value.source == str(path)
    assert raised.value.line == 2
    assert raised.value.field == field
    assert f"{path}, line 2, field {field!r}" in str(raised.value)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "train.jsonl", [GOOD, GOOD, '{"query": "q", "positive": ['])
    with pytest.raises(DataFormatError, match=r"line 3: invalid JSON"):
        load_records(path)


def test_not_an_object_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="line 1: expected a JSON object"):
        load_records(_write_jsonl(tmp_path / "a.jsonl", ["[1, 2]"]))
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"query": "\xff\xfe", "positive": ["p"]}\n')
    with pytest.raises(DataFormatError, match="not UTF-8"):
        load_records(path)


def test_in_memory_records_are_numbered(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"records, line 2, field 'positive'"):
        load_records([GOOD, {"query": "q"}])


def test_empty_missing_and_mixed_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no records"):
        load_records(_write_jsonl(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_records(tmp_path / "missing.jsonl")
    with pytest.raises(DataFormatError, match="cannot be mixed"):
        load_records([GOOD, {"query": "q", "document": "d", "label": 0.5}])
    with pytest.raises(DataFormatError, match=r"expected a \.jsonl or \.json file"):
        load_records(_write_jsonl(tmp_path / "train.csv", ["a,b"]))


def test_a_file_saved_by_a_windows_editor_loads(tmp_path: Path) -> None:
    """A byte-order mark and CRLF line ends (Notepad's UTF-8): before, line 1 was 'invalid JSON'."""
    lines = [json.dumps(GOOD), "", json.dumps({**GOOD, "query": "q2"})]
    (tmp_path / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    (tmp_path / "train.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([GOOD]).encode())

    records = load_records(str(tmp_path / "train.jsonl"))

    assert [record.query for record in records] == ["q", "q2"]
    assert load_records(str(tmp_path / "train.json"))[0].negatives == ("n1", "n2")


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"query": "  ", "positive": ["p"]}, "query"),
        ({"query": "q", "positive": ["p", " \n"]}, "positive[1]"),
        ({"query": "q", "positive": ["p"], "negative": [{"title": "", "text": " "}]}, "negative[0]"),
        ({"query": "q", "document": "", "label": 1}, "document"),
    ],
    ids=["blank-query", "blank-positive", "blank-negative-object", "blank-scored-document"],
)
def test_an_empty_query_or_passage_is_an_error_naming_its_line_and_field(
    tmp_path: Path, record: dict, field: str
) -> None:
    """Before, they loaded and trained as if they were text."""
    first = GOOD if "document" not in record else {"query": "q", "document": "d", "label": 0}
    path = _write_jsonl(tmp_path / "train.jsonl", [first, record])
    with pytest.raises(DataFormatError, match=rf"train\.jsonl, line 2, field '{re.escape(field)}': empty"):
        load_records(path)


def test_bytes_that_are_not_utf8_are_located_by_line(tmp_path: Path) -> None:
    """Before, a .jsonl gave the position in the read buffer and no line, a .json a bare UnicodeDecodeError."""
    good = json.dumps(GOOD).encode()
    latin1 = json.dumps({**GOOD, "query": "QUERY"}).encode().replace(b"QUERY", b"caf\xe9")
    (tmp_path / "train.jsonl").write_bytes(b"\n".join([good, good, latin1]) + b"\n")
    (tmp_path / "train.json").write_bytes(b"[\n" + good + b",\n" + latin1 + b"\n]")
    with pytest.raises(DataFormatError, match=r"train\.jsonl, line 3: not UTF-8 \(byte 0xe9"):
        load_records(tmp_path / "train.jsonl")
    with pytest.raises(DataFormatError, match=r"train\.json, line 3: not UTF-8"):
        load_records(tmp_path / "train.json")


def test_a_line_separator_inside_a_json_string_is_text_not_a_line_end(tmp_path: Path) -> None:
    record = {**GOOD, "positive": ["first part\u2028second part\u0085third"]}
    records = load_records(_write_jsonl(tmp_path / "train.jsonl", [GOOD, record, GOOD]))
    assert records[1].positives == ("first part\u2028second part\u0085third",)


def test_mixing_scored_pairs_with_groups_names_the_first_odd_record(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _write_jsonl(folder / "a.jsonl", [GOOD, GOOD])
    _write_jsonl(folder / "b.jsonl", [GOOD, {"query": "q", "document": "d", "label": 1}])
    with pytest.raises(
        DataFormatError, match=r"b\.jsonl, line 2: a scored pair among pair / triplet records"
    ):
        load_records(folder)
