"""InfoNCE gathered across two gloo processes equals InfoNCE over the global batch in one process.

Relation checked (world size W, equal local batches, global loss L over all W * b queries, L_p the loss that
process p computes for its b queries against every process's documents):

- loss: L = (1/W) * sum_p L_p;
- input gradients: on process p, after L_p.backward(), the gradient of its local queries and documents is
  W * dL/dx_p (the gather's backward sums every process's gradient for a slice: d(sum_r L_r)/dx_p);
- parameter gradients under DDP, which averages over processes: (1/W) sum_p J_p^T (W dL/dx_p) = dL/dθ,
  exactly the single-process gradient over the global batch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from retrievals_rag.losses.distributed import gather_with_grad, is_distributed, process_rank_and_world
from retrievals_rag.losses.infonce import InfoNCELoss

WORLD_SIZE, LOCAL_BATCH, GROUP_SIZE, FEATURES, DIM = 2, 3, 3, 5, 4


def _global_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    batch = WORLD_SIZE * LOCAL_BATCH
    return {
        "queries": torch.randn(batch, DIM, generator=generator, dtype=torch.float64),
        "documents": torch.randn(batch * GROUP_SIZE, DIM, generator=generator, dtype=torch.float64),
        "query_features": torch.randn(batch, FEATURES, generator=generator, dtype=torch.float64),
        "document_features": torch.randn(
            batch * GROUP_SIZE, FEATURES, generator=generator, dtype=torch.float64
        ),
    }


def _encoder() -> torch.nn.Linear:
    torch.manual_seed(3)
    return torch.nn.Linear(FEATURES, DIM).double()


def _local_rows(tensor: torch.Tensor, rank: int, rows_per_query: int) -> torch.Tensor:
    rows = LOCAL_BATCH * rows_per_query
    return tensor[rank * rows : (rank + 1) * rows]


def _worker(rank: int, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        batch = _global_batch()
        loss_function = InfoNCELoss(gather_across_processes=True)

        # (a), (b): embeddings as leaves
        queries = _local_rows(batch["queries"], rank, 1).clone().requires_grad_(True)
        documents = _local_rows(batch["documents"], rank, GROUP_SIZE).clone().requires_grad_(True)
        loss = loss_function(queries, documents)
        loss.backward()

        # the same through an encoder wrapped in DDP: parameter gradients are averaged over processes
        model = torch.nn.parallel.DistributedDataParallel(_encoder())
        query_features = _local_rows(batch["query_features"], rank, 1)
        document_features = _local_rows(batch["document_features"], rank, GROUP_SIZE)
        # one forward for both inputs, as a trainer does, so DDP sees one backward per step
        embeddings = model(torch.cat([query_features, document_features]))
        ddp_loss = loss_function(embeddings[:LOCAL_BATCH], embeddings[LOCAL_BATCH:])
        ddp_loss.backward()

        torch.save(
            {
                "state": (is_distributed(), process_rank_and_world()),
                "gathered": gather_with_grad(documents.detach()),
                "loss": loss.detach(),
                "query_grad": queries.grad,
                "document_grad": documents.grad,
                "parameter_grads": [parameter.grad for parameter in model.module.parameters()],
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_gathered_infonce_over_two_processes_equals_the_global_batch_loss(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]

    batch = _global_batch()
    queries = batch["queries"].clone().requires_grad_(True)
    documents = batch["documents"].clone().requires_grad_(True)
    global_loss = InfoNCELoss()(queries, documents)
    global_loss.backward()
    model = _encoder()
    embeddings = model(torch.cat([batch["query_features"], batch["document_features"]]))
    InfoNCELoss()(embeddings[: WORLD_SIZE * LOCAL_BATCH], embeddings[WORLD_SIZE * LOCAL_BATCH :]).backward()

    assert [result["state"] for result in results] == [(True, (0, 2)), (True, (1, 2))]
    for result in results:
        torch.testing.assert_close(result["gathered"], batch["documents"], rtol=0, atol=0)
    # (a) the mean of the per-process losses is the global loss
    mean_loss = torch.stack([result["loss"] for result in results]).mean()
    torch.testing.assert_close(mean_loss, global_loss.detach(), rtol=0, atol=1e-6)
    # and not trivially: each process's loss differs from the global one
    assert all(abs(result["loss"] - global_loss.detach()) > 1e-3 for result in results)
    # (b) local input gradients are WORLD_SIZE times the global-loss gradient of those rows
    query_grads = torch.cat([result["query_grad"] for result in results])
    document_grads = torch.cat([result["document_grad"] for result in results])
    torch.testing.assert_close(query_grads / WORLD_SIZE, queries.grad, rtol=0, atol=1e-9)
    torch.testing.assert_close(document_grads / WORLD_SIZE, documents.grad, rtol=0, atol=1e-9)
    # (c) after DDP's averaging, every process holds exactly the global-batch parameter gradient
    for result in results:
        for ddp_grad, parameter in zip(result["parameter_grads"], model.parameters(), strict=True):
            torch.testing.assert_close(ddp_grad, parameter.grad, rtol=0, atol=1e-9)


def test_helpers_are_identities_outside_torch_distributed() -> None:
    tensor = torch.randn(3, 2, requires_grad=True)

    assert is_distributed() is False
    assert process_rank_and_world() == (0, 1)
    assert gather_with_grad(tensor) is tensor
