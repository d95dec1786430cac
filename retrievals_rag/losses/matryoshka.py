"""Matryoshka representation learning: train the leading coordinates of an embedding to work on their own.

Kusupati et al. (2022), "Matryoshka Representation Learning" (NeurIPS, arXiv:2205.13147). The wrapped loss is
applied to the embeddings truncated to each of several widths and the results are summed with weights, so that
after training a prefix of the vector (e.g. 256 of 768 coordinates) is a usable, cheaper embedding.

Example:
    >>> import torch
    >>> from retrievals_rag.losses.infonce import InfoNCELoss
    >>> loss = MatryoshkaLoss(InfoNCELoss(), dims=[4, 2], weights=[1.0, 0.5])
    >>> queries = torch.eye(4)
    >>> documents = torch.eye(4)
    >>> # width 4: every query finds its document (loss ~0); width 2: queries 2 and 3 become zero vectors,
    >>> # score 0 against all 4 documents and lose log 4; total 0.5 * log(4) / 2
    >>> round(loss(queries, documents).item(), 4)
    0.3466
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from retrievals_rag.losses.protocol import chance_loss

__all__ = ["MatryoshkaLoss"]


def _check_dims(dims: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(dims)
    if not dims:
        raise ValueError("dims must name at least one embedding width")
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dims must be positive ints, got {dim!r} in {list(dims)}")
    if any(wider <= narrower for wider, narrower in itertools.pairwise(dims)):
        raise ValueError(
            f"dims must be unique and in descending order (e.g. [768, 256, 64]), got {list(dims)}"
        )
    return dims


def _check_weights(weights: Sequence[float] | None, n_dims: int) -> tuple[float, ...]:
    if weights is None:
        return (1.0,) * n_dims
    weights = tuple(weights)
    if len(weights) != n_dims:
        raise ValueError(f"weights must have one entry per dim ({n_dims}), got {len(weights)}")
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise ValueError(f"weights must be finite numbers >= 0, got {weight!r}")
        if weight < 0:
            raise ValueError(f"weights must be >= 0, got {weight!r}")
    return tuple(float(weight) for weight in weights)


class MatryoshkaLoss(nn.Module):
    """``sum_k weights[k] * loss(q[:, :dims[k]], d[:, :dims[k]], *extra)`` over the given widths.

    Inputs of ``forward``:
        ===================  ==========================  ======================================================
        name                 shape                       meaning
        ===================  ==========================  ======================================================
        query_embeddings     ``(batch, dim)``            full-width query vectors
        document_embeddings  ``(n_documents, dim)``      full-width document vectors (the wrapped loss's layout)
        ``*extra``           as the wrapped loss wants   passed unchanged (labels, teacher scores)
        ===================  ==========================  ======================================================

    Args:
        loss: Any loss of this package taking ``(query_embeddings, document_embeddings, *extra)``.
        dims: Widths to train, unique, descending, each at most the embedding width (checked at each
            ``forward``, when the width is known). Include the full width to keep training it.
        weights: One weight >= 0 per width; None weights every width 1.
        renormalize: L2-normalise the truncated vectors before the wrapped loss. Cosine scores do not need
            it (they normalise anyway); dot-product scores of normalised models do.

    Raises:
        ValueError: On empty, non-positive, repeated or non-descending dims, or weights of the wrong length.
    """

    wraps_loss: ClassVar[bool] = True  # retrievals_rag.losses.protocol: the data it needs are its loss's

    def __init__(
        self,
        loss: nn.Module,
        dims: Sequence[int],
        weights: Sequence[float] | None = None,
        renormalize: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(loss, nn.Module):
            raise ValueError(f"loss must be an nn.Module taking embeddings, got {type(loss).__name__}")
        self.loss = loss
        self.dims = _check_dims(dims)
        self.weights = _check_weights(weights, len(self.dims))
        self.renormalize = renormalize

    def _truncate(self, embeddings: torch.Tensor, dim: int) -> torch.Tensor:
        truncated = embeddings[..., :dim]  # (rows, dim)
        return F.normalize(truncated, p=2, dim=-1) if self.renormalize else truncated

    def forward(
        self, query_embeddings: torch.Tensor, document_embeddings: torch.Tensor, *extra: torch.Tensor
    ) -> torch.Tensor:
        full_dim = query_embeddings.shape[-1]
        if document_embeddings.shape[-1] != full_dim:
            raise ValueError(
                f"query and document embeddings differ in width: {full_dim} vs {document_embeddings.shape[-1]}"
            )
        if self.dims[0] > full_dim:
            raise ValueError(
                f"Matryoshka dims {list(self.dims)} exceed the embedding width {full_dim}: every dim must be "
                f"at most {full_dim}"
            )
        total = query_embeddings.new_zeros(())
        for dim, weight in zip(self.dims, self.weights, strict=True):
            truncated_loss = self.loss(
                self._truncate(query_embeddings, dim), self._truncate(document_embeddings, dim), *extra
            )
            total = total + weight * truncated_loss
        return total

    def chance_loss(self, *, batch_size: int, group_size: int, world_size: int) -> float | None:
        """The wrapped loss's chance level at every dim, summed with the dims' weights."""
        level = chance_loss(self.loss, batch_size=batch_size, group_size=group_size, world_size=world_size)
        return None if level is None else level * sum(self.weights)

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}, weights={list(self.weights)}, renormalize={self.renormalize}"
