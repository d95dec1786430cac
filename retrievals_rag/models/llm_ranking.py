"""The LLM ranker: a decoder LM asked whether a document is pertinent to a query, scored by its 'Yes' logit.

Input layout (token ids, assembled piece by piece so that only the document is ever windowed and the prompt is
never cut)::

    [BOS] A: {query} SEP B: {document window} SEP {prompt}

with ``SEP`` a newline and ``A: `` / ``B: `` the default query and document instructions. The score is the
logit of the first token of ``"Yes"`` at the input's last real token, the position from which the model would
generate its answer. This is the layout of the LLM rerankers of FlagEmbedding (bge-reranker-v2-gemma) and
open-retrievals, whose default task prompt is used here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from retrievals_rag.models.base import resolve_settings
from retrievals_rag.models.config import LLMRankerSettings
from retrievals_rag.models.loading import DtypeName, default_max_length
from retrievals_rag.models.pooling import pool
from retrievals_rag.models.ranker import PairRanker
from retrievals_rag.models.windows import find_token_frame, instruction_ids, tokenize_content

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Default input length when the folder does not say: LLM context windows are far longer than a reranker needs.
DEFAULT_LLM_MAX_LENGTH = 1_024


def target_token_id(tokenizer: PreTrainedTokenizerBase, target_token: str) -> int:
    """The id of the first token of ``target_token`` (e.g. ``"Yes"``), whose logit is the score.

    Raises:
        ValueError: the text encodes to nothing or to the unknown token.
    """
    ids = tokenize_content(tokenizer, [target_token])[0]
    if not ids or ids[0] == tokenizer.unk_token_id:
        raise ValueError(
            f"target_token {target_token!r} is not in the tokenizer's vocabulary (it encodes to "
            f"{tokenizer.convert_ids_to_tokens(ids) if ids else 'nothing'}); pass another target_token"
        )
    return int(ids[0])


class LLMRanker(PairRanker):
    """A decoder LLM reranker: the logit of 'Yes' after a relevance prompt is the score.

    Load with :meth:`from_pretrained` (or ``AutoModelForRanking.from_pretrained(path, causal_lm=True)``), score
    with :meth:`compute_score` / :meth:`rerank`, save with :meth:`save_pretrained`. ``forward`` returns one score
    per input with gradients, for training; only the last real position goes through the LM head, so memory
    does not grow with vocabulary x length. Left and right padding give the same scores.

    LoRA fine-tuning (``enable_lora``, which the LM head is left out of) wraps :attr:`model` in a peft model; scoring looks through the
    wrapper to the decoder, so the adapters are used. :meth:`save_pretrained` then writes the adapter alone (or,
    with ``merge_lora=True``, a merged model), and :meth:`from_pretrained` loads an adapter folder on its base.

    Example:
        >>> ranker = LLMRanker.from_pretrained("path/to/llm", use_fp16=True)  # doctest: +SKIP
        >>> ranker.compute_score(("what is a panda?", "The giant panda is a bear endemic to China."))  # doctest: +SKIP
        5.81
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: LLMRankerSettings
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self._prefix = list(find_token_frame(tokenizer, pair=False).prefix)  # the BOS token, if any
        self._query_affixes = instruction_ids(tokenizer, settings.query_instruction)
        self._document_affixes = instruction_ids(tokenizer, settings.document_instruction)
        self._separator, self._prompt = tokenize_content(tokenizer, [settings.separator, settings.prompt])
        self.target_token_id = target_token_id(tokenizer, settings.target_token)
        self._content_budget()  # fail now if max_length leaves no room
        self.eval()  # loaded for inference; a trainer calls .train()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike[str],
        max_length: int | None = None,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        prompt: str | None = None,
        target_token: str | None = None,
        use_fp16: bool = False,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        dtype: DtypeName | None = None,
        window_stride: int | None = None,
        max_windows: int | None = None,
        merge_lora: bool = False,
    ) -> LLMRanker:
        """Load a decoder LLM (``AutoModelForCausalLM``) as a reranker from a local folder.

        Settings come from the arguments, then the folder's ``retrievals_rag_config.json``, then defaults:
        instructions ``"A: "`` / ``"B: "``, the reference prompt, target ``"Yes"``, and the model's maximum
        length capped at 1,024 tokens.

        Args:
            model_name_or_path: a model folder (or a hub id, where the machine can reach the hub).
            max_length: tokens per input, prompt and special tokens included.
            query_instruction: prefix for the query (``{}`` is a placeholder); ``""`` means none.
            document_instruction: prefix for the document, repeated in every window; ``""`` means none.
            prompt: the task prompt that ends every input.
            target_token: the answer whose first token's logit is the score.
            use_fp16: half precision on a GPU; on the CPU it falls back to float32 with a warning.
            device: ``"cpu"``, ``"cuda"``, ...; None picks CUDA when available.
            trust_remote_code: allow custom modelling code from the folder.
            dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``; overrides ``use_fp16``.
            window_stride: tokens between the starts of a long document's windows (None: half a window).
            max_windows: most windows per document (default 8; 1 truncates).
            merge_lora: for a folder holding a LoRA adapter (saved by :meth:`save_pretrained` after LoRA
                training; its base model is found from the adapter's config), fold the adapter into the base
                weights instead of keeping it as a separate module. Both give the same scores.
        """
        folder = cls._open_folder(model_name_or_path, trust_remote_code=trust_remote_code)
        settings = resolve_settings(
            LLMRankerSettings,
            explicit={
                "max_length": max_length,
                "query_instruction": query_instruction,
                "document_instruction": document_instruction,
                "prompt": prompt,
                "target_token": target_token,
                "window_stride": window_stride,
                "max_windows": max_windows,
            },
            saved=folder.saved,
            defaults={
                "max_length": min(default_max_length(folder.tokenizer, folder.config), DEFAULT_LLM_MAX_LENGTH)
            },
        )
        model = cls._load_transformer(
            folder, task="causal_lm", device=device, use_fp16=use_fp16, dtype=dtype, merge_lora=merge_lora
        )
        return cls(model, folder.tokenizer, settings)

    # ------------------------------------------------------------------ properties
    @property
    def prompt(self) -> str:
        return self.settings.prompt

    @property
    def _padding_side(self) -> str:  # type: ignore[override]
        return str(self.tokenizer.padding_side)

    # ------------------------------------------------------------------ forward (training and inference)
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The target token's logit at each input's last real token, ``(batch,)``, with gradients when enabled.

        Correct for left and right padding: positions are counted from each row's first real token, and the
        last real token is found from the mask.

        Args:
            input_ids: ``(batch, seq_len)`` inputs, e.g. from :meth:`tokenize_pairs`.
            attention_mask: ``(batch, seq_len)``, 1 for real tokens.
        """
        padded = bool((attention_mask == 0).any())
        position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)  # (batch, seq_len)
        hidden = self._decoder()(
            input_ids=input_ids,
            attention_mask=attention_mask if padded else None,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state  # (batch, seq_len, hidden)
        last = pool(hidden, attention_mask, "last")  # (batch, hidden)
        logits = self._output_head()(last)  # (batch, vocab): the head sees one position per row
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        if softcap:  # Gemma 2 and 3 bound their logits
            logits = torch.tanh(logits / softcap) * softcap
        return logits[:, self.target_token_id].float()

    def _decoder(self) -> nn.Module:
        base = self._base_model()
        decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
        return decoder if decoder is not None else base.base_model

    def _output_head(self) -> nn.Module:
        head = self._base_model().get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(self._base_model()).__name__} has no LM head to score with")
        return head

    # ------------------------------------------------------------------ input layout
    def _content_budget(self) -> int:
        fixed = (
            len(self._prefix)
            + sum(len(piece) for piece in (*self._query_affixes, *self._document_affixes))
            + 2 * len(self._separator)
            + len(self._prompt)
        )
        budget = self.settings.max_length - fixed
        if budget < 2:
            raise ValueError(
                f"max_length={self.settings.max_length} leaves no room for query and document "
                f"({fixed} tokens of prompt, separators, instructions and special tokens)"
            )
        return budget

    def _layout(self, query_ids: list[int], window_ids: list[int]) -> tuple[list[int], list[int] | None]:
        query_before, query_after = self._query_affixes
        document_before, document_after = self._document_affixes
        ids = [
            *self._prefix,
            *query_before,
            *query_ids,
            *query_after,
            *self._separator,
            *document_before,
            *window_ids,
            *document_after,
            *self._separator,
            *self._prompt,
        ]
        return ids, None

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike[str], merge_lora: bool = False) -> None:
        """Write weights (safetensors), tokenizer and settings (prompt, instructions, target token, ...).

        A model with a LoRA adapter saves the adapter alone (small; :meth:`from_pretrained` finds the base
        model), or with ``merge_lora=True`` a full merged model; the model itself keeps its adapter.
        """
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        transformer, _ = self._transformer_to_save(merge_lora)
        transformer.save_pretrained(directory)  # a LoRA adapter alone: adapter_config.json + its weights
        self.tokenizer.save_pretrained(directory)
        self._save_settings(directory)

    def __repr__(self) -> str:
        return (
            f"LLMRanker(model={type(self.model).__name__}, target_token={self.settings.target_token!r}, "
            f"max_length={self.max_length}, device={self.device})"
        )
