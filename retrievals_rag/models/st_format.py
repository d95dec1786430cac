"""Reading and writing the sentence-transformers folder layout, without importing sentence-transformers.

A folder saved here loads in ``SentenceTransformer(folder)`` with the same pooling, normalisation, maximum
length and prompts; a folder saved by sentence-transformers (the legacy ``pooling_mode_*`` layout and the v6
``pooling_mode`` layout) loads here with its own settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrievals_rag.models.pooling import PoolingMethod

# sentence-transformers pooling mode name -> ours
_POOLING_FROM_ST: dict[str, PoolingMethod] = {
    "cls": "cls",
    "mean": "mean",
    "lasttoken": "last",
    "weightedmean": "weighted_mean",
}
_POOLING_TO_ST = {ours: theirs for theirs, ours in _POOLING_FROM_ST.items()}
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_QUERY_PROMPT_NAMES = ("query",)
_DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus", "doc")


@dataclass(frozen=True)
class SentenceTransformersLayout:
    """What a sentence-transformers folder says about how to embed."""

    transformer_path: Path
    pooling_method: PoolingMethod | None = None
    normalize_embeddings: bool = False
    max_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    similarity: str | None = None

    @property
    def query_instruction(self) -> str | None:
        return next((self.prompts[name] for name in _QUERY_PROMPT_NAMES if self.prompts.get(name)), None)

    @property
    def document_instruction(self) -> str | None:
        return next((self.prompts[name] for name in _DOCUMENT_PROMPT_NAMES if self.prompts.get(name)), None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from error


def _module_kind(type_name: str) -> str:
    """'sentence_transformers.models.Pooling' or '...modules.pooling.Pooling' -> 'Pooling'."""
    return type_name.rsplit(".", 1)[-1]


def _pooling_from_config(path: Path) -> PoolingMethod:
    config = _read_json(path)
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:
        modes = [mode for key, mode in _LEGACY_POOLING_KEYS.items() if config.get(key)]
    if config.get("include_prompt") is False:
        raise ValueError(
            f"{path}: include_prompt=false (prompt tokens excluded from pooling) is not supported; "
            "load the folder with sentence-transformers instead"
        )
    if len(modes) != 1 or modes[0] not in _POOLING_FROM_ST:
        raise ValueError(
            f"{path}: pooling mode {modes} is not supported; supported: {sorted(_POOLING_FROM_ST)} (one of them)"
        )
    return _POOLING_FROM_ST[modes[0]]


def read_sentence_transformers_layout(directory: str | Path) -> SentenceTransformersLayout | None:
    """Read a sentence-transformers folder's settings; None if ``directory`` has no ``modules.json``.

    Raises:
        ValueError: the folder uses a module this package cannot reproduce (Dense, max pooling, ...), naming it.
    """
    root = Path(directory)
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return None
    modules = _read_json(modules_file)
    transformer_path = root
    pooling: PoolingMethod | None = None
    normalize = False
    for module in modules:
        kind = _module_kind(module.get("type", ""))
        module_dir = root / module.get("path", "")
        if kind == "Transformer":
            transformer_path = module_dir
        elif kind == "Pooling":
            pooling = _pooling_from_config(module_dir / "config.json")
        elif kind == "Normalize":
            normalize = True
        else:
            raise ValueError(
                f"{modules_file}: module {module.get('type')!r} is not supported here "
                "(supported: Transformer, Pooling, Normalize)"
            )
    max_length = None
    for candidate in (transformer_path / "sentence_bert_config.json", root / "sentence_bert_config.json"):
        if candidate.is_file():
            max_length = _read_json(candidate).get("max_seq_length")
            break
    prompts: dict[str, str] = {}
    similarity = None
    st_config = root / "config_sentence_transformers.json"
    if st_config.is_file():
        payload = _read_json(st_config)
        prompts = {str(k): str(v) for k, v in (payload.get("prompts") or {}).items()}
        similarity = payload.get("similarity_fn_name")
    return SentenceTransformersLayout(
        transformer_path=transformer_path,
        pooling_method=pooling,
        normalize_embeddings=normalize,
        max_length=max_length,
        prompts=prompts,
        similarity=similarity,
    )


def write_sentence_transformers_layout(
    directory: str | Path,
    *,
    pooling_method: PoolingMethod,
    normalize_embeddings: bool,
    max_length: int,
    embedding_dimension: int,
    query_instruction: str | None,
    document_instruction: str | None,
) -> list[str]:
    """Write modules.json, the pooling config, sentence_bert_config.json and the prompts.

    The legacy layout is written because sentence-transformers 3 to 6 all read it. Instructions with a ``{}``
    placeholder cannot be expressed as sentence-transformers prompts (which are prefixes only): they are left
    out, and their names are returned so the caller can warn.
    """
    root = Path(directory)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    modules.append(
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
    )
    if normalize_embeddings:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (root / "2_Normalize").mkdir(parents=True, exist_ok=True)
    (root / "modules.json").write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")

    pooling_dir = root / "1_Pooling"
    pooling_dir.mkdir(parents=True, exist_ok=True)
    st_mode = _POOLING_TO_ST[pooling_method]
    pooling_config: dict[str, Any] = {"word_embedding_dimension": embedding_dimension}
    pooling_config.update({key: mode == st_mode for key, mode in _LEGACY_POOLING_KEYS.items()})
    pooling_config["include_prompt"] = True
    (pooling_dir / "config.json").write_text(json.dumps(pooling_config, indent=2) + "\n", encoding="utf-8")

    (root / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False}, indent=2) + "\n", encoding="utf-8"
    )
    prompts: dict[str, str] = {}
    skipped: list[str] = []
    for name, instruction in (("query", query_instruction), ("document", document_instruction)):
        if instruction is None:
            continue
        if "{}" in instruction:
            skipped.append(f"{name}_instruction")
        else:
            prompts[name] = instruction
    st_config = {
        "prompts": prompts,
        "default_prompt_name": None,
        "similarity_fn_name": "cosine" if normalize_embeddings else "dot",
    }
    (root / "config_sentence_transformers.json").write_text(
        json.dumps(st_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return skipped
