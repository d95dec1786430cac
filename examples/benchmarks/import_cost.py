"""What importing a retrievals_rag adapter costs on top of the framework it adapts.

Each measurement runs in a fresh interpreter, which times its own imports (interpreter start-up excluded):
first the framework's modules alone, then the framework's modules plus the adapter. Rounds alternate the two,
and the fastest time of each is kept (the least disturbed by other work on the machine). The adapter must
not import torch: that happens when a model is loaded.

Usage::

    python examples/benchmarks/import_cost.py                      # the LangChain adapter
    python examples/benchmarks/import_cost.py --adapter chroma --rounds 7
    python examples/benchmarks/import_cost.py --adapter all --json

Measured on 2 shared, busy CPU cores (5 rounds): langchain-core 0.88 s, with the LangChain adapter 1.04 s
(+0.16 s, mostly numpy); llama-index-core +0.04 s; chromadb +0.00 s. None imports torch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from retrievals_rag.cli.common import HelpFormatter  # help that shows the defaults

# adapter -> (the framework's modules, the adapter module)
ADAPTERS: dict[str, tuple[list[str], str]] = {
    "langchain": (
        ["langchain_core.embeddings", "langchain_core.retrievers"],
        "retrievals_rag.integrations.langchain",
    ),
    "llama-index": (["llama_index.core.base.embeddings.base"], "retrievals_rag.integrations.llama_index"),
    "chroma": (["chromadb"], "retrievals_rag.integrations.chroma"),
}

_CHILD = """
import json, sys, time
start = time.perf_counter()
for name in sys.argv[1:]:
    __import__(name)
seconds = time.perf_counter() - start
packages = sorted({name.partition(".")[0] for name in sys.modules} - set(sys.stdlib_module_names))
print(json.dumps({"seconds": seconds, "torch": "torch" in sys.modules, "packages": packages}))
"""


def time_imports(modules: list[str]) -> tuple[float, bool, set[str]]:
    """Seconds to import ``modules`` in a fresh interpreter, whether torch was imported, and the top-level
    packages (outside the standard library) loaded by then."""
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, *modules], capture_output=True, text=True, timeout=300, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"importing {modules} failed:\n{completed.stderr}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), bool(result["torch"]), set(result["packages"])


def measure(adapter: str, rounds: int) -> dict[str, Any]:
    """Time the framework alone and with the adapter, ``rounds`` times each, alternating.

    Returns:
        ``framework_seconds`` and ``with_adapter_seconds`` (fastest of the rounds), their ``difference_seconds``,
        ``torch_imported`` (whether any import of the adapter brought torch in) and ``added_packages``: the
        top-level packages outside the standard library that the adapter loads beyond its framework's.
    """
    framework, adapter_module = ADAPTERS[adapter]
    framework_times: list[float] = []
    adapter_times: list[float] = []
    torch_imported = False
    added: set[str] = set()
    for _ in range(rounds):
        seconds, _, framework_packages = time_imports(framework)
        framework_times.append(seconds)
        seconds, torch_loaded, packages = time_imports([*framework, adapter_module])
        adapter_times.append(seconds)
        torch_imported = torch_imported or torch_loaded
        added |= packages - framework_packages
    return {
        "adapter": adapter,
        "framework_modules": framework,
        "adapter_module": adapter_module,
        "rounds": rounds,
        "framework_seconds": min(framework_times),
        "with_adapter_seconds": min(adapter_times),
        "difference_seconds": min(adapter_times) - min(framework_times),
        "torch_imported": torch_imported,
        "added_packages": sorted(added),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument(
        "--adapter", choices=[*ADAPTERS, "all"], default="langchain", help="which adapter's import to time"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="measurements of each side (the fastest is kept)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per adapter (default: a table)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    for adapter in ADAPTERS if args.adapter == "all" else [args.adapter]:
        result = measure(adapter, args.rounds)
        if args.json:
            print(json.dumps(result))
            continue
        print(f"{adapter} ({args.rounds} rounds, fastest kept)")
        print(f"  {' + '.join(result['framework_modules'])}: {result['framework_seconds']:.3f} s")
        print(f"  + {result['adapter_module']}: {result['with_adapter_seconds']:.3f} s")
        print(
            f"  difference: {result['difference_seconds']:.3f} s; torch imported: {result['torch_imported']}"
        )
        print(f"  packages the adapter adds: {', '.join(result['added_packages']) or 'none'}")


if __name__ == "__main__":
    main()
