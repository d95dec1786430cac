"""Run an exported transformer graph (ONNX Runtime or OpenVINO) in place of the torch module.

:func:`load_transformer` returns a callable that takes the tensors the Hugging Face model takes
(``input_ids``, ``attention_mask``, ``token_type_ids``) and returns an object with ``last_hidden_state`` or
``logits`` as torch tensors, so the model classes keep their pooling, normalisation, instructions, windows and
token-budget batching unchanged. Nothing is imported at module import: onnxruntime or openvino when a graph is
loaded, torch when it is first called.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrievals_rag.models.backends.record import (
    GRAPH_FILES,
    OUTPUT_NAMES,
    ExportBackend,
    GraphTask,
    Quantization,
    backend_folder,
    join_backend,
    read_record,
    weights_checksum,
)

if TYPE_CHECKING:
    import torch

__all__ = ["ExportedTransformer", "TransformerOutput", "graph_feeds", "load_transformer"]

_INSTALL_HINT = {
    "onnx": "pip install 'retrievals-rag[onnx]' (onnxruntime)",
    "openvino": "pip install 'retrievals-rag[openvino]' (openvino)",
}


@dataclass
class TransformerOutput:
    """What an exported graph gives: one of the two fields is set, as in transformers' outputs."""

    last_hidden_state: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def import_runtime(backend: ExportBackend) -> Any:
    """The runtime package of ``backend``, or an ImportError that says what to install."""
    try:
        if backend == "onnx":
            import onnxruntime

            return onnxruntime
        import openvino

        return openvino
    except ImportError as error:
        raise ImportError(
            f"the {backend} backend needs a package that is not installed: {_INSTALL_HINT[backend]}"
        ) from error


def graph_feeds(
    inputs: list[str],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
) -> dict[str, Any]:
    """The int64 numpy arrays an exported graph with ``inputs`` is fed: a missing mask is all ones (a batch
    without padding), missing segment ids are zeros. Used to run a graph and to calibrate a static int8 one.
    """
    import numpy as np

    ids = input_ids.detach().cpu().numpy().astype(np.int64, copy=False)
    values = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids)
        if attention_mask is None
        else attention_mask.detach().cpu().numpy().astype(np.int64, copy=False),
        "token_type_ids": np.zeros_like(ids)
        if token_type_ids is None
        else token_type_ids.detach().cpu().numpy().astype(np.int64, copy=False),
    }
    return {name: values[name] for name in inputs}


class ExportedTransformer:
    """A transformer graph exported by :func:`retrievals_rag.models.backends.export`, run on the CPU.

    Called like the Hugging Face model it replaces; holds its ``config``. It has no parameters: it does not
    train, and a model that holds one cannot be saved (save the torch folder it was exported from).

    Attributes:
        backend: the backend's name, e.g. ``"onnx-int8"``.
        path: the graph file.
        config: the transformers config of the exported model.
        task: ``"base"`` or ``"sequence_classification"``.
    """

    def __init__(
        self,
        path: Path,
        backend: ExportBackend,
        quantization: Quantization | None,
        task: GraphTask,
        inputs: list[str],
        config: Any,
        num_threads: int | None,
    ) -> None:
        self.path = path
        self.backend = join_backend(backend, quantization)
        self.task = task
        self.config = config
        self._inputs = inputs
        self._output = OUTPUT_NAMES[task]
        runtime = import_runtime(backend)
        try:
            if backend == "onnx":
                options = runtime.SessionOptions()
                options.graph_optimization_level = runtime.GraphOptimizationLevel.ORT_ENABLE_ALL
                if num_threads:
                    options.intra_op_num_threads = num_threads
                self._session = runtime.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
                self._run = self._run_onnx
            else:
                properties: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
                if num_threads:
                    properties["INFERENCE_NUM_THREADS"] = num_threads
                compiled = runtime.Core().compile_model(str(path), "CPU", properties)
                self._request = compiled.create_infer_request()
                self._run = self._run_openvino
        except Exception as error:  # the runtimes raise their own types for a damaged file
            raise ValueError(
                f"{path}: the {self.backend} graph could not be loaded ({type(error).__name__}: {error}); "
                f"export it again with `retrievals-rag export {path.parent.parent} --backend {self.backend}`"
            ) from error

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device("cpu")

    def _run_onnx(self, feeds: dict[str, Any]) -> Any:
        return self._session.run([self._output], feeds)[0]

    def _run_openvino(self, feeds: dict[str, Any]) -> Any:
        self._request.infer(feeds)
        return self._request.get_output_tensor(0).data.copy()

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> TransformerOutput:
        """Run the graph; the output is a float32 CPU tensor under ``last_hidden_state`` or ``logits``."""
        import torch

        output = torch.from_numpy(
            self._run(graph_feeds(self._inputs, input_ids, attention_mask, token_type_ids))
        )
        if self.task == "base":
            return TransformerOutput(last_hidden_state=output)
        return TransformerOutput(logits=output)

    def __repr__(self) -> str:
        return f"ExportedTransformer(backend={self.backend!r}, task={self.task!r}, path={str(self.path)!r})"


def load_transformer(
    folder: str | os.PathLike[str],
    backend: ExportBackend,
    task: GraphTask,
    quantization: Quantization | None = None,
    num_threads: int | None = None,
    config: Any = None,
) -> ExportedTransformer:
    """Load the graph that ``export`` wrote into ``folder`` for ``backend`` and ``quantization``.

    Args:
        folder: the model folder (holding ``onnx/`` or ``openvino/`` beside the weights).
        backend: ``"onnx"`` (ONNX Runtime) or ``"openvino"``.
        task: the output the caller needs: ``"base"`` (``last_hidden_state``) or ``"sequence_classification"``
            (``logits``).
        quantization: None for the full-precision graph, ``"int8"`` (weights) or ``"int8-static"`` (weights and
            activations, OpenVINO) for a quantized one.
        num_threads: threads for the runtime (None: the runtime's default, every core).
        config: the model's transformers config (None: read from ``folder``).

    Raises:
        FileNotFoundError: the folder has no such export, or its graph file is missing.
        ValueError: the graph gives another output than ``task`` needs, was exported from other weights than
            the folder now holds, or cannot be loaded (a damaged file).
        ImportError: the backend's package is not installed.
    """
    name = join_backend(backend, quantization)
    record = read_record(folder, backend)
    if record is None:
        raise FileNotFoundError(
            f"{folder} has no {backend} export: create it with `retrievals-rag export {folder} --backend {name}`"
        )
    file_name = GRAPH_FILES[(backend, quantization)]
    path = backend_folder(folder, backend) / file_name
    if file_name not in record.files or not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing (the folder's {backend} export holds {', '.join(record.files) or 'nothing'}): "
            f"create it with `retrievals-rag export {folder} --backend {name}`"
        )
    if record.task != task:
        raise ValueError(
            f"{path} gives {OUTPUT_NAMES[record.task]}, not the {OUTPUT_NAMES[task]} this model needs: export "
            f"the folder again as the kind it is loaded as"
        )
    current = weights_checksum(folder)
    if current != record.source_checksum:
        raise ValueError(
            f"{path} was exported from other weights than {folder} now holds: export it again with "
            f"`retrievals-rag export {folder} --backend {name}`"
        )
    import_runtime(backend)  # a missing package is named before anything else is read
    if config is None:
        from retrievals_rag.models.loading import load_config

        config = load_config(str(folder), trust_remote_code=False)
    return ExportedTransformer(path, backend, quantization, record.task, record.inputs, config, num_threads)
