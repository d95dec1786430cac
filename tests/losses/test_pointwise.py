"""pointwise_bce / PointwiseBCELoss against binary cross-entropy written out."""

from __future__ import annotations

import pytest
import torch

from retrievals_rag.losses.pointwise import PointwiseBCELoss, pointwise_bce


def test_pointwise_bce_matches_the_formula_with_soft_labels() -> None:
    scores = torch.randn(
        5, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True
    )
    labels = torch.tensor([1.0, 0.0, 0.3, 1.0, 0.0], dtype=torch.float64)
    probabilities = torch.sigmoid(scores.detach())
    expected = -(labels * probabilities.log() + (1 - labels) * (1 - probabilities).log()).mean()

    loss = PointwiseBCELoss()(scores.unsqueeze(1), labels.unsqueeze(1))
    loss.backward()

    torch.testing.assert_close(loss.detach(), expected)
    assert scores.grad is not None and scores.grad.abs().sum() > 0


def test_batch_of_one() -> None:
    assert pointwise_bce(torch.tensor([0.0]), torch.tensor([1])).item() == pytest.approx(0.6931471805599453)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        pointwise_bce(torch.zeros(2), torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="expected 2 labels"):
        pointwise_bce(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="n_pairs"):
        pointwise_bce(torch.zeros(2, 2), torch.zeros(4))
