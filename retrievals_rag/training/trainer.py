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

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from retrievals_rag.data.collators import EmbeddingCollator
from retrievals_rag.losses.protocol import (
    extra_inputs,
    label_range,
    loss_inputs,
    min_group_size,
    needs_labels,
    needs_teacher,
    takes_labels,
)
from retrievals_rag.models.batching import forward_by_length
from retrievals_rag.models.embedding import AutoModelForEmbedding

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from retrievals_rag.data.datasets import RetrievalTrainDataset
    from retrievals_rag.evaluation.evaluator import EvaluationResult, RetrievalEvaluator

logger = logging.getLogger(__name__)

# prefixes that wrappers (DDP, torch.compile, FSDP, activation checkpointing) put before parameter names
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


class ModelEvaluator(Protocol):
    """What the trainers need of an evaluator: ``evaluate(model)`` with a ``metrics`` mapping."""

    def evaluate(self, model: Any) -> EvaluationResult: ...


class _EpochCallback(TrainerCallback):
    """Tell the dataset which epoch starts, so it draws that epoch's positives and negatives."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(int(state.epoch or 0))


class WeightAveraging(TrainerCallback):
    """WiSE-FT (Wortsman et al., 2022): when training ends, every trained parameter moves back towards its value at
    the start, ``base_weight * start + (1 - base_weight) * trained``, before the trainer saves and judges the model.

    The start is what the model held when training began (not a resumed checkpoint's weights: do not resume with
    it), kept on the CPU. Meant for full fine-tuning: with LoRA, averaging the two factors does not scale their
    product linearly.

    Args:
        base_weight: the start's share, in [0, 1); 0 keeps the trained weights.
    """

    def __init__(self, base_weight: float) -> None:
        if (
            isinstance(base_weight, bool)
            or not isinstance(base_weight, (int, float))
            or not 0 <= base_weight < 1
        ):
            raise ValueError(f"base_weight must be a number in [0, 1), got {base_weight!r}")
        self.base_weight = float(base_weight)
        self._start: dict[str, torch.Tensor] = {}

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self.base_weight:  # nothing to average: no copy
            return
        model = kwargs["model"]
        self._start = {
            name: parameter.detach().to("cpu", copy=True)
            for name, parameter in model.named_parameters()
            if parameter.requires_grad
        }

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self.base_weight:
            return
        with torch.no_grad():
            for name, parameter in kwargs["model"].named_parameters():
                start = self._start.get(name)
                if start is not None:
                    parameter.lerp_(start.to(parameter.device, parameter.dtype), self.base_weight)
        self._start = {}


def freeze_unused_pooler(backbone: nn.Module) -> None:
    """Freeze a BERT-style pooler head that the model does not use (embedding pooling, ColBERT's token vectors).

    Frozen, it needs no unused-parameter search under DDP, the optimizer skips it, and it is saved unchanged.
    """
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler.requires_grad_(False)


def check_distributed_launch(args: TrainingArguments) -> None:
    """Refuse a multi-process launch (``torchrun``) whose arguments would train each process alone.

    Without a GPU and without ``use_cpu``, transformers does not set up the process group: every process would
    train on all the data and all would write the same ``output_dir``. :class:`~retrievals_rag.training.
    arguments.RetrievalTrainingArguments` and ``RerankerTrainingArguments`` turn ``use_cpu`` on by themselves.
    """
    from transformers.training_args import ParallelMode

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and args.parallel_mode != ParallelMode.DISTRIBUTED:
        raise ValueError(
            f"launched as {world} processes (torchrun / accelerate) but the training arguments are not "
            "distributed, so each process would train alone on all the data and overwrite the same output_dir: "
            "on a machine without a GPU pass --use_cpu true (gloo), or use RetrievalTrainingArguments / "
            "RerankerTrainingArguments, which do it"
        )


@contextlib.contextmanager
def weights_swapped_in(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> Iterator[None]:
    """Let ``model`` hold the tensors of ``state_dict`` (e.g. gathered from FSDP or ZeRO-3 shards) for a while.

    Inside the block ``model.state_dict()`` (and so ``save_pretrained``) returns them; the model's own parameters
    come back afterwards. Names may carry wrapper prefixes (``module.``, ``_orig_mod.``...). A name the model
    does not have is an error; a missing one keeps the model's tensor (a LoRA model's frozen base, which
    DeepSpeed leaves out of the gathered adapter).

    Raises:
        ValueError: names that are not the model's.
    """
    own = model.state_dict(keep_vars=True)
    given: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        clean = name
        while clean.startswith(_WRAPPER_PREFIXES):
            clean = clean.split(".", 1)[1]
        clean = clean.replace("._checkpoint_wrapped_module", "").replace("._fsdp_wrapped_module", "")
        given[clean] = tensor
    unexpected = sorted(set(given) - set(own))
    if unexpected:
        raise ValueError(
            f"the state_dict to save names {len(unexpected)} tensors the model does not have, e.g. {unexpected[:3]}"
        )
    swapped: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for name, tensor in given.items():
            owner_name, _, attribute = name.rpartition(".")
            owner = model.get_submodule(owner_name)
            table = owner._parameters if attribute in owner._parameters else owner._buffers
            swapped.append((table, attribute, table[attribute]))
            table[attribute] = (
                nn.Parameter(tensor.detach(), requires_grad=False) if table is owner._parameters else tensor
            )
        yield
    finally:
        for table, attribute, original in reversed(swapped):
            table[attribute] = original


class ModelFolderTrainer(Trainer):
    """A ``transformers.Trainer`` whose every checkpoint is the model's own ``save_pretrained`` folder.

    A checkpoint therefore loads with the model's ``from_pretrained``, settings included, and a LoRA model
    checkpoints its adapter alone. Under FSDP (full state dict) and DeepSpeed ZeRO-3 the Trainer gathers the
    weights and hands them to :meth:`_save`, which writes those; resuming and loading the best model go through
    the Trainer's own FSDP / DeepSpeed loaders there, and through the model's ``load_weights`` otherwise.
    Evaluation runs an evaluator (``evaluate(model)``) on the main process, at any ``eval_strategy``, and
    ``load_best_model_at_end`` works with its metrics (``metric_for_best_model``, e.g. ``nDCG@10``).

    The base of :class:`RetrievalTrainer` and of the reranker trainer; the dataset's fields reach the collator
    whatever ``remove_unused_columns`` says (the model's ``forward`` does not name them).
    """

    def __init__(
        self,
        model: nn.Module,
        args: TrainingArguments,
        train_dataset: Any,
        data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
        evaluator: ModelEvaluator | None,
        callbacks: list[TrainerCallback] | None,
    ) -> None:
        check_distributed_launch(args)
        if args.eval_strategy != "no" and evaluator is None:
            raise ValueError(f"eval_strategy is {args.eval_strategy!r} but no evaluator was given")
        if args.load_best_model_at_end and args.metric_for_best_model in (None, "loss", "eval_loss"):
            raise ValueError(
                "load_best_model_at_end needs metric_for_best_model set to a metric the evaluator reports, "
                "e.g. 'nDCG@10' (the trainer computes no evaluation loss)"
            )
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
        self.evaluator = evaluator

    # ------------------------------------------------------------------ data: every field reaches the collator
    def _remove_unused_columns(self, dataset: Any, description: str | None = None) -> Any:
        return dataset

    def _get_collator_with_removed_columns(
        self, data_collator: Callable[..., Any], description: str | None = None
    ) -> Callable[..., Any]:
        return data_collator

    def _embed(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``model(**batch)``: on one process in groups of similar length (less padding computed, the same
        result); across processes in one forward, because every process must run as many forwards as the others
        (DDP broadcasts buffers, FSDP and ZeRO-3 gather weights at each one: a process that splits its batch
        into more groups than another waits for it forever)."""
        if self.args.world_size > 1:
            return model(**batch)
        return forward_by_length(lambda part: model(**part), batch)

    # ------------------------------------------------------------------ saving and loading
    def _unwrapped_model(self) -> Any:
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self._unwrapped_model()
        if state_dict is None:
            model.save_pretrained(output_dir)
        else:  # gathered by the Trainer (FSDP full state dict, DeepSpeed ZeRO-3): the local shards are not
            with weights_swapped_in(model, state_dict):
                model.save_pretrained(output_dir)
        logger.info("saved the model to %s", output_dir)

    def _sharded(self) -> bool:
        return bool(self.is_fsdp_enabled or self.is_deepspeed_enabled)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        if self._sharded():  # the Trainer's FSDP / DeepSpeed checkpoint files, written beside our folder
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        target = self.accelerator.unwrap_model(model) if model is not None else self._unwrapped_model()
        target.load_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        if self._sharded():
            super()._load_best_model()
            return
        if self.state.best_model_checkpoint is not None:
            self._unwrapped_model().load_weights(self.state.best_model_checkpoint)

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        eval_dataset: Any | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """The evaluator's metrics of the current model, as ``{prefix}_nDCG@10`` etc. (computed on the main
        process, shared with the others)."""
        if self.evaluator is None:
            raise ValueError(f"{type(self).__name__}.evaluate needs an evaluator")
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


def check_loss_fits_data(loss: nn.Module, dataset: Any) -> None:
    """Fail before training (before a model is loaded, where the caller can) on data that ``loss`` cannot learn
    from, as far as the dataset tells: scored pairs for a loss over groups or the reverse, too few documents per
    query, a distillation loss without teacher scores, a label outside the range the loss takes. The errors name
    the file and line of the first record at fault (:class:`~retrievals_rag.data.records.DataFormatError`).

    The rules are the loss's own declarations (:mod:`retrievals_rag.losses.protocol`), so both trainers and every
    model kind share them.

    Raises:
        ValueError: the loss and the data do not fit (a ``DataFormatError`` when one record is at fault).
    """
    from retrievals_rag.data.records import DataFormatError

    name = type(loss).__name__
    records = list(getattr(dataset, "records", None) or ())
    keys = getattr(dataset, "keys", None)
    scored = getattr(dataset, "format", None) == "scored"
    where = f" ({records[0].source})" if records else ""
    if scored and not takes_labels(loss):
        raise ValueError(
            f"{name} learns from groups (a query, its positive, hard negatives), but the training data{where} are "
            "scored pairs (query, document, label): train an embedder on them with loss cosent, a cross-encoder "
            "or LLM reranker with bce, or give records with 'positive' (and 'negative')"
        )
    if not scored and needs_labels(loss):
        raise ValueError(
            f"{name} learns from scored pairs (query, document, label), but the training data{where} are grouped "
            "records (query, positive, negative): give scored pairs, or train with a loss over groups (infonce, "
            "triplet; kl or margin_mse with teacher scores)"
        )
    group_size = getattr(dataset, "train_group_size", None)
    least = min_group_size(loss)
    if not scored and isinstance(group_size, int) and group_size < least:
        raise ValueError(
            f"{name} compares each query's positive with its own hard negatives: it needs train_group_size >= "
            f"{least}, got {group_size} (mine negatives with `retrievals-rag mine` if the records have none)"
        )
    if needs_teacher(loss):
        lacking = next((record for record in records if record.positive_scores is None), None)
        if lacking is not None:
            raise DataFormatError(
                lacking.source,
                lacking.line,
                keys.positive_scores if keys is not None else "positive_scores",
                f"missing: {name} distils a teacher's scores, so every record needs 'positive_scores' and "
                "'negative_scores' (a teacher's score of each passage; `retrievals-rag adapt --teacher` or a "
                "reranker's compute_score writes them)",
            )
    bounds = label_range(loss)
    if scored and bounds is not None:
        low, high = bounds
        outside = next(
            (r for r in records if r.label is not None and not low <= r.label <= high),
            None,
        )
        if outside is not None:
            raise DataFormatError(
                outside.source,
                outside.line,
                keys.label if keys is not None else "label",
                f"label {outside.label:g} is outside [{low:g}, {high:g}], which {name} needs (a probability of "
                "relevance); rescale the labels, e.g. divide graded relevance by its top grade",
            )


def adopt_model_instructions(dataset: Any, model: AutoModelForEmbedding) -> None:
    """Give a dataset built without instructions the model's, so that training sees what ``encode`` sees.

    Raises:
        ValueError: the dataset applies other instructions than the model (training and inference would see
            different texts).
    """
    for role in ("query", "document"):
        name = f"{role}_instruction"
        if not hasattr(dataset, name):
            continue
        ours, theirs = getattr(model, name), getattr(dataset, name)
        if theirs is None:
            setattr(dataset, name, ours)
        elif theirs != ours:
            raise ValueError(
                f"the dataset's {name} {theirs!r} differs from the model's {ours!r}: the model would be trained "
                f"on other texts than it encodes; build the dataset without {name} (it takes the model's)"
            )


DEFAULT_QUERY_MAX_LENGTH = 64


def text_max_length(model: AutoModelForEmbedding, option: str, given: int | None) -> int:
    """Tokens per text for the training option ``option`` (``query_max_length`` or ``document_max_length``):
    ``given``, else 64 for queries and the model's ``max_length`` for documents, never above the model's
    ``max_length`` (what ``encode`` truncates to, itself within the model's positions).

    Raises:
        ValueError: ``given`` is more than the model's ``max_length``, naming the option.
    """
    limit = model.max_length
    if given is None:
        return min(DEFAULT_QUERY_MAX_LENGTH, limit) if option == "query_max_length" else limit
    if given < 1:
        raise ValueError(f"{option} must be >= 1, got {given}")
    if given > limit:
        raise ValueError(
            f"{option} {given} is more than the model takes: its max_length is {limit} (at most its learned "
            f"positions); give {option}={limit} or less"
        )
    return given


class RetrievalTrainer(ModelFolderTrainer):
    """Fine-tune an :class:`AutoModelForEmbedding` with a retrieval loss.

    Args:
        model: the embedder; its settings (pooling, instructions, max length) are saved with every checkpoint.
        args: training arguments (``RetrievalTrainingArguments`` or plain ``TrainingArguments``).
        train_dataset: a :class:`RetrievalTrainDataset` (or any dataset of the same examples). One built without
            instructions takes the model's (``query_instruction`` / ``document_instruction``).
        loss: a loss module, e.g. ``InfoNCELoss()`` or ``build_loss("infonce")``, called as its ``loss_inputs``
            declare (:mod:`retrievals_rag.losses.protocol`): over embeddings,
            ``loss(query_embeddings, document_embeddings)``, for scored pairs
            ``loss(query_embeddings, document_embeddings, labels)``, for records with teacher scores
            ``loss(query_embeddings, document_embeddings, teacher_scores)``; a loss that runs the model itself
            (``loss_inputs`` naming ``"model"``, e.g. :class:`~retrievals_rag.losses.cached.GradCacheLoss`) as
            ``loss.model_loss(model, inputs)``. With ``args.grad_cache_chunk_size`` an embeddings loss is wrapped
            in a ``GradCacheLoss``.
        data_collator: default: an :class:`EmbeddingCollator` with the model's tokenizer and EOS setting.
        query_max_length: tokens per query for the default collator (default: 64, at most the model's
            ``max_length``, to which ``encode_queries`` truncates).
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
        query_max_length: int | None = None,
        document_max_length: int | None = None,
        evaluator: RetrievalEvaluator | ModelEvaluator | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> None:
        if not isinstance(model, AutoModelForEmbedding):
            raise TypeError(f"model must be an AutoModelForEmbedding, got {type(model).__name__}")
        forms = loss_inputs(loss)
        if "embeddings" not in forms and "model" not in forms:
            raise ValueError(
                f"{type(loss).__name__} takes {', '.join(forms)}: RetrievalTrainer trains embedders, with a loss "
                "over embeddings (or one that runs the model itself)"
            )
        check_loss_fits_data(loss, train_dataset)
        adopt_model_instructions(train_dataset, model)
        if data_collator is None:
            data_collator = EmbeddingCollator(
                model.tokenizer,
                query_max_length=text_max_length(model, "query_max_length", query_max_length),
                document_max_length=text_max_length(model, "document_max_length", document_max_length),
                append_eos=model.settings.append_eos,
            )
        freeze_unused_pooler(model.model.get_base_model() if model.has_lora else model.model)
        super().__init__(model, args, train_dataset, data_collator, evaluator, callbacks)
        chunk_size = getattr(args, "grad_cache_chunk_size", None)
        if chunk_size and "model" not in forms:  # GradCache around the given loss
            from retrievals_rag.losses.cached import GradCacheLoss

            loss = GradCacheLoss(loss, chunk_size)
            forms = loss_inputs(loss)
        self.loss = loss
        self.runs_model = "model" in forms

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.runs_model:  # the loss encodes the batch itself (GradCache: chunk by chunk)
            loss = self.loss.model_loss(model, inputs)
            return (loss, {}) if return_outputs else loss
        query_embeddings = self._embed(model, inputs["query"])  # (batch, dim)
        document_embeddings = self._embed(model, inputs["documents"])  # (batch * group_size, dim)
        loss = self.loss(query_embeddings, document_embeddings, *extra_inputs(self.loss, inputs))
        if return_outputs:
            return loss, {"query_embeddings": query_embeddings, "document_embeddings": document_embeddings}
        return loss
