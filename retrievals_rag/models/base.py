"""The base of every retrieval model (embedder, cross-encoder, LLM ranker, ColBERT): written once, used by four.

:class:`RetrievalModel` owns what the four kinds share: opening a folder (its kind checked against the
registry, a LoRA adapter folder found on its base model, a sentence-transformers layout read), the one
settings resolution (an explicit argument, then our saved config, then the sentence-transformers files, then
defaults), loading the transformer on a device in a dtype, LoRA (enable, merge, save the adapter alone),
``load_weights`` for resuming, activation checkpointing, the inference context (eval mode and no autograd,
the previous mode restored) and the batching defaults. A subclass says what its settings are, which
transformer head it loads, and how it encodes or scores.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from retrievals_rag.models.backends import (
    BackendChoice,
    BackendName,
    backend_of,
    check_trainable,
    load_backend_transformer,
    resolve_backend,
)
from retrievals_rag.models.config import AnySettings, read_settings, save_settings
from retrievals_rag.models.loading import (
    DtypeName,
    ModelTask,
    load_config,
    load_model,
    load_saved_weights,
    load_tokenizer,
    position_limit,
    resolve_device,
    resolve_dtype,
    resolve_model_path,
)
from retrievals_rag.models.lora import (
    LoraSettings,
    adapter_base_model,
    apply_lora,
    is_adapter_folder,
    is_lora_model,
    load_adapter,
    merged_copy,
)
from retrievals_rag.models.registry import KINDS, ModelKind, check_folder_kind, folder_kind, kind_of
from retrievals_rag.models.st_format import SentenceTransformersLayout, read_sentence_transformers_layout

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Padded tokens per batch. On a CPU throughput is flat above a few thousand tokens; a GPU wants more work.
DEFAULT_TOKEN_BUDGET = {"cpu": 4_096, "cuda": 131_072}
DEFAULT_MAX_BATCH_SIZE = {"cpu": 256, "cuda": 1024}
PROGRESS_BAR_MIN_TEXTS = 1_000
PROGRESS_LOG_SECONDS = 60.0  # how often a bar away from a terminal is redrawn

SettingsT = TypeVar("SettingsT", bound=AnySettings)


def resolve_settings(
    settings_class: type[SettingsT],
    *,
    explicit: Mapping[str, Any],
    saved: Mapping[str, Any] | None = None,
    sentence_transformers: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any],
) -> SettingsT:
    """The one settings resolution of every model kind.

    Each field takes the first value found in: ``explicit`` (arguments given, None meaning not given), our
    ``saved`` config, the folder's ``sentence_transformers`` files (None values ignored), ``defaults``.

    Example:
        >>> from retrievals_rag.models.config import CrossEncoderSettings
        >>> resolve_settings(CrossEncoderSettings, explicit={"max_length": None, "num_labels": 2},
        ...                  saved={"max_length": 128, "num_labels": 1}, defaults={"max_length": 512}).max_length
        128
    """
    from_st = {name: value for name, value in (sentence_transformers or {}).items() if value is not None}
    given = {name: value for name, value in explicit.items() if value is not None}
    return settings_class(**{**defaults, **from_st, **(saved or {}), **given})


def text_items(texts: object) -> tuple[list[str], bool]:
    """``texts`` (one string, or a sequence of them) as a list; the flag says one string was given.

    Raises:
        TypeError: a mapping (``list()`` of a dict would silently embed its keys), or an item that is not a
            string (its index named).
    """
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, Mapping):
        raise TypeError(
            f"expected a text or a sequence of texts, got a {type(texts).__name__} (its keys would be embedded); "
            "pass a list, e.g. list(corpus.values()) for an {id: text} corpus"
        )
    if isinstance(texts, bytes) or not hasattr(texts, "__iter__"):
        raise TypeError(f"expected a text or a sequence of texts, got {type(texts).__name__}")
    items = list(texts)  # type: ignore[call-overload]
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
    return items, False


@dataclass(frozen=True)
class ModelFolder:
    """What ``from_pretrained`` reads from a folder before it builds a model.

    Attributes:
        path: the folder (absolute) or hub id that was asked for.
        kind: the kind the folder was saved as by this library, or None.
        saved: our saved settings of the loading class's kind (None if the folder holds none of that kind).
        adapter_path: the folder itself when it holds a LoRA adapter alone, else None.
        weights_path: where the transformer's weights are: the adapter's base model, the sentence-transformers
            Transformer module's folder, or ``path``.
        config: the transformer's ``AutoConfig``.
        tokenizer: the folder's tokenizer (given a pad token if it had none).
        layout: the sentence-transformers layout of the folder, if it has one.
        trust_remote_code: whether custom modelling code may run.
    """

    path: str
    kind: ModelKind | None
    saved: dict[str, Any] | None
    adapter_path: str | None
    weights_path: str
    config: Any
    tokenizer: PreTrainedTokenizerBase
    layout: SentenceTransformersLayout | None
    trust_remote_code: bool


class Progress:
    """A progress bar that may be off: ``update`` and ``close`` do nothing without one.

    Args:
        total: items to go through.
        show_progress_bar: True shows a bar, False never; None shows one for 1,000 items or more: live on a
            terminal, otherwise (a job under ``nohup``, a log file, a notebook) redrawn once every
            :data:`PROGRESS_LOG_SECONDS`, so that a long encode in the background still says how far it is.
        description: the bar's label.
    """

    def __init__(self, total: int, show_progress_bar: bool | None, description: str) -> None:
        self._bar: Any = None
        if show_progress_bar or (show_progress_bar is None and total >= PROGRESS_BAR_MIN_TEXTS):
            from tqdm.auto import tqdm

            live = show_progress_bar or _on_terminal(sys.stderr)
            self._bar = tqdm(
                total=total,
                desc=description,
                disable=False,
                mininterval=0.1 if live else PROGRESS_LOG_SECONDS,
                maxinterval=10.0 if live else PROGRESS_LOG_SECONDS,  # tqdm's monitor would redraw sooner
                file=sys.stderr,
            )

    def update(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _on_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False


class RetrievalModel(nn.Module):
    """The shared base of :class:`~retrievals_rag.AutoModelForEmbedding`, the rankers and ColBERT.

    A subclass keeps its transformer in :attr:`model` (wrapped by peft while LoRA adapters train), its
    tokenizer in :attr:`tokenizer` and its frozen settings in :attr:`settings`.
    """

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    settings: Any

    # ------------------------------------------------------------------ loading
    @classmethod
    def model_kind(cls) -> ModelKind:
        """This class's kind in the registry (``"embedding"``, ``"cross_encoder"``, ...)."""
        return kind_of(cls)

    @classmethod
    def _open_folder(
        cls, model_name_or_path: str | os.PathLike[str], *, trust_remote_code: bool
    ) -> ModelFolder:
        """Resolve ``model_name_or_path`` and read what it holds, refusing a folder of another kind.

        A ranker may start from an embedder's folder (a fresh head on a bi-encoder); nothing else crosses kinds.
        """
        path = resolve_model_path(model_name_or_path)
        own = cls.model_kind()
        check_folder_kind(path, own, accept=("embedding",) if KINDS[own].ranker else ())
        is_folder = Path(path).is_dir()
        kind = folder_kind(path) if is_folder else None
        saved = read_settings(path, KINDS[own].settings_class) if kind == own else None
        adapter_path = path if is_folder and is_adapter_folder(path) else None
        layout = read_sentence_transformers_layout(path) if is_folder and adapter_path is None else None
        if adapter_path is not None:
            weights_path = resolve_model_path(adapter_base_model(adapter_path))
        elif layout is not None:
            weights_path = str(layout.transformer_path)
        else:
            weights_path = path
        config = load_config(weights_path, trust_remote_code)
        tokenizer = load_tokenizer(adapter_path or weights_path, trust_remote_code=trust_remote_code)
        return ModelFolder(
            path=path,
            kind=kind,
            saved=saved,
            adapter_path=adapter_path,
            weights_path=weights_path,
            config=config,
            tokenizer=tokenizer,
            layout=layout,
            trust_remote_code=trust_remote_code,
        )

    @staticmethod
    def _load_transformer(
        folder: ModelFolder,
        *,
        task: ModelTask,
        device: str | torch.device | None,
        use_fp16: bool,
        dtype: DtypeName | None,
        merge_lora: bool,
        num_labels: int | None = None,
        backend: BackendChoice = "torch",
        max_length: int | None = None,
    ) -> nn.Module:
        """The folder's transformer for ``task`` on ``device`` in the resolved dtype, its adapter put on.

        ``max_length`` (the longest input the settings allow) is refused when the model's learned position
        embeddings are fewer: the first long text would fail deep inside the embeddings with an index error.

        ``merge_lora`` folds an adapter into the weights; on a folder without one it warns that nothing was
        merged. ``backend`` other than ``"torch"`` loads the graph exported into the folder instead (see
        :mod:`retrievals_rag.models.backends`): it takes the same inputs and gives the same outputs, on the CPU.
        """
        resolved_device = resolve_device(device)
        if task == "causal_lm" and backend not in ("torch", "auto"):
            raise ValueError(f"{folder.path}: an LLM ranker runs with backend='torch' only, not {backend!r}")
        name = resolve_backend(folder.path, backend, resolved_device.type) if task != "causal_lm" else "torch"
        if name != "torch":
            return load_backend_transformer(folder.path, name, task, config=folder.config)  # type: ignore[arg-type]
        model = load_model(
            folder.weights_path,
            task=task,
            dtype=resolve_dtype(resolved_device, use_fp16, dtype),
            device=resolved_device,
            trust_remote_code=folder.trust_remote_code,
            num_labels=num_labels,
            warning_stacklevel=4,
        )
        if folder.adapter_path is not None:
            model = load_adapter(model, folder.adapter_path, merge=merge_lora)
        elif merge_lora:
            warnings.warn(
                f"merge_lora=True but {folder.path} holds no LoRA adapter: there is nothing to merge, the model "
                "loads as it is",
                UserWarning,
                stacklevel=4,
            )
        limit = position_limit(model)
        if max_length is not None and limit is not None and max_length > limit:
            raise ValueError(
                f"{folder.path}: max_length {max_length} is more than the model takes: its learned position "
                f"embeddings hold {limit} tokens; give max_length={limit} or less"
            )
        return model

    # ------------------------------------------------------------------ device and state
    @property
    def device(self) -> torch.device:
        parameter = next(self.parameters(), None)  # an exported graph has none and runs on the CPU
        return parameter.device if parameter is not None else torch.device("cpu")

    @property
    def backend(self) -> BackendName:
        """What runs the transformer: ``"torch"`` or an exported graph (``"onnx-int8"``, ...)."""
        return backend_of(self.model)

    @property
    def compute_dtype(self) -> str | None:
        """The dtype the transformer computes in (``"float32"``, ``"float16"``, ``"bfloat16"``); None for an
        exported graph, whose backend name says how it computes."""
        parameter = next(self.parameters(), None)
        return None if parameter is None else str(parameter.dtype).removeprefix("torch.")

    @contextmanager
    def inference(
        self, total: int = 0, show_progress_bar: bool | None = None, description: str = ""
    ) -> Iterator[Progress]:
        """Eval mode and no autograd for the block; the previous mode (train or eval) is restored after it.

        Yields a :class:`Progress` over ``total`` items: a bar when ``show_progress_bar`` asks for one (None: for
        1,000 items or more: live on a terminal, else redrawn once a minute), closed when the block ends.
        """
        was_training = self.training
        progress = Progress(total, show_progress_bar, description)
        self.eval()
        try:
            with torch.inference_mode():
                yield progress
        finally:
            self.train(was_training)
            progress.close()

    def _transformer_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """The transformer's keyword inputs; a batch without padding gets no mask (SDPA's fastest kernel)."""
        inputs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask if bool((attention_mask == 0).any()) else None,
        }
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return inputs

    def _batch_options(self, batch_size: int | None, token_budget: int | None) -> dict[str, Any]:
        """Token-budget batching options for this model's device (the defaults above unless given)."""
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        return {
            "token_budget": token_budget or DEFAULT_TOKEN_BUDGET[kind],
            "max_batch_size": batch_size or DEFAULT_MAX_BATCH_SIZE[kind],
            "pad_id": self.tokenizer.pad_token_id,
            "prefetch": kind == "cuda",
            "pin_memory": kind == "cuda",
        }

    # ------------------------------------------------------------------ LoRA
    @property
    def has_lora(self) -> bool:
        """Whether :attr:`model` carries LoRA adapters (only they train)."""
        return is_lora_model(self.model)

    def _base_model(self) -> Any:
        """The transformer under a peft wrapper (the transformer itself without LoRA)."""
        get_base_model = getattr(self.model, "get_base_model", None)
        return get_base_model() if callable(get_base_model) else self.model

    def _lora_modules_to_save(self) -> tuple[str, ...]:
        """Modules outside the transformer body that train fully beside LoRA (a fresh task head)."""
        return ()

    def enable_lora(self, settings: LoraSettings | Any | None = None) -> None:
        """Wrap the transformer in LoRA adapters: only they (and a task head, where there is one) train.

        Args:
            settings: a :class:`~retrievals_rag.models.lora.LoraSettings`, a ``peft.LoraConfig``, or None for
                the defaults (rank 16 on every linear layer).

        Save with ``save_pretrained``: the adapter alone, which ``from_pretrained`` loads on its base model.
        """
        check_trainable(self.model, "add LoRA adapters")
        if self.has_lora:
            raise ValueError("this model already has a LoRA adapter")
        self.model = apply_lora(self.model, settings or LoraSettings(), self._lora_modules_to_save())
        self._weights_changed()

    def merge_lora(self) -> None:
        """Fold the LoRA adapter into the weights, in place: the model gives the same outputs, without peft."""
        if not self.has_lora:
            raise ValueError("this model has no LoRA adapter to merge")
        self.model = self.model.merge_and_unload()
        self._weights_changed()

    def _transformer_to_save(self, merge_lora: bool) -> tuple[nn.Module, bool]:
        """The module to write and whether it is a full model (False: the adapter alone)."""
        check_trainable(self.model, "save the model")
        if self.has_lora and not merge_lora:
            return self.model, False
        return (merged_copy(self.model) if self.has_lora else self.model), True

    def _save_settings(self, directory: str | os.PathLike[str]) -> None:
        save_settings(directory, self.settings, self.model_kind())

    # ------------------------------------------------------------------ training support
    def _weights_changed(self) -> None:
        """Called whenever the weights are replaced (a checkpoint loaded, LoRA added or merged)."""

    def _load_extra_weights(self, directory: Path) -> None:
        """Load weights kept outside the transformer (ColBERT's projection) from a saved folder."""

    def load_weights(self, directory: str | os.PathLike[str]) -> None:
        """Load weights saved by ``save_pretrained`` into this model, in place (resuming from a checkpoint).

        A LoRA model takes the adapter's weights, a plain one the full (possibly sharded) safetensors.

        Raises:
            ValueError: the files do not fit the model.
        """
        load_saved_weights(self.model, directory)
        self._load_extra_weights(Path(directory))
        self._weights_changed()

    def activation_checkpointing_enable(
        self,
        activation_checkpointing_kwargs: dict[str, Any] | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """Recompute activations in the backward pass (less memory); called by the HF Trainer."""
        backbone = self._base_model()
        if self.has_lora:
            # inputs of a frozen embedding layer need gradients for checkpointed LoRA layers to get theirs
            backbone.enable_input_require_grads()
        backbone.activation_checkpointing_enable(
            activation_checkpointing_kwargs=activation_checkpointing_kwargs,
            every_n_layers=every_n_layers,
            offload=offload,
        )
