"""A zero-shot reranker from a causal LM: how likely the passage makes the query (UPR, Sachan et al. 2022).

"Improving Passage Retrieval with Zero-Shot Question Generation" scores a (query, passage) pair by the mean
log-probability that a language model gives the query's tokens when it reads the passage first. It needs no
training and no labels, which makes it a teacher for adapting an embedder to documents that have none
(:func:`~retrievals_rag.training.adapt.adapt_embedder` with ``teacher="query-likelihood"``). The packaged
SmolLM2-135M-Instruct scores about 1.8 pairs a second on 2 CPU cores (passages cut to 150 words); the README
gives what it measured as a reranker and as a teacher.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_LIKELIHOOD_PROMPT", "QueryLikelihoodRanker"]

DEFAULT_LIKELIHOOD_PROMPT = "Passage: {passage}\nA question or claim about this passage:"
"""What the model reads before the query; ``{passage}`` is replaced by the (cut) passage."""


class QueryLikelihoodRanker:
    """Scores (query, passage) pairs by the mean log-probability of the query's tokens after the passage.

    Args:
        model_path: A transformers causal-LM folder or a ``.gguf`` file (converted once); None: the packaged
            SmolLM2-135M-Instruct.
        prompt: The text before the query, with a ``{passage}`` placeholder (see
            :data:`DEFAULT_LIKELIHOOD_PROMPT`).
        max_passage_words: A longer passage is cut to its first words (the cost grows with its length).
        batch_size: Pairs per forward pass.
        device: ``"cpu"``, ``"cuda"``... (None: a GPU when there is one).

    Scores are log-probabilities per token (at most 0; higher is more likely), comparable across passages for
    one query. The model is loaded on the first :meth:`compute_score`.

    Raises:
        ValueError: a prompt without ``{passage}``, or a size below 1.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        prompt: str = DEFAULT_LIKELIHOOD_PROMPT,
        max_passage_words: int = 150,
        batch_size: int = 8,
        device: str | None = None,
    ) -> None:
        if "{passage}" not in prompt:
            raise ValueError(f"prompt must hold a {{passage}} placeholder, got {prompt!r}")
        for name, value in (("max_passage_words", max_passage_words), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.model_path = model_path
        self.prompt = prompt
        self.max_passage_words = max_passage_words
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from retrievals_rag.llm.base import BackendUnavailableError
            from retrievals_rag.llm.chat import TransformersChat

            folder = TransformersChat(self.model_path).resolve_folder()
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            try:
                tokenizer = AutoTokenizer.from_pretrained(folder)
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
            except (OSError, ValueError, RuntimeError) as error:
                raise BackendUnavailableError(
                    f"cannot load a causal language model from {folder} ({type(error).__name__}: {error})"
                ) from error
            self._tokenizer, self._model = tokenizer, model
        return self._tokenizer, self._model

    def compute_score(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> list[float]:
        """The mean log-probability of each query's tokens given its passage, in the order of ``pairs``.

        ``token_budget`` is accepted for the reranker interface and not used (batches hold ``batch_size`` pairs).
        A query with no token scores ``-inf``.
        """
        import torch
        from tqdm.auto import tqdm

        del token_budget
        tokenizer, model = self._load()
        size = batch_size or self.batch_size
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        context = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        scores: list[float] = []
        bar = tqdm(total=len(pairs), desc="Query likelihood", disable=not show_progress_bar)
        with torch.inference_mode():
            for start in range(0, len(pairs), size):
                batch = pairs[start : start + size]
                prefixes, queries = [], []
                for query, passage in batch:
                    cut = " ".join(passage.split()[: self.max_passage_words])
                    prefix = tokenizer(
                        self.prompt.replace("{passage}", cut), add_special_tokens=False
                    ).input_ids
                    tokens = tokenizer(" " + " ".join(query.split()), add_special_tokens=False).input_ids
                    if (
                        context is not None
                    ):  # too long: the query kept (up to context - 1), the passage's end cut
                        tokens = tokens[: context - 1]
                        prefix = prefix[: max(1, context - len(tokens))]
                    prefixes.append(prefix)
                    queries.append(tokens)
                sequences = [p + q for p, q in zip(prefixes, queries, strict=True)]
                width = max(map(len, sequences))
                input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
                attention = torch.zeros((len(sequences), width), dtype=torch.long)
                for row, sequence in enumerate(sequences):
                    input_ids[row, : len(sequence)] = torch.tensor(sequence)
                    attention[row, : len(sequence)] = 1
                logits = model(
                    input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device)
                ).logits
                for row, (prefix, query) in enumerate(zip(prefixes, queries, strict=True)):
                    if not query:
                        scores.append(float("-inf"))
                        continue
                    begin = len(prefix)  # the logits at position i predict token i + 1
                    log_probs = logits[row, begin - 1 : begin - 1 + len(query)].float().log_softmax(-1)
                    targets = torch.tensor(query, device=log_probs.device)
                    scores.append(float(log_probs.gather(1, targets[:, None]).mean()))
                bar.update(len(batch))
        bar.close()
        return scores

    def __repr__(self) -> str:
        source = "SmolLM2-135M-Instruct" if self.model_path is None else Path(self.model_path).name
        return f"QueryLikelihoodRanker({source}, max_passage_words={self.max_passage_words})"
