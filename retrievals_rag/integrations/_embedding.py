"""What the adapters share: building an embedder from adapter options and encoding one side of retrieval.

:class:`EmbedderOptions` holds the fields of the LangChain and LlamaIndex embedding adapters (both are
pydantic models), so that each option is declared and documented once. Nothing here imports torch at module
level: the model class is imported when a model is loaded.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

if TYPE_CHECKING:
    from retrievals_rag.models.embedding import AutoModelForEmbedding

Side = Literal["query", "document"]

# ``AutoModelForEmbedding.from_pretrained`` options that may travel in an adapter's ``model_kwargs``. The
# others are the adapters' own fields (device, use_fp16, instructions, normalisation), so each option has
# exactly one place.
MODEL_KWARGS_KEYS: frozenset[str] = frozenset(
    {"pooling_method", "max_length", "trust_remote_code", "dtype", "backend"}
)
# Adapters serve: they load the fastest backend a folder holds on the device unless ``model_kwargs`` names one.
DEFAULT_BACKEND = "auto"

_EMBEDDING_MODULE = "retrievals_rag.models.embedding"
_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def missing_extra_error(module: str, extra: str, error: ImportError) -> ImportError:
    """The ImportError raised when an adapter's framework is not installed, with the install command."""
    return ImportError(
        f"{module} needs the {extra!r} extra: pip install 'retrievals-rag[{extra}]' (import failed: {error})"
    )


def check_model_kwargs(model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``model_kwargs`` as a dict after checking that every key is a ``from_pretrained`` option.

    Raises:
        ValueError: On a key that is not one of :data:`MODEL_KWARGS_KEYS`.
    """
    unknown = sorted(set(model_kwargs) - MODEL_KWARGS_KEYS)
    if unknown:
        raise ValueError(
            f"model_kwargs got {unknown}; it takes only {sorted(MODEL_KWARGS_KEYS)} (device, use_fp16, the "
            "instructions and normalize_embeddings are fields of the adapter itself)"
        )
    return dict(model_kwargs)


def check_loaded_model(
    model: Any,
    *,
    model_name_or_path: str | os.PathLike[str] | None,
    device: str | None,
    use_fp16: bool,
    model_kwargs: Mapping[str, Any],
) -> AutoModelForEmbedding:
    """Check an already loaded model, and that no option that would need a reload was given beside it.

    Raises:
        TypeError: When ``model`` is not an ``AutoModelForEmbedding``.
        ValueError: When a loading option was given too.
    """
    embedding_module = sys.modules.get(_EMBEDDING_MODULE)
    # An AutoModelForEmbedding cannot exist before its module is imported, so no import is needed to check.
    if embedding_module is None or not isinstance(model, embedding_module.AutoModelForEmbedding):
        raise TypeError(f"model must be an AutoModelForEmbedding, got {type(model).__name__}")
    conflicting = [
        name
        for name, given in (
            ("model_name_or_path", model_name_or_path is not None),
            ("device", device is not None),
            ("use_fp16", use_fp16),
            ("model_kwargs", bool(model_kwargs)),
        )
        if given
    ]
    if conflicting:
        raise ValueError(
            f"got a loaded model and {', '.join(conflicting)}, which only apply when loading: pass them to "
            "AutoModelForEmbedding.from_pretrained, or give model_name_or_path instead of model"
        )
    return model


def load_model(
    model_name_or_path: str | os.PathLike[str] | None,
    *,
    device: str | None,
    use_fp16: bool,
    model_kwargs: Mapping[str, Any],
) -> AutoModelForEmbedding:
    """Load an embedder; ``model_name_or_path=None`` loads the packaged all-MiniLM-L6-v2."""
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.models.loading import default_embedding_model_path

    path = default_embedding_model_path() if model_name_or_path is None else model_name_or_path
    options = {"backend": DEFAULT_BACKEND, **check_model_kwargs(model_kwargs)}
    return AutoModelForEmbedding.from_pretrained(path, device=device, use_fp16=use_fp16, **options)


def path_to_string(model_name_or_path: str | os.PathLike[str] | None) -> str | None:
    """A path as a string (a ``Path`` is accepted wherever a model path is); None stays None."""
    if model_name_or_path is None or isinstance(model_name_or_path, str):
        return model_name_or_path
    if isinstance(model_name_or_path, os.PathLike):
        return os.fspath(model_name_or_path)
    raise TypeError(f"model_name_or_path must be a str or a path, got {type(model_name_or_path).__name__}")


def model_lock(model: AutoModelForEmbedding) -> threading.Lock:
    """The lock that serialises encode calls on one model, across adapters and worker threads.

    ``encode`` switches the module to eval mode and back, so two calls overlapping on one model could run
    one of them with dropout on; on the CPU, concurrent calls gain nothing either, as each uses every core.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


def encode_side(
    model: AutoModelForEmbedding,
    texts: Sequence[str],
    side: Side,
    *,
    instruction: str | None,
    normalize_embeddings: bool | None,
    batch_size: int | None,
    token_budget: int | None,
    show_progress_bar: bool | None,
) -> np.ndarray:
    """Embed queries or documents in one ``encode`` call (batched by tokens inside).

    Args:
        model: The embedder.
        texts: The texts.
        side: ``"query"`` or ``"document"``: picks the model's own instruction when ``instruction`` is None.
        instruction: The instruction for this side; None uses the model's, ``""`` uses none.
        normalize_embeddings: One setting for both sides; None uses the model's.
        batch_size: Most texts per forward pass; None uses the model's default.
        token_budget: Most padded tokens per forward pass; None uses the model's default.
        show_progress_bar: None shows one for large inputs on a terminal.

    Returns:
        ``(len(texts), dim)`` float32 embeddings, in input order.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    if instruction is None:
        settings = model.settings
        instruction = settings.query_instruction if side == "query" else settings.document_instruction
    with model_lock(model):
        return model.encode(
            list(texts),
            instruction=instruction,
            batch_size=batch_size,
            token_budget=token_budget,
            convert_to="numpy",
            normalize_embeddings=normalize_embeddings,
            show_progress_bar=show_progress_bar,
        )


class EmbedderOptions(BaseModel):
    """Fields shared by the pydantic embedding adapters, and the model they load.

    The model is loaded when the adapter is built (from ``model_name_or_path``, or the packaged MiniLM when
    neither it nor ``model`` is given) and kept in a private attribute. Loading options (``device``,
    ``use_fp16``, ``model_kwargs``) apply only then: build a new adapter to change them.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    model_name_or_path: str | None = Field(
        default=None,
        description="Model folder (or hub id) to load; None: the packaged all-MiniLM-L6-v2.",
    )
    model: Any = Field(
        default=None,
        exclude=True,
        repr=False,
        description="An already loaded AutoModelForEmbedding to use instead of loading one.",
    )
    device: str | None = Field(
        default=None, description="'cpu', 'cuda', 'cuda:1'...; None: CUDA when available. Loading only."
    )
    use_fp16: bool = Field(
        default=False, description="Half precision on a GPU (float32 on CPU). Loading only."
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Other from_pretrained options: pooling_method, max_length, trust_remote_code, dtype, "
        "backend (default 'auto': the fastest backend the folder holds on the device).",
    )
    query_instruction: str | None = Field(
        default=None, description="Prefix for queries ('{}' is a placeholder); None: the model's own."
    )
    document_instruction: str | None = Field(
        default=None, description="Prefix for documents ('{}' is a placeholder); None: the model's own."
    )
    normalize_embeddings: bool | None = Field(
        default=None, description="L2-normalise queries and documents alike; None: the model's setting."
    )
    batch_size: int | None = Field(default=None, ge=1, description="Most texts per forward pass.")
    token_budget: int | None = Field(default=None, ge=1, description="Most padded tokens per forward pass.")
    show_progress_bar: bool | None = Field(
        default=None,
        description="None: a progress bar for 1,000 texts or more (redrawn once a minute away from a terminal).",
    )

    _model: Any = PrivateAttr(default=None)

    @field_validator("model_name_or_path", mode="before")
    @classmethod
    def _path_as_string(cls, value: Any) -> Any:
        return path_to_string(value)

    @field_validator("model_kwargs")
    @classmethod
    def _known_model_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_model_kwargs(value)

    @model_validator(mode="after")
    def _load_model(self) -> Self:
        options: dict[str, Any] = {
            "model_name_or_path": self.model_name_or_path,
            "device": self.device,
            "use_fp16": self.use_fp16,
            "model_kwargs": self.model_kwargs,
        }
        if self.model is not None:
            self._model = check_loaded_model(self.model, **options)
        else:
            self._model = load_model(
                self.model_name_or_path,
                device=self.device,
                use_fp16=self.use_fp16,
                model_kwargs=self.model_kwargs,
            )
        return self

    def _encode(self, texts: Sequence[str], side: Side) -> np.ndarray:
        """``(len(texts), dim)`` float32 embeddings of queries or documents, with this adapter's options."""
        return encode_side(
            self._model,
            texts,
            side,
            instruction=self.query_instruction if side == "query" else self.document_instruction,
            normalize_embeddings=self.normalize_embeddings,
            batch_size=self.batch_size,
            token_budget=self.token_budget,
            show_progress_bar=self.show_progress_bar,
        )
