"""Time ``evaluate_run`` beside pytrec_eval (the anchor) on a SciFact-sized run: 300 queries x 100 documents.

    python examples/benchmarks/bench_metrics.py --rounds 5

Rounds alternate between the two in one process; the best round of each is printed with the ratio. (This used
to be a pass/fail test with a time limit, which a loaded machine failed; timings belong here.)
"""

from __future__ import annotations

import argparse
import random
import time

from retrievals_rag.evaluation.metrics import evaluate_run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=300, help="default: %(default)s")
    parser.add_argument(
        "--documents", type=int, default=100, help="retrieved per query (default: %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="default: %(default)s")
    args = parser.parse_args()
    rng = random.Random(0)
    qrels = {
        f"q{i}": {f"d{rng.randrange(5000)}": rng.randint(1, 3) for _ in range(3)} for i in range(args.queries)
    }
    run = {q: {f"d{rng.randrange(5000)}": rng.random() for _ in range(args.documents)} for q in qrels}
    import pytrec_eval

    measures = {"ndcg_cut.10", "recip_rank", "recall.100"}
    ours: list[float] = []
    anchor: list[float] = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        evaluate_run(qrels, run, k_values=[10, 100])
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
        anchor.append(time.perf_counter() - start)
    print(f"{args.queries} queries x {args.documents} documents, best of {args.rounds} rounds")
    print(f"evaluate_run (nDCG, MAP, MRR, Recall, P, HitRate at 10 and 100): {min(ours) * 1000:8.1f} ms")
    print(f"pytrec_eval (nDCG@10, MRR, Recall@100):                      {min(anchor) * 1000:8.1f} ms")
    print(f"ratio (pytrec_eval / ours): {min(anchor) / min(ours):.2f}x")


if __name__ == "__main__":
    main()
