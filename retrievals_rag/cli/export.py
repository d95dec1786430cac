"""``retrievals-rag export``: write a model's transformer graph as ONNX or OpenVINO (int8 where asked).

The graph goes into the model's own folder (``onnx/``, ``openvino/``) with a record of what it holds, so the
folder then loads with ``--backend onnx-int8`` (or ``auto``: the fastest it holds) everywhere a model is
loaded: ``from_pretrained(..., backend=...)``, ``evaluate``, the adapters and the app. With ``--output`` the
folder is copied first and the copy gets the export (for a folder you cannot write to, such as an installed
package's).

``openvino-int8-static`` quantizes activations too (the fastest on a CPU), with ranges calibrated on
``--calibration`` texts like those the model will serve: a ``.txt`` file (one text a line), a ``.jsonl`` corpus
(BEIR rows: ``_id``, ``title``, ``text``) or a BEIR folder. A cross-encoder is calibrated on (query, document)
pairs: give a BEIR folder (its queries, each with documents of its corpus).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from retrievals_rag.cli.common import activity
from retrievals_rag.models.backends.record import BACKEND_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model's transformer to ONNX / OpenVINO (int8) for fast CPU serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="model folder: an embedder, a cross-encoder or a ColBERT model")
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=[name for name in BACKEND_NAMES if name != "torch"],
        default=["openvino-int8"],
        help="what to export (an -int8 name writes the full-precision graph too; openvino-int8-static needs "
        "--calibration); default: openvino-int8",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="texts that calibrate openvino-int8-static: a .txt file (a text a line), a .jsonl corpus or a BEIR "
        "folder (a cross-encoder: a BEIR folder, for (query, document) pairs); at most 300 are used "
        "(default: none; required by openvino-int8-static)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="copy the folder here and export the copy (default: export into the model folder itself)",
    )
    parser.set_defaults(handler=run)


def read_calibration(path: Path, kind: str, limit: int = 300) -> list[Any]:
    """Calibration items from ``path`` for a model of ``kind``: texts, or (query, document) pairs for a
    cross-encoder (from a BEIR folder: each query in turn with a document drawn from the corpus, seeded).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a cross-encoder given texts only, or a file of another format.
    """
    from retrievals_rag.distributed.encode import read_input
    from retrievals_rag.evaluation.beir import document_text, load_corpus, load_queries

    if not path.exists():
        raise FileNotFoundError(f"calibration file not found: {path}")
    if kind != "cross_encoder":
        if path.is_dir():
            return [document_text(document) for document in load_corpus(path / "corpus.jsonl").values()]
        return read_input(path)[1]
    if not path.is_dir():
        raise ValueError(
            f"{path}: a cross-encoder is calibrated on (query, document) pairs: pass a BEIR folder "
            "(queries.jsonl and corpus.jsonl)"
        )
    queries = list(load_queries(path / "queries.jsonl").values())
    documents = [document_text(document) for document in load_corpus(path / "corpus.jsonl").values()]
    generator = random.Random(0)
    count = min(limit, len(queries) * len(documents))
    return [(queries[index % len(queries)], generator.choice(documents)) for index in range(count)]


def run(args: argparse.Namespace) -> int:
    from retrievals_rag.models.backends import available_backends, export
    from retrievals_rag.models.backends.calibration import check_calibration
    from retrievals_rag.models.backends.exporter import copy_model_folder
    from retrievals_rag.models.backends.record import split_backend
    from retrievals_rag.models.registry import resolve_kind

    folder = Path(args.model)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    wanted = [split_backend(name) for name in dict.fromkeys(args.backend)]
    calibration = None
    if any(quantization == "int8-static" for _, quantization in wanted):
        kind = resolve_kind(str(folder), "auto", default="embedding")
        if args.calibration is None:
            raise ValueError(
                "--backend openvino-int8-static needs --calibration FILE (texts like those served)"
            )
        calibration = check_calibration(kind, read_calibration(args.calibration, kind))
    elif args.calibration is not None:
        raise ValueError("--calibration is for --backend openvino-int8-static")
    # the full-precision graph comes with every quantized one: a bare name is exported only on its own
    quantized = {backend for backend, quantization in wanted if quantization}
    wanted = [(backend, q) for backend, q in wanted if q or backend not in quantized]
    if args.output is not None:
        folder = copy_model_folder(folder, args.output)
        print(f"copied {args.model} to {folder}", file=sys.stderr)
    try:
        for backend, quantization in wanted:
            start = time.perf_counter()
            with activity(f"exporting {backend}{'-' + quantization if quantization else ''}"):
                written = export(
                    str(folder),
                    backend=backend,
                    quantize=quantization,
                    calibration=calibration if quantization == "int8-static" else None,
                )
            print(f"wrote {written} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    except BaseException:
        if args.output is not None:  # the copy was made for this export: leave nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    print(f"{folder} loads with: {', '.join(available_backends(folder))}")
    return 0
