"""Sharded, resumable corpus encoding: each process encodes its shards of the input and writes them to disk.

The same call serves one process running every shard, a scheduler running ``--shard I/N`` per job, and
``torchrun`` (one process per shard set, chosen from ``RANK`` / ``WORLD_SIZE``). Finished shards are skipped,
so a run killed half-way finishes the rest when it is started again. The merge
(:mod:`retrievals_rag.distributed.merge`) then checks and joins the shards.

Example:
    >>> from retrievals_rag.distributed.encode import shards_for_process
    >>> [str(spec) for spec in shards_for_process(num_shards=4, rank=1, world_size=2)]
    ['1/4', '3/4']
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from retrievals_rag.distributed.shards import (
    ShardSpec,
    file_sha256,
    finished_record,
    folder_fingerprint,
    write_manifest,
    write_shard,
)

__all__ = [
    "ShardOutcome",
    "TextKind",
    "corpus_manifest",
    "encode_shards",
    "process_device",
    "read_input",
    "shards_for_process",
]

logger = logging.getLogger(__name__)

TextKind = Literal["query", "document", "plain"]


@dataclass(frozen=True)
class ShardOutcome:
    """What happened to one shard: ``"encoded"`` (with its rows and seconds) or ``"skipped"`` (finished before)."""

    spec: ShardSpec
    status: Literal["encoded", "skipped"]
    rows: int
    seconds: float


def read_input(path: Path) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of a BEIR-style ``.jsonl`` corpus (title + " " + text) or a ``.txt`` file (ids are
    line numbers from 0)."""
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if path.suffix == ".jsonl":
        from retrievals_rag.evaluation.beir import document_text, load_corpus

        corpus = load_corpus(path)
        return list(corpus), [document_text(document) for document in corpus.values()]
    if path.suffix == ".txt":
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise ValueError(
                f"{path}, line {line}: not UTF-8 (byte {data[error.start]:#04x}); save the file as UTF-8"
            ) from error
        # one text per line: split at \n (and \r\n, \r) only; str.splitlines would also cut at a form feed
        # (pdftotext writes one per page), U+2028 and other separators inside a line, shifting every id after it
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the line end of the last line
        return [str(number) for number in range(len(lines))], lines
    raise ValueError(f"{path}: expected a .jsonl or .txt input")


def shards_for_process(num_shards: int, rank: int = 0, world_size: int = 1) -> list[ShardSpec]:
    """The shards process ``rank`` of ``world_size`` runs: ``rank, rank + world_size, ...`` below ``num_shards``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
    if num_shards < world_size:
        raise ValueError(
            f"{num_shards} shards for {world_size} processes: give at least one shard per process "
            f"(--num-shards >= {world_size})"
        )
    return [ShardSpec(index, num_shards) for index in range(rank, num_shards, world_size)]


def process_device(requested: str | None) -> str | None:
    """The device of this process: ``requested`` if given; under ``torchrun`` with several GPUs, the GPU of
    ``LOCAL_RANK``; else None (the model's default)."""
    if requested is not None:
        return requested
    if "LOCAL_RANK" not in os.environ:
        return None
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return None


def _absolute(model_path: str | os.PathLike[str]) -> str:
    """A model folder as an absolute path (the manifest is read from other working directories); a hub id as is."""
    path = Path(model_path)
    return str(path.resolve()) if path.is_dir() else os.fspath(model_path)


def corpus_manifest(
    model: Any,
    model_path: str | os.PathLike[str],
    input_path: Path,
    total_rows: int,
    num_shards: int,
    text_kind: TextKind,
) -> dict[str, Any]:
    """What identifies an encoding run: the model folder (path and content fingerprint), the settings that
    change vectors, what computed them (backend and compute dtype), the input (path, sha256, rows), the shard
    count, and the vectors' width and dtype."""
    instruction = {"query": model.query_instruction, "document": model.document_instruction}.get(text_kind)
    return {
        "model": {"path": _absolute(model_path), "fingerprint": folder_fingerprint(model_path)},
        "settings": {
            "text_kind": text_kind,
            "instruction": instruction,
            "pooling_method": model.pooling_method,
            "normalize_embeddings": model.normalize_embeddings,
            "max_length": model.max_length,
        },
        # shards of one folder are computed alike: not half by torch and half by an int8 graph
        "encoder": {"backend": model.backend, "compute_dtype": model.compute_dtype},
        "input": {"path": str(input_path.resolve()), "sha256": file_sha256(input_path), "rows": total_rows},
        "num_shards": num_shards,
        "dim": model.embedding_dimension,
        "dtype": "float32",
    }


def encode_shards(
    model: Any,
    model_path: str | os.PathLike[str],
    input_path: Path,
    output_dir: Path,
    shards: Sequence[ShardSpec],
    *,
    text_kind: TextKind = "document",
    batch_size: int | None = None,
    token_budget: int | None = None,
) -> list[ShardOutcome]:
    """Encode the given shards of ``input_path`` into ``output_dir``, skipping those already finished.

    Args:
        model: An :class:`~retrievals_rag.models.embedding.AutoModelForEmbedding`.
        model_path: The folder it was loaded from (its identity goes into the manifest).
        input_path: A ``.jsonl`` corpus or a ``.txt`` file.
        output_dir: The encoded folder; created if needed.
        shards: Shards of one count (e.g. from :func:`shards_for_process`).
        text_kind: Which instruction to apply: the model's query or document instruction, or none.
        batch_size: Most texts per batch (the model's default if None).
        token_budget: Most padded tokens per batch (the model's default if None).

    Returns:
        One outcome per shard, in the order given.

    Raises:
        ValueError: On shards of different counts, or an output folder holding another run's manifest.
    """
    counts = {spec.count for spec in shards}
    if len(counts) != 1:
        raise ValueError(f"shards of one run share a count, got {sorted(counts)}")
    ids, texts = read_input(input_path)
    manifest = corpus_manifest(model, model_path, input_path, len(ids), counts.pop(), text_kind)
    digest = write_manifest(output_dir, manifest)
    encode = {"query": model.encode_queries, "document": model.encode_corpus}.get(text_kind, model.encode)
    outcomes = []
    for spec in shards:
        start, stop = spec.bounds(len(ids))
        if finished_record(output_dir, spec, digest) is not None:
            logger.info("shard %s already finished in %s: skipped", spec, output_dir)
            outcomes.append(ShardOutcome(spec, "skipped", stop - start, 0.0))
            continue
        began = time.perf_counter()
        embeddings = encode(
            texts[start:stop], batch_size=batch_size, token_budget=token_budget, show_progress_bar=False
        )
        write_shard(output_dir, spec, start, ids[start:stop], embeddings, digest)
        outcomes.append(ShardOutcome(spec, "encoded", stop - start, time.perf_counter() - began))
    return outcomes
