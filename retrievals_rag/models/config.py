"""The settings saved next to a model's weights, so a folder remembers how it was trained and is used.

Written as ``retrievals_rag_config.json`` by ``save_pretrained`` and read back by ``from_pretrained``; the
kinds themselves are named in ``retrievals_rag.models.registry``.
Imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from retrievals_rag.models.pooling import PoolingMethod, check_pooling_method

CONFIG_FILE_NAME = "retrievals_rag_config.json"
ScoreReduction = Literal["sum", "mean"]
# Windows per document when a ranker splits a long document (see ``retrievals_rag.models.windows``).
DEFAULT_MAX_WINDOWS = 8
DEFAULT_LLM_RANKING_PROMPT = (
    "Given a query with a relevant body, determine whether the document is pertinent to the query by "
    "providing a prediction of either 'Yes' or 'No'."
)
LLMScoring = Literal["target_token", "query_likelihood"]
LLM_SCORINGS: tuple[LLMScoring, ...] = ("target_token", "query_likelihood")
# Query likelihood (UPR, Sachan et al. 2022): the passage, then this prompt, then the query, whose tokens are scored.
QUERY_LIKELIHOOD_PROMPT = "A question or claim about this passage:"
QUERY_LIKELIHOOD_DOCUMENT_INSTRUCTION = "Passage: "


@dataclass(frozen=True)
class EmbeddingSettings:
    """How an embedding model turns text into vectors.

    Attributes:
        pooling_method: how token states become one vector (see ``retrievals_rag.models.pooling``).
        normalize_embeddings: L2-normalise the output vectors.
        max_length: tokens per text, special tokens included; longer texts are truncated.
        query_instruction: prefix for queries; ``{}`` in it is a placeholder for the text.
        document_instruction: prefix for documents, same rules.
        append_eos: append the tokenizer's EOS token to every text (decoder LLMs pooled at the last token,
            when the tokenizer does not add it itself).
    """

    pooling_method: PoolingMethod
    normalize_embeddings: bool
    max_length: int
    query_instruction: str | None = None
    document_instruction: str | None = None
    append_eos: bool = False

    def __post_init__(self) -> None:
        check_pooling_method(self.pooling_method)
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {self.max_length!r}")
        for name in ("query_instruction", "document_instruction"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")


def _check_max_length(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ValueError(f"{name} must be an int >= 2, got {value!r}")


def _check_instructions(settings: object, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")


def check_window_settings(window_stride: int | None, max_windows: int) -> None:
    """Validate the long-document window options shared by every ranker."""
    if window_stride is not None and (
        not isinstance(window_stride, int) or isinstance(window_stride, bool) or window_stride < 1
    ):
        raise ValueError(f"window_stride must be None or an int >= 1, got {window_stride!r}")
    if not isinstance(max_windows, int) or isinstance(max_windows, bool) or max_windows < 1:
        raise ValueError(f"max_windows must be an int >= 1, got {max_windows!r}")


@dataclass(frozen=True)
class CrossEncoderSettings:
    """How a cross-encoder scores (query, document) pairs.

    Attributes:
        max_length: tokens per (query, document) input, special tokens included.
        num_labels: 1 (the logit is the score) or 2 (the score is ``logit[1] - logit[0]``, whose sigmoid is
            the softmax probability of label 1).
        query_instruction: prefix for queries; ``{}`` in it is a placeholder for the text.
        document_instruction: prefix for documents, same rules; repeated in every window.
        window_stride: tokens between the starts of consecutive windows of a long document; None: half a
            window.
        max_windows: most windows per document (1: plain truncation, as sentence-transformers does).
    """

    max_length: int
    num_labels: int = 1
    query_instruction: str | None = None
    document_instruction: str | None = None
    window_stride: int | None = None
    max_windows: int = DEFAULT_MAX_WINDOWS

    def __post_init__(self) -> None:
        _check_max_length("max_length", self.max_length)
        if self.num_labels not in (1, 2):
            raise ValueError(f"a ranking model needs num_labels 1 or 2, got {self.num_labels!r}")
        _check_instructions(self, "query_instruction", "document_instruction")
        check_window_settings(self.window_stride, self.max_windows)


@dataclass(frozen=True)
class LLMRankerSettings:
    """How a decoder LLM scores (query, document) pairs: by the logit of an answer token, or by query likelihood.

    With ``scoring="target_token"`` (the default) the input is
    ``[BOS] query_instruction+query SEP document_instruction+document SEP prompt`` and the score is the logit of
    ``target_token`` at its last position. With ``scoring="query_likelihood"`` it is
    ``[BOS] document_instruction+document SEP prompt query`` and the score is the mean log-probability of the
    query's tokens (see ``retrievals_rag.models.llm_ranking``).

    Attributes:
        max_length: tokens per input, prompt and special tokens included.
        query_instruction: prefix for the query (``{}`` is a placeholder for the text); none with query
            likelihood (it would be scored as part of the query).
        document_instruction: prefix for the document, repeated in every window.
        prompt: the task prompt after the document (query likelihood: the words right before the query).
        separator: text between query, document and prompt.
        target_token: the answer whose first token's logit is the score (target-token scoring).
        window_stride: see :class:`CrossEncoderSettings`.
        max_windows: see :class:`CrossEncoderSettings`.
        scoring: ``"target_token"`` or ``"query_likelihood"``.
    """

    max_length: int
    query_instruction: str | None = "A: "
    document_instruction: str | None = "B: "
    prompt: str = DEFAULT_LLM_RANKING_PROMPT
    separator: str = "\n"
    target_token: str = "Yes"
    window_stride: int | None = None
    max_windows: int = DEFAULT_MAX_WINDOWS
    scoring: LLMScoring = "target_token"

    def __post_init__(self) -> None:
        _check_max_length("max_length", self.max_length)
        _check_instructions(self, "query_instruction", "document_instruction")
        for name in ("prompt", "separator", "target_token"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {type(getattr(self, name)).__name__}")
        if not self.target_token:
            raise ValueError("target_token must not be empty")
        check_window_settings(self.window_stride, self.max_windows)
        if self.scoring not in LLM_SCORINGS:
            raise ValueError(f"scoring must be one of {', '.join(LLM_SCORINGS)}; got {self.scoring!r}")
        if self.scoring == "query_likelihood" and self.query_instruction:
            raise ValueError(
                f"query_instruction={self.query_instruction!r} cannot be used with query-likelihood scoring: the "
                "query's own tokens are what is scored; put the words before the query in prompt"
            )

    @classmethod
    def defaults_for(cls, scoring: LLMScoring) -> dict[str, Any]:
        """The prompt and instructions a ``scoring`` uses when none are given (for ``from_pretrained``)."""
        if scoring == "query_likelihood":
            return {
                "query_instruction": None,
                "document_instruction": QUERY_LIKELIHOOD_DOCUMENT_INSTRUCTION,
                "prompt": QUERY_LIKELIHOOD_PROMPT,
            }
        return {}


@dataclass(frozen=True)
class ColBERTSettings:
    """How a ColBERT (late-interaction) model turns texts into token vectors and scores them.

    Attributes:
        colbert_dim: size of the projected token vectors.
        max_length: tokens per document (window), special tokens and marker included.
        query_max_length: tokens per query, special tokens and marker included; with ``query_augmentation``
            every query is padded to exactly this length with mask tokens.
        query_marker: inserted after the tokenizer's leading special tokens of a query: a vocabulary token
            (``"[unused0]"``) or text (``"[Q] "``); None: no marker.
        document_marker: the same for documents.
        query_augmentation: pad queries with the tokenizer's mask token up to ``query_max_length``; the mask
            tokens are attended to and count in the score (Khattab & Zaharia, 2020).
        mask_punctuation: document tokens that are punctuation never match.
        skip_first_token: the first token (CLS / BOS) of every text neither matches nor counts (bge-m3).
        score_reduction: ``"sum"`` of the per-query-token maxima (ColBERT) or their ``"mean"`` (bge-m3).
        window_stride: see :class:`CrossEncoderSettings`.
        max_windows: see :class:`CrossEncoderSettings`.
    """

    colbert_dim: int
    max_length: int
    query_max_length: int = 32
    query_marker: str | None = None
    document_marker: str | None = None
    query_augmentation: bool = True
    mask_punctuation: bool = True
    skip_first_token: bool = False
    score_reduction: ScoreReduction = "sum"
    window_stride: int | None = None
    max_windows: int = DEFAULT_MAX_WINDOWS

    def __post_init__(self) -> None:
        if (
            not isinstance(self.colbert_dim, int)
            or isinstance(self.colbert_dim, bool)
            or self.colbert_dim < 1
        ):
            raise ValueError(f"colbert_dim must be an int >= 1, got {self.colbert_dim!r}")
        _check_max_length("max_length", self.max_length)
        _check_max_length("query_max_length", self.query_max_length)
        _check_instructions(self, "query_marker", "document_marker")
        if self.score_reduction not in ("sum", "mean"):
            raise ValueError(f"score_reduction must be 'sum' or 'mean', got {self.score_reduction!r}")
        check_window_settings(self.window_stride, self.max_windows)


AnySettings = EmbeddingSettings | CrossEncoderSettings | LLMRankerSettings | ColBERTSettings


def save_settings(directory: str | Path, settings: AnySettings, model_kind: str = "embedding") -> None:
    """Write ``settings`` into ``directory/retrievals_rag_config.json``, with the kind (a spelling of
    ``retrievals_rag.models.registry``) and the library's version."""
    from retrievals_rag._version import __version__

    payload = {"model_kind": model_kind, **asdict(settings), "retrievals_rag_version": __version__}
    path = Path(directory) / CONFIG_FILE_NAME
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_payload(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / CONFIG_FILE_NAME
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from error
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return payload


def read_settings(
    directory: str | Path, settings_class: type[AnySettings] = EmbeddingSettings
) -> dict[str, Any] | None:
    """Read the saved settings of a folder as a dict of ``settings_class`` fields, or None if it has none."""
    payload = _read_payload(directory)
    if payload is None:
        return None
    known = {field.name for field in fields(settings_class)}
    return {key: value for key, value in payload.items() if key in known}


def read_model_kind(directory: str | Path) -> str | None:
    """The ``model_kind`` a folder was saved as (``"embedding"``, ``"cross_encoder"``, ...), or None."""
    payload = _read_payload(directory)
    if payload is None:
        return None
    kind = payload.get("model_kind", "embedding")
    return kind if isinstance(kind, str) else None
