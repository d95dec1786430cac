"""Adapt the packaged all-MiniLM-L6-v2 to SciFact's corpus without labels, then judge it with SciFact's real qrels.

For each generator given (``--generators cropping smollm2``...):

1. questions are generated for a seeded sample of ``--max-passages`` SciFact passages (the corpus alone: no
   query and no qrels of SciFact are used for training);
2. :func:`retrievals_rag.training.adapt.adapt_embedder` mines hard negatives with the base model, trains, and
   judges before / after on held-out generated questions;
3. the adapted model is evaluated on SciFact test with the real qrels, beside the zero-shot base model.

The table gives test nDCG@10 / Recall@100, the held-out verdict, the number of passages and questions, and the
generation throughput (questions/s). Beside it, what needs no training at all: BM25 over the same corpus, and each
model's dense ranking fused with BM25 by reciprocal rank fusion (``HybridSearch``'s fusion, k = 60). Everything goes to ``--output`` (one folder per generator;
``results.json``, which keeps the generators of earlier runs into the same folder; and each model's ranking of the
split, ``test_run-zero-shot.json``, ``test_run-<generator>.json``, which ``examples/reranking/compare_runs.py``
compares query by query); a rerun resumes the generated questions.

Usage (from the repository root):

    python examples/adapt/scifact_adapt.py --data ../shared/data/scifact --output runs/scifact-adapt \\
        --generators cropping smollm2 --max-passages 2000

Quick check on the test subset (seconds with a tiny model, ~1 min with MiniLM):

    python examples/adapt/scifact_adapt.py --data tests/data/scifact_subset --max-passages 60 --epochs 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from retrievals_rag import (
    AutoModelForEmbedding,
    BM25Retriever,
    RetrievalEvaluator,
    default_embedding_model_path,
    reciprocal_rank_fusion,
)
from retrievals_rag.cli.adapt import add_settings_arguments, settings_from_arguments
from retrievals_rag.cli.common import RawDescriptionHelpFormatter  # help that shows the defaults
from retrievals_rag.evaluation.beir import document_text, load_corpus
from retrievals_rag.evaluation.evaluator import EvaluationResult
from retrievals_rag.evaluation.metrics import evaluate_run
from retrievals_rag.evaluation.reranking import read_run, write_run
from retrievals_rag.retrieval.runs import CorpusEmbeddingCache
from retrievals_rag.training.adapt import adapt_embedder
from retrievals_rag.training.adapt_settings import AdaptProgress

GENERATORS = ("cropping", "title", "smollm2", "openai")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="BEIR SciFact folder (corpus, test qrels)")
    parser.add_argument(
        "--output", type=Path, default=Path("runs/scifact-adapt"), help="where everything goes"
    )
    parser.add_argument("--model", default=None, help="the embedder to adapt (default: the packaged MiniLM)")
    parser.add_argument(
        "--generators",
        nargs="+",
        choices=GENERATORS,
        default=["cropping", "smollm2"],
        help="generators to compare",
    )
    parser.add_argument("--split", default="test", help="qrels split of the final evaluation")
    parser.add_argument(
        "--zero-shot-run",
        type=Path,
        default=None,
        help="the starting model's ranking of the split written by an earlier run (test_run-zero-shot.json): "
        "judged instead of encoding the corpus again (about 15 minutes on one core; default: encode it)",
    )
    add_settings_arguments(parser.add_argument_group("adaptation"), skip=("generator",))
    args = parser.parse_args()

    start = time.perf_counter()
    model_path = args.model or str(default_embedding_model_path())
    passages = {  # the title on its own line, as `retrievals-rag adapt` reads a BEIR corpus
        doc_id: document_text(document, "\n")
        for doc_id, document in load_corpus(args.data / "corpus.jsonl").items()
    }
    evaluator = RetrievalEvaluator.from_beir(args.data, args.split, k_values=(1, 10, 100))
    if args.zero_shot_run is not None:
        zero_shot_run = read_run(args.zero_shot_run)
        if set(zero_shot_run) != set(evaluator.query_ids):
            parser.error(
                f"--zero-shot-run {args.zero_shot_run} ranks {len(zero_shot_run)} queries, the {args.split} split "
                f"has {len(evaluator.query_ids)}: not a ranking of this split"
            )
        zero_shot = EvaluationResult(
            evaluate_run(evaluator.qrels, zero_shot_run, evaluator.k_values), zero_shot_run
        )
    else:
        zero_shot = evaluator.evaluate(
            CorpusEmbeddingCache(AutoModelForEmbedding.from_pretrained(model_path))
        )
    write_run(args.output / f"{args.split}_run-zero-shot.json", zero_shot.run)
    print(
        f"zero-shot {args.split} nDCG@10 = {zero_shot.metrics['nDCG@10']:.4f}  ({time.perf_counter() - start:.0f}s)"
    )

    bm25 = BM25Retriever(evaluator.document_texts, ids=evaluator.document_ids)
    bm25_run = bm25.to_run(evaluator.query_ids, evaluator.query_texts, top_k=max(evaluator.k_values))

    def fused(dense_run: dict[str, dict[str, float]]) -> dict[str, float]:
        return evaluate_run(
            evaluator.qrels, reciprocal_rank_fusion([dense_run, bm25_run], k=60), evaluator.k_values
        )

    no_training = {
        "bm25": evaluate_run(evaluator.qrels, bm25_run, evaluator.k_values),
        "zero-shot + bm25": fused(zero_shot.run),
    }

    # generators judged by an earlier run into the same folder are kept (a rerun of one replaces its entry)
    earlier = args.output / "results.json"
    adapted = json.loads(earlier.read_text(encoding="utf-8")).get("adapted", {}) if earlier.is_file() else {}
    results: dict[str, Any] = {"zero_shot": zero_shot.metrics, "no_training": no_training, "adapted": adapted}
    for name in args.generators:
        settings = dataclasses.replace(settings_from_arguments(args, skip=("generator",)), generator=name)
        began = time.perf_counter()
        report = adapt_embedder(
            passages, args.output / name, base_model=model_path, settings=settings, progress=_printer(name)
        )
        adapted = evaluator.evaluate(AutoModelForEmbedding.from_pretrained(report.output_dir))
        write_run(args.output / f"{args.split}_run-{name}.json", adapted.run)
        minutes = (time.perf_counter() - began) / 60
        results["adapted"][name] = {
            "test": adapted.metrics,
            "test_with_bm25": fused(adapted.run),
            "report": report.to_dict(),
            "minutes": minutes,
        }
        print(f"\n{report.describe()}\n{name}: {args.split} nDCG@10 = {adapted.metrics['nDCG@10']:.4f}\n")
        _write(args.output / "results.json", results, args)

    print(
        f"\nSciFact {args.split} ({len(evaluator.query_ids)} queries, {len(evaluator.document_ids):,} documents)"
    )
    header = (
        f"{'model':<12}{'nDCG@10':>9}{'R@100':>8}{'held-out nDCG@10':>19}{'passages':>10}{'questions':>11}"
    )
    print(header + f"{'q/s':>11}{'minutes':>9}")
    print(f"{'zero-shot':<12}{zero_shot.metrics['nDCG@10']:>9.4f}{zero_shot.metrics['Recall@100']:>8.4f}")
    for name, metrics in no_training.items():
        print(f"{name:<12}{metrics['nDCG@10']:>9.4f}{metrics['Recall@100']:>8.4f}   (no training)")
    for name, entry in results["adapted"].items():
        report, test = entry["report"], entry["test"]
        verdict = report["verdict"]
        held = f"{verdict['before']['nDCG@10']:.3f} -> {verdict['after']['nDCG@10']:.3f}" if verdict else "-"
        print(
            f"{name:<12}{test['nDCG@10']:>9.4f}{test['Recall@100']:>8.4f}{held:>19}{report['passages_used']:>10}"
            f"{report['questions']:>11}{report['questions_per_second']:>11,.1f}{entry['minutes']:>9.1f}"
        )
        if "test_with_bm25" in entry:  # entries of runs before the BM25 rows have none
            with_bm25 = entry["test_with_bm25"]
            print(f"{name + ' + bm25':<12}{with_bm25['nDCG@10']:>9.4f}{with_bm25['Recall@100']:>8.4f}")
    print(f"wall time {(time.perf_counter() - start) / 60:.1f} min; results: {args.output / 'results.json'}")


def _printer(name: str) -> Any:
    """Print a line at each stage change and every 10% of a stage."""
    last: dict[str, float] = {}

    def show(step: AdaptProgress) -> None:
        share = step.done / step.total if step.total else 1.0
        if (
            step.stage not in last
            or share >= last[step.stage] + 0.1
            or (share == 1.0 and last[step.stage] < 1.0)
        ):
            last[step.stage] = share
            print(f"[{name}] {step.stage} {step.done}/{step.total}: {step.message}", flush=True)

    return show


def _write(path: Path, results: dict[str, Any], args: argparse.Namespace) -> None:
    arguments = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**results, "arguments": arguments}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
