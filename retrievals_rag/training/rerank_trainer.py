"""``RerankTrainer``: a thin ``transformers.Trainer`` for rerankers: cross-encoders, LLM rankers and ColBERT.

Like :class:`~retrievals_rag.training.trainer.RetrievalTrainer` it overrides the loss and little else: every
checkpoint is the model's own ``save_pretrained`` folder (:class:`ModelFolderTrainer`), per-epoch negatives come
from the dataset, and DDP, mixed precision, resuming and logging are the HF Trainer's. The model scores batches
tokenized by its own input layout (:mod:`retrievals_rag.data.rerank_collators`), so training feeds it exactly
what inference scores.

Losses by kind (:data:`~retrievals_rag.training.arguments.RERANKER_LOSSES`; the first is the default):

================  ==========================================================================================
kind              losses
================  ==========================================================================================
cross-encoder,    ``listwise``: cross-entropy of each query's positive against its hard negatives over the
llm               group's scores (:class:`~retrievals_rag.losses.listwise.ListwiseCrossEntropyLoss`);
                  ``bce``: pointwise (:class:`~retrievals_rag.losses.pointwise.PointwiseBCELoss`) on scored
                  pairs' labels in [0, 1], or on groups with the positive as 1 and the negatives as 0;
                  ``kl`` / ``margin_mse``: distillation of the records' teacher scores over each group
colbert           ``infonce``: cross-entropy over the ``(batch, batch * group_size)`` MaxSim scores of every
                  query against every document of the batch, the target of query ``i`` at column
                  ``i * group_size`` (only its own group with ``use_inbatch_negatives=False``);
                  ``kl`` / ``margin_mse``: distillation of teacher scores (e.g. a cross-encoder's) over each
                  query's own group
================  ==========================================================================================

An LLM ranker trains its 'Yes' logit; give it LoRA adapters first (``model.enable_lora(LoraSettings(...))``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from retrievals_rag.data.rerank_collators import ColBERTCollator, PairRankerCollator
from retrievals_rag.losses._common import check_positive
from retrievals_rag.losses.distillation import kl_distillation_loss, margin_mse_loss
from retrievals_rag.losses.listwise import ListwiseCrossEntropyLoss, listwise_cross_entropy
from retrievals_rag.losses.pointwise import PointwiseBCELoss
from retrievals_rag.models.batching import forward_by_length
from retrievals_rag.models.colbert import ColBERT
from retrievals_rag.models.llm_ranking import LLMRanker
from retrievals_rag.models.ranker import Ranker
from retrievals_rag.models.ranking import AutoModelForRanking
from retrievals_rag.training.arguments import DISTILLATION_LOSSES, resolve_reranker_loss
from retrievals_rag.training.trainer import ModelFolderTrainer, _EpochCallback, freeze_unused_pooler

if TYPE_CHECKING:
    from transformers import TrainerCallback, TrainingArguments

    from retrievals_rag.data.datasets import RetrievalTrainDataset

__all__ = ["RerankTrainer", "reranker_kind"]

# model class -> kind name, as in ``retrievals-rag train reranker --kind``
_KINDS: tuple[tuple[type[Ranker], str], ...] = (
    (LLMRanker, "llm"),
    (AutoModelForRanking, "cross-encoder"),
    (ColBERT, "colbert"),
)


def reranker_kind(model: Any) -> str:
    """``"cross-encoder"``, ``"llm"`` or ``"colbert"`` for a ranker; TypeError for anything else."""
    for model_class, kind in _KINDS:
        if isinstance(model, model_class):
            return kind
    raise TypeError(f"model must be an AutoModelForRanking, LLMRanker or ColBERT, got {type(model).__name__}")


class RerankTrainer(ModelFolderTrainer):
    """Fine-tune a reranker: an :class:`~retrievals_rag.AutoModelForRanking`, an
    :class:`~retrievals_rag.LLMRanker` or a :class:`~retrievals_rag.ColBERT`.

    Args:
        model: the ranker; its settings (instructions, max length, prompt, markers...) are saved with every
            checkpoint, which loads with its ``from_pretrained``.
        args: training arguments (``RerankerTrainingArguments``, or any ``TrainingArguments`` with
            ``remove_unused_columns=False``).
        train_dataset: a :class:`RetrievalTrainDataset` built without instructions (the ranker applies its own):
            groups ``{"query", "documents"}`` (with ``"teacher_scores"`` for distillation) or scored pairs.
        loss: ``"listwise"``, ``"bce"``, ``"kl"``, ``"margin_mse"`` or ``"infonce"`` as the model's kind allows
            (module docstring); None: the kind's default (``"bce"`` for scored pairs).
        temperature: scores are divided by it in ``listwise``, ``infonce`` and ``kl`` (1: raw logits / MaxSim).
        use_inbatch_negatives: ColBERT ``infonce``: score each query against every document of the batch.
        data_collator: default: a :class:`PairRankerCollator` or :class:`ColBERTCollator` of the model.
        callbacks: more ``TrainerCallback`` objects.

    Raises:
        TypeError: the model is not a ranker.
        ValueError: a loss that does not fit the model's kind or the data (e.g. ``kl`` without teacher
            scores, ``listwise`` with one document per query), or arguments the trainer cannot honour.
    """

    def __init__(
        self,
        model: Ranker,
        args: TrainingArguments,
        train_dataset: RetrievalTrainDataset | Any,
        loss: str | None = None,
        *,
        temperature: float = 1.0,
        use_inbatch_negatives: bool = True,
        data_collator: Any | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> None:
        self.kind = reranker_kind(model)
        check_positive("temperature", temperature)
        scored = getattr(train_dataset, "format", None) == "scored"
        self.loss_name = resolve_reranker_loss(self.kind, loss, scored_pairs=scored)
        self.temperature = float(temperature)
        self.use_inbatch_negatives = use_inbatch_negatives
        _check_data(self.loss_name, use_inbatch_negatives, train_dataset)
        if args.eval_strategy != "no":
            raise ValueError(
                "RerankTrainer has no evaluation loop: set eval_strategy='no' and evaluate the saved model "
                "(e.g. examples/reranking/scifact_rerank.py)"
            )
        if args.remove_unused_columns:
            raise ValueError(
                "set remove_unused_columns=False (RerankerTrainingArguments does): the collator needs every field"
            )
        if data_collator is None:
            data_collator = ColBERTCollator(model) if self.kind == "colbert" else PairRankerCollator(model)
        if self.kind == "colbert":
            freeze_unused_pooler(model._base_model())  # ColBERT uses token states, never the pooler
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            data_collator=data_collator,
            callbacks=[_EpochCallback(train_dataset), *(callbacks or [])],
        )
        self.listwise_loss = ListwiseCrossEntropyLoss(self.temperature)
        self.pointwise_loss = PointwiseBCELoss()

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.kind == "colbert":
            scores, loss = self._colbert_loss(model, inputs)
        else:
            scores, loss = self._pair_loss(model, inputs)
        return (loss, {"scores": scores}) if return_outputs else loss

    def _pair_loss(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        scores = forward_by_length(lambda part: model(**part), inputs["pairs"])  # (n_pairs,)
        if "labels" in inputs:  # scored pairs
            if self.loss_name != "bce":
                raise ValueError(
                    f"scored pairs (query, document, label) train with loss bce, not {self.loss_name!r}"
                )
            return scores, self.pointwise_loss(scores, inputs["labels"])
        group_size = int(inputs["group_size"])
        if self.loss_name == "bce":  # groups: the positive is relevant, its negatives are not
            labels = torch.zeros_like(scores, dtype=torch.float32).view(-1, group_size)  # (batch, G)
            labels[:, 0] = 1.0
            return scores, self.pointwise_loss(scores, labels.view(-1))
        if self.loss_name == "listwise":
            return scores, self.listwise_loss(scores, group_size)
        return scores, self._distillation_loss(scores.view(-1, group_size), inputs)

    def _colbert_loss(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        chunk_size = getattr(self.args, "grad_cache_chunk_size", None)
        if chunk_size:  # GradCache: token embeddings of the batch chunk by chunk, MaxSim loss on all of them
            from retrievals_rag.losses.cached import grad_cache_loss

            kinds = ("query", "document")
            loss = grad_cache_loss(
                lambda role, part: model(**part, kind=kinds[role]),
                [inputs["query"], inputs["documents"]],
                lambda outputs: self._colbert_scores_loss(model, *outputs, inputs)[1],
                chunk_size,
                model,
            )
            return torch.empty(0), loss
        queries = model(**inputs["query"], kind="query")
        documents = model(**inputs["documents"], kind="document")
        return self._colbert_scores_loss(model, queries, documents, inputs)

    def _colbert_scores_loss(
        self, model: nn.Module, queries: Any, documents: Any, inputs: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # MaxSim of every query with every document of the batch, by the model's own scoring
        scores = self.accelerator.unwrap_model(model).score(queries, documents)  # (batch, batch * G)
        batch = scores.shape[0]
        group_size = scores.shape[1] // batch
        if self.loss_name == "infonce" and self.use_inbatch_negatives:
            targets = torch.arange(batch, device=scores.device) * group_size  # (batch,) each query's positive
            return scores, listwise_cross_entropy(scores / self.temperature, targets)
        rows = torch.arange(batch, device=scores.device)
        own = scores.view(batch, batch, group_size)[rows, rows]  # (batch, G): each query's own group
        if self.loss_name == "infonce":
            return scores, listwise_cross_entropy(own / self.temperature, 0)
        return scores, self._distillation_loss(own, inputs)

    def _distillation_loss(self, student: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """``kl`` or ``margin_mse`` of the student's ``(batch, G)`` group scores against the teacher's."""
        teacher = inputs.get("teacher_scores")
        if teacher is None:
            raise ValueError(f"loss {self.loss_name!r} needs teacher scores in the batch")
        if self.loss_name == "kl":
            return kl_distillation_loss(student, teacher, self.temperature)
        return margin_mse_loss(student, teacher)


def _check_data(loss: str, use_inbatch_negatives: bool, dataset: Any) -> None:
    """Fail before training on data the loss cannot use (as far as the dataset tells)."""
    group_size = getattr(dataset, "train_group_size", None)
    single_document = (
        getattr(dataset, "format", None) != "scored" and isinstance(group_size, int) and group_size < 2
    )
    needs_negatives = loss in ("listwise", *DISTILLATION_LOSSES) or (
        loss == "infonce" and not use_inbatch_negatives
    )
    if single_document and needs_negatives:
        raise ValueError(
            f"loss {loss!r} compares each query's positive with its hard negatives: it needs "
            f"train_group_size >= 2, got {group_size}"
        )
    records = getattr(dataset, "records", None)
    if loss in DISTILLATION_LOSSES and records and records[0].positive_scores is None:
        raise ValueError(
            f"loss {loss!r} distils a teacher's scores: give records with 'positive_scores' and "
            "'negative_scores' (e.g. a cross-encoder's scores of each passage)"
        )
