"""GradCache (retrievals_rag.losses.cached): chunked gradients equal the whole batch's, dropout replayed."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import pytest
import torch

from retrievals_rag import AutoModelForEmbedding, ColBERT
from retrievals_rag.losses import cached
from retrievals_rag.losses.cached import GradCacheLoss, grad_cache_loss
from retrievals_rag.losses.infonce import InfoNCELoss
from retrievals_rag.losses.matryoshka import MatryoshkaLoss

from ..conftest import TINY_WORDS, build_tiny_bert

BATCH, GROUP, CHUNK = 64, 2, 8


def _texts(count: int, offset: int) -> list[str]:
    """Texts of 2 to 12 words, so that chunks differ in length and padding."""
    return [
        " ".join(
            TINY_WORDS[(offset + row * 7 + word) % len(TINY_WORDS)] for word in range(2 + (row * 5) % 11)
        )
        for row in range(count)
    ]


@pytest.fixture(scope="module")
def embedder_paths(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> dict[float, Path]:
    return {
        dropout: build_tiny_bert(
            tmp_path_factory.mktemp(f"tiny-bert-{dropout}"), minilm_path, dropout=dropout
        )
        for dropout in (0.0, 0.1)
    }


def _embedder(path: Path) -> AutoModelForEmbedding:
    model = AutoModelForEmbedding.from_pretrained(path, device="cpu", pooling_method="mean")
    model.train()
    return model


def _batch(model: AutoModelForEmbedding) -> tuple[dict, dict]:
    return model.tokenize(_texts(BATCH, 0)), model.tokenize(_texts(BATCH * GROUP, 3))


def _gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    gradients = {
        name: parameter.grad.clone()
        for name, parameter in model.named_parameters()
        if parameter.grad is not None
    }
    model.zero_grad(set_to_none=True)
    return gradients


def _max_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    assert first.keys() == second.keys() and first
    return max(float((first[name] - second[name]).abs().max()) for name in first)


@pytest.mark.parametrize(
    "make_loss",
    [
        pytest.param(lambda: InfoNCELoss(temperature=0.05), id="infonce-inbatch-and-hard"),
        pytest.param(lambda: InfoNCELoss(use_inbatch_negatives=False), id="infonce-own-group"),
        pytest.param(lambda: MatryoshkaLoss(InfoNCELoss(), dims=[32, 16, 8]), id="matryoshka"),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_batch_of_64_in_chunks_of_8_gives_the_whole_batch_gradients(embedder_paths, make_loss, dtype) -> None:
    """The same gradients: in float64 to 1e-10 (the method is exact), in float32 within 1e-5 of the largest
    gradient (sums over 64 examples taken in another order differ by float32's rounding, which grows with the
    gradients' size: 1.1e-5 on a largest gradient of 5.9 for Matryoshka here)."""
    model = _embedder(embedder_paths[0.0]).to(dtype)
    loss_module = make_loss()
    queries, documents = _batch(model)

    reference = loss_module(model(**queries), model(**documents))
    reference.backward()
    expected = _gradients(model)

    wrapped = GradCacheLoss(loss_module, chunk_size=CHUNK)
    value = wrapped.model_loss(model, {"query": queries, "documents": documents})
    assert float(value.detach()) == pytest.approx(float(reference.detach()), abs=1e-6)
    value.backward()
    actual = _gradients(model)
    largest = max(float(gradient.abs().max()) for gradient in expected.values())
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5 * max(1.0, largest)
    assert _max_difference(actual, expected) < tolerance
    assert largest > 1e-4  # gradients are not ~0

    # a caller's scaling (gradient accumulation) reaches the chunks' gradients
    (wrapped.model_loss(model, {"query": queries, "documents": documents}) / 4).backward()
    quarter = _gradients(model)
    assert max(float((quarter[name] * 4 - expected[name]).abs().max()) for name in expected) < tolerance


def _reference_with_the_same_chunks(
    model, queries, documents, loss_module, seed: int
) -> dict[str, torch.Tensor]:
    """The full-graph loss of embeddings computed chunk by chunk in GradCache's order (same dropout draws)."""
    torch.manual_seed(seed)
    outputs = []
    for role, inputs in enumerate((queries, documents)):
        chunks = cached._chunks(role, inputs, CHUNK)
        outputs.append(
            cached._join(chunks, [model(**chunk.inputs) for chunk in chunks], *inputs["attention_mask"].shape)
        )
    loss_module(*outputs).backward()
    return _gradients(model)


def test_dropout_is_replayed_per_chunk(embedder_paths, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _embedder(embedder_paths[0.1])
    loss_module = InfoNCELoss()
    queries, documents = _batch(model)
    expected = _reference_with_the_same_chunks(model, queries, documents, loss_module, seed=7)

    torch.manual_seed(7)
    GradCacheLoss(loss_module, CHUNK).model_loss(model, {"query": queries, "documents": documents}).backward()
    assert _max_difference(_gradients(model), expected) < 1e-5

    # without the replay the second pass draws other dropout masks: the gradients are wrong
    monkeypatch.setattr(cached._RandomState, "replay", lambda self: contextlib.nullcontext())
    torch.manual_seed(7)
    GradCacheLoss(loss_module, CHUNK).model_loss(model, {"query": queries, "documents": documents}).backward()
    assert _max_difference(_gradients(model), expected) > 1e-4


def test_retrieval_trainer_runs_the_cached_loss(embedder_paths, tmp_path: Path) -> None:
    from retrievals_rag.training.arguments import RetrievalTrainingArguments
    from retrievals_rag.training.trainer import RetrievalTrainer

    model = _embedder(embedder_paths[0.0])
    queries, documents = _batch(model)
    inputs = {"query": queries, "documents": documents}
    trainers = {}
    for chunk_size in (None, CHUNK):
        args = RetrievalTrainingArguments(
            output_dir=str(tmp_path), use_cpu=True, report_to="none", grad_cache_chunk_size=chunk_size
        )
        trainers[chunk_size] = RetrievalTrainer(model, args, [], InfoNCELoss())
    assert isinstance(trainers[CHUNK].loss, GradCacheLoss)
    trainers[None].compute_loss(model, inputs).backward()
    expected = _gradients(model)
    trainers[CHUNK].compute_loss(model, inputs).backward()
    assert _max_difference(_gradients(model), expected) < 1e-5


def test_colbert_cached_maxsim_loss_matches(embedder_paths, tmp_path: Path) -> None:
    from retrievals_rag.training.arguments import RerankerTrainingArguments
    from retrievals_rag.training.rerank_trainer import RerankTrainer

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fresh projection
        model = ColBERT.from_pretrained(embedder_paths[0.0], device="cpu", colbert_dim=16)
    model.train()
    features = [
        {"query": query, "documents": [document, other]}
        for query, document, other in zip(_texts(32, 0), _texts(32, 3), _texts(32, 5), strict=True)
    ]
    gradients = {}
    for chunk_size in (None, 4):
        args = RerankerTrainingArguments(
            output_dir=str(tmp_path), use_cpu=True, report_to="none", grad_cache_chunk_size=chunk_size
        )
        trainer = RerankTrainer(model, args, [], "infonce", temperature=0.1)
        batch = trainer.data_collator(features)
        trainer.compute_loss(model, batch).backward()
        gradients[chunk_size] = _gradients(model)
    # MaxSim at temperature 0.1 on a random model gives gradients up to ~100: float32 rounding is relative
    for name, expected in gradients[None].items():
        scale = max(1.0, float(expected.abs().max()))
        assert float((gradients[4][name] - expected).abs().max()) < 1e-5 * scale, name


def test_bad_chunk_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        GradCacheLoss(InfoNCELoss(), chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        grad_cache_loss(
            lambda role, part: part["x"],
            [{"x": torch.ones(2, 2), "attention_mask": torch.ones(2, 1)}],
            lambda outputs: outputs[0].sum(),
            chunk_size=-1,
        )
