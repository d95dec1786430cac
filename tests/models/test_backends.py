"""Exported backends (ONNX Runtime, OpenVINO, int8): same vectors and scores as torch, clear errors on bad input.

One tiny random BERT is exported once per session for each backend (the dynamo exporter takes a few seconds);
tests that damage a folder work on a copy.
"""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("onnx")

from retrievals_rag import AutoModelForEmbedding, AutoModelForRanking, ColBERT
from retrievals_rag.models.backends import available_backends, export, resolve_backend

TEXTS = [
    "dense retrieval of passages",
    "a",
    "the cell protein cancer study results patients risk treatment effect human " * 4,
]
PAIRS = [(TEXTS[0], TEXTS[2]), (TEXTS[1], TEXTS[0]), ("what is a gene", TEXTS[2])]


@pytest.fixture(scope="session")
def exported_bert(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path) -> Path:
    """The tiny BERT (an embedder folder) with every backend exported."""
    folder = tmp_path_factory.mktemp("exported") / "bert"
    shutil.copytree(tiny_bert_path, folder)
    export(str(folder), backend="onnx", quantize="int8")
    export(str(folder), backend="openvino", quantize="int8")
    return folder


@pytest.fixture
def bert_copy(tmp_path: Path, exported_bert: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(exported_bert, folder)
    return folder


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_export_writes_graphs_and_record(exported_bert: Path) -> None:
    assert available_backends(exported_bert) == ["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
    record = json.loads((exported_bert / "onnx" / "export.json").read_text())
    assert record["task"] == "base"
    assert record["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert record["files"] == {"model.onnx": None, "model_qint8.onnx": "int8"}
    assert record["source_checksum"].startswith("sha256:")
    assert _leftovers(exported_bert) == []


@pytest.mark.parametrize(
    ("backend", "tolerance"),
    [("onnx", 1e-5), ("openvino", 1e-4), ("onnx-int8", 0.05), ("openvino-int8", 0.05)],
)
def test_embedder_backends_match_torch(exported_bert: Path, backend: str, tolerance: float) -> None:
    reference = AutoModelForEmbedding.from_pretrained(exported_bert, device="cpu")
    model = AutoModelForEmbedding.from_pretrained(exported_bert, backend=backend)  # type: ignore[arg-type]
    assert model.backend == backend
    # token budget small enough that batches are padded: the exported graph must honour the mask
    ours = model.encode(TEXTS, token_budget=64)
    assert np.abs(ours - reference.encode(TEXTS)).max() < tolerance
    queries = model.encode_queries(TEXTS[:1])
    assert queries.shape == (1, reference.embedding_dimension)


def test_auto_picks_fastest_backend_on_cpu(exported_bert: Path, tiny_bert_path: Path) -> None:
    assert AutoModelForEmbedding.from_pretrained(exported_bert, backend="auto").backend == "openvino-int8"
    assert resolve_backend(tiny_bert_path, "auto", "cpu") == "torch"  # nothing exported
    assert resolve_backend(exported_bert, "auto", "cuda") == "torch"
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_backend(exported_bert, "onnx", "cuda")


def test_cross_encoder_and_colbert_backends(tmp_path: Path, tiny_bert_path: Path) -> None:
    with pytest.warns(UserWarning, match="randomly initialised"):
        ranker = AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu")
    ranker.save_pretrained(tmp_path / "ranker")
    export(str(tmp_path / "ranker"), backend="onnx", quantize="int8")
    assert json.loads((tmp_path / "ranker" / "onnx" / "export.json").read_text())["task"] == (
        "sequence_classification"
    )
    reference = ranker.compute_score(PAIRS)
    for backend, tolerance in (("onnx", 1e-4), ("onnx-int8", 0.05)):
        exported = AutoModelForRanking.from_pretrained(tmp_path / "ranker", backend=backend)  # type: ignore[arg-type]
        assert exported.backend == backend
        assert np.abs(np.asarray(exported.compute_score(PAIRS)) - np.asarray(reference)).max() < tolerance
    with pytest.raises(ValueError, match="cannot save the model"):
        exported.save_pretrained(tmp_path / "again")

    with pytest.warns(UserWarning, match="randomly initialised"):
        colbert = ColBERT.from_pretrained(tiny_bert_path, device="cpu")
    colbert.save_pretrained(tmp_path / "colbert")
    export(tmp_path / "colbert", folder=tmp_path / "colbert", backend="openvino")
    exported_colbert = ColBERT.from_pretrained(tmp_path / "colbert", backend="openvino")
    expected = colbert.compute_score(PAIRS)
    assert np.abs(np.asarray(exported_colbert.compute_score(PAIRS)) - np.asarray(expected)).max() < 1e-3


def test_missing_graph_file_is_named(bert_copy: Path) -> None:
    (bert_copy / "onnx" / "model_qint8.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"model_qint8\.onnx is missing.*retrievals-rag export"):
        AutoModelForEmbedding.from_pretrained(bert_copy, backend="onnx-int8")
    assert "onnx-int8" not in available_backends(bert_copy)
    assert AutoModelForEmbedding.from_pretrained(bert_copy, backend="auto").backend == "openvino-int8"
    shutil.rmtree(bert_copy / "openvino")
    with pytest.raises(FileNotFoundError, match="has no openvino export"):
        AutoModelForEmbedding.from_pretrained(bert_copy, backend="openvino")


@pytest.mark.parametrize(
    ("backend", "file_name"), [("onnx", "model.onnx"), ("openvino", "openvino_model.xml")]
)
def test_corrupt_graph_file_is_named(bert_copy: Path, backend: str, file_name: str) -> None:
    (bert_copy / backend / file_name).write_bytes(b"not a graph")
    with pytest.raises(ValueError, match=rf"{file_name}: the {backend} graph could not be loaded"):
        AutoModelForEmbedding.from_pretrained(bert_copy, backend=backend)  # type: ignore[arg-type]


def test_corrupt_record_and_changed_weights(bert_copy: Path) -> None:
    (bert_copy / "onnx" / "export.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"export\.json: not a valid export record"):
        AutoModelForEmbedding.from_pretrained(bert_copy, backend="onnx")
    weights = bert_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")  # the weights changed after the export
    with pytest.raises(ValueError, match="exported from other weights"):
        AutoModelForEmbedding.from_pretrained(bert_copy, backend="openvino")


def test_missing_package_is_named(bert_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def without_openvino(name: str, *args: object, **kwargs: object) -> object:
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_openvino)
    with pytest.raises(ImportError, match=r"pip install 'retrievals-rag\[openvino\]'"):
        AutoModelForEmbedding.from_pretrained(bert_copy, backend="openvino-int8")
    before = sorted(path.name for path in bert_copy.rglob("*"))
    with pytest.raises(ImportError, match="openvino"):
        export(str(bert_copy), backend="openvino", quantize="int8")
    assert sorted(path.name for path in bert_copy.rglob("*")) == before


def test_failed_export_leaves_previous_export_untouched(
    bert_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrievals_rag.models.backends import exporter as export_module

    before = {path: path.read_bytes() for path in (bert_copy / "onnx").iterdir()}

    def broken(source: Path, target: Path, scratch: Path) -> None:
        target.write_bytes(b"half a graph")
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(export_module, "_quantize_onnx", broken)
    with pytest.raises(RuntimeError, match="quantizer crashed"):
        export(str(bert_copy), backend="onnx", quantize="int8")
    assert {path: path.read_bytes() for path in (bert_copy / "onnx").iterdir()} == before
    assert _leftovers(bert_copy) == []


def test_kinds_that_cannot_be_exported(tmp_path: Path, tiny_llama_path: Path) -> None:
    from retrievals_rag import LLMRanker

    ranker = LLMRanker.from_pretrained(tiny_llama_path, target_token="relevant", device="cpu")
    ranker.save_pretrained(tmp_path / "llm")
    with pytest.raises(ValueError, match="llm_ranker model, which cannot be exported"):
        export(str(tmp_path / "llm"), backend="onnx")
    assert not (tmp_path / "llm" / "onnx").exists() and _leftovers(tmp_path / "llm") == []
    with pytest.raises(ValueError, match="backend='torch' only"):
        AutoModelForRanking.from_pretrained(tmp_path / "llm", backend="onnx")
    with pytest.raises(ValueError, match="decoder LLM"):
        export(str(tiny_llama_path), backend="onnx")
    assert not (tiny_llama_path / "onnx").exists()


def test_unknown_backend_and_quantization(exported_bert: Path) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        AutoModelForEmbedding.from_pretrained(exported_bert, backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quantize must be None, 'int8' or 'int8-static'"):
        export(str(exported_bert), backend="onnx", quantize="int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend must be 'onnx' or 'openvino'"):
        export(str(exported_bert), backend="tflite")  # type: ignore[arg-type]


def test_adapters_serve_with_the_fastest_backend(exported_bert: Path, tmp_path: Path) -> None:
    pytest.importorskip("chromadb")
    from retrievals_rag.integrations._ranking import load_ranker
    from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction

    assert ChromaEmbeddingFunction(exported_bert).model.backend == "openvino-int8"
    forced = ChromaEmbeddingFunction(exported_bert, model_kwargs={"backend": "torch"})
    assert forced.model.backend == "torch"
    with pytest.warns(UserWarning, match="randomly initialised"):
        ColBERT.from_pretrained(exported_bert, device="cpu").save_pretrained(tmp_path / "colbert")
    export(str(tmp_path / "colbert"), backend="onnx")
    ranker = load_ranker(
        str(tmp_path / "colbert"), model_kind="auto", device=None, use_fp16=False, model_kwargs={}
    )
    assert ranker.backend == "onnx"
