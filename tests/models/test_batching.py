from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from retrievals_rag.models.batching import (
    forward_by_length,
    iter_token_batches,
    pad_sequences,
    plan_batches,
    plan_length_groups,
)


def test_plan_batches_respects_the_budget_and_covers_every_row_once() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=500).tolist()
    batches = plan_batches(lengths, token_budget=1000, max_batch_size=64)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(500))
    for rows in batches:
        padded = len(rows) * max(lengths[i] for i in rows)
        assert padded <= 1000 or len(rows) == 1
        assert len(rows) <= 64
    # longest first
    firsts = [max(lengths[i] for i in rows) for rows in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_a_row_over_the_budget_gets_its_own_batch() -> None:
    assert [rows.tolist() for rows in plan_batches([5000, 3, 3], token_budget=100, max_batch_size=8)] == [
        [0],
        [1, 2],
    ]


def test_plan_batches_rejects_a_zero_budget() -> None:
    with pytest.raises(ValueError, match="token_budget"):
        plan_batches([1, 2], token_budget=0, max_batch_size=4)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_sequences(side: str) -> None:
    ids, mask = pad_sequences([[5, 6, 7], [8], []], pad_id=0, padding_side=side)
    if side == "right":
        assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
        assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    else:
        assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
        assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]


def _word_ids(texts: list[str]) -> list[list[int]]:
    return [[len(word) for word in text.split()] for text in texts]


@pytest.mark.parametrize("prefetch", [False, True])
def test_iter_token_batches_restores_positions_across_chunks(prefetch: bool) -> None:
    texts = [" ".join(["w" * (i % 7 + 1)] * (i % 13 + 1)) for i in range(100)]
    seen: dict[int, list[int]] = {}
    for batch in iter_token_batches(
        texts, _word_ids, token_budget=40, max_batch_size=16, pad_id=0, chunk_size=30, prefetch=prefetch
    ):
        assert batch.input_ids.shape == batch.attention_mask.shape
        for row, position in enumerate(batch.positions.tolist()):
            seen[position] = batch.input_ids[row][batch.attention_mask[row].bool()].tolist()
    assert seen == dict(enumerate(_word_ids(texts)))


def test_prefetch_reraises_a_tokenizer_error_in_the_consumer() -> None:
    def broken(texts: list[str]) -> list[list[int]]:
        raise RuntimeError("tokenizer exploded")

    with pytest.raises(RuntimeError, match="tokenizer exploded"):
        list(iter_token_batches(["a"], broken, token_budget=10, max_batch_size=2, pad_id=0, prefetch=True))


def test_padded_flag() -> None:
    (batch,) = iter_token_batches(["a b", "c d"], _word_ids, token_budget=100, max_batch_size=8, pad_id=0)
    assert not batch.padded
    (batch,) = iter_token_batches(["a b", "c"], _word_ids, token_budget=100, max_batch_size=8, pad_id=0)
    assert batch.padded
    assert isinstance(batch.input_ids, torch.Tensor)


def _brute_force_cost(lengths: list[int], group_cost: float) -> float:
    """The cheapest split of sorted ``lengths`` into contiguous groups, by trying every set of cut points."""
    ordered = sorted(lengths)
    best = float("inf")
    for mask in range(1 << (len(ordered) - 1)):
        cuts = [0] + [i + 1 for i in range(len(ordered) - 1) if mask >> i & 1] + [len(ordered)]
        cost = sum((end - start) * ordered[end - 1] + group_cost for start, end in itertools.pairwise(cuts))
        best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(20))
def test_plan_length_groups_is_optimal_and_covers_every_row_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 60, size=int(rng.integers(1, 10))).tolist()
    group_cost = float(rng.choice([0.0, 10.0, 100.0, 1e6]))
    groups = plan_length_groups(lengths, group_cost)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    cost = sum(len(g) * max(lengths[i] for i in g) + group_cost for g in groups)
    assert cost == pytest.approx(_brute_force_cost(lengths, group_cost))
    if group_cost == 1e6:
        assert len(groups) == 1


def test_plan_length_groups_splits_a_batch_of_short_and_long_rows() -> None:
    groups = plan_length_groups([5, 200, 6, 190, 4], group_cost=50)
    assert [sorted(g.tolist()) for g in groups] == [[0, 2, 4], [1, 3]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_forward_by_length_equals_one_padded_forward_with_gradients(side: str) -> None:
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(50, 8)
    sequences = [list(range(1, n + 1)) for n in (3, 40, 4, 38, 2, 41)]
    input_ids, attention_mask = pad_sequences(sequences, 0, side)
    calls: list[tuple[int, int]] = []

    def mean_pool(features: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(tuple(features["input_ids"].shape))
        mask = features["attention_mask"].unsqueeze(-1).float()
        return (embedding(features["input_ids"]) * mask).sum(1) / mask.sum(1)

    features = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.arange(6)}
    whole = mean_pool(features)
    calls.clear()
    grouped = forward_by_length(mean_pool, features, min_saving=0.05)
    assert sorted(calls) == [(3, 4), (3, 41)]  # two groups, each trimmed to its own longest row
    torch.testing.assert_close(grouped, whole)
    (grad_whole,) = torch.autograd.grad(whole.square().sum(), embedding.weight)
    (grad_grouped,) = torch.autograd.grad(grouped.square().sum(), embedding.weight)
    torch.testing.assert_close(grad_grouped, grad_whole)


def test_forward_by_length_keeps_one_call_for_an_even_batch() -> None:
    # splitting off the 9-token row would save 1 padded token of 30: less than the 5% each call must save
    input_ids, attention_mask = pad_sequences([[1] * 10, [2] * 10, [3] * 9], 0, "right")
    calls = []

    def forward(features: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(features["input_ids"].shape)
        return features["input_ids"].sum(1)

    features = {"input_ids": input_ids, "attention_mask": attention_mask}
    out = forward_by_length(forward, features, min_saving=0.05)
    assert calls == [(3, 10)]
    assert out.tolist() == [10, 20, 27]


def test_forward_by_length_on_the_cpu_splits_off_smaller_savings() -> None:
    input_ids, attention_mask = pad_sequences([[1] * 100, [2] * 100, [3] * 96], 0, "right")
    calls = []

    def forward(features: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(tuple(features["input_ids"].shape))
        return features["input_ids"].sum(1)

    forward_by_length(forward, {"input_ids": input_ids, "attention_mask": attention_mask})
    assert sorted(calls) == [(1, 96), (2, 100)]  # saves 4 of 300 padded tokens: above 1%, below 5%
