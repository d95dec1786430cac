"""cosent_loss / CoSENTLoss against an explicit double loop over pairs, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from retrievals_rag.losses.cosent import CoSENTLoss, cosent_loss


def _random(n_pairs: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(n_pairs)
    queries = torch.randn(n_pairs, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    documents = torch.randn(n_pairs, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    return queries, documents


def _explicit(
    queries: torch.Tensor, documents: torch.Tensor, labels: list[float], scale: float, cosine: bool
) -> float:
    scores = [
        (F.cosine_similarity(q, d, dim=0) if cosine else torch.dot(q, d)).item()
        for q, d in zip(queries, documents, strict=True)
    ]
    total = 1.0
    for i in range(len(scores)):
        for j in range(len(scores)):
            if labels[i] > labels[j]:
                total += math.exp(scale * (scores[j] - scores[i]))
    return math.log(total)


@pytest.mark.parametrize(("score_function", "scale"), [("cos", 20.0), ("dot", 1.5)])
def test_cosent_matches_a_double_loop_over_pairs(score_function: str, scale: float) -> None:
    queries, documents = _random()
    labels = [0.0, 2.5, 5.0, 2.5, 1.0, 4.0]  # graded, with a tie

    loss = cosent_loss(queries, documents, torch.tensor(labels), scale=scale, score_function=score_function)

    assert loss.item() == pytest.approx(
        _explicit(queries.detach(), documents.detach(), labels, scale, score_function == "cos"), rel=1e-10
    )


def test_module_takes_binary_labels_and_passes_gradients() -> None:
    queries, documents = _random(4)
    labels = torch.tensor([True, False, False, True])

    loss = CoSENTLoss(scale=10.0)(queries, documents, labels)
    loss.backward()

    assert loss.item() == pytest.approx(
        _explicit(queries.detach(), documents.detach(), [1, 0, 0, 1], 10.0, True), rel=1e-10
    )
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert documents.grad is not None and documents.grad.abs().sum() > 0


def test_all_equal_labels_give_zero_loss_and_finite_gradients() -> None:
    queries, documents = _random(5)

    loss = CoSENTLoss()(queries, documents, torch.full((5,), 3.0))
    loss.backward()

    assert loss.item() == 0.0
    assert queries.grad is not None and torch.isfinite(queries.grad).all() and queries.grad.abs().sum() == 0


def test_batch_of_one_pair_is_zero() -> None:
    queries, documents = _random(1)

    assert cosent_loss(queries, documents, torch.tensor([1.0])).item() == 0.0


def test_bad_inputs_are_rejected() -> None:
    queries, documents = _random(4)

    with pytest.raises(ValueError, match="same shape"):
        cosent_loss(queries, documents[:3], torch.zeros(4))
    with pytest.raises(ValueError, match="expected 4 labels"):
        cosent_loss(queries, documents, torch.zeros(3))
    with pytest.raises(ValueError, match="scale"):
        CoSENTLoss(scale=0.0)
