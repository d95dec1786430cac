"""The settings saved next to a model's weights, so a folder remembers how it was trained and is used.

Written as ``retrievals_rag_config.json`` by ``save_pretrained`` and read back by ``from_pretrained``.
Imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from retrievals_rag.models.pooling import PoolingMethod, check_pooling_method

CONFIG_FILE_NAME = "retrievals_rag_config.json"
ModelKind = Literal["embedding"]


@dataclass(frozen=True)
class EmbeddingSettings:
    """How an embedding model turns text into vectors.

    Attributes:
        pooling_method: how token states become one vector (see ``retrievals_rag.models.pooling``).
        normalize_embeddings: L2-normalise the output vectors.
        max_length: tokens per text, special tokens included; longer texts are truncated.
        query_instruction: prefix for queries; ``{}`` in it is a placeholder for the text.
        document_instruction: prefix for documents, same rules.
        append_eos: append the tokenizer's EOS token to every text (decoder LLMs pooled at the last token,
            when the tokenizer does not add it itself).
    """

    pooling_method: PoolingMethod
    normalize_embeddings: bool
    max_length: int
    query_instruction: str | None = None
    document_instruction: str | None = None
    append_eos: bool = False

    def __post_init__(self) -> None:
        check_pooling_method(self.pooling_method)
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {self.max_length!r}")
        for name in ("query_instruction", "document_instruction"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")


def save_settings(
    directory: str | Path, settings: EmbeddingSettings, model_kind: ModelKind = "embedding"
) -> None:
    """Write ``settings`` into ``directory/retrievals_rag_config.json``."""
    from retrievals_rag import __version__

    payload = {"model_kind": model_kind, **asdict(settings), "retrievals_rag_version": __version__}
    path = Path(directory) / CONFIG_FILE_NAME
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_settings(directory: str | Path) -> dict[str, Any] | None:
    """Read the saved settings of a folder as a dict of ``EmbeddingSettings`` fields, or None if it has none."""
    path = Path(directory) / CONFIG_FILE_NAME
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from error
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a JSON object")
    known = {field.name for field in fields(EmbeddingSettings)}
    return {key: value for key, value in payload.items() if key in known}
