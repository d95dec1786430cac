from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import retrievals_rag.retrieval as retrieval_package
from retrievals_rag.retrieval import dense
from retrievals_rag.retrieval.dense import DenseIndex, dense_search


def brute_force(queries: np.ndarray, corpus: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k by full sort: score descending, then lower corpus index first."""
    scores = queries.astype(np.float64) @ corpus.astype(np.float64).T  # (n_queries, n_corpus)
    k = min(top_k, corpus.shape[0])
    indices = np.stack([np.lexsort((np.arange(len(row)), -row))[:k] for row in scores])
    return np.take_along_axis(scores, indices, axis=1), indices


def integer_embeddings(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    """Small integer values: scores are exact in float32 and full of ties."""
    return np.random.default_rng(seed).integers(-2, 3, size=(rows, dim)).astype(np.float32)


def adversarial_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A valid top-k that, among equal scores, returns the highest columns first (the wrong ones for us)."""
    flipped_values, flipped_columns = scores.flip(1).sort(dim=1, descending=True, stable=True)
    return flipped_values[:, :k], scores.shape[1] - 1 - flipped_columns[:, :k]


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 50, 1000])
def test_matches_brute_force_with_ties_for_any_chunk_size(chunk_size: int) -> None:
    queries, corpus = integer_embeddings(6, seed=1), integer_embeddings(50, seed=2)
    expected_scores, expected_indices = brute_force(queries, corpus, top_k=10)
    # The planted ties straddle the cut at k for some query, so the tie rule decides which documents appear.
    all_scores = np.sort(queries @ corpus.T, axis=1)[:, ::-1]
    assert np.any(all_scores[:, 9] == all_scores[:, 10])

    scores, indices = dense_search(queries, corpus, top_k=10, chunk_size=chunk_size)

    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(scores, expected_scores.astype(np.float32))
    assert scores.dtype == np.float32 and indices.dtype == np.int64


@pytest.mark.parametrize("chunk_size", [1, 4, 13, 50])
def test_tie_rule_holds_when_topk_returns_other_tied_columns(
    monkeypatch: pytest.MonkeyPatch, chunk_size: int
) -> None:
    monkeypatch.setattr(dense, "_torch_topk", adversarial_topk)
    queries, corpus = integer_embeddings(6, seed=3), integer_embeddings(50, seed=4)
    expected_scores, expected_indices = brute_force(queries, corpus, top_k=10)

    scores, indices = dense_search(queries, corpus, top_k=10, chunk_size=chunk_size)

    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(scores, expected_scores.astype(np.float32))


def test_all_scores_equal_returns_lowest_indices() -> None:
    corpus = np.zeros((20, 4), dtype=np.float32)
    for chunk_size in (1, 6, 100):
        scores, indices = dense_search(np.ones((2, 4)), corpus, top_k=5, chunk_size=chunk_size)
        np.testing.assert_array_equal(indices, [[0, 1, 2, 3, 4]] * 2)
        np.testing.assert_array_equal(scores, np.zeros((2, 5)))


def test_query_blocks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    queries, corpus = integer_embeddings(9, seed=5), integer_embeddings(30, seed=6)
    expected = dense_search(queries, corpus, top_k=4, chunk_size=8)
    monkeypatch.setattr(dense, "_MAX_SCORE_MATRIX_ELEMENTS", 16)  # two queries per block with chunks of 8

    blocked = dense_search(queries, corpus, top_k=4, chunk_size=8)

    np.testing.assert_array_equal(blocked[0], expected[0])
    np.testing.assert_array_equal(blocked[1], expected[1])


def test_cos_matches_numpy_reference() -> None:
    rng = np.random.default_rng(7)
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    corpus = rng.normal(size=(40, 16)).astype(np.float32) * rng.uniform(0.1, 10, size=(40, 1)).astype(
        np.float32
    )
    normalised_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    normalised_corpus = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    expected_scores, expected_indices = brute_force(normalised_queries, normalised_corpus, top_k=7)

    scores, indices = dense_search(queries, corpus, top_k=7, score_function="cos", chunk_size=9)

    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_cos_and_dot_differ_on_vector_length() -> None:
    corpus = np.array([[1.0, 0.0], [10.0, 10.0]], dtype=np.float32)
    query = np.array([[1.0, 0.0]], dtype=np.float32)

    _, dot_indices = dense_search(query, corpus, top_k=1, score_function="dot")
    cos_scores, cos_indices = dense_search(query, corpus, top_k=1, score_function="cos")

    assert dot_indices.tolist() == [[1]]
    assert cos_indices.tolist() == [[0]]
    assert cos_scores[0, 0] == pytest.approx(1.0)


def test_cos_ties_follow_the_tie_rule() -> None:
    # Scaled one-hot rows: cosine scores are exactly 1 or 0.
    corpus = np.zeros((12, 3), dtype=np.float32)
    corpus[np.arange(12), np.arange(12) % 3] = np.arange(1, 13)
    for chunk_size in (1, 5, 12):
        scores, indices = dense_search(
            np.array([[0.0, 2.0, 0.0]]), corpus, top_k=6, score_function="cos", chunk_size=chunk_size
        )
        assert indices.tolist() == [[1, 4, 7, 10, 0, 2]]
        np.testing.assert_array_equal(scores, [[1, 1, 1, 1, 0, 0]])


def test_torch_and_numpy_inputs_agree() -> None:
    queries, corpus = integer_embeddings(4, seed=8), integer_embeddings(25, seed=9)
    expected_scores, expected_indices = dense_search(queries, corpus, top_k=5, chunk_size=6)

    for query_input, corpus_input in [
        (torch.from_numpy(queries), torch.from_numpy(corpus)),
        (queries, torch.from_numpy(corpus)),
        (torch.from_numpy(queries), corpus),
    ]:
        scores, indices = dense_search(query_input, corpus_input, top_k=5, chunk_size=6, device="cpu")
        assert isinstance(scores, np.ndarray) and isinstance(indices, np.ndarray)
        np.testing.assert_array_equal(indices, expected_indices)
        np.testing.assert_array_equal(scores, expected_scores)


@pytest.mark.parametrize(
    "convert",
    [
        lambda array: array.astype(np.float16),
        lambda array: torch.from_numpy(array).to(torch.float16),
        lambda array: torch.from_numpy(array).to(torch.bfloat16),
        lambda array: array.astype(np.int64),
    ],
    ids=["numpy-float16", "torch-float16", "torch-bfloat16", "numpy-int64"],
)
def test_low_precision_and_integer_inputs_are_scored_in_float32(convert) -> None:
    queries, corpus = integer_embeddings(3, seed=10), integer_embeddings(30, seed=11)
    expected_scores, expected_indices = brute_force(queries, corpus, top_k=8)  # values exact in all dtypes

    scores, indices = dense_search(convert(queries), convert(corpus), top_k=8, chunk_size=7)

    assert scores.dtype == np.float32
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(scores, expected_scores.astype(np.float32))


def test_float16_accumulates_in_float32() -> None:
    # 300 products of 60 each sum to 18000: float16 accumulation would round it (spacing 16 at that size).
    queries = np.full((1, 300), 6.0, dtype=np.float16)
    corpus = np.full((2, 300), 10.0, dtype=np.float16)
    corpus[1, 0] = 10.5  # 18003: distinguishable only in float32
    scores, indices = dense_search(queries, corpus, top_k=2)
    assert indices.tolist() == [[1, 0]]
    assert scores.tolist() == [[18003.0, 18000.0]]


def test_shapes_and_edge_cases() -> None:
    queries, corpus = integer_embeddings(3), integer_embeddings(4)

    scores, indices = dense_search(queries, corpus, top_k=10)
    assert scores.shape == indices.shape == (3, 4)

    scores, indices = dense_search(queries, np.zeros((0, 8), dtype=np.float32), top_k=5)
    assert scores.shape == indices.shape == (3, 0)
    assert scores.dtype == np.float32 and indices.dtype == np.int64

    scores, indices = dense_search(np.zeros((0, 8), dtype=np.float32), corpus, top_k=2)
    assert scores.shape == indices.shape == (0, 2)

    scores, indices = dense_search(queries, corpus, top_k=1, chunk_size=1)
    assert scores.shape == (3, 1)


@pytest.mark.parametrize(
    ("queries", "corpus", "options", "message"),
    [
        (np.zeros(4), np.zeros((3, 4)), {}, "query_embeddings must be 2-D"),
        (np.zeros((2, 4)), np.zeros((2, 3, 4)), {}, r"corpus_embeddings must be 2-D .* shape \(2, 3, 4\)"),
        (np.zeros((2, 4)), np.zeros((3, 5)), {}, "dimension 4 but corpus_embeddings have dimension 5"),
        (np.zeros((2, 4)), np.zeros((3, 4)), {"top_k": 0}, "top_k must be an integer >= 1, got 0"),
        (np.zeros((2, 4)), np.zeros((3, 4)), {"top_k": 2.5}, "got 2.5"),
        (np.zeros((2, 4)), np.zeros((3, 4)), {"chunk_size": 0}, "chunk_size must be an integer >= 1, got 0"),
        (
            np.zeros((2, 4)),
            np.zeros((3, 4)),
            {"score_function": "l2"},
            "score_function must be 'cos' or 'dot'",
        ),
        (np.full((2, 4), np.nan), np.zeros((3, 4)), {}, "NaN scores"),
    ],
)
def test_invalid_inputs_raise_clear_errors(queries, corpus, options, message) -> None:
    arguments = {"top_k": 2, **options}
    with pytest.raises(ValueError, match=message):
        dense_search(queries, corpus, **arguments)


@pytest.mark.parametrize("chunk_size", [1, 2, 10])
def test_one_nan_document_raises(chunk_size: int) -> None:
    corpus = integer_embeddings(6)
    corpus[4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN scores"):
        dense_search(integer_embeddings(2), corpus, top_k=1, chunk_size=chunk_size)


def test_non_numeric_input_raises_type_error() -> None:
    with pytest.raises(TypeError, match="real numbers"):
        dense_search(np.array([["a", "b"]]), np.zeros((2, 2)), top_k=1)


# DenseIndex


def test_dense_index_search_and_run() -> None:
    index = DenseIndex(score_function="dot", chunk_size=2)
    index.add(["a", "b", "c"], np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]))

    results = index.search(np.array([[1.0, 0.0], [0.0, 3.0]]), top_k=2)
    assert results == [[("c", 2.0), ("a", 1.0)], [("b", 3.0), ("a", 0.0)]]
    assert all(type(score) is float for hits in results for _, score in hits)

    run = index.to_run(["q1", "q2"], np.array([[1.0, 0.0], [0.0, 3.0]]), top_k=1)
    assert run == {"q1": {"c": 2.0}, "q2": {"b": 3.0}}
    assert all(type(score) is float for hits in run.values() for score in hits.values())


def test_dense_index_adds_in_batches_like_dense_search() -> None:
    corpus = integer_embeddings(30, seed=12)
    queries = torch.from_numpy(integer_embeddings(4, seed=13))
    ids = [f"doc{position}" for position in range(30)]
    index = DenseIndex(score_function="cos")
    index.add(ids[:10], corpus[:10])
    index.add(ids[10:], torch.from_numpy(corpus[10:]))
    _, expected_indices = dense_search(queries, corpus, top_k=5, score_function="cos")

    results = index.search(queries, top_k=5)

    assert len(index) == 30 and index.ids == ids and index.dim == 8
    assert [[doc_id for doc_id, _ in hits] for hits in results] == [
        [ids[position] for position in row] for row in expected_indices
    ]


def test_dense_index_validation() -> None:
    index = DenseIndex()
    index.add(["a", "b"], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"already in the index: \['a'\]"):
        index.add(["a"], np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"ids must be unique; repeated: \['c'\]"):
        index.add(["c", "c"], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="got 1 ids but 2 embedding rows"):
        index.add(["c"], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dimension 4, the index holds dimension 3"):
        index.add(["c"], np.zeros((1, 4)))
    with pytest.raises(TypeError, match="position 0 is int"):
        index.add([7], np.zeros((1, 3)))
    with pytest.raises(TypeError, match="not one string"):
        index.add("c", np.zeros((1, 3)))
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, got 0"):
        index.search(np.zeros((1, 3)), top_k=0)
    with pytest.raises(ValueError, match="dimension 2, the index holds dimension 3"):
        index.search(np.zeros((1, 2)), top_k=1)
    with pytest.raises(ValueError, match=r"query ids must be unique; repeated: \['q'\]"):
        index.to_run(["q", "q"], np.zeros((2, 3)), top_k=1)
    with pytest.raises(ValueError, match="got 1 query ids for 2 queries"):
        index.to_run(["q"], np.zeros((2, 3)), top_k=1)
    assert index.ids == ["a", "b"]  # failed adds left nothing behind


def test_empty_dense_index_returns_empty_lists() -> None:
    index = DenseIndex()
    assert index.search(np.zeros((2, 3)), top_k=3) == [[], []]
    assert index.to_run(["q"], np.zeros((1, 3)), top_k=3) == {"q": {}}
    assert index.embeddings.shape == (0, 0)


def test_dense_index_rejects_unknown_score_function() -> None:
    with pytest.raises(ValueError, match="score_function must be 'cos' or 'dot', got 'l2'"):
        DenseIndex(score_function="l2")  # type: ignore[arg-type]


# package


def test_package_exports() -> None:
    assert sorted(retrieval_package.__all__) == sorted(retrieval_package._LAZY_NAMES)
    for name in retrieval_package.__all__:
        assert getattr(retrieval_package, name).__name__ == name


def test_importing_the_package_loads_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "import retrievals_rag.retrieval\n"
        "import retrievals_rag.retrieval.dense, retrievals_rag.retrieval.faiss_index\n"
        "import retrievals_rag.retrieval.bm25, retrievals_rag.retrieval.fusion\n"
        "print(sorted(name for name in ('torch', 'faiss', 'bm25s') if name in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"
