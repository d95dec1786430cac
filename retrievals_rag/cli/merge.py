"""``retrievals-rag merge``: check the shards of ``encode --output-dir`` and join them into an index or Chroma."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from retrievals_rag.cli.common import activity


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="join encoded shards into an index or a Chroma collection",
        description="Check the shards written by `retrievals-rag encode --output-dir` (all present, none "
        "overlapping, all of one run, checksums intact) and join them in input order: into an exact index "
        "(embeddings.npy + ids.json), a faiss index (flat, IVF or HNSW), or a Chroma collection. Nothing is "
        "written when a check fails.",
    )
    parser.add_argument("shards", type=Path, help="the folder written by `encode --output-dir`")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", type=Path, help="the index folder to write")
    target.add_argument(
        "--data-dir",
        type=Path,
        help="the RAG engine's folder (as in `retrievals-rag index`): add the vectors to its embedded Chroma",
    )
    target.add_argument("--chroma-url", help="a Chroma server (http://host:port) to add the vectors to")
    parser.add_argument(
        "--index",
        choices=["exact", "faiss-flat", "faiss-ivf", "faiss-hnsw"],
        default="exact",
        help="with --output: the index to build (faiss kinds need the faiss extra; default: exact)",
    )
    parser.add_argument(
        "--faiss-factory",
        default=None,
        help="a faiss index factory string, e.g. IVF1024,PQ32 (default: the one --index picks)",
    )
    parser.add_argument(
        "--score-function",
        choices=["cos", "dot"],
        default="cos",
        help="similarity of the index (default: cos)",
    )
    parser.add_argument(
        "--collection",
        default=None,
        help="with --data-dir / --chroma-url: the collection (default: none; required there)",
    )
    parser.add_argument(
        "--model", default=None, help="refuse shards not encoded by this model folder (default: no check)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from retrievals_rag.distributed.merge import add_to_chroma, build_index, load_encoded_corpus, write_index

    start = time.perf_counter()
    if args.collection is not None and args.output is None:
        from retrievals_rag.rag.store import validate_collection_name

        validate_collection_name(args.collection)  # before reading the shards
    with activity(f"checking the shards in {args.shards}"):
        corpus = load_encoded_corpus(args.shards, expected_model=args.model)
    print(
        f"checked {args.shards}: {len(corpus.ids)} vectors of width {corpus.embeddings.shape[1]}",
        file=sys.stderr,
    )
    if args.output is not None:
        if args.collection is not None:
            raise ValueError("--collection goes with --data-dir or --chroma-url")
        with activity(f"building a {args.index} index of {len(corpus.ids)} vectors"):
            index = build_index(
                corpus, args.index, score_function=args.score_function, faiss_factory=args.faiss_factory
            )
            write_index(corpus, index, args.output)
        print(
            f"wrote a {args.index} index of {len(index)} vectors to {args.output} in {time.perf_counter() - start:.1f}s"
        )
        return 0
    if args.collection is None:
        raise ValueError("name the Chroma collection with --collection")
    from retrievals_rag.rag.connection import connect

    client = connect(args.data_dir, args.chroma_url)
    with activity(f"adding {len(corpus.ids)} vectors to {args.collection!r}"):
        written = add_to_chroma(corpus, client, args.collection)
    where = args.data_dir or args.chroma_url
    print(
        f"added {written} vectors to collection {args.collection!r} in {where} in {time.perf_counter() - start:.1f}s"
    )
    return 0
