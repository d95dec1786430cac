"""``retrievals-rag evaluate``: dense retrieval metrics of an embedder on a BEIR-format dataset."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from retrievals_rag.cli.common import (
    activity,
    add_encoded_corpus_argument,
    add_model_arguments,
    load_embedder,
    on_terminal,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate an embedder on a BEIR-format dataset",
        description="Encode a BEIR-format corpus and its queries, retrieve exactly, and print nDCG, MAP, MRR, "
        "recall, precision and hit rate at each k.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--data", required=True, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv"
    )
    parser.add_argument("--split", default="test", help="the qrels file to evaluate on: qrels/SPLIT.tsv")
    parser.add_argument(
        "--k", type=positive_int, nargs="+", default=[1, 3, 5, 10, 100], help="cutoffs of the metrics"
    )
    parser.add_argument(
        "--score-function", choices=["cos", "dot"], default="cos", help="similarity of query and document"
    )
    parser.add_argument(
        "--ignore-identical-ids",
        action="store_true",
        help="drop retrieved documents whose id is the query id (default: kept)",
    )
    parser.add_argument(
        "--output-json", type=Path, default=None, help="also write the results to this file (default: none)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="check every query record and stop on an empty query (default: records the split does not use "
        "are not checked, and the split's empty queries are skipped with a warning and counted)",
    )
    add_encoded_corpus_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from retrievals_rag.evaluation.beir import load_beir
    from retrievals_rag.evaluation.evaluator import RetrievalEvaluator

    start = time.perf_counter()
    with activity(f"reading {args.data}"):
        dataset = load_beir(args.data, args.split, strict=args.strict)
    evaluator = RetrievalEvaluator(
        dataset.corpus,
        dataset.queries,
        dataset.qrels,
        k_values=args.k,
        score_function=args.score_function,
        batch_size=args.batch_size,
        token_budget=args.token_budget,
        ignore_identical_ids=args.ignore_identical_ids,
        show_progress_bar=on_terminal(),
    )
    model = load_embedder(args)
    skipped = len(dataset.skipped_queries)
    print(
        f"model: {args.model or 'packaged all-MiniLM-L6-v2'} ({model.pooling_method} pooling, "
        f"max_length {model.max_length}, {model.device})\n"
        f"data: {args.data} [{args.split}]: {len(evaluator.query_ids)} queries, "
        f"{len(evaluator.document_ids)} documents"
        + (f", {skipped} empty quer{'y' if skipped == 1 else 'ies'} skipped" if skipped else ""),
        file=sys.stderr,
    )
    corpus_embeddings = None
    if args.encoded_corpus is not None:
        from retrievals_rag.distributed.merge import encoded_corpus_for
        from retrievals_rag.models.loading import default_embedding_model_path

        model_path = args.model or default_embedding_model_path()
        corpus_embeddings = encoded_corpus_for(
            args.encoded_corpus, model_path, evaluator.document_ids, model=model
        )
    result = evaluator.evaluate(model, corpus_embeddings=corpus_embeddings)
    total = time.perf_counter() - start
    print(result.table())
    timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.timings.items())
    print(f"\n{timings}; total {total:.1f}s", file=sys.stderr)
    if args.output_json is not None:
        payload = {
            "model": str(args.model or "packaged all-MiniLM-L6-v2"),
            "data": str(args.data),
            "split": args.split,
            "num_queries": len(evaluator.query_ids),
            "num_documents": len(evaluator.document_ids),
            "num_skipped_queries": skipped,
            "metrics": result.metrics,
            "timings": {**result.timings, "total": total},
        }
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output_json}", file=sys.stderr)
    return 0
