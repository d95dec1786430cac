"""Adapting the embedder to a collection's own documents, for :meth:`CollectionVersions.submit_adaptation`.

The chunks already stored are the passages (the user's files are not read again). Label-free adaptation
(:func:`retrievals_rag.training.adapt.adapt_embedder`) writes questions for a sample of them, mines hard
negatives with the current embedder, trains it, judges it before / after on held-out generated questions and
saves it as a normal model folder; this module turns its progress into :class:`VersionProgress` reports (with a
time estimate per stage) and its report into the :class:`AdaptationResult` recorded with the version.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrievals_rag.rag.version_info import AdaptationResult, VersionProgress

if TYPE_CHECKING:
    from retrievals_rag.training.adapt import AdaptProgress, AdaptSettings

__all__ = ["MIN_CHUNKS", "adapt_to_chunks", "check_corpus", "settings_from_record", "settings_record"]

MIN_CHUNKS = 2
"""Fewest chunks a collection needs to be adapted to: a question is judged against the other passages."""
_SECRET_FIELDS = ("api_key",)  # never written into the store's metadata


def check_corpus(collection: str, chunks: int) -> None:
    """Refuse, with the reason, a collection too small to adapt to.

    Raises:
        ValueError: When it has fewer than :data:`MIN_CHUNKS` chunks.
    """
    if chunks == 0:
        raise ValueError(
            f"the collection {collection!r} has no documents yet: index some, then adapt the embedder"
        )
    if chunks < MIN_CHUNKS:
        raise ValueError(
            f"the collection {collection!r} holds {chunks} chunk: adapting needs at least {MIN_CHUNKS} passages "
            "(each generated question is judged against the others); add documents first"
        )


def settings_record(settings: AdaptSettings) -> dict[str, Any]:
    """The settings as JSON-safe values to record with the version (secrets left out)."""
    return {
        key: value
        for key, value in dataclasses.asdict(settings).items()
        if key not in _SECRET_FIELDS
        and (value is None or isinstance(value, str | int | float | bool | list | dict))
    }


def settings_from_record(
    record: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> AdaptSettings:
    """The settings recorded by :func:`settings_record`, with ``overrides`` (the secrets it left out).

    Keys that :class:`AdaptSettings` does not know (recorded by another release) are ignored.
    """
    from retrievals_rag.training.adapt import AdaptSettings

    known = {item.name for item in dataclasses.fields(AdaptSettings)}
    values = {**record, **(overrides or {})}
    return AdaptSettings(**{key: value for key, value in values.items() if key in known})


def adapt_to_chunks(
    passages: Mapping[str, str],
    output_dir: Path,
    *,
    base_model: str | None,
    settings: AdaptSettings,
    progress: Callable[[VersionProgress], None],
) -> AdaptationResult:
    """Adapt ``base_model`` to ``passages`` and save it in ``output_dir``; returns what was measured.

    Args:
        passages: Chunk id -> text.
        output_dir: The adapted model's folder (work files of an interrupted run there are resumed).
        base_model: The embedder adapted; None: the packaged all-MiniLM-L6-v2.
        settings: The adaptation's settings.
        progress: Called with each stage's progress; an exception it raises stops the run.
    """
    from retrievals_rag.training.adapt import adapt_embedder

    began: dict[str, float] = {}

    def report(update: AdaptProgress) -> None:
        now = time.monotonic()
        elapsed = now - began.setdefault(update.stage, now)
        progress(VersionProgress("", update.stage, update.done, update.total, update.message, elapsed))

    outcome = adapt_embedder(passages, output_dir, base_model=base_model, settings=settings, progress=report)
    verdict = outcome.verdict
    return AdaptationResult(
        data=str(verdict.data),
        before={name: float(value) for name, value in verdict.before.items()},
        after={name: float(value) for name, value in verdict.after.items()},
        passages_used=int(outcome.passages_used),
        questions=int(outcome.questions),
        dropped={str(name): int(count) for name, count in outcome.dropped.items()},
        generator=str(settings.generator),
        seconds={str(name): float(value) for name, value in outcome.timings.items()},
        questions_per_second=float(outcome.questions_per_second),
    )
