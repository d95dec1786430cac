"""Writing training records: atomic JSON Lines files, files appended to line by line (resumable), and reproducible
sampling of negatives.

Shared by hard-negative mining, the dataset converters and question generation.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

__all__ = ["append_records", "open_for_append", "sample_in_order", "write_jsonl"]

_T = TypeVar("_T")


def sample_in_order(items: Sequence[_T], count: int, *, seed: int, key: str) -> list[_T]:
    """``count`` items drawn without replacement, returned in their original order.

    The draw depends only on ``seed``, ``key`` and ``items`` (a SHA-256 of ``seed`` and ``key`` seeds a
    :class:`random.Random`), not on the hash seed of the process or on anything drawn before.

    Args:
        items: The candidates, e.g. best-ranked first.
        count: How many to draw; when ``len(items) <= count`` all of them are returned.
        seed: The run's seed.
        key: What the draw belongs to, e.g. a query id.

    Returns:
        A new list.

    Example:
        >>> sample_in_order(["a", "b", "c"], 5, seed=0, key="q1")
        ['a', 'b', 'c']
        >>> picked = sample_in_order(list("abcdefgh"), 3, seed=0, key="q1")
        >>> picked == sample_in_order(list("abcdefgh"), 3, seed=0, key="q1"), len(picked)
        (True, 3)
    """
    if len(items) <= count:
        return list(items)
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    return [items[index] for index in sorted(rng.sample(range(len(items)), count))]


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write records as JSON Lines, atomically: all of them or, on any error, nothing.

    Records go to a temporary file beside ``path`` (the parent folder is created) that replaces ``path`` only
    once every record is written and flushed to disk. If writing fails or is interrupted (an exception, a
    KeyboardInterrupt), the temporary file is removed and an existing ``path`` is left as it was. Text is
    written as UTF-8 without ASCII escapes (``ensure_ascii=False``), one object per line.

    Args:
        records: JSON-serialisable mappings; an iterator is consumed once, so records may be streamed.
        path: The output file.

    Returns:
        The number of records written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as for any new file (NamedTemporaryFile gives 0600).
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    count = 0
    try:
        with open(descriptor, "w", encoding="utf-8", newline="\n") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False))
                handle.write("\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return count


def open_for_append(path: str | os.PathLike[str]) -> TextIO:
    """Open a JSON Lines file to append whole lines (created with its folder).

    A torn last line (a write cut short by a crash: no final newline) is cut off first, so appended lines stay
    whole; use with :func:`append_records`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as raw:
                raw.truncate(data.rfind(b"\n") + 1)
    return path.open("a", encoding="utf-8", newline="\n")


def append_records(handle: TextIO, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records to a file opened by :func:`open_for_append`, one JSON object per line, and flush them
    to disk (so a crash afterwards loses none of them)."""
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())
