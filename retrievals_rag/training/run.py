"""One function per training task, shared by the CLI and by scripts: build everything from the argument
dataclasses, train, save, evaluate, and return a summary."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrievals_rag.training.arguments import (
    EmbeddingModelArguments,
    RerankerDataArguments,
    RerankerModelArguments,
    RerankerTrainingArguments,
    RetrievalDataArguments,
    RetrievalTrainingArguments,
    resolve_reranker_loss,
)

if TYPE_CHECKING:
    from transformers import Trainer

    from retrievals_rag.models.lora import LoraSettings

logger = logging.getLogger(__name__)


@dataclass
class TrainingSummary:
    """What a training run did: where the model went, how long it took, the last loss and the evaluation."""

    output_dir: str
    steps: int
    seconds: float
    examples_per_second: float
    final_loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [
            f"saved: {self.output_dir}",
            f"steps: {self.steps} in {self.seconds:.1f}s ({self.examples_per_second:.1f} queries/s)",
        ]
        if self.final_loss is not None:
            lines.append(f"final training loss: {self.final_loss:.4f}")
        lines += [f"{name}: {value:.4f}" for name, value in self.metrics.items() if "@10" in name]
        return "\n".join(lines)


def train_embedding(
    model_args: EmbeddingModelArguments,
    data_args: RetrievalDataArguments,
    training_args: RetrievalTrainingArguments,
) -> TrainingSummary:
    """Fine-tune an embedder as the arguments say; save it to ``training_args.output_dir``."""
    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.losses.registry import build_loss
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.models.loading import default_embedding_model_path
    from retrievals_rag.training.trainer import RetrievalTrainer

    model = AutoModelForEmbedding.from_pretrained(
        model_args.model_name_or_path or default_embedding_model_path(),
        pooling_method=model_args.pooling_method,
        normalize_embeddings=model_args.normalize_embeddings,
        query_instruction=model_args.query_instruction,
        document_instruction=model_args.document_instruction,
        trust_remote_code=model_args.trust_remote_code,
        device="cpu",  # the Trainer places the model
    )
    if model_args.use_lora:
        model.enable_lora(_lora_settings(model_args))
    dataset = RetrievalTrainDataset(
        data_args.train_data,
        train_group_size=data_args.train_group_size,
        query_instruction=model.query_instruction,
        document_instruction=model.document_instruction,
        query_key=data_args.query_key,
        positive_key=data_args.positive_key,
        negative_key=data_args.negative_key,
        seed=training_args.seed,
    )
    loss = build_loss(training_args.loss, training_args.loss_options())
    if training_args.matryoshka_dims:
        from retrievals_rag.losses.matryoshka import MatryoshkaLoss

        loss = MatryoshkaLoss(loss, training_args.matryoshka_dims)
    evaluator = None
    if data_args.eval_data:
        from retrievals_rag.evaluation.evaluator import RetrievalEvaluator

        evaluator = RetrievalEvaluator.from_beir(data_args.eval_data, data_args.eval_split)
    trainer = RetrievalTrainer(
        model,
        training_args,
        dataset,
        loss,
        query_max_length=data_args.query_max_length,
        document_max_length=data_args.document_max_length,
        evaluator=evaluator,
    )
    return _train_and_summarize(trainer, training_args, evaluate=evaluator is not None)


def train_reranker(
    model_args: RerankerModelArguments,
    data_args: RerankerDataArguments,
    training_args: RerankerTrainingArguments,
) -> TrainingSummary:
    """Fine-tune a cross-encoder, LLM reranker or ColBERT as the arguments say; save it to
    ``training_args.output_dir`` (a folder that loads with the kind's ``from_pretrained``, settings included).

    Raises:
        ValueError: a loss that does not fit the kind or the data, or a folder of another kind of model.
    """
    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.training.rerank_trainer import RerankTrainer

    dataset = RetrievalTrainDataset(
        data_args.train_data,
        train_group_size=data_args.train_group_size,
        query_key=data_args.query_key,
        positive_key=data_args.positive_key,
        negative_key=data_args.negative_key,
        seed=training_args.seed,
    )  # no instructions here: the ranker frames query and document with its own
    # check the loss before loading a model, which can take long
    resolve_reranker_loss(model_args.kind, training_args.loss, scored_pairs=dataset.format == "scored")
    model = _load_reranker(model_args)
    trainer = RerankTrainer(
        model,
        training_args,
        dataset,
        training_args.loss,
        temperature=training_args.temperature,
        use_inbatch_negatives=training_args.use_inbatch_negatives,
    )
    return _train_and_summarize(
        trainer, training_args, details={"kind": model_args.kind, "loss": trainer.loss_name}
    )


def _load_reranker(model_args: RerankerModelArguments) -> Any:
    """The ranker that ``model_args`` describe, on the CPU (the Trainer places it), LoRA added if asked."""
    from retrievals_rag.models.colbert import ColBERT
    from retrievals_rag.models.config import read_model_kind
    from retrievals_rag.models.llm_ranking import LLMRanker
    from retrievals_rag.models.loading import default_embedding_model_path, resolve_model_path
    from retrievals_rag.models.ranking import AutoModelForRanking

    path = resolve_model_path(model_args.model_name_or_path or default_embedding_model_path())
    saved_kind = read_model_kind(path) if Path(path).is_dir() else None
    expected = {"cross-encoder": "cross_encoder", "llm": "llm_ranker", "colbert": "colbert"}[model_args.kind]
    if saved_kind not in (None, "embedding", expected):
        raise ValueError(f"{path} holds a {saved_kind} model, not a {expected}: pass the matching --kind")
    common: dict[str, Any] = {
        "max_length": model_args.max_length,
        "trust_remote_code": model_args.trust_remote_code,
        "device": "cpu",
    }
    model: Any
    if model_args.kind == "colbert":
        model = ColBERT.from_pretrained(
            path, colbert_dim=model_args.colbert_dim, query_max_length=model_args.query_max_length, **common
        )
    elif model_args.kind == "llm":
        model = LLMRanker.from_pretrained(
            path,
            query_instruction=model_args.query_instruction,
            document_instruction=model_args.document_instruction,
            prompt=model_args.prompt,
            target_token=model_args.target_token,
            **common,
        )
        if model_args.use_lora:
            model.enable_lora(_lora_settings(model_args))
    else:
        model = AutoModelForRanking.from_pretrained(
            path,
            query_instruction=model_args.query_instruction,
            document_instruction=model_args.document_instruction,
            **common,
        )
    return model


def _lora_settings(model_args: EmbeddingModelArguments | RerankerModelArguments) -> LoraSettings:
    from retrievals_rag.models.lora import LoraSettings

    return LoraSettings(
        r=model_args.lora_r,
        alpha=model_args.lora_alpha,
        dropout=model_args.lora_dropout,
        target_modules=tuple(model_args.lora_target_modules) if model_args.lora_target_modules else None,
    )


def _train_and_summarize(
    trainer: Trainer,
    training_args: RetrievalTrainingArguments | RerankerTrainingArguments,
    evaluate: bool = False,
    details: dict[str, Any] | None = None,
) -> TrainingSummary:
    """Train (resuming if asked), save the final model, evaluate if asked, write training_summary.json."""
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    seconds = time.perf_counter() - start
    trainer.save_model(training_args.output_dir)
    metrics = trainer.evaluate() if evaluate else {}
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    examples = result.global_step * training_args.per_device_train_batch_size * training_args.world_size
    examples *= training_args.gradient_accumulation_steps
    summary = TrainingSummary(
        output_dir=str(Path(training_args.output_dir).resolve()),
        steps=result.global_step,
        seconds=seconds,
        examples_per_second=examples / seconds if seconds > 0 else 0.0,
        final_loss=losses[-1] if losses else None,
        metrics=metrics,
    )
    if training_args.process_index == 0:
        payload = {**asdict(summary), **(details or {}), "loss_history": losses}
        (Path(training_args.output_dir) / "training_summary.json").write_text(
            json.dumps(payload, indent=2) + "\n"
        )
    return summary
