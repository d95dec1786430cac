"""GradCache with documents gathered across two gloo processes under DDP equals the global batch's gradients."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from retrievals_rag.losses.cached import GradCacheLoss
from retrievals_rag.losses.infonce import InfoNCELoss

WORLD_SIZE, LOCAL_BATCH, GROUP_SIZE, FEATURES, DIM, CHUNK = 2, 4, 2, 5, 4, 3


class _Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.linear = torch.nn.Linear(FEATURES, DIM).double()

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.linear(features)  # (rows, dim)


def _global_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    batch = WORLD_SIZE * LOCAL_BATCH
    return {
        "query": torch.randn(batch, FEATURES, generator=generator, dtype=torch.float64),
        "documents": torch.randn(batch * GROUP_SIZE, FEATURES, generator=generator, dtype=torch.float64),
    }


def _inputs(features: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"features": features, "attention_mask": torch.ones(features.shape[0], 1)}


def _worker(rank: int, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        batch = _global_batch()
        model = torch.nn.parallel.DistributedDataParallel(_Encoder())
        inputs = {
            role: _inputs(batch[role][rank * LOCAL_BATCH * rows : (rank + 1) * LOCAL_BATCH * rows])
            for role, rows in (("query", 1), ("documents", GROUP_SIZE))
        }
        loss = GradCacheLoss(InfoNCELoss(gather_across_processes=True), chunk_size=CHUNK)
        loss.model_loss(model, inputs).backward()
        torch.save(
            [parameter.grad for parameter in model.module.parameters()], Path(out_dir) / f"rank{rank}.pt"
        )
    finally:
        dist.destroy_process_group()


def test_cached_gathered_loss_under_ddp_gives_the_global_batch_gradients(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    batch = _global_batch()
    model = _Encoder()
    InfoNCELoss()(model(**_inputs(batch["query"])), model(**_inputs(batch["documents"]))).backward()
    for rank in range(WORLD_SIZE):
        gradients = torch.load(tmp_path / f"rank{rank}.pt")
        for gradient, parameter in zip(gradients, model.parameters(), strict=True):
            torch.testing.assert_close(gradient, parameter.grad, rtol=0, atol=1e-9)
