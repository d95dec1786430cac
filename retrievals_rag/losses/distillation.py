"""Distillation from a teacher's scores (typically a cross-encoder) into a bi-encoder: MarginMSE and KL.

Both compare, per query, the student's scores of its group ``[pos, neg_1, ..., neg_{G-1}]`` with the teacher's
scores of the same documents.

- MarginMSE (Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models with Cross-Architecture
  Knowledge Distillation", arXiv:2010.02666): match the margins ``s_pos - s_neg_j``, so the student need not
  copy the teacher's scale or offset.
- KL (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531):
  match the softmax distributions over the group at a temperature.

Example:
    >>> import torch
    >>> student = torch.tensor([[3.0, 1.0, 0.0]])
    >>> teacher = torch.tensor([[5.0, 2.0, 2.0]])
    >>> margin_mse_loss(student, teacher)  # margins (2, 3) vs (3, 3)
    tensor(0.5000)
    >>> round(kl_distillation_loss(student, teacher).item(), 4)
    0.0296
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from retrievals_rag.losses._common import at_least_float32, check_positive, check_score_function
from retrievals_rag.losses._grouped import grouped_scores, infer_group_size
from retrievals_rag.similarity import ScoreFunction

__all__ = [
    "KLDistillationLoss",
    "MarginMSELoss",
    "ScoreKLDistillationLoss",
    "ScoreMarginMSELoss",
    "kl_distillation_loss",
    "margin_mse_loss",
]


def _check_score_pair(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> None:
    if student_scores.dim() != 2 or student_scores.shape[0] == 0:
        raise ValueError(f"student_scores must be 2-D (batch, group_size), got {tuple(student_scores.shape)}")
    if teacher_scores.shape != student_scores.shape:
        raise ValueError(
            f"teacher_scores must have the student's shape {tuple(student_scores.shape)} (batch, group_size), "
            f"got {tuple(teacher_scores.shape)}"
        )
    if student_scores.shape[1] < 2:
        raise ValueError(
            "distillation needs group_size >= 2 (a positive and at least one negative): with one document "
            "there is no margin and the softmax is constant"
        )


def margin_mse_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the student's and the teacher's margins ``s_pos - s_neg_j``.

    Inputs:
        ==============  =======================  =====================================================
        name            shape                    meaning
        ==============  =======================  =====================================================
        student_scores  ``(batch, group_size)``  the student's score of each query's documents, pos first
        teacher_scores  ``(batch, group_size)``  the teacher's scores of the same documents (no gradient)
        ==============  =======================  =====================================================

    Returns:
        A scalar, averaged over ``batch * (group_size - 1)`` margins.

    Raises:
        ValueError: On mismatched shapes or ``group_size < 2``.
    """
    _check_score_pair(student_scores, teacher_scores)
    student_scores = at_least_float32(student_scores)
    teacher_scores = teacher_scores.detach().to(device=student_scores.device, dtype=student_scores.dtype)
    student_margins = student_scores[:, :1] - student_scores[:, 1:]  # (batch, G - 1)
    teacher_margins = teacher_scores[:, :1] - teacher_scores[:, 1:]  # (batch, G - 1)
    return F.mse_loss(student_margins, teacher_margins)


def kl_distillation_loss(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``T**2 * KL(softmax(teacher / T) || softmax(student / T))``, summed over a group, averaged over queries.

    The KL is "batchmean": the sum over every query's group divided by the number of queries, which is the
    mathematical KL per query (PyTorch's ``reduction="mean"`` would also divide by ``group_size``). The factor
    ``T**2`` follows Hinton et al.: the gradient of the softened KL scales as ``1 / T**2``, so multiplying by it
    keeps the gradient's size comparable across temperatures (and leaves ``T = 1`` unchanged).

    Inputs:
        ==============  =======================  =====================================================
        name            shape                    meaning
        ==============  =======================  =====================================================
        student_scores  ``(batch, group_size)``  the student's score of each query's documents
        teacher_scores  ``(batch, group_size)``  the teacher's scores of the same documents (no gradient)
        ==============  =======================  =====================================================

    Args:
        student_scores: Student logits.
        teacher_scores: Teacher logits.
        temperature: Both score sets are divided by it before the softmax (> 0).

    Returns:
        A scalar, computed in at least float32.

    Raises:
        ValueError: On mismatched shapes, ``group_size < 2`` or ``temperature <= 0``.
    """
    check_positive("temperature", temperature)
    _check_score_pair(student_scores, teacher_scores)
    student_scores = at_least_float32(student_scores)
    teacher_scores = teacher_scores.detach().to(device=student_scores.device, dtype=student_scores.dtype)
    student_log_probs = F.log_softmax(student_scores / temperature, dim=-1)  # (batch, G)
    teacher_log_probs = F.log_softmax(teacher_scores / temperature, dim=-1)  # (batch, G)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


class MarginMSELoss(nn.Module):
    """MarginMSE of a bi-encoder against a teacher's scores.

    ``forward(query_embeddings, document_embeddings, teacher_scores)`` scores each query against its own group
    and calls :func:`margin_mse_loss`.

    Inputs of ``forward``:
        ===================  ===============================  ==============================================
        name                 shape                            meaning
        ===================  ===============================  ==============================================
        query_embeddings     ``(batch, dim)``                 one vector per query
        document_embeddings  ``(batch * group_size, dim)``    grouped ``[q0_pos, q0_neg1, ..., q1_pos, ...]``
        teacher_scores       ``(batch, group_size)``          the teacher's score of each of those documents
        ===================  ===============================  ==============================================

    Args:
        score_function: ``"dot"`` (default, as in the paper: teacher margins are logits, unbounded, while
            cosine margins cannot exceed 2) or ``"cos"``.
    """

    needs_teacher: ClassVar[bool] = True
    min_group_size: ClassVar[int] = 2  # a margin or a distribution needs a negative beside the positive

    def __init__(self, score_function: ScoreFunction = "dot") -> None:
        super().__init__()
        check_score_function(score_function)
        self.score_function: ScoreFunction = score_function

    def forward(
        self, query_embeddings: torch.Tensor, document_embeddings: torch.Tensor, teacher_scores: torch.Tensor
    ) -> torch.Tensor:
        group_size = infer_group_size(query_embeddings, document_embeddings)
        student_scores = grouped_scores(
            query_embeddings, document_embeddings, group_size, self.score_function
        )
        return margin_mse_loss(student_scores, teacher_scores)

    def extra_repr(self) -> str:
        return f"score_function={self.score_function!r}"


class KLDistillationLoss(nn.Module):
    """KL divergence from a teacher's group distribution to a bi-encoder's.

    ``forward(query_embeddings, document_embeddings, teacher_scores)``, inputs as for :class:`MarginMSELoss`;
    calls :func:`kl_distillation_loss`.

    Args:
        temperature: Both score sets are divided by it (> 0). One temperature softens both: with ``"cos"``
            the student's scores lie in [-1, 1] and its softmax stays flat unless ``T`` is small, which also
            sharpens the teacher's; prefer ``"dot"``, or rescale the teacher's scores beforehand.
        score_function: ``"dot"`` (default) or ``"cos"``.
    """

    needs_teacher: ClassVar[bool] = True
    min_group_size: ClassVar[int] = 2  # a margin or a distribution needs a negative beside the positive

    def __init__(self, temperature: float = 1.0, score_function: ScoreFunction = "dot") -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_score_function(score_function)
        self.temperature = float(temperature)
        self.score_function: ScoreFunction = score_function

    def forward(
        self, query_embeddings: torch.Tensor, document_embeddings: torch.Tensor, teacher_scores: torch.Tensor
    ) -> torch.Tensor:
        group_size = infer_group_size(query_embeddings, document_embeddings)
        student_scores = grouped_scores(
            query_embeddings, document_embeddings, group_size, self.score_function
        )
        return kl_distillation_loss(student_scores, teacher_scores, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, score_function={self.score_function!r}"


class ScoreMarginMSELoss(nn.Module):
    """MarginMSE of a reranker's group scores against a teacher's: ``forward(scores, teacher_scores)``.

    For cross-encoders, LLM rankers and ColBERT (each query's own group), which produce scores rather than
    embeddings; both inputs are ``(batch, group_size)``, positive first (see :func:`margin_mse_loss`).

    Example:
        >>> import torch
        >>> ScoreMarginMSELoss()(torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([[5.0, 2.0, 2.0]]))
        tensor(0.5000)
    """

    loss_inputs: ClassVar[tuple[str, ...]] = ("group_scores",)
    needs_teacher: ClassVar[bool] = True
    min_group_size: ClassVar[int] = 2  # a margin or a distribution needs a negative beside the positive

    def forward(self, scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
        return margin_mse_loss(scores, teacher_scores)


class ScoreKLDistillationLoss(nn.Module):
    """KL from a teacher's group distribution to a reranker's: ``forward(scores, teacher_scores)``.

    Inputs as for :class:`ScoreMarginMSELoss`; see :func:`kl_distillation_loss`.

    Args:
        temperature: Both score sets are divided by it (> 0); 1 for raw logits.
    """

    loss_inputs: ClassVar[tuple[str, ...]] = ("group_scores",)
    needs_teacher: ClassVar[bool] = True
    min_group_size: ClassVar[int] = 2  # a margin or a distribution needs a negative beside the positive

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature = float(temperature)

    def forward(self, scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
        return kl_distillation_loss(scores, teacher_scores, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
