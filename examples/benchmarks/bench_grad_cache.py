"""GradCache benchmark: peak memory of one training step on a batch of 256, cached vs uncached.

One step (forward, InfoNCE with in-batch negatives, backward) of the packaged all-MiniLM-L6-v2 on 256 queries
and their 256 positives from the SciFact subset, each configuration in a fresh process. The torch CPU
allocator is not tracked by tracemalloc, so memory is the process's peak resident set size
(``resource.getrusage().ru_maxrss``) above its size right before the step (model loaded, batch tokenized).
The anchor, measured in the same run: sentence-transformers' ``CachedMultipleNegativesRankingLoss`` on the
same folder and batch.

Usage::

    python examples/benchmarks/bench_grad_cache.py                     # uncached, chunks of 32 and 8, anchor
    python examples/benchmarks/bench_grad_cache.py --batch 128 --chunks 0 16 --anchor-chunks 0 16

A chunk of 0 means uncached. The anchor runs cached only by default: its uncached loss
(``MultipleNegativesRankingLoss``) holds the same activations as ours uncached (13 GiB at batch 256).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "scifact_subset"


def _texts(batch: int) -> tuple[list[str], list[str]]:
    records = [json.loads(line) for line in (DATA / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    records = (records * (batch // len(records) + 1))[:batch]
    return [record["title"] for record in records], [record["text"] for record in records]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(mode: str, batch: int, chunk: int) -> dict[str, float | str]:
    """One step in this process; ``mode`` is ``ours`` or ``sentence-transformers``, ``chunk`` 0 for uncached."""
    import torch

    from retrievals_rag.models.loading import default_embedding_model_path

    torch.manual_seed(0)
    queries, documents = _texts(batch)
    path = default_embedding_model_path()
    if mode == "ours":
        from retrievals_rag import AutoModelForEmbedding
        from retrievals_rag.losses.cached import GradCacheLoss
        from retrievals_rag.losses.infonce import InfoNCELoss

        model = AutoModelForEmbedding.from_pretrained(path, device="cpu", max_length=128)
        model.train()
        inputs = {"query": model.tokenize(queries), "documents": model.tokenize(documents)}
        loss_module = InfoNCELoss(temperature=0.05)
        before = _peak_mib()
        start = time.perf_counter()
        if chunk:
            loss = GradCacheLoss(loss_module, chunk).model_loss(model, inputs)
        else:
            loss = loss_module(model(**inputs["query"]), model(**inputs["documents"]))
        loss.backward()
    else:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.losses import (
            CachedMultipleNegativesRankingLoss,
            MultipleNegativesRankingLoss,
        )

        model = SentenceTransformer(str(path), device="cpu")
        model.max_seq_length = 128
        model.train()
        features = [model.tokenize(queries), model.tokenize(documents)]
        loss_module = (
            CachedMultipleNegativesRankingLoss(model, mini_batch_size=chunk, scale=20.0)
            if chunk
            else MultipleNegativesRankingLoss(model, scale=20.0)
        )
        before = _peak_mib()
        start = time.perf_counter()
        loss = loss_module(features, None)
        loss.backward()
    seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "chunk": chunk,
        "peak_mib": _peak_mib() - before,
        "seconds": seconds,
        "loss": float(loss.detach()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--chunks", type=int, nargs="*", default=[0, 32, 8], help="ours; 0: uncached")
    parser.add_argument(
        "--anchor-chunks", type=int, nargs="*", default=[32, 8], help="sentence-transformers'; 0: uncached"
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.batch, int(args.child[1]))))
        return
    runs = [("ours", chunk) for chunk in args.chunks]
    runs += [("sentence-transformers", chunk) for chunk in args.anchor_chunks]
    print(f"one InfoNCE step, all-MiniLM-L6-v2, batch {args.batch} queries + {args.batch} positives, CPU")
    print(f"{'implementation':<22} {'chunk':>7} {'peak RSS above start':>22} {'seconds':>8} {'loss':>8}")
    for mode, chunk in runs:
        output = subprocess.run(
            [sys.executable, __file__, "--batch", str(args.batch), "--child", mode, str(chunk)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        row = json.loads(output.strip().splitlines()[-1])
        label = "uncached" if not chunk else str(chunk)
        print(
            f"{mode:<22} {label:>7} {row['peak_mib']:>18.0f} MiB {row['seconds']:>8.1f} {row['loss']:>8.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
