"""Check and join the shards of an encoded corpus, then build an index from them or add them to Chroma.

:func:`load_encoded_corpus` refuses, with a message naming the files, everything that would merge silently
into a wrong index: missing shards, overlapping shards (files of runs with other shard counts), shards of
another run (another model, settings or input), a file that does not match its record's checksum (truncated
or replaced), a shard whose process crashed before its record was written, and repeated ids.

Example:
    >>> corpus = load_encoded_corpus("vecs/")  # doctest: +SKIP
    >>> index = build_index(corpus, "faiss-hnsw")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from retrievals_rag.distributed.shards import (
    ShardRecord,
    file_sha256,
    folder_fingerprint,
    list_shard_files,
    manifest_digest,
    read_manifest,
    read_record,
    read_shard,
)

if TYPE_CHECKING:
    from retrievals_rag.retrieval.dense import EmbeddingIndexBase
    from retrievals_rag.similarity import ScoreFunction

__all__ = [
    "EncodedCorpus",
    "IndexKind",
    "add_to_chroma",
    "build_index",
    "encoded_corpus_for",
    "load_encoded_corpus",
    "write_index",
]

IndexKind = Literal["exact", "faiss-flat", "faiss-ivf", "faiss-hnsw"]
_MERGED_VECTORS = "embeddings.npy"
_MERGED_IDS = "ids.json"


@dataclass
class EncodedCorpus:
    """An encoded corpus in input order: ``ids[i]`` owns ``embeddings[i]``; ``manifest`` says how it was made."""

    ids: list[str]
    embeddings: np.ndarray
    manifest: dict[str, Any]

    def aligned(self, ids: Sequence[str]) -> np.ndarray:
        """The embeddings in the order of ``ids`` (a corpus as another component lists it).

        Raises:
            ValueError: When ``ids`` and the encoded ids are not the same set (the message shows examples).
        """
        if list(ids) == self.ids:
            return self.embeddings
        position = {identifier: row for row, identifier in enumerate(self.ids)}
        missing = [identifier for identifier in ids if identifier not in position]
        extra = len(self.ids) - (len(ids) - len(missing))
        if missing or extra or len(set(ids)) != len(ids):
            raise ValueError(
                f"the encoded corpus ({len(self.ids)} ids) is not this corpus ({len(ids)} ids): "
                f"{len(missing)} ids not encoded (e.g. {missing[:3]}), {max(extra, 0)} encoded ids not in it"
            )
        return self.embeddings[[position[identifier] for identifier in ids]]

    def check_model(self, model_path: str | os.PathLike[str]) -> None:
        """Raise ValueError unless the corpus was encoded by the model folder ``model_path`` (by content)."""
        expected = self.manifest["model"]
        fingerprint = folder_fingerprint(model_path)
        if fingerprint != expected["fingerprint"]:
            raise ValueError(
                f"the corpus was encoded by another model: {expected['path']} (fingerprint "
                f"{expected['fingerprint'][:12]}...), not {os.fspath(model_path)} ({fingerprint[:12]}...); "
                "encode it again with this model"
            )

    def check_settings(self, model: Any) -> None:
        """Raise ValueError unless ``model`` embeds documents as the corpus was encoded: the same pooling,
        token limit, normalisation and instruction (the message lists each difference and the fix)."""
        settings = self.manifest["settings"]
        # (name, recorded, now, the option that loads the model with the recorded value, or None)
        compared = [
            ("pooling_method", settings["pooling_method"], model.pooling_method, "--pooling"),
            ("max_length", settings["max_length"], model.max_length, "--max-length"),
            ("normalize_embeddings", settings["normalize_embeddings"], model.normalize_embeddings, None),
            # encode applies an instruction only when it is non-empty: None and "" are the same vectors
            (
                "document instruction",
                settings["instruction"],
                model.document_instruction,
                "--document-instruction",
            ),
        ]
        differing = [entry for entry in compared if (entry[1] or None) != (entry[2] or None)]
        if not differing:
            return
        details = "; ".join(
            f"{name}: {recorded!r} there, {now!r} now" for name, recorded, now, _ in differing
        )
        options = " ".join(
            f"{option} {recorded if name != 'document instruction' else repr(recorded or '')}"
            for name, recorded, _, option in differing
            if option is not None
        )
        kind = settings["text_kind"]
        raise ValueError(
            f"the corpus was encoded with other settings than this model embeds documents with ({details}; "
            f"encoded as --kind {kind}): encode it again with this model's settings (--kind document)"
            + (f", or load the model with the recorded ones ({options})" if options else "")
        )


def _check_coverage(records: list[ShardRecord], total_rows: int, folder: Path) -> None:
    """Raise ValueError on overlapping shards or rows that no shard holds."""
    records = sorted(records, key=lambda record: (record.start, record.stop))
    expected_start = 0
    for previous, record in zip([None, *records], records, strict=False):
        if record.start < expected_start and previous is not None:
            raise ValueError(
                f"overlapping shards in {folder}: {previous.path.name} holds rows [{previous.start}, "
                f"{previous.stop}) and {record.path.name} rows [{record.start}, {record.stop}); remove the "
                "files of the other run"
            )
        if record.start > expected_start:
            raise ValueError(
                f"missing shard in {folder}: no shard holds rows [{expected_start}, {record.start}); "
                "run `retrievals-rag encode` again to finish it"
            )
        expected_start = record.stop
    if expected_start < total_rows:
        raise ValueError(
            f"missing shard in {folder}: no shard holds rows [{expected_start}, {total_rows}); "
            "run `retrievals-rag encode` again to finish it"
        )


def _shard_records(folder: Path, manifest: dict[str, Any]) -> list[ShardRecord]:
    """The finished shards of ``folder``, every inconsistency raised with the files it concerns."""
    digest = manifest_digest(manifest)
    record_paths, vector_paths, leftovers = list_shard_files(folder)
    records = [read_record(path) for path in record_paths]
    finished = {record.path for record in records}
    unfinished = [path.name for path in vector_paths if path not in finished]
    if unfinished or leftovers:
        names = unfinished + [path.name for path in leftovers]
        raise ValueError(
            f"unfinished shards in {folder}: {', '.join(names)} (written by a process that did not finish); "
            "run `retrievals-rag encode` again with the same arguments: it rewrites them"
        )
    for record in records:
        if record.manifest_digest != digest:
            raise ValueError(
                f"{record.path.name} was written by another run (another model, settings, input or shard "
                f"count) than {folder / 'manifest.json'} describes: remove it, or encode into a new folder"
            )
        if record.count != manifest["num_shards"]:
            raise ValueError(
                f"{record.path.name} is one of {record.count} shards, the manifest says {manifest['num_shards']}"
            )
    _check_coverage(records, manifest["input"]["rows"], folder)
    return sorted(records, key=lambda record: record.start)


def _check_manifest_entries(folder: Path, manifest: dict[str, Any], *, merged: bool) -> None:
    """Raise ValueError naming the manifest file and the entry when one that the merge reads is missing."""
    required = {"model": ("path", "fingerprint"), "settings": (), "input": ("path", "sha256")}
    if not merged:
        required.update({"num_shards": (), "dim": (), "input": ("path", "sha256", "rows")})
    for key, inner_keys in required.items():
        missing = key if key not in manifest else None
        if missing is None and inner_keys:
            entry = manifest[key]
            absent = [inner for inner in inner_keys if not isinstance(entry, dict) or inner not in entry]
            missing = f"{key}.{absent[0]}" if absent else None
        if missing is not None:
            raise ValueError(
                f"{folder / 'manifest.json'} has no {missing!r} entry (edited by hand?): restore the manifest "
                "`retrievals-rag encode` wrote, or encode the corpus again"
            )


def _read_merged_ids(path: Path) -> list[str]:
    """The ids of a merged folder, or ValueError naming the file when it is missing or not a list of strings."""
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ValueError(f"{path} is missing: the merged folder {path.parent} is incomplete") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): merge the shards again") from error
    if not isinstance(ids, list) or not all(isinstance(identifier, str) for identifier in ids):
        raise ValueError(f"{path} is not a JSON list of id strings: merge the shards again")
    return ids


def load_encoded_corpus(
    folder: str | os.PathLike[str],
    *,
    expected_model: str | os.PathLike[str] | None = None,
    verify_checksums: bool = True,
) -> EncodedCorpus:
    """Read an encoded folder (shards from ``retrievals-rag encode``, or a merged ``exact`` index folder).

    Args:
        folder: The folder.
        expected_model: When given, the model folder the corpus must have been encoded with (by content).
        verify_checksums: Check every shard file against the sha256 in its record.

    Returns:
        The ids and embeddings in input order, with the manifest.

    Raises:
        FileNotFoundError: When ``folder`` has no manifest.
        ValueError: On missing, overlapping, unfinished, foreign or corrupt shards, repeated ids, or
            another model than ``expected_model``.
    """
    root = Path(folder)
    manifest = read_manifest(root)
    merged = (root / _MERGED_VECTORS).is_file()
    _check_manifest_entries(root, manifest, merged=merged)
    if merged:
        ids = _read_merged_ids(root / _MERGED_IDS)
        embeddings = np.load(root / _MERGED_VECTORS, mmap_mode="r")
        if len(ids) != embeddings.shape[0]:
            raise ValueError(f"{root}: {len(ids)} ids but {embeddings.shape[0]} vectors")
        corpus = EncodedCorpus(ids, embeddings, manifest)
    else:
        ids, blocks = [], []
        for record in _shard_records(root, manifest):
            shard_ids, shard_embeddings = read_shard(record, verify=verify_checksums)
            if shard_embeddings.shape[1] != manifest["dim"]:
                raise ValueError(
                    f"{record.path} holds vectors of width {shard_embeddings.shape[1]}, the manifest says "
                    f"{manifest['dim']}"
                )
            ids.extend(shard_ids)
            blocks.append(shard_embeddings)
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            repeated = [identifier for identifier in ids if identifier in seen or seen.add(identifier)]
            raise ValueError(f"{root}: ids repeat across shards, e.g. {repeated[:3]}")
        embeddings = np.concatenate(blocks) if blocks else np.zeros((0, manifest["dim"]), dtype=np.float32)
        corpus = EncodedCorpus(ids, embeddings, manifest)
    if expected_model is not None:
        corpus.check_model(expected_model)
    return corpus


def encoded_corpus_for(
    folder: str | os.PathLike[str], model_path: str | os.PathLike[str], ids: Sequence[str], *, model: Any
) -> np.ndarray:
    """The vectors of an encoded folder in the order of ``ids``, refused unless ``model_path`` made them with
    the settings ``model`` (loaded from ``model_path``) embeds documents with.

    What ``retrievals-rag evaluate`` and ``mine`` call with ``--encoded-corpus``.

    Raises:
        ValueError: On another model, other settings (pooling, max_length, normalisation, instruction), or
            another set of ids.
    """
    corpus = load_encoded_corpus(folder, expected_model=model_path)
    corpus.check_settings(model)
    return corpus.aligned(ids)


def _faiss_factory(kind: IndexKind, rows: int) -> str | None:
    if kind == "faiss-flat":
        return None
    if kind == "faiss-hnsw":
        return "HNSW32"
    lists = max(1, min(4 * int(np.sqrt(rows)), rows // 39))  # faiss wants >= 39 training points per list
    return f"IVF{lists},Flat"


def build_index(
    corpus: EncodedCorpus,
    kind: IndexKind = "exact",
    *,
    score_function: ScoreFunction = "cos",
    faiss_factory: str | None = None,
) -> EmbeddingIndexBase:
    """A searchable index of the corpus: exact (:class:`DenseIndex`) or faiss (flat, IVF or HNSW).

    Args:
        corpus: From :func:`load_encoded_corpus`.
        kind: ``"exact"``, ``"faiss-flat"``, ``"faiss-ivf"`` (about ``4 * sqrt(n)`` lists) or ``"faiss-hnsw"``
            (32 links per node).
        score_function: ``"cos"`` or ``"dot"``.
        faiss_factory: A faiss index factory string that replaces the one ``kind`` picks.
    """
    if kind == "exact":
        if faiss_factory is not None:
            raise ValueError("faiss_factory needs a faiss index kind, not 'exact'")
        from retrievals_rag.retrieval.dense import DenseIndex

        index: EmbeddingIndexBase = DenseIndex(score_function=score_function)
    else:
        from retrievals_rag.retrieval.faiss_index import FaissIndex

        factory = faiss_factory or _faiss_factory(kind, len(corpus.ids))
        index = FaissIndex(score_function=score_function, index_factory=factory)
    index.add(corpus.ids, np.asarray(corpus.embeddings, dtype=np.float32))
    return index


def write_index(corpus: EncodedCorpus, index: EmbeddingIndexBase, output: str | os.PathLike[str]) -> Path:
    """Save a merged index in the folder ``output`` with the corpus's manifest.

    An exact index is written as ``embeddings.npy`` + ``ids.json`` (readable by :func:`load_encoded_corpus`
    and memory-mappable); a faiss index by :meth:`FaissIndex.save`.
    """
    from retrievals_rag.distributed.shards import write_manifest

    folder = Path(output)
    if (folder / "manifest.json").exists() or any(folder.glob("shard-*")):
        raise ValueError(f"{folder} already holds an encoded corpus: write the index into another folder")
    manifest = {
        key: value for key, value in corpus.manifest.items() if key not in ("format", "format_version")
    }
    write_manifest(folder, manifest)
    if hasattr(index, "save"):
        index.save(folder)
    else:
        np.save(folder / _MERGED_VECTORS, np.asarray(corpus.embeddings, dtype=np.float32))
        (folder / _MERGED_IDS).write_text(json.dumps(corpus.ids, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def add_to_chroma(
    corpus: EncodedCorpus,
    client: Any,
    collection: str,
    *,
    batch_size: int | None = None,
) -> int:
    """Upsert the corpus's vectors into a Chroma collection whose embedding function is the model that made them.

    The collection is created in cosine space with a :class:`ChromaEmbeddingFunction` of the manifest's model
    folder, instruction, pooling, token limit, normalisation and backend, so that queries and documents added
    later are embedded as the shards were. Documents' texts are stored too when the manifest's input file is
    still there unchanged.

    Args:
        corpus: From :func:`load_encoded_corpus`.
        client: A chromadb client (``persistent_client(path)`` or an ``HttpClient``).
        collection: The collection name.
        batch_size: Rows per upsert (default: the client's maximum batch size).

    Returns:
        The number of vectors written.
    """
    from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction, get_or_create_collection

    settings = corpus.manifest["settings"]
    model_kwargs = {"pooling_method": settings["pooling_method"], "max_length": settings["max_length"]}
    # a manifest written before the backend was recorded leaves it to the adapter's default
    backend = corpus.manifest.get("encoder", {}).get("backend")
    if backend is not None:
        model_kwargs["backend"] = backend
    # the encode's settings, so that documents added later (and queries) land in the stored vectors' space;
    # the stored vectors had the recorded instruction applied, whichever --kind chose it ("" when none)
    function = ChromaEmbeddingFunction(
        corpus.manifest["model"]["path"],
        document_instruction=settings["instruction"] or "",
        normalize_embeddings=settings["normalize_embeddings"],
        model_kwargs=model_kwargs,
    )
    target = get_or_create_collection(client, collection, embedding_function=function)
    texts = _input_texts(corpus)
    step = batch_size or client.get_max_batch_size()
    for start in range(0, len(corpus.ids), step):
        stop = min(start + step, len(corpus.ids))
        target.upsert(
            ids=corpus.ids[start:stop],
            embeddings=np.asarray(corpus.embeddings[start:stop], dtype=np.float32),
            documents=texts[start:stop] if texts is not None else None,
        )
    return len(corpus.ids)


def _input_texts(corpus: EncodedCorpus) -> list[str] | None:
    """The encoded texts, read back from the manifest's input when it is there unchanged; else None."""
    from retrievals_rag.distributed.encode import read_input

    source = corpus.manifest["input"]
    path = Path(source["path"])
    if not path.is_file() or file_sha256(path) != source["sha256"]:
        return None
    ids, texts = read_input(path)
    return texts if ids == corpus.ids else None
