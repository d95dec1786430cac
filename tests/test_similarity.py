"""The similarity functions: grouped MaxSim is the full matrix's diagonal blocks."""

from __future__ import annotations

import pytest
import torch

from retrievals_rag.similarity import grouped_maxsim, maxsim


def test_grouped_maxsim_equals_the_own_groups_of_the_full_matrix() -> None:
    generator = torch.Generator().manual_seed(0)
    batch, group, dim = 3, 4, 8
    queries = torch.randn(batch, 5, dim, generator=generator)
    documents = torch.randn(batch * group, 7, dim, generator=generator)
    query_mask = torch.ones(batch, 5, dtype=torch.bool)
    query_mask[1, 3:] = False  # a shorter query
    document_mask = torch.ones(batch * group, 7, dtype=torch.bool)
    document_mask[2, 4:] = False  # a shorter document
    document_mask[5] = False  # a document with no token that counts: scores 0, as in the full matrix
    full = maxsim(queries, documents, query_mask, document_mask)  # (batch, batch * group)
    own = grouped_maxsim(queries, documents, query_mask, document_mask)
    assert own.shape == (batch, group)
    for row in range(batch):
        torch.testing.assert_close(own[row], full[row, row * group : (row + 1) * group])
    assert own[1, 1] == 0.0


def test_grouped_maxsim_without_masks_and_its_gradient() -> None:
    queries = torch.randn(2, 3, 4, requires_grad=True)
    documents = torch.randn(6, 5, 4)
    own = grouped_maxsim(queries, documents)
    full = maxsim(queries, documents)
    torch.testing.assert_close(own, torch.stack([full[0, :3], full[1, 3:]]))
    own.sum().backward()
    assert queries.grad is not None and torch.isfinite(queries.grad).all()


def test_grouped_maxsim_refuses_documents_that_are_not_whole_groups() -> None:
    with pytest.raises(ValueError, match="7 documents are not a whole number of groups for 2 queries"):
        grouped_maxsim(torch.randn(2, 3, 4), torch.randn(7, 5, 4))
