"""infonce_loss / InfoNCELoss against cross-entropy over explicitly built score matrices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from retrievals_rag.losses.infonce import InfoNCELoss, infonce_loss

BATCH, GROUP_SIZE, DIM = 3, 4, 8


def _random(
    batch: int = BATCH, group_size: int = GROUP_SIZE, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(batch, DIM, generator=generator, dtype=torch.float64, requires_grad=True)
    documents = torch.randn(
        batch * group_size, DIM, generator=generator, dtype=torch.float64, requires_grad=True
    )
    return queries, documents


def _score_matrix(queries: torch.Tensor, documents: torch.Tensor, score_function: str) -> torch.Tensor:
    if score_function == "cos":
        return F.cosine_similarity(queries[:, None, :], documents[None, :, :], dim=-1)  # (B, N)
    return torch.einsum("qd,nd->qn", queries, documents)


@pytest.mark.parametrize("score_function", ["cos", "dot"])
def test_inbatch_negatives_equal_cross_entropy_over_the_full_matrix(score_function: str) -> None:
    queries, documents = _random()
    scores = _score_matrix(queries, documents, score_function)  # (B, B * G)
    expected = F.cross_entropy(scores / 0.05, torch.arange(BATCH) * GROUP_SIZE)

    loss = infonce_loss(queries, documents, group_size=GROUP_SIZE, score_function=score_function)

    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("score_function", ["cos", "dot"])
def test_without_inbatch_negatives_each_query_sees_only_its_group(score_function: str) -> None:
    queries, documents = _random()
    per_query = []
    for index in range(BATCH):
        group = documents[index * GROUP_SIZE : (index + 1) * GROUP_SIZE]
        scores = _score_matrix(queries[index : index + 1], group, score_function)[0] / 0.1
        per_query.append(torch.logsumexp(scores, dim=0) - scores[0])
    expected = torch.stack(per_query).mean()

    loss = infonce_loss(
        queries,
        documents,
        group_size=GROUP_SIZE,
        temperature=0.1,
        use_inbatch_negatives=False,
        score_function=score_function,
    )

    torch.testing.assert_close(loss, expected)


def test_module_infers_the_group_size_and_passes_gradients() -> None:
    queries, documents = _random()

    loss = InfoNCELoss(temperature=0.05)(queries, documents)
    loss.backward()

    torch.testing.assert_close(loss, infonce_loss(queries, documents, group_size=GROUP_SIZE))
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert documents.grad is not None and documents.grad.abs().sum() > 0


def test_positives_only_uses_the_other_positives_as_negatives() -> None:
    queries, documents = _random(group_size=1)
    scores = _score_matrix(queries, documents, "cos")

    loss = InfoNCELoss()(queries, documents)

    torch.testing.assert_close(loss, F.cross_entropy(scores / 0.05, torch.arange(BATCH)))


def test_batch_of_one_with_in_batch_negatives_equals_its_group_alone() -> None:
    queries, documents = _random(batch=1)

    with_batch = infonce_loss(queries, documents, group_size=GROUP_SIZE)
    group_only = infonce_loss(queries, documents, group_size=GROUP_SIZE, use_inbatch_negatives=False)

    torch.testing.assert_close(with_batch, group_only)
    assert with_batch > 0


def test_batch_of_one_without_negatives_is_rejected() -> None:
    queries, documents = _random(batch=1, group_size=1)

    with pytest.raises(ValueError, match="at least 2 candidates"):
        InfoNCELoss()(queries, documents)


def test_query_offset_scores_a_slice_of_a_larger_batch() -> None:
    queries, documents = _random(batch=4)
    scores = _score_matrix(queries, documents, "cos") / 0.05  # (4, 4 * G)
    rows = F.cross_entropy(scores, torch.arange(4) * GROUP_SIZE, reduction="none")

    loss = infonce_loss(queries[2:], documents, group_size=GROUP_SIZE, query_offset=2)

    torch.testing.assert_close(loss, rows[2:].mean())
    with pytest.raises(ValueError, match="query_offset"):
        infonce_loss(queries[2:], documents, group_size=GROUP_SIZE, query_offset=3)


def test_gathering_outside_torch_distributed_is_the_local_loss() -> None:
    queries, documents = _random()

    gathered = InfoNCELoss(gather_across_processes=True)(queries, documents)

    torch.testing.assert_close(gathered, InfoNCELoss()(queries, documents))


def test_a_document_count_that_does_not_match_the_group_size_is_rejected() -> None:
    queries, documents = _random()

    with pytest.raises(ValueError, match="cannot be split into groups"):
        infonce_loss(queries, documents[:-1], group_size=GROUP_SIZE)
    with pytest.raises(ValueError, match="expected batch \\* group_size"):
        infonce_loss(queries, documents, group_size=2)
    with pytest.raises(ValueError, match="equal groups"):
        InfoNCELoss()(queries, documents[:-1])


@pytest.mark.parametrize("temperature", [0.0, -0.05, float("nan"), float("inf")])
def test_temperature_must_be_positive_and_finite(temperature: float) -> None:
    queries, documents = _random()

    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=temperature)
    with pytest.raises(ValueError, match="temperature"):
        infonce_loss(queries, documents, group_size=GROUP_SIZE, temperature=temperature)


def test_conflicting_or_unknown_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="use_inbatch_negatives"):
        InfoNCELoss(use_inbatch_negatives=False, gather_across_processes=True)
    with pytest.raises(ValueError, match="score_function"):
        InfoNCELoss(score_function="euclidean")  # type: ignore[arg-type]
