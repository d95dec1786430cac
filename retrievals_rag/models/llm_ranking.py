"""The LLM ranker: a decoder LM that scores (query, document) pairs in one of two ways.

**Target token** (``scoring="target_token"``, the default; trainable). Input layout (token ids, assembled piece
by piece so that only the document is ever windowed and the prompt is never cut)::

    [BOS] A: {query} SEP B: {document window} SEP {prompt}

with ``SEP`` a newline and ``A: `` / ``B: `` the default query and document instructions. The score is the
logit of the first token of ``"Yes"`` at the input's last real token, the position from which the model would
generate its answer. This is the layout of the LLM rerankers of FlagEmbedding (bge-reranker-v2-gemma) and
open-retrievals, whose default task prompt is used here.

**Query likelihood** (``scoring="query_likelihood"``; zero-shot, no training and no labels: UPR, Sachan et al.
2022, "Improving Passage Retrieval with Zero-Shot Question Generation")::

    [BOS] Passage: {document window} SEP A question or claim about this passage: {query}

The score is the mean log-probability of the query's tokens given what precedes them (at most 0). Only the
query's positions go through the LM head, in chunks, so memory does not grow with vocabulary x length. Any causal
LM works as it is, e.g. the packaged SmolLM2 (:func:`retrievals_rag.llm.query_likelihood.query_likelihood_ranker`),
which makes it the label-free teacher of ``retrievals-rag adapt --teacher query-likelihood``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from retrievals_rag.models.base import resolve_settings
from retrievals_rag.models.config import LLMRankerSettings, LLMScoring
from retrievals_rag.models.loading import DtypeName, default_max_length
from retrievals_rag.models.pooling import pool
from retrievals_rag.models.ranker import PairRanker
from retrievals_rag.models.windows import find_token_frame, instruction_ids, tokenize_content

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Default input length when the folder does not say: LLM context windows are far longer than a reranker needs.
DEFAULT_LLM_MAX_LENGTH = 1_024
# Query likelihood: query positions sent through the LM head at once (bounds the (positions, vocabulary) logits).
LIKELIHOOD_POSITIONS_PER_STEP = 2_048


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
    """A decoder LLM reranker: the logit of 'Yes' after a relevance prompt, or the query's likelihood, is the score.

    Load with :meth:`from_pretrained` (or ``AutoModelForRanking.from_pretrained(path, causal_lm=True)``), score
    with :meth:`compute_score` / :meth:`rerank`, save with :meth:`save_pretrained`. ``forward`` returns one score
    per input with gradients, for training; only the last real position goes through the LM head, so memory
    does not grow with vocabulary x length. Left and right padding give the same scores.

    LoRA fine-tuning (``enable_lora``, which the LM head is left out of) wraps :attr:`model` in a peft model; scoring looks through the
    wrapper to the decoder, so the adapters are used. :meth:`save_pretrained` then writes the adapter alone (or,
    with ``merge_lora=True``, a merged model), and :meth:`from_pretrained` loads an adapter folder on its base.

    With ``scoring="query_likelihood"`` any causal LM scores without training: the score is the mean
    log-probability of the query's tokens after the document and the prompt (``normalize=True``: its
    exponential, the per-token probability). That mode is for inference; ``forward`` (training) refuses it.

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
        self.target_token_id = None if self._likelihood else target_token_id(tokenizer, settings.target_token)
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
        scoring: LLMScoring | None = None,
    ) -> LLMRanker:
        """Load a decoder LLM (``AutoModelForCausalLM``) as a reranker from a local folder.

        Settings come from the arguments, then the folder's ``retrievals_rag_config.json``, then defaults:
        instructions ``"A: "`` / ``"B: "``, the reference prompt, target ``"Yes"``, and the model's maximum
        length capped at 1,024 tokens. With ``scoring="query_likelihood"``: document instruction
        ``"Passage: "``, no query instruction, prompt ``"A question or claim about this passage:"``; a folder
        saved with the other scoring keeps its length and windows but not its prompt and instructions.

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
            scoring: ``"target_token"`` (the folder's, else the default) or ``"query_likelihood"`` (any causal LM,
                no training; see the module's docstring).
        """
        folder = cls._open_folder(model_name_or_path, trust_remote_code=trust_remote_code)
        saved = dict(folder.saved or {})
        chosen: LLMScoring = scoring or saved.get("scoring") or "target_token"
        if saved.get("scoring", "target_token") != chosen:  # the other scoring's prompt would not fit
            for name in ("query_instruction", "document_instruction", "prompt", "target_token"):
                saved.pop(name, None)
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
                "scoring": chosen,
            },
            saved=saved,
            defaults={
                "max_length": min(
                    default_max_length(folder.tokenizer, folder.config), DEFAULT_LLM_MAX_LENGTH
                ),
                **LLMRankerSettings.defaults_for(chosen),
            },
        )
        model = cls._load_transformer(
            folder,
            task="causal_lm",
            device=device,
            use_fp16=use_fp16,
            dtype=dtype,
            merge_lora=merge_lora,
            max_length=settings.max_length,
        )
        return cls(model, folder.tokenizer, settings)

    # ------------------------------------------------------------------ properties
    @property
    def prompt(self) -> str:
        return self.settings.prompt

    @property
    def scoring(self) -> LLMScoring:
        """``"target_token"`` or ``"query_likelihood"``."""
        return self.settings.scoring

    @property
    def scores_are_logits(self) -> bool:
        return not self._likelihood

    @property
    def _likelihood(self) -> bool:
        return self.settings.scoring == "query_likelihood"

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

        Raises:
            ValueError: with query-likelihood scoring, which is not trained (use :meth:`query_log_likelihood`).
        """
        if self._likelihood:
            raise ValueError(
                "query-likelihood scoring is zero-shot and is not trained; train an LLM ranker with "
                "scoring='target_token', or score with compute_score / query_log_likelihood"
            )
        last = pool(self._hidden_states(input_ids, attention_mask), attention_mask, "last")  # (batch, hidden)
        logits = self._logits(last)  # (batch, vocab): the head sees one position per row
        return logits[:, self.target_token_id].float()

    def query_log_likelihood(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, query_mask: torch.Tensor
    ) -> torch.Tensor:
        """The mean log-probability of each row's query tokens given the tokens before them, ``(batch,)``.

        Only the positions that predict a query token go through the LM head, ``LIKELIHOOD_POSITIONS_PER_STEP``
        at a time. A row without a query token scores ``-inf``.

        Args:
            input_ids: ``(batch, seq_len)``.
            attention_mask: ``(batch, seq_len)``, 1 for real tokens.
            query_mask: ``(batch, seq_len)``, 1 for the query's tokens (what :meth:`compute_score` builds).
        """
        hidden = self._hidden_states(input_ids, attention_mask)  # (batch, seq_len, hidden)
        scored = query_mask.bool() & attention_mask.bool()
        scored[:, 0] = False  # nothing comes before the first position to predict it
        rows, columns = scored.nonzero(as_tuple=True)
        totals = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=hidden.device)
        for start in range(0, len(rows), LIKELIHOOD_POSITIONS_PER_STEP):
            row = rows[start : start + LIKELIHOOD_POSITIONS_PER_STEP]
            column = columns[start : start + LIKELIHOOD_POSITIONS_PER_STEP]
            # the hidden state at position i predicts token i + 1
            log_probs = self._logits(hidden[row, column - 1]).float().log_softmax(dim=-1)
            totals.index_add_(0, row, log_probs.gather(1, input_ids[row, column][:, None]).squeeze(1))
        counts = scored.sum(dim=1)
        return torch.where(counts > 0, totals / counts.clamp(min=1), torch.full_like(totals, float("-inf")))

    def _hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        padded = bool((attention_mask == 0).any())
        position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)  # (batch, seq_len)
        return self._decoder()(
            input_ids=input_ids,
            attention_mask=attention_mask if padded else None,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self._output_head()(hidden)
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        if softcap:  # Gemma 2 and 3 bound their logits
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    def _forward_batch(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        if self._likelihood:
            assert token_type_ids is not None  # the query mask, from _layout
            return self.query_log_likelihood(input_ids, attention_mask, token_type_ids)
        return self(input_ids, attention_mask)

    def _normalized(self, scores: np.ndarray) -> np.ndarray:
        if self._likelihood:  # the geometric mean of the query tokens' probabilities, in [0, 1]
            return np.exp(scores)
        return super()._normalized(scores)

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
        query_affixes = () if self._likelihood else self._query_affixes
        separators = 1 if self._likelihood else 2
        fixed = (
            len(self._prefix)
            + sum(len(piece) for piece in (*query_affixes, *self._document_affixes))
            + separators * len(self._separator)
            + len(self._prompt)
        )
        budget = self.settings.max_length - fixed
        if budget < 2:
            raise ValueError(
                f"max_length={self.settings.max_length} leaves no room for query and document "
                f"({fixed} tokens of prompt, separators, instructions and special tokens)"
            )
        return budget

    def _query_ids(self, queries: list[str]) -> list[list[int]]:
        if not self._likelihood:
            return super()._query_ids(queries)
        # The query continues the prompt after a space: tokenized with it, so that the first token is the one the
        # model would write there; a tokenizer whose pieces do not split cleanly at the prompt's end gets the
        # query tokenized alone.
        texts = [" ".join(query.split()) for query in queries]
        joint = tokenize_content(self.tokenizer, [f"{self.settings.prompt} {text}" for text in texts])
        cut = len(self._prompt)
        ids: list[list[int]] = []
        for text, tokens in zip(texts, joint, strict=True):
            if not text:
                ids.append([])
            elif tokens[:cut] == self._prompt and len(tokens) > cut:
                ids.append(tokens[cut:])
            else:
                ids.append(tokenize_content(self.tokenizer, [text])[0])
        return ids

    def _layout(self, query_ids: list[int], window_ids: list[int]) -> tuple[list[int], list[int] | None]:
        document_before, document_after = self._document_affixes
        if (
            self._likelihood
        ):  # the query last, its positions marked 1 in the token-type slot (the scored ones)
            context = [
                *self._prefix,
                *document_before,
                *window_ids,
                *document_after,
                *self._separator,
                *self._prompt,
            ]
            return [*context, *query_ids], [0] * len(context) + [1] * len(query_ids)
        query_before, query_after = self._query_affixes
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
        scored = (
            "scoring='query_likelihood'"
            if self._likelihood
            else f"target_token={self.settings.target_token!r}"
        )
        return (
            f"LLMRanker(model={type(self.model).__name__}, {scored}, max_length={self.max_length}, "
            f"device={self.device})"
        )
