from __future__ import annotations

import numpy as np
import pytest
import torch

from retrievals_rag.models.batching import iter_token_batches, pad_sequences, plan_batches


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
