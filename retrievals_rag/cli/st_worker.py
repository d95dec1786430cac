"""A contender for ``retrievals-rag bench``, run as its own process: sentence-transformers', or ours.

Run by file path with any Python that has sentence-transformers (its ONNX / OpenVINO backends need optimum,
which may live in another environment than this package: ``bench --st-python``). It imports nothing from
retrievals_rag. Protocol: the path of a JSON setup file on the command line; then for each line ``run`` on stdin it
encodes (or scores) the inputs once and answers one JSON line ``{"seconds": ...}``; the first run's output is
saved to ``output`` (``.npy``) for the comparison of vectors / scores. Errors are answered as
``{"error": "..."}`` and end the worker.

Backends: ``torch``; ``onnx`` and ``openvino`` (sentence-transformers' own exports); ``onnx-int8``
(``export_dynamic_quantized_onnx_model``, avx512_vnni) and ``openvino-int8``
(``export_static_quantized_openvino_model``, calibrated on ``calibration`` texts: no hub dataset).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _load(kind: str, model: str, backend: str, calibration: list[str]) -> Any:
    from sentence_transformers import CrossEncoder, SentenceTransformer

    loader = SentenceTransformer if kind == "encode" else CrossEncoder
    if backend == "torch":
        return loader(model, device="cpu")
    base, _, quantization = backend.partition("-")
    if not quantization:
        return loader(model, device="cpu", backend=base)
    found = sorted(Path(model, base).glob("*qint8*.xml" if base == "openvino" else "*qint8*.onnx"))
    if not found:
        exported = loader(model, device="cpu", backend=base)
        if base == "onnx":
            from sentence_transformers import export_dynamic_quantized_onnx_model

            export_dynamic_quantized_onnx_model(exported, "avx512_vnni", model)
        else:
            from sentence_transformers import export_static_quantized_openvino_model

            with tempfile.TemporaryDirectory() as scratch:
                rows = "".join(json.dumps({"text": text}) + "\n" for text in calibration)
                Path(scratch, "train.jsonl").write_text(rows, encoding="utf-8")
                export_static_quantized_openvino_model(
                    exported,
                    None,
                    model,
                    dataset_name=scratch,
                    dataset_config_name="default",
                    dataset_split="train",
                    column_name="text",
                )
        found = sorted(Path(model, base).glob("*qint8*.xml" if base == "openvino" else "*qint8*.onnx"))
    file_name = f"{base}/{found[0].name}"
    return loader(model, device="cpu", backend=base, model_kwargs={"file_name": file_name})


def _load_ours(kind: str, model: str, backend: str) -> Any:
    """Our model (``setup["library"] == "retrievals_rag"``): the same isolation as sentence-transformers'."""
    if kind == "encode":
        from retrievals_rag import AutoModelForEmbedding

        return AutoModelForEmbedding.from_pretrained(model, device="cpu", backend=backend)
    from retrievals_rag import AutoModelForRanking

    return AutoModelForRanking.from_pretrained(model, device="cpu", backend=backend, max_windows=1)


def main() -> int:
    # the libraries print to stdout (export and quantization reports): keep stdout for the protocol's lines
    protocol = sys.stdout
    sys.stdout = sys.stderr
    setup = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    try:
        inputs = json.loads(Path(setup["inputs"]).read_text(encoding="utf-8"))
        if setup.get("library") == "retrievals_rag":
            model = _load_ours(setup["kind"], setup["model"], setup["backend"])
            if setup["kind"] == "encode":

                def work(items: list[Any] = inputs) -> Any:
                    return model.encode(items, show_progress_bar=False)

            else:

                def work(items: list[Any] = [tuple(pair) for pair in inputs]) -> Any:  # noqa: B006
                    return model.compute_score(items)

        elif setup["kind"] == "encode":
            model = _load(setup["kind"], setup["model"], setup["backend"], setup.get("calibration", []))

            def work(items: list[Any] = inputs) -> Any:
                return model.encode(items, batch_size=setup["batch_size"], convert_to_numpy=True)

        else:
            model = _load(setup["kind"], setup["model"], setup["backend"], setup.get("calibration", []))

            def work(items: list[Any] = [tuple(pair) for pair in inputs]) -> Any:  # noqa: B006
                return model.predict(items, batch_size=setup["batch_size"], convert_to_numpy=True)

        work(inputs[:64])  # warm-up: kernels, allocator, tokenizer caches
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), file=protocol, flush=True)
        return 1
    print(json.dumps({"ready": True}), file=protocol, flush=True)
    first = True
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - start
        if first:
            import numpy as np

            np.save(setup["output"], np.asarray(result, dtype=np.float32))
            first = False
        print(json.dumps({"seconds": seconds}), file=protocol, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
