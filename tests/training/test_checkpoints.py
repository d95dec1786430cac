"""What the Trainer hands over is what gets saved and loaded: gathered state dicts (FSDP full state dict,
DeepSpeed ZeRO-3), the Trainer's own loaders under sharding, and a distributed launch that is distributed."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainingArguments

from retrievals_rag import AutoModelForEmbedding, ColBERT
from retrievals_rag.data.datasets import RetrievalTrainDataset
from retrievals_rag.losses.infonce import InfoNCELoss
from retrievals_rag.training.arguments import RetrievalTrainingArguments
from retrievals_rag.training.rerank_trainer import RerankTrainer
from retrievals_rag.training.trainer import RetrievalTrainer, weights_swapped_in

from .conftest import make_records


def _args(output_dir: Path, **overrides: object) -> RetrievalTrainingArguments:
    options: dict[str, object] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "max_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
    }
    options.update(overrides)
    return RetrievalTrainingArguments(**options)  # type: ignore[arg-type]


def test_save_writes_the_state_dict_the_trainer_gathered(tiny_bert_path: Path, tmp_path: Path) -> None:
    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")
    trainer = RetrievalTrainer(model, _args(tmp_path), RetrievalTrainDataset(make_records(8)), InfoNCELoss())
    # what FSDP's full state dict or ZeRO-3's gather would hand over: other values than the local parameters,
    # under a wrapper's prefix
    gathered = {f"module.{name}": tensor + 1.0 for name, tensor in model.state_dict().items()}
    before = model.model.embeddings.word_embeddings.weight.detach().clone()
    trainer._save(str(tmp_path / "saved"), state_dict=gathered)

    saved = AutoModelForEmbedding.from_pretrained(tmp_path / "saved", device="cpu")
    torch.testing.assert_close(saved.model.embeddings.word_embeddings.weight, before + 1.0)
    # the live model keeps its own weights
    torch.testing.assert_close(model.model.embeddings.word_embeddings.weight, before)
    assert saved.settings == model.settings


def test_save_writes_colberts_gathered_projection_too(tiny_bert_path: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fresh projection of a bare encoder
        model = ColBERT.from_pretrained(tiny_bert_path, device="cpu", colbert_dim=8)
    dataset = RetrievalTrainDataset(make_records(8), train_group_size=2)
    trainer = RerankTrainer(model, _args(tmp_path), dataset)
    gathered = {name: torch.zeros_like(tensor) for name, tensor in model.state_dict().items()}
    trainer._save(str(tmp_path / "saved"), state_dict=gathered)
    saved = ColBERT.from_pretrained(tmp_path / "saved", device="cpu")
    assert float(saved.colbert_linear.weight.detach().abs().sum()) == 0.0
    assert float(model.colbert_linear.weight.detach().abs().sum()) > 0.0


def test_a_state_dict_naming_unknown_tensors_is_refused(tiny_bert_path: Path) -> None:
    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")
    with (
        pytest.raises(ValueError, match="does not have"),
        weights_swapped_in(model, {"head.weight": torch.ones(1)}),
    ):
        pass


def test_sharded_runs_resume_and_load_the_best_model_through_the_trainers_loaders(
    tiny_bert_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(Trainer, "_load_from_checkpoint", lambda self, path, model=None: calls.append(path))
    monkeypatch.setattr(Trainer, "_load_best_model", lambda self: calls.append("best"))
    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")
    trainer = RetrievalTrainer(model, _args(tmp_path), RetrievalTrainDataset(make_records(8)), InfoNCELoss())
    trainer.is_fsdp_enabled = True  # as accelerate sets it under FSDP
    trainer._load_from_checkpoint("checkpoint-3")
    trainer._load_best_model()
    assert calls == ["checkpoint-3", "best"]
    trainer.is_fsdp_enabled, trainer.is_deepspeed_enabled = False, True
    trainer._load_best_model()
    assert calls[-1] == "best"


def test_a_multi_process_launch_that_would_train_each_process_alone_is_refused(
    tiny_bert_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none"
    )  # not distributed: no GPU, no use_cpu
    monkeypatch.setenv("WORLD_SIZE", "2")
    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")
    with pytest.raises(ValueError, match=r"launched as 2 processes.*--use_cpu true"):
        RetrievalTrainer(model, args, RetrievalTrainDataset(make_records(8)), InfoNCELoss())
