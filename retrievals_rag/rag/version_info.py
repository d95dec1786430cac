"""What describes a collection's versions (see :mod:`retrievals_rag.rag.versions`): each version's state, the
progress of the job that builds it, and what adapting an embedder measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ORIGINAL",
    "AdaptationResult",
    "CollectionVersion",
    "VersionOrigin",
    "VersionProgress",
    "VersionState",
]

ORIGINAL = "original"
"""The name of a collection's original index (embedded by the engine's embedder)."""

VersionState = Literal["training", "indexing", "ready", "failed", "cancelled"]
"""Where a version stands: its embedder being trained, its chunks being embedded, usable, or stopped."""

VersionOrigin = Literal["original", "adapted", "embedder"]

_STAGES = {
    "generate": "Writing questions for the passages",
    "mine": "Mining hard negatives",
    "label": "Scoring pairs with the teacher",
    "train": "Training the embedder",
    "evaluate": "Measuring before / after on held-out questions",
    "save": "Saving the adapted model",
    "index": "Embedding the chunks with the new model",
}


@dataclass(frozen=True)
class VersionProgress:
    """Where a version's job stands (the progress of a ``"version"`` or ``"adapt"`` job).

    Attributes:
        version: The version's name.
        stage: ``generate``, ``mine``, ``label``, ``train``, ``evaluate``, ``save`` (adapting) or ``index``.
        done: Units of the stage done (questions, steps, chunks...).
        total: Units of the stage; 0 when unknown.
        message: What the stage says it is doing.
        elapsed: Seconds spent in this stage so far.
    """

    version: str
    stage: str
    done: int
    total: int
    message: str = ""
    elapsed: float = 0.0

    @property
    def fraction(self) -> float:
        """Share of the stage done, from 0 to 1."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left in this stage at its rate so far; None until some of it is done."""
        if self.done <= 0 or self.total <= 0 or self.elapsed <= 0:
            return None
        return max(0, self.total - self.done) * self.elapsed / self.done

    @property
    def stage_label(self) -> str:
        """The stage in words."""
        return _STAGES.get(self.stage, self.stage)


@dataclass(frozen=True)
class AdaptationResult:
    """What adapting an embedder to a collection measured: before / after on held-out generated questions.

    Attributes:
        data: What the figures were measured on (the held-out questions and their passages).
        before: The starting embedder's metrics (``nDCG@10``, ``MRR@10``, ``Recall@100``).
        after: The adapted embedder's metrics, on the same data.
        passages_used: Passages of the collection questions were generated for.
        questions: Generated questions kept (after filtering).
        dropped: Questions dropped by each filter.
        generator: How questions were made (``cropping``, ``title``, ``smollm2``, ``openai``).
        seconds: Time spent adapting, by stage.
        questions_per_second: Generation throughput.
    """

    data: str
    before: dict[str, float]
    after: dict[str, float]
    passages_used: int
    questions: int
    dropped: dict[str, int] = field(default_factory=dict)
    generator: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    questions_per_second: float = 0.0

    def rows(self) -> list[tuple[str, float, float, float]]:
        """``(metric, before, after, change)`` for each metric measured both times."""
        return [
            (name, value, self.after[name], self.after[name] - value)
            for name, value in self.before.items()
            if name in self.after
        ]

    @property
    def worse(self) -> bool:
        """The adapted embedder ranks the held-out questions worse than the original (by nDCG@10)."""
        return "nDCG@10" in self.before and self.after.get("nDCG@10", 0.0) < self.before["nDCG@10"] - 1e-9

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> AdaptationResult:
        return cls(**{key: payload[key] for key in cls.__dataclass_fields__ if key in payload})


@dataclass(frozen=True)
class CollectionVersion:
    """One index of a collection: the original, or a version embedded by another model.

    Attributes:
        name: ``original``, ``adapted-1``, ``reindexed-1``...
        collection: The Chroma collection that holds its vectors.
        embedder: Its embedder's folder; None: the packaged all-MiniLM-L6-v2.
        state: :data:`VersionState`.
        origin: ``original``, ``adapted`` (trained on the collection's documents) or ``embedder`` (a folder given).
        active: Whether questions use it.
        chunks: Chunks it holds.
        chunks_total: Chunks of the original.
        running: Whether a job works on it now (else a version not ``ready`` was stopped: resume or delete it).
        created: ``time.time()`` when it was started.
        result: What adapting measured (adapted versions, once trained).
        error: Why it failed.
        model_dir: The folder of its adapted model, made by the engine and deleted with the version.
        settings: The adaptation's settings (to resume with).
    """

    name: str
    collection: str
    embedder: str | None
    state: VersionState
    origin: VersionOrigin
    active: bool = False
    chunks: int = 0
    chunks_total: int = 0
    running: bool = False
    created: float = 0.0
    result: AdaptationResult | None = None
    error: str | None = None
    model_dir: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Built whole: questions can use it."""
        return self.state == "ready"

    @property
    def up_to_date(self) -> bool:
        """Holds every chunk of the original (a usable version catches up after documents are added)."""
        return self.chunks == self.chunks_total

    @property
    def needs_update(self) -> bool:
        """Usable, but lacks chunks of the original, and no job is bringing it up to date (e.g. documents were
        indexed by a process that ended before it could)."""
        return self.usable and not self.up_to_date and not self.running

    @property
    def resumable(self) -> bool:
        """Stopped before it was built whole, and no job works on it."""
        return not self.usable and not self.running

    def describe(self) -> str:
        """Its state in words, for people."""
        if self.embedder is None:
            embedder = "the packaged all-MiniLM-L6-v2"
        elif self.origin == "adapted":
            embedder = f"the embedder adapted to these documents ({Path(self.embedder).name})"
        else:
            embedder = Path(self.embedder).name
        if self.running:
            return f"{self.name}: being built ({self.chunks} of {self.chunks_total} chunks embedded so far)"
        if self.state == "ready":
            behind = (
                ""
                if self.up_to_date
                else f"; out of date: {self.chunks} of {self.chunks_total} chunks, update it"
            )
            return f"{self.name}: {self.chunks} chunks embedded by {embedder}{behind}"
        reason = {
            "failed": f"failed: {self.error}",
            "cancelled": "cancelled",
        }.get(self.state, f"interrupted while {'training' if self.state == 'training' else 'indexing'}")
        return f"{self.name}: {reason}; resume it or delete it (the original index is untouched)"
