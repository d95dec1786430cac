"""Encode a corpus with Ray Data across a cluster, into the same shards that ``retrievals-rag encode`` writes.

``read_json`` / ``read_parquet`` -> ``map_batches`` over a pool of encoder actors (one model per actor, each
on ``num_gpus`` GPUs or on CPUs) -> the rows come back to the driver in input order and are written as the
shards of :mod:`retrievals_rag.distributed.shards`, with the same manifest. ``retrievals-rag merge`` then
builds the index, exactly as after a ``torchrun`` encode. Needs the ``ray`` extra
(``pip install 'retrievals-rag[ray]'``).

On a real cluster: ``ray start --head`` on one node, ``ray start --address HEAD_IP:6379`` on the others, and
``encode_with_ray(..., ray_address="auto")`` (or ``HEAD_IP:6379``) from a node of the cluster; the model
folder and the input file must be readable at the same path on every node (a shared file system), and the
output folder on the driver. The driver writes the shards, so its disk takes all the vectors.

Example:
    >>> encode_with_ray("corpus.jsonl", "vecs/", "my-model", num_shards=8, concurrency=4, num_gpus=1)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from retrievals_rag.distributed.encode import ShardOutcome, TextKind, corpus_manifest
from retrievals_rag.distributed.shards import ShardSpec, finished_record, write_manifest, write_shard

__all__ = ["encode_with_ray"]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ImportError("encode_with_ray needs Ray: pip install 'retrievals-rag[ray]'") from error
    return ray


def _load_model(model_path: str, model_options: Mapping[str, Any]) -> Any:
    from retrievals_rag.models.embedding import AutoModelForEmbedding

    return AutoModelForEmbedding.from_pretrained(model_path, **model_options)


class _EncoderActor:
    """One model per Ray actor; each call embeds a batch of corpus records ``{_id, title?, text}``."""

    def __init__(
        self,
        model_path: str,
        model_options: Mapping[str, Any],
        text_kind: TextKind,
        encode_options: Mapping[str, Any],
        threads: int,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = _load_model(model_path, model_options)
        self.text_kind = text_kind
        self.encode_options = dict(encode_options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from retrievals_rag.evaluation.beir import Document, document_text

        titles = batch["title"] if "title" in batch else [None] * len(batch["text"])
        texts = [
            document_text(Document(title=title or "", text=text or ""))
            for title, text in zip(titles, batch["text"], strict=True)
        ]
        encode = {"query": self.model.encode_queries, "document": self.model.encode_corpus}.get(
            self.text_kind, self.model.encode
        )
        embeddings = encode(texts, show_progress_bar=False, **self.encode_options)
        return {
            "_id": np.asarray([str(identifier) for identifier in batch["_id"]], dtype=object),
            "embedding": embeddings,
        }


class _ModelDescription:
    """The attributes of a model that its manifest records, read where the model can be loaded."""

    def __init__(self, model: Any) -> None:
        for name in (
            "query_instruction",
            "document_instruction",
            "pooling_method",
            "normalize_embeddings",
            "max_length",
            "embedding_dimension",
            "backend",
            "compute_dtype",
        ):
            setattr(self, name, getattr(model, name))


@contextlib.contextmanager
def _order_preserved(ray: Any) -> Iterator[None]:
    """Ray Data keeps rows in input order inside the block; the process's own setting is restored after it."""
    options = ray.data.DataContext.get_current().execution_options
    previous = options.preserve_order
    options.preserve_order = True
    try:
        yield
    finally:
        options.preserve_order = previous


def encode_with_ray(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    *,
    num_shards: int = 1,
    text_kind: TextKind = "document",
    concurrency: int = 1,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    batch_size: int = 256,
    model_options: Mapping[str, Any] | None = None,
    encode_options: Mapping[str, Any] | None = None,
    ray_address: str | None = None,
) -> list[ShardOutcome]:
    """Encode ``input_path`` on a Ray cluster into ``num_shards`` shards in ``output_dir``.

    Args:
        input_path: A BEIR-style ``.jsonl`` corpus (``_id``, ``text``, optional ``title``) or a ``.parquet``
            file / folder with those columns.
        output_dir: The encoded folder (the format of ``retrievals-rag encode --output-dir``).
        model_path: The embedder's folder, readable from every node.
        num_shards: Shards to write; the merge joins them.
        text_kind: Which instruction to apply: the model's query or document instruction, or none.
        concurrency: Encoder actors (one model each).
        num_cpus: CPUs per actor (torch uses that many threads, at least one). Leave the reading tasks a CPU:
            on a 2-CPU node, 2 actors of 1 CPU each would wait for ever for the read.
        num_gpus: GPUs per actor (0: CPU).
        batch_size: Records per ``map_batches`` call (the model batches by tokens inside it).
        model_options: Passed to ``AutoModelForEmbedding.from_pretrained`` in each actor (``device``,
            ``dtype``, ``max_length``, instructions...).
        encode_options: Passed to the model's encode (``token_budget``, ``batch_size``).
        ray_address: Connect to this cluster (``"auto"``, ``"HOST:6379"``); None: the current one, or a
            local one started here.

    Returns:
        One outcome per shard: ``"skipped"`` when a finished shard of the same run was already there (its
        rows are encoded again but not rewritten).

    Raises:
        ImportError: Without Ray.
        ValueError: On an unsupported input or an output folder holding another run.
    """
    ray = _import_ray()
    source = Path(input_path)
    if source.suffix not in (".jsonl", ".parquet") and not source.is_dir():
        raise ValueError(f"{source}: expected a .jsonl or .parquet corpus")
    if not source.exists():
        raise FileNotFoundError(f"input not found: {source}")
    model_options = dict(model_options or {})
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    model_path = os.fspath(Path(model_path).resolve()) if Path(model_path).is_dir() else os.fspath(model_path)

    describe = ray.remote(num_gpus=num_gpus)(
        lambda: _ModelDescription(_load_model(model_path, model_options))
    )
    description = ray.get(describe.remote())
    # rows must come back in input order (shard i is rows [a, b)); a dataset copies the current context when it
    # is created, so the option is set before the read, and given back to the caller's value at the end
    with _order_preserved(ray):
        dataset = (
            ray.data.read_json(str(source))
            if source.suffix == ".jsonl"
            else ray.data.read_parquet(str(source))
        )
        dataset.context.execution_options.preserve_order = True
        total_rows = dataset.count()
        folder = Path(output_dir)
        if source.is_dir():
            raise ValueError(
                f"{source}: give one .jsonl or .parquet file, so that the manifest can fingerprint it"
            )
        digest = write_manifest(
            folder, corpus_manifest(description, model_path, source, total_rows, num_shards, text_kind)
        )
        encoded = dataset.map_batches(
            _EncoderActor,
            fn_constructor_kwargs={
                "model_path": model_path,
                "model_options": model_options,
                "text_kind": text_kind,
                "encode_options": dict(encode_options or {}),
                "threads": max(1, round(num_cpus)),
            },
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=concurrency,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
        specs = [ShardSpec(index, num_shards) for index in range(num_shards)]
        bounds = [spec.bounds(total_rows) for spec in specs]
        outcomes: list[ShardOutcome] = []
        ids: list[str] = []
        blocks: list[np.ndarray] = []
        buffered = 0
        began = time.perf_counter()

        def flush(spec: ShardSpec, start: int, stop: int) -> None:
            nonlocal ids, blocks, buffered, began
            matrix = (
                np.concatenate(blocks)
                if blocks
                else np.zeros((0, description.embedding_dimension), np.float32)
            )
            rows = stop - start
            shard_ids, shard_vectors = ids[:rows], matrix[:rows]
            if finished_record(folder, spec, digest) is not None:
                outcomes.append(ShardOutcome(spec, "skipped", rows, 0.0))
            else:
                write_shard(folder, spec, start, shard_ids, shard_vectors, digest)
                outcomes.append(ShardOutcome(spec, "encoded", rows, time.perf_counter() - began))
            ids, blocks, buffered = ids[rows:], [matrix[rows:]], buffered - rows
            began = time.perf_counter()

        shard = 0
        for batch in encoded.iter_batches(batch_size=batch_size, batch_format="numpy"):
            ids.extend(str(identifier) for identifier in batch["_id"])
            blocks.append(np.asarray(batch["embedding"], dtype=np.float32))
            buffered += len(batch["_id"])
            while shard < num_shards and buffered >= bounds[shard][1] - bounds[shard][0]:
                flush(specs[shard], *bounds[shard])
                shard += 1
        while shard < num_shards:  # empty trailing shards (more shards than rows)
            flush(specs[shard], *bounds[shard])
            shard += 1
        return outcomes
