"""InfoNCE for late interaction (ColBERT): MaxSim scores through the same core as the bi-encoder's InfoNCE.

Khattab & Zaharia (2020), "ColBERT: Efficient and Effective Passage Search via Contextualized Late Interaction
over BERT" (SIGIR): each query's positive against its hard negatives and, with in-batch negatives, every other
document of the batch; the scores are the model's MaxSim instead of a cosine, and the cross-entropy is
:func:`~retrievals_rag.losses.infonce.infonce_from_scores`, the core of :class:`~retrievals_rag.losses.InfoNCELoss`.
Documents can be gathered from every process, as the bi-encoder's are.

Example:
    >>> import torch
    >>> from collections import namedtuple
    >>> from retrievals_rag.similarity import maxsim
    >>> Tokens = namedtuple("Tokens", "embeddings mask")
    >>> queries = Tokens(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]), torch.ones(2, 1, dtype=torch.bool))
    >>> documents = Tokens(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]), torch.ones(2, 1, dtype=torch.bool))
    >>> def score(q, d):
    ...     return maxsim(q.embeddings, d.embeddings, q.mask, d.mask)
    >>> round(LateInteractionInfoNCELoss()(queries, documents, score).item(), 4)
    0.3133
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from retrievals_rag.losses._common import check_positive
from retrievals_rag.losses.distributed import gather_token_vectors, is_distributed, process_rank_and_world
from retrievals_rag.losses.infonce import infonce_from_scores
from retrievals_rag.losses.listwise import InBatchChanceLevel

__all__ = ["LateInteractionInfoNCELoss"]


class _Tokens(NamedTuple):
    embeddings: torch.Tensor
    mask: torch.Tensor


class LateInteractionInfoNCELoss(InBatchChanceLevel, nn.Module):
    """InfoNCE over MaxSim scores: ``forward(queries, documents, score)``.

    Inputs of ``forward``:
        =========  =============================================  ==========================================
        name       shape                                          meaning
        =========  =============================================  ==========================================
        queries    ``.embeddings (batch, q_len, dim)``, ``.mask``  the queries' token vectors
        documents  ``.embeddings (batch * G, d_len, dim)``, mask   grouped ``[q0_pos, q0_neg1, ..., q1_pos]``
        score      ``score(queries, documents)``                   the model's MaxSim, ``(n_q, n_d)``
        =========  =============================================  ==========================================

    Args:
        temperature: Scores are divided by it (> 0); 1 for raw MaxSim sums.
        use_inbatch_negatives: Score each query against every document of the batch, not only its group.
        gather_across_processes: Gather the documents' token vectors from every process (with gradients,
            padded to the longest process's length); needs in-batch negatives; a no-op outside
            ``torch.distributed``. The same relations as :class:`~retrievals_rag.losses.InfoNCELoss` hold.

    Raises:
        ValueError: On ``temperature <= 0`` or gathering without in-batch negatives.
    """

    loss_inputs: ClassVar[tuple[str, ...]] = ("token_vectors",)

    def __init__(
        self,
        temperature: float = 1.0,
        use_inbatch_negatives: bool = True,
        gather_across_processes: bool = False,
    ) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        if gather_across_processes and not use_inbatch_negatives:
            raise ValueError(
                "gather_across_processes=True needs use_inbatch_negatives=True: without in-batch negatives "
                "a query sees only its own group, so gathered documents would be unused"
            )
        self.temperature = float(temperature)
        self.use_inbatch_negatives = use_inbatch_negatives
        self.gather_across_processes = gather_across_processes

    def forward(
        self, queries: Any, documents: Any, score: Callable[[Any, Any], torch.Tensor]
    ) -> torch.Tensor:
        batch = queries.embeddings.shape[0]
        n_documents = documents.embeddings.shape[0]
        if batch == 0 or n_documents % batch:
            raise ValueError(
                f"{n_documents} documents do not form equal groups for {batch} queries: expected "
                "batch * group_size rows ordered [q0_pos, q0_neg1, ..., q1_pos, ...]"
            )
        group_size = n_documents // batch
        offset = 0
        if self.use_inbatch_negatives and self.gather_across_processes and is_distributed():
            rank, _ = process_rank_and_world()
            documents = _Tokens(*gather_token_vectors(documents.embeddings, documents.mask))
            offset = rank * batch
        if self.use_inbatch_negatives:
            scores = score(queries, documents)  # (batch, n_groups * G)
        else:
            rows = torch.arange(batch, device=queries.embeddings.device)
            full = score(queries, documents)  # (batch, batch * G)
            scores = full.view(batch, batch, group_size)[rows, rows]  # (batch, G): each query's own group
        return infonce_from_scores(
            scores,
            group_size=group_size,
            temperature=self.temperature,
            use_inbatch_negatives=self.use_inbatch_negatives,
            query_offset=offset,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, use_inbatch_negatives={self.use_inbatch_negatives}, "
            f"gather_across_processes={self.gather_across_processes}"
        )
