"""Rerankers evaluated while they train (a first stage's top-k of a BEIR folder, reranked), and
``load_best_model_at_end`` for every kind of model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from retrievals_rag import AutoModelForEmbedding, AutoModelForRanking, ColBERT, LLMRanker
from retrievals_rag.data.datasets import RetrievalTrainDataset
from retrievals_rag.evaluation.beir import load_beir
from retrievals_rag.evaluation.evaluator import RetrievalEvaluator
from retrievals_rag.evaluation.reranking import RerankingEvaluator
from retrievals_rag.losses.infonce import InfoNCELoss
from retrievals_rag.training.arguments import RerankerTrainingArguments
from retrievals_rag.training.rerank_trainer import RerankTrainer
from retrievals_rag.training.trainer import RetrievalTrainer

from ..conftest import SCIFACT_SUBSET
from .conftest import make_records

PAIRS = [("cell gene", "the cell study of gene"), ("brain risk", "cancer human")]
TOP_K = 5
QUERIES = 16  # of the SciFact subset's 50, to keep evaluation short


@pytest.fixture(scope="module")
def first_stage_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A first stage over the SciFact subset: each judged query's relevant documents at rank 3, then others."""
    dataset = load_beir(SCIFACT_SUBSET, "test")
    others = list(dataset.corpus)
    run = {}
    for query_id, judged in dataset.qrels.items():
        ranked = [d for d in others[:50] if d not in judged][:2] + list(judged) + others[50:58]
        run[query_id] = {document_id: float(100 - rank) for rank, document_id in enumerate(ranked)}
    path = tmp_path_factory.mktemp("first-stage") / "dense.json"
    path.write_text(json.dumps(run))
    return path


def _reranking_evaluator(first_stage_run: Path) -> RerankingEvaluator:
    dataset = load_beir(SCIFACT_SUBSET, "test")
    queries = dict(list(dataset.queries.items())[:QUERIES])
    run = json.loads(first_stage_run.read_text())
    return RerankingEvaluator(dataset.corpus, queries, dataset.qrels, run, top_k=TOP_K)


def _retrieval_evaluator() -> RetrievalEvaluator:
    dataset = load_beir(SCIFACT_SUBSET, "test")
    queries = dict(list(dataset.queries.items())[:QUERIES])
    judged = {document for query in queries for document in dataset.qrels.get(query, {})}
    corpus = {
        key: doc for index, (key, doc) in enumerate(dataset.corpus.items()) if key in judged or index < 60
    }
    return RetrievalEvaluator(corpus, queries, {query: dataset.qrels[query] for query in queries})


def _args(output_dir: Path, **overrides: object) -> RerankerTrainingArguments:
    options: dict[str, object] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "learning_rate": 5e-3,
        "max_steps": 3,
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
        "eval_strategy": "steps",
        "eval_steps": 1,
        "save_strategy": "steps",
        "save_steps": 1,
        "load_best_model_at_end": True,
    }
    options.update(overrides)
    return RerankerTrainingArguments(**options)  # type: ignore[arg-type]


def _quietly(load, *args, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a bare encoder's fresh head / projection
        return load(*args, **kwargs)


def _model(kind: str, tiny_bert_path: Path, tiny_llama_path: Path):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    if kind == "embedding":
        return AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")
    if kind == "cross_encoder":
        return _quietly(
            AutoModelForRanking.from_pretrained, tiny_bert_path, device="cpu", max_length=64, max_windows=1
        )
    if kind == "colbert":
        return _quietly(ColBERT.from_pretrained, tiny_bert_path, device="cpu", colbert_dim=8, max_length=64)
    pytest.importorskip("peft")
    from retrievals_rag.models.lora import LoraSettings

    model = LLMRanker.from_pretrained(
        tiny_llama_path, device="cpu", max_length=64, max_windows=1, target_token="answer"
    )
    model.enable_lora(LoraSettings(r=2, alpha=4, dropout=0.0))
    return model


def _outputs(model) -> np.ndarray:  # type: ignore[no-untyped-def]
    if isinstance(model, AutoModelForEmbedding):
        return model.encode_queries([query for query, _ in PAIRS])
    return np.asarray(model.compute_score(PAIRS))


def test_the_reranking_evaluator_reports_during_training(
    tiny_bert_path: Path, first_stage_run: Path, tmp_path: Path
) -> None:
    evaluator = _reranking_evaluator(first_stage_run)
    model = _model("cross_encoder", tiny_bert_path, tiny_bert_path)
    dataset = RetrievalTrainDataset(make_records(12), train_group_size=2)
    args = _args(tmp_path, save_strategy="no", load_best_model_at_end=False)
    trainer = RerankTrainer(model, args, dataset, "listwise", evaluator=evaluator)
    trainer.train()
    reported = [entry for entry in trainer.state.log_history if "eval_nDCG@10" in entry]
    assert [entry["step"] for entry in reported] == [1, 2, 3]
    assert all(0.0 <= entry["eval_nDCG@10"] <= 1.0 and "eval_MRR@10" in entry for entry in reported)
    # a reranker only reorders: recall at the depth of the first stage is the first stage's
    assert reported[-1]["eval_Recall@5"] == pytest.approx(evaluator.first_stage_metrics()["Recall@5"])


@pytest.mark.parametrize("kind", ["embedding", "cross_encoder", "llm_ranker", "colbert"])
def test_load_best_model_at_end_keeps_the_best_checkpoint_for_every_kind(
    kind: str, tiny_bert_path: Path, tiny_llama_path: Path, first_stage_run: Path, tmp_path: Path
) -> None:
    model = _model(kind, tiny_bert_path, tiny_llama_path)
    args = _args(tmp_path / "run")
    assert args.metric_for_best_model == "nDCG@10" and args.greater_is_better
    if kind == "embedding":
        dataset = RetrievalTrainDataset(make_records(12), train_group_size=2)
        evaluator = _retrieval_evaluator()
        trainer = RetrievalTrainer(model, args, dataset, InfoNCELoss(), evaluator=evaluator)
    else:
        dataset = RetrievalTrainDataset(make_records(12), train_group_size=2)
        evaluator = _reranking_evaluator(first_stage_run)
        trainer = RerankTrainer(model, args, dataset, evaluator=evaluator)
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None
    scores = {
        entry["step"]: entry["eval_nDCG@10"] for entry in trainer.state.log_history if "eval_nDCG@10" in entry
    }
    assert scores[int(Path(best).name.split("-")[1])] == max(scores.values())
    loader = {
        "embedding": AutoModelForEmbedding,
        "cross_encoder": AutoModelForRanking,
        "llm_ranker": AutoModelForRanking,
        "colbert": ColBERT,
    }[kind]
    reloaded = loader.from_pretrained(best, device="cpu")
    np.testing.assert_allclose(_outputs(model), _outputs(reloaded), atol=1e-5)
