"""Pointwise binary cross-entropy on (query, document) scores: for cross-encoders trained on labelled pairs.

Each pair is judged on its own: ``BCE(sigmoid(score), label)``, the loss of monoBERT (Nogueira & Cho, 2019,
"Passage Re-ranking with BERT", arXiv:1901.04085). Labels may be soft (teacher probabilities) in [0, 1].

Example:
    >>> import torch
    >>> round(pointwise_bce(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0])).item(), 4)
    0.41
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from retrievals_rag.losses._common import at_least_float32

__all__ = ["PointwiseBCELoss", "pointwise_bce"]


def pointwise_bce(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with logits between each pair's score and its label.

    Inputs:
        ======  =====================================  ==========================================
        name    shape                                  meaning
        ======  =====================================  ==========================================
        scores  ``(n_pairs,)`` or ``(n_pairs, 1)``     logits, one per (query, document) pair
        labels  ``(n_pairs,)`` or ``(n_pairs, 1)``     relevance in [0, 1] (1 relevant, 0 not)
        ======  =====================================  ==========================================

    Args:
        scores: A cross-encoder's logits.
        labels: Hard or soft labels.

    Returns:
        A scalar, averaged over pairs; computed in at least float32.

    Raises:
        ValueError: On mismatched shapes or a label outside [0, 1] (checking this reads the labels once).
    """
    if scores.dim() == 2 and scores.shape[1] == 1:
        scores = scores.squeeze(1)  # (n_pairs,)
    if scores.dim() != 1 or scores.shape[0] == 0:
        raise ValueError(
            f"scores must be (n_pairs,) or (n_pairs, 1) and non-empty, got {tuple(scores.shape)}"
        )
    n_pairs = scores.shape[0]
    if labels.shape not in ((n_pairs,), (n_pairs, 1)):
        raise ValueError(f"expected {n_pairs} labels, one per score, got shape {tuple(labels.shape)}")
    scores = at_least_float32(scores)
    labels = labels.reshape(-1).to(device=scores.device, dtype=scores.dtype)
    if bool(((labels < 0) | (labels > 1) | labels.isnan()).any()):
        raise ValueError("labels must lie in [0, 1] for binary cross-entropy")
    return F.binary_cross_entropy_with_logits(scores, labels)


class PointwiseBCELoss(nn.Module):
    """Pointwise binary cross-entropy; ``forward(scores, labels)``, see :func:`pointwise_bce` for the inputs.

    Without ``labels``, ``scores`` are a ``(batch, group_size)`` group of a positive (column 0, label 1) and its
    hard negatives (label 0): the form a reranker trainer hands over for grouped records (``loss_inputs``,
    :mod:`retrievals_rag.losses.protocol`).

    Example:
        >>> import torch
        >>> round(PointwiseBCELoss()(torch.tensor([[0.0, 0.0]])).item(), 4)  # log 2
        0.6931
    """

    loss_inputs: ClassVar[tuple[str, ...]] = ("pair_labels", "group_scores")
    min_group_size: ClassVar[int] = 2  # grouped records: a positive (label 1) and a negative (label 0)
    label_range: ClassVar[tuple[float, float]] = (0.0, 1.0)  # a probability

    def forward(self, scores: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            if scores.dim() != 2 or scores.shape[1] < 2:
                raise ValueError(
                    "without labels, scores must be (batch, group_size >= 2) groups, the positive first; "
                    f"got {tuple(scores.shape)}"
                )
            labels = torch.zeros_like(scores, dtype=torch.float32)  # (batch, G)
            labels[:, 0] = 1.0
            return pointwise_bce(scores.reshape(-1), labels.reshape(-1))
        return pointwise_bce(scores, labels)
