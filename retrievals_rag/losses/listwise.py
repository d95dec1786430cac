"""Listwise softmax cross-entropy: each row's positive against the other candidates of that row.

The shared core of InfoNCE (with or without in-batch negatives) and of rerankers' listwise loss over a query's
group of scored documents (Cao et al. 2007, ListNet, with a one-hot target; as in FlagEmbedding's reranker).

Example:
    >>> import torch
    >>> scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> round(listwise_cross_entropy(scores).item(), 4)
    0.8955
    >>> round(listwise_cross_entropy(scores, torch.tensor([0, 1])).item(), 4)
    0.3955
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from retrievals_rag.losses._common import at_least_float32, check_positive

__all__ = [
    "InBatchChanceLevel",
    "ListwiseCrossEntropyLoss",
    "group_flat_scores",
    "listwise_cross_entropy",
]


def listwise_cross_entropy(scores: torch.Tensor, target_index: int | torch.Tensor = 0) -> torch.Tensor:
    """Mean over rows of ``-log softmax(scores[row])[target]``.

    Inputs:
        ============  ==========================  ===================================================
        name          shape                       meaning
        ============  ==========================  ===================================================
        scores        ``(batch, n_candidates)``   logits, already divided by any temperature
        target_index  int, or ``(batch,)`` long   column of each row's positive (one int: every row)
        ============  ==========================  ===================================================

    Args:
        scores: Logits, one row per query; at least two candidates (a softmax over one is constant).
        target_index: The positive's column, shared by all rows or one per row.

    Returns:
        A scalar, averaged over rows; computed in at least float32.

    Raises:
        ValueError: On a wrong shape, fewer than two candidates or a target outside the row.

    Example:
        >>> import torch
        >>> round(listwise_cross_entropy(torch.tensor([[0.0, 0.0]])).item(), 4)  # log 2
        0.6931
    """
    if scores.dim() != 2 or scores.shape[0] == 0:
        raise ValueError(f"scores must be 2-D (batch, n_candidates) and non-empty, got {tuple(scores.shape)}")
    n_rows, n_candidates = scores.shape
    if n_candidates < 2:
        raise ValueError(
            "listwise cross-entropy needs at least 2 candidates per row: a softmax over one candidate is "
            "constant, so its loss and gradient would be 0"
        )
    if isinstance(target_index, torch.Tensor):
        if target_index.shape != (n_rows,) or target_index.is_floating_point():
            raise ValueError(
                f"a target_index tensor must hold one integer per row, shape ({n_rows},), "
                f"got {target_index.dtype} of shape {tuple(target_index.shape)}"
            )
        targets = target_index.to(device=scores.device, dtype=torch.long)
    else:
        if isinstance(target_index, bool) or not 0 <= target_index < n_candidates:
            raise ValueError(f"target_index must be in [0, {n_candidates}), got {target_index!r}")
        targets = torch.full((n_rows,), target_index, dtype=torch.long, device=scores.device)
    return F.cross_entropy(at_least_float32(scores), targets)


class InBatchChanceLevel:
    """``chance_loss`` of a contrastive loss with the attributes ``use_inbatch_negatives`` and
    ``gather_across_processes`` (InfoNCE over embeddings, ColBERT's late interaction): the loss of a model that
    scores every candidate alike, ``log`` of the candidates each query's softmax runs over: its own group, or with
    in-batch negatives every document of the batch (of every process's batch when gathered)."""

    use_inbatch_negatives: bool
    gather_across_processes: bool

    def chance_loss(self, *, batch_size: int, group_size: int, world_size: int) -> float:
        candidates = group_size
        if self.use_inbatch_negatives:
            candidates *= batch_size * (world_size if self.gather_across_processes else 1)
        return math.log(candidates)

    @property
    def min_group_size(self) -> int:
        """1 with in-batch negatives (the other queries' documents), else 2 (retrievals_rag.losses.protocol)."""
        return 1 if self.use_inbatch_negatives else 2


def group_flat_scores(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """Reshape one score per (query, document) pair, in the grouped order, to ``(batch, group_size)``.

    Accepts ``(batch * group_size,)``, a model's ``(batch * group_size, 1)`` logits, or ``(batch, group_size)``.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
    flat_or_column = scores.dim() == 1 or (scores.dim() == 2 and scores.shape[1] == 1)
    already_grouped = scores.dim() == 2 and scores.shape[1] == group_size
    if not (flat_or_column or already_grouped):
        raise ValueError(
            "scores must be (batch * group_size,), (batch * group_size, 1) or (batch, group_size) with "
            f"group_size={group_size}, got {tuple(scores.shape)}"
        )
    if scores.numel() == 0 or scores.numel() % group_size != 0:
        raise ValueError(f"{scores.numel()} scores cannot be split into groups of group_size={group_size}")
    return scores.reshape(-1, group_size)  # (batch, group_size)


class ListwiseCrossEntropyLoss(nn.Module):
    """Listwise cross-entropy over each query's group of scored documents, its positive first.

    For cross-encoder / LLM rerankers: the model scores every (query, document) pair of a grouped batch and
    the loss asks each query's positive to win the softmax over its group.

    Inputs of ``forward``:
        ==========  ==============================================  ===========================================
        name        shape                                           meaning
        ==========  ==============================================  ===========================================
        scores      ``(batch * group_size,)``, ``(.., 1)`` or        one score per pair, grouped per query as
                    ``(batch, group_size)``                         ``[q0_pos, q0_neg1, ..., q1_pos, ...]``
        group_size  int >= 2; may be omitted for                 documents per query
                    ``(batch, group_size)`` scores
        ==========  ==============================================  ===========================================

    A reranker trainer calls it with its ``(batch, group_size)`` group scores (``loss_inputs``:
    ``group_scores``, :mod:`retrievals_rag.losses.protocol`).

    Args:
        temperature: Scores are divided by it before the softmax (> 0); 1 for rerankers' raw logits.

    Example:
        >>> import torch
        >>> loss = ListwiseCrossEntropyLoss()
        >>> round(loss(torch.tensor([2.0, 0.0, 0.0, 1.0]), group_size=2).item(), 4)
        0.7201
    """

    loss_inputs: ClassVar[tuple[str, ...]] = ("group_scores",)
    min_group_size: ClassVar[int] = 2  # the positive must win over at least one negative

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature = float(temperature)

    def forward(self, scores: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
        if group_size is None:
            if scores.dim() != 2:
                raise ValueError(
                    f"without group_size, scores must be (batch, group_size), got {tuple(scores.shape)}"
                )
            group_size = int(scores.shape[1])
        grouped = group_flat_scores(scores, group_size)  # (batch, group_size)
        return listwise_cross_entropy(grouped / self.temperature, 0)

    def chance_loss(self, *, batch_size: int, group_size: int, world_size: int) -> float:
        """The loss of a model that scores every document of a group alike: ``log(group_size)``."""
        return math.log(group_size)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
