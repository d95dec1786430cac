"""Ray Data encoding on a local 2-CPU cluster started here: the same shards, vectors and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrievals_rag.cli.main import main
from retrievals_rag.distributed.merge import build_index, load_encoded_corpus

from ..conftest import SCIFACT_SUBSET, build_tiny_bert

ray = pytest.importorskip("ray")
CORPUS = SCIFACT_SUBSET / "corpus.jsonl"


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_data_writes_the_same_vectors_and_metrics(
    local_cluster, minilm_path: Path, tmp_path: Path
) -> None:
    from retrievals_rag import AutoModelForEmbedding
    from retrievals_rag.distributed.ray import encode_with_ray
    from retrievals_rag.evaluation.evaluator import RetrievalEvaluator
    from retrievals_rag.evaluation.metrics import evaluate_run

    model_path = build_tiny_bert(tmp_path / "model", minilm_path, dropout=0.0)
    reference = tmp_path / "reference.npy"
    assert (
        main(["encode", "--model", str(model_path), "--input", str(CORPUS), "--output", str(reference)]) == 0
    )
    reference_ids = json.loads(reference.with_name("reference.ids.json").read_text())

    folder = tmp_path / "vecs"
    options = ray.data.DataContext.get_current().execution_options
    options.preserve_order = False  # the caller's own setting
    outcomes = encode_with_ray(
        CORPUS, folder, model_path, num_shards=3, concurrency=2, num_cpus=0.5, batch_size=64,
        model_options={"device": "cpu"},
    )  # fmt: skip
    assert [(str(outcome.spec), outcome.status, outcome.rows) for outcome in outcomes] == [
        ("0/3", "encoded", 200), ("1/3", "encoded", 200), ("2/3", "encoded", 200),
    ]  # fmt: skip
    assert options.preserve_order is False  # given back: ordered only inside the encode
    corpus = load_encoded_corpus(folder, expected_model=model_path)
    assert corpus.ids == reference_ids
    assert float(np.abs(corpus.embeddings - np.load(reference)).max()) < 1e-6

    # the same manifest as the torchrun path: a sharded encode of the same run resumes in this folder
    assert main(["encode", "--model", str(model_path), "--input", str(CORPUS), "--output-dir", str(folder),
                 "--num-shards", "3"]) == 0  # fmt: skip

    # the merged index gives the evaluator's metrics
    model = AutoModelForEmbedding.from_pretrained(model_path, device="cpu")
    evaluator = RetrievalEvaluator.from_beir(SCIFACT_SUBSET)
    expected = evaluator.evaluate(model).metrics
    index = build_index(corpus, "exact")
    query_vectors = model.encode_queries(evaluator.query_texts)
    run = index.to_run(evaluator.query_ids, query_vectors, top_k=max(evaluator.k_values))
    merged_metrics = evaluate_run(evaluator.qrels, run, k_values=evaluator.k_values)
    assert merged_metrics == pytest.approx(expected, abs=1e-6)
    # and the evaluator reads the encoded corpus instead of encoding it again
    from_shards = evaluator.evaluate(model, corpus_embeddings=corpus.aligned(evaluator.document_ids)).metrics
    assert from_shards == pytest.approx(expected, abs=1e-6)
