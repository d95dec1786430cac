"""Argument dataclasses for training. They drive both Python code and the CLI (through ``HfArgumentParser``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

LossName = Literal["infonce", "triplet", "cosent", "margin_mse", "kl"]


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
class RetrievalTrainingArguments(TrainingArguments):
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

    def __post_init__(self) -> None:
        if self.bf16 is None:
            self.bf16 = _gpu_supports_bf16() and not self.fp16 and not getattr(self, "use_cpu", False)
        if self.dataloader_pin_memory and not _has_gpu():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; torch warns on every epoch otherwise
        super().__post_init__()

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


def _has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _gpu_supports_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
