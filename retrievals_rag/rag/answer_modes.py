"""The answer modes of the RAG engine, the app and ``retrievals-rag app``, and the default: one place for both.

- ``"smollm2"`` (the default, offline): the packaged SmolLM2-135M-Instruct writes one sentence from the best
  sentences of the sources; it is shown with the citations of the sources it rests on when they support it
  (:class:`~retrievals_rag.rag.grounding.SupportCheck`), and the extractive answer is shown otherwise.
- ``"openai"``: a model behind an OpenAI-compatible server (Ollama, vLLM, llama.cpp's server), checked the same
  way.
- ``"extractive"``: no language model: the best sentences of the sources, each with its citation.

In every mode an answer whose sources do not reach the relevance floor says that the documents do not contain it,
and no model is called. This module imports nothing heavy, so that command lines can list the modes quickly.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["DEFAULT_LLM", "LLM_CHOICES", "LLMChoice"]

LLMChoice = Literal["smollm2", "openai", "extractive"]
"""Which backend writes the answers (see the module's description)."""
LLM_CHOICES: tuple[LLMChoice, ...] = get_args(LLMChoice)
DEFAULT_LLM: LLMChoice = "smollm2"
"""The default answer mode of the engine, the app and ``retrievals-rag app``: checked SmolLM2 answers, chosen by
measurement (``examples/rag/answer_quality.py``, see the README's "Answer quality")."""
