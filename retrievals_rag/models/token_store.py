"""ColBERT's document vectors kept on disk, so a restarted process does not encode its documents again.

:class:`PersistentDocumentVectorCache` is the in-memory :class:`~retrievals_rag.models.token_cache.DocumentVectorCache`
backed by one SQLite file (the standard library's; a write is a transaction, so a crash never leaves half a
record). A document missing from memory is looked up on disk before it is encoded; every document encoded is
written there. The file belongs to one model: name it after :func:`model_fingerprint` (weights, settings and
backend), so another model or another backend never reads vectors that are not its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrievals_rag.models.token_cache import DocumentVectorCache, _key

if TYPE_CHECKING:
    import torch

__all__ = ["PersistentDocumentVectorCache", "model_fingerprint"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, shapes TEXT NOT NULL, data BLOB NOT NULL)"
)


def model_fingerprint(folder: str | os.PathLike[str], settings: Any, backend: str, dtype: str) -> str:
    """A short hash of what defines a model's document vectors: its weights, settings, backend and storage type."""
    from dataclasses import asdict

    from retrievals_rag.models.backends.record import weights_checksum

    payload = json.dumps(
        {
            "weights": weights_checksum(folder),
            "settings": asdict(settings),
            "backend": backend,
            "dtype": dtype,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class PersistentDocumentVectorCache(DocumentVectorCache):
    """A :class:`DocumentVectorCache` whose documents are also kept in a SQLite file.

    Args:
        path: the file (created with its folder if missing).
        max_bytes: the most bytes held in memory (the file has no limit).
        dtype: the storage type, in memory and on disk.
    """

    def __init__(
        self, path: str | os.PathLike[str], max_bytes: int = 2 << 30, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__(max_bytes=max_bytes, dtype=dtype)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        try:
            self._connection = sqlite3.connect(self.path, check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")  # cheap commits; readers never wait
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute(_SCHEMA)
            self._connection.commit()
        except sqlite3.DatabaseError as error:
            raise ValueError(
                f"{self.path}: not a document vector file ({error}); delete it to start a new one"
            ) from error
        self.disk_hits = 0

    def _read(self, key: bytes) -> list[torch.Tensor] | None:
        import numpy as np
        import torch

        with self._lock:
            if self._connection is None:
                return None
            row = self._connection.execute(
                "SELECT shapes, data FROM vectors WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        shapes, data = json.loads(row[0]), row[1]
        dtype = {torch.float16: np.float16, torch.float32: np.float32}.get(self.dtype)
        flat = torch.from_numpy(np.frombuffer(data, dtype=dtype).copy()) if dtype else None
        if flat is None:  # bfloat16: numpy has no such type; the bytes are read through int16
            flat = torch.from_numpy(np.frombuffer(data, dtype=np.int16).copy()).view(torch.bfloat16)
        windows, start = [], 0
        for rows, columns in shapes:
            windows.append(flat[start : start + rows * columns].view(rows, columns))
            start += rows * columns
        return windows

    def __contains__(self, text: object) -> bool:
        if super().__contains__(text):
            return True
        if not isinstance(text, str):
            return False
        with self._lock:
            if self._connection is None:
                return False
            found = self._connection.execute("SELECT 1 FROM vectors WHERE key = ?", (_key(text),)).fetchone()
        return found is not None

    def get(self, text: str) -> list[torch.Tensor] | None:
        """The windows' matrices of ``text`` from memory, else from the file (then kept in memory), or None."""
        found = super().get(text)
        if found is not None:
            return found
        windows = self._read(_key(text))
        if windows is None:
            return None
        self.misses -= 1  # counted as a hit on disk, not a miss
        self.disk_hits += 1
        return super().put(text, windows)

    def put(self, text: str, windows: list[torch.Tensor]) -> list[torch.Tensor]:
        """Store ``text``'s window matrices in memory and in the file; returns them."""
        import torch

        stored = super().put(text, windows)
        shapes = [list(window.shape) for window in stored]
        flat = torch.cat([window.reshape(-1) for window in stored]) if stored else torch.empty(0)
        if flat.dtype == torch.bfloat16:
            flat = flat.view(torch.int16)
        with self._lock:
            if self._connection is not None:
                self._connection.execute(
                    "INSERT OR REPLACE INTO vectors (key, shapes, data) VALUES (?, ?, ?)",
                    (_key(text), json.dumps(shapes), flat.numpy().tobytes()),
                )
                self._connection.commit()
        return stored

    def clear(self) -> None:
        """Forget every document in memory and stop using the file (the model's weights are changing).

        The file is left as it is: it still holds the vectors of the weights it was named after, for the next
        process that loads them.
        """
        super().clear()
        self.disk_hits = 0
        self.close()

    def __len__(self) -> int:
        if self.detached:
            return super().__len__()
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    @property
    def detached(self) -> bool:
        """True once the file is no longer used (after :meth:`clear` or :meth:`close`)."""
        return self._connection is None

    def close(self) -> None:
        """Stop using the file; the cache goes on in memory."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __repr__(self) -> str:
        return (
            f"PersistentDocumentVectorCache({self.path}{' (detached)' if self.detached else ''}, "
            f"{len(self)} documents, "
            f"{self.nbytes / 2**20:.1f} MiB in memory, {self.dtype}, hits={self.hits}, "
            f"disk_hits={self.disk_hits}, misses={self.misses})"
        )
