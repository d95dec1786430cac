"""Dense embedders: encoder models (BERT, MiniLM, ...) and decoder LLMs (Llama, Qwen2, Mistral, ...)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import torch
from torch import nn

from retrievals_rag.data.tokenization import apply_instruction, pad_sequences, tokenize_texts
from retrievals_rag.models.backends import (
    BackendChoice,
    BackendName,
    backend_of,
    check_trainable,
    load_backend_transformer,
    resolve_backend,
)
from retrievals_rag.models.batching import iter_token_batches
from retrievals_rag.models.config import EmbeddingSettings, read_model_kind, read_settings, save_settings
from retrievals_rag.models.loading import (
    DtypeName,
    default_max_length,
    is_decoder_only,
    load_backbone,
    load_config,
    load_saved_weights,
    load_tokenizer,
    make_tokenizer_append_eos,
    resolve_device,
    resolve_dtype,
    resolve_model_path,
    tokenizer_appends_eos,
)
from retrievals_rag.models.lora import (
    LoraSettings,
    adapter_base_model,
    apply_lora,
    is_adapter_folder,
    is_lora_model,
    load_adapter,
    merged_copy,
)
from retrievals_rag.models.pooling import PoolingMethod, check_pooling_method, pool
from retrievals_rag.models.st_format import (
    read_sentence_transformers_layout,
    write_sentence_transformers_layout,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

OutputFormat = Literal["numpy", "torch"]
# Padded tokens per batch. On a CPU throughput is flat above a few thousand tokens; a GPU wants more work.
DEFAULT_TOKEN_BUDGET = {"cpu": 4_096, "cuda": 131_072}
DEFAULT_MAX_BATCH_SIZE = {"cpu": 256, "cuda": 1024}
PROGRESS_BAR_MIN_TEXTS = 1_000


def _check_texts(texts: Sequence[str]) -> None:
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")


class AutoModelForEmbedding(nn.Module):
    """A transformer plus pooling that turns texts into vectors, for retrieval and for fine-tuning.

    Load with :meth:`from_pretrained`; encode with :meth:`encode_queries` / :meth:`encode_corpus` (which apply
    the query and document instructions) or :meth:`encode`; save with :meth:`save_pretrained`, which writes a
    folder that loads identically here and in sentence-transformers. ``forward`` returns pooled (and, if
    configured, normalised) embeddings with gradients, for training.

    Example:
        >>> model = AutoModelForEmbedding.from_pretrained("path/to/minilm")  # doctest: +SKIP
        >>> model.encode_queries(["what is dense retrieval?"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        settings: EmbeddingSettings,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self._decoder_only = is_decoder_only(model.config)
        self.eval()  # inference mode until a trainer (or the caller) asks for train()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike[str],
        pooling_method: PoolingMethod | None = None,
        use_fp16: bool = False,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        normalize_embeddings: bool | None = None,
        trust_remote_code: bool = False,
        dtype: DtypeName | None = None,
        merge_lora: bool = False,
        backend: BackendChoice = "torch",
    ) -> AutoModelForEmbedding:
        """Load an embedder from a local folder.

        Settings come, in order of precedence, from the arguments given here, the folder's own
        ``retrievals_rag_config.json``, its sentence-transformers files (pooling, Normalize module,
        ``max_seq_length``, ``prompts``), and defaults: ``last`` pooling for decoder LLMs and ``mean`` for
        encoders, normalised vectors, the tokenizer's maximum length.

        Args:
            model_name_or_path: a model folder (or a hub id, where the machine can reach the hub).
            pooling_method: ``"cls"``, ``"mean"``, ``"last"`` or ``"weighted_mean"``.
            use_fp16: half precision on a GPU; on the CPU it falls back to float32 with a warning.
            query_instruction: prefix for queries (``{}`` is a placeholder for the text).
            document_instruction: prefix for documents (same rules); ``""`` means none.
            max_length: tokens per text, special tokens included.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None picks CUDA when available.
            normalize_embeddings: L2-normalise the vectors.
            trust_remote_code: allow custom modelling code from the folder.
            dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``; overrides ``use_fp16``.
            merge_lora: for a folder holding a LoRA adapter (saved by :meth:`save_pretrained` after LoRA
                training), fold the adapter into the base weights instead of keeping it as a separate module.
                Both give the same vectors.
            backend: ``"torch"``, an exported graph of the folder (``"onnx"``, ``"onnx-int8"``,
                ``"openvino"``, ``"openvino-int8"``: see ``retrievals-rag export``), or ``"auto"``, the fastest
                one the folder holds on this device. Pooling, instructions and batching are the same for all.
        """
        path = resolve_model_path(model_name_or_path)
        kind = read_model_kind(path) if Path(path).is_dir() else None
        if kind not in (None, "embedding"):
            raise ValueError(
                f"{path} holds a {kind} model, not an embedding model: load it with "
                f"{'ColBERT' if kind == 'colbert' else 'AutoModelForRanking'}.from_pretrained"
            )
        saved = read_settings(path) if Path(path).is_dir() else None
        adapter_path = path if is_adapter_folder(path) else None
        layout = read_sentence_transformers_layout(path) if Path(path).is_dir() and not adapter_path else None
        weights_path = str(layout.transformer_path) if layout is not None else path
        if adapter_path is not None:
            weights_path = resolve_model_path(adapter_base_model(adapter_path))
        config = load_config(weights_path, trust_remote_code)
        decoder_only = is_decoder_only(config)
        tokenizer = load_tokenizer(adapter_path or weights_path, trust_remote_code=trust_remote_code)

        def pick(name: str, explicit: Any, from_st: Any, fallback: Any) -> Any:
            if explicit is not None:
                return explicit
            if saved is not None and name in saved:
                return saved[name]
            if from_st is not None:
                return from_st
            return fallback

        pooling = pick(
            "pooling_method",
            pooling_method,
            layout.pooling_method if layout else None,
            "last" if decoder_only else "mean",
        )
        check_pooling_method(pooling)
        if layout is not None:
            st_normalize: bool | None = layout.normalize_embeddings
        else:
            st_normalize = None
        settings = EmbeddingSettings(
            pooling_method=pooling,
            normalize_embeddings=bool(pick("normalize_embeddings", normalize_embeddings, st_normalize, True)),
            max_length=int(
                pick("max_length", max_length, layout.max_length if layout else None, None)
                or default_max_length(tokenizer, config)
            ),
            query_instruction=pick(
                "query_instruction", query_instruction, layout.query_instruction if layout else None, None
            ),
            document_instruction=pick(
                "document_instruction",
                document_instruction,
                layout.document_instruction if layout else None,
                None,
            ),
        )
        if saved is not None and "append_eos" in saved:
            settings = replace(settings, append_eos=bool(saved["append_eos"]))
        elif decoder_only and pooling == "last" and not tokenizer_appends_eos(tokenizer):
            # Pool the EOS token, as LLM embedders are trained to; let the tokenizer add it where it can.
            settings = replace(settings, append_eos=not make_tokenizer_append_eos(tokenizer))
        if decoder_only:
            # Right padding with an explicit mask; "last" pooling finds the last real token on either side.
            tokenizer.padding_side = "right"
        resolved_device = resolve_device(device)
        backend_name = resolve_backend(path, backend, resolved_device.type)
        if backend_name != "torch":
            graph = load_backend_transformer(path, backend_name, "base", config=config)
            return cls(graph, tokenizer, settings)
        model = load_backbone(
            weights_path,
            dtype=resolve_dtype(resolved_device, use_fp16, dtype),
            device=resolved_device,
            trust_remote_code=trust_remote_code,
        )
        if adapter_path is not None:
            model = load_adapter(model, adapter_path, merge=merge_lora)
        return cls(model, tokenizer, settings)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        parameter = next(self.parameters(), None)  # an exported graph has none and runs on the CPU
        return parameter.device if parameter is not None else torch.device("cpu")

    @property
    def backend(self) -> BackendName:
        """What runs the transformer: ``"torch"`` or an exported graph (``"onnx-int8"``, ...)."""
        return backend_of(self.model)

    @property
    def embedding_dimension(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def pooling_method(self) -> PoolingMethod:
        return self.settings.pooling_method

    @property
    def max_length(self) -> int:
        return self.settings.max_length

    @property
    def query_instruction(self) -> str | None:
        return self.settings.query_instruction

    @property
    def document_instruction(self) -> str | None:
        return self.settings.document_instruction

    @property
    def normalize_embeddings(self) -> bool:
        return self.settings.normalize_embeddings

    # ------------------------------------------------------------------ forward (training and inference)
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        normalize: bool | None = None,
    ) -> torch.Tensor:
        """Pooled embeddings ``(batch, dim)`` of tokenized inputs, with gradients when enabled.

        Args:
            input_ids: ``(batch, seq_len)``.
            attention_mask: ``(batch, seq_len)``, 1 for real tokens.
            token_type_ids: optional, for models that take them.
            normalize: L2-normalise; None uses the model's setting.
        """
        inputs: dict[str, torch.Tensor | bool | None] = {"input_ids": input_ids}
        # A batch with no padding needs no mask, which lets SDPA take its fastest kernel.
        inputs["attention_mask"] = attention_mask if bool((attention_mask == 0).any()) else None
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if self._decoder_only:
            inputs["use_cache"] = False
        hidden = self.model(**inputs).last_hidden_state  # (batch, seq_len, dim)
        embeddings = pool(hidden, attention_mask, self.settings.pooling_method)
        if self.settings.normalize_embeddings if normalize is None else normalize:
            embeddings = torch.nn.functional.normalize(embeddings.float(), dim=-1)
        return embeddings

    # ------------------------------------------------------------------ training support
    def enable_lora(self, settings: LoraSettings | None = None) -> None:
        """Wrap the backbone in LoRA adapters (only they train). Save with :meth:`save_pretrained`."""
        check_trainable(self.model, "add LoRA adapters")
        if is_lora_model(self.model):
            raise ValueError("this model already has a LoRA adapter")
        self.model = apply_lora(self.model, settings or LoraSettings())

    @property
    def has_lora(self) -> bool:
        return is_lora_model(self.model)

    def activation_checkpointing_enable(
        self,
        activation_checkpointing_kwargs: dict[str, Any] | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """Recompute activations in the backward pass (less memory); called by the HF Trainer."""
        backbone = self.model.get_base_model() if self.has_lora else self.model
        if self.has_lora:
            # inputs of a frozen embedding layer need gradients for checkpointed LoRA layers to get theirs
            backbone.enable_input_require_grads()
        backbone.activation_checkpointing_enable(
            activation_checkpointing_kwargs=activation_checkpointing_kwargs,
            every_n_layers=every_n_layers,
            offload=offload,
        )

    def load_weights(self, directory: str | os.PathLike[str]) -> None:
        """Load weights saved by :meth:`save_pretrained` into this model (resuming from a checkpoint)."""
        load_saved_weights(self.model, directory)

    # ------------------------------------------------------------------ tokenization
    def tokenize_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts``: truncated to ``max_length``, special tokens added, EOS appended if set."""
        return tokenize_texts(self.tokenizer, texts, self.settings.max_length, self.settings.append_eos)

    def tokenize(self, texts: list[str], padding_side: str | None = None) -> dict[str, torch.Tensor]:
        """Tokenize and pad ``texts`` into model inputs (``input_ids``, ``attention_mask``), padded per batch."""
        input_ids, attention_mask = pad_sequences(
            self.tokenize_ids(texts),
            self.tokenizer.pad_token_id,
            padding_side or self.tokenizer.padding_side,
        )
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    # ------------------------------------------------------------------ encoding
    @overload
    def encode(
        self,
        texts: str,
        *,
        instruction: str | None = ...,
        batch_size: int | None = ...,
        token_budget: int | None = ...,
        convert_to: OutputFormat = ...,
        normalize_embeddings: bool | None = ...,
        show_progress_bar: bool | None = ...,
    ) -> Any: ...
    @overload
    def encode(
        self,
        texts: Sequence[str],
        *,
        instruction: str | None = ...,
        batch_size: int | None = ...,
        token_budget: int | None = ...,
        convert_to: OutputFormat = ...,
        normalize_embeddings: bool | None = ...,
        show_progress_bar: bool | None = ...,
    ) -> Any: ...
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        instruction: str | None = None,
        batch_size: int | None = None,
        token_budget: int | None = None,
        convert_to: OutputFormat = "numpy",
        normalize_embeddings: bool | None = None,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts, batched by tokens.

        Args:
            texts: one text (gives a 1-D vector) or a sequence of texts (gives ``(n, dim)``).
            instruction: prefix applied to every text (``{}`` is a placeholder for the text); None: none.
                :meth:`encode_queries` and :meth:`encode_corpus` pass the model's own instructions.
            batch_size: most texts per batch (default 256 on CPU, 1024 on GPU).
            token_budget: most padded tokens per batch (default 4,096 on CPU, 131,072 on GPU).
            convert_to: ``"numpy"`` (float32 array) or ``"torch"`` (float32 tensor on the CPU).
            normalize_embeddings: override the model's normalisation setting.
            show_progress_bar: None shows one for 1,000 texts or more (on a terminal).

        Returns:
            The embeddings in input order.
        """
        if convert_to not in ("numpy", "torch"):
            raise ValueError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
        single = isinstance(texts, str)
        items: list[str] = [texts] if single else list(texts)  # type: ignore[list-item]
        _check_texts(items)
        if instruction:
            items = [apply_instruction(instruction, text) for text in items]
        device = self.device
        kind = "cuda" if device.type == "cuda" else "cpu"
        output = torch.empty((len(items), self.embedding_dimension), dtype=torch.float32)
        progress = None
        if show_progress_bar or (show_progress_bar is None and len(items) >= PROGRESS_BAR_MIN_TEXTS):
            from tqdm.auto import tqdm

            progress = tqdm(
                total=len(items),
                desc="Encoding",
                unit="text",
                disable=None if show_progress_bar is None else False,
            )
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for batch in iter_token_batches(
                    items,
                    self.tokenize_ids,
                    token_budget=token_budget or DEFAULT_TOKEN_BUDGET[kind],
                    max_batch_size=batch_size or DEFAULT_MAX_BATCH_SIZE[kind],
                    pad_id=self.tokenizer.pad_token_id,
                    padding_side=self.tokenizer.padding_side,
                    prefetch=kind == "cuda",
                    pin_memory=kind == "cuda",
                ):
                    embeddings = self(
                        batch.input_ids.to(device, non_blocking=True),
                        batch.attention_mask.to(device, non_blocking=True),
                        normalize=normalize_embeddings,
                    )
                    output[torch.from_numpy(batch.positions)] = embeddings.float().cpu()
                    if progress is not None:
                        progress.update(len(batch.positions))
        finally:
            self.train(was_training)
            if progress is not None:
                progress.close()
        result: np.ndarray | torch.Tensor = output.numpy() if convert_to == "numpy" else output
        return result[0] if single else result

    def encode_queries(
        self,
        queries: str | Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        convert_to: OutputFormat = "numpy",
        show_progress_bar: bool | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed queries with the model's query instruction (see :meth:`encode`)."""
        return self.encode(
            queries,
            instruction=self.settings.query_instruction,
            batch_size=batch_size,
            token_budget=token_budget,
            convert_to=convert_to,
            show_progress_bar=show_progress_bar,
        )

    def encode_corpus(
        self,
        documents: str | Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        convert_to: OutputFormat = "numpy",
        show_progress_bar: bool | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed documents with the model's document instruction (see :meth:`encode`)."""
        return self.encode(
            documents,
            instruction=self.settings.document_instruction,
            batch_size=batch_size,
            token_budget=token_budget,
            convert_to=convert_to,
            show_progress_bar=show_progress_bar,
        )

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike[str], merge_lora: bool = False) -> None:
        """Write weights (safetensors), tokenizer, settings and the sentence-transformers layout.

        The folder loads here with the same settings, and in ``SentenceTransformer(folder)`` with the same
        vectors (``encode_query`` / ``encode_document`` apply the instructions as prompts). A model with a LoRA
        adapter saves the adapter alone (small; reload it with :meth:`from_pretrained`, which finds the base
        model), or with ``merge_lora=True`` a full merged model.
        """
        check_trainable(self.model, "save the model")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        settings = self.settings
        self.tokenizer.save_pretrained(directory)
        save_settings(directory, settings)
        if self.has_lora and not merge_lora:
            self.model.save_pretrained(directory)  # adapter_config.json + adapter_model.safetensors
            return
        backbone = merged_copy(self.model) if self.has_lora else self.model
        backbone.save_pretrained(directory)
        skipped = write_sentence_transformers_layout(
            directory,
            pooling_method=settings.pooling_method,
            normalize_embeddings=settings.normalize_embeddings,
            max_length=settings.max_length,
            embedding_dimension=self.embedding_dimension,
            query_instruction=settings.query_instruction,
            document_instruction=settings.document_instruction,
        )
        if skipped:
            warnings.warn(
                f"{', '.join(skipped)} use a '{{}}' placeholder, which sentence-transformers prompts cannot "
                "express: sentence-transformers will load the folder without them",
                UserWarning,
                stacklevel=2,
            )
        if settings.append_eos:
            warnings.warn(
                "this tokenizer cannot be made to append EOS itself, so sentence-transformers will not append it "
                "and its vectors will differ from this model's",
                UserWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        return (
            f"AutoModelForEmbedding(model={type(self.model).__name__}, backend={self.backend!r}, "
            f"pooling={self.pooling_method!r}, "
            f"normalize={self.normalize_embeddings}, max_length={self.max_length}, "
            f"dim={self.embedding_dimension}, device={self.device})"
        )
