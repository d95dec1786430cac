"""Versions of a collection: its chunks embedded by another model, searched instead of the original when chosen.

A collection's original index is the Chroma collection of its name, embedded by the engine's embedder: it holds
the chunks (what indexing writes and deleting a document removes). A version is another Chroma collection that
holds the same chunks (same ids, text and metadata) embedded by another model: an embedder adapted to the
collection's own documents (:meth:`CollectionVersions.submit_adaptation`), or any embedder folder
(:meth:`CollectionVersions.submit_reindex`). Each version searches with the embedder it was made with, loaded on
first use and kept.

Versions are recorded in the original's metadata (a JSON list under ``versions``, and the version that questions
use under ``active_version``), so every process over the same store sees them; their Chroma collections carry
:data:`~retrievals_rag.rag.store.VERSION_OF` and are not listed as collections. The original is kept until the
user deletes it.

:func:`sync_version` brings a version up to date: chunks of the original that it lacks are embedded and written,
chunks no longer in the original are removed. Building a version is that sync into an empty collection, so a
build that was stopped (cancelled, or the process killed) resumes where it stopped: chunk ids are content hashes.
A version is usable (listed as ``ready``) only once built whole; one that failed or was interrupted keeps its
state, its reason and its work folder, so that it can be resumed or deleted, and questions keep using the index
they used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from retrievals_rag.rag.jobs import IndexJob, JobRunner
from retrievals_rag.rag.store import VERSION_OF, CollectionNotFoundError, VectorStore
from retrievals_rag.rag.version_info import ORIGINAL, AdaptationResult, CollectionVersion, VersionProgress

_RECORD_LOCKS: weakref.WeakKeyDictionary[JobRunner, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()
_ADAPTED_FOLDER = "adapted"  # data_dir/adapted/<collection>-<n>/: the adapted models (and their work files)

if TYPE_CHECKING:
    from retrievals_rag.training.adapt_settings import AdaptSettings

__all__ = ["CollectionVersions", "align_version", "sync_version"]


def sync_version(
    source: VectorStore,
    source_collection: str,
    target: VectorStore,
    target_collection: str,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Make ``target_collection`` hold the chunks of ``source_collection``, embedded by ``target``'s embedder.

    Chunks missing from the target are embedded and written in batches of ``target.batch_size``; chunks no longer
    in the source are removed. Stopped at any point (``progress`` may raise), it resumes where it stopped.

    Args:
        source: The store of the original.
        source_collection: The original collection.
        target: A store over the same database that embeds with the version's model.
        target_collection: The version's collection (it exists).
        progress: Called with ``(chunks the target holds, chunks of the source)`` before and after each batch.

    Returns:
        The number of chunks embedded and written.
    """
    chunks = source.all_chunks(source_collection)
    held = align_version({chunk.id: chunk.metadata for chunk in chunks}, target, target_collection)
    missing = [chunk for chunk in chunks if chunk.id not in held]
    done = len(chunks) - len(missing)
    if progress is not None:
        progress(done, len(chunks))
    for start in range(0, len(missing), target.batch_size):
        done += target.write_stored_chunks(target_collection, missing[start : start + target.batch_size])
        if progress is not None:
            progress(done, len(chunks))
    return len(missing)


def align_version(
    source_metadata: dict[str, dict[str, Any]], target: VectorStore, target_collection: str
) -> set[str]:
    """Remove from a version the chunks its original no longer holds, and give the others the original's
    metadata where it changed (a deleted document's chunks passed to another name of the same text); returns
    the ids the version still holds. Vectors are kept: no chunk is embedded again."""
    held = target.chunk_metadata(target_collection)
    target.delete_chunks(target_collection, sorted(set(held) - set(source_metadata)))
    target.update_chunk_metadata(
        target_collection,
        {
            chunk_id: source_metadata[chunk_id]
            for chunk_id, metadata in held.items()
            if chunk_id in source_metadata and metadata != source_metadata[chunk_id]
        },
    )
    return set(held) & set(source_metadata)


class CollectionVersions:
    """The versions of each collection of a store: listed, chosen, built in the background, deleted.

    Args:
        store: The engine's store (the originals, embedded by its embedder).
        jobs: The runner of the store's background jobs (one job at a time).
        data_dir: The engine's folder; adapted models go to ``data_dir/adapted/<collection>-<n>/``.
        device: Device of the versions' embedders; None: CUDA when available.
    """

    def __init__(self, store: VectorStore, jobs: JobRunner, data_dir: Path, device: str | None) -> None:
        self.store = store
        self.jobs = jobs
        self.data_dir = Path(data_dir)
        self.device = device
        self._views: dict[str, VectorStore] = {}
        # Engines over one store share its runner (an app makes a new engine when a setting changes): they share
        # this lock too, so that a job's record update and a choice made on the page never interleave.
        with _LOCKS_LOCK:
            self._lock = _RECORD_LOCKS.setdefault(jobs, threading.RLock())

    # -------------------------------------------------------------------------------- records
    def _records(self, collection: str) -> list[dict[str, Any]]:
        raw = self.store.metadata(collection).get("versions")
        try:
            records = json.loads(str(raw or "[]"))
        except json.JSONDecodeError:
            return []
        return [record for record in records if isinstance(record, dict) and "name" in record]

    def _save(self, collection: str, records: list[dict[str, Any]], active: str | None = None) -> None:
        changes = {"versions": json.dumps(records)}
        if active is not None:
            changes["active_version"] = active
        self.store.update_metadata(collection, changes)

    def _update(self, collection: str, name: str, changes: dict[str, Any]) -> None:
        with self._lock:
            records = self._records(collection)
            for record in records:
                if record["name"] == name:
                    record.update(changes)
            self._save(collection, records)

    def _running(self, collection: str) -> set[str]:
        return {
            name
            for job in self.jobs.jobs(collection)
            if job.active and job.kind != "index"
            for name in job.names
        }

    def view(self, embedder: str | None) -> VectorStore:
        """A store over the same database that embeds with ``embedder`` (the original's store for its own)."""
        from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction

        if embedder is None or embedder == self.store.embedding_function.model_name_or_path:
            return self.store
        with self._lock:
            view = self._views.get(embedder)
            if view is None:
                function = ChromaEmbeddingFunction(embedder, device=self.device)
                view = self._views[embedder] = self.store.with_embedding_function(function)
            return view

    def loaded_views(self) -> list[VectorStore]:
        """The stores of other embedders loaded so far (one per embedder that a version still uses)."""
        with self._lock:
            return list(self._views.values())

    # -------------------------------------------------------------------------------- reading
    def list(self, collection: str) -> list[CollectionVersion]:
        """The original and its versions, oldest first, with their chunk counts.

        Raises:
            CollectionNotFoundError: When there is no such collection.
        """
        total = self.store.count(collection)
        metadata = self.store.metadata(collection)
        running = self._running(collection)
        records = self._records(collection)
        active = str(metadata.get("active_version") or ORIGINAL)
        if not any(record["name"] == active and record.get("state") == "ready" for record in records):
            active = ORIGINAL
        versions = [
            CollectionVersion(
                name=ORIGINAL,
                collection=collection,
                embedder=self.store.embedding_function.model_name_or_path,
                state="ready",
                origin="original",
                active=active == ORIGINAL,
                chunks=total,
                chunks_total=total,
            )
        ]
        for record in records:
            try:
                chunks = self.view(record.get("embedder")).count(record["collection"])
            except (CollectionNotFoundError, FileNotFoundError):  # not made yet, or its model folder is gone
                chunks = 0
            result = record.get("result")
            versions.append(
                CollectionVersion(
                    name=record["name"],
                    collection=record["collection"],
                    embedder=record.get("embedder"),
                    state=record.get("state", "failed"),
                    origin=record.get("origin", "embedder"),
                    active=active == record["name"],
                    chunks=chunks,
                    chunks_total=total,
                    running=record["name"] in running,
                    created=float(record.get("created", 0.0)),
                    result=AdaptationResult.from_dict(result) if isinstance(result, dict) else None,
                    error=record.get("error"),
                    model_dir=record.get("model_dir"),
                    settings=dict(record.get("settings") or {}),
                )
            )
        return versions

    def get(self, collection: str, name: str) -> CollectionVersion:
        """One version of ``collection``.

        Raises:
            ValueError: When it has no version of that name (the message lists those it has).
        """
        versions = self.list(collection)
        for version in versions:
            if version.name == name:
                return version
        raise ValueError(
            f"the collection {collection!r} has no version {name!r}; its versions: "
            f"{[version.name for version in versions]}"
        )

    def active(self, collection: str) -> CollectionVersion:
        """The version questions use: the one chosen with :meth:`use`, else the original."""
        return next(version for version in self.list(collection) if version.active)

    def search_target(self, collection: str) -> tuple[VectorStore, str]:
        """The store (embedding with the right model) and Chroma collection that questions on ``collection`` use."""
        version = self.active(collection)
        return self.view(version.embedder), version.collection

    # -------------------------------------------------------------------------------- choosing, deleting
    def use(self, collection: str, name: str) -> None:
        """Make questions on ``collection`` use the version ``name`` (``original`` for the original).

        Raises:
            ValueError: When there is no such version, or it is not built whole yet.
        """
        version = self.get(collection, name)
        if not version.usable:
            raise ValueError(f"{version.describe()}: it cannot be used before it is built whole")
        with self._lock:
            self._save(collection, self._records(collection), active=name)

    def delete(self, collection: str, name: str) -> None:
        """Delete a version: its vectors, its adapted model, its record; questions go back to the original if
        they used it.

        Raises:
            ValueError: For the original (delete the collection instead), an unknown version, or while a job
                works on it (cancel it first).
        """
        if name == ORIGINAL:
            raise ValueError(
                f"the original index holds the documents of {collection!r}, and its versions are made from it: "
                "delete the versions you do not want, or the whole collection"
            )
        version = self.get(collection, name)
        if version.running:
            raise ValueError(f"{name} is being built: cancel its job first, then delete it")
        self._drop_collection(version.collection)
        self._remove_model_dir(version)
        with self._lock:
            records = [record for record in self._records(collection) if record["name"] != name]
            active = ORIGINAL if version.active else None
            self._save(collection, records, active=active)
            if version.embedder is not None and not any(
                r.get("embedder") == version.embedder for r in records
            ):
                self._views.pop(version.embedder, None)

    def delete_all(self, collection: str) -> None:
        """Delete every version of ``collection`` (before the collection itself is deleted)."""
        for version in self.list(collection)[1:]:
            self.delete(collection, version.name)

    def _drop_collection(self, name: str) -> None:
        """Delete a version's Chroma collection, if it was made (its model folder is not needed for that)."""
        from chromadb.errors import NotFoundError

        if name in {collection.name for collection in self.store.client.list_collections()}:
            with contextlib.suppress(NotFoundError, ValueError):
                self.store.client.delete_collection(name)

    def _remove_model_dir(self, version: CollectionVersion) -> None:
        """Remove an adapted model's folder, only when it lies in this engine's ``adapted`` folder."""
        if version.model_dir is None:
            return
        folder = Path(version.model_dir).resolve()
        if folder.parent == (self.data_dir / _ADAPTED_FOLDER).resolve():
            shutil.rmtree(folder, ignore_errors=True)

    # -------------------------------------------------------------------------------- building
    def _new_record(self, collection: str, prefix: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Record a new version named ``<prefix>-<n>`` (n one more than any before) in ``collection``."""
        with self._lock:
            records = self._records(collection)
            taken = [
                int(suffix)
                for record in records
                if (suffix := str(record["name"]).removeprefix(f"{prefix}-")).isdigit()
            ]
            number = max(taken, default=0) + 1
            if prefix == "adapted":
                while (self.data_dir / _ADAPTED_FOLDER / f"{collection}-{number}").exists():
                    number += 1
                fields["model_dir"] = str(self.data_dir / _ADAPTED_FOLDER / f"{collection}-{number}")
                fields.setdefault("embedder", fields["model_dir"])
            record = {
                "name": f"{prefix}-{number}",
                "collection": f"version-{uuid.uuid4().hex[:16]}",
                "created": time.time(),
                **fields,
            }
            self._save(collection, [*records, record])
            return record

    def _check_no_job(self, collection: str, kind: str) -> None:
        for job in self.jobs.jobs(collection):
            if job.active and job.kind == kind:
                raise ValueError(
                    f"a {kind} job of {collection!r} is already queued or running: wait for its end"
                )

    def submit_reindex(
        self, collection: str, embedder: str | os.PathLike[str]
    ) -> IndexJob[VersionProgress, CollectionVersion]:
        """Embed the chunks of ``collection`` with another embedder, as a new version, in the background.

        Raises:
            CollectionNotFoundError: When there is no such collection.
            FileNotFoundError: When ``embedder`` does not exist.
        """
        from retrievals_rag.models.loading import resolve_model_path

        self.store.count(collection)  # a missing collection fails here, not in the job
        path = resolve_model_path(os.fspath(embedder))
        record = self._new_record(
            collection, "reindexed", {"embedder": path, "origin": "embedder", "state": "indexing"}
        )
        return self._submit(collection, record["name"], "version", self._build(collection, record["name"]))

    def submit_adaptation(
        self, collection: str, settings: AdaptSettings | None = None
    ) -> IndexJob[VersionProgress, CollectionVersion]:
        """Adapt the embedder to ``collection``'s chunks and embed them with the adapted one, as a new version.

        Runs in the background (see :mod:`retrievals_rag.rag.adaptation`): questions are generated for the
        chunks (no labels needed), the embedder is trained on them, judged before / after on held-out generated
        questions, saved under ``data_dir/adapted/``, and the chunks are embedded with it. The original is not
        touched; :meth:`use` switches questions to the new version once it is ready. ``settings.max_length`` is
        capped at the embedder's window (chunks are no longer), and ``settings.device`` defaults to the engine's.

        Raises:
            CollectionNotFoundError: When there is no such collection.
            ValueError: When it has too few chunks (see :func:`~retrievals_rag.rag.adaptation.check_corpus`), or
                an adaptation of it is already queued or running.
        """
        from retrievals_rag.rag.adaptation import check_corpus, settings_record
        from retrievals_rag.training.adapt_settings import AdaptSettings

        settings = AdaptSettings() if settings is None else settings
        check_corpus(collection, self.store.count(collection))
        # Passages are chunks, no longer than the embedder's window: train and save the model with that window.
        window = min(settings.max_length, self.store.embedder.max_length)
        settings = dataclasses.replace(settings, max_length=window, device=settings.device or self.device)
        self._check_no_job(collection, "adapt")
        record = self._new_record(
            collection,
            "adapted",
            {
                "origin": "adapted",
                "state": "training",
                "settings": settings_record(settings),
                "base": self.store.embedding_function.model_name_or_path,
            },
        )
        return self._submit(
            collection, record["name"], "adapt", self._adapt(collection, record["name"], settings)
        )

    def resume(self, collection: str, name: str) -> IndexJob[VersionProgress, Any]:
        """Finish a version that failed or was stopped (training again only if it had not finished), or bring a
        usable one that lacks chunks of the original up to date (it stays usable meanwhile).

        Raises:
            ValueError: When it is built whole and up to date, or a job works on it now.
        """
        from retrievals_rag.rag.adaptation import settings_from_record

        version = self.get(collection, name)
        if version.needs_update:
            return self.jobs.submit(
                collection, [name], lambda progress: self.sync(collection, progress), kind="version"
            )
        if not version.resumable:
            raise ValueError(f"{version.describe()}: there is nothing to resume")
        if version.origin == "adapted" and version.result is None:
            self._update(collection, name, {"state": "training", "error": None})
            run = self._adapt(collection, name, settings_from_record(version.settings))
            return self._submit(collection, name, "adapt", run)
        self._update(collection, name, {"state": "indexing", "error": None})
        return self._submit(collection, name, "version", self._build(collection, name))

    def submit_sync(self, collection: str) -> IndexJob[VersionProgress, list[str]] | None:
        """Bring the usable versions of ``collection`` up to date in the background (after documents were
        added); None when it has none, or such a job is already queued."""
        names = [version.name for version in self.list(collection)[1:] if version.usable]
        queued = any(job.kind == "version" and job.state == "queued" for job in self.jobs.jobs(collection))
        if not names or queued:
            return None
        return self.jobs.submit(
            collection, names, lambda progress: self.sync(collection, progress), kind="version"
        )

    def sync(self, collection: str, progress: Callable[[VersionProgress], None] | None = None) -> list[str]:
        """Bring the usable versions of ``collection`` up to date now; returns the names of those updated."""
        updated = []
        for version in self.list(collection)[1:]:
            if version.usable and not version.up_to_date:
                self._fill(collection, version, progress)
                updated.append(version.name)
        return updated

    def prune(self, collection: str) -> None:
        """Remove from every version the chunks no longer in the original and relabel those whose document took
        another name (after a document was deleted: see :func:`align_version`)."""
        source_metadata = self.store.chunk_metadata(collection)
        for version in self.list(collection)[1:]:
            try:
                align_version(source_metadata, self.view(version.embedder), version.collection)
            except (
                CollectionNotFoundError,
                FileNotFoundError,
            ):  # not made yet: it is filled from the original
                continue

    def _submit(
        self, collection: str, name: str, kind: Literal["version", "adapt"], run: Any
    ) -> IndexJob[VersionProgress, CollectionVersion]:
        def record_end(job: IndexJob[VersionProgress, CollectionVersion]) -> None:
            """A job that ended early leaves its version ``cancelled``, or ``failed`` with the reason."""
            if job.state in ("cancelled", "failed"):
                self._update(collection, name, {"state": job.state, "error": job.error})

        return self.jobs.submit(collection, [name], run, on_finish=record_end, kind=kind)

    def _fill(
        self, collection: str, version: CollectionVersion, progress: Callable[[VersionProgress], None] | None
    ) -> None:
        """Create the version's Chroma collection if needed and sync it with the original, reporting progress."""
        view = self.view(version.embedder)
        view.create_collection(version.collection, metadata={VERSION_OF: collection})
        began = time.monotonic()

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(VersionProgress(version.name, "index", done, total, "", time.monotonic() - began))

        sync_version(self.store, collection, view, version.collection, report)

    def _build(
        self, collection: str, name: str
    ) -> Callable[[Callable[[VersionProgress], None]], CollectionVersion]:
        def run(progress: Callable[[VersionProgress], None]) -> CollectionVersion:
            self._fill(collection, self.get(collection, name), progress)
            self._update(collection, name, {"state": "ready", "error": None})
            return self.get(collection, name)

        return run

    def _adapt(
        self, collection: str, name: str, settings: AdaptSettings
    ) -> Callable[[Callable[[VersionProgress], None]], CollectionVersion]:
        from retrievals_rag.rag.adaptation import adapt_to_chunks

        def run(progress: Callable[[VersionProgress], None]) -> CollectionVersion:
            version = self.get(collection, name)
            assert version.model_dir is not None
            chunks = self.store.all_chunks(collection)
            result = adapt_to_chunks(
                {chunk.id: chunk.text for chunk in chunks},
                Path(version.model_dir),
                base_model=self.store.embedding_function.model_name_or_path,
                settings=settings,
                progress=lambda update: progress(replace(update, version=name)),
            )
            self._update(collection, name, {"state": "indexing", "result": asdict(result)})
            self._fill(collection, self.get(collection, name), progress)
            self._update(collection, name, {"state": "ready", "error": None})
            return self.get(collection, name)

        return run
