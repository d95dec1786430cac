from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from retrievals_rag.retrieval.dense import DenseIndex
from retrievals_rag.retrieval.faiss_index import FaissIndex


def random_embeddings(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)


def ids_of(results: list[list[tuple[str, float]]]) -> list[list[str]]:
    return [[doc_id for doc_id, _ in hits] for hits in results]


def scores_of(results: list[list[tuple[str, float]]]) -> np.ndarray:
    return np.array([[score for _, score in hits] for hits in results])


@pytest.mark.parametrize("score_function", ["dot", "cos"])
def test_flat_index_matches_dense_index(score_function: str) -> None:
    corpus = random_embeddings(120, seed=1) * np.linspace(0.5, 3, 120, dtype=np.float32)[:, None]
    queries = random_embeddings(7, seed=2)
    ids = [f"doc-{position}" for position in range(120)]
    faiss_index = FaissIndex(score_function=score_function)
    dense_index = DenseIndex(score_function=score_function)
    for index in (faiss_index, dense_index):
        index.add(ids[:50], corpus[:50])
        index.add(ids[50:], corpus[50:])

    faiss_results = faiss_index.search(queries, top_k=10)
    dense_results = dense_index.search(queries, top_k=10)

    assert ids_of(faiss_results) == ids_of(dense_results)
    np.testing.assert_allclose(scores_of(faiss_results), scores_of(dense_results), rtol=1e-5, atol=1e-5)
    assert all(type(score) is float for hits in faiss_results for _, score in hits)
    assert faiss_index.to_run(["q"], queries[:1], top_k=3) == {
        "q": dict(faiss_results[0][:3]),
    }


def test_cos_does_not_modify_the_callers_arrays() -> None:
    corpus = random_embeddings(5, seed=3)
    original = corpus.copy()
    index = FaissIndex(score_function="cos")
    index.add([str(position) for position in range(5)], corpus)
    index.search(corpus, top_k=2)
    np.testing.assert_array_equal(corpus, original)


def test_ties_come_in_insertion_order_and_top_k_is_clipped() -> None:
    index = FaissIndex()
    index.add(["z", "y", "x"], np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    assert index.search(np.array([[1.0, 0.0]]), top_k=10) == [[("z", 1.0), ("y", 1.0), ("x", 0.0)]]


def test_save_load_round_trip(tmp_path: Path) -> None:
    corpus, queries = random_embeddings(40, seed=4), random_embeddings(3, seed=5)
    ids = [f"é-{position}" for position in range(40)]
    index = FaissIndex(score_function="cos")
    index.add(ids, corpus)
    index.save(tmp_path / "saved")

    loaded = FaissIndex.load(tmp_path / "saved")

    assert loaded.ids == ids and loaded.score_function == "cos" and loaded.dim == 16
    assert loaded.search(queries, top_k=5) == index.search(queries, top_k=5)
    loaded.add(["new"], queries[:1])  # ids stay checked after loading
    assert loaded.search(queries[:1], top_k=1)[0][0][0] == "new"
    with pytest.raises(ValueError, match="already in the index"):
        loaded.add(["é-0"], queries[:1])


def test_save_load_empty_index(tmp_path: Path) -> None:
    FaissIndex(index_factory="HNSW8").save(tmp_path)
    loaded = FaissIndex.load(tmp_path)
    assert len(loaded) == 0 and loaded.index_factory == "HNSW8"
    assert loaded.search(np.zeros((1, 4)), top_k=2) == [[]]


def test_load_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"metadata\.json is missing"):
        FaissIndex.load(tmp_path / "nothing")


def test_hnsw_finds_each_vector_itself() -> None:
    corpus = random_embeddings(200, seed=6)
    index = FaissIndex(score_function="cos", index_factory="HNSW32")
    index.add([str(position) for position in range(200)], corpus)
    top_ids = [hits[0][0] for hits in index.search(corpus, top_k=1)]
    assert np.mean([found == str(position) for position, found in enumerate(top_ids)]) >= 0.95


def test_ivf_is_trained_on_first_add_and_exact_when_probing_every_list() -> None:
    import faiss

    corpus, queries = random_embeddings(200, seed=7), random_embeddings(5, seed=8)
    ids = [str(position) for position in range(200)]
    index = FaissIndex(index_factory="IVF4,Flat")
    index.add(ids, corpus)
    assert index.faiss_index is not None and index.faiss_index.is_trained
    faiss.ParameterSpace().set_index_parameters(index.faiss_index, "nprobe=4")
    flat = FaissIndex()
    flat.add(ids, corpus)

    assert ids_of(index.search(queries, top_k=8)) == ids_of(flat.search(queries, top_k=8))


def test_too_few_training_vectors_raise_value_error() -> None:
    index = FaissIndex(index_factory="IVF16,Flat")
    with pytest.raises(ValueError, match="training the 'IVF16,Flat' index on 4 vectors failed"):
        index.add(["a", "b", "c", "d"], random_embeddings(4))
    assert len(index) == 0 and index.faiss_index is None


def test_bad_factory_string_raises_value_error() -> None:
    index = FaissIndex(index_factory="NotAnIndex")
    with pytest.raises(ValueError, match="faiss could not build index_factory='NotAnIndex'"):
        index.add(["a"], random_embeddings(1))


def test_missing_faiss_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'retrievals-rag\[faiss\]'"):
        FaissIndex()
