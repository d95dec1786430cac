"""LoRA adapters for fine-tuning large backbones: the only module that imports peft.

peft is imported inside the functions, so nothing pays its import cost (about 8 s) unless LoRA is used.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

ADAPTER_CONFIG_NAME = "adapter_config.json"


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA configuration (Hu et al., 2021).

    Attributes:
        r: rank of the update matrices.
        alpha: scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the LoRA input.
        target_modules: names of the linear layers to adapt; None adapts every linear layer ("all-linear").
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"invalid LoRA settings: r={self.r}, alpha={self.alpha}, dropout={self.dropout}")


def _require_peft() -> Any:
    try:
        import peft
    except ImportError as error:
        raise ImportError("LoRA needs peft: pip install 'retrievals-rag[train]'") from error
    return peft


def apply_lora(
    backbone: nn.Module, settings: LoraSettings | Any, modules_to_save: tuple[str, ...] = ()
) -> nn.Module:
    """Wrap ``backbone`` in a peft model whose only trainable weights are the LoRA matrices.

    Args:
        backbone: the transformer.
        settings: our :class:`LoraSettings`, or a ``peft.LoraConfig`` used as given (its ``modules_to_save``
            and ``exclude_modules`` filled in where it has none).
        modules_to_save: modules that train fully beside the adapters (a fresh task head), saved with it. They
            and everything inside them get no LoRA layers: peft cannot save a module it has adapted, and a fresh
            module must be saved whole, or an unmerged adapter reloads on new random weights.
    """
    peft = _require_peft()
    if isinstance(settings, peft.LoraConfig):
        config = copy.deepcopy(settings)
        if modules_to_save and not config.modules_to_save:
            config.modules_to_save = list(modules_to_save)
    elif isinstance(settings, LoraSettings):
        config = peft.LoraConfig(
            r=settings.r,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=list(settings.target_modules) if settings.target_modules else "all-linear",
            modules_to_save=list(modules_to_save) or None,
            task_type=peft.TaskType.FEATURE_EXTRACTION,
        )
    else:
        raise TypeError(
            f"LoRA settings must be a LoraSettings or a peft.LoraConfig, got {type(settings).__name__}"
        )
    if config.modules_to_save and not config.exclude_modules:
        config.exclude_modules = modules_to_save_pattern(config.modules_to_save)
    return peft.get_peft_model(backbone, config)


def modules_to_save_pattern(names: list[str] | tuple[str, ...]) -> str:
    """A regular expression (peft's ``exclude_modules``) for every module that peft saves whole for ``names``,
    and everything inside them.

    peft picks a module to save whole when its name *ends with* one of ``names`` (so ``classifier`` takes
    DistilBERT's ``pre_classifier`` too), so the pattern matches the same way.

    Example:
        >>> import re
        >>> pattern = modules_to_save_pattern(["classifier", "head"])
        >>> [bool(re.fullmatch(pattern, name)) for name in ("pre_classifier", "head.dense", "layers.0.attn")]
        [True, True, False]
    """
    import re

    return r".*(?:" + "|".join(re.escape(name) for name in names) + r")(?:\..*)?"


def is_lora_model(backbone: nn.Module) -> bool:
    """Whether ``backbone`` is wrapped by peft (checked without importing peft when it is not loaded)."""
    import sys

    peft = sys.modules.get("peft")
    return peft is not None and isinstance(backbone, peft.PeftModel)


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG_NAME).is_file() and not (Path(path) / "config.json").is_file()


def adapter_base_model(path: str | Path) -> str:
    """The base model folder an adapter was trained on, as recorded in its adapter_config.json."""
    config = json.loads((Path(path) / ADAPTER_CONFIG_NAME).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{Path(path) / ADAPTER_CONFIG_NAME}: no base_model_name_or_path")
    return str(base)


def load_adapter(backbone: nn.Module, path: str | Path, merge: bool) -> nn.Module:
    """Put the adapter saved in ``path`` on ``backbone``; ``merge`` folds it into the weights (plain model)."""
    peft = _require_peft()
    model = peft.PeftModel.from_pretrained(backbone, str(path), is_trainable=not merge)
    return model.merge_and_unload() if merge else model


def merged_copy(backbone: nn.Module) -> nn.Module:
    """A plain model with the adapter folded in; ``backbone`` itself keeps its adapter."""
    return copy.deepcopy(backbone).merge_and_unload()


def load_adapter_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load adapter weights saved in ``path`` into an already wrapped ``backbone`` (resuming training)."""
    peft = _require_peft()
    from safetensors.torch import load_file

    state = load_file(str(Path(path) / "adapter_model.safetensors"))
    result = peft.set_peft_model_state_dict(backbone, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"{path}: adapter weights do not fit this model (unexpected: {unexpected[:3]})")
