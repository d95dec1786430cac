"""The one rule for turning text into token ids, shared by inference (``encode``) and training (collators).

Keeping both on this module is what guarantees that a model is trained and used on identical inputs:
same instruction placement, same truncation, same EOS handling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


# The side every embedding batch is padded on, in ``encode`` and in training: the right, whatever the tokenizer
# says. Position ids count from the first token of a row, so left padding would move a text's absolute positions
# (BERT, GPT-2) with the longest text of its batch, and its vector with them.
EMBEDDING_PADDING_SIDE = "right"


def apply_instruction(instruction: str | None, text: str) -> str:
    """Prefix ``text`` with ``instruction``; a ``{}`` in the instruction is a placeholder for the text.

    Example:
        >>> apply_instruction("query: ", "cells")
        'query: cells'
        >>> apply_instruction("Represent {} for retrieval", "cells")
        'Represent cells for retrieval'
    """
    if not instruction:
        return text
    if "{}" in instruction:
        return instruction.replace("{}", text, 1)
    return instruction + text


def empty_text_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that stands in for a text the tokenizer turns into no tokens at all: EOS, else UNK, else the
    pad token.

    A tokenizer that adds no BOS or CLS (GPT-2, Qwen2, SmolLM2) encodes ``""`` as nothing; a row without a
    single real token has no mean, no first token and no last token to pool, and a transformer fails on a
    batch of such rows. The EOS is what such a model sees after a text, so it is the closest stand-in.

    Raises:
        ValueError: the tokenizer has none of the three tokens.
    """
    for token_id in (tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError(f"{type(tokenizer).__name__} has no EOS, UNK or pad token to stand in for an empty text")


def tokenize_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, append_eos: bool = False
) -> list[list[int]]:
    """Token ids: special tokens added, truncated to ``max_length`` (EOS included when ``append_eos``).

    Every row holds at least one token: a text that tokenizes to none (``""`` without a BOS) becomes
    :func:`empty_text_token_id`, so that its vector is finite and the same alone and in a batch.
    """
    if not texts:
        return []
    limit = max_length - (1 if append_eos else 0)
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=limit,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    if append_eos:
        eos = tokenizer.eos_token_id
        encoded = [[*ids, eos] for ids in encoded]
    if not all(encoded):
        stand_in = empty_text_token_id(tokenizer)
        encoded = [ids or [stand_in] for ids in encoded]
    return encoded


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_id: int, padding_side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token id lists to the longest one: ``(input_ids, attention_mask)``, both ``(batch, longest)``."""
    import numpy as np
    import torch

    longest = max((len(seq) for seq in sequences), default=0)
    input_ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        if padding_side == "left":
            input_ids[row, longest - len(seq) :] = seq
            attention_mask[row, longest - len(seq) :] = 1
        else:
            input_ids[row, : len(seq)] = seq
            attention_mask[row, : len(seq)] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
