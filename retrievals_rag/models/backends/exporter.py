"""Export a model's transformer graph to ONNX or OpenVINO, optionally quantized to int8, into its own folder.

Only the transformer is exported: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the model
takes them) to ``last_hidden_state`` for embedders and ColBERT's encoder, or to ``logits`` for a cross-encoder's
classification head. Pooling, normalisation, instructions, windows, ColBERT's projection and batching stay in
the model classes, so an exported folder gives the vectors and scores of the torch one (within the int8
rounding) and nothing about pooling can be lost in the export.

The tools, chosen by measurement on transformers 5 / torch 2.13 (see the README's "Serving on a CPU"):

- the graph: ``torch.onnx.export(..., dynamo=True)``. The TorchScript exporter traces transformers 5's
  attention-mask construction at the example's shapes and gives wrong states for padded batches (max
  difference 1.7 on MiniLM); optimum's exporter pins transformers < 4.58.
- ONNX int8: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations quantized per batch at
  run time: no calibration data needed).
- OpenVINO: ``openvino.convert_model`` of the ONNX graph; int8 through ``nncf.compress_weights`` (int8
  weights; the CPU plugin quantizes activations dynamically), which needs no calibration data either.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrievals_rag.models.backends.record import (
    GRAPH_FILES,
    OUTPUT_NAMES,
    ExportBackend,
    ExportRecord,
    GraphTask,
    Quantization,
    staged_folder,
    weights_checksum,
)
from retrievals_rag.models.backends.runtime import import_runtime

if TYPE_CHECKING:
    import torch

__all__ = ["ONNX_OPSET", "export"]

ONNX_OPSET = 18
# Which graph each kind exports; a kind absent here cannot be exported.
_KIND_TASKS: dict[str, GraphTask] = {
    "embedding": "base",
    "colbert": "base",
    "cross_encoder": "sequence_classification",
}


def _load_for_export(source: str) -> Any:
    from retrievals_rag.models.registry import load_model, resolve_kind

    kind = resolve_kind(source, "auto", default="embedding")
    if kind not in _KIND_TASKS:
        raise ValueError(_refusal(source, kind))
    return load_model(source, kind, options={"device": "cpu"})


def _refusal(name: object, kind: str) -> str:
    return (
        f"{name} is a {kind} model, which cannot be exported (exportable kinds: {', '.join(_KIND_TASKS)}); "
        "it runs with backend='torch'"
    )


def _graph_module(model: Any) -> tuple[torch.nn.Module, GraphTask]:
    """The Hugging Face module to export (a LoRA adapter merged into a copy) and the task it serves."""
    from retrievals_rag.models.loading import is_decoder_only
    from retrievals_rag.models.lora import is_lora_model, merged_copy
    from retrievals_rag.models.registry import kind_of

    kind = kind_of(model)
    if kind not in _KIND_TASKS:
        raise ValueError(_refusal(type(model).__name__, kind))
    module = model.model
    if not hasattr(module, "state_dict"):
        raise ValueError(f"{model!r} already runs an exported graph: export from the torch folder")
    if is_decoder_only(module.config):
        raise ValueError(
            f"{module.config.model_type} is a decoder LLM: only encoder models (BERT, MiniLM, XLM-R, ...) are "
            "exported; decoder models run with backend='torch'"
        )
    if is_lora_model(module):
        module = merged_copy(module)
    return module, _KIND_TASKS[kind]


def _input_names(module: torch.nn.Module) -> list[str]:
    names = ["input_ids", "attention_mask"]
    config = module.config
    if "token_type_ids" in inspect.signature(module.forward).parameters and getattr(
        config, "type_vocab_size", 0
    ):
        names.append("token_type_ids")
    return names


def _export_onnx(module: torch.nn.Module, task: GraphTask, inputs: list[str], path: Path) -> None:
    import torch
    from torch.export import Dim

    output_name = OUTPUT_NAMES[task]

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            given = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            }
            return getattr(self.inner(**{name: given[name] for name in inputs}), output_name)

    limit = int(getattr(module.config, "max_position_embeddings", 512) or 512)
    batch, sequence = Dim("batch"), Dim("sequence", max=limit)
    input_ids = torch.full((2, 16), 5, dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 10:] = 0  # a padded row, so the masking path is the one exported
    examples = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": input_ids * 0}
    was_training = module.training
    module.eval()
    try:
        program = torch.onnx.export(
            Graph().float(),
            tuple(examples[name] for name in inputs),
            input_names=inputs,
            output_names=[output_name],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in inputs},
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        program.save(str(path))
    finally:
        module.train(was_training)


def _quantize_onnx(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def _export_openvino(onnx_path: Path, folder: Path, quantization: Quantization | None) -> list[str]:
    import openvino

    written = [GRAPH_FILES[("openvino", None)]]
    model = openvino.convert_model(str(onnx_path))
    openvino.save_model(model, str(folder / written[0]), compress_to_fp16=False)
    if quantization == "int8":
        try:
            import nncf
        except ImportError as error:
            raise ImportError("OpenVINO int8 needs nncf: pip install 'retrievals-rag[openvino]'") from error
        compressed = nncf.compress_weights(
            openvino.convert_model(str(onnx_path)), mode=nncf.CompressWeightsMode.INT8_ASYM
        )
        written.append(GRAPH_FILES[("openvino", "int8")])
        openvino.save_model(compressed, str(folder / written[1]), compress_to_fp16=False)
    return written


def _versions(backend: ExportBackend) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["torch", "transformers", "onnx", "onnxruntime" if backend == "onnx" else "openvino"]
    if backend == "openvino":
        names.append("nncf")
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def export(
    model_or_folder: Any,
    folder: str | os.PathLike[str] | None = None,
    backend: ExportBackend = "onnx",
    quantize: Quantization | None = None,
) -> Path:
    """Export a model's transformer graph into ``folder/onnx`` or ``folder/openvino``, with its record.

    The full-precision graph is always written; ``quantize="int8"`` adds the int8 one beside it. The
    sub-folder is built apart and moved into place at the end, so a failed export leaves the folder as it was
    (a previous export of the same backend stays until a new one is complete, then is replaced).

    Args:
        model_or_folder: a model folder (loaded as the kind it was saved as; a plain transformers folder as an
            embedder), or a loaded :class:`~retrievals_rag.AutoModelForEmbedding`,
            :class:`~retrievals_rag.AutoModelForRanking` (cross-encoder) or :class:`~retrievals_rag.ColBERT`.
        folder: the folder holding the model's weights, where the export goes; default: ``model_or_folder``
            itself (required for a loaded model: the folder it was saved to).
        backend: ``"onnx"`` (ONNX Runtime) or ``"openvino"``.
        quantize: None, or ``"int8"`` to add a dynamically quantized graph.

    Returns:
        The backend's sub-folder.

    Raises:
        ValueError: a model kind that cannot be exported (LLM ranker, decoder LLMs), an unknown backend or
            quantization, a folder without weights.
        ImportError: the backend's packages are not installed.
    """
    if backend not in ("onnx", "openvino"):
        raise ValueError(f"backend must be 'onnx' or 'openvino', got {backend!r}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    loaded_from_folder = isinstance(model_or_folder, (str, os.PathLike))
    if folder is None:
        if not loaded_from_folder:
            raise ValueError("pass the folder the model was saved to (its weights are checksummed)")
        folder = model_or_folder
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder not found: {root}")
    checksum = weights_checksum(root)
    import_runtime(backend)
    try:
        import onnx  # noqa: F401  (the ONNX graph is the first step of both backends)
    except ImportError as error:
        raise ImportError(
            f"export needs the onnx package: pip install 'retrievals-rag[{backend}]'"
        ) from error
    model = _load_for_export(str(model_or_folder)) if loaded_from_folder else model_or_folder
    module, task = _graph_module(model)
    inputs = _input_names(module)
    with staged_folder(root, backend) as staging:
        if backend == "onnx":
            files: dict[str, Quantization | None] = {GRAPH_FILES[("onnx", None)]: None}
            _export_onnx(module, task, inputs, staging / GRAPH_FILES[("onnx", None)])
            if quantize == "int8":
                _quantize_onnx(staging / "model.onnx", staging / GRAPH_FILES[("onnx", "int8")])
                files[GRAPH_FILES[("onnx", "int8")]] = "int8"
        else:
            with tempfile.TemporaryDirectory(prefix="onnx-", dir=staging) as scratch:
                onnx_path = Path(scratch) / "model.onnx"
                _export_onnx(module, task, inputs, onnx_path)
                names = _export_openvino(onnx_path, staging, quantize)
            files = dict(zip(names, [None, "int8"], strict=False))
        record = ExportRecord(
            backend=backend,
            task=task,
            inputs=inputs,
            files=files,
            source_checksum=checksum,
            opset=ONNX_OPSET,
            exporter={"graph": "torch.onnx.export(dynamo=True)", **_versions(backend)},
        )
        (staging / "export.json").write_text(record.to_json(), encoding="utf-8")
    return root / backend


def copy_model_folder(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Copy a model folder (without any previous export) to ``target``, which must not exist or be empty."""
    destination = Path(target)
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"{destination} exists and is not empty: pass a new folder")
    shutil.copytree(
        source, destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns("onnx", "openvino")
    )
    return destination
