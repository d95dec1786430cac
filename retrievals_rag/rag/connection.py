"""Opening the Chroma database of a store: the embedded one in a folder or a server at a URL, and the rules of
collection names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

__all__ = ["StoreConnectionError", "connect", "validate_collection_name"]

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]$")


class StoreConnectionError(ConnectionError):
    """The Chroma server cannot be reached; the message names the URL."""


def validate_collection_name(name: str) -> str:
    """Check a collection name against Chroma's rules and return it.

    Chroma accepts 3 to 512 characters from ``[A-Za-z0-9._-]``, starting and ending with a letter or digit; a
    name with ``..`` or shaped like an IPv4 address is refused too (older Chroma rules, kept for portability).

    Raises:
        ValueError: Naming the rule that the name breaks.
    """
    if not isinstance(name, str):
        raise TypeError(f"a collection name must be a string, got {type(name).__name__}")
    problem = None
    if not 3 <= len(name) <= 512:
        problem = f"it has {len(name)} characters; use 3 to 512"
    elif not _NAME_PATTERN.match(name):
        problem = "use only letters, digits, '.', '_' and '-', starting and ending with a letter or digit"
    elif ".." in name:
        problem = "it contains '..'"
    elif re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        problem = "it looks like an IPv4 address"
    if problem is not None:
        raise ValueError(f"invalid collection name {name!r}: {problem}")
    return name


def connect(data_dir: Path | None, chroma_url: str | None) -> ClientAPI:
    """An embedded client in ``data_dir/chroma``, or an HTTP client of the server at ``chroma_url``."""
    if chroma_url is None:
        if data_dir is None:
            raise ValueError("give data_dir (an embedded database) or chroma_url (a Chroma server)")
        from retrievals_rag.integrations.chroma import persistent_client

        folder = data_dir / "chroma"
        folder.mkdir(parents=True, exist_ok=True)
        return persistent_client(folder)
    import chromadb
    import httpx
    from chromadb.config import Settings

    parts = urlsplit(chroma_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"chroma_url must look like http://HOST:PORT, got {chroma_url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 8000)
    except ValueError as error:
        raise ValueError(f"chroma_url {chroma_url!r} has an invalid port: {error}") from None
    try:
        client = chromadb.HttpClient(
            host=parts.hostname,
            port=port,
            ssl=parts.scheme == "https",
            settings=Settings(anonymized_telemetry=False),
        )
        client.heartbeat()
    except (ValueError, OSError, httpx.HTTPError) as error:
        raise StoreConnectionError(
            f"cannot reach the Chroma server at {chroma_url} ({error}); start one with "
            f"`chroma run --path DIR --host {parts.hostname} --port {port}` or leave chroma_url unset for the "
            "embedded database"
        ) from error
    return client
