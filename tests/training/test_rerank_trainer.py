"""Reranker training on tiny models: cross-encoder, LLM reranker (LoRA) and ColBERT."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrievals_rag import AutoModelForRanking, ColBERT, LLMRanker
from retrievals_rag.data.datasets import RetrievalTrainDataset
from retrievals_rag.data.rerank_collators import ColBERTCollator, PairRankerCollator
from retrievals_rag.losses.distillation import kl_distillation_loss, margin_mse_loss
from retrievals_rag.losses.pointwise import pointwise_bce
from retrievals_rag.models.colbert import TokenEmbeddings
from retrievals_rag.training.arguments import (
    RerankerModelArguments,
    RerankerTrainingArguments,
    resolve_reranker_loss,
)
from retrievals_rag.training.rerank_trainer import RerankTrainer

from .conftest import make_records
from .test_trainer import _StopAt

PAIRS = [("cell gene", "the cell study of gene"), ("brain risk", "cancer human"), ("protein", "the protein")]


def _args(output_dir: Path, **overrides: object) -> RerankerTrainingArguments:
    options: dict[str, object] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "num_train_epochs": 3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
        "dataloader_drop_last": True,
    }
    options.update(overrides)
    return RerankerTrainingArguments(**options)  # type: ignore[arg-type]


def _losses(trainer: RerankTrainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _batch_loss(trainer: RerankTrainer, count: int = 8) -> float:
    """The loss on the dataset's first ``count`` examples, without dropout (comparable before / after)."""
    dataset = trainer.train_dataset
    batch = trainer.data_collator([dataset[i] for i in range(count)])
    was_training = trainer.model.training
    trainer.model.eval()
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, batch))
    trainer.model.train(was_training)
    return loss


def _quietly(load, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Load a bare encoder as a ranker; its fresh head / projection warns, as it should."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load(*args, **kwargs)


def _cross_encoder(path: Path, **options: object) -> AutoModelForRanking:
    return _quietly(AutoModelForRanking.from_pretrained, path, device="cpu", **options)


def _colbert(path: Path, **options: object) -> ColBERT:
    torch.manual_seed(0)  # the fresh projection's initialisation
    return _quietly(ColBERT.from_pretrained, path, device="cpu", colbert_dim=16, **options)


def _teacher_records(count: int = 16) -> list[dict]:
    return [
        {**record, "positive_scores": [6.0], "negative_scores": [2.0, 0.5, -1.0]}
        for record in make_records(count)
    ]


# ----------------------------------------------------------------------------------------------- collators
def test_pair_collator_feeds_exactly_the_inference_layout(
    tiny_bert_path: Path, tiny_llama_path: Path
) -> None:
    features = [{"query": q, "documents": [d, "the brain"]} for q, d in PAIRS]
    pairs = [(f["query"], d) for f in features for d in f["documents"]]
    for model in (
        _cross_encoder(tiny_bert_path, query_instruction="query: "),
        LLMRanker.from_pretrained(tiny_llama_path, device="cpu", target_token="relevant"),
    ):
        batch = PairRankerCollator(model)(features)
        assert batch["group_size"] == 2
        mask = batch["pairs"]["attention_mask"].bool()
        rows = [ids[m].tolist() for ids, m in zip(batch["pairs"]["input_ids"], mask, strict=True)]
        expected = model.tokenize_pairs(pairs)
        assert rows == [ids for ids, _ in expected]
        if isinstance(model, AutoModelForRanking):
            types = batch["pairs"]["token_type_ids"]
            assert [t[m].tolist() for t, m in zip(types, mask, strict=True)] == [t for _, t in expected]
        else:
            assert "token_type_ids" not in batch["pairs"]
        with torch.inference_mode():
            trained_view = model(**batch["pairs"]).numpy()
        np.testing.assert_allclose(trained_view, model.compute_score(pairs), atol=1e-5)


def test_pair_collator_carries_labels_and_teacher_scores(tiny_bert_path: Path) -> None:
    collator = PairRankerCollator(_cross_encoder(tiny_bert_path))
    scored = collator([{"query": q, "document": d, "label": float(i == 0)} for i, (q, d) in enumerate(PAIRS)])
    assert scored["labels"].tolist() == [1.0, 0.0, 0.0] and "group_size" not in scored
    dataset = RetrievalTrainDataset(_teacher_records(4), train_group_size=3)
    grouped = collator([dataset[i] for i in range(4)])
    assert grouped["teacher_scores"].shape == (4, 3)
    assert grouped["teacher_scores"][:, 0].tolist() == [6.0] * 4
    with pytest.raises(ValueError, match="same number of documents"):
        collator([{"query": "a", "documents": ["x", "y"]}, {"query": "b", "documents": ["x"]}])


def test_colbert_collator_uses_the_models_query_and_document_rows(tiny_bert_path: Path) -> None:
    model = _colbert(tiny_bert_path, query_max_length=12)
    features = [{"query": q, "documents": [d, "the brain"]} for q, d in PAIRS]
    batch = ColBERTCollator(model)(features)
    assert batch["query"]["input_ids"].tolist() == model.tokenize_queries([q for q, _ in PAIRS])
    documents = [d for f in features for d in f["documents"]]
    mask = batch["documents"]["attention_mask"].bool()
    rows = [ids[m].tolist() for ids, m in zip(batch["documents"]["input_ids"], mask, strict=True)]
    assert rows == model.tokenize_documents(documents)
    with pytest.raises(ValueError, match="scored pairs"):
        ColBERTCollator(model)([{"query": "a", "document": "b", "label": 1.0}])


# ----------------------------------------------------------------------------------------------- cross-encoder
def test_cross_encoder_listwise_trains_and_its_folder_loads_here_and_in_sentence_transformers(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = _cross_encoder(tiny_bert_path, max_length=48)
    dataset = RetrievalTrainDataset(make_records(), train_group_size=4)
    trainer = RerankTrainer(model, _args(tmp_path / "run", learning_rate=1e-2), dataset)
    assert trainer.loss_name == "listwise"
    trainer.train()
    losses = _losses(trainer)
    assert len(losses) == 15
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    trainer.save_model(str(tmp_path / "final"))

    reloaded = AutoModelForRanking.from_pretrained(tmp_path / "final", device="cpu")
    assert isinstance(reloaded, AutoModelForRanking)
    assert reloaded.settings == model.settings and reloaded.max_length == 48
    ours = reloaded.compute_score(PAIRS)
    np.testing.assert_allclose(ours, model.compute_score(PAIRS), atol=1e-5)
    reference = sentence_transformers.CrossEncoder(str(tmp_path / "final"), device="cpu")
    np.testing.assert_allclose(reference.predict(PAIRS), ours, atol=1e-5)


def test_cross_encoder_bce_on_scored_pairs_and_on_groups(tiny_bert_path: Path, tmp_path: Path) -> None:
    records = [
        {"query": r["query"], "document": document, "label": label}
        for r in make_records(32)
        for document, label in ((r["positive"][0], 1.0), (r["negative"][0], 0.0))
    ]
    model = _cross_encoder(tiny_bert_path)
    args = _args(tmp_path, per_device_train_batch_size=16, learning_rate=2e-2)
    trainer = RerankTrainer(model, args, RetrievalTrainDataset(records))
    assert trainer.loss_name == "bce"
    trainer.train()
    losses = _losses(trainer)
    assert np.mean(losses[-3:]) < 0.75 * np.mean(losses[:3])

    groups = RetrievalTrainDataset(make_records(4), train_group_size=3)
    trainer = RerankTrainer(model, _args(tmp_path), groups, "bce")
    batch = trainer.data_collator([groups[i] for i in range(4)])
    model.eval()  # no dropout: the two forward passes must agree
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        scores = model(**batch["pairs"])
    expected = pointwise_bce(scores, torch.tensor([1.0, 0.0, 0.0] * 4))
    torch.testing.assert_close(loss, expected)


# ----------------------------------------------------------------------------------------------- LLM + LoRA
def test_llm_reranker_with_lora_trains_saves_the_adapter_and_reloads_merged_and_unmerged(
    tiny_llama_path: Path, tmp_path: Path
) -> None:
    pytest.importorskip("peft")
    from retrievals_rag.models.lora import LoraSettings

    model = LLMRanker.from_pretrained(
        tiny_llama_path, device="cpu", max_length=96, prompt="relevant answer", target_token="answer"
    )
    before = model.compute_score(PAIRS)
    torch.manual_seed(0)  # the adapter's initialisation
    model.enable_lora(LoraSettings(r=4, alpha=8, dropout=0.0))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    dataset = RetrievalTrainDataset(make_records(), train_group_size=3)
    trainer = RerankTrainer(model, _args(tmp_path / "run", num_train_epochs=2, learning_rate=1e-2), dataset)
    before_loss = _batch_loss(trainer)
    trainer.train()
    assert _batch_loss(trainer) < 0.7 * before_loss
    trained = model.compute_score(PAIRS)
    assert np.abs(np.subtract(trained, before)).max() > 1e-4  # the adapter changed the scores

    trainer.save_model(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    unmerged = AutoModelForRanking.from_pretrained(tmp_path / "adapter", device="cpu")
    merged = LLMRanker.from_pretrained(tmp_path / "adapter", device="cpu", merge_lora=True)
    assert isinstance(unmerged, LLMRanker) and unmerged.has_lora and not merged.has_lora
    assert unmerged.settings == merged.settings == model.settings
    np.testing.assert_allclose(unmerged.compute_score(PAIRS), trained, atol=1e-5)
    np.testing.assert_allclose(merged.compute_score(PAIRS), trained, atol=1e-5)

    model.save_pretrained(tmp_path / "merged", merge_lora=True)
    assert model.has_lora  # saving merged leaves the training model's adapter in place
    full = LLMRanker.from_pretrained(tmp_path / "merged", device="cpu")
    np.testing.assert_allclose(full.compute_score(PAIRS), trained, atol=1e-5)


# ----------------------------------------------------------------------------------------------- ColBERT
def _naive_maxsim(
    query: torch.Tensor, query_mask: torch.Tensor, document: torch.Tensor, document_mask
) -> torch.Tensor:  # type: ignore[no-untyped-def]
    total = torch.zeros(())
    for i in range(query.shape[0]):
        if query_mask[i]:
            total = total + max(query[i] @ document[j] for j in range(document.shape[0]) if document_mask[j])
    return total


def test_colbert_inbatch_loss_equals_the_formula_on_the_batch(tiny_bert_path: Path, tmp_path: Path) -> None:
    model = _colbert(tiny_bert_path, query_max_length=10)
    dataset = RetrievalTrainDataset(make_records(3), train_group_size=2)
    trainer = RerankTrainer(model, _args(tmp_path), dataset, temperature=0.5)
    assert trainer.loss_name == "infonce"
    batch = trainer.data_collator([dataset[i] for i in range(3)])
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        queries = model(**batch["query"], kind="query")
        documents = model(**batch["documents"], kind="document")
    scores = torch.stack(
        [
            torch.stack(
                [
                    _naive_maxsim(
                        queries.embeddings[q], queries.mask[q], documents.embeddings[d], documents.mask[d]
                    )
                    for d in range(6)
                ]
            )
            for q in range(3)
        ]
    )  # (3 queries, 3 * 2 documents)
    log_probs = F.log_softmax(scores / 0.5, dim=1)
    expected = -torch.stack([log_probs[i, i * 2] for i in range(3)]).mean()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)

    own_group = RerankTrainer(model, _args(tmp_path), dataset, use_inbatch_negatives=False)
    with torch.no_grad():
        loss = own_group.compute_loss(model, batch)
    own_scores = torch.stack([scores[i, 2 * i : 2 * i + 2] for i in range(3)])
    torch.testing.assert_close(
        loss, F.cross_entropy(own_scores, torch.zeros(3, dtype=torch.long)), atol=1e-5, rtol=1e-5
    )


def test_colbert_trains_and_its_folder_reloads_with_the_same_scores(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    model = _colbert(tiny_bert_path, query_max_length=12, max_length=32)
    dataset = RetrievalTrainDataset(make_records(), train_group_size=2)
    trainer = RerankTrainer(model, _args(tmp_path / "run"), dataset, temperature=0.2)
    before = _batch_loss(trainer)
    trainer.train()
    assert _batch_loss(trainer) < 0.5 * before
    assert not model.model.pooler.dense.weight.requires_grad  # unused by ColBERT: frozen
    trainer.save_model(str(tmp_path / "final"))
    reloaded = ColBERT.from_pretrained(tmp_path / "final", device="cpu")
    assert reloaded.settings == model.settings
    np.testing.assert_allclose(reloaded.compute_score(PAIRS), model.compute_score(PAIRS), atol=1e-5)


@pytest.mark.parametrize("loss", ["kl", "margin_mse"])
def test_colbert_distils_teacher_scores_over_each_group(
    loss: str, tiny_bert_path: Path, tmp_path: Path
) -> None:
    model = _colbert(tiny_bert_path, query_max_length=10)
    dataset = RetrievalTrainDataset(_teacher_records(), train_group_size=3)
    trainer = RerankTrainer(model, _args(tmp_path, num_train_epochs=1), dataset, loss)
    batch = trainer.data_collator([dataset[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        value = trainer.compute_loss(model, batch)
        queries = model(**batch["query"], kind="query")
        documents = model(**batch["documents"], kind="document")
        student = torch.stack(
            [
                model.score(
                    TokenEmbeddings(queries.embeddings[i : i + 1], queries.mask[i : i + 1]),
                    TokenEmbeddings(
                        documents.embeddings[3 * i : 3 * i + 3], documents.mask[3 * i : 3 * i + 3]
                    ),
                )[0]
                for i in range(4)
            ]
        )  # (4, 3): each query against its own group only
    expected = (
        kl_distillation_loss(student, batch["teacher_scores"])
        if loss == "kl"
        else margin_mse_loss(student, batch["teacher_scores"])
    )
    torch.testing.assert_close(value, expected, atol=1e-5, rtol=1e-5)
    trainer.train()
    assert all(np.isfinite(_losses(trainer)))


def test_resumed_colbert_training_ends_with_the_same_weights(tiny_bert_path: Path, tmp_path: Path) -> None:
    def run(output: Path, stop_at: int | None = None, resume: str | None = None) -> ColBERT:
        model = _colbert(tiny_bert_path, query_max_length=10, max_length=32)  # the same start in every run
        dataset = RetrievalTrainDataset(make_records(), train_group_size=2, seed=3)
        args = _args(output, max_steps=8, save_strategy="steps", save_steps=3, num_train_epochs=-1)
        trainer = RerankTrainer(model, args, dataset, callbacks=[_StopAt(stop_at)] if stop_at else None)
        trainer.train(resume_from_checkpoint=resume)
        return model

    uninterrupted = run(tmp_path / "full")
    interrupted = tmp_path / "interrupted"
    stopped = run(interrupted, stop_at=3)
    assert (interrupted / "checkpoint-3" / "colbert_linear.safetensors").is_file()
    resumed = run(interrupted, resume=str(interrupted / "checkpoint-3"))
    expected = uninterrupted.state_dict()
    assert not torch.equal(stopped.colbert_linear.weight, expected["colbert_linear.weight"])
    for name, actual in resumed.state_dict().items():
        torch.testing.assert_close(actual, expected[name], atol=1e-6, rtol=1e-5, msg=name)


# ----------------------------------------------------------------------------------------------- errors
def test_a_loss_that_does_not_fit_the_kind_or_the_data_is_refused(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"'infonce' does not fit a cross-encoder.*listwise, bce"):
        resolve_reranker_loss("cross-encoder", "infonce")
    with pytest.raises(ValueError, match="'bce' does not fit a colbert"):
        resolve_reranker_loss("colbert", "bce")
    with pytest.raises(ValueError, match=r"scored pairs .* train with loss bce"):
        resolve_reranker_loss("llm", "listwise", scored_pairs=True)
    with pytest.raises(ValueError, match="colbert reranker does not train on scored pairs"):
        resolve_reranker_loss("colbert", None, scored_pairs=True)
    model = _cross_encoder(tiny_bert_path)
    groups = RetrievalTrainDataset(make_records(8), train_group_size=3)
    with pytest.raises(ValueError, match="teacher"):
        RerankTrainer(model, _args(tmp_path), groups, "kl")
    with pytest.raises(ValueError, match="train_group_size >= 2"):
        RerankTrainer(model, _args(tmp_path), RetrievalTrainDataset(make_records(8)), "listwise")
    with pytest.raises(TypeError, match="AutoModelForRanking, LLMRanker or ColBERT"):
        RerankTrainer(torch.nn.Linear(2, 2), _args(tmp_path), groups)  # type: ignore[arg-type]
    assert RerankerModelArguments(kind="cross-encoder", use_lora=True).use_lora  # LoRA fits every kind
    with pytest.raises(ValueError, match="colbert_dim applies to --kind colbert"):
        RerankerModelArguments(kind="llm", model_name_or_path="x", colbert_dim=64)


# ----------------------------------------------------------------------------------------------- CLI
def _cli(kind: str, model: Path, data: Path, output: Path, *extra: str) -> int:
    from retrievals_rag.cli.main import main

    return main(
        [
            "train", "reranker",
            "--kind", kind,
            "--model_name_or_path", str(model),
            "--train_data", str(data),
            "--train_group_size", "2",
            "--output_dir", str(output),
            "--per_device_train_batch_size", "4",
            "--max_steps", "2",
            "--logging_steps", "1",
            "--use_cpu", "true",
            "--report_to", "none",
            "--save_strategy", "no",
            *extra,
        ]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "extra", "loss"),
    [
        ("cross-encoder", ["--query_instruction", "query: "], "listwise"),
        ("colbert", ["--colbert_dim", "8", "--loss", "margin_mse"], "margin_mse"),
        (
            "llm",
            [
                "--use_lora",
                "true",
                "--lora_r",
                "2",
                "--target_token",
                "answer",
                "--activation_checkpointing",
                "true",
            ],
            "listwise",
        ),
    ],
)
def test_cli_trains_each_kind_and_writes_a_summary(
    kind: str, extra: list[str], loss: str, tiny_bert_path: Path, tiny_llama_path: Path, tmp_path: Path
) -> None:
    if kind == "llm":
        pytest.importorskip("peft")
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(record) for record in _teacher_records(8)) + "\n")
    output = tmp_path / "out"
    model = tiny_llama_path if kind == "llm" else tiny_bert_path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fresh head / projection of a bare encoder
        assert _cli(kind, model, data, output, *extra) == 0
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["steps"] == 2 and summary["loss"] == loss
    assert summary["kind"] == {"cross-encoder": "cross_encoder", "llm": "llm_ranker"}.get(kind, kind)
    assert len(summary["loss_history"]) == 2
    if kind == "colbert":
        assert ColBERT.from_pretrained(output).colbert_dim == 8
    else:
        loaded = AutoModelForRanking.from_pretrained(output, device="cpu")
        assert isinstance(loaded, LLMRanker if kind == "llm" else AutoModelForRanking)
        if kind == "llm":
            assert loaded.has_lora
        else:
            assert loaded.query_instruction == "query: "


def test_cli_reports_a_loss_that_does_not_fit_the_kind(
    tiny_bert_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(record) for record in make_records(8)) + "\n")
    assert _cli("colbert", tiny_bert_path, data, tmp_path / "out", "--loss", "listwise") == 2
    assert "loss 'listwise' does not fit a colbert reranker" in capsys.readouterr().err
    assert not (tmp_path / "out" / "training_summary.json").exists()
