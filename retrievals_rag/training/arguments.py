"""Argument dataclasses for training. They drive both Python code and the CLI (through ``HfArgumentParser``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from transformers import TrainingArguments

from retrievals_rag.losses.registry import DISTILLATION_LOSSES, losses_for_kind, resolve_loss
from retrievals_rag.models.registry import kind_spec, ranker_kinds

if TYPE_CHECKING:
    from retrievals_rag.models.lora import LoraSettings

LossName = Literal["infonce", "triplet", "cosent", "margin_mse", "kl"]
# the command line's spellings and the registry's (models/registry.py), which mean the same kinds
RerankerKind = Literal["cross-encoder", "llm", "colbert", "cross_encoder", "llm_ranker"]
RerankerLossName = Literal["listwise", "bce", "kl", "margin_mse", "infonce"]

# The losses each kind of reranker trains with, by the command line's spelling; the first is the default (for
# scored pairs: bce). Read from the loss registry, which states it once.
RERANKER_LOSSES: dict[str, tuple[str, ...]] = {
    alias: losses_for_kind(spec.name) for spec in ranker_kinds() for alias in (*spec.aliases[:1], spec.name)
}
__all__ = [
    "DISTILLATION_LOSSES",
    "RERANKER_LOSSES",
    "EmbeddingModelArguments",
    "LoraArguments",
    "RerankerDataArguments",
    "RerankerModelArguments",
    "RerankerTrainingArguments",
    "RetrievalDataArguments",
    "RetrievalTrainingArguments",
    "resolve_reranker_loss",
]


@dataclass
class LoraArguments:
    """LoRA options, shared by every model's arguments; :meth:`lora_settings` maps them onto
    :class:`~retrievals_rag.models.lora.LoraSettings`."""

    use_lora: bool = field(default=False, metadata={"help": "train LoRA adapters instead of all weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "linear layers to adapt (default: all linear layers; an LLM ranker's LM head excepted)"
        },
    )

    def __post_init__(self) -> None:
        if self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
        if self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError(
                f"invalid LoRA options: lora_alpha={self.lora_alpha}, lora_dropout={self.lora_dropout}"
            )

    def lora_settings(self) -> LoraSettings:
        """The :class:`~retrievals_rag.models.lora.LoraSettings` these options describe."""
        from retrievals_rag.models.lora import LoraSettings

        return LoraSettings(
            r=self.lora_r,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=tuple(self.lora_target_modules) if self.lora_target_modules else None,
        )


@dataclass
class EmbeddingModelArguments(LoraArguments):
    """Which model to fine-tune and how it embeds (and the LoRA options of :class:`LoraArguments`)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "model folder to start from (default: the packaged all-MiniLM-L6-v2)"}
    )
    pooling_method: Literal["cls", "mean", "last", "weighted_mean"] | None = field(
        default=None,
        metadata={"help": "default: the folder's own, else last for decoder LLMs, mean for encoders"},
    )
    normalize_embeddings: bool | None = field(
        default=None, metadata={"help": "default: the folder's own, else true"}
    )
    query_instruction: str | None = field(
        default=None,
        metadata={"help": "prefix for queries ({} is a placeholder for the text); saved with the model"},
    )
    document_instruction: str | None = field(
        default=None, metadata={"help": "prefix for documents; saved too"}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom modelling code"})


_HOLDOUT_HELP = (
    "without eval_data: the share of the training queries held out to judge the run before and after "
    "(default: 0.1 when the data hold at least 50 queries, else none; 0 turns it off)"
)


def _check_holdout(fraction: float | None) -> None:
    if fraction is not None and not 0 <= fraction <= 0.5:
        raise ValueError(f"holdout_fraction must lie in [0, 0.5], got {fraction}")


@dataclass
class RetrievalDataArguments:
    """Training data (pair, triplet or scored-pair records) and what judges the run: a BEIR folder
    (``eval_data``) or, without one, a held-out slice of the training queries (``holdout_fraction``)."""

    train_data: str = field(
        default=None,  # type: ignore[assignment]
        metadata={"help": "a .jsonl/.json file or a folder of them (pair, triplet or scored-pair records)"},
    )
    train_group_size: int = field(
        default=1,
        metadata={"help": "documents per query: 1 positive + (n-1) hard negatives; 1 = in-batch only"},
    )
    query_max_length: int | None = field(
        default=None,
        metadata={
            "help": "tokens per query, special tokens included (default: 64, at most the model's max length)"
        },
    )
    document_max_length: int | None = field(
        default=None,
        metadata={
            "help": "tokens per document, in training and in the saved model (default: the model's max length)"
        },
    )
    query_key: str = field(default="query", metadata={"help": "field name of the query"})
    positive_key: str = field(default="positive", metadata={"help": "field name of the positives"})
    negative_key: str = field(default="negative", metadata={"help": "field name of the negatives"})
    eval_data: str | None = field(
        default=None,
        metadata={"help": "BEIR folder to evaluate on before, during (eval_strategy) and after training"},
    )
    eval_split: str = field(default="test", metadata={"help": "qrels split of eval_data"})
    holdout_fraction: float | None = field(default=None, metadata={"help": _HOLDOUT_HELP})

    def __post_init__(self) -> None:
        if self.train_data is None:
            raise ValueError("train_data is required (a .jsonl/.json file or a folder of them)")
        if self.train_group_size < 1:
            raise ValueError(f"train_group_size must be >= 1, got {self.train_group_size}")
        _check_holdout(self.holdout_fraction)


@dataclass
class _TrainingArgumentsBase(TrainingArguments):
    """``transformers.TrainingArguments`` with the defaults every task here wants.

    - bf16 where the GPU supports it; asked for (``--bf16 true``) on a machine without an accelerator, bf16
      autocast on the CPU;
    - the loss logged at an interval that suits the run's length (``logging_steps`` 0.02: every 2% of the
      optimizer steps, so about 50 points per run and every step of a short one);
    - under ``torchrun`` / ``accelerate launch`` on a machine without a GPU, ``use_cpu`` (gloo), so that the
      processes train together instead of each alone on all the data;
    - with ``load_best_model_at_end``, ``metric_for_best_model`` nDCG@10 unless given;
    - ``eval_steps``, unless given: at each save when ``load_best_model_at_end`` keeps the best checkpoint, else
      every 10% of the run (not the logging interval: an evaluation costs more than a log line).
    """

    bf16: bool | None = field(  # type: ignore[assignment]
        default=None,
        metadata={
            "help": "bf16 mixed precision; default: on where the GPU supports it (fp16 can stall grad_norm)"
        },
    )
    logging_steps: float = field(
        default=0.02,
        metadata={
            "help": "log the loss every N optimizer steps, or below 1 every such share of the run's steps "
            "(default 0.02: about 50 points per run, every step of a run of 50 steps or fewer)"
        },
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "kept off: our collator needs every field"}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "off: every trainable weight is used (the BERT pooler is frozen)"}
    )
    grad_cache_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "GradCache: encode the batch this many rows at a time and re-run each chunk with the cached "
            "gradient of the loss, so a large contrastive batch fits in the memory of a small one (embedder, ColBERT)"
        },
    )

    def __post_init__(self) -> None:
        if self.grad_cache_chunk_size is not None and self.grad_cache_chunk_size < 1:
            raise ValueError(f"grad_cache_chunk_size must be >= 1, got {self.grad_cache_chunk_size}")
        if not self.use_cpu and _launched_as_processes() > 1 and not _has_accelerator():
            # without this, transformers sets up no process group: N copies each train on all the data
            self.use_cpu = True
        if self.bf16 is None:
            self.bf16 = _gpu_supports_bf16() and not self.fp16 and not self.use_cpu
        elif self.bf16 and not self.use_cpu and not _has_accelerator():
            # bf16 asked for where training runs on the CPU anyway: autocast there (1.26x on 2 AVX512-BF16 cores,
            # bench_train.py), instead of transformers' "Your setup doesn't support bf16/gpu"
            self.use_cpu = True
        if self.dataloader_pin_memory and not _has_gpu():
            # pinning needs an accelerator; torch warns on every epoch otherwise
            self.dataloader_pin_memory = False
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            self.metric_for_best_model = "nDCG@10"
        if self.eval_strategy == "steps" and self.eval_steps is None:
            # not the logging share (50 evaluations a run): at each save when the best one is kept, else 10 a run
            keep_best = self.load_best_model_at_end and self.save_strategy == "steps"
            self.eval_steps = self.save_steps if keep_best else 0.1
        super().__post_init__()


@dataclass
class RetrievalTrainingArguments(_TrainingArgumentsBase):
    """``transformers.TrainingArguments`` plus the loss; bf16 is on by default where the GPU supports it."""

    loss: LossName = field(default="infonce", metadata={"help": "training objective"})
    temperature: float = field(default=0.05, metadata={"help": "InfoNCE / KL temperature"})
    margin: float = field(default=0.2, metadata={"help": "triplet margin"})
    use_inbatch_negatives: bool = field(
        default=True, metadata={"help": "InfoNCE: score each query against every document in the batch"}
    )
    gather_negatives_across_processes: bool = field(
        default=False, metadata={"help": "InfoNCE: use the documents of every process as negatives (DDP)"}
    )
    matryoshka_dims: list[int] | None = field(
        default=None, metadata={"help": "also train truncated embeddings of these sizes (Matryoshka)"}
    )

    def loss_options(self) -> dict[str, object]:
        """The options of the chosen loss, by the names its class takes."""
        options: dict[str, dict[str, object]] = {
            "infonce": {
                "temperature": self.temperature,
                "use_inbatch_negatives": self.use_inbatch_negatives,
                "gather_across_processes": self.gather_negatives_across_processes,
            },
            "triplet": {"margin": self.margin},
            "cosent": {},
            "margin_mse": {},
            "kl": {"temperature": self.temperature},
        }
        return options[self.loss]


@dataclass
class RerankerModelArguments(LoraArguments):
    """Which reranker to fine-tune: a cross-encoder, an LLM reranker (with LoRA) or ColBERT, and its settings.

    The settings are saved with the model, so inference scores exactly the inputs that training saw. ``kind``
    takes the command line's spellings (``cross-encoder``, ``llm``, ``colbert``) and the saved ones
    (``cross_encoder``, ``llm_ranker``); :attr:`kind_name` is the registry's.
    """

    kind: RerankerKind = field(
        default="cross-encoder",
        metadata={"help": "cross-encoder (classification head), llm ('Yes' logit) or colbert (MaxSim)"},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "model folder to start from (default for cross-encoder and colbert: the packaged "
            "all-MiniLM-L6-v2 with a fresh head / projection; llm: required)"
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "tokens per (query, document) input; colbert: per document (default: the folder's own)"
        },
    )
    query_instruction: str | None = field(
        default=None,
        metadata={
            "help": "cross-encoder / llm: prefix for queries ({} is a placeholder); saved with the model"
        },
    )
    document_instruction: str | None = field(
        default=None, metadata={"help": "cross-encoder / llm: prefix for documents; saved too"}
    )
    prompt: str | None = field(default=None, metadata={"help": "llm: the task prompt that ends every input"})
    target_token: str | None = field(
        default=None,
        metadata={"help": "llm: the answer whose first token's logit is the score (default Yes)"},
    )
    query_max_length: int | None = field(default=None, metadata={"help": "colbert: tokens per query"})
    colbert_dim: int | None = field(default=None, metadata={"help": "colbert: size of the token vectors"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom modelling code"})

    @property
    def kind_name(self) -> str:
        """The kind's one spelling in the model registry (``cross_encoder``, ``llm_ranker``, ``colbert``)."""
        return kind_spec(self.kind).name

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            spec = kind_spec(self.kind)
        except ValueError:
            spec = None
        if spec is None or not spec.ranker:
            raise ValueError(f"kind must be one of {', '.join(RERANKER_LOSSES)}, got {self.kind!r}")
        only_for = {
            "query_instruction": ("cross_encoder", "llm_ranker"),
            "document_instruction": ("cross_encoder", "llm_ranker"),
            "prompt": ("llm_ranker",),
            "target_token": ("llm_ranker",),
            "query_max_length": ("colbert",),
            "colbert_dim": ("colbert",),
        }
        for name, kinds in only_for.items():
            if getattr(self, name) is not None and spec.name not in kinds:
                shown = " / ".join(
                    kind_spec(kind).aliases[0] if kind_spec(kind).aliases else kind for kind in kinds
                )
                raise ValueError(f"{name} applies to --kind {shown}, not {self.kind}")
        if spec.name == "llm_ranker" and not self.model_name_or_path:
            raise ValueError("--kind llm needs model_name_or_path (a local decoder LLM folder)")


@dataclass
class RerankerDataArguments:
    """Reranker training data: pair / triplet records grouped per query (with optional teacher scores for
    distillation), or scored pairs for pointwise training; and what judges the run: a BEIR folder whose first
    stage's top-k the reranker reorders (``eval_data``), or a held-out slice of the training queries."""

    train_data: str = field(
        default=None,  # type: ignore[assignment]
        metadata={"help": "a .jsonl/.json file or a folder of them (triplet, pair or scored-pair records)"},
    )
    train_group_size: int = field(
        default=8,
        metadata={
            "help": "documents per query: 1 positive + (n-1) hard negatives (ignored for scored pairs)"
        },
    )
    query_key: str = field(default="query", metadata={"help": "field name of the query"})
    positive_key: str = field(default="positive", metadata={"help": "field name of the positives"})
    negative_key: str = field(default="negative", metadata={"help": "field name of the negatives"})
    eval_data: str | None = field(
        default=None,
        metadata={
            "help": "BEIR folder: the reranker reorders the first stage's top-k of each query, before, during "
            "(eval_strategy) and after training"
        },
    )
    eval_split: str = field(default="test", metadata={"help": "qrels split of eval_data"})
    first_stage: str | None = field(
        default=None,
        metadata={
            "help": "eval_data's first stage: a run file (.json {query: {doc: score}} or TREC .trec/.txt) or an "
            "embedder folder (default: the packaged all-MiniLM-L6-v2, dense)"
        },
    )
    rerank_top_k: int = field(default=100, metadata={"help": "first-stage documents reranked per query"})
    holdout_fraction: float | None = field(default=None, metadata={"help": _HOLDOUT_HELP})

    def __post_init__(self) -> None:
        if self.train_data is None:
            raise ValueError("train_data is required (a .jsonl/.json file or a folder of them)")
        if self.train_group_size < 1:
            raise ValueError(f"train_group_size must be >= 1, got {self.train_group_size}")
        if self.rerank_top_k < 1:
            raise ValueError(f"rerank_top_k must be >= 1, got {self.rerank_top_k}")
        if self.first_stage is not None and self.eval_data is None:
            raise ValueError("first_stage is the first stage of eval_data: give eval_data too")
        _check_holdout(self.holdout_fraction)


@dataclass
class RerankerTrainingArguments(_TrainingArgumentsBase):
    """``transformers.TrainingArguments`` plus the reranker's loss; see :data:`RERANKER_LOSSES` for the losses
    each kind takes."""

    loss: RerankerLossName | None = field(
        default=None,
        metadata={
            "help": "cross-encoder / llm: listwise (default), bce (default for scored pairs), kl, margin_mse; "
            "colbert: infonce (default), kl, margin_mse. kl and margin_mse distil the records' teacher scores"
        },
    )
    temperature: float = field(
        default=1.0, metadata={"help": "scores are divided by it in listwise, infonce and kl (1: raw scores)"}
    )
    use_inbatch_negatives: bool = field(
        default=True,
        metadata={"help": "colbert infonce: score each query against every document of the batch"},
    )
    gather_negatives_across_processes: bool = field(
        default=False,
        metadata={"help": "colbert infonce: use the documents of every process as negatives (DDP)"},
    )

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        super().__post_init__()


def resolve_reranker_loss(kind: str, loss: str | None, scored_pairs: bool = False) -> str:
    """The loss a reranker of ``kind`` trains with: ``loss``, checked, or the kind's default.

    A thin call of :func:`retrievals_rag.losses.registry.resolve_loss`, which states which loss fits which kind.

    Raises:
        ValueError: a loss that does not fit the kind or the data, with the ones that do.
    """
    return resolve_loss(kind, loss, scored_pairs=scored_pairs)


def _launched_as_processes() -> int:
    """How many processes torchrun / accelerate launched (1 outside such a launch)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return bool(accelerator.is_available())
    return bool(torch.cuda.is_available())


def _has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _gpu_supports_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
