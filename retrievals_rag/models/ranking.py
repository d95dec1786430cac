"""Rerankers: the scoring API they share (``compute_score``, ``rerank``), and the cross-encoder.

The cross-encoder, :class:`AutoModelForRanking`, reads a query and a document together through a transformer
with a sequence-classification head; its logit is the score. ``AutoModelForRanking.from_pretrained(path,
causal_lm=True)`` gives the LLM ranker (``retrievals_rag.models.llm_ranking``); ColBERT lives in
``retrievals_rag.models.colbert``. Every ranker batches by tokens and splits long documents into windows
(``retrievals_rag.models.windows``); ``forward`` returns scores with gradients, for training.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from retrievals_rag.models.backends import BackendChoice
from retrievals_rag.models.base import resolve_settings
from retrievals_rag.models.config import CrossEncoderSettings, LLMScoring
from retrievals_rag.models.loading import (
    DtypeName,
    default_max_length,
    fresh_weights,
    is_decoder_only,
    resolve_model_path,
)
from retrievals_rag.models.ranker import PairRanker, Ranker, RerankResult, check_pairs
from retrievals_rag.models.registry import folder_kind
from retrievals_rag.models.windows import (
    find_token_frame,
    instruction_ids,
)

__all__ = ["AutoModelForRanking", "PairRanker", "Ranker", "RerankResult", "check_pairs"]

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from retrievals_rag.models.llm_ranking import LLMRanker

# What sentence-transformers' CrossEncoder applies to the logits of a folder saved here: nothing, so that
# CrossEncoder(folder).predict gives the raw logits, as compute_score does.
_ST_IDENTITY = "torch.nn.modules.linear.Identity"


class AutoModelForRanking(PairRanker):
    """A cross-encoder: a transformer with a sequence-classification head reading (query, document) pairs.

    Load with :meth:`from_pretrained` (``causal_lm=True`` gives an :class:`~retrievals_rag.LLMRanker`), score
    with :meth:`compute_score` / :meth:`rerank`, save with :meth:`save_pretrained`: the folder loads here with
    the same settings and in ``sentence_transformers.CrossEncoder(folder)`` with the same scores.
    ``forward`` returns one score per input with gradients, for training.

    Example:
        >>> ranker = AutoModelForRanking.from_pretrained("path/to/cross-encoder")  # doctest: +SKIP
        >>> ranker.rerank("what is dense retrieval?", ["BM25 ...", "Dense retrieval ..."], top_k=1)  # doctest: +SKIP
        [RerankResult(index=1, document='Dense retrieval ...', score=7.25)]
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: CrossEncoderSettings
    ) -> None:
        super().__init__()
        if int(model.config.num_labels) != settings.num_labels:
            raise ValueError(
                f"the model has {model.config.num_labels} labels but the settings say {settings.num_labels}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self._frame = find_token_frame(tokenizer, pair=True)
        self._query_affixes = instruction_ids(tokenizer, settings.query_instruction)
        self._document_affixes = instruction_ids(tokenizer, settings.document_instruction)
        self._content_budget()  # fail now if max_length leaves no room
        self.eval()  # loaded for inference; a trainer calls .train()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike[str],
        num_labels: int | None = None,
        use_fp16: bool = False,
        max_length: int | None = None,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        causal_lm: bool = False,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        dtype: DtypeName | None = None,
        window_stride: int | None = None,
        max_windows: int | None = None,
        merge_lora: bool = False,
        backend: BackendChoice = "torch",
        prompt: str | None = None,
        target_token: str | None = None,
        scoring: LLMScoring | None = None,
    ) -> AutoModelForRanking | LLMRanker:
        """Load a cross-encoder (or, with ``causal_lm=True``, an LLM ranker) from a local folder.

        Settings come, in order of precedence, from the arguments, the folder's ``retrievals_rag_config.json``
        and defaults (the tokenizer's maximum length, at most the model's positions; the folder's ``num_labels`` if it holds a
        sequence-classification model, else 1). A folder without a classification head gets a fresh one,
        with a warning. A folder saved as an LLM ranker loads as one.

        Args:
            model_name_or_path: a model folder (or a hub id, where the machine can reach the hub).
            num_labels: 1 (the logit is the score) or 2 (the score is ``logit[1] - logit[0]``).
            use_fp16: half precision on a GPU; on the CPU it falls back to float32 with a warning.
            max_length: tokens per (query, document) input, special tokens included.
            query_instruction: prefix for queries (``{}`` is a placeholder for the text); ``""`` means none.
            document_instruction: prefix for documents (same rules), repeated in every window.
            causal_lm: load a decoder LLM scored by its 'Yes' logit (:class:`~retrievals_rag.LLMRanker`).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None picks CUDA when available.
            trust_remote_code: allow custom modelling code from the folder.
            dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``; overrides ``use_fp16``.
            window_stride: tokens between the starts of a long document's windows (None: half a window).
            max_windows: most windows per document (default 8; 1 truncates, as sentence-transformers does).
            merge_lora: for a folder holding a LoRA adapter (saved after LoRA training; its base model is found
                from the adapter's config), fold the adapter into the base weights. Both give the same scores.
            backend: ``"torch"``, an exported graph of the folder (``"onnx"``, ``"onnx-int8"``, ``"openvino"``,
                ``"openvino-int8"``, ``"openvino-int8-static"``: see ``retrievals-rag export``), or ``"auto"``, the fastest one the folder
                holds on this device. Pooling, instructions, windows and batching are the same for all;
                LLM rankers run with torch only.
            prompt: LLM rankers only: the question asked of the LLM (see :meth:`LLMRanker.from_pretrained`).
            target_token: LLM rankers only: the token whose logit is the score (default ``"Yes"``).
            scoring: LLM rankers only: ``"target_token"`` or ``"query_likelihood"`` (any causal LM, no training).
        """
        path = resolve_model_path(model_name_or_path)
        llm_options = {"prompt": prompt, "target_token": target_token, "scoring": scoring}
        if causal_lm or folder_kind(path) == "llm_ranker":
            if num_labels not in (None, 1):
                raise ValueError(f"an LLM ranker scores with one token's logit; num_labels={num_labels}")
            if backend not in ("torch", "auto"):
                raise ValueError(f"{path}: an LLM ranker runs with backend='torch' only, not {backend!r}")
            from retrievals_rag.models.llm_ranking import LLMRanker

            return LLMRanker.from_pretrained(
                path,
                use_fp16=use_fp16,
                max_length=max_length,
                query_instruction=query_instruction,
                document_instruction=document_instruction,
                device=device,
                trust_remote_code=trust_remote_code,
                dtype=dtype,
                window_stride=window_stride,
                max_windows=max_windows,
                merge_lora=merge_lora,
                prompt=prompt,
                target_token=target_token,
                scoring=scoring,
            )
        given = [name for name, value in llm_options.items() if value is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for LLM rankers: {path} is loaded as a "
                "cross-encoder; pass causal_lm=True to load a causal LM as an LLMRanker"
            )
        folder = cls._open_folder(path, trust_remote_code=trust_remote_code)
        architectures = getattr(folder.config, "architectures", None) or []
        has_head = any(name.endswith("ForSequenceClassification") for name in architectures)
        settings = resolve_settings(
            CrossEncoderSettings,
            explicit={
                "max_length": max_length,
                "num_labels": num_labels,
                "query_instruction": query_instruction,
                "document_instruction": document_instruction,
                "window_stride": window_stride,
                "max_windows": max_windows,
            },
            saved=folder.saved,
            defaults={
                "max_length": default_max_length(folder.tokenizer, folder.config),
                "num_labels": int(folder.config.num_labels) if has_head else 1,
            },
        )
        model = cls._load_transformer(
            folder,
            task="sequence_classification",
            device=device,
            use_fp16=use_fp16,
            dtype=dtype,
            merge_lora=merge_lora,
            num_labels=settings.num_labels,
            backend=backend,
            max_length=settings.max_length,
        )
        if is_decoder_only(folder.config) and model.config.pad_token_id is None:
            # Decoder classification heads find each row's last token through the pad id.
            model.config.pad_token_id = folder.tokenizer.pad_token_id
        return cls(model, folder.tokenizer, settings)

    # ------------------------------------------------------------------ properties
    @property
    def num_labels(self) -> int:
        return self.settings.num_labels

    # ------------------------------------------------------------------ forward (training and inference)
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One score per input, ``(batch,)``, with gradients when enabled.

        Args:
            input_ids: ``(batch, seq_len)`` (query, document) inputs, e.g. from :meth:`tokenize_pairs`.
            attention_mask: ``(batch, seq_len)``, 1 for real tokens.
            token_type_ids: segment ids, for models that take them (BERT).

        Returns:
            The logit (``num_labels == 1``) or ``logit[1] - logit[0]`` (``num_labels == 2``).
        """
        logits = self.model(
            **self._transformer_inputs(input_ids, attention_mask, token_type_ids)
        ).logits  # (batch, num_labels)
        if self.settings.num_labels == 1:
            return logits[:, 0]
        return logits[:, 1] - logits[:, 0]

    def _forward_batch(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        return self(input_ids, attention_mask, token_type_ids)

    # ------------------------------------------------------------------ input layout
    def _content_budget(self) -> int:
        affixes = sum(len(piece) for piece in (*self._query_affixes, *self._document_affixes))
        budget = self.settings.max_length - self._frame.overhead - affixes
        if budget < 2:
            raise ValueError(
                f"max_length={self.settings.max_length} leaves no room for query and document "
                f"({self._frame.overhead} special and {affixes} instruction tokens)"
            )
        return budget

    def _layout(self, query_ids: list[int], window_ids: list[int]) -> tuple[list[int], list[int] | None]:
        query_before, query_after = self._query_affixes
        document_before, document_after = self._document_affixes
        return self._frame.assemble(
            [*query_before, *query_ids, *query_after], [*document_before, *window_ids, *document_after]
        )

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike[str], merge_lora: bool = False) -> None:
        """Write weights (safetensors), tokenizer and settings.

        The folder loads here with the same settings, and in ``sentence_transformers.CrossEncoder(folder)``
        with the same scores: its tokenizer's maximum length is ``max_length`` and its activation is the
        identity, so ``predict`` returns the logits that :meth:`compute_score` returns (for inputs that fit in
        one window; pass ``activation_fn=torch.nn.Sigmoid()`` to match ``normalize=True``). A model with a LoRA
        adapter saves the adapter (and its head) alone, or with ``merge_lora=True`` a full merged model.
        """
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        transformer, full = self._transformer_to_save(merge_lora)
        transformer.save_pretrained(directory)
        saved_limit = self.tokenizer.model_max_length
        self.tokenizer.model_max_length = self.settings.max_length
        try:
            self.tokenizer.save_pretrained(directory)
        finally:
            self.tokenizer.model_max_length = saved_limit
        if full:
            config_path = directory / "config.json"
            config = json.loads(config_path.read_text(encoding="utf-8"))
            config["sentence_transformers"] = {"activation_fn": _ST_IDENTITY}
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        self._save_settings(directory)
        if self.settings.query_instruction or self.settings.document_instruction:
            warnings.warn(
                "sentence-transformers' CrossEncoder does not apply this model's instructions: its scores "
                "will differ from this model's",
                UserWarning,
                stacklevel=2,
            )

    def _lora_modules_to_save(self) -> tuple[str, ...]:
        """The classification head (every module beside the transformer body: BERT's ``classifier``, DistilBERT's
        ``pre_classifier`` and ``classifier``, ModernBERT's ``head`` and ``classifier``, a decoder's ``score``)
        and any other module whose weights were not in the checkpoint (a pooler it lacked).

        Fresh or task-specific, they train fully beside the adapters and are saved whole with them: an adapter
        saved without them would reload on newly randomised weights.
        """
        model = self._base_model()
        body = getattr(model, model.base_model_prefix, None)
        heads = [
            name
            for name, child in model.named_children()
            if child is not body and next(child.parameters(), None) is not None
        ]
        parameters = dict(model.named_parameters())
        fresh = sorted(
            {
                name.rsplit(".", 1)[0]
                for name in fresh_weights(model)
                if name in parameters and "." in name and name.split(".", 1)[0] not in heads
            }
        )
        return (*heads, *fresh)

    def __repr__(self) -> str:
        return (
            f"AutoModelForRanking(model={type(self.model).__name__}, num_labels={self.num_labels}, "
            f"max_length={self.max_length}, max_windows={self.settings.max_windows}, device={self.device})"
        )
