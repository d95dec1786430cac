"""Similarity functions over embeddings: the only copy of cosine, dot and MaxSim in the package.

All functions take torch tensors and return torch tensors; torch is imported when they are called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

ScoreFunction = Literal["cos", "dot"]


def dot_scores(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Dot product of every query with every document.

    Args:
        queries: ``(n_queries, dim)``.
        documents: ``(n_documents, dim)``.

    Returns:
        ``(n_queries, n_documents)`` scores.
    """
    return queries @ documents.transpose(0, 1)


def cos_scores(queries: torch.Tensor, documents: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Cosine similarity of every query with every document, ``(n_queries, n_documents)``.

    Zero vectors score 0 against everything instead of producing NaN.
    """
    import torch.nn.functional as F

    return dot_scores(F.normalize(queries, dim=-1, eps=eps), F.normalize(documents, dim=-1, eps=eps))


def pairwise_scores(
    queries: torch.Tensor, documents: torch.Tensor, score_function: ScoreFunction
) -> torch.Tensor:
    """Scores of the full query x document matrix under ``score_function`` (``"cos"`` or ``"dot"``)."""
    if score_function == "cos":
        return cos_scores(queries, documents)
    if score_function == "dot":
        return dot_scores(queries, documents)
    raise ValueError(f"score_function must be 'cos' or 'dot', got {score_function!r}")


def maxsim(
    query_tokens: torch.Tensor,
    document_tokens: torch.Tensor,
    query_mask: torch.Tensor | None = None,
    document_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Late-interaction (ColBERT) score of every query with every document, in one batched operation.

    For each query token the best-matching document token is taken, and these maxima are summed over the
    query's tokens: ``score(q, d) = sum_i max_j <q_i, d_j>`` (Khattab & Zaharia, 2020).

    Args:
        query_tokens: ``(n_queries, query_len, dim)`` token embeddings.
        document_tokens: ``(n_documents, doc_len, dim)`` token embeddings.
        query_mask: ``(n_queries, query_len)``; 0 marks tokens that do not count (padding). None: all count.
        document_mask: ``(n_documents, doc_len)``; 0 marks tokens that can never be the maximum.

    Returns:
        ``(n_queries, n_documents)`` scores.
    """
    import torch

    # (n_queries, n_documents, query_len, doc_len)
    token_scores = torch.einsum("qid,njd->qnij", query_tokens, document_tokens)
    blocked = None if document_mask is None else ~document_mask.bool()[None, :, None, :]
    counted = None if query_mask is None else query_mask[:, None, :]
    return _sum_of_maxima(token_scores, blocked, counted)


def grouped_maxsim(
    query_tokens: torch.Tensor,
    document_tokens: torch.Tensor,
    query_mask: torch.Tensor | None = None,
    document_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`maxsim` of each query with its own group of documents only: the diagonal blocks of the full
    matrix, without computing the rest (``group_size`` times fewer token products, as a training loss that
    compares a query with its own positive and negatives needs).

    Args:
        query_tokens: ``(batch, query_len, dim)``.
        document_tokens: ``(batch * group_size, doc_len, dim)``, grouped ``[q0_d0, q0_d1, ..., q1_d0, ...]``.
        query_mask: ``(batch, query_len)``; as for :func:`maxsim`.
        document_mask: ``(batch * group_size, doc_len)``; as for :func:`maxsim`.

    Returns:
        ``(batch, group_size)`` scores, equal to ``maxsim(...)`` at ``[i, i * group_size + j]``.

    Raises:
        ValueError: when the documents are not a whole number of groups per query.
    """
    import torch

    batch, documents = query_tokens.shape[0], document_tokens.shape[0]
    if batch == 0 or documents % batch:
        raise ValueError(f"{documents} documents are not a whole number of groups for {batch} queries")
    group_size = documents // batch
    grouped = document_tokens.reshape(batch, group_size, *document_tokens.shape[1:])
    token_scores = torch.einsum("bid,bgjd->bgij", query_tokens, grouped)  # (batch, group, q_len, d_len)
    blocked = None
    if document_mask is not None:
        blocked = ~document_mask.bool().reshape(batch, group_size, 1, -1)
    counted = None if query_mask is None else query_mask[:, None, :]
    return _sum_of_maxima(token_scores, blocked, counted)


def _sum_of_maxima(
    token_scores: torch.Tensor, blocked: torch.Tensor | None, counted: torch.Tensor | None
) -> torch.Tensor:
    """``(..., query_len, doc_len)`` token scores -> the sum over counted query tokens of each one's best
    unblocked document token."""
    import torch

    if blocked is not None:
        token_scores = token_scores.masked_fill(blocked, float("-inf"))
    best = token_scores.max(dim=-1).values  # (..., query_len)
    # A document with no unmasked token gives -inf; count it as 0 rather than poisoning sums.
    best = torch.nan_to_num(best, neginf=0.0)
    if counted is not None:
        best = best * counted.to(best.dtype)
    return best.sum(dim=-1)
