"""``RerankTrainer``: a thin ``transformers.Trainer`` for rerankers: cross-encoders, LLM rankers and ColBERT.

Like :class:`~retrievals_rag.training.trainer.RetrievalTrainer` it takes a loss module (or a loss name, built
through :mod:`retrievals_rag.losses.registry`, which says which loss fits which kind) and overrides the loss
computation and little else: every checkpoint is the model's own ``save_pretrained`` folder
(:class:`ModelFolderTrainer`), per-epoch negatives come from the dataset, evaluation runs a
:class:`~retrievals_rag.evaluation.reranking.RerankingEvaluator` at any ``eval_strategy``, and DDP, mixed
precision, resuming and logging are the HF Trainer's. The model scores batches tokenized by its own input layout
(:mod:`retrievals_rag.data.rerank_collators`), so training feeds it exactly what inference scores.

The trainer hands the loss what its ``loss_inputs`` declare (:mod:`retrievals_rag.losses.protocol`):

- cross-encoder / LLM ranker: the ``(batch, group_size)`` scores of each query's group (``listwise``,
  ``bce``, ``kl``, ``margin_mse``), or for scored pairs the scores and labels (``bce``);
- ColBERT: the query and document token vectors with the model's MaxSim (``infonce``: every query against every
  document of the batch, through the same InfoNCE core as the embedder's, optionally gathered across processes),
  or the MaxSim scores of each query's own group (``kl`` / ``margin_mse``).

An LLM ranker trains its 'Yes' logit; give it LoRA adapters first (``model.enable_lora(LoraSettings(...))``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from retrievals_rag.data.rerank_collators import ColBERTCollator, PairRankerCollator
from retrievals_rag.losses._common import check_positive
from retrievals_rag.losses.protocol import loss_inputs, needs_teacher
from retrievals_rag.losses.registry import build_loss, loss_parameters, resolve_loss
from retrievals_rag.models.registry import KINDS, kind_of
from retrievals_rag.training.trainer import (
    ModelEvaluator,
    ModelFolderTrainer,
    check_loss_fits_data,
    freeze_unused_pooler,
)

if TYPE_CHECKING:
    from transformers import TrainerCallback, TrainingArguments

    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.models.ranker import Ranker

__all__ = ["RerankTrainer", "ranker_loss"]


def _ranker_kind(model: Any) -> str:
    """The registry kind of a ranker (``cross_encoder``, ``llm_ranker`` or ``colbert``); TypeError otherwise."""
    try:
        kind = kind_of(model)
    except TypeError:
        kind = None
    if kind is None or not KINDS[kind].ranker:
        names = [spec.class_name for spec in KINDS.values() if spec.ranker]
        expected = f"{', '.join(names[:-1])} or {names[-1]}"
        raise TypeError(f"model must be an {expected}, got {type(model).__name__}")
    return kind


def ranker_loss(
    kind: str,
    name: str,
    *,
    temperature: float = 1.0,
    use_inbatch_negatives: bool = True,
    gather_negatives_across_processes: bool = False,
) -> nn.Module:
    """The loss ``name`` for a ranker of ``kind``, built with those of the options it takes (see
    :class:`RerankTrainer`)."""
    offered = {
        "temperature": float(temperature),
        "use_inbatch_negatives": use_inbatch_negatives,
        "gather_across_processes": gather_negatives_across_processes,
    }
    accepted = loss_parameters(name, kind)
    return build_loss(name, {option: value for option, value in offered.items() if option in accepted}, kind)


class RerankTrainer(ModelFolderTrainer):
    """Fine-tune a reranker: an :class:`~retrievals_rag.AutoModelForRanking`, an
    :class:`~retrievals_rag.LLMRanker` or a :class:`~retrievals_rag.ColBERT`.

    Args:
        model: the ranker; its settings (instructions, max length, prompt, markers...) are saved with every
            checkpoint, which loads with its ``from_pretrained``.
        args: training arguments (``RerankerTrainingArguments`` or any ``TrainingArguments``).
        train_dataset: a :class:`RetrievalTrainDataset` built without instructions (the ranker applies its own):
            groups ``{"query", "documents"}`` (with ``"teacher_scores"`` for distillation) or scored pairs.
        loss: a loss module whose ``loss_inputs`` fit the kind, or a name the kind allows
            (:func:`retrievals_rag.losses.registry.losses_for_kind`: ``listwise``, ``bce``, ``kl``,
            ``margin_mse`` for cross-encoders and LLM rankers, ``infonce``, ``kl``, ``margin_mse`` for ColBERT),
            built with the options below; None: the kind's default (``bce`` for scored pairs).
        temperature: for a loss name: scores are divided by it in ``listwise``, ``infonce`` and ``kl``
            (1: raw logits / MaxSim).
        use_inbatch_negatives: for ColBERT ``infonce``: score each query against every document of the batch.
        gather_negatives_across_processes: for ColBERT ``infonce``: the documents of every process are
            negatives too (DDP).
        data_collator: default: a :class:`PairRankerCollator` or :class:`ColBERTCollator` of the model.
        evaluator: e.g. a :class:`~retrievals_rag.evaluation.reranking.RerankingEvaluator`, run at each
            evaluation step and reported as ``eval_nDCG@10`` etc.
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
        loss: str | nn.Module | None = None,
        *,
        temperature: float = 1.0,
        use_inbatch_negatives: bool = True,
        gather_negatives_across_processes: bool = False,
        data_collator: Any | None = None,
        evaluator: ModelEvaluator | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> None:
        self.kind = _ranker_kind(model)
        check_positive("temperature", temperature)
        scored = getattr(train_dataset, "format", None) == "scored"
        if isinstance(loss, nn.Module):
            self.loss_name = type(loss).__name__
            self.loss = loss
        else:
            self.loss_name = resolve_loss(self.kind, loss, scored_pairs=scored)
            self.loss = ranker_loss(
                self.kind,
                self.loss_name,
                temperature=temperature,
                use_inbatch_negatives=use_inbatch_negatives,
                gather_negatives_across_processes=gather_negatives_across_processes,
            )
        self.loss_forms = loss_inputs(self.loss)
        self._check_fit(scored)
        check_loss_fits_data(self.loss, train_dataset)
        if data_collator is None:
            data_collator = ColBERTCollator(model) if self.kind == "colbert" else PairRankerCollator(model)
        if self.kind == "colbert":
            freeze_unused_pooler(model._base_model())  # ColBERT uses token states, never the pooler
        super().__init__(model, args, train_dataset, data_collator, evaluator, callbacks)

    def _check_fit(self, scored: bool) -> None:
        fits = (
            ("token_vectors", "group_scores") if self.kind == "colbert" else ("group_scores", "pair_labels")
        )
        if scored:
            fits = ("pair_labels",) if self.kind != "colbert" else ()
        if not set(self.loss_forms) & set(fits):
            data = "scored pairs" if scored else "grouped records"
            raise ValueError(
                f"{type(self.loss).__name__} takes {', '.join(self.loss_forms)}, but a {self.kind} reranker "
                f"trained on {data} gives {' or '.join(fits) or 'nothing'}"
            )

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
        scores = self._embed(model, inputs["pairs"])  # (n_pairs,)
        if "labels" in inputs:  # scored pairs
            if "pair_labels" not in self.loss_forms:
                raise ValueError(
                    f"scored pairs (query, document, label) train with loss bce, not {self.loss_name!r}"
                )
            return scores, self.loss(scores, inputs["labels"])
        group_size = int(inputs["group_size"])
        return scores, self._group_loss(scores.reshape(-1, group_size), inputs)  # (batch, G)

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
        colbert = self.accelerator.unwrap_model(model)  # MaxSim, the model's own reduction
        if "token_vectors" in self.loss_forms:
            return documents.embeddings, self.loss(queries, documents, colbert.score)
        own = colbert.score_groups(queries, documents)  # (batch, G): each query's own group only
        return own, self._group_loss(own, inputs)

    def _group_loss(self, scores: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """The loss of the ``(batch, G)`` group scores, with the teacher's scores if it distils."""
        if not needs_teacher(self.loss):
            return self.loss(scores)
        teacher = inputs.get("teacher_scores")
        if teacher is None:
            raise ValueError(f"loss {self.loss_name!r} needs teacher scores in the batch")
        return self.loss(scores, teacher)
