"""The registry of model kinds: one spelling per kind, its class and its settings class.

Every place that needs a kind reads it here: the Auto classes, the adapters' loaders, training, the CLI and the
RAG engine. The spelling is the one written into a saved folder's ``retrievals_rag_config.json``
(``model_kind``); the command line's older spellings (``cross-encoder``, ``llm``) are accepted as aliases and
mean the same kind. Nothing here imports torch: a kind's class is imported when it is asked for.

Example:
    >>> kind_spec("cross-encoder").name
    'cross_encoder'
    >>> [spec.name for spec in ranker_kinds()]
    ['cross_encoder', 'llm_ranker', 'colbert']
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from retrievals_rag.models.config import (
    ColBERTSettings,
    CrossEncoderSettings,
    EmbeddingSettings,
    LLMRankerSettings,
    read_model_kind,
)

if TYPE_CHECKING:
    from retrievals_rag.models.config import AnySettings

ModelKind = Literal["embedding", "cross_encoder", "llm_ranker", "colbert"]
RankerKindName = Literal["cross_encoder", "llm_ranker", "colbert"]


@dataclass(frozen=True)
class KindSpec:
    """One kind of model.

    Attributes:
        name: the kind's one spelling, as saved in a folder's ``model_kind``.
        module: the module that defines the kind's class.
        class_name: the public class that loads and saves it (named in error messages).
        settings_class: the frozen settings dataclass saved next to its weights.
        ranker: scores (query, document) pairs (``compute_score`` / ``rerank``) rather than embedding texts.
        load_options: the keyword arguments of the class's ``from_pretrained`` beyond the path, ``device`` and
            ``use_fp16`` (what an adapter's ``model_kwargs`` may carry; a test holds it to the signature).
        aliases: other spellings accepted on input (the command line's ``cross-encoder``, ``llm``).
        description: one line for help texts.
    """

    name: ModelKind
    module: str
    class_name: str
    settings_class: type[AnySettings]
    ranker: bool
    load_options: frozenset[str]
    aliases: tuple[str, ...] = ()
    description: str = ""

    def model_class(self) -> type[Any]:
        """The kind's class (imports torch and the defining module now)."""
        return getattr(importlib.import_module(self.module), self.class_name)


_COMMON_OPTIONS = frozenset({"max_length", "trust_remote_code", "dtype", "merge_lora"})
_WINDOW_OPTIONS = frozenset({"window_stride", "max_windows"})
_INSTRUCTIONS = frozenset({"query_instruction", "document_instruction"})

KINDS: dict[ModelKind, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec(
            "embedding",
            "retrievals_rag.models.embedding",
            "AutoModelForEmbedding",
            EmbeddingSettings,
            ranker=False,
            load_options=_COMMON_OPTIONS
            | {
                "pooling_method",
                "query_instruction",
                "document_instruction",
                "normalize_embeddings",
                "backend",
            },
            aliases=("embedder", "bi-encoder"),
            description="dense embedder: a transformer plus pooling (encoders and decoder LLMs)",
        ),
        KindSpec(
            "cross_encoder",
            "retrievals_rag.models.ranking",
            "AutoModelForRanking",
            CrossEncoderSettings,
            ranker=True,
            load_options=_COMMON_OPTIONS | _WINDOW_OPTIONS | _INSTRUCTIONS | {"num_labels", "backend"},
            aliases=("cross-encoder",),
            description="cross-encoder reranker: a classification head reads query and document together",
        ),
        KindSpec(
            "llm_ranker",
            "retrievals_rag.models.llm_ranking",
            "LLMRanker",
            LLMRankerSettings,
            ranker=True,
            load_options=_COMMON_OPTIONS
            | _WINDOW_OPTIONS
            | _INSTRUCTIONS
            | {"prompt", "target_token", "scoring"},
            aliases=("llm", "llm-ranker"),
            description="LLM reranker: a decoder LLM scored by its 'Yes' logit or by the query's likelihood",
        ),
        KindSpec(
            "colbert",
            "retrievals_rag.models.colbert",
            "ColBERT",
            ColBERTSettings,
            ranker=True,
            load_options=_COMMON_OPTIONS | _WINDOW_OPTIONS | {"colbert_dim", "query_max_length", "backend"},
            description="ColBERT late interaction: per-token vectors scored by MaxSim",
        ),
    )
}
"""Every kind, by its one spelling. A new kind is one entry here."""


def kind_names(rankers_only: bool = False) -> list[str]:
    """The kinds' spellings, in registry order."""
    return [name for name, spec in KINDS.items() if spec.ranker or not rankers_only]


def ranker_kinds() -> list[KindSpec]:
    """The kinds that rerank."""
    return [spec for spec in KINDS.values() if spec.ranker]


def kind_spec(name: str) -> KindSpec:
    """The kind spelled ``name`` (or one of its aliases).

    Raises:
        ValueError: naming the kinds there are.
    """
    if name in KINDS:
        return KINDS[name]  # type: ignore[index]
    for spec in KINDS.values():
        if name in spec.aliases:
            return spec
    raise ValueError(f"unknown model kind {name!r}: expected one of {', '.join(KINDS)}")


def kind_of(model: object) -> ModelKind:
    """The kind of a loaded model (or of a model class).

    Raises:
        TypeError: not a model of any registered kind.
    """
    model_type = model if isinstance(model, type) else type(model)
    # most derived first, so that a subclass (LLMRanker of the cross-encoder's base) is found as itself
    for cls in model_type.__mro__:
        for spec in KINDS.values():
            if cls.__module__ == spec.module and cls.__name__ == spec.class_name:
                return spec.name
    raise TypeError(
        f"{model_type.__name__} is not a retrievals_rag model (expected one of "
        f"{', '.join(spec.class_name for spec in KINDS.values())})"
    )


def folder_kind(path: str | os.PathLike[str]) -> ModelKind | None:
    """The kind a folder was saved as by this library, or None (not a folder, or not saved by us).

    Raises:
        ValueError: the folder's config names a kind that does not exist.
    """
    if not Path(path).is_dir():
        return None
    saved = read_model_kind(path)
    if saved is None:
        return None
    try:
        return kind_spec(saved).name
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" or word.startswith("llm") else "a"


def check_folder_kind(path: str | os.PathLike[str], expected: str, *, accept: tuple[str, ...] = ()) -> None:
    """Refuse a folder saved as another kind than ``expected`` (or one of ``accept``), naming the class to use.

    A folder without our config (a plain transformers or sentence-transformers folder) passes: any kind may
    start from it.

    Raises:
        ValueError: e.g. "runs/colbert holds a colbert model, not an embedding model: load it with
            ColBERT.from_pretrained".
    """
    found = folder_kind(path)
    wanted = kind_spec(expected)
    allowed = {wanted.name, *(kind_spec(name).name for name in accept)}
    if found is None or found in allowed:
        return
    holder = KINDS[found]
    raise ValueError(
        f"{path} holds a {found} model, not {_article(wanted.name)} {wanted.name} model: load it with "
        f"{holder.class_name}.from_pretrained (or pass the kind it holds)"
    )


def resolve_kind(
    path: str | os.PathLike[str], kind: str = "auto", *, default: str | None = None
) -> ModelKind:
    """The kind to load ``path`` as: ``kind`` itself, or for ``"auto"`` the kind the folder was saved as.

    Args:
        path: a model folder or hub id.
        kind: a kind's spelling (or alias), or ``"auto"``.
        default: the kind for ``"auto"`` when the folder does not say (a bare transformers folder); None:
            refuse such a folder.

    Raises:
        ValueError: an unknown kind; a folder saved as another kind than asked for; ``"auto"`` on a folder that
            does not say and no default.
    """
    if kind != "auto":
        spec = kind_spec(kind)
        check_folder_kind(path, spec.name, accept=("embedding",) if spec.ranker else ())
        return spec.name
    found = folder_kind(path)
    if found is not None:
        return found
    if default is None:
        raise ValueError(
            f"{path} does not say which kind of model it holds (no retrievals_rag_config.json): pass the kind, "
            f"one of {', '.join(KINDS)}"
        )
    return kind_spec(default).name


def load_model(
    path: str | os.PathLike[str],
    kind: str = "auto",
    *,
    default: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Load ``path`` as the kind :func:`resolve_kind` picks, with that class's ``from_pretrained(path, **options)``.

    ``options`` are the class's own keyword arguments, checked by its signature (a misspelt one raises).
    """
    spec = KINDS[resolve_kind(path, kind, default=default)]
    return spec.model_class().from_pretrained(path, **dict(options or {}))
