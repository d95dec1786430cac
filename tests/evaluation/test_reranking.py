"""RerankingEvaluator: reorders a first stage's top-k with any scorer and scores the reordered lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrievals_rag.evaluation.metrics import evaluate_run
from retrievals_rag.evaluation.reranking import RerankingEvaluator, read_run, write_run

CORPUS = {"d1": "alpha", "d2": "beta", "d3": "gamma", "d4": "delta"}
QUERIES = {"q1": "find alpha", "q2": "find gamma", "q3": "no judgements"}
QRELS = {"q1": {"d1": 1}, "q2": {"d3": 2}}
FIRST_STAGE = {"q1": {"d2": 0.9, "d1": 0.8, "d4": 0.1}, "q2": {"d4": 0.7, "d3": 0.6, "d1": 0.5}}


class WordMatcher:
    """A scorer that knows the answer: 1 when the document is the query's last word."""

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def compute_score(self, pairs, *, batch_size=None, token_budget=None, show_progress_bar=None):  # type: ignore[no-untyped-def]
        self.pairs = list(pairs)
        return [float(query.split()[-1] == document) for query, document in pairs]


def test_reranking_reorders_the_top_k_and_keeps_the_first_stages_recall() -> None:
    evaluator = RerankingEvaluator(CORPUS, QUERIES, QRELS, FIRST_STAGE, top_k=2, k_values=(1, 2, 10))
    scorer = WordMatcher()
    result = evaluator.evaluate(scorer)
    # only the top-2 of each judged query are scored, all in one call
    assert sorted(scorer.pairs) == sorted(
        [("find alpha", "beta"), ("find alpha", "alpha"), ("find gamma", "delta"), ("find gamma", "gamma")]
    )
    assert result.metrics["nDCG@10"] == pytest.approx(1.0) and result.metrics["MRR@10"] == pytest.approx(1.0)
    first = evaluator.first_stage_metrics()
    assert first["MRR@10"] == pytest.approx(0.5)  # both relevant documents came second
    assert first == evaluate_run(
        QRELS, {q: dict(list(h.items())[:2]) for q, h in FIRST_STAGE.items()}, (1, 2, 10)
    )
    assert result.metrics["Recall@2"] == first["Recall@2"] == 1.0


def test_a_document_the_first_stage_missed_stays_missed() -> None:
    evaluator = RerankingEvaluator(CORPUS, QUERIES, QRELS, FIRST_STAGE, top_k=1, k_values=(1, 10))
    result = evaluator.evaluate(WordMatcher())
    assert result.metrics["Recall@10"] == 0.0  # d1 and d3 were second: beyond the top-1


def test_runs_are_read_from_json_and_trec_files_and_bad_lines_are_named(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps(FIRST_STAGE))
    assert read_run(tmp_path / "run.json") == FIRST_STAGE
    (tmp_path / "run.trec").write_text("q1 Q0 d2 1 0.9 dense\nq1 Q0 d1 2 0.8 dense\n\nq2 Q0 d4 1 0.7 dense\n")
    assert read_run(tmp_path / "run.trec") == {"q1": {"d2": 0.9, "d1": 0.8}, "q2": {"d4": 0.7}}
    (tmp_path / "bad.trec").write_text("q1 Q0 d2 1 0.9 dense\nq1 d1\n")
    with pytest.raises(ValueError, match=r"bad.trec, line 2"):
        read_run(tmp_path / "bad.trec")


@pytest.mark.parametrize("name", ["nested/run.json", "nested/run.trec"])
def test_written_runs_read_back_the_same_in_both_formats(tmp_path: Path, name: str) -> None:
    run = {"q1": {"d1": 0.25, "d2": 0.9, "d3": -1.5}, "q 2" if name.endswith("json") else "q2": {"d4": 1 / 3}}
    write_run(tmp_path / name, run)
    assert read_run(tmp_path / name) == run  # scores exact, the folder made
    if name.endswith("trec"):
        first = (tmp_path / name).read_text().splitlines()[:3]
        assert [line.split()[2:4] for line in first] == [["d2", "1"], ["d1", "2"], ["d3", "3"]]  # best first


def test_a_trec_run_refuses_ids_it_could_not_read_back(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"run.trec: query 'q 1'.*white space"):
        write_run(tmp_path / "run.trec", {"q 1": {"d1": 1.0}})
    with pytest.raises(ValueError, match="tag must be one word"):
        write_run(tmp_path / "run.trec", {"q1": {"d1": 1.0}}, tag="my run")
    assert not (tmp_path / "run.trec").exists()  # nothing half written


def test_a_first_stage_naming_documents_outside_the_corpus_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the corpus"):
        RerankingEvaluator(CORPUS, QUERIES, QRELS, {"q1": {"d9": 1.0}})


def test_an_embedder_folder_gives_the_dense_first_stage(tiny_bert_path: Path) -> None:
    from tests.conftest import SCIFACT_SUBSET

    evaluator = RerankingEvaluator.from_beir(SCIFACT_SUBSET, first_stage=tiny_bert_path, top_k=3)
    assert evaluator.first_stage and all(len(hits) == 3 for hits in evaluator.first_stage.values())
    assert 0.0 <= evaluator.first_stage_metrics()["nDCG@10"] <= 1.0


def test_run_files_and_encode_inputs_written_by_a_windows_editor_load(tmp_path) -> None:
    """A UTF-8 byte-order mark is not part of the first record or line (before: 'invalid JSON', or a first
    text that began with an invisible U+FEFF and was encoded with it)."""
    from retrievals_rag.distributed.encode import read_input

    run_file = tmp_path / "run.json"
    run_file.write_bytes(b'\xef\xbb\xbf{"q1": {"d1": 2.0, "d2": 1.0}}')
    texts = tmp_path / "texts.txt"
    texts.write_bytes(b"\xef\xbb\xbfinsulin\r\nglucose\r\n")

    assert read_run(run_file) == {"q1": {"d1": 2.0, "d2": 1.0}}
    assert read_input(texts) == (["0", "1"], ["insulin", "glucose"])
