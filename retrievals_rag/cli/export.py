"""``retrievals-rag export``: write a model's transformer graph as ONNX or OpenVINO (int8 where asked).

The graph goes into the model's own folder (``onnx/``, ``openvino/``) with a record of what it holds, so the
folder then loads with ``--backend onnx-int8`` (or ``auto``: the fastest it holds) everywhere a model is
loaded: ``from_pretrained(..., backend=...)``, ``evaluate``, the adapters and the app. With ``--output`` the
folder is copied first and the copy gets the export (for a folder you cannot write to, such as an installed
package's).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path


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
        choices=["onnx", "onnx-int8", "openvino", "openvino-int8"],
        default=["openvino-int8"],
        help="what to export (an -int8 name writes the full-precision graph too); default: openvino-int8",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="copy the folder here and export the copy (default: export into the model folder itself)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from retrievals_rag.models.backends import available_backends, export
    from retrievals_rag.models.backends.exporter import copy_model_folder
    from retrievals_rag.models.backends.record import split_backend

    folder = Path(args.model)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    if args.output is not None:
        folder = copy_model_folder(folder, args.output)
        print(f"copied {args.model} to {folder}", file=sys.stderr)
    wanted: dict[str, str | None] = {}
    for name in args.backend:
        backend, quantization = split_backend(name)
        wanted[backend] = wanted.get(backend) or quantization
    try:
        for backend, quantization in wanted.items():
            start = time.perf_counter()
            written = export(str(folder), backend=backend, quantize=quantization)  # type: ignore[arg-type]
            print(f"wrote {written} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    except BaseException:
        if args.output is not None:  # the copy was made for this export: leave nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    print(f"{folder} loads with: {', '.join(available_backends(folder))}")
    return 0
