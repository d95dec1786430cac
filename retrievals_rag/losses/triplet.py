"""Triplet margin loss: each query's positive must outscore each of its hard negatives by a margin.

Schroff, Kalenichenko & Philbin (2015), "FaceNet: A Unified Embedding for Face Recognition and Clustering"
(CVPR); for sentence embeddings, Reimers & Gurevych (2019), "Sentence-BERT" (EMNLP). Written on similarity
scores rather than distances: ``relu(margin - s(q, pos) + s(q, neg))``.

Example:
    >>> import torch
    >>> queries = torch.tensor([[1.0, 0.0]])
    >>> documents = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # positive, then 2 negatives
    >>> round(triplet_margin_loss(queries, documents, group_size=3, margin=0.5).item(), 4)  # (0 + 0.2071) / 2
    0.1036
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from retrievals_rag.losses._common import check_non_negative, check_score_function
from retrievals_rag.losses._grouped import grouped_scores, infer_group_size
from retrievals_rag.similarity import ScoreFunction

__all__ = ["TripletMarginLoss", "triplet_margin_loss"]


def triplet_margin_loss(
    query_embeddings: torch.Tensor,
    document_embeddings: torch.Tensor,
    *,
    group_size: int,
    margin: float = 0.2,
    score_function: ScoreFunction = "cos",
) -> torch.Tensor:
    """Mean over (query, hard negative) pairs of ``relu(margin - s(q, pos) + s(q, neg))``.

    Inputs:
        ===================  ===============================  ==========================================
        name                 shape                            meaning
        ===================  ===============================  ==========================================
        query_embeddings     ``(batch, dim)``                 one vector per query
        document_embeddings  ``(batch * group_size, dim)``    grouped ``[q0_pos, q0_neg1, ..., q1_pos, ...]``
        ===================  ===============================  ==========================================

    Args:
        query_embeddings: The queries.
        document_embeddings: Each query's positive then its ``group_size - 1`` hard negatives.
        group_size: Documents per query, >= 2 (a triplet needs a negative).
        margin: How far (>= 0) the positive's score must exceed each negative's; 0.2 suits cosine scores.
        score_function: ``"cos"`` or ``"dot"``.

    Returns:
        A scalar, averaged over ``batch * (group_size - 1)`` triplets.

    Raises:
        ValueError: On ``group_size < 2``, a mismatched document count or a negative margin.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(
            f"the triplet loss needs an int group_size >= 2 (a positive, a negative), got {group_size!r}"
        )
    check_non_negative("margin", margin)
    check_score_function(score_function)
    scores = grouped_scores(query_embeddings, document_embeddings, group_size, score_function)  # (batch, G)
    violations = margin - scores[:, :1] + scores[:, 1:]  # (batch, G - 1)
    return torch.relu(violations).mean()


class TripletMarginLoss(nn.Module):
    """Triplet margin loss over each query's group; ``forward(query_embeddings, document_embeddings)``.

    ``group_size`` is inferred from the shapes (``n_documents // batch``, at least 2); see
    :func:`triplet_margin_loss` for the inputs.

    Args:
        margin: Required lead (>= 0) of the positive's score over each negative's.
        score_function: ``"cos"`` or ``"dot"``.
    """

    min_group_size: ClassVar[int] = 2  # a positive and a negative per query

    def __init__(self, margin: float = 0.2, score_function: ScoreFunction = "cos") -> None:
        super().__init__()
        check_non_negative("margin", margin)
        check_score_function(score_function)
        self.margin = float(margin)
        self.score_function: ScoreFunction = score_function

    def forward(self, query_embeddings: torch.Tensor, document_embeddings: torch.Tensor) -> torch.Tensor:
        return triplet_margin_loss(
            query_embeddings,
            document_embeddings,
            group_size=infer_group_size(query_embeddings, document_embeddings),
            margin=self.margin,
            score_function=self.score_function,
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, score_function={self.score_function!r}"
