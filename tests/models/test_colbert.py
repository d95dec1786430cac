"""Tests of MaxSim and of the ColBERT model on a tiny BERT built at test time."""

from __future__ import annotations

import json
import pickle
import string
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from retrievals_rag import ColBERT
from retrievals_rag.models.colbert import (
    BGE_M3_PROJECTION_FILE,
    PROJECTION_FILE,
    TokenEmbeddings,
    default_markers,
    punctuation_ids,
)
from retrievals_rag.models.config import CONFIG_FILE_NAME
from retrievals_rag.similarity import maxsim
from tests.conftest import build_word_tokenizer

QUERIES = ["what is a cell?", "cancer risk", ""]
DOCUMENTS = [
    "The cell is the unit of the human brain.",
    "Patients with a gene study: results, risk!",
    "",
    "protein " * 300,
]


def _naive_maxsim(
    queries: torch.Tensor, documents: torch.Tensor, query_mask: torch.Tensor, document_mask: torch.Tensor
) -> torch.Tensor:
    scores = torch.zeros(len(queries), len(documents), dtype=torch.float64)
    for q in range(len(queries)):
        for d in range(len(documents)):
            total = 0.0
            for i in range(queries.shape[1]):
                if not query_mask[q, i]:
                    continue
                best = max(
                    (
                        float(queries[q, i].double() @ documents[d, j].double())
                        for j in range(documents.shape[1])
                        if document_mask[d, j]
                    ),
                    default=0.0,
                )
                total += best
            scores[q, d] = total
    return scores


def test_maxsim_equals_a_naive_loop_with_padding() -> None:
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(3, 5, 8, generator=generator)
    documents = torch.randn(4, 7, 8, generator=generator)
    query_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    document_mask = torch.tensor(
        [[1] * 7, [1, 1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0, 0], [0] * 7]  # the last has no token at all
    )
    # Padding positions hold large values that must never win.
    queries[query_mask == 0] = 100.0
    documents[document_mask == 0] = 100.0

    fast = maxsim(queries, documents, query_mask, document_mask)

    expected = _naive_maxsim(queries, documents, query_mask, document_mask)
    np.testing.assert_allclose(fast.double().numpy(), expected.numpy(), atol=1e-5)
    assert torch.all(fast[:, 3] == 0)


@pytest.fixture(scope="module")
def colbert(tiny_bert_path: Path) -> ColBERT:
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="no colbert_linear"):
        return ColBERT.from_pretrained(tiny_bert_path, device="cpu")


def test_defaults_and_markers(colbert: ColBERT) -> None:
    settings = colbert.settings
    assert (settings.colbert_dim, settings.max_length, settings.query_max_length) == (128, 128, 32)
    assert (settings.query_marker, settings.document_marker) == ("[unused0]", "[unused1]")
    assert settings.query_augmentation and settings.mask_punctuation
    assert settings.score_reduction == "sum"
    assert colbert.device == torch.device("cpu")
    assert not colbert.training
    assert default_markers(build_word_tokenizer()) == ("[Q] ", "[D] ")


def test_query_rows_have_the_marker_and_mask_augmentation(colbert: ColBERT) -> None:
    tokens = colbert.tokenizer.convert_ids_to_tokens(colbert.tokenize_queries(["what is a cell?"])[0])
    assert tokens[:8] == ["[CLS]", "[unused0]", "what", "is", "a", "cell", "?", "[SEP]"]
    assert tokens[8:] == ["[MASK]"] * (32 - 8)
    long_query = colbert.tokenize_queries(["cell " * 100])[0]
    assert len(long_query) == 32
    assert colbert.tokenizer.convert_ids_to_tokens(long_query[-1]) == "[SEP]"


def test_document_rows_have_the_marker_and_are_truncated(colbert: ColBERT) -> None:
    tokens = colbert.tokenizer.convert_ids_to_tokens(colbert.tokenize_documents(["The cell, a unit."])[0])
    assert tokens == ["[CLS]", "[unused1]", "the", "cell", ",", "a", "unit", ".", "[SEP]"]
    assert len(colbert.tokenize_documents(["cell " * 1000])[0]) == colbert.max_length


def test_masks_drop_document_punctuation_and_padding(colbert: ColBERT) -> None:
    rows = colbert.tokenize_documents(["The cell, a unit.", "cell"])
    from retrievals_rag.models.batching import pad_sequences

    input_ids, attention_mask = pad_sequences(rows, colbert.tokenizer.pad_token_id)
    document_mask = colbert.token_mask(input_ids, attention_mask, "document")
    query_mask = colbert.token_mask(input_ids, attention_mask, "query")
    tokens = colbert.tokenizer.convert_ids_to_tokens(rows[0])
    kept = [token for token, keep in zip(tokens, document_mask[0].tolist(), strict=True) if keep]
    assert kept == ["[CLS]", "[unused1]", "the", "cell", "a", "unit", "[SEP]"]
    assert document_mask[1].tolist() == [True, True, True, True] + [False] * 5  # padding never counts
    assert query_mask[0].tolist() == [True] * 9  # queries keep their punctuation
    punctuation = set(punctuation_ids(colbert.tokenizer))
    assert {colbert.tokenizer.convert_tokens_to_ids(symbol) for symbol in ",.!?"} <= punctuation
    assert len(punctuation) >= len(string.punctuation) - 2


def test_encode_returns_one_normalised_matrix_per_text(colbert: ColBERT) -> None:
    queries = colbert.encode_queries(QUERIES)
    documents = colbert.encode_corpus(DOCUMENTS)
    assert [matrix.shape for matrix in queries] == [(32, 128)] * 3  # mask tokens count
    assert documents[0].shape == (12, 128)  # 13 tokens less the final "."
    assert documents[2].shape == (3, 128)  # [CLS] [unused1] [SEP]
    assert documents[3].shape == (128, 128)  # truncated to max_length
    for matrix in [*queries, *documents]:
        assert matrix.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    assert colbert.encode_corpus([]) == []
    single = colbert.encode_corpus(DOCUMENTS[0])
    assert isinstance(single, np.ndarray)
    np.testing.assert_allclose(single, documents[0], atol=1e-6)


def test_compute_score_is_maxsim_of_the_encoded_matrices(colbert: ColBERT) -> None:
    queries = colbert.encode_queries(QUERIES)
    documents = colbert.encode_corpus(DOCUMENTS[:3])
    pairs = [(query, document) for query in QUERIES for document in DOCUMENTS[:3]]
    expected = [
        float(maxsim(torch.from_numpy(q)[None], torch.from_numpy(d)[None]))
        for q in queries
        for d in documents
    ]
    scores = colbert.compute_score(pairs)
    assert all(type(score) is float for score in scores)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    np.testing.assert_allclose(
        colbert.compute_score(pairs, token_budget=16, batch_size=2), expected, atol=1e-4
    )
    assert colbert.compute_score(pairs[0]) == pytest.approx(expected[0], abs=1e-4)


def test_one_maxsim_per_query_batch_and_document_batch(
    colbert: ColBERT, monkeypatch: pytest.MonkeyPatch
) -> None:
    import retrievals_rag.models.colbert as colbert_module

    calls: list[tuple[int, int]] = []

    def counting_maxsim(queries, documents, query_mask=None, document_mask=None):  # type: ignore[no-untyped-def]
        calls.append((queries.shape[0], documents.shape[0]))
        return maxsim(queries, documents, query_mask, document_mask)

    monkeypatch.setattr(colbert_module, "maxsim", counting_maxsim)
    documents = [f"cell gene {i}" for i in range(30)]
    colbert.rerank("what is a cell?", documents, token_budget=100_000)
    assert calls == [(1, 30)]


def test_rerank_equals_a_per_document_loop(colbert: ColBERT) -> None:
    query = "what is a cell?"
    documents = [*DOCUMENTS[:3], "cell gene protein", "brain"]
    results = colbert.rerank(query, documents)
    looped = [colbert.compute_score((query, document)) for document in documents]
    assert [result.index for result in results] == sorted(range(len(documents)), key=lambda i: -looped[i])
    for result in results:
        assert result.document == documents[result.index]
        assert result.score == pytest.approx(looped[result.index], abs=1e-4)


def test_a_long_document_is_scored_by_its_best_window(tiny_bert_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = ColBERT.from_pretrained(tiny_bert_path, device="cpu", max_length=16)
    query, document = "cancer risk", "the " * 40 + "cancer risk study"
    document_ids = model.tokenizer(document, add_special_tokens=False)["input_ids"]
    windows = model._document_windows(document_ids)
    assert len(windows) > 2

    def encoded(row: list[int], kind: str) -> TokenEmbeddings:
        with torch.no_grad():
            return model(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long), kind)  # type: ignore[arg-type]

    encoded_query = encoded(model.tokenize_queries([query])[0], "query")
    window_scores = [float(model.score(encoded_query, encoded(row, "document"))) for row in windows]
    assert int(np.argmax(window_scores)) == len(windows) - 1  # the query's words are in the last window
    assert model.compute_score((query, document)) == pytest.approx(max(window_scores), abs=1e-4)
    assert model.compute_score((query, document)) > window_scores[0]


def test_edge_cases(colbert: ColBERT) -> None:
    assert colbert.compute_score([]) == []
    assert colbert.rerank("cell", []) == []
    assert len(colbert.rerank("cell", ["a", "b"], top_k=5)) == 2
    assert [result.index for result in colbert.rerank("", ["", "x"], top_k=1)] in ([0], [1])
    with pytest.raises(TypeError, match=r"pairs\[0\]\[0\] is float"):
        colbert.compute_score([(1.5, "d")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"documents\[2\] is int"):
        colbert.rerank("q", ["a", "b", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        colbert.encode_queries(["a", 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="got a dict"):
        colbert.encode_corpus({"d1": "Cells divide."})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        colbert.token_mask(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2), "passage")  # type: ignore[arg-type]


def test_forward_keeps_gradients_for_training(colbert: ColBERT) -> None:
    rows = colbert.tokenize_documents(["the cell"])
    output = colbert(torch.tensor(rows), torch.ones(1, len(rows[0]), dtype=torch.long), "document")
    assert isinstance(output, TokenEmbeddings)
    assert output.embeddings.requires_grad
    assert colbert.score(output, output).requires_grad


def test_save_and_reload_write_safetensors_and_keep_settings(colbert: ColBERT, tmp_path: Path) -> None:
    colbert.save_pretrained(tmp_path)
    assert (tmp_path / PROJECTION_FILE).is_file()
    assert not (tmp_path / BGE_M3_PROJECTION_FILE).exists()
    assert json.loads((tmp_path / CONFIG_FILE_NAME).read_text())["model_kind"] == "colbert"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the saved projection loads: no "randomly initialised" warning
        reloaded = ColBERT.from_pretrained(tmp_path, device="cpu")
    assert reloaded.settings == colbert.settings
    pairs = [(query, document) for query in QUERIES for document in DOCUMENTS]
    np.testing.assert_allclose(reloaded.compute_score(pairs), colbert.compute_score(pairs), atol=1e-5)
    shorter = ColBERT.from_pretrained(tmp_path, device="cpu", query_max_length=16)
    assert shorter.settings.query_max_length == 16
    with pytest.raises(ValueError, match="128 dimensions, not 64"):
        ColBERT.from_pretrained(tmp_path, device="cpu", colbert_dim=64)


@pytest.fixture(scope="module")
def bge_m3_folder(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path) -> Path:
    """A tiny encoder with a BGE-M3-style colbert_linear.pt (a pickled state dict) beside it."""
    import shutil

    path = tmp_path_factory.mktemp("tiny-bge-m3")
    for item in tiny_bert_path.iterdir():
        shutil.copy(item, path / item.name)
    torch.manual_seed(3)
    torch.save(torch.nn.Linear(32, 16).state_dict(), path / BGE_M3_PROJECTION_FILE)
    return path


def test_a_bge_m3_folder_loads_with_its_conventions(bge_m3_folder: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    model = ColBERT.from_pretrained(bge_m3_folder, device="cpu")
    settings = model.settings
    assert settings.colbert_dim == 16
    assert (settings.query_marker, settings.document_marker) == (None, None)
    assert not settings.query_augmentation and not settings.mask_punctuation
    assert settings.skip_first_token and settings.score_reduction == "mean"

    # BGE-M3's formula, written out: drop the first token, project, normalise, mean of maxima over the query.
    tokenizer = AutoTokenizer.from_pretrained(bge_m3_folder)
    encoder = AutoModel.from_pretrained(bge_m3_folder).eval()
    linear = torch.nn.Linear(32, 16)
    linear.load_state_dict(torch.load(bge_m3_folder / BGE_M3_PROJECTION_FILE, weights_only=True))

    def vectors(text: str) -> torch.Tensor:
        with torch.no_grad():
            hidden = encoder(**tokenizer(text, return_tensors="pt")).last_hidden_state[0, 1:]
            return torch.nn.functional.normalize(linear(hidden), dim=-1)

    query, document = "what is a cell?", "The cell, a unit of the brain."
    expected = float((vectors(query) @ vectors(document).T).max(dim=1).values.mean())
    assert model.compute_score((query, document)) == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="16 dimensions, not 128"):
        ColBERT.from_pretrained(bge_m3_folder, device="cpu", colbert_dim=128)


class _NotATensor:
    pass


def test_a_pickled_projection_with_code_is_refused(tmp_path: Path, tiny_bert_path: Path) -> None:
    import shutil

    for item in tiny_bert_path.iterdir():
        shutil.copy(item, tmp_path / item.name)
    with open(tmp_path / BGE_M3_PROJECTION_FILE, "wb") as handle:
        pickle.dump({"weight": _NotATensor()}, handle, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        ColBERT.from_pretrained(tmp_path, device="cpu")
