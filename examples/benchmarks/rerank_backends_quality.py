"""Does an exported (int8) reranker rank like the torch one? Reranked SciFact nDCG@10 per backend, same candidates.

Each judged test query gets a fixed pool of ``--candidates`` documents: its relevant documents plus documents drawn
at random (seeded) from the corpus. Every backend scores the same pools (``compute_score``, one window per
document); the run of each is evaluated (nDCG@10, MRR@10) and the largest score difference from torch printed.
The pools need no first-stage retrieval (no corpus encoding), so the comparison of backends is quick; the figures
are those of reranking these pools, not of a full retrieval pipeline.

    retrievals-rag export runs/cross-encoder --backend onnx-int8 openvino-int8
    python examples/benchmarks/rerank_backends_quality.py --data ../shared/data/scifact --model runs/cross-encoder \
        --backend torch onnx-int8 openvino-int8
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder")
    parser.add_argument("--split", default="test", help="qrels split (default: test)")
    parser.add_argument("--model", type=Path, required=True, help="a cross-encoder (or ColBERT) folder")
    parser.add_argument(
        "--backend",
        nargs="+",
        default=["torch", "onnx-int8", "openvino-int8"],
        help="backends compared, the first is the reference (default: torch onnx-int8 openvino-int8)",
    )
    parser.add_argument("--candidates", type=int, default=20, help="documents per query (default: 20)")
    parser.add_argument("--limit-queries", type=int, default=None, help="the first N queries (default: all)")
    args = parser.parse_args()

    import numpy as np

    from retrievals_rag.evaluation.beir import document_text, load_beir
    from retrievals_rag.evaluation.metrics import evaluate_run
    from retrievals_rag.models.registry import load_model

    dataset = load_beir(args.data, args.split)
    generator = random.Random(0)
    corpus_ids = list(dataset.corpus)
    query_ids = [
        query for query, judged in dataset.qrels.items() if any(grade > 0 for grade in judged.values())
    ]
    query_ids = query_ids[: args.limit_queries]
    pools: dict[str, list[str]] = {}
    for query in query_ids:
        relevant = [document for document, grade in dataset.qrels[query].items() if grade > 0]
        others = [
            document for document in generator.sample(corpus_ids, args.candidates) if document not in relevant
        ]
        pools[query] = (relevant + others)[: max(args.candidates, len(relevant))]
    pairs = [
        (dataset.queries[query], document_text(dataset.corpus[document]))
        for query in query_ids
        for document in pools[query]
    ]
    qrels = {query: dataset.qrels[query] for query in query_ids}
    reference = None
    print(
        f"{args.data.name} {args.split}: {len(query_ids)} queries x {args.candidates} candidates ({len(pairs)} pairs)"
    )
    for backend in args.backend:
        model = load_model(
            args.model, "auto", options={"device": "cpu", "backend": backend, "max_windows": 1}
        )
        start = time.perf_counter()
        scores = np.asarray(model.compute_score(pairs), dtype=np.float64)
        seconds = time.perf_counter() - start
        run: dict[str, dict[str, float]] = {}
        position = 0
        for query in query_ids:
            run[query] = {document: float(scores[position + i]) for i, document in enumerate(pools[query])}
            position += len(pools[query])
        metrics = evaluate_run(qrels, run, k_values=[10])
        difference = "-" if reference is None else f"{np.abs(scores - reference).max():.2e}"
        reference = scores if reference is None else reference
        print(
            f"  {backend:14s} nDCG@10 {metrics['nDCG@10']:.4f}  MRR@10 {metrics['MRR@10']:.4f}  "
            f"max |score - torch| {difference}  ({len(pairs) / seconds:.0f} pairs/s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
