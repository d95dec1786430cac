"""``retrievals-rag mine``: mine hard negatives with an embedder and write triplet records (JSON Lines)."""

from __future__ import annotations

import argparse
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
        "mine",
        help="mine hard negatives from a BEIR-format dataset",
        description="Rank the corpus of a BEIR-format dataset for each query of a split with an embedder "
        "(exact cosine search), draw negatives from the 0-based ranks START <= rank < END, never a positive "
        "(qrels score > 0), and write triplet records {query, positive, negative, query_id, positive_ids, "
        "negative_ids} to a .jsonl file. Documents are title + ' ' + text. Draws are reproducible per query "
        "from --seed and the query id.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--data", type=Path, required=True, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv"
    )
    parser.add_argument("--split", default="train", help="the qrels file to use (default: train)")
    parser.add_argument("--output", type=Path, required=True, help="the .jsonl file to write")
    parser.add_argument(
        "--rank-range",
        type=int,
        nargs=2,
        default=[10, 100],
        metavar=("START", "END"),
        help="0-based ranks to draw negatives from, END excluded (default: 10 100)",
    )
    parser.add_argument("--num-negatives", type=positive_int, default=8, help="negatives drawn per query")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (with each query id)")
    parser.add_argument(
        "--keep-query-id",
        action="store_true",
        help="allow the document whose id equals the query id as a negative (by default it is excluded)",
    )
    add_encoded_corpus_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from retrievals_rag.data.jsonl import write_jsonl
    from retrievals_rag.evaluation.beir import document_text, load_beir
    from retrievals_rag.retrieval.mining import mine_hard_negatives

    start = time.perf_counter()
    start_rank, end_rank = args.rank_range
    if not 0 <= start_rank < end_rank:
        raise ValueError(f"--rank-range must satisfy 0 <= START < END, got {start_rank} {end_rank}")
    with activity(f"reading {args.data}"):
        dataset = load_beir(args.data, args.split)
    positives = {
        query_id: [document_id for document_id, grade in judgments.items() if grade > 0]
        for query_id, judgments in dataset.qrels.items()
    }
    with_positives = sum(1 for query_id in dataset.queries if positives.get(query_id))
    model = load_embedder(args)
    print(
        f"data: {args.data} [{args.split}]: {len(dataset.queries)} queries, {len(dataset.corpus)} documents\n"
        f"model: {args.model or 'packaged all-MiniLM-L6-v2'} ({model.device})",
        file=sys.stderr,
    )
    corpus_embeddings = None
    if args.encoded_corpus is not None:
        from retrievals_rag.distributed.merge import encoded_corpus_for
        from retrievals_rag.models.loading import default_embedding_model_path

        model_path = args.model or default_embedding_model_path()
        corpus_embeddings = encoded_corpus_for(
            args.encoded_corpus, model_path, list(dataset.corpus), model=model
        )
    records = mine_hard_negatives(
        model,
        list(dataset.corpus),
        [document_text(document) for document in dataset.corpus.values()],
        dataset.queries,
        positives,
        rank_range=(start_rank, end_rank),
        num_negatives=args.num_negatives,
        seed=args.seed,
        exclude_query_id=not args.keep_query_id,
        batch_size=args.batch_size,
        token_budget=args.token_budget,
        show_progress_bar=on_terminal(),
        corpus_embeddings=corpus_embeddings,
    )
    write_jsonl(records, args.output)
    counts = [len(record["negative"]) for record in records]
    spread = f"{min(counts)} to {max(counts)}, mean {sum(counts) / len(counts):.2f}" if counts else "none"
    print(
        f"mined {len(records)} of {len(dataset.queries)} queries; "
        f"skipped {len(dataset.queries) - with_positives} without positives, "
        f"{with_positives - len(records)} without candidates in ranks [{start_rank}, {end_rank})\n"
        f"negatives per query: {spread} (asked for {args.num_negatives})\n"
        f"wrote {args.output} in {time.perf_counter() - start:.1f}s"
    )
    return 0
