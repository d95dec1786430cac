"""Calibration data for static int8: the inputs a model's transformer really receives on sample texts.

Static int8 quantizes activations too, with ranges measured on data, so the data must be what the graph sees in
service. Nothing is tokenized here (that would copy each model kind's rules: instructions, ColBERT's markers, a
cross-encoder's pair layout and windows): the model's own inference runs on the calibration texts with its torch
transformer, one text per batch, and the tensors the transformer is called with are recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "MAX_CALIBRATION_ITEMS",
    "MIN_CALIBRATION_ITEMS",
    "CalibrationItem",
    "check_calibration",
    "record_transformer_inputs",
]

# Fewer texts give activation ranges that miss what service inputs reach; more add export time and little else
# (nncf's default subset is 300 samples).
MIN_CALIBRATION_ITEMS = 32
MAX_CALIBRATION_ITEMS = 300

# A text for an embedder or ColBERT; a (query, document) pair for a cross-encoder.
CalibrationItem = str | tuple[str, str]


def check_calibration(kind: str, items: Sequence[CalibrationItem] | None) -> list[CalibrationItem]:
    """The calibration items to use for a model of ``kind``: checked, at most ``MAX_CALIBRATION_ITEMS``.

    Items beyond the maximum are thinned evenly over the sequence (not cut at its start), so a sorted corpus
    still gives short and long texts.

    Raises:
        ValueError: none given, an item of the wrong form (naming its index), or fewer than
            ``MIN_CALIBRATION_ITEMS`` non-empty ones.
    """
    wanted = "(query, document) pairs" if kind == "cross_encoder" else "texts"
    if items is None or isinstance(items, str):
        raise ValueError(
            f"int8-static needs calibration {wanted} (at least {MIN_CALIBRATION_ITEMS}, typically a few hundred "
            "documents like those the model will serve): pass calibration=[...] or --calibration FILE"
        )
    kept: list[CalibrationItem] = []
    for index, item in enumerate(items):
        if kind == "cross_encoder":
            if not (
                isinstance(item, (tuple, list))
                and len(item) == 2
                and all(isinstance(part, str) for part in item)
            ):
                raise ValueError(
                    f"calibration item {index}: a cross-encoder is calibrated on (query, document) pairs of "
                    f"strings, got {type(item).__name__}"
                )
            if item[0].strip() and item[1].strip():
                kept.append((item[0], item[1]))
        else:
            if not isinstance(item, str):
                raise ValueError(f"calibration item {index}: expected a string, got {type(item).__name__}")
            if item.strip():
                kept.append(item)
    if len(kept) < MIN_CALIBRATION_ITEMS:
        raise ValueError(
            f"int8-static needs at least {MIN_CALIBRATION_ITEMS} non-empty calibration {wanted}, got "
            f"{len(kept)}: activation ranges measured on so few would clip what the model meets in service"
        )
    if len(kept) > MAX_CALIBRATION_ITEMS:
        step = len(kept) / MAX_CALIBRATION_ITEMS
        kept = [kept[int(position * step)] for position in range(MAX_CALIBRATION_ITEMS)]
    return kept


def record_transformer_inputs(
    model: Any, kind: str, items: Sequence[CalibrationItem], inputs: list[str]
) -> list[dict[str, Any]]:
    """The feeds (``inputs`` -> int64 arrays) the model's transformer receives while it serves ``items``.

    Embedders and ColBERT encode the items as documents (their document instruction and markers applied), a
    cross-encoder scores the pairs; one item per batch, so each feed is one text as in a calibration dataset.
    """
    from retrievals_rag.models.backends.runtime import graph_feeds

    recorded: list[dict[str, Any]] = []

    def record(_module: Any, _args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        recorded.append(
            graph_feeds(
                inputs, kwargs["input_ids"], kwargs.get("attention_mask"), kwargs.get("token_type_ids")
            )
        )

    handle = model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        if kind == "cross_encoder":
            model.compute_score(list(items), batch_size=1, show_progress_bar=False)
        else:
            model.encode_corpus(list(items), batch_size=1, show_progress_bar=False)
    finally:
        handle.remove()
    return recorded
