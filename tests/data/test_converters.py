"""Tests of the T2Ranking and DPR converters on small hand-written fixtures (tests/data/fixtures/)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.data import converters
from retrievals_rag.data.converters import convert_dpr, convert_t2ranking
from retrievals_rag.data.records import DataFormatError, load_records

FIXTURES = Path(__file__).resolve().parent / "fixtures"
T2RANKING = FIXTURES / "t2ranking"
DPR = FIXTURES / "dpr"
DPR_SAMPLE = DPR / "biencoder-nq-sample.json"


def t2ranking_files(folder: Path = T2RANKING) -> dict[str, Path]:
    return {
        "collection": folder / "collection.tsv",
        "queries": folder / "queries.train.tsv",
        "qrels": folder / "qrels.retrieval.train.tsv",
    }


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def copy_fixtures(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# ------------------------------------------------------------------------------------------------ T2Ranking


def test_t2ranking_pairs_match_the_expected_file(tmp_path: Path) -> None:
    output = tmp_path / "pairs.jsonl"

    stats = convert_t2ranking(**t2ranking_files(), output=output)

    assert output.read_bytes() == (T2RANKING / "expected_pairs.jsonl").read_bytes()
    assert (stats.records, stats.negatives, stats.skipped) == (3, 0, {})
    assert stats.summary() == f"wrote 3 records to {output}"
    assert [record.format for record in load_records(output)] == ["pair"] * 3


def test_t2ranking_triplets_match_the_expected_file(tmp_path: Path) -> None:
    output = tmp_path / "triplets.jsonl"

    stats = convert_t2ranking(
        **t2ranking_files(),
        output=output,
        negatives=T2RANKING / "train.mined.tsv",
        rank_range=(1, 4),
        num_negatives=2,
    )

    # q1: positions 1-3 are 105, 100 (a positive), 107; q2: 102, 102 (a repeat), 106; q3 has no rows.
    assert output.read_bytes() == (T2RANKING / "expected_triplets_ranks_1_4.jsonl").read_bytes()
    assert stats.summary() == (
        f"wrote 2 records to {output}; negatives per record: 2 to 2, mean 2.00; "
        "skipped: 1 queries without negatives"
    )
    assert [record.format for record in load_records(output)] == ["triplet"] * 2


def test_t2ranking_draws_are_a_reproducible_subset_in_rank_order(tmp_path: Path) -> None:
    files = t2ranking_files()
    negatives = T2RANKING / "train.mined.tsv"

    convert_t2ranking(**files, output=tmp_path / "a.jsonl", negatives=negatives, num_negatives=1, seed=5)
    convert_t2ranking(**files, output=tmp_path / "b.jsonl", negatives=negatives, num_negatives=1, seed=5)
    convert_t2ranking(**files, output=tmp_path / "all.jsonl", negatives=negatives, num_negatives=10)

    drawn = read_jsonl(tmp_path / "a.jsonl")
    assert drawn == read_jsonl(tmp_path / "b.jsonl")
    # every candidate, default band (0, 200): positives and repeats dropped, rank order kept
    assert [record["negative_ids"] for record in read_jsonl(tmp_path / "all.jsonl")] == [
        ["105", "107", "102"],
        ["102", "106", "104"],
    ]
    for record, candidates in zip(drawn, [["105", "107", "102"], ["102", "106", "104"]], strict=True):
        assert len(record["negative_ids"]) == 1 and record["negative_ids"][0] in candidates


def test_t2ranking_reads_gzip_files(tmp_path: Path) -> None:
    for name in ("collection.tsv", "queries.train.tsv", "qrels.retrieval.train.tsv"):
        with gzip.open(tmp_path / f"{name}.gz", "wb") as handle:
            handle.write((T2RANKING / name).read_bytes())

    convert_t2ranking(
        tmp_path / "collection.tsv.gz",
        tmp_path / "queries.train.tsv.gz",
        tmp_path / "qrels.retrieval.train.tsv.gz",
        tmp_path / "pairs.jsonl",
    )

    assert (tmp_path / "pairs.jsonl").read_bytes() == (T2RANKING / "expected_pairs.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("file", "content", "line", "message"),
    [
        ("collection.tsv", "pid\tpara\n100\tok\n101 no tab here\n", 3, r"expected 2 tab-separated columns"),
        (
            "collection.tsv",
            "100\tfirst\n100\tagain\n",
            2,
            r"field 'pid': repeated id '100' \(first on line 1\)",
        ),
        ("queries.train.tsv", "1\tok\n2\t  \n3\tok\n", 2, r"field 'query': empty text"),
        (
            "qrels.retrieval.train.tsv",
            "1\t101\n2\t0\t103\t2\n",
            2,
            r"got 4 \(this looks like graded TREC qrels",
        ),
        ("qrels.retrieval.train.tsv", "1\t101\n9\t103\n", 2, r"field 'qid': query id '9' is not in"),
        ("qrels.retrieval.train.tsv", "1\t101\n2\t999\n", 2, r"field 'pid': passage id '999' is not in"),
        ("train.mined.tsv", "1\t105\t1\n1\n", 2, r"expected at least 2 columns"),
        ("train.mined.tsv", "1\t105\t1\n1\t888\t2\n", 2, r"field 'pid': passage id '888' is not in"),
    ],
)
def test_t2ranking_bad_input_names_the_file_line_and_field(
    tmp_path: Path, file: str, content: str, line: int, message: str
) -> None:
    folder = copy_fixtures(T2RANKING, tmp_path / "t2ranking")
    (folder / file).write_text(content, encoding="utf-8")

    with pytest.raises(DataFormatError, match=message) as caught:
        convert_t2ranking(
            **t2ranking_files(folder), output=tmp_path / "out.jsonl", negatives=folder / "train.mined.tsv"
        )

    assert (caught.value.source, caught.value.line) == (str(folder / file), line)
    assert str(caught.value).startswith(f"{folder / file}, line {line}")
    assert not (tmp_path / "out.jsonl").exists()


def test_t2ranking_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"0 <= start < end"):
        convert_t2ranking(**t2ranking_files(), output=tmp_path / "out.jsonl", rank_range=(3, 3))
    with pytest.raises(ValueError, match=r"num_negatives must be a positive integer"):
        convert_t2ranking(**t2ranking_files(), output=tmp_path / "out.jsonl", num_negatives=0)
    with pytest.raises(DataFormatError, match=r"no-such-file.tsv: does not exist"):
        convert_t2ranking(
            **t2ranking_files(), output=tmp_path / "out.jsonl", negatives=tmp_path / "no-such-file.tsv"
        )


# ------------------------------------------------------------------------------------------------ DPR


def test_dpr_triplets_match_the_expected_file(tmp_path: Path) -> None:
    output = tmp_path / "dpr.jsonl"

    stats = convert_dpr(DPR_SAMPLE, output)

    assert output.read_bytes() == (DPR / "expected_triplets.jsonl").read_bytes()
    assert stats.skipped == {"items without positives": 1, "items without negatives": 1}
    assert [record.format for record in load_records(output)] == ["triplet"] * 2


def test_dpr_with_negative_ctxs_matches_the_expected_file(tmp_path: Path) -> None:
    output = tmp_path / "dpr.jsonl"

    stats = convert_dpr(DPR_SAMPLE, output, include_negative_ctxs=True)

    assert output.read_bytes() == (DPR / "expected_triplets_with_negative_ctxs.jsonl").read_bytes()
    assert (stats.records, stats.negatives, stats.min_negatives, stats.max_negatives) == (3, 5, 1, 3)


def test_dpr_num_negatives_draws_reproducibly_from_the_listed_negatives(tmp_path: Path) -> None:
    convert_dpr(DPR_SAMPLE, tmp_path / "a.jsonl", num_negatives=1, seed=2)
    convert_dpr(DPR_SAMPLE, tmp_path / "b.jsonl", num_negatives=1, seed=2)

    drawn = read_jsonl(tmp_path / "a.jsonl")
    expected = read_jsonl(DPR / "expected_triplets.jsonl")
    assert drawn == read_jsonl(tmp_path / "b.jsonl")
    for record, full in zip(drawn, expected, strict=True):
        assert len(record["negative"]) == 1 and record["negative"][0] in full["negative"]


def test_dpr_streams_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(converters.dpr, "_READ_CHUNK", 7)  # every item and string is cut somewhere

    convert_dpr(DPR_SAMPLE, tmp_path / "dpr.jsonl", include_negative_ctxs=True)

    expected = (DPR / "expected_triplets_with_negative_ctxs.jsonl").read_bytes()
    assert (tmp_path / "dpr.jsonl").read_bytes() == expected


def test_dpr_reads_json_lines_and_gzip(tmp_path: Path) -> None:
    items = json.loads(DPR_SAMPLE.read_text(encoding="utf-8"))
    lines = "".join(json.dumps(item) + "\n" for item in items)
    (tmp_path / "nq.jsonl").write_text(lines, encoding="utf-8")
    with gzip.open(tmp_path / "nq.json.gz", "wt", encoding="utf-8") as handle:
        json.dump(items, handle)

    convert_dpr(tmp_path / "nq.jsonl", tmp_path / "from-lines.jsonl")
    convert_dpr(tmp_path / "nq.json.gz", tmp_path / "from-gzip.jsonl")

    expected = (DPR / "expected_triplets.jsonl").read_bytes()
    assert (tmp_path / "from-lines.jsonl").read_bytes() == expected
    assert (tmp_path / "from-gzip.jsonl").read_bytes() == expected


def _dpr_items_with(index: int, change: dict[str, Any]) -> list[dict[str, Any]]:
    items = json.loads(DPR_SAMPLE.read_text(encoding="utf-8"))
    items[index] = {**items[index], **change}
    return items


def _line_of_item(text: str, index: int) -> int:
    """1-based line of the '{' that opens top-level item ``index`` of a json.dumps(indent=4) list."""
    lines = text.splitlines()
    openers = [number for number, line in enumerate(lines, start=1) if line == "    {"]
    return openers[index]


@pytest.mark.parametrize(
    ("index", "change", "field", "message"),
    [
        (1, {"question": None}, "[1].question", r"expected a string, got NoneType"),
        (2, {"question": " "}, "[2].question", r"empty"),
        (0, {"positive_ctxs": {"title": "t"}}, "[0].positive_ctxs", r"expected a list of contexts, got dict"),
        (3, {"positive_ctxs": [{"title": "t", "text": 5}]}, "[3].positive_ctxs[0].text", r"got int"),
        (
            3,
            {"hard_negative_ctxs": [{"text": "x"}, {"title": 1, "text": "y"}]},
            "[3].hard_negative_ctxs[1].title",
            "got int",
        ),
        (
            0,
            {"hard_negative_ctxs": ["just a string"]},
            "[0].hard_negative_ctxs[0]",
            r"expected a \{'title', 'text'\}",
        ),
    ],
)
def test_dpr_bad_item_names_the_file_line_and_field(
    tmp_path: Path, index: int, change: dict[str, Any], field: str, message: str
) -> None:
    text = json.dumps(_dpr_items_with(index, change), indent=4)
    path = tmp_path / "nq.json"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(DataFormatError, match=message) as caught:
        convert_dpr(path, tmp_path / "out.jsonl")

    assert (caught.value.source, caught.value.line, caught.value.field) == (
        str(path),
        _line_of_item(text, index),
        field,
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_dpr_missing_positive_ctxs_and_non_object_items_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "nq.json"
    path.write_text('[\n{"question": "q", "positive_ctxs": []},\n{"question": "q"}\n]', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 3, field '\[1\]\.positive_ctxs': missing"):
        convert_dpr(path, tmp_path / "out.jsonl")

    path.write_text('[\n{"question": "q", "positive_ctxs": []},\n7\n]', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 3, field '\[1\]': expected a JSON object, got int"):
        convert_dpr(path, tmp_path / "out.jsonl")


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (
            '[\n{"question": "q",\n "positive_ctxs": []\n "answers": []}\n]',
            4,
            r"invalid JSON: Expecting ',' delimiter",
        ),
        ('[\n{"question": "q", "positive_ctxs": []},\n]', 3, r"invalid JSON: Expecting value"),
        (
            '[\n{"question": "q", "positive_ctxs": []}\n{"question": "r"}\n]',
            3,
            r"expected ',' or ']' after the item",
        ),
        ('[\n{"question": "q", "positive_ctxs": []}\n', 3, r"the file ends inside the list"),
        ('[{"question": "q", "positive_ctxs": []}]\n\n[]', 3, r"unexpected text after the closing"),
        ('"a string"', 1, r"expected a JSON list of objects, found '\"'"),
        ("  \n", 2, r"the file is empty"),
    ],
)
def test_dpr_malformed_json_names_the_line(tmp_path: Path, content: str, line: int, message: str) -> None:
    path = tmp_path / "nq.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(DataFormatError, match=message) as caught:
        convert_dpr(path, tmp_path / "out.jsonl")

    assert caught.value.line == line


def test_dpr_checks_num_negatives(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"num_negatives must be a positive integer or None"):
        convert_dpr(DPR_SAMPLE, tmp_path / "out.jsonl", num_negatives=0)


def test_passages_without_text_are_left_out_so_that_the_records_train(tmp_path: Path) -> None:
    """T2Ranking's collection holds some empty passages and DPR files empty contexts; before, they were written
    as positives or negatives, and training, which refuses an empty passage, refused the whole file."""
    folder = copy_fixtures(T2RANKING, tmp_path / "t2")
    collection = folder / "collection.tsv"
    rows = collection.read_text(encoding="utf-8").splitlines()
    blanked = {"100", "104", "105"}  # a positive of q1, the only positive of q3, a negative of q1
    collection.write_text(
        "\n".join(f"{row.split(chr(9))[0]}\t" if row.split("\t")[0] in blanked else row for row in rows)
        + "\n",
        encoding="utf-8",
    )
    output = tmp_path / "t2.jsonl"
    stats = convert_t2ranking(
        **t2ranking_files(folder), output=output, negatives=folder / "train.mined.tsv", rank_range=(1, 5)
    )
    records = read_jsonl(output)
    assert stats.skipped["queries whose positives have no text"] == 1
    first = next(record for record in records if record["query_id"] == "1")
    assert first["positive_ids"] == ["101"] and "105" not in first["negative_ids"] and first["negative"]
    assert all(passage.strip() for record in records for passage in record["positive"] + record["negative"])
    load_records(output)

    items = json.loads(DPR_SAMPLE.read_text(encoding="utf-8"))
    items[0]["hard_negative_ctxs"].append({"title": "", "text": "  ", "passage_id": "blank"})
    items[0]["positive_ctxs"].insert(0, {"title": " ", "text": ""})
    (tmp_path / "nq.json").write_text(json.dumps(items), encoding="utf-8")
    convert_dpr(tmp_path / "nq.json", tmp_path / "dpr.jsonl")
    assert (tmp_path / "dpr.jsonl").read_bytes() == (DPR / "expected_triplets.jsonl").read_bytes()
    load_records(tmp_path / "dpr.jsonl")
