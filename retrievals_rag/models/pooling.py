"""Pooling of token embeddings into one vector per text: the only copy in the package.

Used by inference (``AutoModelForEmbedding.encode``) and by training, so that a model is always pooled the
way it was trained. Every method is correct for right padding, left padding and any mask whose real tokens
are contiguous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

PoolingMethod = Literal["cls", "mean", "last", "weighted_mean"]
POOLING_METHODS: tuple[str, ...] = get_args(PoolingMethod)


def check_pooling_method(method: str) -> PoolingMethod:
    """Return ``method`` if it is a known pooling method, else raise a ValueError listing the valid ones."""
    if method not in POOLING_METHODS:
        raise ValueError(f"pooling_method must be one of {list(POOLING_METHODS)}, got {method!r}")
    return method  # type: ignore[return-value]


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, method: PoolingMethod) -> torch.Tensor:
    """Pool ``(batch, seq_len, dim)`` token states into ``(batch, dim)`` vectors.

    Args:
        hidden_states: ``(batch, seq_len, dim)`` last hidden states.
        attention_mask: ``(batch, seq_len)``, 1 for real tokens and 0 for padding.
        method: ``"cls"`` the first real token; ``"mean"`` the mean over real tokens; ``"last"`` the last real
            token (decoder LLMs, where it is usually the appended EOS); ``"weighted_mean"`` a mean weighted by
            position 1..n over real tokens (SGPT, Muennighoff 2022), for decoders.

    Returns:
        ``(batch, dim)`` pooled vectors. Half-precision inputs are summed in float32 for the mean methods.
    """
    import torch

    mask = attention_mask.to(hidden_states.device)
    seq_len = hidden_states.shape[1]
    if method == "cls":
        first = mask.to(torch.int32).argmax(dim=1)  # (batch,) index of the first real token
        return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), first]
    if method == "last":
        last = (
            seq_len - 1 - mask.flip(1).to(torch.int32).argmax(dim=1)
        )  # (batch,) index of the last real token
        return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last]
    accumulate = (
        torch.float32 if hidden_states.dtype in (torch.float16, torch.bfloat16) else hidden_states.dtype
    )
    if method == "mean":
        weights = mask.to(accumulate)
    elif method == "weighted_mean":
        weights = mask.to(accumulate).cumsum(dim=1) * mask.to(
            accumulate
        )  # 1..n over real tokens, 0 on padding
    else:
        check_pooling_method(method)
    weights = weights.unsqueeze(-1)  # (batch, seq_len, 1)
    summed = (hidden_states.to(accumulate) * weights).sum(dim=1)  # (batch, dim)
    return (summed / weights.sum(dim=1).clamp(min=1e-9)).to(hidden_states.dtype)
