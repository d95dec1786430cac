"""``RetrievalTrainer``: a thin ``transformers.Trainer`` for bi-encoders (embedding models).

It overrides what differs from a classification model and nothing else: the loss (two forward passes, one for
the queries and one for their documents, each split into groups of similar length so that little padding is
computed, then a loss over the embeddings), saving (the model's own
``save_pretrained``: a folder that loads here and in sentence-transformers), loading a checkpoint, and
evaluation (retrieval metrics from a :class:`~retrievals_rag.evaluation.evaluator.RetrievalEvaluator`).
Everything else (DDP under torchrun / accelerate, FSDP, DeepSpeed, mixed precision, resuming, logging) is the
HF Trainer's.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from retrievals_rag.data.collators import EmbeddingCollator
from retrievals_rag.models.batching import forward_by_length
from retrievals_rag.models.embedding import AutoModelForEmbedding

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.evaluation.evaluator import RetrievalEvaluator

logger = logging.getLogger(__name__)


class _EpochCallback(TrainerCallback):
    """Tell the dataset which epoch starts, so it draws that epoch's positives and negatives."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(int(state.epoch or 0))


def freeze_unused_pooler(backbone: nn.Module) -> None:
    """Freeze a BERT-style pooler head that the model does not use (embedding pooling, ColBERT's token vectors).

    Frozen, it needs no unused-parameter search under DDP, the optimizer skips it, and it is saved unchanged.
    """
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler.requires_grad_(False)


class ModelFolderTrainer(Trainer):
    """A ``transformers.Trainer`` whose every checkpoint is the model's own ``save_pretrained`` folder; resuming
    and loading the best model read it back with the model's ``load_weights``.

    A checkpoint therefore loads with the model's ``from_pretrained``, settings included, and a LoRA model
    checkpoints its adapter alone. The base of :class:`RetrievalTrainer` and of the reranker trainer.
    """

    def _unwrapped_model(self) -> Any:
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        self._unwrapped_model().save_pretrained(output_dir)
        logger.info("saved the model to %s", output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        target = self.accelerator.unwrap_model(model) if model is not None else self._unwrapped_model()
        target.load_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        if self.state.best_model_checkpoint is not None:
            self._unwrapped_model().load_weights(self.state.best_model_checkpoint)


class RetrievalTrainer(ModelFolderTrainer):
    """Fine-tune an :class:`AutoModelForEmbedding` with a retrieval loss.

    Args:
        model: the embedder; its settings (pooling, instructions, max length) are saved with every checkpoint.
        args: training arguments (``RetrievalTrainingArguments`` or plain ``TrainingArguments``).
        train_dataset: a :class:`RetrievalTrainDataset` (or any dataset of the same examples).
        loss: a loss module over embeddings, e.g. ``InfoNCELoss()``; called as
            ``loss(query_embeddings, document_embeddings)``; for scored pairs
            ``loss(query_embeddings, document_embeddings, labels)``; for records with teacher scores
            ``loss(query_embeddings, document_embeddings, teacher_scores)``.
        data_collator: default: an :class:`EmbeddingCollator` with the model's tokenizer and EOS setting.
        query_max_length: tokens per query for the default collator.
        document_max_length: tokens per document for the default collator (default: the model's max length).
        evaluator: retrieval evaluation run at each evaluation step and reported as ``eval_nDCG@10`` etc.
        callbacks: more ``TrainerCallback`` objects.
    """

    def __init__(
        self,
        model: AutoModelForEmbedding,
        args: TrainingArguments,
        train_dataset: RetrievalTrainDataset | Any,
        loss: nn.Module,
        data_collator: Any | None = None,
        query_max_length: int = 64,
        document_max_length: int | None = None,
        evaluator: RetrievalEvaluator | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> None:
        if not isinstance(model, AutoModelForEmbedding):
            raise TypeError(f"model must be an AutoModelForEmbedding, got {type(model).__name__}")
        if data_collator is None:
            data_collator = EmbeddingCollator(
                model.tokenizer,
                query_max_length=query_max_length,
                document_max_length=document_max_length or model.max_length,
                append_eos=model.settings.append_eos,
            )
        if args.eval_strategy != "no" and evaluator is None:
            raise ValueError(f"eval_strategy is {args.eval_strategy!r} but no evaluator was given")
        freeze_unused_pooler(model.model.get_base_model() if model.has_lora else model.model)
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            # The HF Trainer insists on an eval dataset when eval_strategy is set; evaluation here runs the
            # evaluator instead (see evaluate), so the evaluator stands in for it.
            eval_dataset=evaluator,
            data_collator=data_collator,
            callbacks=[_EpochCallback(train_dataset), *(callbacks or [])],
        )
        chunk_size = getattr(args, "grad_cache_chunk_size", None)
        if chunk_size and not getattr(loss, "runs_model", False):  # GradCache around the given loss
            from retrievals_rag.losses.cached import GradCacheLoss

            loss = GradCacheLoss(loss, chunk_size)
        self.loss = loss
        self.evaluator = evaluator

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if getattr(self.loss, "runs_model", False):  # GradCache: the loss encodes the batch chunk by chunk
            loss = self.loss.model_loss(model, inputs)
            return (loss, {}) if return_outputs else loss
        # each role in groups of similar length: the same embeddings as one padded forward, less padding
        query_embeddings = forward_by_length(lambda part: model(**part), inputs["query"])  # (batch, dim)
        document_embeddings = forward_by_length(
            lambda part: model(**part), inputs["documents"]
        )  # (batch * group_size, dim)
        if "labels" in inputs:
            loss = self.loss(query_embeddings, document_embeddings, inputs["labels"])
        elif "teacher_scores" in inputs:
            loss = self.loss(query_embeddings, document_embeddings, inputs["teacher_scores"])
        else:
            loss = self.loss(query_embeddings, document_embeddings)
        if return_outputs:
            return loss, {"query_embeddings": query_embeddings, "document_embeddings": document_embeddings}
        return loss

    def evaluate(
        self,
        eval_dataset: Any | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Retrieval metrics of the current model on the evaluator's data (computed on the main process)."""
        if self.evaluator is None:
            raise ValueError("RetrievalTrainer.evaluate needs an evaluator")
        metrics: dict[str, float] = {}
        if self.args.process_index == 0:
            result = self.evaluator.evaluate(self._unwrapped_model())
            metrics = {f"{metric_key_prefix}_{name}": value for name, value in result.metrics.items()}
        if self.args.world_size > 1:
            from accelerate.utils import broadcast_object_list

            metrics = broadcast_object_list([metrics])[0]
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
