"""What the reranker adapters share: loading a ranker by kind, scoring in one call, selecting, keeping scores.

:class:`RankerOptions` holds the fields of the LangChain and LlamaIndex rerankers (both are pydantic models),
so that each option is declared and documented once, and the scoring and selection they both do. The pure
functions below keep the earlier scores of a document when a new one is written, so that no score is lost
between a retriever and one or more rerankers. Nothing here imports torch at module level: the model class is
imported when a model is loaded.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from retrievals_rag.integrations._embedding import model_lock, path_to_string
from retrievals_rag.models import registry
from retrievals_rag.models.registry import RankerKindName, ranker_kinds
from retrievals_rag.retrieval.fusion import rank_scores

if TYPE_CHECKING:
    from retrievals_rag.models.ranker import Ranker

RankerKind = RankerKindName
ModelKind = Literal["auto", "cross_encoder", "llm_ranker", "colbert"]

RELEVANCE_SCORE_KEY = "relevance_score"
"""Metadata key of a reranker's score (LangChain; the default ``score_key``)."""
PREVIOUS_PREFIX = "previous_"
"""An earlier score found under a reranker's key moves to this prefix plus the key."""
PREVIOUS_RELEVANCE_SCORE_KEY = PREVIOUS_PREFIX + RELEVANCE_SCORE_KEY
"""Metadata key of the score an earlier reranker gave (``previous_relevance_score``)."""
RETRIEVAL_SCORE_KEY = "retrieval_score"
"""Metadata key of the retriever's score, which rerankers keep and never overwrite."""

_RANKING_MODULE = "retrievals_rag.models.ranker"  # defines Ranker, the base of every ranker


RANKER_MODEL_KWARGS_KEYS: frozenset[str] = frozenset().union(*(spec.load_options for spec in ranker_kinds()))
"""Every option that may travel in a reranker adapter's ``model_kwargs`` (each kind takes a subset)."""


def resolve_kind(model_name_or_path: str, model_kind: ModelKind) -> RankerKind:
    """The kind of ranker to load: ``model_kind``, or for ``"auto"`` the kind the folder was saved as.

    ``"auto"`` reads ``retrievals_rag_config.json``: a ColBERT folder loads as ColBERT, an LLM-ranker folder as
    an LLM ranker, anything else (a cross-encoder, a bare encoder, an embedder, a hub id) as a cross-encoder. A
    bare causal LM folder needs ``model_kind="llm_ranker"``, and a bare encoder meant for ColBERT
    ``model_kind="colbert"``. The kinds are those of :mod:`retrievals_rag.models.registry`.
    """
    kind = registry.resolve_kind(model_name_or_path, model_kind, default="cross_encoder")
    if not registry.KINDS[kind].ranker:  # an embedder's folder starts a cross-encoder (a fresh head)
        return "cross_encoder"
    return kind  # type: ignore[return-value]


def check_ranker_kwargs(model_kwargs: Mapping[str, Any], kind: RankerKind | None = None) -> dict[str, Any]:
    """Return ``model_kwargs`` as a dict after checking its keys (against ``kind``'s loader when given).

    Raises:
        ValueError: On a key that no loader (or not ``kind``'s loader) takes.
    """
    allowed = RANKER_MODEL_KWARGS_KEYS if kind is None else registry.KINDS[kind].load_options
    unknown = sorted(set(model_kwargs) - allowed)
    if unknown:
        which = "a reranker" if kind is None else f"a {kind} model"
        raise ValueError(
            f"model_kwargs got {unknown}, which {which} does not take; it takes {sorted(allowed)} (device, "
            "use_fp16 and model_kind are fields of the adapter itself)"
        )
    return dict(model_kwargs)


def load_ranker(
    model_name_or_path: str,
    *,
    model_kind: ModelKind,
    device: str | None,
    use_fp16: bool,
    model_kwargs: Mapping[str, Any],
) -> Ranker:
    """Load the ranker in ``model_name_or_path`` as the kind :func:`resolve_kind` picks."""
    kind = resolve_kind(model_name_or_path, model_kind)
    options = check_ranker_kwargs(model_kwargs, kind)
    if "backend" in registry.KINDS[kind].load_options:  # serve with the fastest backend the folder holds
        options.setdefault("backend", "auto")
    return registry.load_model(
        model_name_or_path, kind, options={**options, "device": device, "use_fp16": use_fp16}
    )


def check_loaded_ranker(
    model: Any,
    *,
    model_name_or_path: str | None,
    model_kind: ModelKind,
    device: str | None,
    use_fp16: bool,
    model_kwargs: Mapping[str, Any],
) -> Ranker:
    """Check an already loaded ranker, and that no option that would need a reload was given beside it.

    Raises:
        TypeError: When ``model`` is not a ranker (``AutoModelForRanking``, ``LLMRanker`` or ``ColBERT``).
        ValueError: When a loading option was given too.
    """
    ranking_module = sys.modules.get(_RANKING_MODULE)
    # A Ranker cannot exist before its module is imported, so no import is needed to check.
    if ranking_module is None or not isinstance(model, ranking_module.Ranker):
        raise TypeError(
            f"model must be a ranker (AutoModelForRanking, LLMRanker or ColBERT), got {type(model).__name__}"
        )
    conflicting = [
        name
        for name, given in (
            ("model_name_or_path", model_name_or_path is not None),
            ("model_kind", model_kind != "auto"),
            ("device", device is not None),
            ("use_fp16", use_fp16),
            ("model_kwargs", bool(model_kwargs)),
        )
        if given
    ]
    if conflicting:
        raise ValueError(
            f"got a loaded model and {', '.join(conflicting)}, which only apply when loading: pass them to "
            "the model's from_pretrained, or give model_name_or_path instead of model"
        )
    return model


def metadata_with_score(metadata: Mapping[str, Any], score: float, score_key: str) -> dict[str, Any]:
    """A deep copy of ``metadata`` with ``score`` under ``score_key``.

    A score already under ``score_key`` (an earlier reranker's) moves to ``"previous_" + score_key``; every
    other key, the retrieval score included, is kept as it was.

    Example:
        >>> metadata_with_score({"retrieval_score": 0.8, "relevance_score": 2.0}, 5.0, "relevance_score")
        {'retrieval_score': 0.8, 'previous_relevance_score': 2.0, 'relevance_score': 5.0}
    """
    copied = copy.deepcopy(dict(metadata))
    if score_key in copied:
        copied[PREVIOUS_PREFIX + score_key] = copied.pop(score_key)
    copied[score_key] = float(score)
    return copied


def metadata_with_incoming_score(
    metadata: Mapping[str, Any], incoming_score: float | None
) -> tuple[dict[str, Any], list[str]]:
    """A deep copy of ``metadata`` keeping the score a node arrived with, and the keys that were written.

    For a framework that holds one score per result (LlamaIndex's ``NodeWithScore.score``), which the
    reranker's score replaces: the first time, the incoming score is the retriever's and is kept under
    ``"retrieval_score"``; when a retrieval score is already kept, the incoming score is an earlier
    reranker's and goes to ``"previous_relevance_score"``. A None score writes nothing.

    Example:
        >>> metadata_with_incoming_score({"source": "a.txt"}, 0.8)
        ({'source': 'a.txt', 'retrieval_score': 0.8}, ['retrieval_score'])
        >>> metadata_with_incoming_score({"retrieval_score": 0.8}, 3.5)
        ({'retrieval_score': 0.8, 'previous_relevance_score': 3.5}, ['previous_relevance_score'])
    """
    copied = copy.deepcopy(dict(metadata))
    if incoming_score is None:
        return copied, []
    key = PREVIOUS_RELEVANCE_SCORE_KEY if RETRIEVAL_SCORE_KEY in copied else RETRIEVAL_SCORE_KEY
    copied[key] = float(incoming_score)
    return copied, [key]


class RankerOptions(BaseModel):
    """Fields shared by the pydantic reranker adapters, the ranker they load, and their scoring.

    The ranker is loaded when the adapter is built (from ``model_name_or_path``) and kept in a private
    attribute; a loaded ``model`` may be given instead. Loading options (``model_kind``, ``device``,
    ``use_fp16``, ``model_kwargs``) apply only then: build a new adapter to change them.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    model_name_or_path: str | None = Field(
        default=None, description="Ranker folder (or hub id) to load; or give model."
    )
    model: Any = Field(
        default=None,
        exclude=True,
        repr=False,
        description="An already loaded AutoModelForRanking, LLMRanker or ColBERT to use instead of loading.",
    )
    model_kind: ModelKind = Field(
        default="auto",
        description="'auto' (the kind the folder was saved as), 'cross_encoder', 'llm_ranker' or 'colbert'.",
    )
    device: str | None = Field(
        default=None, description="'cpu', 'cuda', 'cuda:1'...; None: CUDA when available. Loading only."
    )
    use_fp16: bool = Field(
        default=False, description="Half precision on a GPU (float32 on CPU). Loading only."
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Other from_pretrained options of the model's kind (max_length, dtype, backend: default "
        "'auto', the fastest backend the folder holds on the device, ...).",
    )
    top_n: int | None = Field(default=3, ge=1, description="Results kept, best first; None: all.")
    score_threshold: float | None = Field(
        default=None,
        allow_inf_nan=False,  # a NaN threshold would drop every result
        description="Drop results scored below this (after normalize, when set).",
    )
    normalize: bool = Field(default=False, description="Sigmoid of the scores, into (0, 1).")
    batch_size: int | None = Field(default=None, ge=1, description="Most inputs per forward pass.")
    token_budget: int | None = Field(default=None, ge=1, description="Most padded tokens per forward pass.")
    show_progress_bar: bool | None = Field(
        default=None,
        description="None: a progress bar for 1,000 documents or more (redrawn once a minute away from a terminal).",
    )

    _model: Any = PrivateAttr(default=None)

    @field_validator("model_name_or_path", mode="before")
    @classmethod
    def _path_as_string(cls, value: Any) -> Any:
        return path_to_string(value)

    @field_validator("model_kwargs")
    @classmethod
    def _known_model_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_ranker_kwargs(value)

    @model_validator(mode="after")
    def _load_ranker(self) -> Self:
        options: dict[str, Any] = {
            "model_kind": self.model_kind,
            "device": self.device,
            "use_fp16": self.use_fp16,
            "model_kwargs": self.model_kwargs,
        }
        if self.model is not None:
            self._model = check_loaded_ranker(
                self.model, model_name_or_path=self.model_name_or_path, **options
            )
        elif self.model_name_or_path is None:
            raise ValueError(
                "a reranker needs model_name_or_path (a ranker folder) or model (a loaded AutoModelForRanking, "
                "LLMRanker or ColBERT)"
            )
        else:
            self._model = load_ranker(self.model_name_or_path, **options)
        return self

    @property
    def ranker(self) -> Ranker:
        """The loaded ranker."""
        return self._model

    @property
    def ranker_name(self) -> str:
        """The model's path, or the name it was loaded from: a label for events and logs."""
        if self.model_name_or_path is not None:
            return self.model_name_or_path
        backbone = getattr(self._model, "model", None)
        return str(getattr(backbone, "name_or_path", "") or type(self._model).__name__)

    def _score(self, query: str, texts: Sequence[str]) -> list[float]:
        """Scores of ``texts`` for ``query`` in input order, from one ``compute_score`` call (batched inside)."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if not texts:
            return []
        with model_lock(self._model):
            scores = self._model.compute_score(
                [(query, text) for text in texts],
                batch_size=self.batch_size,
                token_budget=self.token_budget,
                normalize=self.normalize,
                show_progress_bar=self.show_progress_bar,
            )
        return [float(score) for score in scores]

    def _rank(self, query: str, texts: Sequence[str], top_n: int | None) -> list[tuple[int, float]]:
        """``(index, score)`` of the best ``top_n`` texts at or above the threshold, best first."""
        return rank_scores(self._score(query, texts), top_n=top_n, score_threshold=self.score_threshold)
