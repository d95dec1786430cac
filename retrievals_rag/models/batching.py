"""Batching by tokens: sort by length, fill each batch up to a token budget, pad per batch, restore order.

Shared by every model kind that encodes or scores text. Texts are tokenized in chunks, so memory stays
bounded on large corpora; on a GPU the next batches are tokenized and padded in a background thread while
the model runs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retrievals_rag.data.tokenization import pad_sequences

if TYPE_CHECKING:
    import torch

__all__ = [
    "TokenBatch",
    "forward_by_length",
    "iter_token_batches",
    "pad_sequences",
    "plan_batches",
    "plan_length_groups",
]

Tokenize = Callable[[list[str]], list[list[int]]]


@dataclass
class TokenBatch:
    """One padded batch. ``positions`` are the rows' indices in the caller's input list."""

    positions: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def padded(self) -> bool:
        """Whether any row is shorter than the batch (False lets attention skip the mask)."""
        return bool((self.attention_mask == 0).any())


def plan_batches(lengths: Sequence[int], token_budget: int, max_batch_size: int) -> list[np.ndarray]:
    """Group indices so that each batch, padded to its longest row, holds at most ``token_budget`` tokens.

    Rows are taken longest first, so the first batch is the most memory-hungry (an out-of-memory error shows
    at once) and rows of similar length share a batch. A row longer than the budget gets a batch of its own.
    """
    if token_budget < 1 or max_batch_size < 1:
        raise ValueError(
            f"token_budget and max_batch_size must be >= 1, got {token_budget}, {max_batch_size}"
        )
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(max_batch_size, token_budget // longest, len(order) - start))
        batches.append(order[start : start + size])
        start += size
    return batches


def plan_length_groups(lengths: Sequence[int], group_cost: float) -> list[np.ndarray]:
    """Split one batch into groups of similar length that cost the fewest padded tokens in all.

    Each group is padded to its own longest row; every group beyond the first costs ``group_cost`` tokens more
    (the price of one more forward call). The split is optimal for that cost: rows sorted by length, the best
    contiguous partition found by dynamic programming. Returns index arrays, shortest rows first; a single
    group holding every row when splitting does not pay.
    """
    sorted_rows = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    count = len(sorted_rows)
    if count < 2:
        return [sorted_rows]
    ordered = np.asarray(lengths, dtype=np.float64)[sorted_rows]
    # best[j]: the cheapest cost of rows [0, j); cut[j]: where the last group of that split starts
    best = np.zeros(count + 1)
    cut = np.zeros(count + 1, dtype=np.int64)
    starts = np.arange(count)
    for end in range(1, count + 1):
        # the last group is rows [start, end), padded to ordered[end - 1]
        costs = best[:end] + (end - starts[:end]) * ordered[end - 1] + group_cost
        start = int(np.argmin(costs))
        best[end], cut[end] = costs[start], start
    groups: list[np.ndarray] = []
    end = count
    while end > 0:
        groups.append(sorted_rows[cut[end] : end])
        end = int(cut[end])
    return groups[::-1]


def forward_by_length(
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    features: dict[str, torch.Tensor],
    min_saving: float | None = None,
) -> torch.Tensor:
    """``forward(features)`` for a padded batch, run on groups of rows of similar length, each group trimmed
    of the padding columns it does not need; the outputs come back in the batch's row order.

    For models whose rows are independent (an encoder's pooled embedding, a cross-encoder's score) the
    result is the full batch's, with less padding computed: this is batching by tokens for a training step,
    where the batch itself (and so the in-batch negatives) must stay as it is. Gradients flow through every
    group. A group is split off only when it saves more than ``min_saving`` of the batch's padded tokens.

    Args:
        forward: maps a dict of ``(rows, seq_len)`` tensors (``attention_mask`` among them) to outputs whose
            first dimension is the rows.
        features: the padded batch; 2-d tensors as wide as ``attention_mask`` are trimmed per group, other
            tensors are only sliced by row.
        min_saving: the share of the batch's padded tokens that each extra forward call must save; None:
            1% on the CPU (a call's fixed cost is small next to its arithmetic), 5% on an accelerator (kernel
            launches, and small groups use it less fully).
    """
    import torch

    mask = features["attention_mask"]
    rows, width = mask.shape
    if min_saving is None:
        min_saving = 0.01 if mask.device.type == "cpu" else 0.05
    lengths = mask.sum(dim=1).tolist()
    groups = plan_length_groups(lengths, group_cost=min_saving * rows * width)
    if len(groups) == 1:
        return forward(features)
    outputs = []
    for group in groups:
        index = torch.as_tensor(group, device=mask.device)
        columns = mask.index_select(0, index).bool().any(dim=0).nonzero().squeeze(1)  # non-padding columns
        part = {}
        for name, value in features.items():
            value = value.index_select(0, index)
            if value.dim() == 2 and value.shape[1] == width:
                value = value.index_select(1, columns)
            part[name] = value
        outputs.append(forward(part))
    order = torch.as_tensor(np.concatenate(groups), device=outputs[0].device)
    restored = torch.empty_like(order)
    restored[order] = torch.arange(len(order), device=order.device)
    return torch.cat(outputs).index_select(0, restored)


def _produce_batches(
    texts: Sequence[str],
    tokenize: Tokenize,
    *,
    token_budget: int,
    max_batch_size: int,
    pad_id: int,
    padding_side: str,
    chunk_size: int,
    pin_memory: bool,
) -> Iterator[TokenBatch]:
    for chunk_start in range(0, len(texts), chunk_size):
        chunk = list(texts[chunk_start : chunk_start + chunk_size])
        encoded = tokenize(chunk)
        for rows in plan_batches([len(ids) for ids in encoded], token_budget, max_batch_size):
            input_ids, attention_mask = pad_sequences([encoded[i] for i in rows], pad_id, padding_side)
            if pin_memory:
                input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
            yield TokenBatch(rows + chunk_start, input_ids, attention_mask)


def iter_token_batches(
    texts: Sequence[str],
    tokenize: Tokenize,
    *,
    token_budget: int,
    max_batch_size: int,
    pad_id: int,
    padding_side: str = "right",
    chunk_size: int = 16_384,
    prefetch: bool = False,
    pin_memory: bool = False,
) -> Iterator[TokenBatch]:
    """Yield padded batches of ``texts`` planned by :func:`plan_batches`, chunk by chunk.

    Args:
        texts: the inputs; ``TokenBatch.positions`` index into it.
        tokenize: turns a list of texts into token id lists (truncated, special tokens added).
        token_budget: most tokens in one padded batch.
        max_batch_size: most rows in one batch.
        pad_id: the pad token id.
        padding_side: ``"right"`` or ``"left"``.
        chunk_size: texts tokenized and length-sorted together.
        prefetch: tokenize and pad in a background thread (use it when the model runs on a GPU).
        pin_memory: pin the batches, for asynchronous copies to a GPU.
    """
    produce = _produce_batches(
        texts,
        tokenize,
        token_budget=token_budget,
        max_batch_size=max_batch_size,
        pad_id=pad_id,
        padding_side=padding_side,
        chunk_size=chunk_size,
        pin_memory=pin_memory,
    )
    if not prefetch:
        yield from produce
        return
    yield from _prefetched(produce, depth=4)


def _prefetched(source: Iterator[TokenBatch], depth: int) -> Iterator[TokenBatch]:
    """Run ``source`` in a daemon thread, ``depth`` items ahead; errors are re-raised in the consumer."""
    items: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(("done", None))
        except BaseException as error:  # handed to the consumer, which re-raises it
            items.put(("error", error))

    thread = threading.Thread(target=work, name="retrievals-rag-tokenize", daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = items.get()
            if kind == "item":
                yield payload  # type: ignore[misc]
            elif kind == "error":
                raise payload  # type: ignore[misc]
            else:
                return
    finally:
        stop.set()
        while thread.is_alive():
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
