"""Losses for retrieval training: each a tensor-only function plus a thin ``nn.Module`` holding its options.

Models return embeddings or scores; a loss's ``forward`` takes those (a loss that runs the model itself, such as
GradCache, says so in its ``loss_inputs``: :mod:`retrievals_rag.losses.protocol`). Which loss fits which kind of
model is stated once, in :mod:`retrievals_rag.losses.registry`. Documents come grouped per
query, ``(batch * group_size, dim)`` ordered ``[q0_pos, q0_neg1, ..., q1_pos, ...]``.

Names are resolved lazily, so ``import retrievals_rag.losses`` loads no torch::

    from retrievals_rag.losses import build_loss

    loss = build_loss("infonce", {"temperature": 0.02, "gather_across_processes": True})
    value = loss(query_embeddings, document_embeddings)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrievals_rag._lazy import lazy_names
from retrievals_rag.losses.registry import KIND_LOSSES, LOSSES, build_loss, loss_class, losses_for_kind

# public name -> module that defines it
_LAZY_NAMES: dict[str, str] = {
    "CoSENTLoss": "retrievals_rag.losses.cosent",
    "GradCacheLoss": "retrievals_rag.losses.cached",
    "InfoNCELoss": "retrievals_rag.losses.infonce",
    "KLDistillationLoss": "retrievals_rag.losses.distillation",
    "LateInteractionInfoNCELoss": "retrievals_rag.losses.late_interaction",
    "ListwiseCrossEntropyLoss": "retrievals_rag.losses.listwise",
    "MarginMSELoss": "retrievals_rag.losses.distillation",
    "MatryoshkaLoss": "retrievals_rag.losses.matryoshka",
    "PointwiseBCELoss": "retrievals_rag.losses.pointwise",
    "ScoreKLDistillationLoss": "retrievals_rag.losses.distillation",
    "ScoreMarginMSELoss": "retrievals_rag.losses.distillation",
    "TripletMarginLoss": "retrievals_rag.losses.triplet",
    "cosent_loss": "retrievals_rag.losses.cosent",
    "gather_with_grad": "retrievals_rag.losses.distributed",
    "grad_cache_loss": "retrievals_rag.losses.cached",
    "grouped_scores": "retrievals_rag.losses._grouped",
    "infonce_from_scores": "retrievals_rag.losses.infonce",
    "infonce_loss": "retrievals_rag.losses.infonce",
    "is_distributed": "retrievals_rag.losses.distributed",
    "kl_distillation_loss": "retrievals_rag.losses.distillation",
    "listwise_cross_entropy": "retrievals_rag.losses.listwise",
    "margin_mse_loss": "retrievals_rag.losses.distillation",
    "pointwise_bce": "retrievals_rag.losses.pointwise",
    "process_rank_and_world": "retrievals_rag.losses.distributed",
    "triplet_margin_loss": "retrievals_rag.losses.triplet",
}

__all__ = [
    "KIND_LOSSES",
    "LOSSES",
    "CoSENTLoss",
    "GradCacheLoss",
    "InfoNCELoss",
    "KLDistillationLoss",
    "LateInteractionInfoNCELoss",
    "ListwiseCrossEntropyLoss",
    "MarginMSELoss",
    "MatryoshkaLoss",
    "PointwiseBCELoss",
    "ScoreKLDistillationLoss",
    "ScoreMarginMSELoss",
    "TripletMarginLoss",
    "build_loss",
    "cosent_loss",
    "gather_with_grad",
    "grad_cache_loss",
    "grouped_scores",
    "infonce_from_scores",
    "infonce_loss",
    "is_distributed",
    "kl_distillation_loss",
    "listwise_cross_entropy",
    "loss_class",
    "losses_for_kind",
    "margin_mse_loss",
    "pointwise_bce",
    "process_rank_and_world",
    "triplet_margin_loss",
]

if TYPE_CHECKING:
    from retrievals_rag.losses._grouped import grouped_scores
    from retrievals_rag.losses.cached import GradCacheLoss, grad_cache_loss
    from retrievals_rag.losses.cosent import CoSENTLoss, cosent_loss
    from retrievals_rag.losses.distillation import (
        KLDistillationLoss,
        MarginMSELoss,
        ScoreKLDistillationLoss,
        ScoreMarginMSELoss,
        kl_distillation_loss,
        margin_mse_loss,
    )
    from retrievals_rag.losses.distributed import gather_with_grad, is_distributed, process_rank_and_world
    from retrievals_rag.losses.infonce import InfoNCELoss, infonce_from_scores, infonce_loss
    from retrievals_rag.losses.late_interaction import LateInteractionInfoNCELoss
    from retrievals_rag.losses.listwise import ListwiseCrossEntropyLoss, listwise_cross_entropy
    from retrievals_rag.losses.matryoshka import MatryoshkaLoss
    from retrievals_rag.losses.pointwise import PointwiseBCELoss, pointwise_bce
    from retrievals_rag.losses.triplet import TripletMarginLoss, triplet_margin_loss


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
