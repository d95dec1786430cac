"""Export a model's transformer graph to ONNX or OpenVINO, optionally quantized to int8, into its own folder.

Only the transformer is exported: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the model
takes them) to ``last_hidden_state`` for embedders and ColBERT's encoder, or to ``logits`` for a cross-encoder's
classification head. Pooling, normalisation, instructions, windows, ColBERT's projection and batching stay in
the model classes, so an exported folder gives the vectors and scores of the torch one (within the int8
rounding) and nothing about pooling can be lost in the export.

The tools, chosen by measurement on transformers 5 / torch 2.13 (see the README's "Serving on a CPU"):

- the graph: ``torch.onnx.export(..., dynamo=True)`` of the model with eager attention. The TorchScript
  exporter traces transformers 5's attention-mask construction at the example's shapes and gives wrong states
  for padded batches (max difference 1.7 on MiniLM); optimum's exporter pins transformers < 4.58. Eager
  attention exports as plain MatMul / Softmax (SDPA's export adds NaN guards and shape slicing), which both
  runtimes run faster: 1.2x for ONNX int8, 1.3x for OpenVINO static int8 on MiniLM.
- ONNX int8: ``onnxruntime.transformers.optimizer`` fuses the BERT-family patterns (SkipLayerNormalization,
  BiasGelu) first, then ``onnxruntime.quantization.quantize_dynamic`` (per-channel int8 weights, activations
  quantized per batch at run time: no calibration data needed). Quantized first, the fusions no longer match.
- OpenVINO: ``openvino.convert_model`` of the ONNX graph. ``int8``: ``nncf.compress_weights`` (int8 weights;
  no data needed). ``int8-static``: ``nncf.quantize`` (model type transformer) with activation ranges
  calibrated on texts run through the model's own inference (see ``calibration.py``): int8 matrix products,
  sentence-transformers' ``export_static_quantized_openvino_model`` does the same through optimum-intel.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrievals_rag.models.backends.calibration import (
    CalibrationItem,
    check_calibration,
    record_transformer_inputs,
)
from retrievals_rag.models.backends.record import (
    GRAPH_FILES,
    OUTPUT_NAMES,
    ExportBackend,
    ExportRecord,
    GraphTask,
    Quantization,
    read_record,
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


def _folder_kind(source: str) -> str:
    from retrievals_rag.models.registry import resolve_kind

    kind = resolve_kind(source, "auto", default="embedding")
    if kind not in _KIND_TASKS:
        raise ValueError(_refusal(source, kind))
    return kind


def _load_for_export(source: str, kind: str) -> Any:
    from retrievals_rag.models.registry import load_model

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


@contextmanager
def _eager_attention(module: torch.nn.Module) -> Iterator[None]:
    """Export with eager attention (plain MatMul / Softmax in the graph); the module's own is restored after."""
    previous = getattr(module.config, "_attn_implementation", None)
    if previous in (None, "eager") or not hasattr(module, "set_attn_implementation"):
        yield
        return
    module.set_attn_implementation("eager")
    try:
        yield
    finally:
        module.set_attn_implementation(previous)


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
        with _eager_attention(module):
            program = torch.onnx.export(
                Graph().float().eval(),  # the wrapper too: the exporter warns on a module in training mode
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


def _quantize_onnx(source: Path, target: Path, scratch: Path) -> None:
    """Fuse the BERT-family patterns, then quantize the weights of the fused graph to int8 (per channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level=0: the fusions only; the runtime's own optimizations stay for load time (they depend on the CPU)
    fused = optimize_model(str(source), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    fused_path = scratch / "fused.onnx"
    fused.save_model_to_file(str(fused_path))
    quantize_dynamic(str(fused_path), str(target), weight_type=QuantType.QInt8, per_channel=True)


def _import_nncf() -> Any:
    try:
        import nncf
    except ImportError as error:
        raise ImportError("OpenVINO int8 needs nncf: pip install 'retrievals-rag[openvino]'") from error
    return nncf


def _export_openvino(
    onnx_path: Path,
    folder: Path,
    quantization: Quantization | None,
    calibration_feeds: list[dict[str, Any]] | None,
) -> None:
    """Write the full-precision OpenVINO graph and, where asked, the int8 one into ``folder``."""
    import openvino

    model = openvino.convert_model(str(onnx_path))
    openvino.save_model(model, str(folder / GRAPH_FILES[("openvino", None)]), compress_to_fp16=False)
    if quantization is None:
        return
    nncf = _import_nncf()
    if quantization == "int8":
        quantized = nncf.compress_weights(
            openvino.convert_model(str(onnx_path)), mode=nncf.CompressWeightsMode.INT8_ASYM
        )
    else:
        assert calibration_feeds is not None
        quantized = nncf.quantize(
            openvino.convert_model(str(onnx_path)),
            nncf.Dataset(calibration_feeds),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration_feeds),
        )
    openvino.save_model(
        quantized, str(folder / GRAPH_FILES[("openvino", quantization)]), compress_to_fp16=False
    )


def _graph_paths(folder: Path, name: str) -> list[Path]:
    """A graph file and its weights file (OpenVINO's ``.bin`` beside the ``.xml``)."""
    path = folder / name
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def _carry_over(
    root: Path,
    backend: ExportBackend,
    staging: Path,
    checksum: str,
    task: GraphTask,
    inputs: list[str],
    replaced: set[Quantization | None],
) -> tuple[dict[str, Quantization | None], dict[str, Any] | None]:
    """Copy into ``staging`` the quantized graphs of the previous export that this one does not replace.

    Kept only when they came from the same weights, task and inputs; an unreadable previous record keeps
    nothing. Returns the files kept and the previous calibration record (kept with a static graph).
    """
    try:
        previous = read_record(root, backend)
    except ValueError:
        return {}, None
    if previous is None or (previous.source_checksum, previous.task, previous.inputs) != (
        checksum,
        task,
        inputs,
    ):
        return {}, None
    kept: dict[str, Quantization | None] = {}
    for name, quantization in previous.files.items():
        paths = _graph_paths(root / backend, name)
        if quantization in replaced or not all(path.is_file() for path in paths):
            continue
        for path in paths:
            shutil.copy2(path, staging / path.name)
        kept[name] = quantization
    calibration = previous.calibration if "int8-static" in kept.values() else None
    return kept, calibration


def _versions(backend: ExportBackend) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = [
        "torch",
        "transformers",
        "onnx",
        "onnxscript",
        "onnxruntime" if backend == "onnx" else "openvino",
    ]
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
    calibration: Sequence[CalibrationItem] | None = None,
) -> Path:
    """Export a model's transformer graph into ``folder/onnx`` or ``folder/openvino``, with its record.

    The full-precision graph is always written; ``quantize`` adds a quantized one beside it. Quantized graphs
    of an earlier export of the same backend stay when they came from the same weights (so ``int8`` and
    ``int8-static`` can both be held, and ``backend="auto"`` takes the fastest). The sub-folder is built apart
    and moved into place at the end, so a failed export leaves the folder as it was.

    Args:
        model_or_folder: a model folder (loaded as the kind it was saved as; a plain transformers folder as an
            embedder), or a loaded :class:`~retrievals_rag.AutoModelForEmbedding`,
            :class:`~retrievals_rag.AutoModelForRanking` (cross-encoder) or :class:`~retrievals_rag.ColBERT`.
        folder: the folder holding the model's weights, where the export goes; default: ``model_or_folder``
            itself (required for a loaded model: the folder it was saved to).
        backend: ``"onnx"`` (ONNX Runtime) or ``"openvino"``.
        quantize: None; ``"int8"`` (int8 weights, activations quantized at run time: no data needed); or, for
            OpenVINO, ``"int8-static"`` (weights and activations, ranges calibrated on ``calibration``: the
            fastest on a CPU).
        calibration: for ``"int8-static"``: at least 32 texts like those the model will serve (documents for an
            embedder or ColBERT, ``(query, document)`` pairs for a cross-encoder); at most 300 are used, spread
            evenly over the sequence.

    Returns:
        The backend's sub-folder.

    Raises:
        ValueError: a model kind that cannot be exported (LLM ranker, decoder LLMs), an unknown backend or
            quantization, ``int8-static`` asked of ONNX or without enough calibration texts, a folder without
            weights.
        ImportError: the backend's packages are not installed.
    """
    if backend not in ("onnx", "openvino"):
        raise ValueError(f"backend must be 'onnx' or 'openvino', got {backend!r}")
    if quantize not in (None, "int8", "int8-static"):
        raise ValueError(f"quantize must be None, 'int8' or 'int8-static', got {quantize!r}")
    if quantize == "int8-static" and backend != "openvino":
        raise ValueError("quantize='int8-static' is for backend='openvino'; ONNX takes quantize='int8'")
    if calibration is not None and quantize != "int8-static":
        raise ValueError(f"calibration texts are for quantize='int8-static', not quantize={quantize!r}")
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
    if quantize is not None and backend == "openvino":
        _import_nncf()
    from retrievals_rag.models.registry import kind_of

    if loaded_from_folder:  # the kind and the calibration are checked before the weights are loaded
        kind = _folder_kind(str(model_or_folder))
        items = check_calibration(kind, calibration) if quantize == "int8-static" else None
        model = _load_for_export(str(model_or_folder), kind)
        module, task = _graph_module(model)
    else:
        model = model_or_folder
        module, task = _graph_module(model)
        kind = kind_of(model)
        items = check_calibration(kind, calibration) if quantize == "int8-static" else None
    inputs = _input_names(module)
    feeds = record_transformer_inputs(model, kind, items, inputs) if items is not None else None
    with staged_folder(root, backend) as staging:
        files, calibration_record = _carry_over(
            root, backend, staging, checksum, task, inputs, replaced={None, quantize}
        )
        with tempfile.TemporaryDirectory(prefix="scratch-", dir=staging) as scratch:
            if backend == "onnx":
                onnx_path = staging / GRAPH_FILES[("onnx", None)]
                _export_onnx(module, task, inputs, onnx_path)
                if quantize == "int8":
                    _quantize_onnx(onnx_path, staging / GRAPH_FILES[("onnx", "int8")], Path(scratch))
            else:
                onnx_path = Path(scratch) / "model.onnx"
                _export_onnx(module, task, inputs, onnx_path)
                _export_openvino(onnx_path, staging, quantize, feeds)
        files[GRAPH_FILES[(backend, None)]] = None
        if quantize is not None:
            files[GRAPH_FILES[(backend, quantize)]] = quantize
        if feeds is not None:
            calibration_record = {
                "items": len(feeds),
                "inputs": "pairs" if kind == "cross_encoder" else "texts",
            }
        record = ExportRecord(
            backend=backend,
            task=task,
            inputs=inputs,
            files=files,
            source_checksum=checksum,
            opset=ONNX_OPSET,
            exporter={"graph": "torch.onnx.export(dynamo=True), eager attention", **_versions(backend)},
            calibration=calibration_record,
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
