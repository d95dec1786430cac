"""Tests of hard-negative mining and the atomic JSONL writer, with a fake encoder whose ranking is known."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrievals_rag.data.jsonl import sample_in_order, write_jsonl
from retrievals_rag.retrieval.mining import mine_hard_negatives

N_DOCUMENTS = 30
CORPUS_IDS = [f"d{index}" for index in range(N_DOCUMENTS)]
CORPUS_TEXTS = [f"document {index}" for index in range(N_DOCUMENTS)]


class AngleEncoder:
    """Document ``"document i"`` sits at angle ``0.1 * i`` on the unit circle and every query at angle 0, so
    every query ranks the documents in index order (angles stay below pi): rank r is ``d{r}``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, Any]]] = []

    def encode_queries(
        self,
        queries: Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray:
        options = {
            "batch_size": batch_size,
            "token_budget": token_budget,
            "show_progress_bar": show_progress_bar,
        }
        self.calls.append(("queries", list(queries), options))
        return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(queries), 1))

    def encode_corpus(
        self,
        documents: Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray:
        options = {
            "batch_size": batch_size,
            "token_budget": token_budget,
            "show_progress_bar": show_progress_bar,
        }
        self.calls.append(("corpus", list(documents), options))
        angles = [0.1 * int(text.split()[-1]) for text in documents]
        return np.array([[math.cos(angle), math.sin(angle)] for angle in angles], dtype=np.float32)


def mine(
    queries: dict[str, str],
    positives: dict[str, Any],
    corpus_ids: Sequence[str] = CORPUS_IDS,
    corpus_texts: Sequence[str] = CORPUS_TEXTS,
    **options: Any,
) -> list[dict[str, Any]]:
    return mine_hard_negatives(AngleEncoder(), corpus_ids, corpus_texts, queries, positives, **options)


def index_of(document_id: str) -> int:
    return int(document_id.removeprefix("d"))


TEN_QUERIES = {f"q{index}": f"query {index}" for index in range(10)}
TEN_POSITIVES = {f"q{index}": [f"d{index + 2}", "d15"] for index in range(10)}


# ------------------------------------------------------------------------------------------------ mining


def test_negatives_come_from_the_rank_band_in_rank_order_and_are_never_positives() -> None:
    records = mine(TEN_QUERIES, TEN_POSITIVES, rank_range=(2, 12), num_negatives=4, seed=3)

    assert [record["query_id"] for record in records] == list(TEN_QUERIES)
    for record in records:
        query_id = record["query_id"]
        positives = set(TEN_POSITIVES[query_id])
        band = {f"d{rank}" for rank in range(2, 12)} - positives
        assert record["query"] == TEN_QUERIES[query_id]
        assert len(record["negative_ids"]) == 4
        assert set(record["negative_ids"]) <= band
        assert not set(record["negative_ids"]) & positives
        ranks = [index_of(document_id) for document_id in record["negative_ids"]]
        assert ranks == sorted(ranks)
        assert record["negative"] == [f"document {rank}" for rank in ranks]
        assert record["positive_ids"] == sorted(positives, key=index_of)  # corpus order
        assert record["positive"] == [
            f"document {index_of(document_id)}" for document_id in record["positive_ids"]
        ]


def test_draws_are_reproducible_and_independent_of_query_order_and_of_other_queries() -> None:
    options = {"rank_range": (0, 20), "num_negatives": 3, "seed": 7}

    forward = {record["query_id"]: record for record in mine(TEN_QUERIES, TEN_POSITIVES, **options)}
    reversed_queries = dict(reversed(TEN_QUERIES.items()))
    backward = mine(reversed_queries, TEN_POSITIVES, **options)
    alone = mine({"q4": TEN_QUERIES["q4"]}, TEN_POSITIVES, **options)
    random.seed(12345)  # the global generator plays no part
    again = {record["query_id"]: record for record in mine(TEN_QUERIES, TEN_POSITIVES, **options)}

    assert [record["query_id"] for record in backward] == list(reversed_queries)
    assert all(record == forward[record["query_id"]] for record in backward)
    assert alone == [forward["q4"]]
    assert again == forward


def test_another_seed_draws_other_negatives() -> None:
    seed_0 = mine(TEN_QUERIES, TEN_POSITIVES, rank_range=(0, 20), num_negatives=3, seed=0)
    seed_1 = mine(TEN_QUERIES, TEN_POSITIVES, rank_range=(0, 20), num_negatives=3, seed=1)

    assert [record["negative_ids"] for record in seed_0] != [record["negative_ids"] for record in seed_1]


def test_fewer_candidates_than_asked_gives_all_of_them() -> None:
    (record,) = mine({"q": "query"}, {"q": ["d1"]}, rank_range=(0, 4), num_negatives=8)

    assert record["negative_ids"] == ["d0", "d2", "d3"]


def test_band_past_the_corpus_end_skips_the_query_and_logs_the_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queries = {"with": "query a", "without": "query b", "empty": "query c"}
    positives = {"with": ["d0"], "empty": []}

    with caplog.at_level(logging.INFO, logger="retrievals_rag.retrieval.mining"):
        records = mine(queries, positives, rank_range=(N_DOCUMENTS, N_DOCUMENTS + 5))

    assert records == []
    assert "0 queries mined, 2 skipped without positives, 1 skipped without candidates" in caplog.text


def test_only_queries_with_positives_are_encoded_and_options_reach_the_encoder() -> None:
    encoder = AngleEncoder()

    mine_hard_negatives(
        encoder,
        CORPUS_IDS,
        CORPUS_TEXTS,
        {"a": "query a", "b": "query b", "c": "query c"},
        {"a": ["d1"], "c": ["d2"], "unknown query": ["d3"]},  # positives of other queries are ignored
        batch_size=4,
        token_budget=64,
        show_progress_bar=False,
    )

    options = {"batch_size": 4, "token_budget": 64, "show_progress_bar": False}
    assert encoder.calls == [("corpus", CORPUS_TEXTS, options), ("queries", ["query a", "query c"], options)]


def test_the_query_id_is_excluded_when_it_is_a_corpus_id_unless_allowed() -> None:
    corpus_ids = ["d0", "q", "d2", "d3"]
    texts = CORPUS_TEXTS[:4]

    (default,) = mine({"q": "query"}, {"q": ["d0"]}, corpus_ids, texts, rank_range=(0, 4))
    (allowed,) = mine(
        {"q": "query"}, {"q": ["d0"]}, corpus_ids, texts, rank_range=(0, 4), exclude_query_id=False
    )

    assert default["negative_ids"] == ["d2", "d3"]
    assert allowed["negative_ids"] == ["q", "d2", "d3"]


def test_a_copy_of_a_positive_under_another_id_is_not_a_negative() -> None:
    corpus_ids = ["d0", "d1", "copy of d1", "d3"]
    texts = ["document 0", "document 1", "document 1", "document 3"]

    (record,) = mine({"q": "query"}, {"q": ["d1"]}, corpus_ids, texts, rank_range=(0, 4))

    assert record["negative_ids"] == ["d0", "d3"]


class BlankFirstEncoder(AngleEncoder):
    """As AngleEncoder, and a document without text ranks first (angle 0, as close to every query as can be)."""

    def encode_corpus(self, documents: Sequence[str], **options: Any) -> np.ndarray:
        numbered = [text if text.strip() else "document 0" for text in documents]
        return super().encode_corpus(numbered, **options)


def test_a_document_without_text_is_neither_a_negative_nor_a_positive(tmp_path: Path) -> None:
    """Before, an empty BEIR document ranked in the band came out as a negative (and an empty judged one as a
    positive), and the mined file was refused by training, which takes no empty passage."""
    from retrievals_rag.data.records import load_records

    corpus_ids = ["blank", "d1", "d2", "d3", "also blank"]
    texts = ["", "document 1", "document 2", "document 3", "  "]
    records = mine_hard_negatives(
        BlankFirstEncoder(),
        corpus_ids,
        texts,
        {"q": "query", "only blank": "query"},
        {"q": ["d1", "also blank"], "only blank": ["blank"]},
        rank_range=(0, 5),
    )

    assert [record["query_id"] for record in records] == ["q"]
    assert records[0]["positive_ids"] == ["d1"]
    assert records[0]["negative_ids"] == ["d2", "d3"]
    write_jsonl(records, tmp_path / "mined.jsonl")
    assert load_records(tmp_path / "mined.jsonl")[0].negatives == ("document 2", "document 3")


def test_positives_given_as_a_set_come_out_in_corpus_order() -> None:
    (record,) = mine({"q": "query"}, {"q": {"d9", "d3", "d27"}}, rank_range=(0, 5), num_negatives=1)

    assert record["positive_ids"] == ["d3", "d9", "d27"]


def test_unknown_positive_ids_raise_and_are_named() -> None:
    with pytest.raises(ValueError, match=r"2 document ids that the corpus lacks: 'missing-1', 'missing-2'"):
        mine({"q": "query", "r": "query r"}, {"q": ["d1", "missing-2"], "r": ["missing-1"]})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rank_range": (5, 5)}, r"0 <= start < end, got \(5, 5\)"),
        ({"rank_range": (6, 2)}, r"0 <= start < end"),
        ({"rank_range": (-1, 10)}, r"0 <= start < end"),
        ({"rank_range": (0, 10, 20)}, r"two integers"),
        ({"rank_range": (0.5, 10)}, r"two integers"),
        ({"num_negatives": 0}, r"num_negatives must be a positive integer, got 0"),
        ({"corpus_texts": CORPUS_TEXTS[:-1]}, r"got 30 corpus ids but 29 corpus texts"),
        ({"corpus_ids": ["d0", "d1", "d0", *CORPUS_IDS[3:]]}, r"repeated: 'd0'"),
    ],
)
def test_bad_arguments_raise_value_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mine({"q": "query"}, {"q": ["d1"]}, **options)


# ------------------------------------------------------------------------------------------------ sampling


def test_sample_in_order_keeps_order_and_depends_only_on_seed_and_key() -> None:
    items = list(range(100))

    picked = sample_in_order(items, 10, seed=0, key="q1")

    assert len(picked) == 10 and len(set(picked)) == 10
    assert picked == sorted(picked)
    assert sample_in_order(items, 10, seed=0, key="q1") == picked
    assert sample_in_order(items, 10, seed=0, key="q2") != picked
    assert sample_in_order(items, 10, seed=1, key="q1") != picked
    assert sample_in_order(items[:5], 10, seed=0, key="q1") == items[:5]


# ------------------------------------------------------------------------------------------------ write_jsonl


def test_write_jsonl_writes_utf8_lines_and_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "records.jsonl"
    records = [
        {"query": "鹦鹉", "positive": ["a"]},
        {"query": "b", "positive": [{"title": "t", "text": "x"}]},
    ]

    count = write_jsonl(iter(records), path)

    assert count == 2
    assert path.read_text(encoding="utf-8") == (
        '{"query": "鹦鹉", "positive": ["a"]}\n{"query": "b", "positive": [{"title": "t", "text": "x"}]}\n'
    )
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == records
    assert sorted(item.name for item in path.parent.iterdir()) == ["records.jsonl"]


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, failure: BaseException
) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text("old content\n", encoding="utf-8")

    def records() -> Any:
        yield {"query": "first"}
        raise failure

    with pytest.raises(type(failure)):
        write_jsonl(records(), path)

    assert path.read_text(encoding="utf-8") == "old content\n"
    assert [item.name for item in tmp_path.iterdir()] == ["records.jsonl"]


def test_an_unserialisable_record_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"

    with pytest.raises(TypeError):
        write_jsonl([{"query": "ok"}, {"query": object()}], path)

    assert list(tmp_path.iterdir()) == []


def test_corpus_embedding_cache_encodes_a_corpus_once() -> None:
    import numpy as np

    from retrievals_rag.retrieval.runs import CorpusEmbeddingCache

    calls: list[tuple[str, list[str]]] = []

    class Recorder:
        def encode_corpus(self, documents, *, batch_size=None, token_budget=None, show_progress_bar=None):
            calls.append(("corpus", list(documents)))
            return np.ones((len(documents), 2), dtype=np.float32)

        def encode_queries(self, queries, *, batch_size=None, token_budget=None, show_progress_bar=None):
            calls.append(("queries", list(queries)))
            return np.ones((len(queries), 2), dtype=np.float32)

    cache = CorpusEmbeddingCache(Recorder())
    first = cache.encode_corpus(["a", "b"])
    assert cache.encode_corpus(("a", "b")) is first  # same texts: no second encode
    cache.encode_corpus(["a", "c"])  # other texts: encoded again
    cache.encode_queries(["q"])
    cache.encode_queries(["q"])
    assert [kind for kind, _ in calls] == ["corpus", "corpus", "queries", "queries"]
