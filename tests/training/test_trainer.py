from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from retrievals_rag import AutoModelForEmbedding
from retrievals_rag.data.collators import EmbeddingCollator
from retrievals_rag.data.datasets import RetrievalTrainDataset
from retrievals_rag.losses.infonce import InfoNCELoss
from retrievals_rag.training.arguments import RetrievalTrainingArguments
from retrievals_rag.training.trainer import RetrievalTrainer

from .conftest import make_records

QUERIES = ["cell gene", "brain risk", "the protein"]


def _args(output_dir: Path, **overrides: object) -> RetrievalTrainingArguments:
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
    return RetrievalTrainingArguments(**options)  # type: ignore[arg-type]


def _losses(trainer: RetrievalTrainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_bf16_stays_off_without_a_gpu(tmp_path: Path) -> None:
    assert _args(tmp_path).bf16 is False


def test_bf16_asked_for_without_an_accelerator_trains_on_the_cpu(tmp_path: Path) -> None:
    """Before, transformers refused: "Your setup doesn't support bf16/gpu. You need to assign use_cpu"."""
    if torch.cuda.is_available():
        pytest.skip("a GPU takes bf16 itself")
    args = RetrievalTrainingArguments(output_dir=str(tmp_path), bf16=True, report_to="none")
    assert args.bf16 is True and args.use_cpu is True


def test_bf16_asked_for_on_a_cpu_trains_under_autocast_and_keeps_float32_weights(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    """``--bf16 true`` on a CPU: matrix products in bfloat16 (faster on a CPU with bf16 instructions:
    examples/benchmarks/bench_train.py), the weights and the optimizer in float32, the saved folder float32."""
    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")
    dataset = RetrievalTrainDataset(make_records(), train_group_size=3)
    seen: list[torch.dtype] = []
    hook = model.model.encoder.layer[0].attention.self.query.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype)
    )
    trainer = RetrievalTrainer(
        model, _args(tmp_path / "run", bf16=True), dataset, InfoNCELoss(), document_max_length=32
    )
    trainer.train()
    hook.remove()

    losses = _losses(trainer)
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    assert seen and set(seen) == {torch.bfloat16}
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
    trainer.save_model(str(tmp_path / "final"))
    reloaded = AutoModelForEmbedding.from_pretrained(tmp_path / "final")
    assert {parameter.dtype for parameter in reloaded.parameters()} == {torch.float32}


def test_training_lowers_the_loss_and_the_folder_loads_in_both_libraries(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, query_instruction="query: ", device="cpu")
    dataset = RetrievalTrainDataset(
        make_records(), train_group_size=3, query_instruction=model.query_instruction
    )
    trainer = RetrievalTrainer(model, _args(tmp_path / "run"), dataset, InfoNCELoss(), document_max_length=32)
    trainer.train()
    losses = _losses(trainer)
    assert len(losses) == 15
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    trainer.save_model(str(tmp_path / "final"))

    reloaded = AutoModelForEmbedding.from_pretrained(tmp_path / "final")
    assert reloaded.settings == model.settings
    ours = reloaded.encode_queries(QUERIES)
    np.testing.assert_allclose(ours, model.encode_queries(QUERIES), atol=1e-6)
    reference = sentence_transformers.SentenceTransformer(str(tmp_path / "final"), device="cpu")
    assert np.abs(reference.encode_query(QUERIES, convert_to_numpy=True) - ours).max() < 1e-5
    # the frozen BERT pooler is saved unchanged, so no loader reports missing weights
    assert not model.model.pooler.dense.weight.requires_grad


class _StopAt(TrainerCallback):
    """Simulates an interruption: training stops after ``step`` (its checkpoint already written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == self.step:
            control.should_training_stop = True
        return control


def test_resumed_training_ends_with_the_same_weights(tiny_bert_path: Path, tmp_path: Path) -> None:
    def run(output: Path, stop_at: int | None = None, resume: str | None = None) -> AutoModelForEmbedding:
        model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")
        dataset = RetrievalTrainDataset(make_records(), train_group_size=2, seed=3)
        args = _args(output, max_steps=8, save_strategy="steps", save_steps=3, num_train_epochs=-1)
        callbacks = [_StopAt(stop_at)] if stop_at else None
        trainer = RetrievalTrainer(
            model, args, dataset, InfoNCELoss(), document_max_length=32, callbacks=callbacks
        )
        trainer.train(resume_from_checkpoint=resume)
        return model

    uninterrupted = run(tmp_path / "full")
    # 5 steps per epoch: the interruption at step 3 is mid-epoch, the resumed run crosses an epoch boundary
    interrupted = tmp_path / "interrupted"
    stopped = run(interrupted, stop_at=3)
    assert (interrupted / "checkpoint-3" / "model.safetensors").is_file()
    resumed = run(interrupted, resume=str(interrupted / "checkpoint-3"))
    expected_weights = uninterrupted.model.state_dict()
    assert not torch.equal(
        stopped.model.embeddings.word_embeddings.weight, expected_weights["embeddings.word_embeddings.weight"]
    )
    for name, actual in resumed.model.state_dict().items():
        torch.testing.assert_close(actual, expected_weights[name], atol=1e-6, rtol=1e-5, msg=name)


def test_instruction_and_tokens_are_identical_in_training_and_encoding(tiny_llama_path: Path) -> None:
    instruction = (
        "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
    )
    model = AutoModelForEmbedding.from_pretrained(
        tiny_llama_path, query_instruction=instruction, device="cpu"
    )
    dataset = RetrievalTrainDataset(
        [{"query": q, "positive": ["p"]} for q in QUERIES], query_instruction=model.query_instruction
    )
    collator = EmbeddingCollator(
        model.tokenizer, query_max_length=model.max_length, append_eos=model.settings.append_eos
    )
    batch = collator([dataset[i] for i in range(len(QUERIES))])
    from retrievals_rag.data.tokenization import apply_instruction

    expected_ids = model.tokenize_ids([apply_instruction(instruction, q) for q in QUERIES])
    mask = batch["query"]["attention_mask"].bool()
    assert [row[m].tolist() for row, m in zip(batch["query"]["input_ids"], mask, strict=True)] == expected_ids
    assert all(ids[-1] == model.tokenizer.eos_token_id for ids in expected_ids)
    with torch.inference_mode():
        trained_view = model(**batch["query"]).numpy()
    np.testing.assert_allclose(trained_view, model.encode_queries(QUERIES), atol=1e-5)


def test_lora_trains_saves_and_reloads_merged_and_unmerged(tiny_llama_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from retrievals_rag.models.lora import LoraSettings

    model = AutoModelForEmbedding.from_pretrained(tiny_llama_path, query_instruction="query: ", device="cpu")
    before = model.encode_queries(QUERIES)
    model.enable_lora(LoraSettings(r=4, alpha=8, dropout=0.0))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    dataset = RetrievalTrainDataset(make_records(), train_group_size=2, query_instruction="query: ")
    trainer = RetrievalTrainer(model, _args(tmp_path / "run", num_train_epochs=2), dataset, InfoNCELoss())
    trainer.train()
    trained = model.encode_queries(QUERIES)
    assert np.abs(trained - before).max() > 1e-4  # the adapter changed the model

    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    unmerged = AutoModelForEmbedding.from_pretrained(tmp_path / "adapter")
    merged = AutoModelForEmbedding.from_pretrained(tmp_path / "adapter", merge_lora=True)
    assert unmerged.has_lora and not merged.has_lora
    assert unmerged.settings == merged.settings == model.settings
    np.testing.assert_allclose(unmerged.encode_queries(QUERIES), trained, atol=1e-5)
    np.testing.assert_allclose(merged.encode_queries(QUERIES), trained, atol=1e-5)

    model.save_pretrained(tmp_path / "merged", merge_lora=True)
    assert model.has_lora  # saving merged leaves the training model's adapter in place
    full = AutoModelForEmbedding.from_pretrained(tmp_path / "merged")
    np.testing.assert_allclose(full.encode_queries(QUERIES), trained, atol=1e-5)


def test_distillation_records_reach_the_loss(tiny_bert_path: Path, tmp_path: Path) -> None:
    from retrievals_rag.losses.distillation import MarginMSELoss

    records = [
        {**record, "positive_scores": [5.0], "negative_scores": [1.0, 0.5, -1.0]}
        for record in make_records(16)
    ]
    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")
    dataset = RetrievalTrainDataset(records, train_group_size=3)
    assert len(dataset[0]["teacher_scores"]) == 3
    trainer = RetrievalTrainer(model, _args(tmp_path, num_train_epochs=1), dataset, MarginMSELoss())
    trainer.train()
    assert all(np.isfinite(_losses(trainer)))


def test_cli_trains_and_writes_a_summary(tiny_bert_path: Path, tmp_path: Path) -> None:
    from retrievals_rag.cli.main import main

    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(record) for record in make_records(16)) + "\n")
    output = tmp_path / "out"
    code = main(
        [
            "train", "embedding",
            "--model_name_or_path", str(tiny_bert_path),
            "--train_data", str(data),
            "--train_group_size", "2",
            "--output_dir", str(output),
            "--per_device_train_batch_size", "4",
            "--max_steps", "3",
            "--logging_steps", "1",
            "--use_cpu", "true",
            "--report_to", "none",
            "--save_strategy", "no",
            "--query_instruction", "query: ",
            "--loss", "triplet",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["steps"] == 3
    assert len(summary["loss_history"]) >= 1
    assert AutoModelForEmbedding.from_pretrained(output).query_instruction == "query: "


def test_plain_training_arguments_work_and_the_dataset_takes_the_models_instructions(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    from transformers import TrainingArguments

    model = AutoModelForEmbedding.from_pretrained(
        tiny_bert_path, query_instruction="query: ", document_instruction="passage: ", device="cpu"
    )
    dataset = RetrievalTrainDataset(make_records(8), train_group_size=2)  # no instructions given twice
    # remove_unused_columns stays True, its default: the trainer keeps every field for the collator
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, use_cpu=True, report_to="none"
    )
    trainer = RetrievalTrainer(model, args, dataset, InfoNCELoss())
    assert dataset[0]["query"].startswith("query: ")
    assert all(document.startswith("passage: ") for document in dataset[0]["documents"])
    assert trainer.train().global_step == 2

    other = RetrievalTrainDataset(make_records(8), query_instruction="search: ")
    with pytest.raises(ValueError, match="differs from the model's"):
        RetrievalTrainer(model, args, other, InfoNCELoss())


def test_a_loss_that_runs_the_model_itself_gets_the_model_and_the_batch(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    class ModelLoss(torch.nn.Module):
        loss_inputs = ("model",)

        def __init__(self) -> None:
            super().__init__()
            self.inner = InfoNCELoss()
            self.calls = 0

        def model_loss(self, model: torch.nn.Module, inputs: dict) -> torch.Tensor:
            self.calls += 1
            return self.inner(model(**inputs["query"]), model(**inputs["documents"]))

    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")
    loss = ModelLoss()
    trainer = RetrievalTrainer(
        model, _args(tmp_path, max_steps=2), RetrievalTrainDataset(make_records(8)), loss
    )
    trainer.train()
    assert loss.calls == 2 and all(np.isfinite(_losses(trainer)))


def test_queries_are_capped_at_a_short_models_max_length_and_a_larger_value_is_refused(
    tmp_path: Path, minilm_path: Path
) -> None:
    """A model with 32 learned positions: before, queries were tokenized to the default query_max_length 64 while
    documents were capped, and the first long query failed deep inside BERT's embeddings."""
    from retrievals_rag.training.arguments import EmbeddingModelArguments, RetrievalDataArguments
    from retrievals_rag.training.run import train_embedding
    from tests.conftest import build_tiny_bert

    model_path = build_tiny_bert(
        tmp_path / "model", minilm_path, max_position_embeddings=32, model_max_length=32
    )
    records = [{**record, "query": f"{record['query']} " + "cell gene " * 30} for record in make_records(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")

    def train(**data_options: object) -> object:
        return train_embedding(
            EmbeddingModelArguments(model_name_or_path=str(model_path)),
            RetrievalDataArguments(train_data=str(data), holdout_fraction=0, **data_options),  # type: ignore[arg-type]
            _args(tmp_path / "run", max_steps=2, num_train_epochs=1),
        )

    summary = train()
    assert summary.steps == 2
    model = AutoModelForEmbedding.from_pretrained(tmp_path / "run")
    assert model.max_length == 32

    with pytest.raises(
        ValueError, match=r"query_max_length 64 is more than the model takes: its max_length is 32"
    ):
        train(query_max_length=64)
