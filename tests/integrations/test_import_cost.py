"""Importing an adapter loads nothing heavy beyond its framework: no torch, only our package (and numpy).

Runs ``examples/benchmarks/import_cost.py``, which imports in fresh interpreters and lists the packages each side
loads; its timings are the benchmark's to print, not a test's to assert (they swing with the machine's load).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "benchmarks" / "import_cost.py"
# what an adapter may load beyond its framework: our package, and numpy (vectors are lists or arrays)
ALLOWED_PACKAGES = {"retrievals_rag", "numpy"}


def run_benchmark(adapter: str, rounds: int) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--adapter", adapter, "--rounds", str(rounds), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_langchain_adapter_import_cost() -> None:
    result = run_benchmark("langchain", rounds=3)

    assert result["framework_modules"] == ["langchain_core.embeddings", "langchain_core.retrievers"]
    assert result["torch_imported"] is False
    assert set(result["added_packages"]) <= ALLOWED_PACKAGES, result


@pytest.mark.parametrize("adapter", ["llama-index", "chroma"])
def test_other_adapters_import_no_torch(adapter: str) -> None:
    result = run_benchmark(adapter, rounds=1)

    assert result["torch_imported"] is False
    assert "retrievals_rag" in result["added_packages"]
    assert set(result["added_packages"]) <= ALLOWED_PACKAGES, result


def test_the_script_prints_both_times_and_the_difference() -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("langchain (1 rounds")
    assert "langchain_core.embeddings + langchain_core.retrievers:" in lines[1]
    assert "+ retrievals_rag.integrations.langchain:" in lines[2]
    assert "difference:" in lines[3] and "torch imported: False" in lines[3]
    assert lines[4].startswith("  packages the adapter adds: ") and "retrievals_rag" in lines[4]


@pytest.mark.parametrize(
    ("adapter", "framework", "extra"),
    [
        ("langchain", "langchain_core", "langchain"),
        ("llama_index", "llama_index", "llama-index"),
        ("chroma", "chromadb", "chroma"),
    ],
)
def test_a_missing_extra_names_the_install_command(adapter: str, framework: str, extra: str) -> None:
    code = f"import sys; sys.modules[{framework!r}] = None; import retrievals_rag.integrations.{adapter}"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )

    assert completed.returncode != 0
    assert f"ImportError: retrievals_rag.integrations.{adapter} needs the {extra!r} extra" in completed.stderr
    assert f"pip install 'retrievals-rag[{extra}]'" in completed.stderr
