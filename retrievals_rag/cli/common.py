"""Options shared by the subcommands that load an embedder."""

from __future__ import annotations

import argparse
from typing import Any


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=None,
        help="model folder (default: the packaged all-MiniLM-L6-v2)",
    )
    group.add_argument("--pooling", choices=["cls", "mean", "last", "weighted_mean"], default=None)
    group.add_argument(
        "--max-length", type=int, default=None, help="tokens per text, special tokens included"
    )
    group.add_argument("--query-instruction", default=None, help="prefix for queries; {} is the text")
    group.add_argument("--document-instruction", default=None, help="prefix for documents; {} is the text")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    group.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    group.add_argument("--trust-remote-code", action="store_true")
    group.add_argument("--batch-size", type=int, default=None, help="most texts per batch")
    group.add_argument("--token-budget", type=int, default=None, help="most padded tokens per batch")
    add_backend_argument(group)


def add_backend_argument(parser: Any, default: str = "torch") -> None:
    from retrievals_rag.models.backends.record import BACKEND_NAMES

    parser.add_argument(
        "--backend",
        choices=[*BACKEND_NAMES, "auto"],
        default=default,
        help="what runs the transformer: torch, a graph exported into the model folder by `retrievals-rag "
        f"export`, or auto (the fastest the folder holds on this device; default: {default})",
    )


def load_embedder(args: argparse.Namespace) -> Any:
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.models.loading import default_embedding_model_path

    return AutoModelForEmbedding.from_pretrained(
        args.model or default_embedding_model_path(),
        pooling_method=args.pooling,
        max_length=args.max_length,
        query_instruction=args.query_instruction,
        document_instruction=args.document_instruction,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        backend=args.backend,
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value
