"""Two runs on the same queries, compared per query: is the difference of their nDCG@10 more than chance?

A paired bootstrap over the judged queries (resampled with replacement, ``--samples`` times) gives the mean
difference, its 95% interval and the share of resamples where the first run is worse; with ``--first-stage`` both
runs are also compared after mixing each with it (``interpolate_runs``, ``--weight``). This is how the README's
"ours vs sentence-transformers" cross-encoder rows were judged:

    python examples/reranking/compare_runs.py --data path/to/beir/scifact \\
        runs/ce-distill2/test-run-ours.json runs/ce-distill2/test-run-sentence-transformers.json \\
        --first-stage runs/scifact-dense.json

Either side may be a glob pattern (quoted) naming several runs, e.g. the same recipe trained with other seeds:
each query's nDCG@10 is then the mean over that side's runs, so the interval covers the queries' spread with
the training noise averaged out:

    python examples/reranking/compare_runs.py --data path/to/beir/scifact --first-stage runs/scifact-dense.json \\
        'runs/ce-distill*/test-run-ours.json' 'runs/ce-distill*/test-run-sentence-transformers.json'
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from glob import glob
from pathlib import Path

import numpy as np

from retrievals_rag.cli.common import RawDescriptionHelpFormatter  # help that shows the defaults
from retrievals_rag.evaluation.beir import load_beir
from retrievals_rag.evaluation.metrics import evaluate_run_per_query
from retrievals_rag.evaluation.reranking import read_run
from retrievals_rag.retrieval.fusion import interpolate_runs

Run = Mapping[str, Mapping[str, float]]


def per_query_ndcg(qrels: Mapping[str, Mapping[str, int]], run: Run) -> np.ndarray:
    """nDCG@10 of every judged query, in sorted query order (0 for a query the run does not answer)."""
    found = evaluate_run_per_query(qrels, run, k_values=(10,), metrics=("ndcg",))
    return np.array([found.get(query, {}).get("nDCG@10", 0.0) for query in sorted(qrels)])


def expand(pattern: str) -> list[Path]:
    """The run files a command-line argument names: one path, or every file a glob pattern matches (sorted)."""
    if not any(char in pattern for char in "*?["):
        return [Path(pattern)]
    found = sorted(Path(path) for path in glob(pattern))
    if not found:
        raise SystemExit(f"no run file matches {pattern}")
    return found


def mean_per_query_ndcg(qrels: Mapping[str, Mapping[str, int]], runs: Sequence[Run]) -> np.ndarray:
    """Each judged query's nDCG@10 averaged over ``runs`` (seeds of one recipe), in sorted query order."""
    return np.mean([per_query_ndcg(qrels, run) for run in runs], axis=0)


def paired_bootstrap(first: np.ndarray, second: np.ndarray, samples: int, seed: int) -> dict[str, float]:
    """Mean of ``first - second``, its 95% bootstrap interval and the share of resamples below 0."""
    differences = first - second
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), (samples, len(differences)))].mean(axis=1)
    return {
        "first": float(first.mean()),
        "second": float(second.mean()),
        "difference": float(differences.mean()),
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
        "p_first_worse": float(np.mean(means < 0)),
        "better": int((differences > 0).sum()),
        "worse": int((differences < 0).sum()),
        "tied": int((differences == 0).sum()),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument(
        "first", help="a run file (.json or TREC), or a quoted glob pattern of several (seeds)"
    )
    parser.add_argument("second", help="the run(s) it is compared with")
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder whose qrels judge both")
    parser.add_argument("--split", default="test", help="the qrels split")
    parser.add_argument(
        "--first-stage", type=Path, default=None, help="also compare both mixed with this run (default: none)"
    )
    parser.add_argument("--weight", type=float, default=0.5, help="the reranker's share when mixing")
    parser.add_argument("--samples", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)

    qrels = load_beir(args.data, args.split).qrels
    first_files, second_files = expand(args.first), expand(args.second)
    first, second = [read_run(path) for path in first_files], [read_run(path) for path in second_files]
    pairs: dict[str, tuple[list[Run], list[Run]]] = {"alone": (first, second)}
    if args.first_stage is not None:
        base = read_run(args.first_stage)
        pairs[f"mixed with the first stage, weight {args.weight:g}"] = (
            [interpolate_runs(base, run, args.weight) for run in first],
            [interpolate_runs(base, run, args.weight) for run in second],
        )
    results = {}
    named = [
        files[0].name if len(files) == 1 else f"{pattern} (mean of {len(files)} runs)"
        for pattern, files in ((args.first, first_files), (args.second, second_files))
    ]
    print(f"{named[0]} vs {named[1]}, nDCG@10 over {len(qrels)} judged queries")
    for label, (one, other) in pairs.items():
        found = paired_bootstrap(
            mean_per_query_ndcg(qrels, one), mean_per_query_ndcg(qrels, other), args.samples, args.seed
        )
        results[label] = found
        print(
            f"{label}: {found['first']:.4f} vs {found['second']:.4f}, difference {found['difference']:+.4f} "
            f"(95% interval {found['low']:+.4f} to {found['high']:+.4f}; first worse in "
            f"{found['p_first_worse']:.0%} of resamples); queries better / worse / tied: "
            f"{found['better']} / {found['worse']} / {found['tied']}"
        )
    return results


if __name__ == "__main__":
    main()
