"""Static int8 (OpenVINO, activations calibrated on texts): export, load, vectors and scores close to torch, the
fastest backend for ``auto``, and clear errors without calibration data. Tiny random models, a few seconds each.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytest.importorskip("onnx")

from retrievals_rag import AutoModelForEmbedding, AutoModelForRanking
from retrievals_rag.models.backends import available_backends, export
from retrievals_rag.models.backends.calibration import MIN_CALIBRATION_ITEMS, check_calibration

WORDS = (
    "cell protein cancer study results patients risk treatment effect human gene expression dense retrieval of "
    "passages the a in with to from clinical trial mouse model blood pressure"
).split()


def _texts(count: int, seed: int = 0) -> list[str]:
    generator = random.Random(seed)
    return [" ".join(generator.choices(WORDS, k=generator.randint(3, 40))) for _ in range(count)]


TEXTS = _texts(6, seed=1)


@pytest.fixture(scope="module")
def static_bert(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path) -> Path:
    """The tiny BERT with OpenVINO int8 (weights) and then int8-static exported."""
    folder = tmp_path_factory.mktemp("static") / "bert"
    shutil.copytree(tiny_bert_path, folder)
    export(str(folder), backend="openvino", quantize="int8")
    export(str(folder), backend="openvino", quantize="int8-static", calibration=_texts(40))
    return folder


def test_static_export_keeps_the_weight_only_graph_and_records_calibration(static_bert: Path) -> None:
    assert available_backends(static_bert) == ["torch", "openvino", "openvino-int8", "openvino-int8-static"]
    record = json.loads((static_bert / "openvino" / "export.json").read_text())
    assert record["files"] == {
        "openvino_model.xml": None,
        "openvino_model_qint8.xml": "int8",
        "openvino_model_qint8_static.xml": "int8-static",
    }
    assert record["calibration"] == {"items": 40, "inputs": "texts"}
    assert sorted(path.name for path in static_bert.iterdir() if path.name.startswith(".")) == []
    assert (
        AutoModelForEmbedding.from_pretrained(static_bert, backend="auto").backend == "openvino-int8-static"
    )


def test_static_vectors_close_to_torch(static_bert: Path) -> None:
    reference = AutoModelForEmbedding.from_pretrained(static_bert, device="cpu").encode(TEXTS)
    model = AutoModelForEmbedding.from_pretrained(static_bert, backend="openvino-int8-static")
    vectors = model.encode(TEXTS, token_budget=64)  # padded batches
    cosine = (vectors * reference).sum(axis=1)  # both normalised
    assert cosine.min() > 0.98, cosine


def test_weight_only_export_after_static_keeps_static(tmp_path: Path, static_bert: Path) -> None:
    folder = tmp_path / "bert"
    shutil.copytree(static_bert, folder)
    export(str(folder), backend="openvino", quantize="int8")
    assert "openvino-int8-static" in available_backends(folder)
    record = json.loads((folder / "openvino" / "export.json").read_text())
    assert record["calibration"] == {"items": 40, "inputs": "texts"}
    # other weights: the static graph of the old weights is not carried over
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    export(str(folder), backend="openvino")
    assert available_backends(folder) == ["torch", "openvino"]


def test_record_written_before_static_int8_still_loads(tmp_path: Path, static_bert: Path) -> None:
    folder = tmp_path / "bert"
    shutil.copytree(static_bert, folder)
    path = folder / "openvino" / "export.json"
    record = json.loads(path.read_text())
    del record["calibration"]
    record["files"] = {"openvino_model.xml": None, "openvino_model_qint8.xml": "int8"}
    path.write_text(json.dumps(record))
    assert available_backends(folder) == ["torch", "openvino", "openvino-int8"]
    assert AutoModelForEmbedding.from_pretrained(folder, backend="auto").backend == "openvino-int8"


def test_cross_encoder_static_scores_close_to_torch(tmp_path: Path, tiny_bert_path: Path) -> None:
    with pytest.warns(UserWarning, match="randomly initialised"):
        ranker = AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu")
    ranker.save_pretrained(tmp_path / "ranker")
    texts = _texts(80, seed=2)
    export(
        str(tmp_path / "ranker"),
        backend="openvino",
        quantize="int8-static",
        calibration=list(zip(texts[:40], texts[40:], strict=True)),
    )
    pairs = list(zip(TEXTS[:3], TEXTS[3:], strict=True))
    reference = np.asarray(ranker.compute_score(pairs))
    exported = AutoModelForRanking.from_pretrained(tmp_path / "ranker", backend="openvino-int8-static")
    scores = np.asarray(exported.compute_score(pairs))
    spread = max(float(np.ptp(reference)), 1e-3)
    assert np.abs(scores - reference).max() < 0.1 * spread + 0.02, (scores, reference)


def test_bad_calibration_is_refused_and_nothing_written(tmp_path: Path, tiny_bert_path: Path) -> None:
    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert_path, folder)
    before = sorted(path.name for path in folder.rglob("*"))
    with pytest.raises(ValueError, match="int8-static needs calibration texts"):
        export(str(folder), backend="openvino", quantize="int8-static")
    with pytest.raises(
        ValueError, match=f"at least {MIN_CALIBRATION_ITEMS} non-empty calibration texts, got 5"
    ):
        export(str(folder), backend="openvino", quantize="int8-static", calibration=[*_texts(5), " "])
    with pytest.raises(ValueError, match="calibration item 1: expected a string"):
        export(str(folder), backend="openvino", quantize="int8-static", calibration=["a", ("q", "d")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="is for backend='openvino'"):
        export(str(folder), backend="onnx", quantize="int8-static", calibration=_texts(40))
    with pytest.raises(ValueError, match="calibration texts are for quantize='int8-static'"):
        export(str(folder), backend="openvino", quantize="int8", calibration=_texts(40))
    assert sorted(path.name for path in folder.rglob("*")) == before
    with pytest.raises(
        ValueError, match=r"calibration item 0: a cross-encoder is calibrated on \(query, document\)"
    ):
        check_calibration("cross_encoder", _texts(40))


def test_calibration_is_thinned_evenly() -> None:
    items = [f"text {index}" for index in range(900)]
    kept = check_calibration("embedding", items)
    assert len(kept) == 300 and kept[0] == "text 0" and kept[1] == "text 3" and kept[-1] == "text 897"


def test_failed_static_export_leaves_previous_export_untouched(
    tmp_path: Path, static_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nncf

    folder = tmp_path / "bert"
    shutil.copytree(static_bert, folder)
    before = {path.name: path.read_bytes() for path in (folder / "openvino").iterdir()}

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("calibration crashed")

    monkeypatch.setattr(nncf, "quantize", broken)
    with pytest.raises(RuntimeError, match="calibration crashed"):
        export(str(folder), backend="openvino", quantize="int8-static", calibration=_texts(40))
    assert {path.name: path.read_bytes() for path in (folder / "openvino").iterdir()} == before
    assert sorted(path.name for path in folder.iterdir() if path.name.startswith(".")) == []
