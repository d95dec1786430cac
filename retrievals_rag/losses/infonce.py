"""InfoNCE: contrastive cross-entropy of each query's positive against negatives, in-batch and hard.

van den Oord, Li & Vinyals (2018), "Representation Learning with Contrastive Predictive Coding"
(arXiv:1807.03748); in-batch negatives as in Karpukhin et al. (2020), "Dense Passage Retrieval for
Open-Domain Question Answering" (EMNLP). Also known as MultipleNegativesRankingLoss.

Example:
    >>> import torch
    >>> queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> documents = torch.tensor([[1.0, 0.1], [0.5, 0.5], [0.1, 1.0], [0.5, 0.5]])  # group_size 2
    >>> round(infonce_loss(queries, documents, group_size=2, temperature=0.1).item(), 4)
    0.1066
    >>> round(InfoNCELoss(temperature=0.1)(queries, documents).item(), 4)
    0.1066
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from retrievals_rag.losses._common import check_positive, check_score_function
from retrievals_rag.losses._grouped import check_grouping, grouped_scores, infer_group_size
from retrievals_rag.losses.distributed import gather_with_grad, is_distributed, process_rank_and_world
from retrievals_rag.losses.listwise import InBatchChanceLevel, listwise_cross_entropy
from retrievals_rag.similarity import ScoreFunction, pairwise_scores

__all__ = ["InfoNCELoss", "infonce_from_scores", "infonce_loss"]


def infonce_loss(
    query_embeddings: torch.Tensor,
    document_embeddings: torch.Tensor,
    *,
    group_size: int,
    temperature: float = 0.05,
    use_inbatch_negatives: bool = True,
    score_function: ScoreFunction = "cos",
    query_offset: int | None = None,
) -> torch.Tensor:
    """InfoNCE over a grouped batch: mean over queries of ``-log softmax(scores / temperature)[positive]``.

    With in-batch negatives each query is scored against every document of the batch (its own hard negatives
    and every other query's positive and negatives) and its target column is ``i * group_size``; without,
    only against its own group, the positive in column 0.

    Inputs:
        ===================  =====================================  =============================================
        name                 shape                                  meaning
        ===================  =====================================  =============================================
        query_embeddings     ``(batch, dim)``                       one vector per query
        document_embeddings  ``(n_groups * group_size, dim)``       grouped ``[q0_pos, q0_neg1, ..., q1_pos, ...]``;
                                                                    ``n_groups == batch`` unless ``query_offset``
        ===================  =====================================  =============================================

    Args:
        query_embeddings: The queries.
        document_embeddings: Each query's positive then its ``group_size - 1`` hard negatives.
        group_size: Documents per query (>= 1; 1 means positives only, in-batch negatives then required).
        temperature: Scores are divided by it (> 0); 0.05 suits cosine scores.
        use_inbatch_negatives: Score each query against the whole batch's documents, not only its group.
        score_function: ``"cos"`` or ``"dot"`` (:func:`retrievals_rag.similarity.pairwise_scores`).
        query_offset: None when ``document_embeddings`` holds exactly these queries' groups (checked). An int
            when it holds the groups of a larger batch (gathered from every process) in which these queries
            are rows ``query_offset ... query_offset + batch - 1``: their targets shift by
            ``query_offset * group_size``.

    Returns:
        A scalar, averaged over the queries.

    Raises:
        ValueError: On a document count that does not match ``group_size``, ``temperature <= 0``, an unknown
            score function, or a single candidate per query.
    """
    check_positive("temperature", temperature)
    check_score_function(score_function)
    n_groups = check_grouping(
        query_embeddings, document_embeddings, group_size, allow_more_groups=query_offset is not None
    )
    batch = query_embeddings.shape[0]
    offset = _check_offset(query_offset, batch, n_groups)
    if use_inbatch_negatives:
        scores = pairwise_scores(
            query_embeddings, document_embeddings, score_function
        )  # (batch, n_groups * G)
    else:
        own_documents = document_embeddings[
            offset * group_size : (offset + batch) * group_size
        ]  # (batch * G, dim)
        scores = grouped_scores(query_embeddings, own_documents, group_size, score_function)  # (batch, G)
    return infonce_from_scores(
        scores,
        group_size=group_size,
        temperature=temperature,
        use_inbatch_negatives=use_inbatch_negatives,
        query_offset=offset,
    )


def _check_offset(query_offset: int | None, batch: int, n_groups: int) -> int:
    offset = 0 if query_offset is None else query_offset
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= n_groups - batch:
        raise ValueError(f"query_offset must be an int in [0, {n_groups - batch}], got {query_offset!r}")
    return offset


def infonce_from_scores(
    scores: torch.Tensor,
    *,
    group_size: int,
    temperature: float,
    use_inbatch_negatives: bool = True,
    query_offset: int = 0,
) -> torch.Tensor:
    """The InfoNCE core over scores already computed, by any scoring (cosine, dot, ColBERT's MaxSim).

    Inputs:
        ======  ==========================================  ===============================================
        name    shape                                       meaning
        ======  ==========================================  ===============================================
        scores  ``(batch, n_groups * group_size)``          in-batch: each query against every document of
                                                            the (possibly gathered) grouped batch
                ``(batch, group_size)``                     without in-batch negatives: its own group only
        ======  ==========================================  ===============================================

    Args:
        scores: Raw scores (divided by ``temperature`` here).
        group_size: Documents per query.
        temperature: > 0.
        use_inbatch_negatives: Which of the two layouts ``scores`` has.
        query_offset: In-batch only: these queries' row in the gathered batch (their targets are
            ``(i + query_offset) * group_size``).

    Returns:
        A scalar, averaged over the queries.

    Example:
        >>> import torch
        >>> round(infonce_from_scores(torch.tensor([[1.0, 0.0]]), group_size=2, temperature=1.0).item(), 4)
        0.3133
    """
    check_positive("temperature", temperature)
    batch = scores.shape[0]
    if use_inbatch_negatives:
        if (
            scores.dim() != 2
            or scores.shape[1] % group_size
            or scores.shape[1] // group_size < batch + query_offset
        ):
            raise ValueError(
                f"in-batch scores must be (batch, n_groups * {group_size}) covering the queries' own groups, "
                f"got {tuple(scores.shape)} with query_offset={query_offset}"
            )
        targets = (torch.arange(batch, device=scores.device) + query_offset) * group_size  # (batch,)
        return listwise_cross_entropy(scores / temperature, targets)
    if scores.dim() != 2 or scores.shape[1] != group_size:
        raise ValueError(f"own-group scores must be (batch, {group_size}), got {tuple(scores.shape)}")
    return listwise_cross_entropy(scores / temperature, 0)


class InfoNCELoss(InBatchChanceLevel, nn.Module):
    """InfoNCE with in-batch and hard negatives, optionally gathering documents from every process.

    ``forward(query_embeddings, document_embeddings)`` infers ``group_size`` from the shapes and calls
    :func:`infonce_loss`.

    Inputs of ``forward``:
        ===================  ==============================  ====================================================
        name                 shape                           meaning
        ===================  ==============================  ====================================================
        query_embeddings     ``(batch, dim)``                this process's queries
        document_embeddings  ``(batch * group_size, dim)``   grouped ``[q0_pos, q0_neg1, ..., q1_pos, ...]``
        ===================  ==============================  ====================================================

    Across processes (``gather_across_processes=True`` under ``torch.distributed``): the documents, and only
    the documents, are gathered from every process with gradients (:func:`gather_with_grad`), and this
    process's ``b`` queries are scored against all ``world * b * group_size`` of them, their targets offset by
    ``rank * b * group_size``. Gathering the queries too would add nothing: the loss is query-to-document only.
    With equal local batches (the trainer's distributed sampler gives them), the mean over processes of the
    per-process losses equals the single-process loss over the global batch, ``L = (1/world) sum_p L_p``.
    Gradients: the gather's backward sums every process's gradient for a slice, so on process ``p`` the
    gradient of its local queries and documents is ``d(sum_r L_r)/dx_p = world * dL/dx_p``. DDP then
    averages the parameters' gradients over processes, ``(1/world) sum_p J_p^T (world * dL/dx_p) = dL/dθ``:
    exactly the single-process gradient over the global batch (``tests/losses/test_infonce_distributed.py``
    checks both relations with two gloo processes).

    Args:
        temperature: Scores are divided by it (> 0).
        use_inbatch_negatives: Score each query against every document of the batch, not only its group.
        gather_across_processes: Gather documents from all processes (needs in-batch negatives); a no-op
            outside ``torch.distributed``.
        score_function: ``"cos"`` or ``"dot"``.

    Raises:
        ValueError: On ``temperature <= 0``, an unknown score function, or gathering without in-batch
            negatives (other processes' documents would be unused).
    """

    loss_inputs: ClassVar[tuple[str, ...]] = ("embeddings",)

    def __init__(
        self,
        temperature: float = 0.05,
        use_inbatch_negatives: bool = True,
        gather_across_processes: bool = False,
        score_function: ScoreFunction = "cos",
    ) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_score_function(score_function)
        if gather_across_processes and not use_inbatch_negatives:
            raise ValueError(
                "gather_across_processes=True needs use_inbatch_negatives=True: without in-batch negatives "
                "a query sees only its own group, so gathered documents would be unused"
            )
        self.temperature = float(temperature)
        self.use_inbatch_negatives = use_inbatch_negatives
        self.gather_across_processes = gather_across_processes
        self.score_function: ScoreFunction = score_function

    def forward(self, query_embeddings: torch.Tensor, document_embeddings: torch.Tensor) -> torch.Tensor:
        group_size = infer_group_size(query_embeddings, document_embeddings)
        query_offset = None
        if self.gather_across_processes and is_distributed():
            rank, _ = process_rank_and_world()
            document_embeddings = gather_with_grad(document_embeddings)  # (world * batch * G, dim)
            query_offset = rank * query_embeddings.shape[0]
        return infonce_loss(
            query_embeddings,
            document_embeddings,
            group_size=group_size,
            temperature=self.temperature,
            use_inbatch_negatives=self.use_inbatch_negatives,
            score_function=self.score_function,
            query_offset=query_offset,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, use_inbatch_negatives={self.use_inbatch_negatives}, "
            f"gather_across_processes={self.gather_across_processes}, score_function={self.score_function!r}"
        )
