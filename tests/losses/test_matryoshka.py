"""MatryoshkaLoss equals the weighted sum of explicit calls on truncated (re-normalised) embeddings."""

from __future__ import annotations

import pytest
import torch

from retrievals_rag.losses.cosent import CoSENTLoss
from retrievals_rag.losses.distillation import MarginMSELoss
from retrievals_rag.losses.infonce import InfoNCELoss, infonce_loss
from retrievals_rag.losses.matryoshka import MatryoshkaLoss


def _random(batch: int = 3, group_size: int = 2, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(batch, dim, generator=generator, dtype=torch.float64, requires_grad=True)
    documents = torch.randn(
        batch * group_size, dim, generator=generator, dtype=torch.float64, requires_grad=True
    )
    return queries, documents


def _unit(tensor: torch.Tensor) -> torch.Tensor:
    return tensor / tensor.norm(dim=-1, keepdim=True)


def test_weighted_sum_of_truncated_infonce_losses() -> None:
    queries, documents = _random()
    expected = sum(
        weight
        * infonce_loss(_unit(queries[:, :dim]), _unit(documents[:, :dim]), group_size=2, score_function="dot")
        for dim, weight in [(8, 1.0), (4, 0.5), (2, 0.25)]
    )

    loss = MatryoshkaLoss(InfoNCELoss(score_function="dot"), dims=[8, 4, 2], weights=[1.0, 0.5, 0.25])(
        queries, documents
    )
    loss.backward()

    torch.testing.assert_close(loss, expected)
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert documents.grad is not None and documents.grad.abs().sum() > 0


def test_without_renormalizing_the_truncated_vectors_are_used_as_they_are() -> None:
    queries, documents = _random()
    inner = InfoNCELoss(score_function="dot", temperature=1.0)
    expected = inner(queries[:, :6], documents[:, :6]) + inner(queries[:, :3], documents[:, :3])

    loss = MatryoshkaLoss(inner, dims=[6, 3], renormalize=False)(queries, documents)

    torch.testing.assert_close(loss, expected)


def test_extra_inputs_are_passed_to_the_wrapped_loss() -> None:
    queries, documents = _random()
    teacher = torch.tensor([[2.0, 0.0], [1.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)

    margin = MatryoshkaLoss(MarginMSELoss(), dims=[8, 4])(queries, documents, teacher)
    cosent = MatryoshkaLoss(CoSENTLoss(), dims=[4])(queries, documents[::2], labels)

    expected_margin = MarginMSELoss()(_unit(queries), _unit(documents), teacher) + MarginMSELoss()(
        _unit(queries[:, :4]), _unit(documents[:, :4]), teacher
    )
    torch.testing.assert_close(margin, expected_margin)
    torch.testing.assert_close(cosent, CoSENTLoss()(queries[:, :4], documents[::2, :4], labels))


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ([], "at least one"),
        ([8, 0], "positive ints"),
        ([8, 4.0], "positive ints"),
        ([4, 8], "descending"),
        ([8, 4, 4], "unique"),
    ],
)
def test_bad_dims_are_rejected_at_init(dims: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MatryoshkaLoss(InfoNCELoss(), dims=dims)


def test_bad_weights_are_rejected_at_init() -> None:
    with pytest.raises(ValueError, match="one entry per dim"):
        MatryoshkaLoss(InfoNCELoss(), dims=[8, 4], weights=[1.0])
    with pytest.raises(ValueError, match=">= 0"):
        MatryoshkaLoss(InfoNCELoss(), dims=[8, 4], weights=[1.0, -1.0])


def test_a_dim_above_the_embedding_width_is_rejected_at_forward() -> None:
    queries, documents = _random(dim=8)

    with pytest.raises(ValueError, match="exceed the embedding width 8"):
        MatryoshkaLoss(InfoNCELoss(), dims=[16, 8])(queries, documents)
