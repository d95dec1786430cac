"""Tests of the package surface: the pinned public names and lazy imports (no torch on a plain import)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import retrievals_rag

HEAVY_MODULES = ("torch", "transformers", "sentence_transformers", "faiss", "bm25s")

EXPECTED_ALL = [
    "AutoModelForEmbedding",
    "AutoModelForRanking",
    "BM25Retriever",
    "ColBERT",
    "LLMRanker",
    "RetrievalEvaluator",
    "__version__",
    "default_embedding_model_path",
    "dense_search",
    "evaluate_run",
    "load_beir",
    "reciprocal_rank_fusion",
]


def _loaded_after(code: str) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; report which heavy top-level modules it left in sys.modules."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps({{name: name in sys.modules for name in {list(HEAVY_MODULES)!r}}}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_plain_import_loads_neither_torch_nor_transformers() -> None:
    loaded = _loaded_after("import retrievals_rag")

    assert loaded == dict.fromkeys(HEAVY_MODULES, False)


def test_accessing_the_embedding_model_loads_torch() -> None:
    loaded = _loaded_after(
        "import sys, retrievals_rag\n"
        "assert 'torch' not in sys.modules\n"
        "model_class = retrievals_rag.AutoModelForEmbedding\n"
        "assert model_class.__name__ == 'AutoModelForEmbedding'"
    )

    assert loaded["torch"] is True


@pytest.mark.parametrize(
    "module",
    [
        "retrievals_rag.evaluation",
        "retrievals_rag.retrieval",
        "retrievals_rag.cli.main",
        "retrievals_rag.distributed",
        "retrievals_rag.llm",
    ],
)
def test_light_subpackages_load_no_torch(module: str) -> None:
    loaded = _loaded_after(f"import {module}")

    assert loaded == dict.fromkeys(HEAVY_MODULES, False)


def test_all_is_pinned() -> None:
    assert retrievals_rag.__all__ == EXPECTED_ALL


def test_dir_lists_the_public_names() -> None:
    assert dir(retrievals_rag) == sorted(EXPECTED_ALL)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(retrievals_rag, name)

    if name == "__version__":
        assert isinstance(value, str) and value
    else:
        assert getattr(value, "__name__", None) == name


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        retrievals_rag.no_such_name  # noqa: B018

    assert not hasattr(retrievals_rag, "NoSuchModel")
