"""listwise_cross_entropy and ListwiseCrossEntropyLoss against -log softmax written out."""

from __future__ import annotations

import pytest
import torch

from retrievals_rag.losses.listwise import ListwiseCrossEntropyLoss, listwise_cross_entropy


def _explicit(scores: torch.Tensor, targets: list[int]) -> torch.Tensor:
    terms = [torch.logsumexp(row, dim=0) - row[target] for row, target in zip(scores, targets, strict=True)]
    return torch.stack(terms).mean()


def test_listwise_cross_entropy_matches_the_formula_for_one_target_and_per_row_targets() -> None:
    scores = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    torch.testing.assert_close(listwise_cross_entropy(scores), _explicit(scores, [0, 0, 0, 0]))
    torch.testing.assert_close(listwise_cross_entropy(scores, 2), _explicit(scores, [2, 2, 2, 2]))
    torch.testing.assert_close(
        listwise_cross_entropy(scores, torch.tensor([4, 0, 3, 1])), _explicit(scores, [4, 0, 3, 1])
    )


def test_module_groups_flat_scores_and_divides_by_the_temperature() -> None:
    flat = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    expected = _explicit(flat.detach().reshape(2, 3) / 0.5, [0, 0])

    loss = ListwiseCrossEntropyLoss(temperature=0.5)(flat, group_size=3)
    loss.backward()

    torch.testing.assert_close(loss.detach(), expected)
    assert flat.grad is not None and flat.grad.abs().sum() > 0
    column = ListwiseCrossEntropyLoss(temperature=0.5)(flat.detach().unsqueeze(1), group_size=3)
    torch.testing.assert_close(column, expected)


def test_batch_of_one() -> None:
    scores = torch.tensor([[1.0, 3.0, 0.0]], dtype=torch.float64)

    torch.testing.assert_close(listwise_cross_entropy(scores, 1), _explicit(scores, [1]))


def test_half_precision_scores_are_computed_in_float32() -> None:
    scores = torch.randn(3, 4, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)

    loss = listwise_cross_entropy(scores)

    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, _explicit(scores.float(), [0, 0, 0]))


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2 candidates"):
        listwise_cross_entropy(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="target_index"):
        listwise_cross_entropy(torch.zeros(3, 4), 4)
    with pytest.raises(ValueError, match="one integer per row"):
        listwise_cross_entropy(torch.zeros(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2-D"):
        listwise_cross_entropy(torch.zeros(4))
    with pytest.raises(ValueError, match="cannot be split"):
        ListwiseCrossEntropyLoss()(torch.zeros(7), group_size=2)
    with pytest.raises(ValueError, match="group_size"):
        ListwiseCrossEntropyLoss()(torch.zeros(2, 3), group_size=2)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_temperature_must_be_positive(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        ListwiseCrossEntropyLoss(temperature=temperature)
