"""The grouped layout of documents and the score of each query against its own group.

Convention (the trainer and the collators depend on it): ``document_embeddings`` has
``batch * group_size`` rows ordered ``[q0_pos, q0_neg1, ..., q0_neg{G-1}, q1_pos, ...]``, so that query ``i``'s
group is rows ``i * group_size ... (i + 1) * group_size - 1`` and its positive comes first.

Example:
    >>> import torch
    >>> queries = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> documents = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    >>> grouped_scores(queries, documents, group_size=2, score_function="dot")
    tensor([[3., 0.],
            [2., 0.]])
"""

from __future__ import annotations

import torch
from torch.func import vmap

from retrievals_rag.similarity import ScoreFunction, pairwise_scores

__all__ = ["check_grouping", "grouped_scores", "infer_group_size"]


def check_grouping(
    query_embeddings: torch.Tensor,
    document_embeddings: torch.Tensor,
    group_size: int,
    allow_more_groups: bool = False,
) -> int:
    """Check the grouped layout and return the number of document groups.

    Args:
        query_embeddings: ``(batch, dim)``.
        document_embeddings: ``(n_groups * group_size, dim)``.
        group_size: Documents per query (>= 1), the positive first.
        allow_more_groups: Accept more groups than queries (documents gathered from other processes);
            otherwise ``n_groups`` must equal ``batch``.

    Raises:
        ValueError: On wrong ranks, different widths, a bad ``group_size`` or a document count that does not
            match it.
    """
    if query_embeddings.dim() != 2 or document_embeddings.dim() != 2:
        raise ValueError(
            "query_embeddings and document_embeddings must be 2-D (rows, dim), got shapes "
            f"{tuple(query_embeddings.shape)} and {tuple(document_embeddings.shape)}"
        )
    if query_embeddings.shape[1] != document_embeddings.shape[1]:
        raise ValueError(
            f"query and document embeddings differ in width: {query_embeddings.shape[1]} "
            f"vs {document_embeddings.shape[1]}"
        )
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
    batch, n_documents = query_embeddings.shape[0], document_embeddings.shape[0]
    if batch == 0:
        raise ValueError("the batch holds no query")
    if n_documents % group_size != 0:
        raise ValueError(
            f"{n_documents} documents cannot be split into groups of group_size={group_size}: documents must be "
            "grouped per query as [q0_pos, q0_neg1, ..., q1_pos, ...]"
        )
    n_groups = n_documents // group_size
    if n_groups < batch or (n_groups != batch and not allow_more_groups):
        raise ValueError(
            f"expected batch * group_size = {batch} * {group_size} = {batch * group_size} documents, "
            f"got {n_documents}"
        )
    return n_groups


def infer_group_size(query_embeddings: torch.Tensor, document_embeddings: torch.Tensor) -> int:
    """Documents per query, ``n_documents // batch``; ValueError unless the layout is exactly grouped."""
    if query_embeddings.dim() != 2 or query_embeddings.shape[0] == 0:
        raise ValueError(f"query_embeddings must be 2-D and non-empty, got {tuple(query_embeddings.shape)}")
    batch, n_documents = query_embeddings.shape[0], document_embeddings.shape[0]
    if n_documents == 0 or n_documents % batch != 0:
        raise ValueError(
            f"{n_documents} documents do not form equal groups for {batch} queries: expected "
            "batch * group_size rows ordered [q0_pos, q0_neg1, ..., q1_pos, ...]"
        )
    group_size = n_documents // batch
    check_grouping(query_embeddings, document_embeddings, group_size)
    return group_size


def grouped_scores(
    query_embeddings: torch.Tensor,
    document_embeddings: torch.Tensor,
    group_size: int,
    score_function: ScoreFunction,
) -> torch.Tensor:
    """Score every query against the documents of its own group only.

    Each row is :func:`retrievals_rag.similarity.pairwise_scores` of one query against its group, batched with
    ``torch.func.vmap``: the same cosine / dot code as everywhere else, in ``O(batch * group_size * dim)``
    instead of the ``O(batch**2 * group_size * dim)`` of scoring the full matrix and keeping its diagonal blocks.

    Args:
        query_embeddings: ``(batch, dim)``.
        document_embeddings: ``(batch * group_size, dim)`` in the grouped order.
        group_size: Documents per query.
        score_function: ``"cos"`` or ``"dot"``.

    Returns:
        ``(batch, group_size)``; column 0 holds each query's positive.
    """
    check_grouping(query_embeddings, document_embeddings, group_size)
    batch, dim = query_embeddings.shape
    groups = document_embeddings.reshape(batch, group_size, dim)

    def score_one(query: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        return pairwise_scores(query.unsqueeze(0), group, score_function).squeeze(0)  # (group_size,)

    return vmap(score_one)(query_embeddings, groups)  # (batch, group_size)
