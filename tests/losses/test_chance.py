"""The chance level of each softmax loss: the loss of a model that scores every candidate alike."""

from __future__ import annotations

import math

import pytest
import torch

from retrievals_rag.losses.cached import GradCacheLoss
from retrievals_rag.losses.distillation import MarginMSELoss
from retrievals_rag.losses.infonce import InfoNCELoss
from retrievals_rag.losses.late_interaction import LateInteractionInfoNCELoss
from retrievals_rag.losses.listwise import ListwiseCrossEntropyLoss
from retrievals_rag.losses.matryoshka import MatryoshkaLoss
from retrievals_rag.losses.pointwise import PointwiseBCELoss
from retrievals_rag.losses.protocol import chance_loss

BATCH, GROUP = 4, 3


@pytest.mark.parametrize("inbatch", [True, False])
def test_infonce_declares_the_loss_it_gives_when_every_embedding_is_the_same(inbatch: bool) -> None:
    loss = InfoNCELoss(use_inbatch_negatives=inbatch)
    same = torch.ones(BATCH * GROUP + BATCH, 8)
    measured = loss(same[:BATCH], same[BATCH:]).item()
    declared = chance_loss(loss, batch_size=BATCH, group_size=GROUP)
    assert declared == pytest.approx(math.log(BATCH * GROUP if inbatch else GROUP))
    assert measured == pytest.approx(declared, abs=1e-5)


def test_the_rerankers_listwise_loss_declares_log_of_its_group() -> None:
    loss = ListwiseCrossEntropyLoss()
    measured = loss(torch.full((BATCH, GROUP), 0.7)).item()
    assert chance_loss(loss, batch_size=BATCH, group_size=GROUP) == pytest.approx(measured, abs=1e-6)
    assert measured == pytest.approx(math.log(GROUP), abs=1e-6)


def test_gathering_across_processes_counts_every_process_documents() -> None:
    gathered = InfoNCELoss(gather_across_processes=True)
    level = chance_loss(gathered, batch_size=BATCH, group_size=GROUP, world_size=2)
    assert level == pytest.approx(math.log(2 * BATCH * GROUP))
    late = LateInteractionInfoNCELoss(gather_across_processes=True)
    assert chance_loss(late, batch_size=BATCH, group_size=GROUP, world_size=2) == pytest.approx(level)


def test_wrappers_answer_for_the_loss_they_wrap() -> None:
    inner = InfoNCELoss()
    level = math.log(BATCH * GROUP)
    assert chance_loss(GradCacheLoss(inner), batch_size=BATCH, group_size=GROUP) == pytest.approx(level)
    matryoshka = MatryoshkaLoss(inner, dims=(8, 4), weights=(1.0, 0.5))
    same = torch.ones(BATCH * GROUP + BATCH, 8)
    measured = matryoshka(same[:BATCH], same[BATCH:]).item()
    assert chance_loss(matryoshka, batch_size=BATCH, group_size=GROUP) == pytest.approx(measured, abs=1e-5)


@pytest.mark.parametrize("loss", [MarginMSELoss(), PointwiseBCELoss()])
def test_losses_without_such_a_level_say_none(loss: torch.nn.Module) -> None:
    assert chance_loss(loss, batch_size=BATCH, group_size=GROUP) is None
