"""``retrievals-rag index``: index files and folders into a Chroma collection (bulk, resumable)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from retrievals_rag.cli.common import report_time

DEFAULT_DATA_DIR = "rag-data"


def default_data_dir() -> str:
    """``$RETRIEVALS_RAG_DATA_DIR`` if set, else ``./rag-data``: the folder the app uses too."""
    return os.environ.get("RETRIEVALS_RAG_DATA_DIR") or DEFAULT_DATA_DIR


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the engine's folder (embedded Chroma database); default: $RETRIEVALS_RAG_DATA_DIR or ./rag-data",
    )
    parser.add_argument(
        "--chroma-url",
        default=None,
        help="a Chroma server (http://127.0.0.1:8000) instead of the embedded database; "
        "default: $RETRIEVALS_RAG_CHROMA_URL",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="index documents into a Chroma collection",
        description="Index files and folders (PDF, text, Markdown, HTML, DOCX, CSV, JSON lines) into a collection. "
        "Chunk ids are content hashes, so running it again adds only what is missing (an interrupted run "
        "resumes). A file that cannot be loaded is reported and the others are indexed; the exit status is 1 "
        "when any file failed.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files and folders (folders: recursively)")
    parser.add_argument("--collection", required=True, help="the collection (created if missing)")
    add_store_arguments(parser)
    parser.add_argument(
        "--embedder", default=None, help="embedding model folder (default: the packaged all-MiniLM-L6-v2)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available, else cpu)")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: a bar on a terminal)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from retrievals_rag.rag import RagEngine
    from retrievals_rag.rag.indexing import left_out_message
    from retrievals_rag.rag.store import validate_collection_name

    start = time.perf_counter()
    validate_collection_name(args.collection)  # before loading any model
    engine = RagEngine(
        args.data_dir or default_data_dir(),
        chroma_url=args.chroma_url or os.environ.get("RETRIEVALS_RAG_CHROMA_URL") or None,
        embedder_path=args.embedder,
        device=args.device,
        llm="extractive",
    )
    # By chunks (the unit of work), with tqdm's rate and time left; files are read first, so the total is known.
    bar = tqdm(unit="chunk", desc=f"indexing into {args.collection}", disable=args.no_progress or None)

    def show(progress: Any) -> None:
        if bar.total != progress.chunks_total:
            bar.total = progress.chunks_total
        bar.update(progress.chunks_done - bar.n)
        files = (
            f"{progress.files_done}/{progress.files_total}" if progress.files_total else progress.files_done
        )
        bar.set_postfix(
            files=files, added=progress.chunks_added, skipped=progress.chunks_skipped, refresh=False
        )
        bar.refresh()

    try:
        report = engine.index_files(args.paths, args.collection, progress=show)
    finally:
        bar.close()
    print(
        f"{len(report.indexed)} file(s) indexed into {args.collection!r}: {report.chunks_added} chunk(s) added, "
        f"{report.chunks_skipped} already indexed; {len(report.errors)} file(s) failed"
    )
    for result in report.documents:
        if result.duplicate_of is not None:
            print(f"{result.source}: same text as {result.duplicate_of}, kept once under both names")
    for error in report.errors:
        print(f"failed: {error.path}: {error.reason}", file=sys.stderr)
    left_out = left_out_message(args.paths)
    if left_out:
        print(left_out)
    report_time(f"indexed {len(report.indexed)} file(s)", start)
    return 1 if report.errors else 0
