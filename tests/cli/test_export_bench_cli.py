"""``retrievals-rag export`` and ``bench encode|rerank --backend`` on the tiny random BERT (ours in process,
sentence-transformers' contenders in worker processes; its ONNX backend needs optimum, which this environment may
lack: the contender is then reported as unavailable and the others still run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("sentence_transformers")

from retrievals_rag.cli.main import main
from tests.conftest import SCIFACT_SUBSET


def test_export_copies_and_exports(
    tmp_path: Path, tiny_bert_path: Path, capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "exported"
    assert main(["export", str(tiny_bert_path), "--backend", "onnx-int8", "--output", str(output)]) == 0
    assert "loads with: torch, onnx, onnx-int8" in capsys.readouterr().out
    assert not (tiny_bert_path / "onnx").exists()  # the source folder is left alone
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "model folder not found" in capsys.readouterr().err


def test_export_refuses_an_llm_ranker_and_leaves_no_copy(
    tmp_path: Path, tiny_llama_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from retrievals_rag import LLMRanker

    LLMRanker.from_pretrained(tiny_llama_path, target_token="relevant", device="cpu").save_pretrained(
        tmp_path / "llm"
    )
    output = tmp_path / "copy"
    assert main(["export", str(tmp_path / "llm"), "--backend", "onnx", "--output", str(output)]) == 2
    assert "cannot be exported" in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize("kind", ["encode", "rerank"])
def test_bench_backends(
    tmp_path: Path, tiny_bert_path: Path, kind: str, capsys: pytest.CaptureFixture
) -> None:
    model = tmp_path / "model"
    if kind == "rerank":
        from retrievals_rag import AutoModelForRanking

        with pytest.warns(UserWarning, match="randomly initialised"):
            AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(model)
        sizes = ["--queries", "2", "--candidates", "5"]
    else:  # saved by us: the sentence-transformers layout (pooling, Normalize) comes with it
        from retrievals_rag import AutoModelForEmbedding

        AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(model)
        sizes = ["--n-docs", "12"]
    work = tmp_path / "work"
    arguments = ["bench", kind, "--data", str(SCIFACT_SUBSET), "--model", str(model), *sizes, "--rounds", "2"]
    arguments += ["--backend", "torch", "onnx", "--st-backend", "torch", "onnx", "--work-dir", str(work)]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    unit = "docs/s" if kind == "encode" else "pairs/s"
    assert out.count("round ") == 2 and unit in out
    rows = {row["name"]: row for row in json.loads((work / f"{kind}-results.json").read_text())}
    assert rows["sentence-transformers torch"]["ratio"] == pytest.approx(1.0)
    for name in ("retrievals_rag torch", "retrievals_rag onnx"):
        assert rows[name]["rate"] > 0
        assert rows[name]["max_difference"] < 1e-4  # the same weights: the same vectors / scores
    # sentence-transformers' ONNX backend runs where optimum is installed, else it is named as unavailable
    st_onnx = rows["sentence-transformers onnx"]
    assert ("rate" in st_onnx) or (
        "optimum" in st_onnx["error"].lower() or "onnx" in st_onnx["error"].lower()
    )


def test_export_static_int8_with_calibration(
    tmp_path: Path, tiny_bert_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    output = tmp_path / "exported"
    base = ["export", str(tiny_bert_path), "--output", str(output)]
    assert main([*base, "--backend", "openvino-int8-static"]) == 2
    assert "needs --calibration FILE" in capsys.readouterr().err
    assert not output.exists()  # refused before the folder was copied
    short = tmp_path / "short.txt"
    short.write_text("one text\nanother\n", encoding="utf-8")
    assert main([*base, "--backend", "openvino-int8-static", "--calibration", str(short)]) == 2
    assert "at least 32 non-empty calibration texts, got 2" in capsys.readouterr().err
    assert not output.exists()
    assert main([*base, "--backend", "onnx-int8", "--calibration", str(short)]) == 2
    assert "--calibration is for --backend openvino-int8-static" in capsys.readouterr().err
    arguments = [
        *base,
        "--backend",
        "openvino-int8",
        "openvino-int8-static",
        "--calibration",
        str(SCIFACT_SUBSET),
    ]
    assert main(arguments) == 0
    assert "loads with: torch, openvino, openvino-int8, openvino-int8-static" in capsys.readouterr().out
    record = json.loads((output / "openvino" / "export.json").read_text())
    assert record["calibration"]["inputs"] == "texts" and record["calibration"]["items"] >= 32


def test_cross_encoder_calibration_needs_pairs(tmp_path: Path) -> None:
    from retrievals_rag.cli.export import read_calibration

    texts = tmp_path / "texts.txt"
    texts.write_text("a document\n" * 40, encoding="utf-8")
    with pytest.raises(ValueError, match=r"calibrated on \(query, document\) pairs: pass a BEIR folder"):
        read_calibration(texts, "cross_encoder")
    pairs = read_calibration(SCIFACT_SUBSET, "cross_encoder", limit=50)
    assert len(pairs) == 50 and all(
        isinstance(query, str) and isinstance(document, str) for query, document in pairs
    )
    assert read_calibration(texts, "embedding") == ["a document"] * 40
    with pytest.raises(FileNotFoundError, match="calibration file not found"):
        read_calibration(tmp_path / "missing.txt", "embedding")
