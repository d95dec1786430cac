"""``retrievals-rag encode``: embed texts or a corpus file into a .npy or .safetensors file."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from retrievals_rag.cli.common import add_model_arguments, load_embedder, on_terminal, report_time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="embed texts or a corpus file",
        description="Embed texts into a float32 matrix. Inputs: --text (repeatable), or --input with a .jsonl file "
        "of {'_id', 'text', optional 'title'} records (BEIR corpus or queries) or a .txt file with one text per "
        "line (blank lines included, as empty texts). Ids from a .jsonl input are kept: in the .safetensors metadata, or beside a .npy as OUTPUT.ids.json.",
    )
    add_model_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to embed (repeat for several)")
    source.add_argument("--input", type=Path, help=".jsonl records or a .txt file with one text per line")
    parser.add_argument(
        "--kind",
        choices=["query", "document", "plain"],
        default="document",
        help="which instruction to apply: the model's query or document instruction, or none (plain)",
    )
    parser.add_argument("--output", type=Path, required=True, help="a .npy or .safetensors file")
    parser.set_defaults(handler=run)


def _read_inputs(args: argparse.Namespace) -> tuple[list[str] | None, list[str]]:
    """(ids or None, texts)."""
    if args.text is not None:
        return None, list(args.text)
    path: Path = args.input
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if path.suffix == ".jsonl":
        from retrievals_rag.evaluation.beir import document_text, load_corpus

        corpus = load_corpus(path)
        return list(corpus), [document_text(document) for document in corpus.values()]
    if path.suffix == ".txt":
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not UTF-8 text ({error})") from error
        return None, lines
    raise ValueError(f"{path}: expected a .jsonl or .txt input")


def run(args: argparse.Namespace) -> int:
    output: Path = args.output
    if output.suffix not in (".npy", ".safetensors"):
        raise ValueError(f"--output must end in .npy or .safetensors, got {output}")
    start = time.perf_counter()
    ids, texts = _read_inputs(args)
    model = load_embedder(args)
    encode = {"query": model.encode_queries, "document": model.encode_corpus}.get(args.kind)
    options = {
        "batch_size": args.batch_size,
        "token_budget": args.token_budget,
        "show_progress_bar": on_terminal(),
    }
    embeddings = encode(texts, **options) if encode is not None else model.encode(texts, **options)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".npy":
        import numpy as np

        np.save(output, embeddings)
        if ids is not None:
            ids_path = output.with_name(output.stem + ".ids.json")
            ids_path.write_text(json.dumps(ids) + "\n", encoding="utf-8")
            print(f"wrote {ids_path}", file=sys.stderr)
    else:
        from safetensors.numpy import save_file

        metadata = {"ids": json.dumps(ids)} if ids is not None else None
        save_file({"embeddings": embeddings}, str(output), metadata=metadata)
    print(f"wrote {output}: {embeddings.shape[0]} x {embeddings.shape[1]} float32", file=sys.stderr)
    report_time(f"encoded {len(texts)} text(s)", start)
    return 0
