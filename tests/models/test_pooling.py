from __future__ import annotations

import pytest
import torch

from retrievals_rag.models.pooling import POOLING_METHODS, check_pooling_method, pool


def _naive(hidden: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    rows = []
    for states, row_mask in zip(hidden, mask, strict=True):
        real = states[row_mask.bool()]  # (n_real, dim), in order
        if method == "cls":
            rows.append(real[0])
        elif method == "last":
            rows.append(real[-1])
        elif method == "mean":
            rows.append(real.mean(dim=0))
        else:
            weights = torch.arange(1, len(real) + 1, dtype=real.dtype)[:, None]
            rows.append((real * weights).sum(dim=0) / weights.sum())
    return torch.stack(rows)


def _padded(lengths: list[int], seq_len: int, side: str) -> torch.Tensor:
    mask = torch.zeros(len(lengths), seq_len, dtype=torch.long)
    for row, length in enumerate(lengths):
        if side == "right":
            mask[row, :length] = 1
        else:
            mask[row, seq_len - length :] = 1
    return mask


@pytest.mark.parametrize("method", POOLING_METHODS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_pool_equals_naive_loop(method: str, side: str) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(4, 7, 5)
    mask = _padded([7, 3, 1, 5], 7, side)
    torch.testing.assert_close(pool(hidden, mask, method), _naive(hidden, mask, method))


@pytest.mark.parametrize("method", POOLING_METHODS)
def test_left_and_right_padding_give_the_same_vectors(method: str) -> None:
    torch.manual_seed(1)
    lengths = [6, 2, 4]
    real = [torch.randn(length, 8) for length in lengths]
    right = torch.zeros(3, 6, 8)
    left = torch.zeros(3, 6, 8)
    for row, states in enumerate(real):
        right[row, : len(states)] = states
        left[row, 6 - len(states) :] = states
    torch.testing.assert_close(
        pool(right, _padded(lengths, 6, "right"), method), pool(left, _padded(lengths, 6, "left"), method)
    )


@pytest.mark.parametrize("method", ["mean", "weighted_mean"])
def test_half_precision_is_accumulated_in_float32(method: str) -> None:
    hidden = torch.full((1, 4096, 4), 60.0, dtype=torch.float16)  # sum overflows float16 (max 65504)
    mask = torch.ones(1, 4096, dtype=torch.long)
    out = pool(hidden, mask, method)
    assert out.dtype == torch.float16
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), torch.full((1, 4), 60.0))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("cls", "cls"), ("mean", "mean"), ("last", "lasttoken"), ("weighted_mean", "weightedmean")],
)
def test_matches_sentence_transformers_pooling(ours: str, theirs: str) -> None:
    pooling_module = pytest.importorskip("sentence_transformers.sentence_transformer.modules.pooling")
    torch.manual_seed(2)
    hidden = torch.randn(3, 5, 6)
    mask = _padded([5, 2, 4], 5, "right")
    reference = pooling_module.Pooling(6, pooling_mode=theirs)(
        {"token_embeddings": hidden, "attention_mask": mask}
    )["sentence_embedding"]
    torch.testing.assert_close(pool(hidden, mask, ours), reference)


def test_unknown_method_is_rejected_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="weighted_mean"):
        check_pooling_method("max")
    with pytest.raises(ValueError, match="pooling_method"):
        pool(torch.zeros(1, 2, 3), torch.ones(1, 2), "sum")  # type: ignore[arg-type]
