"""triplet_margin_loss / TripletMarginLoss against an explicit double loop over queries and negatives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from retrievals_rag.losses.triplet import TripletMarginLoss, triplet_margin_loss


def _random(batch: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch + 10 * group_size)
    queries = torch.randn(batch, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    documents = torch.randn(
        batch * group_size, 6, generator=generator, dtype=torch.float64, requires_grad=True
    )
    return queries, documents


def _score(query: torch.Tensor, document: torch.Tensor, score_function: str) -> torch.Tensor:
    if score_function == "cos":
        return F.cosine_similarity(query, document, dim=0)
    return torch.dot(query, document)


@pytest.mark.parametrize("score_function", ["cos", "dot"])
def test_triplet_loss_matches_a_double_loop(score_function: str) -> None:
    batch, group_size, margin = 4, 3, 0.3
    queries, documents = _random(batch, group_size)
    total, count = torch.zeros((), dtype=torch.float64), 0
    for index in range(batch):
        positive = _score(queries[index], documents[index * group_size], score_function)
        for negative_position in range(1, group_size):
            negative = _score(
                queries[index], documents[index * group_size + negative_position], score_function
            )
            total = total + torch.clamp(margin - positive + negative, min=0)
            count += 1

    loss = triplet_margin_loss(
        queries, documents, group_size=group_size, margin=margin, score_function=score_function
    )

    torch.testing.assert_close(loss, total / count)
    assert loss > 0


def test_module_matches_the_function_and_passes_gradients() -> None:
    queries, documents = _random(batch=3, group_size=2)

    loss = TripletMarginLoss(margin=0.5)(queries, documents)
    loss.backward()

    torch.testing.assert_close(loss, triplet_margin_loss(queries, documents, group_size=2, margin=0.5))
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert documents.grad is not None and documents.grad.abs().sum() > 0


def test_satisfied_margins_give_zero() -> None:
    queries = torch.tensor([[1.0, 0.0]])
    documents = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])

    assert TripletMarginLoss(margin=0.2)(queries, documents) == 0


def test_batch_of_one() -> None:
    queries, documents = _random(batch=1, group_size=4)
    expected = torch.stack(
        [
            torch.clamp(0.2 - _score(queries[0], documents[0], "cos") + _score(queries[0], d, "cos"), min=0)
            for d in documents[1:]
        ]
    ).mean()

    torch.testing.assert_close(TripletMarginLoss()(queries, documents), expected)


def test_bad_inputs_are_rejected() -> None:
    queries, documents = _random(batch=2, group_size=3)

    with pytest.raises(ValueError, match="group_size >= 2"):
        TripletMarginLoss()(queries, documents[:2])
    with pytest.raises(ValueError, match="cannot be split into groups"):
        triplet_margin_loss(queries, documents[:-1], group_size=3)
    with pytest.raises(ValueError, match="equal groups"):
        TripletMarginLoss()(queries, documents[:-1])
    with pytest.raises(ValueError, match="margin"):
        TripletMarginLoss(margin=-0.1)
