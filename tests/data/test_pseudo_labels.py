"""Pseudo-labels from a teacher given as an object: scores as it gives them, false negatives dropped, progress."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from retrievals_rag.data import pseudo_labels
from retrievals_rag.data.pseudo_labels import label_with_teacher


class WordOverlap:
    """A teacher: the number of query words in the passage."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def compute_score(
        self, pairs: Sequence[tuple[str, str]], *, show_progress_bar: bool | None = None
    ) -> list[int]:
        self.calls.append(len(pairs))
        return [len(set(query.split()) & set(passage.split())) for query, passage in pairs]


RECORDS = [
    {"query": "insulin lowers sugar", "positive": ["insulin lowers blood sugar"],
     "negative": ["insulin is a hormone", "insulin lowers sugar fast", "rain in spain"], "negative_ids": ["a", "b", "c"]},
    {"query": "statins", "positive": ["statins lower ldl"], "negative": ["statins and more statins"]},
]  # fmt: skip


def test_an_object_teacher_s_scores_are_kept_as_given_and_false_negatives_dropped() -> None:
    labelled, removed = label_with_teacher(RECORDS, WordOverlap())

    assert (
        removed == 2
    )  # "insulin lowers sugar fast" and "statins and more statins" score like their positive
    assert len(labelled) == 1  # the statins record kept no negative
    [record] = labelled
    assert record["positive_scores"] == [3.0]
    assert record["negative"] == ["insulin is a hormone", "rain in spain"]
    assert record["negative_scores"] == [1.0, 0.0] and record["negative_ids"] == ["a", "c"]
    assert RECORDS[0]["negative_ids"] == ["a", "b", "c"]  # the input is not changed
    lenient, removed = label_with_teacher(RECORDS, WordOverlap(), false_negative_margin=-1.0)
    assert removed == 0 and len(lenient) == 2


def test_long_labelling_reports_progress_in_chunks_and_can_be_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pseudo_labels, "PROGRESS_PAIRS", 3)
    teacher, seen = WordOverlap(), []
    label_with_teacher(RECORDS, teacher, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 6), (6, 6)] and teacher.calls == [3, 3]

    def cancel(done: int, total: int) -> None:
        raise KeyboardInterrupt("cancelled")

    teacher = WordOverlap()
    with pytest.raises(KeyboardInterrupt):
        label_with_teacher(RECORDS, teacher, progress=cancel)
    assert teacher.calls == [3]  # stopped after the first chunk
