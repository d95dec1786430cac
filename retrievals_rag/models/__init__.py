"""The model layer: the registry of model kinds, the shared base, and the four kinds.

Names resolve lazily, so ``import retrievals_rag.models`` loads no torch:

- :mod:`~retrievals_rag.models.registry`: the kinds (``embedding``, ``cross_encoder``, ``llm_ranker``,
  ``colbert``), each with its class and settings class;
- :mod:`~retrievals_rag.models.base`: :class:`RetrievalModel`, what every kind shares (loading, settings
  resolution, device, dtype, LoRA, checkpoints, the inference context);
- the kinds: :class:`AutoModelForEmbedding`, :class:`AutoModelForRanking` (cross-encoder), :class:`LLMRanker`,
  :class:`ColBERT`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrievals_rag._lazy import lazy_names

_LAZY_NAMES: dict[str, str] = {
    "AutoModelForEmbedding": "retrievals_rag.models.embedding",
    "AutoModelForRanking": "retrievals_rag.models.ranking",
    "LLMRanker": "retrievals_rag.models.llm_ranking",
    "ColBERT": "retrievals_rag.models.colbert",
    "RetrievalModel": "retrievals_rag.models.base",
    "Ranker": "retrievals_rag.models.ranker",
    "LoraSettings": "retrievals_rag.models.lora",
    "KINDS": "retrievals_rag.models.registry",
    "kind_spec": "retrievals_rag.models.registry",
    "load_model": "retrievals_rag.models.registry",
}

__all__ = [
    "KINDS",
    "AutoModelForEmbedding",
    "AutoModelForRanking",
    "ColBERT",
    "LLMRanker",
    "LoraSettings",
    "Ranker",
    "RetrievalModel",
    "kind_spec",
    "load_model",
]

if TYPE_CHECKING:
    from retrievals_rag.models.base import RetrievalModel
    from retrievals_rag.models.colbert import ColBERT
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.models.llm_ranking import LLMRanker
    from retrievals_rag.models.lora import LoraSettings
    from retrievals_rag.models.ranker import Ranker
    from retrievals_rag.models.ranking import AutoModelForRanking
    from retrievals_rag.models.registry import KINDS, kind_spec, load_model

__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
