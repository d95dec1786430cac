"""Query-likelihood scoring (UPR) throughput: our ``LLMRanker(scoring="query_likelihood")`` against the usual way
of computing it with transformers, on the same tokens.

The anchor is what UPR's reference code and most blog recipes do: run the causal LM over the whole (passage,
prompt, query) sequence, take the full ``(batch, length, vocabulary)`` logits, log-softmax them and gather the
query tokens' log-probabilities. Ours sends only the positions that predict a query token through the LM head
(SmolLM2's vocabulary is 49,152: the head over every position is most of the cost for short queries), batches by
tokens, and reads the same layout. Both sides get exactly the token ids that our ranker builds
(``tokenize_pairs``), in batches of ``--batch-size`` pairs padded on the right, so the scores must agree to float
precision; the largest difference is printed.

Rounds alternate the two sides (the order flips each round); the median round is reported. The model is the
packaged SmolLM2-135M-Instruct (converted from its GGUF once per machine) unless ``--model`` names a causal-LM
folder. Uses the GPU when there is one.

Measured here (``--data ../shared/data/scifact --queries 3 --candidates 10 --rounds 3``: 30 pairs of 243 tokens on
average, 14 of them query; one CPU thread, the other core busy with another job): ours 1.09 pairs/s, full logits
0.77 pairs/s (1.42x), largest score difference 1.43e-06.

Usage::

    python examples/benchmarks/bench_query_likelihood.py                          # tests/data/scifact_subset
    python examples/benchmarks/bench_query_likelihood.py --data path/to/beir/scifact --queries 5 --candidates 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from retrievals_rag.cli.common import RawDescriptionHelpFormatter  # help that shows the defaults

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rerank import alternate, workload  # noqa: E402  (a sibling script)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=REPO_ROOT / "tests" / "data" / "scifact_subset", help="BEIR folder"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="causal-LM folder (default: packaged SmolLM2)"
    )
    parser.add_argument("--queries", type=int, default=2, help="queries scored per round")
    parser.add_argument("--candidates", type=int, default=10, help="documents per query")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each side")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per forward pass, both sides")
    parser.add_argument(
        "--max-length", type=int, default=256, help="tokens per input (passage window + query)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available, else cpu)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import numpy as np
    import torch

    from retrievals_rag.llm.query_likelihood import query_likelihood_ranker
    from retrievals_rag.models.batching import pad_sequences

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ranker = query_likelihood_ranker(args.model, max_length=args.max_length, device=str(device))
    model = ranker.model  # the same transformers causal LM, used whole by the anchor
    pairs = [
        (query, document)
        for query, documents in workload(args.data, args.queries, args.candidates)
        for document in documents
    ]
    rows = ranker.tokenize_pairs(pairs)
    print(
        f"{len(pairs)} pairs ({args.queries} queries x {args.candidates} documents), "
        f"{sum(len(ids) for ids, _ in rows) / len(rows):.0f} tokens each on average, "
        f"{sum(sum(mask or []) for _, mask in rows) / len(rows):.1f} of them query; {device}, "
        f"{torch.get_num_threads()} threads"
    )

    def ours() -> list[float]:
        return ranker.compute_score(pairs, batch_size=args.batch_size)

    def full_logits() -> list[float]:
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(rows), args.batch_size):
                batch = rows[start : start + args.batch_size]
                input_ids, attention_mask = pad_sequences([ids for ids, _ in batch], 0, "right")
                query_mask = pad_sequences([mask for _, mask in batch], 0, "right")[0]  # type: ignore[misc]
                logits = model(
                    input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
                ).logits
                log_probs = logits[:, :-1].float().log_softmax(-1)  # position i predicts token i + 1
                gathered = log_probs.gather(2, input_ids[:, 1:, None].to(device)).squeeze(2)
                flags = query_mask[:, 1:].to(device).float()
                scores += (gathered * flags).sum(1).div(flags.sum(1)).tolist()
        return scores

    rates, values = alternate(
        {"ours": ours, "full logits": full_logits}, args.rounds, device, len(pairs), "pairs"
    )
    difference = float(np.max(np.abs(np.asarray(values["ours"]) - np.asarray(values["full logits"]))))
    ratio = rates["ours"] / rates["full logits"]
    print(
        f"query likelihood: ours {rates['ours']:.2f} pairs/s, full logits {rates['full logits']:.2f} pairs/s "
        f"({ratio:.2f}x); largest score difference {difference:.2e}"
    )
    return {"pairs": len(pairs), "rates": rates, "ratio": ratio, "max_difference": difference}


if __name__ == "__main__":
    main()
