"""A bounded in-memory cache of documents' token vectors, for late-interaction (ColBERT) scoring.

ColBERT's document vectors do not depend on the query, so a document encoded once can be scored against any
number of later queries by MaxSim alone: reranking then costs one query encoding and a few matrix products
instead of a transformer pass per document. The cache holds, per document text, the vectors of the tokens
that count in MaxSim (one matrix per window of a long document), stored in half precision by default, and
forgets the least recently used documents beyond ``max_bytes``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["DocumentVectorCache"]


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class DocumentVectorCache:
    """Document text -> its windows' token matrices ``[(n_tokens, dim), ...]``, least recently used evicted.

    Args:
        max_bytes: the most bytes of vectors held (default 2 GiB); a document larger than that is not kept.
        dtype: the storage type, ``torch.float16`` (default) or ``torch.float32`` (scores then match an
            uncached run exactly; half precision moves them by about 1e-3 of a token's similarity).
    """

    def __init__(self, max_bytes: int = 2 << 30, dtype: torch.dtype | None = None) -> None:
        import torch

        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        dtype = torch.float16 if dtype is None else dtype
        if dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"dtype must be float16, bfloat16 or float32, got {dtype}")
        self.max_bytes = max_bytes
        self.dtype = dtype
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, tuple[list[torch.Tensor], int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and _key(text) in self._entries

    def get(self, text: str) -> list[torch.Tensor] | None:
        """The windows' matrices of ``text`` (counted as a hit or a miss), or None."""
        key = _key(text)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, text: str, windows: list[torch.Tensor]) -> list[torch.Tensor]:
        """Store ``text``'s window matrices (converted to the cache's dtype, on the CPU); returns them."""
        stored = [window.detach().to("cpu", self.dtype).contiguous() for window in windows]
        size = sum(window.numel() * window.element_size() for window in stored)
        key = _key(text)
        if key in self._entries:
            self.nbytes -= self._entries.pop(key)[1]
        if size <= self.max_bytes:
            self._entries[key] = (stored, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.nbytes -= evicted
        return stored

    def resize(self, max_bytes: int) -> None:
        """Change the byte budget, forgetting the least recently used documents beyond a smaller one."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_bytes = max_bytes
        while self.nbytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.nbytes -= evicted

    def clear(self) -> None:
        """Forget every document (and the hit / miss counts)."""
        self._entries.clear()
        self.nbytes = self.hits = self.misses = 0

    def __repr__(self) -> str:
        return (
            f"DocumentVectorCache({len(self)} documents, {self.nbytes / 2**20:.1f} MiB of "
            f"{self.max_bytes / 2**20:.0f} MiB, {self.dtype}, hits={self.hits}, misses={self.misses})"
        )
