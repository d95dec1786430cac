"""The on-disk format of an encoded corpus: shards of ``(ids, vectors)`` plus one manifest, written atomically.

A folder ``vecs/`` encoded in ``N`` shards holds::

    manifest.json                        the run: model, settings, backend, input, rows, shards, dim, dtype
    shard-00000-of-00002.safetensors     rows [0, n/2): tensors embeddings, id_bytes, id_offsets
    shard-00000-of-00002.json            its record: rows, count, sha256 of the .safetensors file, manifest digest
    shard-00001-of-00002.safetensors
    shard-00001-of-00002.json

Shard ``i`` of ``N`` holds the rows ``[i * n // N, (i + 1) * n // N)`` of the input, in input order, so the
concatenation of the shards in index order is the corpus in file order whatever ran them (``torchrun``,
a scheduler, Ray Data). Every file is written under a temporary name and renamed into place; the record is
written last, so a shard *is finished* exactly when its record exists, and a crashed process leaves at
most a ``*.tmp`` file or a ``.safetensors`` without its record, which the next run overwrites and the merge
refuses.

Safetensors rather than parquet: it is already a core dependency (parquet would add pyarrow to the core), it
stores the float32 bytes exactly and is read memory-mapped, and ids fit as UTF-8 bytes plus offsets, so a
shard has no header-size limit on its ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MANIFEST_FILE",
    "ShardRecord",
    "ShardSpec",
    "file_sha256",
    "folder_fingerprint",
    "manifest_digest",
    "read_manifest",
    "read_shard",
    "shard_bounds",
    "write_manifest",
    "write_shard",
]

MANIFEST_FILE = "manifest.json"
# manifest entries added after format version 1 was first written: a manifest without them still resumes
_ADDED_ENTRIES = ("encoder",)
FORMAT = "retrievals-rag-encoded-corpus"
FORMAT_VERSION = 1
_SHARD_NAME = re.compile(r"^shard-(\d{5})-of-(\d{5})\.(safetensors|json)$")
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"the shard count must be an int >= 1, got {self.count!r}")
        if (
            isinstance(self.index, bool)
            or not isinstance(self.index, int)
            or not 0 <= self.index < self.count
        ):
            raise ValueError(f"the shard index must be an int in [0, {self.count - 1}], got {self.index!r}")

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"1/4"`` -> ``ShardSpec(1, 4)``; ValueError naming the expected form otherwise."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise ValueError(
                f"a shard is written INDEX/COUNT with 0 <= INDEX < COUNT (e.g. 0/4), got {text!r}"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def stem(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"

    def bounds(self, total_rows: int) -> tuple[int, int]:
        """``(start, stop)`` rows of this shard in an input of ``total_rows`` rows."""
        return shard_bounds(total_rows, self.count)[self.index]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_bounds(total_rows: int, count: int) -> list[tuple[int, int]]:
    """Contiguous, balanced row ranges: shard ``i`` is ``[i * total // count, (i + 1) * total // count)``.

    Example:
        >>> shard_bounds(10, 3)
        [(0, 3), (3, 6), (6, 10)]
    """
    return [(index * total_rows // count, (index + 1) * total_rows // count) for index in range(count)]


@dataclass(frozen=True)
class ShardRecord:
    """What a finished shard's ``.json`` record says."""

    index: int
    count: int
    start: int
    stop: int
    sha256: str
    manifest_digest: str
    path: Path  # the .safetensors file

    @property
    def rows(self) -> int:
        return self.stop - self.start


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """A sha256 over a model folder's files: names, sizes and full contents of every file under it.

    Two folders with the same fingerprint hold the same weights, tokenizer and settings, wherever they lie;
    a fine-tuned checkpoint, another tokenizer or another pooling setting changes it. A hub id (not a folder)
    is fingerprinted by its name only.
    """
    root = Path(folder)
    digest = hashlib.sha256()
    if not root.is_dir():
        digest.update(f"name:{os.fspath(folder)}".encode())
        return digest.hexdigest()
    for path in sorted(item for item in root.rglob("*") if item.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(".") or "/." in relative:  # .cache, .git: not part of the model
            continue
        digest.update(f"{relative}\x00{path.stat().st_size}\x00{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """A short, stable digest of a manifest, written into each shard so that shards of another run show."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``path.tmp-PID`` and a rename, so no reader sees half a file."""
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with temporary.open("wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> str:
    """Write ``manifest.json`` in ``folder``, or check that the one there describes the same run.

    Several processes of one run write the same manifest; a folder encoded by another model, other settings,
    another input or another shard count is refused rather than mixed.

    Returns:
        The manifest's digest.

    Raises:
        ValueError: When ``folder`` already holds a different manifest (the message names the fields).
    """
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    path = folder / MANIFEST_FILE
    if path.is_file():
        existing = read_manifest(folder)
        # an entry recorded since that manifest was written is unknown there, not different
        added_since = [key for key in _ADDED_ENTRIES if key in manifest and key not in existing]
        manifest = {key: value for key, value in manifest.items() if key not in added_since}
        if existing != manifest:
            differing = sorted(
                key for key in set(existing) | set(manifest) if existing.get(key) != manifest.get(key)
            )
            details = "; ".join(
                f"{key}: {existing.get(key)!r} there, {manifest.get(key)!r} now" for key in differing
            )
            raise ValueError(
                f"{folder} already holds shards of another run ({details}); use another output folder, or "
                f"delete {folder} to start over"
            )
        return manifest_digest(existing)
    _write_atomic(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return manifest_digest(manifest)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an encoded folder; FileNotFoundError / ValueError with the path when it is not one."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {folder} is not a folder written by `retrievals-rag encode`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not an encoded-corpus manifest (format {FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {manifest.get('format_version')!r}")
    return manifest


def write_shard(
    folder: Path,
    spec: ShardSpec,
    start: int,
    ids: Sequence[str],
    embeddings: np.ndarray,
    digest: str,
) -> ShardRecord:
    """Write one finished shard: its ``.safetensors`` file, then its record, each atomically.

    Args:
        folder: The encoded folder (its manifest already written).
        spec: Which shard.
        start: Its first row in the input.
        ids: One id per row.
        embeddings: ``(len(ids), dim)``.
        digest: The manifest's digest (:func:`write_manifest`).
    """
    from safetensors.numpy import save

    if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
        raise ValueError(f"shard {spec}: {len(ids)} ids but embeddings of shape {embeddings.shape}")
    encoded = [identifier.encode("utf-8") for identifier in ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(item) for item in encoded], out=offsets[1:])
    tensors = {
        "embeddings": np.ascontiguousarray(embeddings),
        "id_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
        "id_offsets": offsets,
    }
    stop = start + len(ids)
    metadata = {"start": str(start), "stop": str(stop), "manifest_digest": digest}
    payload = save(tensors, metadata=metadata)
    vectors_path = folder / f"{spec.stem}.safetensors"
    _write_atomic(vectors_path, payload)
    record = {
        "index": spec.index,
        "count": spec.count,
        "start": start,
        "stop": stop,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "manifest_digest": digest,
    }
    _write_atomic(folder / f"{spec.stem}.json", (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    # a process killed while writing this shard before left its temporary files; the shard is whole now
    for leftover in folder.glob(f"{spec.stem}.*.tmp-*"):
        leftover.unlink(missing_ok=True)
    return ShardRecord(path=vectors_path, **record)


def read_record(path: Path) -> ShardRecord:
    """A shard's record (``shard-*.json``); ValueError naming the file when it is malformed."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return ShardRecord(
            index=int(record["index"]),
            count=int(record["count"]),
            start=int(record["start"]),
            stop=int(record["stop"]),
            sha256=str(record["sha256"]),
            manifest_digest=str(record["manifest_digest"]),
            path=path.with_suffix(".safetensors"),
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path} is not a shard record ({error})") from error


def finished_record(folder: Path, spec: ShardSpec, digest: str) -> ShardRecord | None:
    """The record of shard ``spec`` when it is finished and belongs to this run; None when it must be encoded."""
    path = folder / f"{spec.stem}.json"
    if not path.is_file():
        return None
    record = read_record(path)
    if record.manifest_digest != digest or not record.path.is_file():
        return None
    return record


def list_shard_files(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """``(records, vector files, leftovers)``: ``shard-*.json``, ``shard-*.safetensors`` and ``*.tmp-*`` files."""
    records, vectors, leftovers = [], [], []
    for path in sorted(folder.iterdir()):
        if ".tmp-" in path.name:
            leftovers.append(path)
            continue
        match = _SHARD_NAME.match(path.name)
        if match is not None:
            (records if match.group(3) == "json" else vectors).append(path)
    return records, vectors, leftovers


def read_shard(record: ShardRecord, verify: bool = True) -> tuple[list[str], np.ndarray]:
    """``(ids, embeddings)`` of a finished shard, its checksum and row count checked.

    Raises:
        ValueError: When the file does not match its record (a truncated or replaced file), naming the file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = record.path
    if not path.is_file():
        raise ValueError(f"{path} is missing although its record {path.with_suffix('.json').name} exists")
    if verify:
        actual = file_sha256(path)
        if actual != record.sha256:
            raise ValueError(
                f"{path} does not match its record (sha256 {actual[:12]}..., recorded {record.sha256[:12]}...): "
                "the file was truncated or replaced; delete it and its .json record and encode that shard again"
            )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors shard ({error})") from error
    offsets = tensors["id_offsets"]
    raw = tensors["id_bytes"].tobytes()
    ids = [raw[offsets[row] : offsets[row + 1]].decode("utf-8") for row in range(len(offsets) - 1)]
    embeddings = tensors["embeddings"]
    if len(ids) != record.rows or embeddings.shape[0] != record.rows:
        raise ValueError(
            f"{path} holds {len(ids)} ids and {embeddings.shape[0]} vectors, its record says {record.rows} rows"
        )
    return ids, embeddings
