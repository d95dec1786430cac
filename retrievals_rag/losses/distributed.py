"""Helpers for losses that look across processes (DDP / ``torchrun``): rank, world size, gather with gradients.

Everything is an identity, or ``(0, 1)``, when ``torch.distributed`` is not initialised, so losses call these
helpers unconditionally.

Example:
    >>> import torch
    >>> process_rank_and_world()
    (0, 1)
    >>> gather_with_grad(torch.ones(2, 3)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["gather_token_vectors", "gather_with_grad", "is_distributed", "process_rank_and_world"]


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is available and its default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def process_rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process in the default group; ``(0, 1)`` when not distributed."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward hands each process the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        rank, world_size = process_rank_and_world()
        ctx.rank, ctx.rows = rank, tensor.shape[0]  # type: ignore[attr-defined]
        pieces = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(pieces, tensor.contiguous())
        return torch.cat(pieces, dim=0)  # (world_size * rows, ...)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor) -> torch.Tensor:
        # Every process's loss may depend on every slice, so the gradient of a slice is the sum over processes
        # of their gradients for it. all_reduce is supported by every backend (gloo, nccl, mpi).
        summed = grad_output.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows  # type: ignore[attr-defined]
        return summed[start : start + ctx.rows]  # type: ignore[attr-defined]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, in rank order, keeping gradients.

    The local slice of the result is ``tensor`` itself as far as autograd is concerned: after ``backward``,
    ``tensor.grad`` holds the sum over all processes of the gradients of their losses with respect to this
    process's rows. Other processes' slices carry no gradient back to them through this process's graph,
    but each of them receives it through its own call (every process must call this, and later backward,
    in step).

    Args:
        tensor: ``(rows, ...)``; every process must pass the same shape (the trainer's distributed sampler gives
            every process equal batches).

    Returns:
        ``(world_size * rows, ...)``; ``tensor`` unchanged when not distributed.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def gather_token_vectors(vectors: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather per-token vectors and their masks from every process, padding the token axis to the longest.

    Processes pad their batches to different lengths, and an all-gather needs equal shapes, so every process
    first pads to the longest length of any process (the padding masked out: it never counts in MaxSim).

    Args:
        vectors: ``(rows, length, dim)``, with gradients (kept through :func:`gather_with_grad`).
        mask: ``(rows, length)``, True for tokens that count.

    Returns:
        ``(world * rows, max_length, dim)`` and ``(world * rows, max_length)``; the inputs unchanged when not
        distributed.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return vectors, mask
    length = torch.tensor([vectors.shape[1]], device=vectors.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    padding = int(length.item()) - vectors.shape[1]
    if padding:
        vectors = torch.nn.functional.pad(vectors, (0, 0, 0, padding))  # (rows, max_length, dim)
        mask = torch.nn.functional.pad(mask, (0, padding), value=False)  # (rows, max_length)
    masks = [torch.empty_like(mask) for _ in range(dist.get_world_size())]
    dist.all_gather(masks, mask.contiguous())
    return gather_with_grad(vectors), torch.cat(masks, dim=0)
