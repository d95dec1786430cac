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
    from retrievals_rag.training.adapt_settings import AdaptProgress, AdaptSettings

__all__ = ["adapt_to_chunks", "check_corpus", "settings_from_record", "settings_record"]


def check_corpus(collection: str, chunks: int) -> None:
    """Refuse, with the reason, a collection too small to adapt to (before a job is started for it).

    Raises:
        ValueError: When it has fewer chunks than :data:`~retrievals_rag.training.adapt_settings.MIN_PASSAGES`.
    """
    from retrievals_rag.training.adapt_settings import MIN_PASSAGES

    if chunks == 0:
        raise ValueError(
            f"the collection {collection!r} has no documents yet: index some, then adapt the embedder"
        )
    if chunks < MIN_PASSAGES:
        raise ValueError(
            f"the collection {collection!r} holds {chunks} chunk(s); adapting needs at least {MIN_PASSAGES} "
            "passages (questions of one held out for the before / after, of two or more trained on, others as "
            "negatives): add documents first"
        )


def settings_record(settings: AdaptSettings) -> dict[str, Any]:
    """The settings as JSON values, recorded with the version to resume it with (the API key is never in them:
    they name the environment variable that holds it)."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(settings).items()
    }


def settings_from_record(record: Mapping[str, Any]) -> AdaptSettings:
    """The settings recorded by :func:`settings_record` (keys this release does not know are ignored).

    Raises:
        ValueError: When a recorded value is no longer valid (the message names the field).
    """
    from retrievals_rag.training.adapt_settings import AdaptSettings

    values: dict[str, Any] = {}
    for item in dataclasses.fields(AdaptSettings):
        if item.name in record:
            value = record[item.name]
            values[item.name] = tuple(value) if isinstance(value, list) else value
    return AdaptSettings(**values)


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
    verdict = outcome.verdict or {}  # None without a holdout
    shown = list(verdict.get("metrics") or verdict.get("before") or ())
    return AdaptationResult(
        # The verdict names the folder it read, a staging folder gone by now: say what it measured instead.
        data=(
            f"{outcome.holdout_questions} held-out generated question(s) (their passages not trained on), "
            "each searching all the sampled passages"
            if verdict
            else "nothing (no question held out)"
        ),
        before={name: float(verdict["before"][name]) for name in shown if name in verdict["before"]},
        after={name: float(verdict["after"][name]) for name in shown if name in verdict["after"]},
        passages_used=int(outcome.passages_used),
        questions=int(outcome.questions),
        dropped={str(name): int(count) for name, count in outcome.dropped.items()},
        generator=outcome.generator or settings.generator,
        seconds={str(name): float(value) for name, value in outcome.timings.items()},
        questions_per_second=float(outcome.questions_per_second),
    )
