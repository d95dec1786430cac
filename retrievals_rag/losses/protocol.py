"""How a trainer calls a loss: each loss class declares it in its ``loss_inputs`` class attribute.

A loss names the forms of input it takes; the trainers read :func:`loss_inputs` and call it accordingly, so a new
loss needs no new branch in a trainer, and the trainers never dispatch on a loss's name.

================  =========================================================================================
form              call
================  =========================================================================================
``embeddings``    ``loss(query_embeddings, document_embeddings, *extra_inputs(loss, batch))``: plus the
                  ``labels`` of scored pairs for a loss that needs them, or the ``teacher_scores`` for one that
                  distils, as third argument. Bi-encoders; the default of a loss that declares nothing (any
                  ``nn.Module`` written for ``RetrievalTrainer`` before).
``model``         ``loss.model_loss(model, inputs)``: the loss runs the model itself on the collated batch
                  (the tokenized ``"query"`` / ``"documents"`` and any ``"labels"`` / ``"teacher_scores"``),
                  e.g. :class:`~retrievals_rag.losses.cached.GradCacheLoss`, which embeds in chunks without
                  gradients and replays them with gradients. It returns the loss; the trainer's ``backward``
                  then runs as for any loss. A trainer prefers this form when a loss offers it beside another.
``group_scores``  ``loss(scores)``, ``scores`` ``(batch, group_size)``: a ranker's score of each query's group,
                  positive first; a loss with ``needs_teacher = True`` is called
                  ``loss(scores, teacher_scores)``.
``pair_labels``   ``loss(scores, labels)``, both ``(n_pairs,)``: scored (query, document, label) pairs.
``token_vectors`` ``loss(queries, documents, score)``: late interaction; ``queries`` / ``documents`` carry
                  ``.embeddings`` ``(n, length, dim)`` and ``.mask`` ``(n, length)`` (documents grouped per
                  query, positive first), ``score(queries, documents)`` is the model's MaxSim,
                  ``(n_queries, n_documents)``.
================  =========================================================================================

What data a loss needs is declared beside it, so that a trainer can refuse data that does not fit before the
first step (:func:`needs_teacher`, :func:`needs_labels`, :func:`min_group_size`, :func:`label_range`), and a
wrapper (Matryoshka, GradCache: ``wraps_loss = True``, the wrapped loss in ``.loss``) answers for the loss it wraps.

Example:
    >>> from torch import nn
    >>> loss_inputs(nn.Module())
    ('embeddings',)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Literal, get_args

__all__ = [
    "LossInput",
    "chance_loss",
    "extra_inputs",
    "label_range",
    "loss_inputs",
    "min_group_size",
    "needs_labels",
    "needs_teacher",
    "takes_labels",
]

LossInput = Literal["embeddings", "model", "group_scores", "pair_labels", "token_vectors"]
LOSS_INPUTS: tuple[str, ...] = get_args(LossInput)


def loss_inputs(loss: Any) -> tuple[LossInput, ...]:
    """The input forms ``loss`` (a module or its class) declares; ``("embeddings",)`` when it declares none.

    Raises:
        ValueError: a declared form that is not one of :data:`LossInput`.
    """
    declared = getattr(loss, "loss_inputs", ("embeddings",))
    declared = (declared,) if isinstance(declared, str) else tuple(declared)
    unknown = [form for form in declared if form not in LOSS_INPUTS]
    if unknown or not declared:
        raise ValueError(
            f"{type(loss).__name__}.loss_inputs must name forms among {', '.join(LOSS_INPUTS)}, got {declared!r}"
        )
    return declared


def _innermost(loss: Any) -> Any:
    """The loss that a wrapper (``wraps_loss = True``, the wrapped loss in ``.loss``) runs; ``loss`` itself else."""
    while getattr(loss, "wraps_loss", False):
        loss = loss.loss
    return loss


def needs_teacher(loss: Any) -> bool:
    """Whether ``loss`` compares the model with a teacher's scores (records with ``positive_scores``)."""
    return bool(getattr(_innermost(loss), "needs_teacher", False))


def needs_labels(loss: Any) -> bool:
    """Whether ``loss`` learns from scored pairs' labels only (``needs_labels = True``: CoSENT).

    A loss over embeddings that declares nothing needs them when its ``forward`` requires a third argument and it
    is not a distillation loss (the protocol's third argument is the labels or the teacher's scores).
    """
    inner = _innermost(loss)
    declared = getattr(inner, "needs_labels", None)
    if declared is not None:
        return bool(declared)
    if "embeddings" not in loss_inputs(inner) or needs_teacher(inner):
        return False
    forward = getattr(inner, "forward", None)
    if not callable(forward):
        return False
    try:
        parameters = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        parameter
        for parameter in parameters
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        and parameter.default is parameter.empty
        and parameter.name != "self"
    ]
    return len(required) >= 3


def takes_labels(loss: Any) -> bool:
    """Whether ``loss`` can learn from scored (query, document, label) pairs: it needs labels, or it takes the
    ``pair_labels`` form (a reranker's pointwise loss)."""
    return needs_labels(loss) or "pair_labels" in loss_inputs(_innermost(loss))


def min_group_size(loss: Any) -> int:
    """The fewest documents per query (the positive and its hard negatives) ``loss`` learns from in grouped
    records: 2 for a loss that compares the positive with its own group's negatives (``min_group_size = 2``),
    1 for one that finds negatives elsewhere (in-batch InfoNCE) or declares nothing."""
    return int(getattr(_innermost(loss), "min_group_size", 1))


def label_range(loss: Any) -> tuple[float, float] | None:
    """The interval a scored pair's label must lie in for ``loss`` (``label_range``: binary cross-entropy's
    [0, 1]), or None for any finite label."""
    declared = getattr(_innermost(loss), "label_range", None)
    return None if declared is None else (float(declared[0]), float(declared[1]))


def extra_inputs(loss: Any, batch: Mapping[str, Any]) -> list[Any]:
    """What an ``embeddings`` loss takes after the embeddings, from a collated ``batch``: the labels if it needs
    them, the teacher's scores if it distils, nothing otherwise (a teacher's scores in the records of a loss
    that does not distil are not its business)."""
    if needs_teacher(loss):
        return [batch["teacher_scores"]] if "teacher_scores" in batch else []
    if needs_labels(loss) and "labels" in batch:
        return [batch["labels"]]
    return []


def chance_loss(loss: Any, *, batch_size: int, group_size: int, world_size: int = 1) -> float | None:
    """The loss of a model that scores every candidate alike (the level a run that learns gets below), or None.

    A softmax cross-entropy over each query's candidates declares it (``chance_loss`` method: InfoNCE, ColBERT's
    late-interaction InfoNCE, the rerankers' listwise loss: ``log`` of the candidates); a wrapper's method asks the
    loss it wraps (GradCache: the same level; Matryoshka: weighted by its dims' weights). Others (margins,
    distillation, pointwise) have no such level and give None.

    Args:
        batch_size: queries per process and step.
        group_size: documents per query (positive and hard negatives).
        world_size: processes whose documents a gathering loss sees.
    """
    method = getattr(loss, "chance_loss", None)
    if not callable(method):
        return None
    level = method(batch_size=batch_size, group_size=group_size, world_size=world_size)
    return None if level is None else float(level)
