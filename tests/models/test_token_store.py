"""ColBERT's document vectors on disk: a second process (a restart) reads them instead of encoding again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrievals_rag import ColBERT
from retrievals_rag.models.token_store import PersistentDocumentVectorCache, model_fingerprint

DOCUMENTS = ["the cell protein", "cancer risk in patients " * 20, "a gene study", "dense retrieval"]


@pytest.fixture(scope="module")
def colbert_folder(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path) -> Path:
    folder = tmp_path_factory.mktemp("colbert")
    with pytest.warns(UserWarning, match="randomly initialised"):
        ColBERT.from_pretrained(tiny_bert_path, device="cpu", max_length=32).save_pretrained(folder)
    return folder


def test_a_restart_reads_the_vectors_from_disk(colbert_folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "vectors" / "colbert.sqlite3"
    first = ColBERT.from_pretrained(colbert_folder, device="cpu")
    first.enable_document_cache(path=path)
    expected = first.compute_score([("what is a gene", document) for document in DOCUMENTS])
    assert len(first.document_cache) == len(DOCUMENTS)

    restarted = ColBERT.from_pretrained(colbert_folder, device="cpu")
    cache = restarted.enable_document_cache(path=path)
    assert isinstance(cache, PersistentDocumentVectorCache)
    calls = []
    original = restarted._document_vectors
    restarted._document_vectors = lambda documents, options: (
        calls.append(documents)
        or original(  # type: ignore[method-assign]
            documents, options
        )
    )
    scores = restarted.compute_score([("what is a gene", document) for document in DOCUMENTS])
    assert calls == []  # nothing encoded: every document came from the file
    assert cache.disk_hits == len(DOCUMENTS) and cache.misses == 0
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    assert all(document in cache for document in DOCUMENTS)

    cache.clear()  # the weights change (training): the file is left for the weights it was named after
    assert cache.detached and path.is_file()
    reopened = PersistentDocumentVectorCache(path)
    assert len(reopened) == len(DOCUMENTS)
    reopened.close()


def test_the_fingerprint_names_weights_settings_and_backend(colbert_folder: Path) -> None:
    model = ColBERT.from_pretrained(colbert_folder, device="cpu")
    base = model_fingerprint(colbert_folder, model.settings, "torch", "float16")
    assert base == model_fingerprint(colbert_folder, model.settings, "torch", "float16")
    assert base != model_fingerprint(colbert_folder, model.settings, "onnx-int8", "float16")
    assert base != model_fingerprint(colbert_folder, model.settings, "torch", "float32")


def test_a_damaged_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "vectors.sqlite3"
    path.write_bytes(b"this is not a database file at all, not even close" * 100)
    with pytest.raises(ValueError, match=r"vectors\.sqlite3: not a document vector file"):
        PersistentDocumentVectorCache(path)
