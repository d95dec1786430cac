"""The reranking examples run, end to end, on tiny models (a step or two, a few queries)."""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

from retrievals_rag import AutoModelForRanking, ColBERT, LLMRanker

from ..conftest import REPO_ROOT, SCIFACT_SUBSET
from ..training.conftest import make_records

COMMON = [
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "4",
    "--use_cpu",
    "true",
    "--report_to",
    "none",
]


@pytest.fixture(autouse=True)
def _fresh_heads_warn() -> None:
    """Bare encoders get a fresh head / projection, with a warning that is expected here."""
    warnings.filterwarnings("ignore", message=".*(colbert_linear|newly initialized|classifier).*")


def _example(name: str):  # -> module
    path = REPO_ROOT / "examples" / "reranking" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"reranking_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in make_records(8)) + "\n")
    return path


def test_train_cross_encoder_example(tiny_bert_path: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    _example("train_cross_encoder").main(
        ["--model_name_or_path", str(tiny_bert_path), "--train_data", str(_data(tmp_path)),
         "--output_dir", str(output), "--train_group_size", "3", "--max_length", "64", *COMMON]
    )  # fmt: skip
    summary = json.loads((output / "training_summary.json").read_text())
    assert (summary["kind"], summary["loss"], summary["steps"]) == ("cross_encoder", "listwise", 2)
    model = AutoModelForRanking.from_pretrained(output, device="cpu")
    assert isinstance(model, AutoModelForRanking) and model.max_length == 64


def test_train_llm_example_saves_an_adapter(tiny_llama_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    module = _example("train_llm")
    output = tmp_path / "out"
    module.main(
        ["--model_name_or_path", str(tiny_llama_path), "--train_data", str(_data(tmp_path)), "--output_dir", str(output),
         "--train_group_size", "2", "--lora_r", "2", "--target_token", "answer", *COMMON]
    )  # fmt: skip
    assert (output / "adapter_config.json").is_file()
    loaded = AutoModelForRanking.from_pretrained(output, device="cpu")
    assert isinstance(loaded, LLMRanker) and loaded.has_lora and loaded.settings.target_token == "answer"
    with pytest.raises(SystemExit, match="model_name_or_path is required"):
        module.main(["--train_data", "x.jsonl", "--output_dir", str(tmp_path / "none")])


def test_train_colbert_example(tiny_bert_path: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    _example("train_colbert").main(
        ["--model_name_or_path", str(tiny_bert_path), "--train_data", str(_data(tmp_path)),
         "--output_dir", str(output), "--colbert_dim", "8", "--query_max_length", "16", *COMMON]
    )  # fmt: skip
    summary = json.loads((output / "training_summary.json").read_text())
    assert (summary["kind"], summary["loss"]) == ("colbert", "infonce")
    model = ColBERT.from_pretrained(output, device="cpu")
    assert model.colbert_dim == 8 and model.query_max_length == 16


def test_scifact_rerank_with_a_given_cross_encoder(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reranker = AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu")
    reranker.save_pretrained(tmp_path / "cross-encoder")
    results = _example("scifact_rerank").main(
        ["--data", str(SCIFACT_SUBSET), "--reranker", str(tmp_path / "cross-encoder"), "--dense-model",
         str(tiny_bert_path), "--top-k", "10", "--limit-queries", "3", "--device", "cpu",
         "--output", str(tmp_path / "run")]
    )  # fmt: skip
    # reranking reorders the same candidates: recall at the depth is unchanged, the order may not be
    assert results["reranked"]["Recall@10"] == results["dense"]["Recall@10"]
    printed = capsys.readouterr().out
    assert "dense (MiniLM)" in printed and "reranked (AutoModelForRanking, torch)" in printed
    assert json.loads((tmp_path / "run" / "results.json").read_text())["dense"] == results["dense"]


@pytest.mark.slow
def test_scifact_rerank_with_smollm2_s_query_likelihood(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _example("scifact_rerank").main(
        ["--data", str(SCIFACT_SUBSET), "--reranker", "query-likelihood", "--dense-model", str(tiny_bert_path),
         "--top-k", "3", "--limit-queries", "2", "--device", "cpu", "--output", str(tmp_path / "run")]
    )  # fmt: skip
    assert results["reranked"]["Recall@3"] == results["dense"]["Recall@3"]
    assert "reranked (LLMRanker, torch)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="torch only"):
        _example("scifact_rerank").main(
            ["--data", str(SCIFACT_SUBSET), "--reranker", "query-likelihood", "--backend", "onnx",
             "--dense-model", str(tiny_bert_path), "--top-k", "3", "--limit-queries", "2", "--device", "cpu",
             "--output", str(tmp_path / "run2")]
        )  # fmt: skip


def test_scifact_rerank_trains_colbert_first(tiny_bert_path: Path, tmp_path: Path) -> None:
    results = _example("scifact_rerank").main(
        ["--data", str(SCIFACT_SUBSET), "--train", "--train-kind", "colbert", "--train-split", "test",
         "--base-model", str(tiny_bert_path), "--dense-model", str(tiny_bert_path), "--top-k", "10",
         "--limit-queries", "4", "--rank-range", "2", "10", "--num-negatives", "2", "--group-size", "2",
         "--train-batch-size", "2", "--max-steps", "1", "--device", "cpu", "--output", str(tmp_path / "run")]
    )  # fmt: skip
    assert set(results) == {"dense", "reranked"}
    assert (tmp_path / "run" / "train_triplets.jsonl").is_file()
    assert ColBERT.from_pretrained(tmp_path / "run" / "colbert", device="cpu").colbert_dim == 128


def test_colbert_reranking_encodes_each_document_once_for_the_run(
    tiny_bert_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _example("scifact_rerank")
    colbert = ColBERT.from_pretrained(tiny_bert_path, device="cpu", colbert_dim=8)
    encoded: list[int] = []
    forward = ColBERT.forward

    def counting_forward(self, input_ids, attention_mask, kind):  # type: ignore[no-untyped-def]
        if kind == "document":
            encoded.append(input_ids.shape[0])
        return forward(self, input_ids, attention_mask, kind)

    monkeypatch.setattr(ColBERT, "forward", counting_forward)
    queries = {"q1": "cell gene", "q2": "brain risk", "q3": "protein"}
    documents = {"d1": "the cell study", "d2": "cancer human", "d3": "the protein"}
    run = {query_id: {"d1": 0.3, "d2": 0.2, "d3": 0.1} for query_id in queries}  # every query, every document
    reranked = module.rerank_run(colbert, run, queries, documents, top_k=3)
    assert sum(encoded) == 3  # three short documents, one window each, for three queries
    expected = colbert.compute_score([(queries["q2"], documents["d3"])])[0]
    assert reranked["q2"]["d3"] == pytest.approx(expected, abs=1e-5)
    assert module.rerank_run(colbert, run, queries, documents, top_k=1)["q1"].keys() == {"d1"}


def test_scifact_rerank_reuses_a_saved_dense_run_and_triplets(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _example("scifact_rerank")
    common = ["--data", str(SCIFACT_SUBSET), "--train", "--train-kind", "cross-encoder", "--train-split", "test",
              "--base-model", str(tiny_bert_path), "--dense-model", str(tiny_bert_path), "--top-k", "10",
              "--limit-queries", "4", "--rank-range", "2", "10", "--num-negatives", "2", "--group-size", "2",
              "--train-batch-size", "2", "--max-steps", "1", "--device", "cpu", "--max-windows", "1",
              "--dense-run", str(tmp_path / "dense.json"), "--triplets", str(tmp_path / "triplets.jsonl")]  # fmt: skip
    first = module.main([*common, "--output", str(tmp_path / "one")])
    assert (tmp_path / "dense.json").is_file() and (tmp_path / "triplets.jsonl").is_file()
    capsys.readouterr()
    second = module.main([*common, "--output", str(tmp_path / "two")])
    printed = capsys.readouterr().out
    assert "read from" in printed and "not mined again" in printed
    assert second["dense"] == first["dense"]
    (tmp_path / "dense.json").write_text(json.dumps({"other": {"d": 1.0}}))
    with pytest.raises(SystemExit, match="other queries"):
        module.main([*common, "--output", str(tmp_path / "three")])


def _beir_with_train_split(tmp_path: Path) -> Path:
    """The SciFact subset with its judged queries split in two: the first half train, the rest test."""
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (folder / name).write_text((SCIFACT_SUBSET / name).read_text())
    header, *lines = (SCIFACT_SUBSET / "qrels" / "test.tsv").read_text().splitlines()
    queries = list(dict.fromkeys(line.split("\t")[0] for line in lines))
    train = set(queries[: len(queries) // 2])
    for split, keep in (("train", True), ("test", False)):
        chosen = [line for line in lines if (line.split("\t")[0] in train) == keep]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join([header, *chosen]) + "\n")
    return folder


def test_distill_cross_encoder_example(tiny_bert_path: Path, tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    torch.manual_seed(0)  # the teacher's fresh head
    AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(teacher)
    output = tmp_path / "out"
    arguments = [
        "--data", str(_beir_with_train_split(tmp_path)), "--teacher", str(teacher), "--output", str(output),
        "--base-model", str(tiny_bert_path), "--embedder", str(tiny_bert_path), "--limit-queries", "6",
        "--candidates", "12", "--group-size", "4", "--groups-per-query", "2", "--batch-size", "4",
        "--max-length", "64", "--top-k", "10", "--trainers", "ours",
    ]  # fmt: skip
    module = _example("distill_cross_encoder")
    results = module.main(arguments)
    assert set(results) == {
        "dense (first stage)",
        "cross-encoder (ours)",
        "cross-encoder (ours) + dense, weight 0.5",
    }
    records = [json.loads(line) for line in (output / "teacher_groups.jsonl").read_text().splitlines()]
    # two groups per train query that kept enough negatives (a random teacher can score many above the
    # positive: those are dropped as likely false negatives), each its own draw of negatives
    per_query = Counter(record["query"] for record in records)
    assert records and set(per_query.values()) == {2} and len(per_query) <= 6
    for record in records:
        assert len(record["negative"]) == len(record["negative_scores"]) == 3
        # false negatives filtered: every kept negative scores below the positive
        assert max(record["negative_scores"]) < record["positive_scores"][0]
    test_run = json.loads((output / "test-run-ours.json").read_text())
    assert all(len(hits) == 10 for hits in test_run.values())
    # the groups and the trained model are read back, not made again: the same figures
    trained = (output / "ours" / "model.safetensors").stat().st_mtime_ns
    again = module.main([*arguments, "--reuse-groups", "--reuse-models"])
    assert again == results
    assert (output / "ours" / "model.safetensors").stat().st_mtime_ns == trained
    # the same model reading several windows of a long document: its own run and results files, beside
    windowed = module.main([*arguments, "--reuse-groups", "--reuse-models", "--max-windows", "4"])
    assert set(windowed) == {
        "dense (first stage)",
        "cross-encoder (ours, 4 windows)",
        "cross-encoder (ours, 4 windows) + dense, weight 0.5",
    }
    assert (output / "test-run-ours-4-windows.json").is_file() and (output / "test-run-ours.json").is_file()
    assert (output / "results-ours-4-windows.json").is_file() and (output / "results-ours.json").is_file()


def test_negatives_spread_over_the_teachers_order() -> None:
    import random

    choose = _example("distill_cross_encoder").choose_negatives
    ranked = [f"d{index}" for index in range(30)]
    spread = choose(ranked, 3, "spread", random.Random(0))
    # one from each third of the order: hardest, middle, easiest
    assert [int(name[1:]) // 10 for name in spread] == [0, 1, 2]
    assert choose(ranked, 3, "hardest", random.Random(0)) == ["d0", "d1", "d2"]
    assert choose(ranked[:3], 3, "spread", random.Random(0)) == ["d0", "d1", "d2"]


def test_compare_runs_bootstraps_the_per_query_difference(tmp_path: Path) -> None:
    from retrievals_rag.evaluation.beir import load_beir

    module = _example("compare_runs")
    qrels = load_beir(SCIFACT_SUBSET, "test").qrels
    documents = sorted({document for judged in qrels.values() for document in judged})
    # "good" puts each query's judged documents first; "bad" ranks the same candidates the other way round
    good = {
        query: {doc: (2.0 if doc in qrels[query] else 1.0 / (1 + i)) for i, doc in enumerate(documents[:20])}
        for query in qrels
    }
    for query in qrels:
        good[query].update({doc: 2.0 for doc in qrels[query]})
    bad = {query: {doc: -score for doc, score in hits.items()} for query, hits in good.items()}
    paths = {}
    for name, run in (("good", good), ("bad", bad)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(run), encoding="utf-8")

    same = module.main(
        [str(paths["good"]), str(paths["good"]), "--data", str(SCIFACT_SUBSET), "--samples", "200"]
    )
    found = module.main(
        [str(paths["good"]), str(paths["bad"]), "--data", str(SCIFACT_SUBSET), "--samples", "200",
         "--first-stage", str(paths["good"]), "--weight", "0.5"]
    )  # fmt: skip

    alone = same["alone"]
    assert alone["difference"] == alone["low"] == alone["high"] == 0.0 and alone["tied"] == len(qrels)
    assert (
        found["alone"]["first"] == 1.0 and found["alone"]["low"] > 0 and found["alone"]["p_first_worse"] == 0
    )
    assert found["alone"]["better"] + found["alone"]["worse"] + found["alone"]["tied"] == len(qrels)
    assert set(found) == {"alone", "mixed with the first stage, weight 0.5"}
    # a glob pattern averages each query's nDCG@10 over its runs: good and bad averaged lie halfway
    averaged = module.main(
        [str(tmp_path / "*.json"), str(paths["bad"]), "--data", str(SCIFACT_SUBSET), "--samples", "200"]
    )["alone"]
    assert averaged["first"] == pytest.approx((found["alone"]["first"] + found["alone"]["second"]) / 2)
    assert averaged["second"] == pytest.approx(found["alone"]["second"])
    with pytest.raises(SystemExit, match="no run file matches"):
        module.main([str(tmp_path / "nothing*.json"), str(paths["bad"]), "--data", str(SCIFACT_SUBSET)])


def test_distill_cross_encoder_example_resumes_both_trainers_from_their_checkpoints(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stopped two-hour run continues where it stopped: --save-steps keeps each trainer's latest checkpoint,
    --resume continues from it (here from the last one, so the models and figures are the first run's)."""
    teacher = tmp_path / "teacher"
    torch.manual_seed(0)
    AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(teacher)
    output = tmp_path / "out"
    arguments = [
        "--data", str(_beir_with_train_split(tmp_path)), "--teacher", str(teacher), "--output", str(output),
        "--base-model", str(tiny_bert_path), "--embedder", str(tiny_bert_path), "--limit-queries", "6",
        "--candidates", "12", "--group-size", "4", "--groups-per-query", "1", "--batch-size", "2",
        "--max-length", "64", "--top-k", "10", "--epochs", "1", "--save-steps", "1",
        "--trainers", "ours", "sentence-transformers",
    ]  # fmt: skip
    module = _example("distill_cross_encoder")
    module.main(arguments)
    runs = {}
    for trainer in ("ours", "sentence-transformers"):
        checkpoints = sorted(path.name for path in (output / trainer).glob("checkpoint-*"))
        assert len(checkpoints) == 1, checkpoints  # the latest only
        runs[trainer] = json.loads((output / f"test-run-{trainer}.json").read_text())
    capsys.readouterr()

    # resumed at its last step, nothing is left to train: another learning rate would change a model trained anew
    module.main([*arguments, "--reuse-groups", "--resume", "--learning-rate", "0.5"])

    printed = capsys.readouterr().out
    assert "ours: resuming from" in printed and "sentence-transformers: resuming from" in printed
    for trainer, run in runs.items():
        again = json.loads((output / f"test-run-{trainer}.json").read_text())
        assert again.keys() == run.keys()
        for query, hits in run.items():
            assert again[query] == pytest.approx(hits, abs=1e-5), trainer
