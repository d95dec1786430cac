"""One function per training task, shared by the CLI and by scripts: build everything from the argument
dataclasses, judge the starting model, train, save, judge the result, and return a summary with the verdict
(:mod:`retrievals_rag.training.verdict`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
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
from retrievals_rag.training.verdict import Verdict, split_holdout, strip_prefix

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from retrievals_rag.training.trainer import ModelFolderTrainer

logger = logging.getLogger(__name__)

VERDICT_FILE = "verdict.json"


@dataclass
class TrainingSummary:
    """What a training run did: where the model went, how long it took, the last loss, the evaluation and the
    verdict (the start beside the end, see :class:`~retrievals_rag.training.verdict.Verdict`)."""

    output_dir: str
    steps: int
    seconds: float
    examples_per_second: float
    final_loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"saved: {self.output_dir}",
            f"steps: {self.steps} in {self.seconds:.1f}s ({self.examples_per_second:.1f} queries/s)",
        ]
        if self.final_loss is not None:
            lines.append(f"final training loss: {self.final_loss:.4f}")
        if self.verdict is not None:
            lines.append(_verdict_of(self.verdict).table())
        else:
            lines += [f"{name}: {value:.4f}" for name, value in self.metrics.items() if "@10" in name]
        lines += self.warnings
        return "\n".join(lines)


def _verdict_of(payload: dict[str, Any]) -> Verdict:
    return Verdict(
        payload["data"],
        payload["before"],
        payload["after"],
        payload["first_stage"],
        tuple(payload["metrics"]),
    )


def train_embedding(
    model_args: EmbeddingModelArguments,
    data_args: RetrievalDataArguments,
    training_args: RetrievalTrainingArguments,
    *,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainingSummary:
    """Fine-tune an embedder as the arguments say; save it to ``training_args.output_dir``.

    The starting model and the trained one are evaluated on ``data_args.eval_data`` (or, without it, on held-out
    training queries, ``data_args.holdout_fraction``), and the verdict is printed and saved beside the model.
    ``callbacks`` are more ``transformers.TrainerCallback`` objects (progress, cancellation); given any, they
    report progress instead of the Trainer's own console output (its progress bar and printed log lines).
    """
    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.losses.registry import build_loss
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.models.loading import default_embedding_model_path
    from retrievals_rag.training.trainer import RetrievalTrainer, check_loss_fits_data

    dataset = RetrievalTrainDataset(
        data_args.train_data,
        train_group_size=data_args.train_group_size,
        query_key=data_args.query_key,
        positive_key=data_args.positive_key,
        negative_key=data_args.negative_key,
        seed=training_args.seed,
    )  # the trainer gives it the model's instructions
    loss = build_loss(training_args.loss, training_args.loss_options())
    if training_args.matryoshka_dims:
        from retrievals_rag.losses.matryoshka import MatryoshkaLoss

        loss = MatryoshkaLoss(loss, training_args.matryoshka_dims)
    # the data and the evaluation data are checked before loading a model, which can take long
    check_loss_fits_data(loss, dataset)
    if data_args.eval_data:
        from retrievals_rag.evaluation.evaluator import RetrievalEvaluator

        evaluator: Any = RetrievalEvaluator.from_beir(data_args.eval_data, data_args.eval_split)
        judged_on = f"{data_args.eval_data} ({data_args.eval_split})"
    else:
        dataset, holdout = split_holdout(dataset, data_args.holdout_fraction, training_args.seed)
        evaluator = holdout.evaluator(reranker=False) if holdout else None
        judged_on = holdout.describe() if holdout else ""
    model = AutoModelForEmbedding.from_pretrained(
        model_args.model_name_or_path or default_embedding_model_path(),
        pooling_method=model_args.pooling_method,
        normalize_embeddings=model_args.normalize_embeddings,
        query_instruction=model_args.query_instruction,
        document_instruction=model_args.document_instruction,
        # documents are encoded at inference (the verdict included) as they were trained
        max_length=data_args.document_max_length,
        trust_remote_code=model_args.trust_remote_code,
        device="cpu",  # the Trainer places the model
    )
    if model_args.use_lora:
        model.enable_lora(model_args.lora_settings())
    trainer = RetrievalTrainer(
        model,
        training_args,
        dataset,
        loss,
        query_max_length=data_args.query_max_length,
        document_max_length=data_args.document_max_length,
        evaluator=evaluator,
        callbacks=list(callbacks),
    )
    if callbacks:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    return _train_and_summarize(trainer, training_args, judged_on, group_size=data_args.train_group_size)


def train_reranker(
    model_args: RerankerModelArguments,
    data_args: RerankerDataArguments,
    training_args: RerankerTrainingArguments,
) -> TrainingSummary:
    """Fine-tune a cross-encoder, LLM reranker or ColBERT as the arguments say; save it to
    ``training_args.output_dir`` (a folder that loads with the kind's ``from_pretrained``, settings included).

    The starting model and the trained one rerank ``data_args.eval_data``'s first-stage top-k (or, without it,
    each held-out training query's own candidates), and the verdict is printed and saved beside the model.

    Raises:
        ValueError: a loss that does not fit the kind or the data, or a folder of another kind of model.
    """
    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.training.rerank_trainer import RerankTrainer, ranker_loss
    from retrievals_rag.training.trainer import check_loss_fits_data

    dataset = RetrievalTrainDataset(
        data_args.train_data,
        train_group_size=data_args.train_group_size,
        query_key=data_args.query_key,
        positive_key=data_args.positive_key,
        negative_key=data_args.negative_key,
        seed=training_args.seed,
    )  # no instructions here: the ranker frames query and document with its own
    # the loss, the data and the evaluation data are checked before loading a model, which can take long
    loss_name = resolve_reranker_loss(
        model_args.kind, training_args.loss, scored_pairs=dataset.format == "scored"
    )
    check_loss_fits_data(
        ranker_loss(
            model_args.kind,
            loss_name,
            temperature=training_args.temperature,
            use_inbatch_negatives=training_args.use_inbatch_negatives,
            gather_negatives_across_processes=training_args.gather_negatives_across_processes,
        ),
        dataset,
    )
    first_stage = None
    if data_args.eval_data:
        from retrievals_rag.evaluation.reranking import RerankingEvaluator

        evaluator: Any = RerankingEvaluator.from_beir(
            data_args.eval_data, data_args.eval_split, data_args.first_stage, top_k=data_args.rerank_top_k
        )
        first_stage = evaluator.first_stage_metrics()
        judged_on = f"{data_args.eval_data} ({data_args.eval_split}, reranking the first stage's top-{data_args.rerank_top_k})"
    else:
        dataset, holdout = split_holdout(dataset, data_args.holdout_fraction, training_args.seed)
        evaluator = holdout.evaluator(reranker=True) if holdout else None
        judged_on = f"{holdout.describe()}, each reranking its own candidates" if holdout else ""
    model = _load_reranker(model_args)
    trainer = RerankTrainer(
        model,
        training_args,
        dataset,
        training_args.loss,
        temperature=training_args.temperature,
        use_inbatch_negatives=training_args.use_inbatch_negatives,
        gather_negatives_across_processes=training_args.gather_negatives_across_processes,
        evaluator=evaluator,
    )
    return _train_and_summarize(
        trainer,
        training_args,
        judged_on,
        first_stage=first_stage,
        details={"kind": model_args.kind_name, "loss": trainer.loss_name},
        group_size=data_args.train_group_size,
    )


def _load_reranker(model_args: RerankerModelArguments) -> Any:
    """The ranker that ``model_args`` describe, on the CPU (the Trainer places it), LoRA added if asked."""
    from retrievals_rag.models.loading import default_embedding_model_path, resolve_model_path
    from retrievals_rag.models.registry import KINDS, check_folder_kind

    kind = model_args.kind_name
    path = resolve_model_path(model_args.model_name_or_path or default_embedding_model_path())
    check_folder_kind(path, kind, accept=("embedding",))  # a ranker may start from an embedder's folder
    options: dict[str, Any] = {
        "max_length": model_args.max_length,
        "trust_remote_code": model_args.trust_remote_code,
        "device": "cpu",
    }
    if kind == "colbert":
        options |= {"colbert_dim": model_args.colbert_dim, "query_max_length": model_args.query_max_length}
    else:
        options |= {
            "query_instruction": model_args.query_instruction,
            "document_instruction": model_args.document_instruction,
        }
    if kind == "llm_ranker":
        options |= {"prompt": model_args.prompt, "target_token": model_args.target_token}
    model = KINDS[kind].model_class().from_pretrained(path, **options)
    if model_args.use_lora:
        model.enable_lora(model_args.lora_settings())
    return model


# a run whose last quarter of logged losses averages above this share of the chance level learned nothing
CHANCE_SHARE = 0.95


def _stuck_at_chance(
    loss: Any,
    losses: list[float],
    training_args: RetrievalTrainingArguments | RerankerTrainingArguments,
    group_size: int,
) -> list[str]:
    """A warning when the training loss ended no lower than a model that scores every candidate alike.

    That is what a collapsed model gives (every text embedded alike: LoRA on a decoder LLM at a learning rate far
    from its range did this to SmolLM2, whose nDCG@10 stayed at 0), and it can hide behind a verdict that reads
    "no change". Judged on the mean of the last quarter of the logged losses (four at least).
    """
    from retrievals_rag.losses.protocol import chance_loss

    if len(losses) < 4:
        return []
    level = chance_loss(
        loss,
        batch_size=training_args.per_device_train_batch_size,
        group_size=group_size,
        world_size=training_args.world_size,
    )
    tail = losses[-max(1, len(losses) // 4) :]
    ended = sum(tail) / len(tail)
    if level is None or level <= 0 or ended < CHANCE_SHARE * level:
        return []
    return [
        f"Warning: the training loss ended at {ended:.4f} (the mean of the last {len(tail)} logged), no lower "
        f"than a model that scores every candidate alike ({level:.4f}): it did not learn to tell the positives "
        "from the negatives. Try another learning rate (LoRA on a decoder LLM often needs 1e-4 to 1e-3), more "
        "steps or queries per step, and check that the positives and negatives differ."
    ]


def _train_and_summarize(
    trainer: ModelFolderTrainer,
    training_args: RetrievalTrainingArguments | RerankerTrainingArguments,
    judged_on: str,
    first_stage: dict[str, float] | None = None,
    details: dict[str, Any] | None = None,
    *,
    group_size: int,
) -> TrainingSummary:
    """Judge the start, train (resuming if asked), save the final model, judge the result, and write
    ``training_summary.json`` and ``verdict.json``."""
    judged = trainer.evaluator is not None
    before = strip_prefix(trainer.evaluate(metric_key_prefix="start"), "start") if judged else {}
    if before and training_args.process_index == 0:  # known now, not only after a long run
        shown = ", ".join(f"{name} {value:.4f}" for name, value in before.items() if isinstance(value, float))
        logger.info("the starting model on %s: %s", judged_on, shown)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    seconds = time.perf_counter() - start
    trainer.save_model(training_args.output_dir)
    metrics = trainer.evaluate() if judged else {}
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    examples = result.global_step * training_args.per_device_train_batch_size * training_args.world_size
    examples *= training_args.gradient_accumulation_steps
    verdict = Verdict(judged_on, before, strip_prefix(metrics, "eval"), first_stage) if judged else None
    output_dir = str(Path(training_args.output_dir).resolve())
    summary = TrainingSummary(
        output_dir=output_dir,
        steps=result.global_step,
        seconds=seconds,
        examples_per_second=examples / seconds if seconds > 0 else 0.0,
        final_loss=losses[-1] if losses else None,
        metrics=metrics,
        verdict=verdict.to_dict() if verdict else None,
        warnings=[
            *_stuck_at_chance(trainer.loss, losses, training_args, group_size),
            *(verdict.warnings(output_dir) if verdict else []),
        ],
    )
    if training_args.process_index == 0:
        for warning in summary.warnings:
            logger.warning(warning)
        payload = {**asdict(summary), **(details or {}), "loss_history": losses}
        folder = Path(training_args.output_dir)
        (folder / "training_summary.json").write_text(json.dumps(payload, indent=2) + "\n")
        if verdict is not None:
            (folder / VERDICT_FILE).write_text(json.dumps(verdict.to_dict(), indent=2) + "\n")
    return summary
