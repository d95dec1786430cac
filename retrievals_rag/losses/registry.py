"""Losses by command-line name, built from an options mapping checked against the class's signature.

Importing this module loads no torch; :func:`build_loss` imports the one loss module it builds.

Example:
    >>> sorted(LOSSES)
    ['bce', 'cosent', 'infonce', 'kl', 'listwise', 'margin_mse', 'triplet']
    >>> build_loss("infonce", {"temperature": 0.02})
    InfoNCELoss(temperature=0.02, use_inbatch_negatives=True, gather_across_processes=False, score_function='cos')
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["LOSSES", "build_loss", "loss_class"]

# command-line name -> "module.ClassName"
LOSSES: dict[str, str] = {
    "infonce": "retrievals_rag.losses.infonce.InfoNCELoss",
    "triplet": "retrievals_rag.losses.triplet.TripletMarginLoss",
    "cosent": "retrievals_rag.losses.cosent.CoSENTLoss",
    "margin_mse": "retrievals_rag.losses.distillation.MarginMSELoss",
    "kl": "retrievals_rag.losses.distillation.KLDistillationLoss",
    "bce": "retrievals_rag.losses.pointwise.PointwiseBCELoss",
    "listwise": "retrievals_rag.losses.listwise.ListwiseCrossEntropyLoss",
}


def loss_class(name: str) -> type[nn.Module]:
    """The loss class registered under ``name``; ValueError naming the known names otherwise."""
    class_path = LOSSES.get(name)
    if class_path is None:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    module_name, class_name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)


def build_loss(name: str, options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the loss registered under ``name`` with ``options`` as its constructor's keyword arguments.

    Args:
        name: A key of :data:`LOSSES`.
        options: Constructor options, e.g. ``{"temperature": 0.02}``; None or empty for the defaults.

    Returns:
        The loss module.

    Raises:
        ValueError: On an unknown loss name, or options the class does not take (the message names them and
            the valid ones); the class's own checks raise ValueError on bad values.
    """
    cls = loss_class(name)
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
