"""What an exported folder holds: a small JSON record beside the exported files, and the checks made on load.

Each backend writes its files into a sub-folder of the model's own folder (``onnx/``, ``openvino/``) with an
``export.json`` record: the backend, the task (which output the graph gives), the inputs it takes, the files and
their quantization, the opset, and a checksum of the weights the graph was exported from, so a folder whose
weights changed after the export is refused instead of serving the old graph. Imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ExportBackend = Literal["onnx", "openvino"]
# "int8": weights only, activations quantized at run time (no data needed); "int8-static": weights and
# activations, with activation ranges calibrated on texts (OpenVINO only).
Quantization = Literal["int8", "int8-static"]
GraphTask = Literal["base", "sequence_classification"]
BackendName = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "openvino-int8-static"]
BackendChoice = Literal[
    "torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "openvino-int8-static", "auto"
]

RECORD_FILE = "export.json"
RECORD_VERSION = 1
BACKEND_NAMES: tuple[BackendName, ...] = (
    "torch",
    "onnx",
    "onnx-int8",
    "openvino",
    "openvino-int8",
    "openvino-int8-static",
)
# The graph's file in its sub-folder, per (backend, quantization).
GRAPH_FILES: dict[tuple[ExportBackend, Quantization | None], str] = {
    ("onnx", None): "model.onnx",
    ("onnx", "int8"): "model_qint8.onnx",
    ("openvino", None): "openvino_model.xml",
    ("openvino", "int8"): "openvino_model_qint8.xml",
    ("openvino", "int8-static"): "openvino_model_qint8_static.xml",
}
# Fastest first, on a CPU with int8 instructions (measured with examples/benchmarks/bench_backends.py).
CPU_PREFERENCE: tuple[BackendName, ...] = (
    "openvino-int8-static",
    "openvino-int8",
    "onnx-int8",
    "openvino",
    "onnx",
    "torch",
)
OUTPUT_NAMES: dict[GraphTask, str] = {"base": "last_hidden_state", "sequence_classification": "logits"}
# The weights the checksum covers: every safetensors file of the folder (an adapter's too).
WEIGHT_PATTERN = "*.safetensors"


def split_backend(name: str) -> tuple[ExportBackend, Quantization | None]:
    """``"onnx-int8"`` -> ``("onnx", "int8")``; refuses ``"torch"``, ``"auto"`` and unknown names."""
    if name not in BACKEND_NAMES or name == "torch":
        raise ValueError(f"unknown exported backend {name!r}: expected one of {', '.join(BACKEND_NAMES[1:])}")
    backend, _, quantization = name.partition("-")
    return backend, (quantization or None)  # type: ignore[return-value]


def join_backend(backend: ExportBackend, quantization: Quantization | None) -> BackendName:
    return f"{backend}-{quantization}" if quantization else backend  # type: ignore[return-value]


@dataclass(frozen=True)
class ExportRecord:
    """The content of ``export.json``.

    Attributes:
        backend: ``"onnx"`` or ``"openvino"``.
        task: ``"base"`` (the graph gives ``last_hidden_state``) or ``"sequence_classification"`` (``logits``).
        inputs: the graph's inputs, in order (``input_ids``, ``attention_mask``, ``token_type_ids`` where the
            model takes them).
        files: graph file name -> its quantization (None for full precision).
        source_checksum: ``sha256:...`` of the folder's weights when the graph was exported.
        opset: the ONNX opset of the exported graph.
        exporter: the tools and versions that wrote the files.
        calibration: for an ``int8-static`` graph, what its activation ranges were calibrated on (number of
            texts, the inputs' kind); None otherwise (and in records written before static int8 existed).
    """

    backend: ExportBackend
    task: GraphTask
    inputs: list[str]
    files: dict[str, Quantization | None]
    source_checksum: str
    opset: int
    exporter: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    format_version: int = RECORD_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def backend_folder(folder: str | os.PathLike[str], backend: ExportBackend) -> Path:
    return Path(folder) / backend


def weights_checksum(folder: str | os.PathLike[str]) -> str:
    """``sha256:...`` over the names and bytes of the folder's safetensors files.

    Raises:
        FileNotFoundError: the folder holds no safetensors weights.
    """
    files = sorted(Path(folder).glob(WEIGHT_PATTERN))
    if not files:
        raise FileNotFoundError(f"{folder}: no safetensors weights to export from")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def read_record(folder: str | os.PathLike[str], backend: ExportBackend) -> ExportRecord | None:
    """The record of ``folder``'s ``backend`` export, or None if the folder has none.

    Raises:
        ValueError: the record is not valid JSON or misses a field (naming the file).
    """
    path = backend_folder(folder, backend) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        record = ExportRecord(**payload)
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(
            f"{path}: not a valid export record ({error}); export again with `retrievals-rag export`"
        ) from error
    if record.backend != backend or record.task not in OUTPUT_NAMES:
        raise ValueError(f"{path}: backend {record.backend!r} / task {record.task!r} do not fit {backend!r}")
    return record


def available_backends(folder: str | os.PathLike[str]) -> list[BackendName]:
    """The backends ``folder`` can load with: ``"torch"`` (always) and each exported graph it records.

    Only the record and the files' presence are checked here; loading checks the rest.
    """
    found: list[BackendName] = ["torch"]
    for backend in ("onnx", "openvino"):
        try:
            record = read_record(folder, backend)  # type: ignore[arg-type]
        except ValueError:
            continue
        if record is None:
            continue
        for name, quantization in record.files.items():
            if (backend_folder(folder, backend) / name).is_file():  # type: ignore[arg-type]
                found.append(join_backend(backend, quantization))  # type: ignore[arg-type]
    return sorted(found, key=BACKEND_NAMES.index)


@contextmanager
def staged_folder(folder: str | os.PathLike[str], backend: ExportBackend) -> Iterator[Path]:
    """A temporary folder that replaces ``folder/backend`` when the block ends without an error.

    On an error the temporary folder is removed and whatever was there before stays as it was: an export never
    leaves a half-written graph behind.
    """
    root = Path(folder)
    target = backend_folder(root, backend)
    staging = Path(tempfile.mkdtemp(prefix=f".{backend}-export-", dir=root))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = root / f".{backend}-previous-{staging.name}"
    if target.exists():
        os.replace(target, previous)
    try:
        os.replace(staging, target)
    except BaseException:
        if previous.exists():
            os.replace(previous, target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)
