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

__all__ = ["TokenBatch", "iter_token_batches", "pad_sequences", "plan_batches"]

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
