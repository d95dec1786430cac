"""How a trainer calls a loss: each loss class declares it in its ``loss_inputs`` class attribute.

A loss names the forms of input it takes; the trainers read :func:`loss_inputs` and call it accordingly, so a new
loss needs no new branch in a trainer, and the trainers never dispatch on a loss's name.

================  =========================================================================================
form              call
================  =========================================================================================
``embeddings``    ``loss(query_embeddings, document_embeddings)``, plus ``labels`` (scored pairs) or
                  ``teacher_scores`` (distillation records) as third argument. Bi-encoders; the default of a
                  loss that declares nothing (any ``nn.Module`` written for ``RetrievalTrainer`` before).
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

Example:
    >>> from torch import nn
    >>> loss_inputs(nn.Module())
    ('embeddings',)
"""

from __future__ import annotations

from typing import Any, Literal, get_args

__all__ = ["LossInput", "chance_loss", "loss_inputs", "needs_teacher"]

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


def needs_teacher(loss: Any) -> bool:
    """Whether ``loss`` compares the model with a teacher's scores (records with ``positive_scores``)."""
    return bool(getattr(loss, "needs_teacher", False))


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
