"""``retrievals-rag encode``: embed texts or a corpus file into a .npy or .safetensors file, or into resumable
shards (``--output-dir``, one process per shard under ``torchrun``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from retrievals_rag.cli.common import (
    add_model_arguments,
    load_embedder,
    on_terminal,
    positive_int,
    report_time,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="embed texts or a corpus file",
        description="Embed texts into a float32 matrix. Inputs: --text (repeatable), or --input with a .jsonl file "
        "of {'_id', 'text', optional 'title'} records (BEIR corpus or queries) or a .txt file with one text per "
        "line (blank lines included, as empty texts). Ids from a .jsonl input are kept: in the .safetensors metadata, or beside a .npy as OUTPUT.ids.json. "
        "With --output-dir the input is encoded in shards (ids + vectors + a manifest), resumably: finished shards "
        "are skipped when the command runs again; under `torchrun --nproc_per_node N -m retrievals_rag.cli.main "
        "encode ...` each process encodes its own shards (RANK / WORLD_SIZE), and `retrievals-rag merge` joins them.",
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
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", type=Path, help="a .npy or .safetensors file")
    target.add_argument(
        "--output-dir", type=Path, help="a folder of shards and their manifest (needs --input)"
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="with --output-dir: encode only shard I of N (0-based), e.g. from a job scheduler (default: every "
        "shard of this process)",
    )
    parser.add_argument(
        "--num-shards",
        type=positive_int,
        default=None,
        help="with --output-dir: shards to split the input in (default: one per process, WORLD_SIZE under "
        "torchrun); each process encodes shards RANK, RANK + WORLD_SIZE, ...",
    )
    parser.set_defaults(handler=run)


def _read_inputs(args: argparse.Namespace) -> tuple[list[str] | None, list[str]]:
    """(ids or None, texts)."""
    if args.text is not None:
        return None, list(args.text)
    from retrievals_rag.distributed.encode import read_input

    path: Path = args.input
    ids, texts = read_input(path)
    return (None if path.suffix == ".txt" else ids), texts


def run(args: argparse.Namespace) -> int:
    if args.output_dir is not None:
        return run_sharded(args)
    if args.shard is not None or args.num_shards is not None:
        raise ValueError("--shard and --num-shards go with --output-dir")
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
        ids_path = output.with_name(output.stem + ".ids.json")
        if ids is not None:
            ids_path.write_text(json.dumps(ids) + "\n", encoding="utf-8")
            print(f"wrote {ids_path}", file=sys.stderr)
        elif ids_path.exists():  # an earlier encode's ids would be read as these rows'
            ids_path.unlink()
            print(f"removed {ids_path}: it held the ids of an earlier encode to this file", file=sys.stderr)
    else:
        from safetensors.numpy import save_file

        metadata = {"ids": json.dumps(ids)} if ids is not None else None
        save_file({"embeddings": embeddings}, str(output), metadata=metadata)
    print(f"wrote {output}: {embeddings.shape[0]} x {embeddings.shape[1]} float32", file=sys.stderr)
    report_time(f"encoded {len(texts)} text(s)", start)
    return 0


def run_sharded(args: argparse.Namespace) -> int:
    """Encode this process's shards of ``--input`` into ``--output-dir``; skip the finished ones."""
    import os

    from retrievals_rag.distributed.encode import encode_shards, process_device, shards_for_process
    from retrievals_rag.distributed.shards import ShardSpec
    from retrievals_rag.models.loading import default_embedding_model_path

    if args.input is None:
        raise ValueError("--output-dir encodes a corpus file: give --input (a .jsonl or .txt file)")
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if args.shard is not None:
        if args.num_shards is not None:
            raise ValueError("give --shard I/N or --num-shards, not both")
        if world_size > 1:
            raise ValueError("--shard I/N names one shard: run it in one process, not under torchrun")
        shards = [ShardSpec.parse(args.shard)]
    else:
        shards = shards_for_process(args.num_shards or world_size, rank, world_size)
    args.device = process_device(args.device)
    args.model = args.model or str(default_embedding_model_path())
    model = load_embedder(args)
    outcomes = encode_shards(
        model,
        args.model,
        args.input,
        args.output_dir,
        shards,
        text_kind=args.kind,
        batch_size=args.batch_size,
        token_budget=args.token_budget,
    )
    for outcome in outcomes:
        if outcome.status == "skipped":
            print(f"shard {outcome.spec}: already finished, skipped", file=sys.stderr)
            continue
        rate = outcome.rows / outcome.seconds if outcome.seconds > 0 else float("inf")
        print(
            f"shard {outcome.spec}: {outcome.rows} rows in {outcome.seconds:.1f}s ({rate:.1f} docs/s, "
            f"process {rank} of {world_size}, {model.device})",
            file=sys.stderr,
        )
    return 0
