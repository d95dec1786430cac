"""The losses package surface: lazy names (no torch on import), the pinned __all__, the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

import retrievals_rag.losses as losses
from retrievals_rag.losses import LOSSES, build_loss, loss_class, losses_for_kind

EXPECTED_ALL = [
    "CoSENTLoss",
    "GradCacheLoss",
    "InfoNCELoss",
    "KIND_LOSSES",
    "KLDistillationLoss",
    "LOSSES",
    "LateInteractionInfoNCELoss",
    "ListwiseCrossEntropyLoss",
    "MarginMSELoss",
    "MatryoshkaLoss",
    "PointwiseBCELoss",
    "ScoreKLDistillationLoss",
    "ScoreMarginMSELoss",
    "TripletMarginLoss",
    "build_loss",
    "cosent_loss",
    "gather_with_grad",
    "grad_cache_loss",
    "grouped_scores",
    "infonce_from_scores",
    "infonce_loss",
    "is_distributed",
    "kl_distillation_loss",
    "listwise_cross_entropy",
    "loss_class",
    "losses_for_kind",
    "margin_mse_loss",
    "pointwise_bce",
    "process_rank_and_world",
    "triplet_margin_loss",
]


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert sorted(losses.__all__) == EXPECTED_ALL
    for name in losses.__all__:
        assert getattr(losses, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        _ = losses.NotALoss  # type: ignore[attr-defined]


def test_importing_the_package_and_reading_the_registry_loads_no_torch() -> None:
    code = (
        "import sys\n"
        "from retrievals_rag.losses import LOSSES, build_loss\n"
        "assert LOSSES['infonce'].endswith('InfoNCELoss')\n"
        "print('torch' in sys.modules)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"


def test_registry_names_the_cli_losses_and_each_resolves_to_a_module() -> None:
    from torch import nn

    assert sorted(LOSSES) == ["bce", "cosent", "infonce", "kl", "listwise", "margin_mse", "triplet"]
    for name in LOSSES:
        assert issubclass(loss_class(name), nn.Module)
        assert isinstance(build_loss(name), nn.Module)


def test_build_loss_passes_options() -> None:
    loss = build_loss(
        "infonce", {"temperature": 0.02, "use_inbatch_negatives": False, "score_function": "dot"}
    )

    assert (loss.temperature, loss.use_inbatch_negatives, loss.score_function) == (0.02, False, "dot")
    assert build_loss("kl", {"temperature": 2.0}).temperature == 2.0


def test_build_loss_names_unknown_options_and_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown option\\(s\\) for loss 'infonce': scale, temprature"
    ) as error:
        build_loss("infonce", {"temprature": 0.02, "scale": 20})

    message = str(error.value)
    for option in ("temperature", "use_inbatch_negatives", "gather_across_processes", "score_function"):
        assert option in message


def test_build_loss_rejects_an_unknown_name_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown loss 'mnrl'; known losses: bce, cosent"):
        build_loss("mnrl", {})
    with pytest.raises(ValueError, match="temperature"):
        build_loss("infonce", {"temperature": 0})
    with pytest.raises(ValueError, match="valid options: none"):
        build_loss("bce", {"pos_weight": 2.0})


def test_each_kind_states_its_losses_once_and_every_entry_declares_how_it_is_called() -> None:
    from retrievals_rag.losses.protocol import loss_inputs
    from retrievals_rag.losses.registry import KIND_LOSSES, resolve_loss

    assert (
        losses_for_kind("cross-encoder")
        == losses_for_kind("cross_encoder")
        == ("listwise", "bce", "kl", "margin_mse")
    )
    assert losses_for_kind("llm") == losses_for_kind("llm_ranker")
    assert losses_for_kind("colbert") == ("infonce", "kl", "margin_mse")
    expected_inputs = {"embedding": {"embeddings"}, "colbert": {"token_vectors", "group_scores"}}
    for kind, table in KIND_LOSSES.items():
        for name in table:
            forms = set(loss_inputs(loss_class(name, kind)))
            assert forms <= expected_inputs.get(kind, {"group_scores", "pair_labels"}), (kind, name, forms)
    assert type(build_loss("infonce", kind="colbert")).__name__ == "LateInteractionInfoNCELoss"
    assert type(build_loss("kl", kind="llm")).__name__ == "ScoreKLDistillationLoss"
    assert (
        resolve_loss("colbert", None) == "infonce" and resolve_loss("llm", None, scored_pairs=True) == "bce"
    )
    with pytest.raises(ValueError, match="'triplet' does not fit a colbert reranker; choose one of infonce"):
        build_loss("triplet", kind="colbert")
    with pytest.raises(ValueError, match="unknown model kind"):
        losses_for_kind("bi_encoder_v2")


def test_reranker_losses_take_group_scores() -> None:
    import torch

    scores = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    teacher = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    assert build_loss("listwise", kind="llm")(scores).item() > 0
    grouped = build_loss("bce", kind="cross-encoder")(scores)
    flat = build_loss("bce")(scores.reshape(-1), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(grouped, flat)
    assert build_loss("margin_mse", kind="colbert")(scores, teacher).item() == pytest.approx(
        ((2 - 3) ** 2 + (0 - -1) ** 2) / 2
    )
