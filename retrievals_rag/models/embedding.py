"""Dense embedders: encoder models (BERT, MiniLM, ...) and decoder LLMs (Llama, Qwen2, Mistral, ...)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from retrievals_rag.data.records import passage_text
from retrievals_rag.data.tokenization import (
    EMBEDDING_PADDING_SIDE,
    apply_instruction,
    pad_sequences,
    tokenize_texts,
)
from retrievals_rag.models.backends import BackendChoice
from retrievals_rag.models.base import (
    ModelFolder,
    RetrievalModel,
    resolve_settings,
    text_items,
)
from retrievals_rag.models.batching import iter_token_batches
from retrievals_rag.models.config import EmbeddingSettings
from retrievals_rag.models.loading import (
    DtypeName,
    default_max_length,
    is_decoder_only,
    make_tokenizer_append_eos,
    output_width,
    tokenizer_appends_eos,
)
from retrievals_rag.models.pooling import PoolingMethod, pool
from retrievals_rag.models.st_format import write_sentence_transformers_layout

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

OutputFormat = Literal["numpy", "torch"]


def _document_text(document: object, index: int) -> str:
    """A document as the text to embed: a string, or ``{"title", "text"}`` joined by a space."""
    if isinstance(document, str):
        return document
    if isinstance(document, Mapping):
        return passage_text(document, "documents", None, f"documents[{index}]")
    raise TypeError(
        f"documents[{index}] is {type(document).__name__}, expected str or a {{'title', 'text'}} dict"
    )


def _end_token_policy(folder: ModelFolder) -> bool:
    """Whether texts need an end token appended for ``last`` pooling on a decoder (False: the tokenizer ends
    every text with it itself, now or after its post-processor is extended).

    LLM embedders are trained to pool the EOS token. A tokenizer without an EOS token (e.g. a BERT tokenizer
    saved beside a Llama-shape model) pools its SEP token, which it appends itself.

    Raises:
        ValueError: the tokenizer has neither an EOS nor a SEP token, naming the folder and the fix.
    """
    tokenizer = folder.tokenizer
    if tokenizer.eos_token_id is None:
        if tokenizer.sep_token_id is None:
            raise ValueError(
                f"{folder.path}: pooling_method='last' on a decoder pools the end-of-text token, but the "
                "tokenizer has neither an EOS nor a SEP token: set tokenizer.eos_token (and save the tokenizer "
                "in the folder), or pass another pooling_method (e.g. 'mean')"
            )
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer_appends_eos(tokenizer):
        return False
    return not make_tokenizer_append_eos(tokenizer)


class AutoModelForEmbedding(RetrievalModel):
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
        self._embedding_dimension = output_width(model, tokenizer.pad_token_id or 0)

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
        encoders, normalised vectors, the tokenizer's maximum length (at most the model's positions).

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
            backend: ``"torch"``, an exported graph of the folder (``"onnx"``, ``"onnx-int8"``, ``"openvino"``,
                ``"openvino-int8"``, ``"openvino-int8-static"``: see ``retrievals-rag export``), or ``"auto"``, the fastest one the folder
                holds on this device. Pooling, instructions, windows and batching are the same for all.
        """
        folder = cls._open_folder(model_name_or_path, trust_remote_code=trust_remote_code)
        tokenizer = folder.tokenizer
        decoder_only = is_decoder_only(folder.config)
        layout = folder.layout
        settings = resolve_settings(
            EmbeddingSettings,
            explicit={
                "pooling_method": pooling_method,
                "normalize_embeddings": normalize_embeddings,
                "max_length": max_length,
                "query_instruction": query_instruction,
                "document_instruction": document_instruction,
            },
            saved=folder.saved,
            sentence_transformers=None
            if layout is None
            else {
                "pooling_method": layout.pooling_method,
                "normalize_embeddings": layout.normalize_embeddings,
                "max_length": layout.max_length,
                "query_instruction": layout.query_instruction,
                "document_instruction": layout.document_instruction,
            },
            defaults={
                "pooling_method": "last" if decoder_only else "mean",
                "normalize_embeddings": True,
                "max_length": default_max_length(tokenizer, folder.config),
            },
        )
        if decoder_only and settings.pooling_method == "last":
            append_eos = _end_token_policy(folder)
            if not (folder.saved and "append_eos" in folder.saved):
                settings = replace(settings, append_eos=append_eos)
        # Right padding for every model (and so for the saved tokenizer, which sentence-transformers pads with):
        # position ids count from the first token, so left padding would shift a text's absolute positions
        # (BERT, GPT-2) by its batch's longest text. Pooling finds the real tokens from the mask.
        tokenizer.padding_side = EMBEDDING_PADDING_SIDE
        model = cls._load_transformer(
            folder,
            task="base",
            device=device,
            use_fp16=use_fp16,
            dtype=dtype,
            merge_lora=merge_lora,
            backend=backend,
            max_length=settings.max_length,
        )
        return cls(model, tokenizer, settings)

    # ------------------------------------------------------------------ properties
    @property
    def embedding_dimension(self) -> int:
        """The width of the vectors: the transformer's output width (not always its config's ``hidden_size``)."""
        return self._embedding_dimension

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
        inputs = self._transformer_inputs(input_ids, attention_mask, token_type_ids)
        if self._decoder_only:
            inputs["use_cache"] = False
        hidden = self.model(**inputs).last_hidden_state  # (batch, seq_len, dim)
        embeddings = pool(hidden, attention_mask, self.settings.pooling_method)
        if self.settings.normalize_embeddings if normalize is None else normalize:
            embeddings = torch.nn.functional.normalize(embeddings.float(), dim=-1)
        return embeddings

    # ------------------------------------------------------------------ tokenization
    def tokenize_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts``: truncated to ``max_length``, special tokens added, EOS appended if set."""
        return tokenize_texts(self.tokenizer, texts, self.settings.max_length, self.settings.append_eos)

    def tokenize(
        self, texts: list[str], padding_side: str = EMBEDDING_PADDING_SIDE
    ) -> dict[str, torch.Tensor]:
        """Tokenize and pad ``texts`` into model inputs (``input_ids``, ``attention_mask``), padded per batch on
        the right (as :meth:`encode` and the training collator pad) unless ``padding_side`` says otherwise."""
        input_ids, attention_mask = pad_sequences(
            self.tokenize_ids(texts), self.tokenizer.pad_token_id, padding_side
        )
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    # ------------------------------------------------------------------ encoding
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
            show_progress_bar: None shows one for 1,000 texts or more (live on a terminal, else redrawn once a minute).

        Returns:
            The embeddings in input order.
        """
        if convert_to not in ("numpy", "torch"):
            raise ValueError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
        items, single = text_items(texts)
        if instruction:
            items = [apply_instruction(instruction, text) for text in items]
        device = self.device
        options = self._batch_options(batch_size, token_budget)
        output = torch.empty((len(items), self.embedding_dimension), dtype=torch.float32)
        with self.inference(len(items), show_progress_bar, "Encoding") as progress:
            for batch in iter_token_batches(
                items, self.tokenize_ids, padding_side=EMBEDDING_PADDING_SIDE, **options
            ):
                embeddings = self(
                    batch.input_ids.to(device, non_blocking=True),
                    batch.attention_mask.to(device, non_blocking=True),
                    normalize=normalize_embeddings,
                )
                output[torch.from_numpy(batch.positions)] = embeddings.float().cpu()
                progress.update(len(batch.positions))
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
        documents: str | Mapping[str, str] | Sequence[str | Mapping[str, str]],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        convert_to: OutputFormat = "numpy",
        show_progress_bar: bool | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed documents with the model's document instruction (see :meth:`encode`).

        A document is a string or a ``{"title", "text"}`` object (the form of BEIR corpora and training
        records), embedded as ``title + " " + text`` as the evaluator and the trainer do. One string or object
        gives a 1-D vector.
        """
        single = isinstance(documents, str | Mapping)
        items = [documents] if single else list(documents)  # type: ignore[list-item]
        texts = [_document_text(item, index) for index, item in enumerate(items)]
        return self.encode(
            texts[0] if single else texts,
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
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        settings = self.settings
        self.tokenizer.save_pretrained(directory)
        self._save_settings(directory)
        transformer, _ = self._transformer_to_save(merge_lora)
        transformer.save_pretrained(directory)  # a LoRA adapter alone: adapter_config.json + its weights
        # the sentence-transformers layout for adapter folders too: sentence-transformers loads the adapter on
        # its base model (through peft) and must pool, normalise and prompt as this model does
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
            f"AutoModelForEmbedding(model={type(self.model).__name__}, pooling={self.pooling_method!r}, "
            f"normalize={self.normalize_embeddings}, max_length={self.max_length}, "
            f"dim={self.embedding_dimension}, device={self.device})"
        )
