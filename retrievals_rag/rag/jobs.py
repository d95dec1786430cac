"""Background jobs (indexing, re-indexing a collection with another embedder, adapting the embedder): one worker
thread per store runs them in order, apart from any caller.

A Streamlit page is a script run again on every interaction, and a run can be stopped at any point: indexing
done inside it would stop with it. :class:`JobRunner` keeps the work in a thread of its own, so a question, a
click or a closed browser tab does not stop it; the page only reads :attr:`IndexJob.progress` (chunks done, the
total, a time estimate) and :attr:`IndexJob.report` when it is done. A job can be cancelled between two batches;
what was written stays, and running the same files again resumes (chunk ids are content hashes). A job's
:attr:`~IndexJob.kind` says what it does, and so what its progress and report are: ``"index"``
(:class:`~retrievals_rag.rag.indexing.IndexProgress`, :class:`~retrievals_rag.rag.indexing.IndexReport`), or
``"version"`` and ``"adapt"`` (:class:`~retrievals_rag.rag.versions.VersionProgress`, the
:class:`~retrievals_rag.rag.versions.CollectionVersion` made).

Example:
    >>> runner = JobRunner()  # doctest: +SKIP
    >>> job = runner.submit("notes", ["big.txt"], lambda progress: index_paths(store, ["big.txt"], "notes",
    ...     progress=progress))  # doctest: +SKIP
    >>> job.wait(60)  # doctest: +SKIP
    True
    >>> job.state, job.report.chunks_added  # doctest: +SKIP
    ('done', 1250)
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Literal, TypeVar

__all__ = ["IndexCancelledError", "IndexJob", "JobKind", "JobRunner", "JobState"]

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
JobKind = Literal["index", "version", "adapt"]
"""What a job does: index files, (re-)index a collection's version with its embedder, adapt the embedder."""
ProgressT = TypeVar("ProgressT")
ReportT = TypeVar("ReportT")

_KEEP_FINISHED = 50  # finished jobs remembered (their reports), newest kept
_SHARED: dict[str, JobRunner] = {}
_SHARED_LOCK = threading.Lock()


class IndexCancelledError(Exception):
    """Raised inside a job's run to stop it between two batches."""


class IndexJob(Generic[ProgressT, ReportT]):
    """One background run (indexing, or a collection version's work), done by a :class:`JobRunner`.

    Attributes:
        id: The job's number, unique within its runner.
        collection: The collection it writes to.
        names: The files (or upload names) it indexes; for a version's job, the version.
        kind: What it does (:data:`JobKind`).
        state: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
        progress: The last progress report; None before the first.
        report: What it did, once ``done``.
        error: Why it failed (``failed``).
        submitted: ``time.time()`` when submitted; ``finished`` when it ended (None before).
    """

    def __init__(
        self,
        job_id: int,
        collection: str,
        names: Sequence[str],
        run: Callable[[Callable[[ProgressT], None]], ReportT],
        on_finish: Callable[[IndexJob[ProgressT, ReportT]], None] | None = None,
        kind: JobKind = "index",
    ) -> None:
        self.id = job_id
        self.collection = collection
        self.names = list(names)
        self.kind: JobKind = kind
        self.state: JobState = "queued"
        self.progress: ProgressT | None = None
        self.report: ReportT | None = None
        self.error: str | None = None
        self.submitted = time.time()
        self.finished: float | None = None
        self._run = run
        self._on_finish = on_finish
        self._cancel = threading.Event()
        self._done = threading.Event()

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.state in ("queued", "running")

    def cancel(self) -> None:
        """Stop the job before its next batch (a queued job does not start); what was written stays."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job has ended; True when it has (False on timeout)."""
        return self._done.wait(timeout)

    @property
    def cancel_requested(self) -> bool:
        """Whether :meth:`cancel` was called (the job stops at its next progress report)."""
        return self._cancel.is_set()

    def _update(self, progress: ProgressT) -> None:
        self.progress = progress
        if self._cancel.is_set():
            what = "indexing into" if self.kind == "index" else f"the {self.kind} job of"
            raise IndexCancelledError(f"{what} {self.collection!r} was cancelled")

    def execute(self) -> None:
        """Run the job in this thread (the runner's worker calls it); never raises."""
        try:
            if self._cancel.is_set():
                self.state = "cancelled"
                return
            self.state = "running"
            self.report = self._run(self._update)
            self.state = "done"
        except IndexCancelledError:
            self.state = "cancelled"
        except Exception as error:  # recorded for the page to show; the worker goes on with the next job
            self.error = f"{type(error).__name__}: {error}" if not str(error) else str(error)
            self.state = "failed"
        finally:
            self.finished = time.time()
            try:
                if self._on_finish is not None:
                    self._on_finish(self)
            finally:
                self._done.set()

    def __repr__(self) -> str:
        return (
            f"IndexJob(id={self.id}, kind={self.kind!r}, collection={self.collection!r}, names={self.names!r}, "
            f"state={self.state!r})"
        )


class JobRunner:
    """Runs jobs one after another in a daemon thread of its own, started on the first submission."""

    def __init__(self) -> None:
        self._queue: queue.Queue[IndexJob[Any, Any]] = queue.Queue()
        self._jobs: list[IndexJob[Any, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    @classmethod
    def shared(cls, key: str) -> JobRunner:
        """The one runner of a store (``key``: its folder or URL) in this process, shared by its engines.

        An app that builds a new engine when a setting changes still sees, and does not duplicate, the jobs
        that an earlier engine over the same store started.
        """
        with _SHARED_LOCK:
            return _SHARED.setdefault(key, cls())

    def submit(
        self,
        collection: str,
        names: Sequence[str],
        run: Callable[[Callable[[ProgressT], None]], ReportT],
        on_finish: Callable[[IndexJob[ProgressT, ReportT]], None] | None = None,
        kind: JobKind = "index",
    ) -> IndexJob[ProgressT, ReportT]:
        """Queue ``run(progress)`` as a job; returns it at once.

        Args:
            collection: The collection it writes to (for :meth:`jobs`).
            names: What it works on, for display.
            run: Does the work, calling ``progress`` after every batch (which raises once it is cancelled).
            on_finish: Called in the worker thread when the job has ended, whatever its state.
            kind: What it does (:data:`JobKind`).
        """
        with self._lock:
            job = IndexJob(next(self._ids), collection, names, run, on_finish, kind)
            self._jobs.append(job)
            finished = [old for old in self._jobs if not old.active]
            for old in finished[: max(0, len(finished) - _KEEP_FINISHED)]:
                self._jobs.remove(old)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="retrievals-rag-indexing", daemon=True
                )
                self._worker.start()
        self._queue.put(job)
        return job

    def jobs(self, collection: str | None = None) -> list[IndexJob[Any, Any]]:
        """Jobs in submission order (active ones and the last finished ones), of one collection or all."""
        with self._lock:
            return [job for job in self._jobs if collection is None or job.collection == collection]

    def get(self, job_id: int) -> IndexJob[Any, Any] | None:
        """The job with this id, if still remembered."""
        with self._lock:
            return next((job for job in self._jobs if job.id == job_id), None)

    def _work(self) -> None:
        while True:
            self._queue.get().execute()
