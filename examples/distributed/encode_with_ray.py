"""Encode a BEIR corpus with Ray Data, merge the shards, and check them against one ordinary encode.

Starts a local Ray cluster (``--num-cpus``, loopback only) unless ``--address`` names a running one
(``ray start --head`` on the head node, ``ray start --address HEAD:6379`` on the others, then
``--address auto``). The corpus is encoded by ``--actors`` encoder actors into ``--shards`` shards, merged
into an exact index, and compared with the one-process encode: vectors (max |diff|), ids and order, and
the retrieval metrics of the merged index against :class:`RetrievalEvaluator` on the same data.

Usage::

    python examples/distributed/encode_with_ray.py                                   # SciFact subset, MiniLM
    python examples/distributed/encode_with_ray.py --data ../shared/data/scifact --actors 4 --num-cpus 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "scifact_subset")
    parser.add_argument("--model", default=None, help="embedder folder (default: the packaged MiniLM)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local cluster started here")
    parser.add_argument("--address", default=None, help="a running cluster (auto, HOST:6379)")
    args = parser.parse_args()

    import numpy as np
    import ray

    from retrievals_rag import AutoModelForEmbedding
    from retrievals_rag.distributed.merge import build_index, load_encoded_corpus
    from retrievals_rag.distributed.ray import encode_with_ray
    from retrievals_rag.evaluation.evaluator import RetrievalEvaluator
    from retrievals_rag.evaluation.metrics import evaluate_run
    from retrievals_rag.models.loading import default_embedding_model_path

    model_path = args.model or str(default_embedding_model_path())
    if args.address is None:
        ray.init(
            num_cpus=args.num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False
        )
    else:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        outcomes = encode_with_ray(
            args.data / "corpus.jsonl", scratch, model_path, num_shards=args.shards, concurrency=args.actors,
            num_cpus=args.cpus_per_actor, model_options={"device": "cpu"},
        )  # fmt: skip
        rows = sum(outcome.rows for outcome in outcomes)
        seconds = time.perf_counter() - start
        print(
            f"Ray Data: {rows} documents in {len(outcomes)} shards, {seconds:.1f}s ({rows / seconds:.1f} docs/s, actors started included)"
        )
        corpus = load_encoded_corpus(scratch, expected_model=model_path)

        model = AutoModelForEmbedding.from_pretrained(model_path, device="cpu")
        evaluator = RetrievalEvaluator.from_beir(args.data)
        reference = model.encode_corpus(evaluator.document_texts)
        print(
            f"vectors vs one-process encode: same ids and order {corpus.ids == evaluator.document_ids}, "
            f"max |diff| {float(np.abs(corpus.embeddings - reference).max()):.2e}"
        )
        expected = evaluator.evaluate(model, corpus_embeddings=reference).metrics
        run = build_index(corpus, "exact").to_run(
            evaluator.query_ids, model.encode_queries(evaluator.query_texts), top_k=max(evaluator.k_values)
        )
        merged = evaluate_run(evaluator.qrels, run, k_values=evaluator.k_values)
        for name in ("nDCG@10", "Recall@100", "MRR@10"):
            print(f"{name}: merged Ray index {merged[name]:.4f}, evaluator {expected[name]:.4f}")
        print(
            f"largest metric difference: {max(abs(merged[name] - expected[name]) for name in expected):.2e}"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
