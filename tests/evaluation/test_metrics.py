"""Tests for retrievals_rag.evaluation.metrics: agreement with pytrec_eval, hand-worked cases, validation."""

from __future__ import annotations

import math
import random

import pytest

from retrievals_rag.evaluation.metrics import (
    METRIC_NAMES,
    evaluate_run,
    evaluate_run_per_query,
    format_metrics_table,
    rank_documents,
)

pytrec_eval = pytest.importorskip("pytrec_eval")

K_VALUES = (1, 3, 5, 10, 20)
# our key prefix -> pytrec_eval measure prefix
TREC_MEASURES = {"nDCG": "ndcg_cut", "MAP": "map_cut", "Recall": "recall", "P": "P", "HitRate": "success"}


def _random_case(rng: random.Random) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """Graded qrels (including -1 and 0), runs with tied scores, unjudged documents, short and missing runs."""
    # Ids like "d9" and "d10" make lexicographic order differ from numeric order.
    pool = [f"d{number}" for number in range(40)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for query_number in range(rng.randint(1, 6)):
        query_id = f"q{query_number}"
        judged = rng.sample(pool, rng.randint(1, 12))
        qrels[query_id] = {doc: rng.choice([-1, 0, 0, 1, 1, 2, 3]) for doc in judged}
        if rng.random() < 0.15:
            continue  # the query is missing from the run
        retrieved = rng.sample(pool, rng.randint(0, 25))  # may be shorter than k, may hold unjudged documents
        run[query_id] = {doc: round(rng.random(), 1) for doc in retrieved}  # one decimal: many ties
    if rng.random() < 0.3:
        run["unjudged-query"] = {"d1": 1.0}
    return qrels, run


def _pytrec(qrels, run, measures):
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(measures))
    return evaluator.evaluate({query_id: scores for query_id, scores in run.items() if scores})


@pytest.mark.parametrize("seed", range(150))
def test_matches_pytrec_eval(seed: int) -> None:
    rng = random.Random(seed)
    qrels, run = _random_case(rng)
    ours = evaluate_run_per_query(qrels, run, k_values=K_VALUES)
    measures = [f"{trec}_{k}" for trec in TREC_MEASURES.values() for k in K_VALUES]
    reference = _pytrec(qrels, run, measures)

    with_relevant = {query_id for query_id, judged in qrels.items() if any(g > 0 for g in judged.values())}
    assert set(ours) == with_relevant
    for query_id, values in ours.items():
        if not run.get(query_id):
            assert all(value == 0.0 for value in values.values()), "a query missing from the run scores 0"
            continue
        for label, trec in TREC_MEASURES.items():
            for k in K_VALUES:
                assert values[f"{label}@{k}"] == pytest.approx(
                    reference[query_id][f"{trec}_{k}"], abs=1e-6
                ), (
                    query_id,
                    label,
                    k,
                )
        for k in K_VALUES:
            top_k = {doc: run[query_id][doc] for doc in rank_documents(run[query_id])[:k]}
            expected = _pytrec({query_id: qrels[query_id]}, {query_id: top_k}, ["recip_rank"])
            assert values[f"MRR@{k}"] == pytest.approx(expected[query_id]["recip_rank"], abs=1e-6)


def test_mean_is_the_mean_of_per_query_values() -> None:
    qrels, run = _random_case(random.Random(7))
    per_query = evaluate_run_per_query(qrels, run, k_values=[5])
    mean = evaluate_run(qrels, run, k_values=[5])
    for key, value in mean.items():
        assert value == pytest.approx(sum(values[key] for values in per_query.values()) / len(per_query))


def test_ties_break_by_descending_document_id_like_trec_eval() -> None:
    # "9" > "10" as strings, so "9" ranks first although 9 < 10 as numbers.
    assert rank_documents({"10": 1.0, "9": 1.0, "b": 2.0, "a": 1.0}) == ["b", "a", "9", "10"]
    qrels = {"q": {"9": 1, "10": 0}}
    run = {"q": {"10": 1.0, "9": 1.0}}
    assert _pytrec(qrels, run, ["recip_rank"])["q"]["recip_rank"] == 1.0
    assert evaluate_run(qrels, run, k_values=[1], metrics=["mrr"]) == {"MRR@1": 1.0}


def test_hand_computed_graded_case() -> None:
    qrels = {"q": {"a": 3, "b": 2, "c": 0, "d": 1}}
    run = {"q": {"c": 0.9, "a": 0.8, "x": 0.7, "d": 0.6}}  # ranking c, a, x (unjudged), d
    result = evaluate_run(qrels, run, k_values=[1, 3, 10])
    # DCG@3 = 0/log2(2) + 3/log2(3) + 0/log2(4) = 1.8927893
    # IDCG@3 from the qrels' grades 3, 2, 1 (b is never retrieved): 3 + 2/log2(3) + 1/2 = 4.7618595
    # nDCG@3 = 1.8927893 / 4.7618595 = 0.3974895
    assert result["nDCG@3"] == pytest.approx(0.3974895, abs=1e-7)
    # @10 adds d at rank 4: (1.8927893 + 1/log2(5)) / (4.7618595 + 0) = 0.4885...
    assert result["nDCG@10"] == pytest.approx(
        (3 / math.log2(3) + 1 / math.log2(5)) / (3 + 2 / math.log2(3) + 0.5)
    )
    assert result["nDCG@1"] == 0.0
    # MAP@3: a is relevant at rank 2 (precision 1/2); 3 relevant documents: 0.5 / 3
    assert result["MAP@3"] == pytest.approx(0.5 / 3)
    # MAP@10: adds d at rank 4 (precision 2/4): (1/2 + 2/4) / 3
    assert result["MAP@10"] == pytest.approx(1.0 / 3)
    assert result["MRR@1"] == 0.0
    assert result["MRR@3"] == 0.5
    assert result["Recall@3"] == pytest.approx(1 / 3)
    assert result["Recall@10"] == pytest.approx(2 / 3)
    assert result["P@3"] == pytest.approx(1 / 3)
    assert result["P@10"] == pytest.approx(2 / 10)  # divided by k although only 4 were retrieved
    assert result["HitRate@1"] == 0.0
    assert result["HitRate@3"] == 1.0


def test_query_selection_and_missing_queries() -> None:
    qrels = {
        "found": {"a": 1},
        "missing-from-run": {"b": 1},
        "no-relevant": {"c": 0},
    }
    run = {"found": {"a": 1.0}, "no-relevant": {"c": 1.0}, "not-in-qrels": {"a": 1.0}}
    per_query = evaluate_run_per_query(qrels, run, k_values=[1], metrics=["recall"])
    assert per_query == {"found": {"Recall@1": 1.0}, "missing-from-run": {"Recall@1": 0.0}}
    assert evaluate_run(qrels, run, k_values=[1], metrics=["recall"]) == {"Recall@1": 0.5}


def test_keys_order_and_duplicate_cutoffs() -> None:
    result = evaluate_run(
        {"q": {"a": 1}}, {"q": {"a": 1.0}}, k_values=[10, 1, 10], metrics=["precision", "ndcg"]
    )
    assert list(result) == ["P@1", "P@10", "nDCG@1", "nDCG@10"]
    default = evaluate_run({"q": {"a": 1}}, {"q": {"a": 1.0}})
    assert len(default) == len(METRIC_NAMES) * 5
    assert {key.split("@")[0] for key in default} == {"nDCG", "MAP", "MRR", "Recall", "P", "HitRate"}


@pytest.mark.parametrize("k_values", [[0], [-1], [2.5], [True], []])
def test_rejects_bad_cutoffs(k_values: list) -> None:
    with pytest.raises(ValueError, match="k"):
        evaluate_run({"q": {"a": 1}}, {"q": {"a": 1.0}}, k_values=k_values)


def test_rejects_unknown_metric_and_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown metric 'ndgc'.*'ndcg', 'map', 'mrr'"):
        evaluate_run({"q": {"a": 1}}, {"q": {"a": 1.0}}, metrics=["ndgc"])  # type: ignore[list-item]


def test_rejects_bad_grades_and_scores() -> None:
    with pytest.raises(ValueError, match=r"qrels\['q'\]\['a'\] must be an integer"):
        evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 1.0}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="NaN"):
        evaluate_run({"q": {"a": 1}}, {"q": {"a": float("nan")}})


def test_nothing_to_evaluate() -> None:
    assert evaluate_run_per_query({"q": {"a": 0}}, {"q": {"a": 1.0}}) == {}
    with pytest.raises(ValueError, match="no query in qrels has a relevant document"):
        evaluate_run({"q": {"a": 0}}, {"q": {"a": 1.0}})


def test_format_metrics_table() -> None:
    table = format_metrics_table({"nDCG@1": 0.5, "nDCG@10": 0.123456, "HitRate@1": 1.0})
    assert table.splitlines() == [
        "             @1     @10",
        "nDCG     0.5000  0.1235",
        "HitRate  1.0000       -",
    ]
    with pytest.raises(ValueError, match="'nDCG10'"):
        format_metrics_table({"nDCG10": 0.5})


def test_a_cutoff_far_past_the_rankings_costs_nothing_and_changes_no_metric() -> None:
    """Before, the arrays were (queries, largest k): --k 100000000 asked for 37 GiB on 50 queries."""
    qrels = {"q1": {"d1": 2, "d4": 1, "d9": 1}, "q2": {"d2": 1}}
    run = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6}, "q2": {"d5": 0.5, "d2": 0.4}}

    huge = evaluate_run_per_query(qrels, run, k_values=[2, 10**9])
    plain = evaluate_run_per_query(qrels, run, k_values=[2, 1000])

    for query_id in qrels:
        for name, value in plain[query_id].items():
            at_huge = name.replace("@1000", f"@{10**9}")
            expected = value * 1000 / 10**9 if name.startswith("P@1000") else value
            assert huge[query_id][at_huge] == pytest.approx(expected), (query_id, name)
    assert huge["q1"][f"Recall@{10**9}"] == pytest.approx(2 / 3)
