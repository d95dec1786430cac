"""ColBERT's InfoNCE: MaxSim scores through the InfoNCE core, and gathered across two gloo processes like the
bi-encoder's (documents of different padded lengths per process)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from retrievals_rag.losses.late_interaction import LateInteractionInfoNCELoss
from retrievals_rag.similarity import maxsim

WORLD_SIZE, LOCAL_BATCH, GROUP_SIZE, DIM = 2, 2, 2, 4
LENGTHS = (3, 5)  # each process pads its documents to its own longest


class Tokens(NamedTuple):
    embeddings: torch.Tensor
    mask: torch.Tensor


def score(queries: Tokens, documents: Tokens) -> torch.Tensor:
    return maxsim(queries.embeddings, documents.embeddings, queries.mask, documents.mask)


def _global_batch() -> tuple[Tokens, list[Tokens]]:
    generator = torch.Generator().manual_seed(5)
    queries = Tokens(
        torch.randn(WORLD_SIZE * LOCAL_BATCH, 3, DIM, generator=generator, dtype=torch.float64),
        torch.ones(WORLD_SIZE * LOCAL_BATCH, 3, dtype=torch.bool),
    )
    documents = []
    for length in LENGTHS:
        mask = torch.ones(LOCAL_BATCH * GROUP_SIZE, length, dtype=torch.bool)
        mask[0, -1] = False  # padding inside a process's batch
        documents.append(
            Tokens(
                torch.randn(LOCAL_BATCH * GROUP_SIZE, length, DIM, generator=generator, dtype=torch.float64),
                mask,
            )
        )
    return queries, documents


def _padded_concat(parts: list[Tokens]) -> Tokens:
    longest = max(part.embeddings.shape[1] for part in parts)
    embeddings = [F.pad(part.embeddings, (0, 0, 0, longest - part.embeddings.shape[1])) for part in parts]
    masks = [F.pad(part.mask, (0, longest - part.mask.shape[1]), value=False) for part in parts]
    return Tokens(torch.cat(embeddings), torch.cat(masks))


def test_the_loss_is_infonce_over_maxsim_scores() -> None:
    queries, documents = _global_batch()
    local = documents[0]
    own = Tokens(queries.embeddings[:LOCAL_BATCH], queries.mask[:LOCAL_BATCH])
    scores = score(own, local)  # (2, 4)
    expected = F.cross_entropy(scores / 0.5, torch.tensor([0, GROUP_SIZE]))
    torch.testing.assert_close(LateInteractionInfoNCELoss(temperature=0.5)(own, local, score), expected)
    own_groups = torch.stack([scores[0, :2], scores[1, 2:]])
    loss = LateInteractionInfoNCELoss(use_inbatch_negatives=False)(own, local, score)
    torch.testing.assert_close(loss, F.cross_entropy(own_groups, torch.zeros(2, dtype=torch.long)))


def _worker(rank: int, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        queries, documents = _global_batch()
        local_queries = Tokens(
            queries.embeddings[rank * LOCAL_BATCH : (rank + 1) * LOCAL_BATCH].clone().requires_grad_(True),
            queries.mask[rank * LOCAL_BATCH : (rank + 1) * LOCAL_BATCH],
        )
        local_documents = Tokens(
            documents[rank].embeddings.clone().requires_grad_(True), documents[rank].mask
        )
        loss = LateInteractionInfoNCELoss(gather_across_processes=True)(local_queries, local_documents, score)
        loss.backward()
        torch.save(
            {"loss": loss.detach(), "query_grad": local_queries.embeddings.grad},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_gathered_over_two_processes_it_equals_the_global_batch_loss(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]

    queries, documents = _global_batch()
    queries = Tokens(queries.embeddings.clone().requires_grad_(True), queries.mask)
    global_loss = LateInteractionInfoNCELoss()(queries, _padded_concat(documents), score)
    global_loss.backward()
    mean_loss = torch.stack([result["loss"] for result in results]).mean()
    torch.testing.assert_close(mean_loss, global_loss.detach(), rtol=0, atol=1e-9)
    assert all(abs(result["loss"] - global_loss.detach()) > 1e-3 for result in results)
    query_grads = torch.cat([result["query_grad"] for result in results])
    torch.testing.assert_close(query_grads / WORLD_SIZE, queries.embeddings.grad, rtol=0, atol=1e-9)
