"""grouped_scores: each query against its own group, checked against an explicit loop; the layout checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from retrievals_rag.losses._grouped import check_grouping, grouped_scores, infer_group_size


def _random(batch: int, group_size: int, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch * 100 + group_size)
    queries = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    documents = torch.randn(batch * group_size, dim, generator=generator, dtype=torch.float64)
    return queries, documents


@pytest.mark.parametrize("score_function", ["cos", "dot"])
def test_grouped_scores_match_an_explicit_loop(score_function: str) -> None:
    queries, documents = _random(batch=3, group_size=4)
    expected = torch.empty(3, 4, dtype=torch.float64)
    for query_index in range(3):
        for position in range(4):
            query, document = queries[query_index], documents[query_index * 4 + position]
            if score_function == "cos":
                expected[query_index, position] = F.cosine_similarity(query, document, dim=0)
            else:
                expected[query_index, position] = torch.dot(query, document)

    scores = grouped_scores(queries, documents, group_size=4, score_function=score_function)

    torch.testing.assert_close(scores, expected)


def test_grouped_scores_pass_gradients_to_both_inputs() -> None:
    queries, documents = _random(batch=2, group_size=3)
    queries.requires_grad_(True)
    documents.requires_grad_(True)

    grouped_scores(queries, documents, 3, "cos").sum().backward()

    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert documents.grad is not None and documents.grad.abs().sum() > 0


def test_zero_vectors_score_zero_under_cosine() -> None:
    scores = grouped_scores(torch.zeros(1, 3), torch.ones(2, 3), 2, "cos")

    assert torch.equal(scores, torch.zeros(1, 2))


def test_unknown_score_function_is_rejected() -> None:
    queries, documents = _random(batch=2, group_size=2)

    with pytest.raises(ValueError, match="score_function"):
        grouped_scores(queries, documents, 2, "euclid")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n_documents", "group_size", "message"),
    [(7, 2, "cannot be split into groups"), (8, 2, "expected batch \\* group_size"), (6, 0, "group_size")],
)
def test_check_grouping_rejects_a_layout_that_does_not_match(
    n_documents: int, group_size: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_grouping(torch.zeros(3, 4), torch.zeros(n_documents, 4), group_size)


def test_check_grouping_rejects_different_widths() -> None:
    with pytest.raises(ValueError, match="width"):
        check_grouping(torch.zeros(2, 4), torch.zeros(4, 5), 2)


def test_infer_group_size() -> None:
    assert infer_group_size(torch.zeros(3, 4), torch.zeros(12, 4)) == 4
    with pytest.raises(ValueError, match="equal groups"):
        infer_group_size(torch.zeros(3, 4), torch.zeros(10, 4))
