"""Fitting texts into a ranker's input: special-token frames, token budgets and long-document windows.

Shared by the three rankers (cross-encoder, LLM ranker, ColBERT). A document longer than the room left in a
model's input is split into overlapping token windows; each window is scored as if it were the document, and
the document gets the score of its best window (MaxP, Dai & Callan, 2019). Instructions and markers frame
every window, and the query is truncated only when it would take more than half of the room.

Texts are tokenized once without special tokens; the tokenizer's own special tokens are then put around the
pieces by a :class:`TokenFrame`, found by probing the tokenizer, so an input that fits is token for token
what ``tokenizer(query, document)`` gives. Imports no torch at module level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retrievals_rag.models.batching import TokenBatch, iter_token_batches

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Probe texts for finding a tokenizer's special tokens: the first pair whose pieces are distinct known tokens.
_PROBES = (("a", "the"), ("hello", "world"), ("query", "document"), ("1", "2"), ("x", "y"))


def split_instruction(instruction: str | None) -> tuple[str, str]:
    """The text before and after the text that ``instruction`` frames.

    The same rule as ``retrievals_rag.data.tokenization.apply_instruction``: a ``{}`` in the instruction is a
    placeholder for the text (its first occurrence), else the instruction is a prefix.

    Example:
        >>> split_instruction("query: ")
        ('query: ', '')
        >>> split_instruction("Represent {} for retrieval")
        ('Represent ', ' for retrieval')
    """
    if not instruction:
        return "", ""
    if "{}" in instruction:
        before, after = instruction.split("{}", 1)
        return before, after
    return instruction, ""


def tokenize_content(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of ``texts`` without special tokens and without truncation (windows come later)."""
    if not texts:
        return []
    return tokenizer(
        list(texts),
        add_special_tokens=False,
        truncation=False,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,  # no "longer than the maximum" warning: long documents are windowed, not overflowed
    )["input_ids"]


def instruction_ids(
    tokenizer: PreTrainedTokenizerBase, instruction: str | None
) -> tuple[list[int], list[int]]:
    """Token ids of the text an instruction puts before and after a text (see :func:`split_instruction`)."""
    before, after = split_instruction(instruction)
    pieces = tokenize_content(tokenizer, [before, after])
    return pieces[0], pieces[1]


@dataclass(frozen=True)
class TokenFrame:
    """The special tokens a tokenizer puts around one text or a (first, second) pair of texts.

    ``assemble(first, second)`` gives ``prefix + first + middle + second + suffix`` and, for models that use
    them, the matching token type ids.
    """

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    prefix_types: tuple[int, ...]
    first_type: int
    middle_types: tuple[int, ...]
    second_type: int
    suffix_types: tuple[int, ...]
    uses_token_types: bool

    @property
    def overhead(self) -> int:
        """Special tokens added to every input."""
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def assemble(
        self, first: Sequence[int], second: Sequence[int] | None = None
    ) -> tuple[list[int], list[int] | None]:
        """``(input_ids, token_type_ids)``; the type ids are None for models that take none."""
        ids = [*self.prefix, *first]
        types = [*self.prefix_types, *[self.first_type] * len(first)]
        if second is not None:
            ids += [*self.middle, *second]
            types += [*self.middle_types, *[self.second_type] * len(second)]
        ids += self.suffix
        types += self.suffix_types
        return ids, (types if self.uses_token_types else None)


def find_token_frame(tokenizer: PreTrainedTokenizerBase, pair: bool) -> TokenFrame:
    """Find the special tokens ``tokenizer`` adds around one text (``pair=False``) or a pair of texts.

    Raises:
        ValueError: the tokenizer's framing could not be determined (no probe text tokenizes cleanly, or
            assembling the pieces does not reproduce the tokenizer's own output).
    """
    uses_types = "token_type_ids" in tokenizer.model_input_names
    unknown = tokenizer.unk_token_id
    for first_text, second_text in _PROBES:
        first, second = tokenize_content(tokenizer, [first_text, second_text])
        if not first or not second or first == second or unknown in (*first, *second):
            continue
        encoded = tokenizer(first_text, second_text if pair else None, return_token_type_ids=True)
        ids = list(encoded["input_ids"])
        types = list(encoded.get("token_type_ids") or [0] * len(ids))
        start = _find(ids, first, 0, from_end=False)
        if start < 0:
            continue
        first_end = start + len(first)
        if pair:
            second_start = _find(ids, second, first_end, from_end=True)
            if second_start < 0:
                continue
            second_end = second_start + len(second)
        else:
            second_start = second_end = first_end
        frame = TokenFrame(
            prefix=tuple(ids[:start]),
            middle=tuple(ids[first_end:second_start]),
            suffix=tuple(ids[second_end:]),
            prefix_types=tuple(types[:start]),
            first_type=types[start],
            middle_types=tuple(types[first_end:second_start]),
            second_type=types[second_start] if pair else 0,
            suffix_types=tuple(types[second_end:]),
            uses_token_types=uses_types,
        )
        # Check on the swapped probe that the assembled pieces are the tokenizer's own output.
        expected = tokenizer(second_text, first_text if pair else None, return_token_type_ids=True)
        assembled, assembled_types = frame.assemble(second, first if pair else None)
        if assembled != list(expected["input_ids"]):
            continue
        if uses_types and assembled_types != list(expected.get("token_type_ids") or []):
            continue
        return frame
    raise ValueError(
        f"could not determine the special tokens {type(tokenizer).__name__} puts around "
        f"{'a pair of texts' if pair else 'a text'}"
    )


def _find(ids: list[int], piece: list[int], start: int, from_end: bool) -> int:
    positions = range(len(ids) - len(piece), start - 1, -1) if from_end else range(start, len(ids))
    for position in positions:
        if ids[position : position + len(piece)] == piece:
            return position
    return -1


def fit_query(query_length: int, document_length: int, budget: int) -> int:
    """How many query tokens to keep when query and document share ``budget`` content tokens.

    The query is kept whole unless the pair does not fit and the query takes more than half of the budget;
    then it is cut to what the document leaves, but never below half (the rest is windowed).
    """
    if budget < 2:
        raise ValueError(f"no room for query and document: {budget} content tokens left")
    if query_length + document_length <= budget:
        return query_length
    return min(query_length, max(budget // 2, budget - document_length))


def plan_windows(
    length: int, window_size: int, window_stride: int | None, max_windows: int
) -> list[tuple[int, int]]:
    """``(start, end)`` token spans of overlapping windows over a text of ``length`` tokens.

    Windows start every ``window_stride`` tokens (None: half a window); the last one is moved back to end
    at the text's end, so the end is always covered when ``max_windows`` allows. At most ``max_windows``
    windows, from the start of the text.

    Example:
        >>> plan_windows(10, 4, None, 8)
        [(0, 4), (2, 6), (4, 8), (6, 10)]
        >>> plan_windows(3, 4, None, 8)
        [(0, 3)]
    """
    if window_size < 1:
        raise ValueError(f"window_size must be >= 1, got {window_size}")
    if length <= window_size:
        return [(0, length)]
    stride = min(window_size, max(1, window_stride if window_stride is not None else window_size // 2))
    starts = list(range(0, length - window_size, stride))
    starts.append(length - window_size)
    return [(start, start + window_size) for start in starts[:max_windows]]


def iter_row_batches(
    rows: Sequence[Sequence[int]],
    *,
    token_budget: int,
    max_batch_size: int,
    pad_id: int,
    padding_side: str = "right",
    prefetch: bool = False,
    pin_memory: bool = False,
) -> Iterator[TokenBatch]:
    """Batches of already tokenized rows, planned by tokens like any text (``batching.iter_token_batches``).

    ``TokenBatch.positions`` index into ``rows``.
    """
    keys = [str(index) for index in range(len(rows))]

    def look_up(chunk: list[str]) -> list[list[int]]:
        return [list(rows[int(key)]) for key in chunk]

    return iter_token_batches(
        keys,
        look_up,
        token_budget=token_budget,
        max_batch_size=max_batch_size,
        pad_id=pad_id,
        padding_side=padding_side,
        prefetch=prefetch,
        pin_memory=pin_memory,
    )


def best_per_owner(owners: np.ndarray, row_scores: np.ndarray, n_owners: int) -> np.ndarray:
    """The best row score of each owner: ``out[i] = max(row_scores[owners == i])``, float64, -inf if none."""
    best = np.full(n_owners, -np.inf, dtype=np.float64)
    np.maximum.at(best, owners, row_scores.astype(np.float64))
    return best
