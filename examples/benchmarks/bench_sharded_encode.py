"""Sharded encoding throughput: one process vs ``torchrun --nproc_per_node N``, docs/s in all and per process.

Encodes a BEIR corpus (default: the SciFact subset in tests/data) with the packaged all-MiniLM-L6-v2 into
fresh shard folders: once in one process using all ``--threads`` cores, once under torchrun with ``N``
processes of ``threads / N`` cores each. On one machine the processes share its cores, so the total cannot
beat them; the point is that the work divides across processes (docs/s per process x processes ~ the one-
process rate), which is what lets more machines or GPUs add throughput. The merged vectors are checked
against each other. With a GPU per process, pass ``--device cuda`` (torchrun then gives each process its own
GPU when there are several).

Usage::

    python examples/benchmarks/bench_sharded_encode.py
    python examples/benchmarks/bench_sharded_encode.py --corpus ../shared/data/scifact/corpus.jsonl --processes 2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str], threads: int) -> tuple[float, str]:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return time.perf_counter() - start, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--corpus", type=Path, default=ROOT / "tests" / "data" / "scifact_subset" / "corpus.jsonl"
    )
    parser.add_argument("--limit", type=int, default=None, help="encode only the first LIMIT documents")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores in all")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import numpy as np

    from retrievals_rag.distributed.merge import load_encoded_corpus

    with tempfile.TemporaryDirectory() as scratch:
        corpus = args.corpus
        if args.limit is not None:
            corpus = Path(scratch) / "corpus.jsonl"
            with args.corpus.open(encoding="utf-8") as source:
                corpus.write_text(
                    "".join(line for _, line in zip(range(args.limit), source, strict=False)),
                    encoding="utf-8",
                )
        encode = ["-m", "retrievals_rag.cli.main", "encode", "--input", str(corpus), "--device", args.device]
        one, many = Path(scratch) / "one", Path(scratch) / "many"
        rows = sum(1 for _ in corpus.open(encoding="utf-8"))
        print(f"corpus {args.corpus} ({rows} documents) on {args.threads} cores, device {args.device}")
        seconds, log = run([sys.executable, *encode, "--output-dir", str(one)], args.threads)
        rates = [float(rate) for rate in re.findall(r"\(([\d.]+) docs/s", log)]
        print(
            f"1 process  x {args.threads} threads: wall {seconds:.1f}s (model load included), encode {rates[0]:.1f} docs/s"
        )
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.processes),
                    "--master_addr", "127.0.0.1", "--master_port", "0"]  # fmt: skip
        threads = max(1, args.threads // args.processes)
        seconds, log = run([*torchrun, *encode, "--output-dir", str(many)], threads)
        rates = [float(rate) for rate in re.findall(r"\(([\d.]+) docs/s", log)]
        print(
            f"{args.processes} processes x {threads} threads: wall {seconds:.1f}s (model load included), "
            f"per process {', '.join(f'{rate:.1f}' for rate in rates)} docs/s, sum {sum(rates):.1f} docs/s"
        )
        first, second = load_encoded_corpus(one), load_encoded_corpus(many)
        difference = float(np.abs(first.embeddings - second.embeddings).max())
        print(f"same ids and order: {first.ids == second.ids}; max |diff| of the vectors: {difference:.2e}")


if __name__ == "__main__":
    main()
