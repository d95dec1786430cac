from __future__ import annotations

import json
from pathlib import Path

import bm25s
import numpy as np
import pytest

from retrievals_rag.retrieval.bm25 import BM25Retriever

CORPUS = [
    "The quick brown fox jumps over the lazy dog",
    "A fox is a small wild animal; the red fox hunts mice",
    "Python is a programming language",
    "Dogs and cats are common pets",
]
IDS = ["fox-dog", "fox-fox", "python", "pets"]


def ids_of(hits: list[tuple[str, float]]) -> list[str]:
    return [doc_id for doc_id, _ in hits]


def test_obvious_order() -> None:
    retriever = BM25Retriever(CORPUS, ids=IDS)

    assert ids_of(retriever.search(["fox"], top_k=10)[0]) == ["fox-fox", "fox-dog"]
    assert ids_of(retriever.search(["programming language"], top_k=10)[0]) == ["python"]
    hits = retriever.search(["lazy fox"], top_k=1)[0]
    assert ids_of(hits) == ["fox-dog"]
    assert type(hits[0][1]) is float and hits[0][1] > 0


def test_default_ids_and_run_format() -> None:
    retriever = BM25Retriever(CORPUS)
    assert retriever.ids == ["0", "1", "2", "3"] and len(retriever) == 4

    run = retriever.to_run(["q1", "q2"], ["python", "zebra"], top_k=2)

    assert list(run) == ["q1", "q2"]
    assert list(run["q1"]) == ["2"] and run["q2"] == {}
    assert type(run["q1"]["2"]) is float


def test_scores_are_those_of_bm25s() -> None:
    corpus = ["cat dog", "cat cat bird", "cat fish fish fish", "cat"]  # every document matches "cat"
    retriever = BM25Retriever(corpus, method="bm25+")
    reference = bm25s.BM25(method="bm25+")
    reference.index(bm25s.tokenize(corpus, return_ids=False, show_progress=False), show_progress=False)
    documents, scores = reference.retrieve([["cat", "fish"]], k=4, show_progress=False)

    hits = retriever.search(["cat fish"], top_k=4)[0]

    assert ids_of(hits) == [str(position) for position in documents[0]]
    np.testing.assert_allclose([score for _, score in hits], scores[0], rtol=1e-6)


def test_top_k_larger_than_corpus_returns_matching_documents() -> None:
    retriever = BM25Retriever(CORPUS, ids=IDS)  # bm25s itself raises when k > corpus size
    hits = retriever.search(["fox pets"], top_k=1000)[0]
    assert sorted(ids_of(hits)) == ["fox-dog", "fox-fox", "pets"]  # "python" matches neither term


@pytest.mark.parametrize(
    "query",
    ["", "   ", "the and of", "zebra giraffe", "a I x", "!!!"],
    ids=["empty", "blank", "stopwords", "unknown", "one-letter", "punctuation"],
)
def test_queries_without_indexed_terms_return_nothing(query: str) -> None:
    retriever = BM25Retriever(CORPUS, ids=IDS)
    assert retriever.search([query], top_k=3) == [[]]


def test_batch_keeps_query_order_and_empty_batch() -> None:
    retriever = BM25Retriever(CORPUS, ids=IDS)
    results = retriever.search(["", "python", "zebra", "pets"], top_k=2)
    assert [ids_of(hits) for hits in results] == [[], ["python"], [], ["pets"]]
    assert retriever.search([], top_k=2) == []


def test_equal_scores_keep_corpus_order() -> None:
    retriever = BM25Retriever(["apple pie", "banana", "apple pie", "apple pie"], ids=["d", "c", "b", "a"])
    hits = retriever.search(["apple"], top_k=2)[0]
    assert ids_of(hits) == ["d", "b"]
    assert hits[0][1] == hits[1][1]


def test_documents_without_tokens_are_indexed_but_never_returned() -> None:
    retriever = BM25Retriever(["", "the of", "solar power"], ids=["empty", "stop", "solar"])
    assert ids_of(retriever.search(["solar"], top_k=3)[0]) == ["solar"]
    assert retriever.search(["the"], top_k=3) == [[]]


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_every_method_ranks_the_obvious_document_first(method: str) -> None:
    retriever = BM25Retriever(CORPUS, ids=IDS, method=method, k1=1.2, b=0.5)
    assert retriever.method == method and retriever.k1 == 1.2 and retriever.b == 0.5
    assert ids_of(retriever.search(["python programming"], top_k=2)[0])[0] == "python"


def test_stopwords_option() -> None:
    assert BM25Retriever(CORPUS, ids=IDS).search(["the"], top_k=5) == [[]]
    kept = BM25Retriever(CORPUS, ids=IDS, stopwords=None)
    assert ids_of(kept.search(["the"], top_k=5)[0]) == ["fox-dog", "fox-fox"]
    custom = BM25Retriever(CORPUS, ids=IDS, stopwords=["fox"])
    assert custom.search(["fox"], top_k=5) == [[]]


def test_stemmer_applies_to_documents_and_queries() -> None:
    def strip_plural(words: list[str]) -> list[str]:
        return [word.removesuffix("s") for word in words]

    plain = BM25Retriever(CORPUS, ids=IDS)
    stemmed = BM25Retriever(CORPUS, ids=IDS, stemmer=strip_plural)
    assert ids_of(plain.search(["dog"], top_k=5)[0]) == ["fox-dog"]
    assert ids_of(stemmed.search(["dog"], top_k=5)[0]) == ["pets", "fox-dog"]


def test_progress_bars_are_off_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    BM25Retriever(CORPUS).search(["fox"], top_k=2)
    assert capsys.readouterr().err == ""
    BM25Retriever(CORPUS, show_progress=True).search(["fox"], top_k=2)
    assert "BM25S" in capsys.readouterr().err


def test_save_load_round_trip(tmp_path: Path) -> None:
    ids = ["ü-1", "doc 2", "3", "x/4"]
    retriever = BM25Retriever(CORPUS, ids=ids, method="bm25l", stopwords=["fox"])
    queries = ["fox dog", "python", "pets animal"]
    retriever.save(tmp_path / "bm25")

    loaded = BM25Retriever.load(tmp_path / "bm25")

    assert loaded.ids == ids and loaded.method == "bm25l"
    assert loaded.search(queries, top_k=3) == retriever.search(queries, top_k=3)
    assert loaded.search(["fox"], top_k=3) == [[]]  # the custom stopwords came back too


def test_load_checks_the_stemmer(tmp_path: Path) -> None:
    def lower_stem(words: list[str]) -> list[str]:
        return [word[:4] for word in words]

    BM25Retriever(CORPUS, stemmer=lower_stem).save(tmp_path / "stemmed")
    BM25Retriever(CORPUS).save(tmp_path / "plain")
    with pytest.raises(ValueError, match="built with a stemmer"):
        BM25Retriever.load(tmp_path / "stemmed")
    with pytest.raises(ValueError, match="built without a stemmer"):
        BM25Retriever.load(tmp_path / "plain", stemmer=lower_stem)
    loaded = BM25Retriever.load(tmp_path / "stemmed", stemmer=lower_stem)
    assert ids_of(loaded.search(["programs"], top_k=2)[0]) == ["2"]
    with pytest.raises(FileNotFoundError, match=r"retriever\.json is missing"):
        BM25Retriever.load(tmp_path / "missing")


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"corpus": []}, ValueError, "corpus is empty"),
        ({"corpus": ["", "the of", "a"]}, ValueError, "no document in the corpus has an indexable token"),
        ({"corpus": "one string"}, TypeError, "not one string"),
        ({"corpus": ["ok", 3]}, TypeError, "position 1 is int"),
        ({"corpus": CORPUS, "ids": ["a", "b"]}, ValueError, "got 2 ids for 4 documents"),
        (
            {"corpus": CORPUS, "ids": ["a", "a", "b", "c"]},
            ValueError,
            r"ids must be unique; repeated: \['a'\]",
        ),
        ({"corpus": CORPUS, "method": "bm26"}, ValueError, "method must be one of"),
        ({"corpus": CORPUS, "k1": -1.0}, ValueError, "k1 must be >= 0, got -1.0"),
        ({"corpus": CORPUS, "b": 1.5}, ValueError, r"b must be in \[0, 1\], got 1.5"),
        ({"corpus": CORPUS, "stopwords": "klingon"}, ValueError, "klingon not recognized"),
        ({"corpus": CORPUS, "stemmer": "porter"}, TypeError, "stemmer must be callable"),
    ],
)
def test_invalid_construction_raises(arguments: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        BM25Retriever(**arguments)


def test_invalid_search_arguments_raise() -> None:
    retriever = BM25Retriever(CORPUS)
    with pytest.raises(TypeError, match="not one string"):
        retriever.search("fox", top_k=2)
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, got 0"):
        retriever.search(["fox"], top_k=0)
    with pytest.raises(ValueError, match="one id per query"):
        retriever.to_run(["q1"], ["fox", "dog"], top_k=2)
    with pytest.raises(ValueError, match="query ids must be unique"):
        retriever.to_run(["q", "q"], ["fox", "dog"], top_k=2)


CHINESE_DOCS = [
    "胰岛素是由胰脏内的胰岛β细胞分泌的一种蛋白质激素。",
    "光合作用是植物利用光能把二氧化碳和水合成有机物的过程。",
    "糖尿病患者需要控制血糖，胰岛素可以降低血糖。",
    "インスリンは血糖値を下げるホルモンである。",
    "Insulin lowers blood glucose.",
]


def test_unspaced_scripts_are_matched_by_character_pairs() -> None:
    retriever = BM25Retriever(
        CHINESE_DOCS, ids=["zh-insulin", "zh-photosynthesis", "zh-diabetes", "ja", "en"]
    )

    results = retriever.search(
        ["胰岛素如何降低血糖？", "什么是光合作用", "血糖値", "insulin glucose"], top_k=3
    )

    assert ids_of(results[0])[:2] == ["zh-diabetes", "zh-insulin"]  # bm25s alone: no hit at all
    assert ids_of(results[1]) == ["zh-photosynthesis"]
    assert ids_of(results[2])[0] == "ja"
    assert ids_of(results[3]) == ["en"]


def test_an_index_saved_before_the_character_pair_rule_keeps_its_tokenising(tmp_path: Path) -> None:
    retriever = BM25Retriever(CHINESE_DOCS)
    retriever.save(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "retriever.json").read_text(encoding="utf-8"))["unspaced"]
    reloaded = BM25Retriever.load(tmp_path / "new")
    assert reloaded.search(["降低血糖"], top_k=2) == retriever.search(["降低血糖"], top_k=2)

    # an index of the earlier release: whole runs as terms, no "unspaced" in retriever.json
    legacy = BM25Retriever.__new__(BM25Retriever)
    legacy._setup("en", None, False, None)
    legacy._model = bm25s.BM25()
    legacy._model.index(legacy._tokenize(CHINESE_DOCS), show_progress=False)
    legacy._ids = [str(index) for index in range(len(CHINESE_DOCS))]
    legacy.save(tmp_path / "old")
    metadata_path = tmp_path / "old" / "retriever.json"
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    del metadata["unspaced"]
    metadata_path.write_text(json.dumps(metadata), encoding="utf-8")

    loaded = BM25Retriever.load(tmp_path / "old")

    # its queries are tokenised as its documents were: a whole run matches, character pairs are not in it
    assert ids_of(loaded.search(["光合作用是植物利用光能把二氧化碳和水合成有机物的过程"], top_k=2)[0]) == [
        "1"
    ]
    assert loaded.search(["血糖"], top_k=2) == [[]]
    metadata["unspaced"] = "words"
    metadata_path.write_text(json.dumps(metadata), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown tokenising of unspaced scripts 'words'"):
        BM25Retriever.load(tmp_path / "old")
