"""Pseudo-labels: a teacher reranker's scores on mined training records, and the false negatives it reveals.

GPL (Wang et al. 2022) labels each (generated question, passage) pair with a cross-encoder and trains the
embedder on the teacher's score margins (``margin_mse``). :func:`label_with_teacher` does that for records in the
training triplet format (``query`` / ``positive`` / ``negative``, as
:func:`~retrievals_rag.retrieval.mining.mine_hard_negatives` writes them), adding the ``positive_scores`` /
``negative_scores`` keys that :mod:`retrievals_rag.data.records` reads for distillation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrievals_rag.retrieval.runs import PairScorer

__all__ = ["PROGRESS_PAIRS", "label_with_teacher"]

PROGRESS_PAIRS = 256
"""Pairs scored between two progress reports (and chances to cancel)."""


def label_with_teacher(
    records: Sequence[Mapping[str, Any]],
    teacher: str | os.PathLike[str] | PairScorer,
    *,
    false_negative_margin: float = 0.0,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Score every (query, passage) pair of ``records`` with ``teacher``; drop likely false negatives.

    A folder's scores are its probabilities (a sigmoid of its logits, 0 to 1), on the scale of an embedder's
    cosine margins; a scorer object's are its own (a
    query-likelihood ``LLMRanker``'s: log-probabilities per token). A
    negative scored at or above the lowest positive's score minus ``false_negative_margin`` is dropped: the
    teacher thinks it answers the query about as well as the passage the query was written for. A record left
    without a negative is dropped too.

    Args:
        records: ``{"query": str, "positive": [str, ...], "negative": [str, ...], ...}``; other keys are kept.
        teacher: a reranker folder saved by this library (cross-encoder, LLM ranker or ColBERT), or a scorer with
            ``compute_score(pairs, show_progress_bar=...)``, used as it is.
        false_negative_margin: see above (0: drop negatives scored above their positive), in the teacher's units.
        device: where a folder's teacher runs (None: a GPU when there is one).
        progress: called with (pairs scored, pairs) after every :data:`PROGRESS_PAIRS` pairs; it may raise to
            cancel.

    Returns:
        The labelled records (copies, with ``positive_scores`` and ``negative_scores``) and the number of
        negatives dropped.

    Raises:
        ValueError: ``teacher`` is not a reranker folder of ours (an embedder, or a folder without our config).
    """
    pairs = [
        (record["query"], text) for record in records for text in (*record["positive"], *record["negative"])
    ]
    if isinstance(teacher, (str, os.PathLike)):
        from retrievals_rag.models.registry import folder_kind, load_model

        kind = folder_kind(teacher)
        if kind is None or kind == "embedding":
            raise ValueError(
                f"teacher {teacher} is not a reranker folder of ours (a cross-encoder, LLM ranker or ColBERT saved "
                f"by retrievals_rag; found: {kind + ' model' if kind else 'no retrievals_rag_config.json'})"
            )
        model = load_model(teacher, kind, options={"device": device} if device else {})

        def score(chunk: Sequence[tuple[str, str]]) -> Any:
            return model.compute_score(chunk, normalize=True, show_progress_bar=False)

    else:

        def score(chunk: Sequence[tuple[str, str]]) -> Any:
            return teacher.compute_score(chunk, show_progress_bar=False)

    found: list[float] = []
    for start in range(0, len(pairs), PROGRESS_PAIRS):
        found.extend(float(value) for value in score(pairs[start : start + PROGRESS_PAIRS]))
        if progress is not None:
            progress(len(found), len(pairs))
    scores = iter(found)
    labelled: list[dict[str, Any]] = []
    removed = 0
    for record in records:
        positive_scores = [float(next(scores)) for _ in record["positive"]]
        negatives = [(text, float(next(scores))) for text in record["negative"]]
        floor = min(positive_scores) - false_negative_margin
        kept = [index for index, (_, score) in enumerate(negatives) if score < floor]
        removed += len(negatives) - len(kept)
        if not kept:
            continue
        copy = {
            **record,
            "negative": [negatives[index][0] for index in kept],
            "positive_scores": positive_scores,
            "negative_scores": [negatives[index][1] for index in kept],
        }
        if "negative_ids" in record:  # mining's ids stay aligned with the texts
            copy["negative_ids"] = [record["negative_ids"][index] for index in kept]
        labelled.append(copy)
    return labelled, removed
