"""Bulk indexing: many files into one collection, resumable, with progress reports and per-file errors.

:func:`index_paths` expands folders into the files it can load, loads them one at a time, and writes their chunks
in batches that may span files (:meth:`VectorStore.write_chunks`: existing ids skipped, the rest upserted in one
call). Because chunk ids are content hashes, a run that is killed (or whose progress callback raises) and is run
again writes each missing chunk once and nothing twice: resuming needs no journal.

Every chunk records its document's chunk count and text hash: a document with fewer chunks stored (being indexed,
or after a stopped run) is listed as partial (:attr:`~retrievals_rag.rag.store.DocumentInfo.complete`), and a
document whose text is already stored under another name is recorded as another name of it, not stored again.
A document indexed again with another text (an edited file) replaces its old chunks: they are removed once its
new ones are all written, so that a stopped run never leaves it without chunks, and the other names of the old
text keep it (:meth:`~retrievals_rag.rag.store.VectorStore.hand_over_text`). An unchanged file costs one look-up
of its ids, no embedding. Files are read and split before the first chunk is written, so the progress reports
know the total number of chunks and give a time estimate.

A file that cannot be loaded (unsupported type, no text, corrupt, unreadable) is recorded in the report with its
reason and the run goes on with the next file; so is one whose parser fails in a way not foreseen, with the
exception's type (and its traceback in the log). Errors of the store itself (Chroma, the embedder) and of the
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
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
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
    "DocumentResult",
    "FileError",
    "IndexProgress",
    "IndexReport",
    "ProgressCallback",
    "content_sha",
    "expand_paths",
    "index_documents",
    "index_loaded",
    "index_paths",
    "index_uploads",
    "left_out_message",
    "unsupported_in_folders",
]

logger = logging.getLogger(__name__)


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
        chunks_total: Chunks of the documents read so far (of all documents once they are all read; files are
            read before any chunk is written, except by :func:`index_documents`, which streams).
        elapsed: Seconds spent writing chunks so far (reading excluded), the base of :attr:`eta_seconds`.
    """

    files_done: int
    files_total: int | None
    chunks_added: int
    chunks_skipped: int
    current: str | None
    chunks_total: int = 0
    elapsed: float = 0.0

    @property
    def chunks_done(self) -> int:
        """Chunks stored so far, written or found already there."""
        return self.chunks_added + self.chunks_skipped

    @property
    def fraction(self) -> float:
        """Share of the known chunks done, from 0 to 1."""
        return min(1.0, self.chunks_done / self.chunks_total) if self.chunks_total else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate of chunk writing so far; None until a chunk has been written."""
        if not self.chunks_added or not self.chunks_total or self.elapsed <= 0:
            return None
        return max(0.0, self.chunks_total - self.chunks_done) * self.elapsed / self.chunks_added


ProgressCallback = Callable[[IndexProgress], None]


@dataclass(frozen=True)
class DocumentResult:
    """What a bulk run did with one document.

    Attributes:
        source: The document's name.
        chunks: Its chunks.
        added: Chunks written by this run (the others were already stored).
        duplicate_of: The stored document with the same text, when the text was not stored again.
    """

    source: str
    chunks: int
    added: int
    duplicate_of: str | None = None


@dataclass
class IndexReport:
    """What a bulk run did.

    Attributes:
        indexed: Sources whose chunks are all stored (new or already there), duplicates included.
        chunks_added: Chunks written.
        chunks_skipped: Chunks that were already stored.
        errors: Files that failed, with the reason.
        documents: Each document indexed, with its chunk counts, in order.
    """

    indexed: list[str] = field(default_factory=list)
    chunks_added: int = 0
    chunks_skipped: int = 0
    errors: list[FileError] = field(default_factory=list)
    documents: list[DocumentResult] = field(default_factory=list)


def expand_paths(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> list[Path]:
    """Files given, and in folders given, those with a supported extension (hidden files skipped), sorted.

    A file given by name is kept whatever its extension, so that an unsupported one is reported, not ignored;
    :func:`unsupported_in_folders` says what the folders held besides.
    """
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files.extend(file for file in _folder_files(path, recursive) if _supported(file))
        else:
            files.append(path)
    return files


def unsupported_in_folders(
    paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True
) -> dict[str, int]:
    """How many files of each unsupported extension (``""``: none) the folders among ``paths`` hold: the files
    :func:`expand_paths` leaves out, for a message that says so."""
    counts: dict[str, int] = {}
    for path in map(Path, paths):
        if path.is_dir():
            for file in _folder_files(path, recursive):
                if not _supported(file):
                    counts[file.suffix.lower()] = counts.get(file.suffix.lower(), 0) + 1
    return dict(sorted(counts.items()))


def left_out_message(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> str | None:
    """One line saying which files of the folders among ``paths`` :func:`expand_paths` left out, or None."""
    left_out = unsupported_in_folders(paths, recursive=recursive)
    if not left_out:
        return None
    kinds = ", ".join(f"{count} {extension or '(no extension)'}" for extension, count in left_out.items())
    return (
        f"left out of the folders: {sum(left_out.values())} file(s) of types that cannot be read ({kinds}); "
        f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
    )


def _folder_files(folder: Path, recursive: bool) -> list[Path]:
    """The files of ``folder`` (and below it when ``recursive``) that are not hidden, sorted."""
    return sorted(
        candidate
        for candidate in folder.glob("**/*" if recursive else "*")
        if candidate.is_file()
        and not any(part.startswith(".") for part in candidate.relative_to(folder).parts)
    )


def _supported(file: Path) -> bool:
    return file.suffix.lower() in SUPPORTED_EXTENSIONS


def content_sha(document: LoadedDocument) -> str:
    """The SHA-256 of a document's text: equal for identical content under any name."""
    return hashlib.sha256(document.text.encode("utf-8")).hexdigest()


class _BatchWriter:
    """Writes the chunks of consecutive documents in batches that may span documents, reporting progress.

    A document's chunks carry its chunk count and text hash (see :mod:`retrievals_rag.rag.store`); a document
    whose text is already stored under another name becomes an alias of it instead.
    """

    def __init__(
        self,
        store: VectorStore,
        collection: str,
        progress: ProgressCallback | None,
        files_total: int | None,
    ) -> None:
        self.store = store
        self.collection = collection
        self.report = IndexReport()
        self.progress = progress
        self.files_total = files_total
        self.batch_size = store.batch_size
        self.queue: list[Chunk] = []
        self.files_done = 0
        self.chunks_total = 0
        self.writing_seconds = 0.0
        self.shas: dict[str, str] = {}  # text hash -> source, within this run
        self.texts: dict[str, str] = {}  # source -> text hash, within this run
        self.stored: set[str] = set()  # sources whose chunks are all written, within this run
        self.waiting: dict[str, list[str]] = {}  # source -> other names of its text, to record once stored
        self.pending: dict[str, list[int]] = {}  # source -> [chunks, chunks left to write, chunks added]
        self.chunk_ids: dict[str, set[str]] = {}  # source -> its chunks' ids, until they are all written

    def prepare(self, document: LoadedDocument) -> list[Chunk]:
        """The document's chunks, stamped; [] when its text is stored under another name (recorded).

        A document stored before with another text keeps its old chunks until its new ones are written (then
        :meth:`_write` removes them); other names of its old text get a copy of it first.
        """
        sha = content_sha(document)
        if document.source in self.texts:  # one name twice in this run (a file listed twice, two uploads)
            if self.texts[document.source] != sha:
                reason = "another file of this run has the same name, with another text: it was not indexed; "
                self.fail(FileError(path=document.source, reason=reason + "rename one of them"))
            else:  # the same file again: indexed once
                self.files_done += 1
                self._notify(document.source)
            return []
        original = self.shas.get(sha)
        if original is None:
            stored = self.store.source_with_content(self.collection, sha)
            if stored is not None and self.texts.get(stored, sha) == sha:  # not a text this run replaces
                original = stored
        if original is not None and original != document.source:
            if original in self.texts and original not in self.stored:
                self.waiting.setdefault(original, []).append(document.source)
            else:
                self.store.add_alias(self.collection, original, document.source)
            self.report.indexed.append(document.source)
            self.report.documents.append(DocumentResult(document.source, 0, 0, duplicate_of=original))
            self.files_done += 1
            self._notify(document.source)
            return []
        self.shas[sha] = document.source
        self.texts[document.source] = sha
        self.store.hand_over_text(self.collection, document.source, sha)
        chunks = self.store.split(document)
        stamp = {"document_chunks": len(chunks), "content_sha": sha}
        stamped = [replace(chunk, document_metadata={**chunk.document_metadata, **stamp}) for chunk in chunks]
        self.chunks_total += len(stamped)
        self._notify(document.source)
        return stamped

    def add(self, source: str, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            return
        self.queue.extend(chunks)
        self.pending[source] = [len(chunks), len(chunks), 0]
        self.chunk_ids[source] = {chunk.id for chunk in chunks}
        while len(self.queue) >= self.batch_size:
            self._write(source)

    def fail(self, error: FileError) -> None:
        self.report.errors.append(error)
        self.files_done += 1
        self._notify(error.path)

    def close(self) -> IndexReport:
        while self.queue:
            self._write(None)
        self._notify(None)
        return self.report

    def _write(self, current: str | None) -> None:
        batch, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        began = time.monotonic()
        written = set(self.store.write_new_chunks(self.collection, batch))
        self.writing_seconds += time.monotonic() - began
        self.report.chunks_added += len(written)
        self.report.chunks_skipped += len({chunk.id for chunk in batch} - written)
        for chunk in batch:
            counts = self.pending[chunk.source]
            counts[1] -= 1
            counts[2] += chunk.id in written
            if counts[1] == 0:  # the document's last chunk is stored: its earlier text can go
                del self.pending[chunk.source]
                self.store.drop_stale_chunks(self.collection, chunk.source, self.chunk_ids.pop(chunk.source))
                self.stored.add(chunk.source)
                for name in self.waiting.pop(chunk.source, []):
                    self.store.add_alias(self.collection, chunk.source, name)
                self.report.indexed.append(chunk.source)
                self.report.documents.append(DocumentResult(chunk.source, counts[0], counts[2]))
                self.files_done += 1
        self._notify(current)

    def _notify(self, current: str | None) -> None:
        if self.progress is not None:
            self.progress(
                IndexProgress(
                    files_done=self.files_done,
                    files_total=self.files_total,
                    chunks_added=self.report.chunks_added,
                    chunks_skipped=self.report.chunks_skipped,
                    current=current,
                    chunks_total=self.chunks_total,
                    elapsed=self.writing_seconds,
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
        documents: The documents (an iterator is consumed lazily: ``chunks_total`` grows as they are read).
        collection: The collection, created if missing.
        progress: Called with an :class:`IndexProgress` after each batch and each document.
        total: How many documents there are, for the progress reports; None: ``len(documents)`` if it has one.

    Returns:
        The report (no errors: loading happened before).
    """
    store.create_collection(collection)
    files_total = (
        total if total is not None else (len(documents) if isinstance(documents, Sequence) else None)
    )
    writer = _BatchWriter(store, collection, progress, files_total)
    for document in documents:
        writer.add(document.source, writer.prepare(document))
    return writer.close()


def index_loaded(
    store: VectorStore,
    loaders: Sequence[tuple[str, Callable[[], LoadedDocument]]],
    collection: str,
    progress: ProgressCallback | None,
) -> IndexReport:
    """Load and split every item first (a load error is recorded, not raised), then write the chunks.

    Reading first gives the progress reports the total number of chunks, hence a time estimate. An exception
    other than ``DocumentLoadError`` while loading (a bug of a parser, or of ours) is recorded too, with its type,
    and logged with its traceback, so that one file cannot stop the run and the bug is not hidden.

    Args:
        store: The store.
        loaders: ``(name, load)`` pairs; ``load()`` returns the document or raises ``DocumentLoadError``.
        collection: The collection, created if missing.
        progress: Called with an :class:`IndexProgress` after each file read and each batch written.
    """
    store.create_collection(collection)
    writer = _BatchWriter(store, collection, progress, len(loaders))
    prepared: list[tuple[str, list[Chunk]]] = []
    for name, load in loaders:
        try:
            document = load()
        except DocumentLoadError as error:
            writer.fail(FileError(path=name, reason=error.reason))
            continue
        except Exception as error:  # a parser's bug, or ours: this file is reported, the others are indexed
            logger.exception("unexpected error while reading %s", name)
            reason = f"unexpected error while reading it ({type(error).__name__}: {error})"
            writer.fail(FileError(path=name, reason=reason))
            continue
        prepared.append((document.source, writer.prepare(document)))
    for source, chunks in prepared:
        writer.add(source, chunks)
    return writer.close()


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
    return index_loaded(store, loaders, collection, progress)


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
    return index_loaded(store, loaders, collection, progress)
