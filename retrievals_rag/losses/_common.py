"""Small helpers shared by the loss modules: argument checks with one wording each, and precision."""

from __future__ import annotations

import math
from typing import get_args

import torch

from retrievals_rag.similarity import ScoreFunction

SCORE_FUNCTIONS: tuple[str, ...] = get_args(ScoreFunction)


def check_score_function(score_function: str) -> None:
    """Raise ValueError unless ``score_function`` is one that :mod:`retrievals_rag.similarity` knows."""
    if score_function not in SCORE_FUNCTIONS:
        raise ValueError(f"score_function must be one of {SCORE_FUNCTIONS}, got {score_function!r}")


def check_positive(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` is a finite number > 0 (rejects NaN and infinity too)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Upcast float16 / bfloat16 to float32 so that softmax and exp sums keep their precision."""
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    return tensor
