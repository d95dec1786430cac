"""CoSENT: a ranking loss over labelled pairs: pairs labelled more similar must score higher.

Su Jianlin (2022), "CoSENT (1): A more efficient sentence vector scheme than Sentence-BERT",
https://kexue.fm/archives/8847. It optimises the order of the scores, as Spearman correlation on STS
measures, rather than their values.

Example:
    >>> import torch
    >>> queries = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> documents = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> labels = torch.tensor([1.0, 0.0])
    >>> round(cosent_loss(queries, documents, labels).item(), 6)  # log(1 + exp(20 * (0 - 1)))
    0.0
    >>> round(cosent_loss(queries, documents, labels.flip(0), scale=1.0).item(), 4)  # log(1 + e)
    1.3133
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from retrievals_rag.losses._common import at_least_float32, check_positive, check_score_function
from retrievals_rag.losses._grouped import grouped_scores
from retrievals_rag.similarity import ScoreFunction

__all__ = ["CoSENTLoss", "cosent_loss"]


def cosent_loss(
    query_embeddings: torch.Tensor,
    document_embeddings: torch.Tensor,
    labels: torch.Tensor,
    scale: float = 20.0,
    score_function: ScoreFunction = "cos",
) -> torch.Tensor:
    """``log(1 + sum over (i, j) with labels[i] > labels[j] of exp(scale * (s_j - s_i)))``.

    ``s_i`` is the score of pair ``i``, its query row against its document row. Equal labels add no term,
    so a batch with all labels equal gives ``log 1 = 0`` (and zero gradients, not NaN).

    Inputs:
        ===================  ==================  ===================================================
        name                 shape               meaning
        ===================  ==================  ===================================================
        query_embeddings     ``(n_pairs, dim)``  first text of each pair
        document_embeddings  ``(n_pairs, dim)``  second text of each pair
        labels               ``(n_pairs,)``      similarity label of each pair; only their order counts
        ===================  ==================  ===================================================

    Args:
        query_embeddings: First texts.
        document_embeddings: Second texts, row ``i`` paired with query row ``i``.
        labels: Graded (e.g. STS 0-5) or binary labels.
        scale: Multiplies score differences (> 0); 20 for cosine, as in the paper.
        score_function: ``"cos"`` or ``"dot"``.

    Returns:
        A scalar. Memory is ``O(n_pairs**2)``, fine for the batch sizes pair data is trained with.

    Raises:
        ValueError: On mismatched shapes, ``scale <= 0`` or an unknown score function.
    """
    check_positive("scale", scale)
    check_score_function(score_function)
    if query_embeddings.shape != document_embeddings.shape:
        raise ValueError(
            "CoSENT scores pairs row by row: query and document embeddings must have the same shape, got "
            f"{tuple(query_embeddings.shape)} and {tuple(document_embeddings.shape)}"
        )
    n_pairs = query_embeddings.shape[0]
    if labels.shape not in ((n_pairs,), (n_pairs, 1)):
        raise ValueError(f"expected {n_pairs} labels, one per pair, got shape {tuple(labels.shape)}")
    scores = grouped_scores(query_embeddings, document_embeddings, 1, score_function).squeeze(1)  # (n_pairs,)
    scores = at_least_float32(scores) * scale
    labels = labels.reshape(-1).to(device=scores.device, dtype=scores.dtype)
    # entry [i, j] is scale * (s_j - s_i); it counts where pair i is labelled more similar than pair j
    differences = scores.unsqueeze(0) - scores.unsqueeze(1)  # (n_pairs, n_pairs)
    ordered = labels.unsqueeze(1) > labels.unsqueeze(0)  # (n_pairs, n_pairs)
    terms = differences.masked_fill(~ordered, float("-inf")).flatten()  # (n_pairs**2,)
    return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)  # the 0 is log of the "1 +"


class CoSENTLoss(nn.Module):
    """CoSENT over labelled pairs; ``forward(query_embeddings, document_embeddings, labels)``.

    See :func:`cosent_loss` for the inputs.

    Args:
        scale: Multiplies score differences (> 0).
        score_function: ``"cos"`` or ``"dot"``.
    """

    needs_labels: ClassVar[bool] = True  # retrievals_rag.losses.protocol: scored pairs only

    def __init__(self, scale: float = 20.0, score_function: ScoreFunction = "cos") -> None:
        super().__init__()
        check_positive("scale", scale)
        check_score_function(score_function)
        self.scale = float(scale)
        self.score_function: ScoreFunction = score_function

    def forward(
        self, query_embeddings: torch.Tensor, document_embeddings: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        return cosent_loss(
            query_embeddings,
            document_embeddings,
            labels,
            scale=self.scale,
            score_function=self.score_function,
        )

    def extra_repr(self) -> str:
        return f"scale={self.scale}, score_function={self.score_function!r}"
