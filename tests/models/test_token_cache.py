"""The document vector cache and ColBERT scoring through it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from retrievals_rag import ColBERT
from retrievals_rag.models.token_cache import DocumentVectorCache

QUERIES = ["what is a cell?", "cancer risk", ""]
DOCUMENTS = [
    "The cell is the unit of the human brain.",
    "Patients with a gene study: results, risk!",
    "",
    "protein " * 300 + "cancer risk",  # longer than max_length: several windows
]


def _colbert(path: Path) -> ColBERT:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no colbert_linear in the folder: a fresh projection
        return ColBERT.from_pretrained(path, device="cpu", max_length=64)


def test_cache_stores_converts_and_counts() -> None:
    cache = DocumentVectorCache(dtype=torch.float32)
    assert cache.get("a") is None and cache.misses == 1
    stored = cache.put("a", [torch.ones(3, 4, dtype=torch.float64), torch.zeros(2, 4)])
    assert [t.dtype for t in stored] == [torch.float32, torch.float32]
    assert "a" in cache and "b" not in cache and 1 not in cache
    assert cache.nbytes == (3 + 2) * 4 * 4
    assert cache.get("a") is not None and cache.hits == 1
    cache.put("a", [torch.ones(1, 4)])  # replacing an entry recounts its bytes
    assert len(cache) == 1 and cache.nbytes == 16
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0 and cache.hits == 0


def test_cache_forgets_the_least_recently_used_beyond_its_bytes() -> None:
    cache = DocumentVectorCache(max_bytes=3 * 8 * 2)  # three float16 (1, 8) matrices
    for text in ("a", "b", "c"):
        cache.put(text, [torch.ones(1, 8)])
    cache.get("a")  # now b is the least recently used
    cache.put("d", [torch.ones(1, 8)])
    assert "b" not in cache and all(text in cache for text in ("a", "c", "d"))
    cache.put("huge", [torch.ones(100, 8)])  # larger than the whole cache: not kept, nothing evicted
    assert "huge" not in cache and len(cache) == 3
    assert cache.nbytes <= cache.max_bytes


def test_cache_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        DocumentVectorCache(max_bytes=0)
    with pytest.raises(ValueError, match="dtype"):
        DocumentVectorCache(dtype=torch.int8)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float16, 2e-2)])
def test_cached_scores_equal_uncached_ones(
    tiny_bert_path: Path, dtype: torch.dtype, tolerance: float
) -> None:
    colbert = _colbert(tiny_bert_path)
    pairs = [(query, document) for query in QUERIES for document in DOCUMENTS]
    expected = colbert.compute_score(pairs)
    cache = colbert.enable_document_cache(dtype=dtype)
    first = colbert.compute_score(pairs)  # fills the cache
    assert len(cache) == len(DOCUMENTS) and cache.misses >= len(DOCUMENTS)
    hits = cache.hits
    second = colbert.compute_score(pairs)  # scored from the cache alone
    assert cache.hits > hits
    for scores in (first, second):
        assert scores == pytest.approx(expected, abs=tolerance * 32)  # up to 32 query tokens summed
    results = colbert.rerank("cancer risk", DOCUMENTS, top_k=2)
    assert [r.index for r in results] == [r.index for r in colbert.rerank("cancer risk", DOCUMENTS)][:2]


def test_cache_documents_ahead_then_only_queries_are_encoded(tiny_bert_path: Path) -> None:
    colbert = _colbert(tiny_bert_path)
    assert colbert.cache_documents(DOCUMENTS + DOCUMENTS[:1]) == len(DOCUMENTS)  # duplicates once
    assert colbert.cache_documents(DOCUMENTS) == 0
    encoded_kinds: list[str] = []
    original = colbert.forward

    def spy(input_ids: torch.Tensor, attention_mask: torch.Tensor, kind: str):  # type: ignore[no-untyped-def]
        encoded_kinds.append(kind)
        return original(input_ids, attention_mask, kind)  # type: ignore[arg-type]

    colbert.forward = spy  # type: ignore[method-assign]
    colbert.rerank("what is a cell?", DOCUMENTS)
    assert set(encoded_kinds) == {"query"}
    with pytest.raises(TypeError, match=r"documents\[1\] is int"):
        colbert.cache_documents(["a", 2])  # type: ignore[list-item]


def test_a_mode_switch_keeps_the_cache_and_new_weights_empty_it(tiny_bert_path: Path, tmp_path: Path) -> None:
    colbert = _colbert(tiny_bert_path)
    colbert.train()  # a model left in train mode still fills the cache (it used to return N and keep nothing)
    assert colbert.cache_documents(DOCUMENTS) == len(DOCUMENTS)
    assert len(colbert.document_cache) == len(DOCUMENTS)  # type: ignore[arg-type]
    colbert.eval()
    colbert.train()
    colbert.eval()
    assert colbert.cache_documents(DOCUMENTS) == 0  # still there after mode switches
    # a training step changes the weights: the cached vectors are stale and must not be used
    optimizer = torch.optim.SGD(colbert.parameters(), lr=0.5)
    colbert.train()
    row = colbert.tokenize_documents(["the cell is a unit"])[0]
    encoded = colbert(torch.tensor([row]), torch.ones((1, len(row)), dtype=torch.long), "document")
    loss = encoded.embeddings.sum()
    loss.backward()
    optimizer.step()
    colbert.eval()
    cached = colbert.compute_score([("cancer risk", document) for document in DOCUMENTS])
    colbert.disable_document_cache()
    fresh = colbert.compute_score([("cancer risk", document) for document in DOCUMENTS])
    assert cached == pytest.approx(fresh, abs=1e-2)  # float16 storage; stale vectors would differ by far more
    colbert.enable_document_cache()
    colbert.save_pretrained(tmp_path)
    colbert.cache_documents(DOCUMENTS)
    colbert.load_weights(tmp_path)
    assert colbert.cache_documents(DOCUMENTS) == len(DOCUMENTS)  # loading weights emptied it
    colbert.disable_document_cache()
    assert colbert.document_cache is None


def test_enable_document_cache_applies_new_arguments(tiny_bert_path: Path) -> None:
    colbert = _colbert(tiny_bert_path)
    cache = colbert.enable_document_cache()
    colbert.cache_documents(DOCUMENTS)
    assert colbert.enable_document_cache() is cache and len(cache) == len(DOCUMENTS)
    colbert.enable_document_cache(max_bytes=1)  # smaller: documents that no longer fit are forgotten
    assert cache.max_bytes == 1 and len(cache) == 0
    colbert.enable_document_cache(max_bytes=1 << 20)
    colbert.cache_documents(DOCUMENTS)
    float32 = colbert.enable_document_cache(dtype=torch.float32)  # another storage type: a new cache
    assert float32.dtype == torch.float32 and float32.max_bytes == 1 << 20 and len(float32) == 0


def test_a_cache_smaller_than_the_documents_still_scores_every_pair(tiny_bert_path: Path) -> None:
    colbert = _colbert(tiny_bert_path)
    expected = colbert.compute_score([("cancer risk", document) for document in DOCUMENTS])
    colbert.enable_document_cache(max_bytes=2000, dtype=torch.float32)  # room for a document or two
    scores = colbert.compute_score([("cancer risk", document) for document in DOCUMENTS])
    assert scores == pytest.approx(expected, abs=1e-4)
    assert colbert.document_cache.nbytes <= 2000  # type: ignore[union-attr]


def test_edge_cases_with_the_cache_on(tiny_bert_path: Path) -> None:
    colbert = _colbert(tiny_bert_path)
    colbert.enable_document_cache()
    assert colbert.compute_score([]) == []
    assert colbert.rerank("cell", []) == []
    assert colbert.cache_documents([]) == 0
    assert len(colbert.rerank("cell", ["a", "b", "a"], top_k=5)) == 3  # duplicates scored alike, cached once
    assert len(colbert.document_cache) == 2  # type: ignore[arg-type]
    assert colbert.enable_document_cache() is colbert.document_cache  # enabling twice keeps the same cache
