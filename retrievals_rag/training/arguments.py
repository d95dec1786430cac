"""Argument dataclasses for training. They drive both Python code and the CLI (through ``HfArgumentParser``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

LossName = Literal["infonce", "triplet", "cosent", "margin_mse", "kl"]
RerankerKind = Literal["cross-encoder", "llm", "colbert"]
RerankerLossName = Literal["listwise", "bce", "kl", "margin_mse", "infonce"]

# The losses each kind of reranker trains with; the first is the default (for scored pairs: bce).
RERANKER_LOSSES: dict[str, tuple[str, ...]] = {
    "cross-encoder": ("listwise", "bce", "kl", "margin_mse"),
    "llm": ("listwise", "bce", "kl", "margin_mse"),
    "colbert": ("infonce", "kl", "margin_mse"),
}
# Losses that compare the student with a teacher's scores carried by the records.
DISTILLATION_LOSSES = ("kl", "margin_mse")


@dataclass
class EmbeddingModelArguments:
    """Which model to fine-tune and how it embeds."""

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
    use_lora: bool = field(default=False, metadata={"help": "train LoRA adapters instead of all weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "linear layers to adapt (default: all linear layers)"}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom modelling code"})

    def __post_init__(self) -> None:
        if self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")


@dataclass
class RetrievalDataArguments:
    """Training data (pair, triplet or scored-pair records) and optional BEIR evaluation data."""

    train_data: str = field(
        default=None,  # type: ignore[assignment]
        metadata={"help": "a .jsonl/.json file or a folder of them (pair, triplet or scored-pair records)"},
    )
    train_group_size: int = field(
        default=1,
        metadata={"help": "documents per query: 1 positive + (n-1) hard negatives; 1 = in-batch only"},
    )
    query_max_length: int = field(default=64, metadata={"help": "tokens per query, special tokens included"})
    document_max_length: int | None = field(
        default=None, metadata={"help": "tokens per document (default: the model's max length)"}
    )
    query_key: str = field(default="query", metadata={"help": "field name of the query"})
    positive_key: str = field(default="positive", metadata={"help": "field name of the positives"})
    negative_key: str = field(default="negative", metadata={"help": "field name of the negatives"})
    eval_data: str | None = field(
        default=None, metadata={"help": "BEIR folder to evaluate on during and after training"}
    )
    eval_split: str = field(default="test", metadata={"help": "qrels split of eval_data"})

    def __post_init__(self) -> None:
        if self.train_data is None:
            raise ValueError("train_data is required (a .jsonl/.json file or a folder of them)")
        if self.train_group_size < 1:
            raise ValueError(f"train_group_size must be >= 1, got {self.train_group_size}")


@dataclass
class _TrainingArgumentsBase(TrainingArguments):
    """``transformers.TrainingArguments`` with the defaults every task here wants (bf16 where supported)."""

    bf16: bool | None = field(  # type: ignore[assignment]
        default=None,
        metadata={
            "help": "bf16 mixed precision; default: on where the GPU supports it (fp16 can stall grad_norm)"
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
        if self.bf16 is None:
            self.bf16 = _gpu_supports_bf16() and not self.fp16 and not getattr(self, "use_cpu", False)
        if self.dataloader_pin_memory and not _has_gpu():
            # pinning needs an accelerator; torch warns on every epoch otherwise
            self.dataloader_pin_memory = False
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
class RerankerModelArguments:
    """Which reranker to fine-tune: a cross-encoder, an LLM reranker (with LoRA) or ColBERT, and its settings.

    The settings are saved with the model, so inference scores exactly the inputs that training saw.
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
    use_lora: bool = field(
        default=False, metadata={"help": "llm: train LoRA adapters instead of all weights"}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "linear layers to adapt (default: all linear layers but the LM head)"}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom modelling code"})

    def __post_init__(self) -> None:
        if self.kind not in RERANKER_LOSSES:
            raise ValueError(f"kind must be one of {', '.join(RERANKER_LOSSES)}, got {self.kind!r}")
        only_for = {
            "query_instruction": ("cross-encoder", "llm"),
            "document_instruction": ("cross-encoder", "llm"),
            "prompt": ("llm",),
            "target_token": ("llm",),
            "query_max_length": ("colbert",),
            "colbert_dim": ("colbert",),
            "lora_target_modules": ("llm",),
        }
        for name, kinds in only_for.items():
            if getattr(self, name) is not None and self.kind not in kinds:
                raise ValueError(f"{name} applies to --kind {' / '.join(kinds)}, not {self.kind}")
        if self.use_lora and self.kind != "llm":
            raise ValueError(f"use_lora applies to --kind llm; a {self.kind} trains all its weights")
        if self.kind == "llm" and not self.model_name_or_path:
            raise ValueError("--kind llm needs model_name_or_path (a local decoder LLM folder)")
        if self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")


@dataclass
class RerankerDataArguments:
    """Reranker training data: pair / triplet records grouped per query (with optional teacher scores for
    distillation), or scored pairs for pointwise training."""

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

    def __post_init__(self) -> None:
        if self.train_data is None:
            raise ValueError("train_data is required (a .jsonl/.json file or a folder of them)")
        if self.train_group_size < 1:
            raise ValueError(f"train_group_size must be >= 1, got {self.train_group_size}")


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

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        super().__post_init__()


def resolve_reranker_loss(kind: str, loss: str | None, scored_pairs: bool = False) -> str:
    """The loss a reranker of ``kind`` trains with: ``loss``, checked, or the kind's default.

    Args:
        kind: ``"cross-encoder"``, ``"llm"`` or ``"colbert"``.
        loss: a loss name, or None for the default (``bce`` for scored pairs, else the kind's first).
        scored_pairs: the data are scored (query, document, label) pairs rather than groups.

    Raises:
        ValueError: a loss that does not fit the kind or the data, with the ones that do.
    """
    if kind not in RERANKER_LOSSES:
        raise ValueError(f"unknown reranker kind {kind!r}; known kinds: {', '.join(RERANKER_LOSSES)}")
    allowed = RERANKER_LOSSES[kind]
    if scored_pairs:
        if "bce" not in allowed:
            raise ValueError(
                f"a {kind} reranker does not train on scored pairs (query, document, label): its scores are "
                "not probabilities; give it grouped records (query, positive, negative)"
            )
        if loss not in (None, "bce"):
            raise ValueError(f"scored pairs (query, document, label) train with loss bce, not {loss!r}")
        return "bce"
    if loss is None:
        return allowed[0]
    if loss not in allowed:
        hint = {
            "infonce": " (in-batch negatives need independent query and document encodings: use listwise)",
            "listwise": " (ColBERT's infonce is listwise over the group plus in-batch negatives; "
            "--use_inbatch_negatives false keeps only the group)",
            "bce": " (MaxSim scores are unbounded sums, not logits)",
        }.get(loss, "")
        raise ValueError(
            f"loss {loss!r} does not fit a {kind} reranker{hint}; choose one of {', '.join(allowed)}"
        )
    return loss


def _has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _gpu_supports_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
