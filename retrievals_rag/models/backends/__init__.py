"""Serving backends: the transformer graph exported to ONNX Runtime or OpenVINO (int8 where asked).

This package is the only place that imports onnxruntime, openvino, onnx or nncf, and it imports them only when a
graph is exported or loaded. A backend replaces the transformer alone: the model classes keep their pooling,
normalisation, instructions, windows and token-budget batching.

Backends, by name: ``"torch"`` (the weights themselves), ``"onnx"``, ``"onnx-int8"``, ``"openvino"``,
``"openvino-int8"`` (int8 weights) and ``"openvino-int8-static"`` (int8 weights and activations, calibrated on
texts at export); ``"auto"`` picks the fastest one a folder holds on the device (the exported ones on a CPU,
torch on a GPU).

Example:
    >>> from retrievals_rag.models.backends import export  # doctest: +SKIP
    >>> export("runs/minilm", backend="openvino", quantize="int8-static", calibration=documents)  # doctest: +SKIP
    >>> AutoModelForEmbedding.from_pretrained("runs/minilm", backend="auto")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

from retrievals_rag.models.backends.exporter import export
from retrievals_rag.models.backends.record import (
    BACKEND_NAMES,
    CPU_PREFERENCE,
    BackendChoice,
    BackendName,
    ExportBackend,
    GraphTask,
    Quantization,
    available_backends,
    split_backend,
)
from retrievals_rag.models.backends.runtime import load_transformer

__all__ = [
    "BACKEND_NAMES",
    "BackendChoice",
    "BackendName",
    "ExportBackend",
    "Quantization",
    "available_backends",
    "backend_of",
    "check_trainable",
    "export",
    "load_backend_transformer",
    "load_transformer",
    "resolve_backend",
]


def resolve_backend(folder: str | os.PathLike[str] | None, choice: str, device_type: str) -> BackendName:
    """The backend to load ``folder`` with: ``choice`` itself, or for ``"auto"`` the fastest the folder holds.

    ``"auto"`` takes torch on a GPU (the exported graphs run on the CPU) and on a folder without exports.

    Raises:
        ValueError: an unknown name, or an exported backend asked for on a GPU.
    """
    if choice not in (*BACKEND_NAMES, "auto"):
        raise ValueError(f"backend must be one of {', '.join((*BACKEND_NAMES, 'auto'))}, got {choice!r}")
    if choice == "auto":
        if device_type != "cpu" or folder is None or not os.path.isdir(folder):
            return "torch"
        held = set(available_backends(folder))
        return next(name for name in CPU_PREFERENCE if name in held)
    if choice != "torch" and device_type != "cpu":
        raise ValueError(f"the {choice} backend runs on the CPU; use backend='torch' on {device_type}")
    return choice  # type: ignore[return-value]


def load_backend_transformer(
    folder: str | os.PathLike[str], name: BackendName, task: GraphTask, config: Any = None
) -> Any:
    """The exported graph of ``folder`` for backend ``name`` (not ``"torch"``), in place of the torch module."""
    backend, quantization = split_backend(name)
    return load_transformer(folder, backend, task, quantization=quantization, config=config)


def backend_of(module: object) -> BackendName:
    """The backend a model's transformer runs on: an exported graph's name, else ``"torch"``."""
    from retrievals_rag.models.backends.runtime import ExportedTransformer

    return module.backend if isinstance(module, ExportedTransformer) else "torch"  # type: ignore[return-value]


def check_trainable(module: object, action: str) -> None:
    """Refuse ``action`` (saving, LoRA, ...) on a model that runs an exported graph.

    Raises:
        ValueError: naming the backend and the fix.
    """
    name = backend_of(module)
    if name != "torch":
        raise ValueError(
            f"cannot {action}: this model runs the exported {name} graph; load its folder with backend='torch'"
        )
