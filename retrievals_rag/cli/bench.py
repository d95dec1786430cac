"""``retrievals-rag bench encode``: our encode against sentence-transformers' on the same weights, same run.

Both encoders alternate round by round (the order flips each round, so neither always runs on a warmer
machine); the median of the rounds is reported, with the largest difference between the two sets of vectors.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from retrievals_rag.cli.common import activity, positive_int, report_time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks against the reference libraries")
    benches = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    encode = benches.add_parser(
        "encode",
        help="documents/s of our encode vs sentence-transformers' encode",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encode.add_argument("--data", type=Path, required=True, help="BEIR folder (its corpus.jsonl is encoded)")
    encode.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    encode.add_argument("--n-docs", type=positive_int, default=1000, help="documents encoded, from the start")
    encode.add_argument("--rounds", type=positive_int, default=3, help="timed rounds of each encoder")
    encode.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available, else cpu)")
    encode.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default=None,
        help="our dtype (default: float16 on a GPU, float32 on the CPU)",
    )
    encode.add_argument(
        "--st-dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="sentence-transformers' dtype (default: float32, its own default)",
    )
    encode.add_argument(
        "--token-budget",
        type=positive_int,
        default=None,
        help="our most padded tokens per batch (default: ours)",
    )
    encode.add_argument(
        "--batch-size", type=positive_int, default=None, help="our most rows per batch (default: ours)"
    )
    encode.add_argument(
        "--st-batch-size", type=positive_int, default=32, help="sentence-transformers' batch size"
    )
    encode.set_defaults(handler=run_encode)


def _timed(function: Any, device: Any) -> tuple[Any, float]:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    value = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return value, time.perf_counter() - start


def run_encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from retrievals_rag.evaluation.beir import document_text, load_corpus
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.models.loading import default_embedding_model_path, resolve_device

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise SystemExit(
            "error: the benchmark needs sentence-transformers: pip install sentence-transformers"
        ) from error

    start = time.perf_counter()
    corpus = load_corpus(Path(args.data) / "corpus.jsonl")
    documents = [document_text(document) for document in list(corpus.values())[: args.n_docs]]
    model_path = str(args.model or default_embedding_model_path())
    device = resolve_device(args.device)
    dtype = args.dtype or ("float16" if device.type == "cuda" else "float32")
    ours = AutoModelForEmbedding.from_pretrained(model_path, device=device, dtype=dtype)
    theirs = SentenceTransformer(model_path, device=str(device))
    theirs.to(getattr(torch, args.st_dtype))

    def encode_ours() -> np.ndarray:
        return ours.encode(
            documents, batch_size=args.batch_size, token_budget=args.token_budget, show_progress_bar=False
        )

    def encode_theirs() -> np.ndarray:
        return theirs.encode(documents, batch_size=args.st_batch_size, convert_to_numpy=True)

    # Warm-up: kernels, allocator, tokenizer caches.
    ours.encode(documents[:64], show_progress_bar=False)
    theirs.encode(documents[:64], batch_size=args.st_batch_size)

    our_times: list[float] = []
    their_times: list[float] = []
    our_vectors = their_vectors = None
    for round_index in range(args.rounds):
        order = [("ours", encode_ours), ("theirs", encode_theirs)]
        if round_index % 2:
            order.reverse()
        for name, function in order:
            with activity(f"round {round_index + 1}: {name}"):
                vectors, seconds = _timed(function, device)
            if name == "ours":
                our_vectors, our_times = vectors, [*our_times, seconds]
            else:
                their_vectors, their_times = vectors, [*their_times, seconds]
        print(
            f"round {round_index + 1}: ours {len(documents) / our_times[-1]:.1f} docs/s, "
            f"sentence-transformers {len(documents) / their_times[-1]:.1f} docs/s"
        )
    ours_rate = len(documents) / statistics.median(our_times)
    theirs_rate = len(documents) / statistics.median(their_times)
    difference = float(
        np.abs(np.asarray(our_vectors, dtype=np.float32) - np.asarray(their_vectors, np.float32)).max()
    )
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    )
    print(
        f"\nencode {len(documents)} documents of {args.data} with {Path(model_path).name} on {device_name}\n"
        f"  retrievals_rag ({dtype}):        {ours_rate:8.1f} docs/s\n"
        f"  sentence-transformers ({args.st_dtype}): {theirs_rate:8.1f} docs/s\n"
        f"  ratio: {ours_rate / theirs_rate:.3f}x   max |difference|: {difference:.2e}   "
        f"(median of {args.rounds} rounds)"
    )
    report_time("benchmark", start)
    return 0
