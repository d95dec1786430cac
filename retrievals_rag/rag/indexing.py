"""Bulk indexing: many files into one collection, resumable, with progress reports and per-file errors.

:func:`index_paths` expands folders into the files it can load, loads them one at a time, and writes their chunks
in batches that may span files (:meth:`VectorStore.write_chunks`: existing ids skipped, the rest upserted in one
call). Because chunk ids are content hashes, a run that is killed (or whose progress callback raises) and is run
again writes each missing chunk once and nothing twice: resuming needs no journal.

A file that cannot be loaded (unsupported type, no text, corrupt, unreadable) is recorded in the report with its
reason and the run goes on with the next file. Errors of the store itself (Chroma, the embedder) and of the
progress callback are raised: what was written before them stays, and a new run resumes after it.

Example:
    >>> from tqdm import tqdm  # doctest: +SKIP
    >>> bar = tqdm(unit="file")  # doctest: +SKIP
    >>> def show(progress):  # doctest: +SKIP
    ...     bar.total = progress.files_total
    ...     bar.n = progress.files_done
    ...     bar.refresh()
    >>> report = index_paths(store, ["docs/"], "notes", progress=show)  # doctest: +SKIP
    >>> report.errors  # doctest: +SKIP
    [FileError(path='docs/scan.pdf', reason='no extractable text in its 3 page(s): ...')]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from retrievals_rag.rag.chunking import Chunk
from retrievals_rag.rag.loaders import (
    DEFAULT_MAX_BYTES,
    SUPPORTED_EXTENSIONS,
    DocumentLoadError,
    LoadedDocument,
    display_name,
    load_bytes,
    load_document,
)
from retrievals_rag.rag.store import VectorStore

__all__ = [
    "FileError",
    "IndexProgress",
    "IndexReport",
    "ProgressCallback",
    "expand_paths",
    "index_documents",
    "index_paths",
    "index_uploads",
]


@dataclass(frozen=True)
class FileError:
    """A file that was not indexed, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class IndexProgress:
    """Where a bulk run stands, passed to the progress callback after every batch written and every file.

    Attributes:
        files_done: Files (or documents) whose chunks are all stored, or that failed.
        files_total: Files to do; None when the documents come from an iterator of unknown length.
        chunks_added: Chunks written so far.
        chunks_skipped: Chunks found already stored.
        current: The source being processed, None at the end.
    """

    files_done: int
    files_total: int | None
    chunks_added: int
    chunks_skipped: int
    current: str | None


ProgressCallback = Callable[[IndexProgress], None]


@dataclass
class IndexReport:
    """What a bulk run did.

    Attributes:
        indexed: Sources whose chunks are all stored (new or already there).
        chunks_added: Chunks written.
        chunks_skipped: Chunks that were already stored.
        errors: Files that failed, with the reason.
    """

    indexed: list[str] = field(default_factory=list)
    chunks_added: int = 0
    chunks_skipped: int = 0
    errors: list[FileError] = field(default_factory=list)


def expand_paths(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> list[Path]:
    """Files given, and in folders given, those with a supported extension (hidden files skipped), sorted.

    A file given by name is kept whatever its extension, so that an unsupported one is reported, not ignored.
    """
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files.extend(
                sorted(
                    candidate
                    for candidate in path.glob(pattern)
                    if candidate.is_file()
                    and candidate.suffix.lower() in SUPPORTED_EXTENSIONS
                    and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
                )
            )
        else:
            files.append(path)
    return files


class _BatchWriter:
    """Buffers chunks of consecutive documents and writes them in batches, reporting progress."""

    def __init__(
        self,
        store: VectorStore,
        collection: str,
        report: IndexReport,
        progress: ProgressCallback | None,
        files_total: int | None,
    ) -> None:
        self.store = store
        self.collection = collection
        self.report = report
        self.progress = progress
        self.files_total = files_total
        self.buffer: list[Chunk] = []
        self.files_done = 0
        self.waiting: list[str] = []  # sources whose last chunk is in the buffer

    def add(self, source: str, chunks: Sequence[Chunk]) -> None:
        self.buffer.extend(chunks)
        self.waiting.append(source)
        while len(self.buffer) >= self.store.batch_size:
            self._write(self.store.batch_size, source)
        if not self.buffer:
            self._finish_waiting()
        self._notify(source)

    def fail(self, error: FileError) -> None:
        self.report.errors.append(error)
        self.files_done += 1
        self._notify(error.path)

    def close(self) -> None:
        while self.buffer:
            self._write(self.store.batch_size, None)
        self._finish_waiting()
        self._notify(None)

    def _write(self, size: int, current: str | None) -> None:
        batch, self.buffer = self.buffer[:size], self.buffer[size:]
        added = self.store.write_chunks(self.collection, batch)
        self.report.chunks_added += added
        self.report.chunks_skipped += len({chunk.id for chunk in batch}) - added
        buffered_sources = {chunk.source for chunk in self.buffer}
        # A waiting source with no chunk left in the buffer is complete: its chunks were all buffered.
        done = [source for source in self.waiting if source not in buffered_sources]
        if done:
            self.waiting = [source for source in self.waiting if source in buffered_sources]
            self.report.indexed.extend(done)
            self.files_done += len(done)
        self._notify(current)

    def _finish_waiting(self) -> None:
        self.report.indexed.extend(self.waiting)
        self.files_done += len(self.waiting)
        self.waiting = []

    def _notify(self, current: str | None) -> None:
        if self.progress is not None:
            self.progress(
                IndexProgress(
                    files_done=self.files_done,
                    files_total=self.files_total,
                    chunks_added=self.report.chunks_added,
                    chunks_skipped=self.report.chunks_skipped,
                    current=current,
                )
            )


def index_documents(
    store: VectorStore,
    documents: Iterable[LoadedDocument],
    collection: str,
    *,
    progress: ProgressCallback | None = None,
    total: int | None = None,
) -> IndexReport:
    """Chunk, embed and store documents already loaded, in batches that may span documents.

    Args:
        store: The store.
        documents: The documents (an iterator is consumed lazily).
        collection: The collection, created if missing.
        progress: Called with an :class:`IndexProgress` after each batch and each document.
        total: How many documents there are, for the progress reports; None: ``len(documents)`` if it has one.

    Returns:
        The report (no errors: loading happened before).
    """
    store.create_collection(collection)
    report = IndexReport()
    files_total = (
        total if total is not None else (len(documents) if isinstance(documents, Sequence) else None)
    )
    writer = _BatchWriter(store, collection, report, progress, files_total)
    for document in documents:
        writer.add(document.source, store.split(document))
    writer.close()
    return report


def _index_loaders(
    store: VectorStore,
    loaders: Sequence[tuple[str, Callable[[], LoadedDocument]]],
    collection: str,
    progress: ProgressCallback | None,
) -> IndexReport:
    """Load each item (a load error is recorded, not raised) and write its chunks in shared batches."""
    store.create_collection(collection)
    report = IndexReport()
    writer = _BatchWriter(store, collection, report, progress, len(loaders))
    for name, load in loaders:
        try:
            document = load()
        except DocumentLoadError as error:
            writer.fail(FileError(path=name, reason=error.reason))
            continue
        writer.add(document.source, store.split(document))
    writer.close()
    return report


def index_paths(
    store: VectorStore,
    paths: Iterable[str | os.PathLike[str]],
    collection: str,
    *,
    progress: ProgressCallback | None = None,
    recursive: bool = True,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> IndexReport:
    """Index files and folders into ``collection``; resumable, with per-file errors collected.

    Each file's source is its absolute path (see :func:`~retrievals_rag.rag.loaders.load_document`).

    Args:
        store: The store.
        paths: Files and folders (folders contribute their supported files, see :func:`expand_paths`).
        collection: The collection, created if missing.
        progress: Called with an :class:`IndexProgress` after each batch and each file; an exception it raises
            stops the run (what was written stays; running again resumes).
        recursive: Walk folders recursively.
        max_bytes: Files larger than this are reported as errors; None: no limit.

    Returns:
        The report: sources indexed, chunks added and skipped, and the files that failed with the reason.
    """
    loaders = [
        (str(path), functools.partial(load_document, path, max_bytes=max_bytes))
        for path in expand_paths(paths, recursive=recursive)
    ]
    return _index_loaders(store, loaders, collection, progress)


def index_uploads(
    store: VectorStore,
    files: Sequence[tuple[str, bytes]],
    collection: str,
    *,
    progress: ProgressCallback | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> IndexReport:
    """Index uploaded files, given as ``(file name, bytes)``, without writing them to disk.

    Each document's source is the file name's last component (``../../etc/x.txt`` becomes ``x.txt``), so
    uploading the same file again adds nothing. Errors are collected per file, as in :func:`index_paths`.
    """
    loaders = [
        (display_name(name), functools.partial(load_bytes, data, name, max_bytes=max_bytes))
        for name, data in files
    ]
    return _index_loaders(store, loaders, collection, progress)
