"""MarginMSE and KL distillation against explicit formulas, on score matrices and through the modules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from retrievals_rag.losses.distillation import (
    KLDistillationLoss,
    MarginMSELoss,
    kl_distillation_loss,
    margin_mse_loss,
)

BATCH, GROUP_SIZE, DIM = 3, 4, 5


def _scores(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(BATCH, GROUP_SIZE, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = 3 * torch.randn(BATCH, GROUP_SIZE, generator=generator, dtype=torch.float64)
    return student, teacher


def _explicit_margin_mse(student: torch.Tensor, teacher: torch.Tensor) -> float:
    squares = [
        ((student[i, 0] - student[i, j]) - (teacher[i, 0] - teacher[i, j])).item() ** 2
        for i in range(student.shape[0])
        for j in range(1, student.shape[1])
    ]
    return sum(squares) / len(squares)


def _explicit_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> float:
    total = 0.0
    for student_row, teacher_row in zip(student.tolist(), teacher.tolist(), strict=True):
        student_norm = sum(math.exp(s / temperature) for s in student_row)
        teacher_norm = sum(math.exp(t / temperature) for t in teacher_row)
        for s, t in zip(student_row, teacher_row, strict=True):
            p_teacher = math.exp(t / temperature) / teacher_norm
            p_student = math.exp(s / temperature) / student_norm
            total += p_teacher * math.log(p_teacher / p_student)
    return total / len(student) * temperature**2


def test_margin_mse_matches_the_explicit_margins() -> None:
    student, teacher = _scores()

    loss = margin_mse_loss(student, teacher)
    loss.backward()

    assert loss.item() == pytest.approx(_explicit_margin_mse(student.detach(), teacher), rel=1e-10)
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_margin_mse_ignores_a_shift_of_the_teacher() -> None:
    student, teacher = _scores()

    torch.testing.assert_close(margin_mse_loss(student, teacher), margin_mse_loss(student, teacher + 7.0))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_kl_matches_the_explicit_divergence_times_t_squared(temperature: float) -> None:
    student, teacher = _scores(1)

    loss = kl_distillation_loss(student, teacher, temperature=temperature)
    loss.backward()

    assert loss.item() == pytest.approx(_explicit_kl(student.detach(), teacher, temperature), rel=1e-9)
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_kl_is_zero_when_the_student_matches_the_teacher() -> None:
    _, teacher = _scores()

    assert kl_distillation_loss(teacher + 1.0, teacher).item() == pytest.approx(0.0, abs=1e-12)


def _embeddings(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(BATCH, DIM, generator=generator, dtype=torch.float64, requires_grad=True)
    documents = torch.randn(
        BATCH * GROUP_SIZE, DIM, generator=generator, dtype=torch.float64, requires_grad=True
    )
    return queries, documents


def _student_scores(queries: torch.Tensor, documents: torch.Tensor, score_function: str) -> torch.Tensor:
    groups = documents.reshape(BATCH, GROUP_SIZE, DIM)
    if score_function == "cos":
        return F.cosine_similarity(queries[:, None, :], groups, dim=-1)  # (B, G)
    return (queries[:, None, :] * groups).sum(-1)


@pytest.mark.parametrize("score_function", ["cos", "dot"])
def test_modules_score_each_query_against_its_own_group(score_function: str) -> None:
    queries, documents = _embeddings()
    _, teacher = _scores()
    student = _student_scores(queries.detach(), documents.detach(), score_function)

    margin = MarginMSELoss(score_function=score_function)(queries, documents, teacher)
    kl = KLDistillationLoss(temperature=2.0, score_function=score_function)(queries, documents, teacher)
    (margin + kl).backward()

    assert margin.item() == pytest.approx(_explicit_margin_mse(student, teacher), rel=1e-9)
    assert kl.item() == pytest.approx(_explicit_kl(student, teacher, 2.0), rel=1e-9)
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert documents.grad is not None and documents.grad.abs().sum() > 0


def test_batch_of_one() -> None:
    student, teacher = _scores()

    assert margin_mse_loss(student[:1], teacher[:1]).item() == pytest.approx(
        _explicit_margin_mse(student[:1].detach(), teacher[:1]), rel=1e-10
    )


def test_bad_inputs_are_rejected() -> None:
    student, teacher = _scores()
    queries, documents = _embeddings()

    with pytest.raises(ValueError, match="group_size >= 2"):
        margin_mse_loss(student[:, :1], teacher[:, :1])
    with pytest.raises(ValueError, match="shape"):
        kl_distillation_loss(student, teacher[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        kl_distillation_loss(student, teacher, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        KLDistillationLoss(temperature=-1.0)
    with pytest.raises(ValueError, match="shape"):
        MarginMSELoss()(queries, documents, teacher.T)
    with pytest.raises(ValueError, match="equal groups"):
        MarginMSELoss()(queries, documents[:-1], teacher)
