"""A zero-shot reranker from a chat model: how likely the passage makes the query (UPR, Sachan et al. 2022).

"Improving Passage Retrieval with Zero-Shot Question Generation" scores a (query, passage) pair by the mean
log-probability that a language model gives the query's tokens when it reads the passage first. It needs no
training and no labels, which makes it a teacher for adapting an embedder to documents that have none
(:func:`~retrievals_rag.training.adapt.adapt_embedder` with ``teacher="query-likelihood"``) and a reranker for a
user who has none (``RagEngine.load_reranker("query-likelihood")``).

The scoring is :class:`~retrievals_rag.models.llm_ranking.LLMRanker` with ``scoring="query_likelihood"`` (any
causal-LM folder loads that way); this module only finds the chat model: the packaged SmolLM2-135M-Instruct
(its GGUF converted once per machine), a transformers folder or a ``.gguf`` file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrievals_rag.models.llm_ranking import LLMRanker

__all__ = ["QUERY_LIKELIHOOD", "QUERY_LIKELIHOOD_MAX_LENGTH", "query_likelihood_ranker"]

QUERY_LIKELIHOOD = "query-likelihood"
"""The name that stands for the chat model's query likelihood where a reranker or a teacher folder is expected."""

QUERY_LIKELIHOOD_MAX_LENGTH = 256
"""Tokens per input by default: the passage's first window (about 160 words), the prompt and the query."""


def query_likelihood_ranker(
    model_path: str | os.PathLike[str] | None = None,
    *,
    max_length: int = QUERY_LIKELIHOOD_MAX_LENGTH,
    max_windows: int = 1,
    prompt: str | None = None,
    device: str | None = None,
) -> LLMRanker:
    """A chat model as a query-likelihood reranker: ``LLMRanker`` with ``scoring="query_likelihood"``.

    Args:
        model_path: A transformers causal-LM folder or a ``.gguf`` file (converted once); None: the packaged
            SmolLM2-135M-Instruct.
        max_length: Tokens per input (passage window, prompt and query); a longer passage is cut.
        max_windows: Windows of a long passage scored (its best counts); 1 scores its beginning only, as UPR
            does (each window costs a forward pass).
        prompt: The words between the passage and the query (None: ``"A question or claim about this
            passage:"``).
        device: ``"cpu"``, ``"cuda"``... (None: a GPU when there is one).

    Scores are log-probabilities per token (at most 0; higher is more likely), comparable across passages for
    one query; ``normalize=True`` gives their exponential.

    Raises:
        BackendUnavailableError: The model cannot be found, converted or loaded (the message names it).
    """
    from retrievals_rag.llm.base import BackendUnavailableError
    from retrievals_rag.llm.chat import TransformersChat
    from retrievals_rag.models.llm_ranking import LLMRanker

    folder = TransformersChat(model_path).resolve_folder()
    try:
        return LLMRanker.from_pretrained(
            folder,
            scoring="query_likelihood",
            max_length=max_length,
            max_windows=max_windows,
            prompt=prompt,
            device=device,
        )
    except (OSError, RuntimeError) as error:
        raise BackendUnavailableError(
            f"cannot load a causal language model from {folder} ({type(error).__name__}: {error})"
        ) from error
