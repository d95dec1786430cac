"""``retrievals-rag bench encode|rerank``: ours against sentence-transformers on the same weights, same run.

``encode``: documents/s of our ``encode`` against sentence-transformers' ``encode``; ``rerank``: pairs/s of our
cross-encoder's ``compute_score`` against ``CrossEncoder.predict``. With ``--backend`` (ours) and
``--st-backend`` (theirs: torch always, and its ONNX / OpenVINO where ``--st-python`` has optimum), every
contender runs once per round, the order rotated each round; the median round is reported, with each one's ratio
to sentence-transformers' torch path and the largest difference of its vectors / scores from it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from retrievals_rag.cli.common import activity, positive_int, report_time
from retrievals_rag.models.backends.record import BACKEND_NAMES

BACKEND_CHOICES = list(BACKEND_NAMES)
# sentence-transformers' backends (st_worker.py); its openvino-int8 is static int8, calibrated
ST_BACKEND_CHOICES = ["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
ST_COUNTERPART = {"openvino-int8-static": "openvino-int8"}


def _add_backend_options(parser: argparse.ArgumentParser, unit: str) -> None:
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=BACKEND_CHOICES,
        default=None,
        help="our backends (exported into a copy of the model under --work-dir as needed); with this option "
        f"every contender is run on the CPU and {unit} of each are printed (default: "
        + ("none: our encode against sentence-transformers', on --device" if unit == "docs/s" else "torch")
        + ")",
    )
    parser.add_argument(
        "--st-backend",
        nargs="+",
        choices=ST_BACKEND_CHOICES,
        default=None,
        help="sentence-transformers' backends (default: torch plus those matching --backend; its openvino-int8 "
        "is static int8, calibrated on texts apart from the timed ones)",
    )
    parser.add_argument(
        "--st-python",
        default=None,
        help="Python that runs sentence-transformers' contenders (one with optimum for its ONNX / OpenVINO "
        "backends); default: this one",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="model copies and exports, reused between runs (default: a new temporary folder)",
    )


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
    _add_backend_options(encode, "docs/s")
    encode.set_defaults(handler=run_encode)
    rerank = benches.add_parser(
        "rerank",
        help="pairs/s of our cross-encoder vs sentence-transformers' CrossEncoder.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rerank.add_argument("--data", type=Path, required=True, help="BEIR folder (queries and corpus)")
    rerank.add_argument("--model", required=True, help="a cross-encoder folder")
    rerank.add_argument(
        "--queries", type=positive_int, default=10, help="queries, from the start of the file"
    )
    rerank.add_argument("--candidates", type=positive_int, default=100, help="documents per query")
    rerank.add_argument("--rounds", type=positive_int, default=3, help="timed rounds of each contender")
    rerank.add_argument("--st-batch-size", type=positive_int, default=32, help="sentence-transformers' batch")
    _add_backend_options(rerank, "pairs/s")
    rerank.set_defaults(handler=run_rerank)


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
    if args.backend is not None:
        return run_backends(args, "encode")
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


def _documents(data: Path, count: int) -> list[str]:
    from retrievals_rag.evaluation.beir import document_text, load_corpus

    corpus = load_corpus(Path(data) / "corpus.jsonl")
    return [document_text(document) for document in list(corpus.values())[:count]]


def _pairs(data: Path, n_queries: int, n_candidates: int) -> list[tuple[str, str]]:
    """Each of the first ``n_queries`` queries with ``n_candidates`` documents of the corpus (seeded)."""
    import random

    from retrievals_rag.evaluation.beir import load_queries

    documents = _documents(data, 10**9)
    queries = list(load_queries(Path(data) / "queries.jsonl").values())[:n_queries]
    generator = random.Random(0)
    return [
        (query, document)
        for query in queries
        for document in generator.sample(documents, min(n_candidates, len(documents)))
    ]


def run_rerank(args: argparse.Namespace) -> int:
    if args.backend is None:
        args.backend = ["torch"]
    return run_backends(args, "rerank")


def run_backends(args: argparse.Namespace, kind: str) -> int:
    """Ours with each ``--backend`` against sentence-transformers with each ``--st-backend``, alternating."""
    import json
    import sys
    import tempfile

    import torch

    from retrievals_rag.cli.bench_backends import alternate, prepare_folders, report, st_worker
    from retrievals_rag.models.loading import default_embedding_model_path

    model = Path(args.model or default_embedding_model_path())
    st_backends = args.st_backend or list(
        dict.fromkeys(["torch", *(ST_COUNTERPART.get(name, name) for name in args.backend)])
    )
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="retrievals-rag-bench-"))
    # static int8 (ours and sentence-transformers') is calibrated on the same texts
    if kind == "encode":
        inputs: list[Any] = _documents(args.data, args.n_docs)
        calibration: list[Any] = _documents(args.data, args.n_docs + 300)[args.n_docs :]
    else:
        inputs = _pairs(args.data, args.queries, args.candidates)
        calibration = inputs[:300]
    ours_folder, st_folder = prepare_folders(model, work_dir, args.backend, calibration)
    calibration = calibration if kind == "encode" else [" ".join(pair) for pair in calibration]
    inputs_file = work_dir / f"{kind}-inputs.json"
    inputs_file.write_text(json.dumps(inputs), encoding="utf-8")
    contenders = []
    for backend in args.backend:  # each in its own process, as sentence-transformers' (no shared threads)
        setup = {"library": "retrievals_rag", "kind": kind, "model": str(ours_folder), "backend": backend}
        setup["inputs"] = str(inputs_file)
        output = work_dir / f"{kind}-ours-{backend}.npy"
        output.unlink(missing_ok=True)
        name = f"retrievals_rag {backend}"
        contenders.append(st_worker(name, sys.executable, setup, output))
        if contenders[-1].error:
            print(f"{name}: unavailable ({contenders[-1].error[:200]})", file=sys.stderr)
    for backend in st_backends:
        setup = {
            "kind": kind,
            "model": str(st_folder),
            "backend": backend,
            "inputs": str(inputs_file),
            "batch_size": args.st_batch_size,
            "calibration": calibration,
        }
        output = work_dir / f"{kind}-st-{backend}.npy"
        output.unlink(missing_ok=True)
        name = f"sentence-transformers {backend}"
        contenders.append(st_worker(name, args.st_python or sys.executable, setup, output))
        if contenders[-1].error:
            print(f"{name}: unavailable ({contenders[-1].error[:200]})", file=sys.stderr)
    unit = "docs/s" if kind == "encode" else "pairs/s"
    try:
        alternate(contenders, args.rounds, len(inputs), unit)
    finally:
        for contender in contenders:
            contender.close()
    title = (
        f"{kind} {len(inputs)} {'documents' if kind == 'encode' else 'pairs'} of {args.data} with {model.name} "
        f"on cpu x{torch.get_num_threads()} (median of {args.rounds} rounds)"
    )
    rows = report(contenders, len(inputs), unit, "sentence-transformers torch", title)
    (work_dir / f"{kind}-results.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {work_dir / f'{kind}-results.json'}", file=sys.stderr)
    return 0
