"""Losses by command-line name and model kind, built from an options mapping checked against the class's signature.

This is the one place that says which loss fits which kind of model (:data:`KIND_LOSSES`; a kind's first loss
is its default). A name means the same objective for every kind it fits, computed on what that kind produces:
``kl`` on a bi-encoder's embeddings is :class:`~retrievals_rag.losses.distillation.KLDistillationLoss`, on a
reranker's group scores :class:`~retrievals_rag.losses.distillation.ScoreKLDistillationLoss`.

How a trainer calls a loss is declared by the loss class itself, in its ``loss_inputs`` class attribute
(:mod:`retrievals_rag.losses.protocol`), so a new loss needs no new branch in a trainer.

Importing this module loads no torch; :func:`build_loss` imports the one loss module it builds.

Example:
    >>> sorted(LOSSES)
    ['bce', 'cosent', 'infonce', 'kl', 'listwise', 'margin_mse', 'triplet']
    >>> build_loss("infonce", {"temperature": 0.02})
    InfoNCELoss(temperature=0.02, use_inbatch_negatives=True, gather_across_processes=False, score_function='cos')
    >>> losses_for_kind("colbert")
    ('infonce', 'kl', 'margin_mse')
    >>> build_loss("listwise", kind="llm_ranker")
    ListwiseCrossEntropyLoss(temperature=1.0)
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "DISTILLATION_LOSSES",
    "KIND_LOSSES",
    "LOSSES",
    "build_loss",
    "loss_class",
    "loss_parameters",
    "losses_for_kind",
    "resolve_loss",
]

_PAIR_RANKER_LOSSES: dict[str, str] = {
    "listwise": "retrievals_rag.losses.listwise.ListwiseCrossEntropyLoss",
    "bce": "retrievals_rag.losses.pointwise.PointwiseBCELoss",
    "kl": "retrievals_rag.losses.distillation.ScoreKLDistillationLoss",
    "margin_mse": "retrievals_rag.losses.distillation.ScoreMarginMSELoss",
}

# model kind (models/registry.py spelling) -> loss name -> "module.ClassName"; the first name is the default
KIND_LOSSES: dict[str, dict[str, str]] = {
    "embedding": {
        "infonce": "retrievals_rag.losses.infonce.InfoNCELoss",
        "triplet": "retrievals_rag.losses.triplet.TripletMarginLoss",
        "cosent": "retrievals_rag.losses.cosent.CoSENTLoss",
        "margin_mse": "retrievals_rag.losses.distillation.MarginMSELoss",
        "kl": "retrievals_rag.losses.distillation.KLDistillationLoss",
    },
    "cross_encoder": _PAIR_RANKER_LOSSES,
    "llm_ranker": _PAIR_RANKER_LOSSES,
    "colbert": {
        "infonce": "retrievals_rag.losses.late_interaction.LateInteractionInfoNCELoss",
        "kl": "retrievals_rag.losses.distillation.ScoreKLDistillationLoss",
        "margin_mse": "retrievals_rag.losses.distillation.ScoreMarginMSELoss",
    },
}

# Losses that compare the student with a teacher's scores carried by the records.
DISTILLATION_LOSSES: tuple[str, ...] = ("kl", "margin_mse")

# command-line name -> "module.ClassName" without a kind: the embedder's, and the pair rankers' own losses
LOSSES: dict[str, str] = {
    **KIND_LOSSES["embedding"],
    "bce": _PAIR_RANKER_LOSSES["bce"],
    "listwise": _PAIR_RANKER_LOSSES["listwise"],
}

# why a loss does not fit a kind, where the reason is not obvious
_MISFIT_HINTS: dict[tuple[str, str], str] = {
    ("pair", "infonce"): " (in-batch negatives need independent query and document encodings: use listwise)",
    ("colbert", "listwise"): " (ColBERT's infonce is listwise over the group plus in-batch negatives; "
    "--use_inbatch_negatives false keeps only the group)",
    ("colbert", "bce"): " (MaxSim scores are unbounded sums, not logits)",
}


def _kind_name(kind: str) -> str:
    from retrievals_rag.models.registry import kind_spec

    return kind_spec(kind).name


def losses_for_kind(kind: str) -> tuple[str, ...]:
    """The loss names a model of ``kind`` (any spelling the model registry accepts) trains with, default first."""
    return tuple(KIND_LOSSES[_kind_name(kind)])


def _class_path(name: str, kind: str | None) -> str:
    if kind is None:
        class_path = LOSSES.get(name)
        if class_path is None:
            raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
        return class_path
    canonical = _kind_name(kind)
    table = KIND_LOSSES[canonical]
    if name not in table:
        family = "pair" if canonical in ("cross_encoder", "llm_ranker") else canonical
        hint = _MISFIT_HINTS.get((family, name), "")
        known = "" if name in LOSSES else "unknown "
        noun = "an embedding model" if canonical == "embedding" else f"a {kind} reranker"
        raise ValueError(f"{known}loss {name!r} does not fit {noun}{hint}; choose one of {', '.join(table)}")
    return table[name]


def loss_class(name: str, kind: str | None = None) -> type[nn.Module]:
    """The loss class registered under ``name`` (for ``kind``, when given); ValueError naming the known names."""
    module_name, class_name = _class_path(name, kind).rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)


def loss_parameters(name: str, kind: str | None = None) -> list[str]:
    """The constructor options of the loss ``name`` (for ``kind``)."""
    return [
        parameter_name
        for parameter_name, parameter in inspect.signature(loss_class(name, kind)).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]


def resolve_loss(kind: str, name: str | None, scored_pairs: bool = False) -> str:
    """The loss a model of ``kind`` trains with: ``name``, checked, or the kind's default.

    Args:
        kind: a model kind, any spelling :func:`retrievals_rag.models.registry.kind_spec` accepts.
        name: a loss name, or None for the default (``bce`` for scored pairs, else the kind's first).
        scored_pairs: the data are scored (query, document, label) pairs rather than groups.

    Raises:
        ValueError: a loss that does not fit the kind or the data, with the ones that do.
    """
    canonical = _kind_name(kind)
    allowed = KIND_LOSSES[canonical]
    if scored_pairs and canonical != "embedding":
        if "bce" not in allowed:
            raise ValueError(
                f"a {kind} reranker does not train on scored pairs (query, document, label): its scores are "
                "not probabilities; give it grouped records (query, positive, negative)"
            )
        if name not in (None, "bce"):
            raise ValueError(f"scored pairs (query, document, label) train with loss bce, not {name!r}")
        return "bce"
    if name is None:
        return next(iter(allowed))
    _class_path(name, kind)  # raises, naming the losses that fit
    return name


def build_loss(name: str, options: Mapping[str, Any] | None = None, kind: str | None = None) -> nn.Module:
    """Build the loss registered under ``name`` with ``options`` as its constructor's keyword arguments.

    Args:
        name: A key of :data:`LOSSES`, or of ``KIND_LOSSES[kind]``.
        options: Constructor options, e.g. ``{"temperature": 0.02}``; None or empty for the defaults.
        kind: The model kind the loss trains (``"embedding"``, ``"cross_encoder"`` / ``"cross-encoder"``,
            ``"llm_ranker"`` / ``"llm"``, ``"colbert"``); None: :data:`LOSSES` (the embedder's losses and the
            pair rankers' ``bce`` / ``listwise``).

    Returns:
        The loss module.

    Raises:
        ValueError: On an unknown loss name or one that does not fit ``kind``, or options the class does not
            take (the message names them and the valid ones); the class's own checks raise ValueError on bad
            values.
    """
    cls = loss_class(name, kind)
    options = dict(options or {})
    parameters = {
        parameter_name: parameter
        for parameter_name, parameter in inspect.signature(cls).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        valid = ", ".join(sorted(parameters)) or "none"
        raise ValueError(f"unknown option(s) for loss {name!r}: {', '.join(unknown)}; valid options: {valid}")
    missing = sorted(
        parameter_name
        for parameter_name, parameter in parameters.items()
        if parameter.default is parameter.empty and parameter_name not in options
    )
    if missing:
        raise ValueError(f"loss {name!r} needs option(s): {', '.join(missing)}")
    return cls(**options)
