"""The document store: collections of embedded chunks in Chroma, embedded on disk or on a Chroma server.

:class:`VectorStore` opens an embedded ``PersistentClient`` in ``DATA_DIR/chroma`` by default, or talks to a
Chroma server (``chroma run --path DIR --host 127.0.0.1 --port 8000``) when given its URL. Telemetry is off.
Collections are cosine-space collections created by
:func:`retrievals_rag.integrations.chroma.get_or_create_collection` with a
:class:`~retrievals_rag.integrations.chroma.ChromaEmbeddingFunction`, so a collection remembers which embedder
made its vectors and refuses another one; the store nevertheless always computes the embeddings itself and
passes them to Chroma, so Chroma never reaches for its default ONNX model.

Writes are idempotent: chunk ids are content hashes (:mod:`retrievals_rag.rag.chunking`), each batch first asks
Chroma which of its ids already exist and upserts only the others in one call. Indexing a file twice adds
nothing; a bulk run that is killed resumes where it stopped (see :mod:`retrievals_rag.rag.indexing`). Every
write also stamps a new ``revision`` in the collection's metadata, so caches built over a collection (the BM25
index of :class:`~retrievals_rag.rag.retrieve.Retriever`) see changes made by any process.

Bulk indexing stamps each chunk with its document's chunk count (``document_chunks``) and the hash of its text
(``content_sha``): :meth:`VectorStore.list_documents` marks a document with fewer chunks stored as partial, and a
document whose text is already stored under another name is recorded as an alias of it (in the collection's
metadata) instead of being stored twice. A document indexed again with another text replaces its chunks
(:meth:`VectorStore.drop_stale_chunks`, once the new ones are written); a name then names one text only.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrievals_rag.rag.chunking import Chunk, Chunker
from retrievals_rag.rag.connection import StoreConnectionError, connect, validate_collection_name
from retrievals_rag.rag.loaders import LoadedDocument, display_name

if TYPE_CHECKING:
    import numpy as np
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction
    from retrievals_rag.models.embedding import AutoModelForEmbedding

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "VERSION_OF",
    "CollectionNotFoundError",
    "DocumentInfo",
    "EmbedderMismatchError",
    "StoreConnectionError",
    "StoredChunk",
    "VectorStore",
    "validate_collection_name",
]

DEFAULT_BATCH_SIZE = 64
"""Chunks embedded and written per Chroma call."""

VERSION_OF = "version_of"
"""Metadata key of a collection that holds a version of another one's chunks, embedded by another model (see
:mod:`retrievals_rag.rag.versions`); its value names that collection. Such collections are not listed."""

_PAGE_SIZE = 5_000  # rows per Chroma ``get`` when reading a whole collection


class CollectionNotFoundError(LookupError):
    """A collection that does not exist; the message lists those that do."""


class EmbedderMismatchError(ValueError):
    """A collection made with another embedder: the message names both and says what to do."""


@dataclass(frozen=True)
class DocumentInfo:
    """A document in a collection, as :meth:`VectorStore.list_documents` describes it.

    Attributes:
        source: Its source (file name or path): what :meth:`VectorStore.delete_document` takes.
        document_id: The stable id of the source.
        chunk_count: Chunks stored.
        pages: Page numbers that have chunks, ascending (empty for formats without pages).
        file_type: ``pdf``, ``text``, ``markdown``, ``html``, ``docx``, ``csv``, ``jsonl``; ``""`` if unknown.
        expected_chunks: The document's chunk count when it was indexed; None for chunks stored before it was
            recorded (such documents count as complete).
        aliases: Other names under which the same text was indexed (stored once, under ``source``).
    """

    source: str
    document_id: str
    chunk_count: int
    pages: list[int]
    file_type: str
    expected_chunks: int | None = None
    aliases: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether every chunk of the document is stored (False while it is indexed, or after a stopped run)."""
        return self.expected_chunks is None or self.chunk_count >= self.expected_chunks


@dataclass(frozen=True)
class StoredChunk:
    """A chunk read back from Chroma.

    Attributes:
        id: The chunk id.
        text: Its text.
        metadata: Its metadata (``source``, ``page``, ``chunk_index``, ``start_index``, ``document_id``...).
        distance: Cosine distance to the query (``1 - cosine similarity``); None when not from a query.
    """

    id: str
    text: str
    metadata: dict[str, Any]
    distance: float | None = None


class VectorStore:
    """Collections of embedded chunks in Chroma.

    Args:
        data_dir: Folder of the embedded database (in ``data_dir/chroma``); required without ``chroma_url``.
        chroma_url: URL of a Chroma server, e.g. ``http://127.0.0.1:8000``; when given, ``data_dir`` is unused.
        embedding_function: Embeds chunks and queries and is recorded in each collection's configuration;
            None: a :class:`~retrievals_rag.integrations.chroma.ChromaEmbeddingFunction` of the packaged
            all-MiniLM-L6-v2, loaded on first use.
        chunk_size: Tokens per chunk; None: from the embedder's ``max_length`` (200 for MiniLM).
        chunk_overlap: Tokens of overlap; None: a fifth of ``chunk_size``.
        batch_size: Chunks embedded and written per Chroma call.

    Raises:
        ValueError: Without ``data_dir`` and ``chroma_url``, or on a malformed URL.
        StoreConnectionError: When the server at ``chroma_url`` does not answer.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        chroma_url: str | None = None,
        embedding_function: ChromaEmbeddingFunction | None = None,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.chroma_url = chroma_url
        self.data_dir = None if data_dir is None else Path(data_dir)
        self._client = connect(self.data_dir, chroma_url)
        self._function = embedding_function if embedding_function is not None else ChromaEmbeddingFunction()
        self._chunk_size = chunk_size
        self._chunk_overlap = chunk_overlap
        self.batch_size = batch_size
        self._chunker: Chunker | None = None
        self._collections: dict[str, Collection] = {}
        self._lock = threading.RLock()

    # -------------------------------------------------------------------------------- components
    @property
    def client(self) -> ClientAPI:
        """The chromadb client."""
        return self._client

    @property
    def embedding_function(self) -> ChromaEmbeddingFunction:
        """The function that embeds chunks and queries."""
        return self._function

    @property
    def embedder(self) -> AutoModelForEmbedding:
        """The embedding model (loaded on first access, once)."""
        return self._function.model

    @property
    def chunker(self) -> Chunker:
        """The chunker, built on first use from the embedder's tokenizer and ``max_length``."""
        with self._lock:
            if self._chunker is None:
                self._chunker = Chunker.for_embedder(
                    self.embedder, chunk_size=self._chunk_size, chunk_overlap=self._chunk_overlap
                )
            return self._chunker

    def with_embedding_function(self, function: ChromaEmbeddingFunction) -> VectorStore:
        """A store over the same database (the same client) that embeds with ``function``: for the collections
        made with it, such as the versions of a collection re-indexed with another model."""
        view = copy.copy(self)
        view._function, view._chunker, view._collections = function, None, {}
        view._lock = threading.RLock()
        return view

    def embed_documents(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Embed chunk texts with the embedder's document instruction."""
        return list(self._function(list(texts)))

    def embed_query(self, text: str) -> np.ndarray:
        """Embed a query with the embedder's query instruction."""
        return self._function.embed_query([text])[0]

    # -------------------------------------------------------------------------------- collections
    def list_collections(self) -> list[str]:
        """Names of the collections, sorted (versions of a collection, see :data:`VERSION_OF`, left out)."""
        return sorted(
            collection.name
            for collection in self._client.list_collections()
            if not (collection.metadata or {}).get(VERSION_OF)
        )

    def create_collection(
        self, name: str, *, exist_ok: bool = True, metadata: dict[str, str] | None = None
    ) -> None:
        """Create the collection ``name`` in cosine space, recording this store's embedder.

        Args:
            name: A valid Chroma name (:func:`validate_collection_name`).
            exist_ok: Accept an existing collection (made with the same embedder); False: raise.
            metadata: The new collection's metadata (an existing collection keeps its own).

        Raises:
            ValueError: On an invalid name, an existing collection when ``exist_ok`` is False, or an existing
                collection made with another embedder.
        """
        validate_collection_name(name)
        with self._lock:
            if not exist_ok and name in self.list_collections():
                raise ValueError(f"collection {name!r} already exists")
            self._collections[name] = self._open(name, metadata)

    def delete_collection(self, name: str) -> None:
        """Delete the collection ``name`` and everything in it.

        Raises:
            CollectionNotFoundError: When there is none by that name.
        """
        self._collection(name)  # raises a clear error when missing
        with self._lock:
            self._collections.pop(name, None)
            self._client.delete_collection(name)

    def rename_collection(self, name: str, new_name: str) -> None:
        """Rename the collection ``name`` to ``new_name`` (its chunks and embedder stay).

        Raises:
            CollectionNotFoundError: When there is no collection ``name``.
            ValueError: On an invalid new name, or one that is taken.
        """
        validate_collection_name(new_name)
        handle = self._collection(name)
        with self._lock:
            if new_name in self.list_collections():
                raise ValueError(f"a collection named {new_name!r} already exists")
            handle.modify(name=new_name)
            self._collections.pop(name, None)

    def count(self, collection: str) -> int:
        """Chunks stored in ``collection``."""
        return int(self._collection(collection).count())

    def revision(self, collection: str) -> tuple[str, int]:
        """A value that changes whenever ``collection`` changes, whichever process wrote to it."""
        from chromadb.errors import NotFoundError

        try:
            fresh = self._client.get_collection(collection)
        except (NotFoundError, ValueError):
            raise CollectionNotFoundError(f"no collection named {collection!r}") from None
        return str((fresh.metadata or {}).get("revision", "")), int(fresh.count())

    def _collection(self, name: str) -> Collection:
        """The handle of the collection now named ``name``: the one kept, unless another store or process has
        deleted, recreated or renamed that collection meanwhile (its id has changed)."""
        from chromadb.errors import NotFoundError

        with self._lock:
            try:
                current = self._client.get_collection(name)
            except (NotFoundError, ValueError):
                self._collections.pop(name, None)
                existing = self.list_collections()
                raise CollectionNotFoundError(
                    f"no collection named {name!r}; existing collections: {existing or 'none'}"
                ) from None
            handle = self._collections.get(name)
            if handle is None or handle.id != current.id:
                handle = self._collections[name] = self._open(name)
            return handle

    def _open(self, name: str, metadata: dict[str, str] | None = None) -> Collection:
        """Get or create ``name`` with this store's embedder; another embedder is told in plain words."""
        from retrievals_rag.integrations.chroma import get_or_create_collection

        try:
            return get_or_create_collection(
                self._client, name, embedding_function=self._function, metadata=metadata
            )
        except ValueError as error:
            if "embedding function" not in str(error).lower():
                raise
            stored = _describe_embedder(self._stored_embedder(name))
            current = _describe_embedder(self._function.get_config().get("model_name_or_path"))
            raise EmbedderMismatchError(
                f"the collection {name!r} was made with the embedder {stored}, and its vectors only match that "
                f"model; the embedder now chosen is {current}. Choose {stored} as the embedder again, or create "
                f"a new collection for this embedder (or delete {name!r} and index its documents again)."
            ) from error

    def _stored_embedder(self, name: str) -> str | None:
        """The model path recorded in the collection's configuration ("another function" if unreadable)."""
        try:
            function = self._client.get_collection(name).configuration.get("embedding_function")
            return function.get_config().get("model_name_or_path") if function is not None else "none"
        except Exception:  # an unreadable configuration: the message still gives the fix
            return "another embedding function"

    def metadata(self, collection: str) -> dict[str, Any]:
        """The collection's metadata, read fresh from Chroma (another process may have changed it)."""
        return dict(self._client.get_collection(self._collection(collection).name).metadata or {})

    def update_metadata(self, collection: str, changes: dict[str, str]) -> None:
        """Set keys of the collection's metadata (the others are kept) and stamp a new revision."""
        with self._lock:
            self._touch(self._collection(collection), changes)

    def _touch(self, collection: Collection, changes: dict[str, str] | None = None) -> None:
        """Stamp a new revision (and set ``changes``) on the collection's metadata, read fresh from Chroma."""
        fresh = self._client.get_collection(collection.name).metadata or {}
        collection.modify(metadata={**fresh, **(changes or {}), "revision": uuid.uuid4().hex})

    # -------------------------------------------------------------------------------- aliases
    def aliases(self, collection: str) -> dict[str, list[str]]:
        """Each stored source that other names share, with those names."""
        fresh = self._client.get_collection(self._collection(collection).name).metadata or {}
        try:
            aliases = json.loads(str(fresh.get("aliases") or "{}"))
        except json.JSONDecodeError:
            return {}
        return {str(key): [str(name) for name in value] for key, value in aliases.items()}

    def source_with_content(self, collection: str, content_sha: str) -> str | None:
        """The stored source whose text has the hash ``content_sha``, or None."""
        found = self._collection(collection).get(
            where={"content_sha": content_sha}, limit=1, include=["metadatas"]
        )
        return str(found["metadatas"][0].get("source")) if found["ids"] else None

    def add_alias(self, collection: str, source: str, alias: str) -> None:
        """Record ``alias`` as another name of the stored document ``source`` (its text is not stored again).

        ``alias`` then names that text alone: it stops being another name of any other document, and chunks
        stored under it (the text it had before it was edited) are removed once it is recorded; other names
        of that earlier text get a copy of it first (see :meth:`hand_over_text`).
        """
        if alias == source:
            return
        handle = self._collection(collection)
        with self._lock:
            aliases = self.aliases(collection)
            names = aliases.setdefault(source, [])
            owners = [owner for owner, others in aliases.items() if owner != source and alias in others]
            for owner in owners:
                aliases[owner].remove(alias)
            if alias not in names or owners:
                if alias not in names:
                    names.append(alias)
                self._touch(handle, {"aliases": _aliases_json(aliases)})
            found = handle.get(where={"source": alias}, include=["embeddings", "documents", "metadatas"])
            if found["ids"]:
                if aliases.get(alias):
                    self._copy_to_first_alias(handle, alias, aliases, found)
                for start in range(0, len(found["ids"]), _PAGE_SIZE):
                    handle.delete(ids=found["ids"][start : start + _PAGE_SIZE])
                self._touch(handle)

    def hand_over_text(self, collection: str, source: str, content_sha: str) -> None:
        """Before ``source`` is indexed with the text of hash ``content_sha``: when other names share the text
        stored under it and that text is another one, the first of them gets a copy of it (the same vectors,
        under that name's own chunk ids) and the others become its other names. Replacing the chunks of
        ``source`` then takes no one's text away; ``source`` keeps its chunks until its new ones are written.
        """
        handle = self._collection(collection)
        with self._lock:
            aliases = self.aliases(collection)
            if not aliases.get(source):
                return
            found = handle.get(where={"source": source}, include=["embeddings", "documents", "metadatas"])
            if found["ids"] and all(
                metadata.get("content_sha") != content_sha for metadata in found["metadatas"]
            ):  # chunks of the new text stored already would mean that the names are of the new text
                self._copy_to_first_alias(handle, source, aliases, found)

    def _copy_to_first_alias(
        self, handle: Collection, source: str, aliases: dict[str, list[str]], found: Any
    ) -> None:
        """Store the chunks ``found`` of ``source`` (with their embeddings) again under its first other name,
        with that name's chunk ids, and make its other names that one's; ``source``'s chunks stay."""
        from retrievals_rag.rag.chunking import chunk_id

        heir, *rest = aliases.pop(source)
        ids = [
            chunk_id(heir, metadata.get("page"), int(metadata.get("start_index", 0)), text or "")
            for metadata, text in zip(found["metadatas"], found["documents"], strict=True)
        ]
        metadatas = [_renamed(metadata, heir) for metadata in found["metadatas"]]
        for start in range(0, len(ids), _PAGE_SIZE):
            page = slice(start, start + _PAGE_SIZE)
            handle.upsert(
                ids=ids[page],
                embeddings=found["embeddings"][page],
                documents=found["documents"][page],
                metadatas=metadatas[page],
            )
        if rest:
            aliases[heir] = rest
        self._touch(handle, {"aliases": _aliases_json(aliases)})

    def drop_stale_chunks(self, collection: str, source: str, chunk_ids: Iterable[str]) -> int:
        """Once the chunks ``chunk_ids`` of ``source`` are all written: remove its other chunks (those of the
        text it had before it was edited), and stop recording ``source`` as another name of a document, for it
        has a text of its own. Returns how many chunks were removed."""
        handle = self._collection(collection)
        keep = set(chunk_ids)
        with self._lock:
            stale = [
                stored
                for stored in handle.get(where={"source": source}, include=[])["ids"]
                if stored not in keep
            ]
            for start in range(0, len(stale), _PAGE_SIZE):
                handle.delete(ids=stale[start : start + _PAGE_SIZE])
            aliases = self.aliases(collection)
            owners = [owner for owner, names in aliases.items() if source in names]
            for owner in owners:
                aliases[owner].remove(source)
            if stale or owners:
                self._touch(handle, {"aliases": _aliases_json(aliases)} if owners else None)
            return len(stale)

    def resolve_source(self, collection: str, name: str) -> str:
        """The stored source that ``name`` designates (``name`` itself, or the document it is an alias of)."""
        for source, names in self.aliases(collection).items():
            if name in names:
                return source
        return name

    # -------------------------------------------------------------------------------- documents
    def split(self, document: LoadedDocument) -> list[Chunk]:
        """The chunks of ``document``, as they would be stored."""
        return self.chunker.split(document)

    def add_document(self, collection: str, document: LoadedDocument) -> int:
        """Chunk, embed and store a document; chunks already stored are skipped.

        Args:
            collection: An existing collection.
            document: The loaded document.

        Returns:
            The number of chunks added (0 when the document was already indexed).
        """
        chunks = self.split(document)
        return sum(
            self.write_chunks(collection, chunks[start : start + self.batch_size])
            for start in range(0, len(chunks), self.batch_size)
        )

    def write_chunks(self, collection: str, chunks: Sequence[Chunk]) -> int:
        """Store one batch of chunks in one Chroma call, skipping ids already there; returns how many were new.

        The existing ids are asked first, only the new chunks are embedded, and they are upserted together, so
        a batch is written whole or not at all and a repeated batch writes nothing. A chunk already stored keeps
        its vector, and takes the metadata given where it differs (the same passage of a document whose text
        changed elsewhere: its chunk count, text hash and position are the new text's).
        """
        return len(self.write_new_chunks(collection, chunks))

    def write_new_chunks(self, collection: str, chunks: Sequence[Chunk]) -> list[str]:
        """:meth:`write_chunks`, returning the ids written (those not already stored)."""
        unique: dict[str, Chunk] = {}
        for chunk in chunks:
            unique.setdefault(chunk.id, chunk)
        if not unique:
            return []
        handle = self._collection(collection)
        stored = handle.get(ids=list(unique), include=["metadatas"])
        relabelled: dict[str, dict[str, Any]] = {}
        for chunk_id, metadata in zip(stored["ids"], stored["metadatas"], strict=True):
            wanted, metadata = unique[chunk_id].metadata(), metadata or {}
            # the same source only: a chunk passed to another name of its text (delete_document) stays there
            if metadata.get("source") == wanted["source"] and any(
                metadata.get(key) != value for key, value in wanted.items()
            ):
                relabelled[chunk_id] = wanted
        if relabelled:
            handle.update(ids=list(relabelled), metadatas=list(relabelled.values()))
        existing = set(stored["ids"])
        new = [chunk for chunk_id, chunk in unique.items() if chunk_id not in existing]
        if not new:
            if relabelled:
                self._touch(handle)
            return []
        embeddings = self.embed_documents([chunk.text for chunk in new])
        handle.upsert(
            ids=[chunk.id for chunk in new],
            embeddings=embeddings,
            documents=[chunk.text for chunk in new],
            metadatas=[chunk.metadata() for chunk in new],
        )
        self._touch(handle)
        return [chunk.id for chunk in new]

    def write_stored_chunks(self, collection: str, chunks: Sequence[StoredChunk]) -> int:
        """Embed chunks read from another collection (:meth:`all_chunks`) and store them under the same ids,
        text and metadata in one Chroma call; returns how many were written."""
        if not chunks:
            return 0
        handle = self._collection(collection)
        handle.upsert(
            ids=[chunk.id for chunk in chunks],
            embeddings=self.embed_documents([chunk.text for chunk in chunks]),
            documents=[chunk.text for chunk in chunks],
            metadatas=[chunk.metadata for chunk in chunks],
        )
        self._touch(handle)
        return len(chunks)

    def chunk_ids(self, collection: str) -> set[str]:
        """The ids of every chunk of ``collection``."""
        return {chunk_id for chunk_id, _, _ in self._iterate(collection, include_documents=False)}

    def chunk_metadata(self, collection: str) -> dict[str, dict[str, Any]]:
        """Each chunk's metadata, by id (no text read)."""
        return {
            chunk_id: metadata for chunk_id, _, metadata in self._iterate(collection, include_documents=False)
        }

    def update_chunk_metadata(self, collection: str, metadatas: Mapping[str, dict[str, Any]]) -> None:
        """Replace the metadata of these chunks (ids not stored are ignored); vectors and texts are kept."""
        if not metadatas:
            return
        handle = self._collection(collection)
        wanted, updated = list(metadatas), 0
        for start in range(0, len(wanted), _PAGE_SIZE):
            page = handle.get(ids=wanted[start : start + _PAGE_SIZE], include=[])["ids"]
            if page:
                handle.update(ids=page, metadatas=[metadatas[chunk_id] for chunk_id in page])
                updated += len(page)
        if updated:
            self._touch(handle)

    def delete_chunks(self, collection: str, ids: Sequence[str]) -> None:
        """Remove the chunks with these ids (ids not stored are ignored)."""
        handle = self._collection(collection)
        for start in range(0, len(ids), _PAGE_SIZE):
            handle.delete(ids=list(ids[start : start + _PAGE_SIZE]))
        if ids:
            self._touch(handle)

    def list_documents(self, collection: str) -> list[DocumentInfo]:
        """The documents in ``collection``, sorted by source, with their chunk counts and pages.

        While a re-index of an edited document is under way (or after it stopped), its name holds the chunks of
        its earlier text, kept until the new text is stored completely, beside those of the new one: the
        document is then described by its incomplete text (partial), not by the two counted together.
        """
        grouped: dict[str, dict[object, dict[str, Any]]] = {}
        for _, _, metadata in self._iterate(collection, include_documents=False):
            source = str(metadata.get("source", ""))
            entry = grouped.setdefault(source, {}).setdefault(
                metadata.get("content_sha"),
                {
                    "document_id": str(metadata.get("document_id", "")),
                    "count": 0,
                    "pages": set(),
                    "file_type": str(metadata.get("file_type", "")),
                    "expected": None,
                },
            )
            entry["count"] += 1
            if isinstance(metadata.get("page"), int):
                entry["pages"].add(metadata["page"])
            expected = metadata.get("document_chunks")
            if isinstance(expected, int) and (entry["expected"] is None or expected > entry["expected"]):
                entry["expected"] = expected
        aliases = self.aliases(collection) if grouped else {}
        described = {source: _current_text(texts) for source, texts in grouped.items()}
        return [
            DocumentInfo(
                source=source,
                document_id=entry["document_id"],
                chunk_count=entry["count"],
                pages=sorted(entry["pages"]),
                file_type=entry["file_type"],
                expected_chunks=entry["expected"],
                aliases=tuple(aliases.get(source, ())),
            )
            for source, entry in sorted(described.items())
        ]

    def delete_document(self, collection: str, source: str) -> int:
        """Remove the document ``source``; returns how many chunks were removed (0 if none).

        An alias (another name of stored text) is removed alone. A document that has aliases keeps its chunks,
        which pass to its first alias: relabelled under the same chunk ids, so that the collection's versions (which
        follow the original by chunk id) keep their vectors too.
        """
        handle = self._collection(collection)
        with self._lock:
            aliases = self.aliases(collection)
            for names in aliases.values():
                if source in names:
                    names.remove(source)
                    self._touch(handle, {"aliases": _aliases_json(aliases)})
                    return 0
            found = handle.get(where={"source": source}, include=["metadatas"])
            ids = found["ids"]
            heirs = aliases.pop(source, [])
            if heirs and ids:  # the text stays, under its next name (same chunk ids: versions keep theirs)
                heir, rest = heirs[0], heirs[1:]
                metadatas = [_renamed(metadata, heir) for metadata in found["metadatas"]]
                for start in range(0, len(ids), _PAGE_SIZE):
                    handle.update(
                        ids=ids[start : start + _PAGE_SIZE], metadatas=metadatas[start : start + _PAGE_SIZE]
                    )
                if rest:
                    aliases[heir] = rest
                self._touch(handle, {"aliases": _aliases_json(aliases)})
                return 0
            if heirs:  # names of a text no longer stored: forgotten with it
                self._touch(handle, {"aliases": _aliases_json(aliases)})
            for start in range(0, len(ids), _PAGE_SIZE):
                handle.delete(ids=ids[start : start + _PAGE_SIZE])
            if ids:
                self._touch(handle)
            return len(ids)

    # -------------------------------------------------------------------------------- reading
    def query(
        self, collection: str, query_embedding: Sequence[float] | np.ndarray, n_results: int
    ) -> list[StoredChunk]:
        """The ``n_results`` chunks nearest to ``query_embedding`` (cosine), nearest first."""
        handle = self._collection(collection)
        size = handle.count()
        if size == 0 or n_results < 1:
            return []
        result = handle.query(
            query_embeddings=[list(map(float, query_embedding))],
            n_results=min(n_results, size),
            include=["documents", "metadatas", "distances"],
        )
        return [
            StoredChunk(id=chunk_id, text=text or "", metadata=dict(metadata or {}), distance=float(distance))
            for chunk_id, text, metadata, distance in zip(
                result["ids"][0],
                result["documents"][0],
                result["metadatas"][0],
                result["distances"][0],
                strict=True,
            )
        ]

    def all_chunks(self, collection: str) -> list[StoredChunk]:
        """Every chunk of ``collection`` (text and metadata), in storage order."""
        return [
            StoredChunk(id=chunk_id, text=text, metadata=metadata)
            for chunk_id, text, metadata in self._iterate(collection, include_documents=True)
        ]

    def _iterate(self, collection: str, *, include_documents: bool) -> Any:
        handle = self._collection(collection)
        include: list[Any] = ["metadatas", "documents"] if include_documents else ["metadatas"]
        offset = 0
        while True:
            page = handle.get(include=include, limit=_PAGE_SIZE, offset=offset)
            ids = page["ids"]
            texts = page["documents"] if include_documents else [""] * len(ids)
            for chunk_id, text, metadata in zip(ids, texts, page["metadatas"], strict=True):
                yield chunk_id, text or "", dict(metadata or {})
            if len(ids) < _PAGE_SIZE:
                return
            offset += len(ids)

    def __repr__(self) -> str:
        where = f"chroma_url={self.chroma_url!r}" if self.chroma_url else f"data_dir={str(self.data_dir)!r}"
        return f"VectorStore({where}, embedding_function={self._function!r})"


def _renamed(metadata: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A chunk's metadata under another name of its text: that name's source, document id and file name."""
    from retrievals_rag.rag.chunking import document_id

    renamed = {**metadata, "source": name, "document_id": document_id(name)}
    if "file_name" in metadata:
        renamed["file_name"] = display_name(name)
    return renamed


def _current_text(texts: Mapping[object, dict[str, Any]]) -> dict[str, Any]:
    """Of the texts stored under one name (by text hash): the one being indexed, if one is incomplete (an
    edited document's new text, its old one kept until then), else the one with the most chunks."""
    entries = list(texts.values())
    partial = [
        entry for entry in entries if entry["expected"] is not None and entry["count"] < entry["expected"]
    ]
    return partial[0] if partial else max(entries, key=lambda entry: entry["count"])


def _aliases_json(aliases: dict[str, list[str]]) -> str:
    """The collection's record of other names, documents left without any left out."""
    return json.dumps({source: names for source, names in aliases.items() if names})


def _describe_embedder(model_name_or_path: str | None) -> str:
    return "the packaged all-MiniLM-L6-v2" if model_name_or_path is None else repr(model_name_or_path)
