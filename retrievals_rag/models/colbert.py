"""ColBERT: late interaction over per-token vectors (Khattab & Zaharia, 2020).

An encoder turns every token into a vector, a linear layer (``colbert_linear``) projects it to ``colbert_dim``
and it is L2-normalised; a query scores a document by MaxSim, the sum over query tokens of their best match
among the document's tokens (``retrievals_rag.similarity.maxsim``, one batched operation per query batch x
document batch).

Inputs, for a BERT-like tokenizer::

    query:    [CLS] [unused0] what is colbert ? [SEP] [MASK] [MASK] ... (exactly query_max_length tokens)
    document: [CLS] [unused1] colbert scores ... [SEP]

- **Markers** tell the one encoder whether it reads a query or a document. Where the vocabulary has the unused
  tokens ``[unused0]`` / ``[unused1]`` (BERT vocabularies) they are the markers, as in the original ColBERT: one
  token each and no new embeddings. Other tokenizers get the text markers ``"[Q] "`` / ``"[D] "``. The marker
  goes right after the tokenizer's leading special tokens, and is saved with the model.
- **Query augmentation**: queries are padded to ``query_max_length`` with the mask token; these tokens are
  attended to and count in the score, which lets the model expand the query.
- **Masks**: padding never counts; document punctuation (``string.punctuation`` tokens) never matches.
- A folder in the BGE-M3 layout (``colbert_linear.pt`` next to the encoder) loads with BGE-M3's conventions:
  no markers, no augmentation, the first token skipped, and the mean over query tokens instead of the sum.
"""

from __future__ import annotations

import os
import string
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from retrievals_rag.data.tokenization import empty_text_token_id
from retrievals_rag.models.backends import BackendChoice
from retrievals_rag.models.base import resolve_settings, text_items
from retrievals_rag.models.colbert_scoring import (
    DOCUMENTS_PER_CHUNK,
    MAXSIM_MAX_ELEMENTS,
    LateInteractionScoring,
    TextKind,
    TokenEmbeddings,
)
from retrievals_rag.models.config import ColBERTSettings
from retrievals_rag.models.loading import DtypeName, default_max_length, output_width
from retrievals_rag.models.ranker import Ranker
from retrievals_rag.models.token_cache import DocumentVectorCache
from retrievals_rag.models.windows import (
    find_token_frame,
    iter_row_batches,
    plan_windows,
    tokenize_content,
)
from retrievals_rag.similarity import grouped_maxsim, maxsim

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DOCUMENTS_PER_CHUNK",
    "MAXSIM_MAX_ELEMENTS",
    "ColBERT",
    "TextKind",
    "TokenEmbeddings",
    "default_markers",
    "load_projection",
    "marker_ids",
    "punctuation_ids",
]

PROJECTION_FILE = "colbert_linear.safetensors"
BGE_M3_PROJECTION_FILE = "colbert_linear.pt"
DEFAULT_COLBERT_DIM = 128
DEFAULT_QUERY_MAX_LENGTH = 32
# Default document length when the folder does not say (BGE-M3's tokenizer allows 8,192).
DEFAULT_DOCUMENT_MAX_LENGTH = 512


def default_markers(tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
    """``("[unused0]", "[unused1]")`` where the vocabulary has them, else the text markers ``("[Q] ", "[D] ")``."""
    ids = [tokenizer.convert_tokens_to_ids(token) for token in ("[unused0]", "[unused1]")]
    if all(isinstance(i, int) and i != tokenizer.unk_token_id for i in ids) and ids[0] != ids[1]:
        return "[unused0]", "[unused1]"
    return "[Q] ", "[D] "


def marker_ids(tokenizer: PreTrainedTokenizerBase, marker: str | None) -> list[int]:
    """A marker's ids: the vocabulary token it names, else the tokens of its text; [] for None."""
    if not marker:
        return []
    token_id = tokenizer.convert_tokens_to_ids(marker)
    if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
        return [token_id]
    return tokenize_content(tokenizer, [marker])[0]


def punctuation_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of the tokens that are one ``string.punctuation`` character."""
    found: set[int] = set()
    for symbol, ids in zip(
        string.punctuation, tokenize_content(tokenizer, list(string.punctuation)), strict=True
    ):
        if len(ids) == 1 and ids[0] != tokenizer.unk_token_id:
            found.add(ids[0])
        token_id = tokenizer.convert_tokens_to_ids(symbol)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            found.add(token_id)
    return sorted(found)


def load_projection(directory: str | Path) -> dict[str, torch.Tensor] | None:
    """The saved ``colbert_linear`` weights of a folder: ours (safetensors) or BGE-M3's (``.pt``); None if none.

    The ``.pt`` file is read with ``torch.load(weights_only=True)``, which loads tensors and refuses code.
    """
    root = Path(directory)
    if (root / PROJECTION_FILE).is_file():
        from safetensors.torch import load_file

        return load_file(str(root / PROJECTION_FILE))
    if (root / BGE_M3_PROJECTION_FILE).is_file():
        state = torch.load(root / BGE_M3_PROJECTION_FILE, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "weight" not in state:
            raise ValueError(f"{root / BGE_M3_PROJECTION_FILE}: expected a linear layer's state dict")
        return dict(state)
    return None


class ColBERT(LateInteractionScoring, Ranker):
    """A ColBERT late-interaction model: an encoder, a linear projection, and MaxSim scoring.

    Load with :meth:`from_pretrained`; encode with :meth:`encode_queries` / :meth:`encode_corpus` (per-text
    token matrices); score with :meth:`compute_score` / :meth:`rerank`; save with :meth:`save_pretrained`.
    ``forward`` returns token vectors and their mask with gradients, and :meth:`score` scores them, for
    training.

    Example:
        >>> colbert = ColBERT.from_pretrained("path/to/colbert")  # doctest: +SKIP
        >>> colbert.rerank("what is late interaction?", ["ColBERT scores ...", "BM25 ..."], top_k=1)  # doctest: +SKIP
        [RerankResult(index=0, document='ColBERT scores ...', score=27.1)]
    """

    @property
    def scores_are_logits(self) -> bool:
        return False  # a MaxSim sum over the query's tokens

    def __init__(
        self,
        model: PreTrainedModel,
        colbert_linear: nn.Linear,
        tokenizer: PreTrainedTokenizerBase,
        settings: ColBERTSettings,
    ) -> None:
        super().__init__()
        if colbert_linear.out_features != settings.colbert_dim:
            raise ValueError(
                f"colbert_linear gives {colbert_linear.out_features} dimensions, settings say "
                f"{settings.colbert_dim}"
            )
        self.model = model
        self.colbert_linear = colbert_linear
        self.tokenizer = tokenizer
        self.settings = settings
        self.document_cache: DocumentVectorCache | None = None
        self._frame = find_token_frame(tokenizer, pair=False)
        self._query_marker = marker_ids(tokenizer, settings.query_marker)
        self._document_marker = marker_ids(tokenizer, settings.document_marker)
        if settings.query_augmentation and tokenizer.mask_token_id is None:
            raise ValueError("query_augmentation needs a tokenizer with a mask token")
        punctuation = punctuation_ids(tokenizer) if settings.mask_punctuation else []
        self.register_buffer(
            "_punctuation", torch.tensor(punctuation, dtype=torch.long, device=self.device), persistent=False
        )
        for kind in ("query", "document"):
            self._content_budget(kind)  # fail now if a maximum length leaves no room
        self.eval()  # loaded for inference; a trainer calls .train()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike[str],
        colbert_dim: int | None = None,
        max_length: int | None = None,
        query_max_length: int | None = None,
        device: str | torch.device | None = None,
        use_fp16: bool = False,
        dtype: DtypeName | None = None,
        trust_remote_code: bool = False,
        window_stride: int | None = None,
        max_windows: int | None = None,
        merge_lora: bool = False,
        backend: BackendChoice = "torch",
    ) -> ColBERT:
        """Load a ColBERT model from a local folder: ours, BGE-M3's layout, or a bare encoder.

        Settings come from the arguments, then the folder's ``retrievals_rag_config.json``, then defaults. The
        projection is read from ``colbert_linear.safetensors`` (ours) or ``colbert_linear.pt`` (BGE-M3); a
        folder with neither gets a fresh projection, with a warning.

        Args:
            model_name_or_path: a model folder (or a hub id, where the machine can reach the hub).
            colbert_dim: size of the token vectors (default: the saved projection's, else 128).
            max_length: tokens per document window, special tokens and marker included (default: the
                model's limit, at most 512).
            query_max_length: tokens per query (default 32, at most the model's limit).
            device: ``"cpu"``, ``"cuda"``, ...; None picks CUDA when available.
            use_fp16: half precision on a GPU; on the CPU it falls back to float32 with a warning.
            dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``; overrides ``use_fp16``.
            trust_remote_code: allow custom modelling code from the folder.
            window_stride: tokens between the starts of a long document's windows (None: half a window).
            max_windows: most windows per document when scoring (default 8; 1 truncates).
            merge_lora: for a folder holding a LoRA adapter (saved after LoRA training), fold the adapter into
                the encoder's weights. Both give the same vectors.
            backend: ``"torch"``, an exported graph of the folder's encoder (``"onnx"``, ``"onnx-int8"``,
                ``"openvino"``, ``"openvino-int8"``, ``"openvino-int8-static"``: see ``retrievals-rag export``), or ``"auto"``, the fastest
                one the folder holds on this device. The projection and MaxSim stay in torch.
        """
        folder = cls._open_folder(model_name_or_path, trust_remote_code=trust_remote_code)
        tokenizer = folder.tokenizer
        projection = load_projection(folder.path) if Path(folder.path).is_dir() else None
        found_dim = int(projection["weight"].shape[0]) if projection is not None else None
        if colbert_dim is not None and found_dim is not None and colbert_dim != found_dim:
            raise ValueError(
                f"{folder.path}: the saved colbert_linear gives {found_dim} dimensions, not {colbert_dim}"
            )
        if folder.saved is None and projection is not None:  # BGE-M3's layout and conventions
            style: dict[str, Any] = {
                "query_marker": None,
                "document_marker": None,
                "query_augmentation": False,
                "mask_punctuation": False,
                "skip_first_token": True,
                "score_reduction": "mean",
            }
        else:
            query_marker, document_marker = default_markers(tokenizer)
            style = {
                "query_marker": query_marker,
                "document_marker": document_marker,
                "query_augmentation": tokenizer.mask_token_id is not None,
            }
        model_limit = default_max_length(tokenizer, folder.config)
        settings = resolve_settings(
            ColBERTSettings,
            explicit={
                "colbert_dim": colbert_dim,
                "max_length": max_length,
                "query_max_length": query_max_length,
                "window_stride": window_stride,
                "max_windows": max_windows,
            },
            saved=folder.saved,
            defaults={
                "colbert_dim": found_dim or DEFAULT_COLBERT_DIM,
                "max_length": min(model_limit, DEFAULT_DOCUMENT_MAX_LENGTH),
                "query_max_length": min(model_limit, DEFAULT_QUERY_MAX_LENGTH),
                **style,
            },
        )
        model = cls._load_transformer(
            folder,
            task="base",
            device=device,
            use_fp16=use_fp16,
            dtype=dtype,
            merge_lora=merge_lora,
            backend=backend,
            max_length=max(settings.max_length, settings.query_max_length),
        )
        parameter = next(iter(getattr(model, "parameters", list)()), torch.empty(0))  # an exported graph: CPU
        width = output_width(model, tokenizer.pad_token_id or 0)  # not always the config's hidden_size (OPT)
        linear = nn.Linear(width, settings.colbert_dim, bias=projection is None or "bias" in projection)
        if projection is not None:
            weight_shape = tuple(projection["weight"].shape)
            if weight_shape != (settings.colbert_dim, width):
                raise ValueError(
                    f"{folder.path}: colbert_linear weight is {weight_shape}, expected "
                    f"({settings.colbert_dim}, {width})"
                )
            linear.load_state_dict(projection)
        else:
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
            warnings.warn(
                f"{folder.path} has no colbert_linear: the projection is randomly initialised; fine-tune before "
                "use",
                UserWarning,
                stacklevel=2,
            )
        linear = linear.to(device=parameter.device, dtype=parameter.dtype)
        return cls(model, linear, tokenizer, settings)

    # ------------------------------------------------------------------ properties
    @property
    def colbert_dim(self) -> int:
        return self.settings.colbert_dim

    @property
    def max_length(self) -> int:
        return self.settings.max_length

    @property
    def query_max_length(self) -> int:
        return self.settings.query_max_length

    # ------------------------------------------------------------------ forward (training and inference)
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, kind: TextKind
    ) -> TokenEmbeddings:
        """Token vectors and the mask of the tokens that count, with gradients when enabled.

        Args:
            input_ids: ``(batch, seq_len)`` rows from :meth:`tokenize_queries` / :meth:`tokenize_documents`.
            attention_mask: ``(batch, seq_len)``, 1 for real tokens (query mask tokens included).
            kind: ``"query"`` or ``"document"`` (documents mask punctuation).
        """
        mask = self.token_mask(input_ids, attention_mask, kind)
        hidden = self.model(
            **self._transformer_inputs(input_ids, attention_mask)
        ).last_hidden_state  # (batch, seq_len, hidden)
        vectors = self.colbert_linear(hidden)  # (batch, seq_len, colbert_dim)
        return TokenEmbeddings(torch.nn.functional.normalize(vectors.float(), dim=-1), mask)

    def token_mask(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, kind: TextKind
    ) -> torch.Tensor:
        """``(batch, seq_len)`` bool: True for tokens that count in MaxSim."""
        if kind not in ("query", "document"):
            raise ValueError(f"kind must be 'query' or 'document', got {kind!r}")
        mask = attention_mask.bool()
        if kind == "document" and self._punctuation.numel():
            mask = mask & ~torch.isin(input_ids, self._punctuation.to(input_ids.device))
        if self.settings.skip_first_token:
            first = attention_mask.long().argmax(dim=1)  # (batch,) first real token, for either padding side
            mask = mask.clone()
            mask[torch.arange(mask.shape[0], device=mask.device), first] = False
        return mask

    def score(self, queries: TokenEmbeddings, documents: TokenEmbeddings) -> torch.Tensor:
        """MaxSim of every query with every document, ``(n_queries, n_documents)``, in one operation.

        ``score_reduction="mean"`` divides each query's sum by its number of counted tokens (BGE-M3).
        """
        scores = maxsim(queries.embeddings, documents.embeddings, queries.mask, documents.mask)
        return self._reduce(scores, queries)

    def score_groups(self, queries: TokenEmbeddings, documents: TokenEmbeddings) -> torch.Tensor:
        """MaxSim of each query with its own group of documents only (grouped ``[q0_d0, q0_d1, ..., q1_d0,
        ...]``), ``(n_queries, group_size)``: what a loss over each query's own positive and negatives needs,
        without the full ``n_queries x n_documents`` matrix."""
        scores = grouped_maxsim(queries.embeddings, documents.embeddings, queries.mask, documents.mask)
        return self._reduce(scores, queries)

    def _reduce(self, scores: torch.Tensor, queries: TokenEmbeddings) -> torch.Tensor:
        if self.settings.score_reduction == "mean":
            scores = scores / queries.mask.sum(dim=-1).clamp(min=1).to(scores.dtype)[:, None]
        return scores

    # ------------------------------------------------------------------ tokenization
    def _content_budget(self, kind: TextKind) -> int:
        marker = self._query_marker if kind == "query" else self._document_marker
        limit = self.settings.query_max_length if kind == "query" else self.settings.max_length
        budget = limit - self._frame.overhead - len(marker)
        if budget < 1:
            raise ValueError(f"{kind} max length {limit} leaves no room after special tokens and marker")
        return budget

    def _row(self, kind: TextKind, content: Sequence[int]) -> list[int]:
        marker = self._query_marker if kind == "query" else self._document_marker
        row = self._frame.assemble([*marker, *content])[0]
        if kind == "query" and self.settings.query_augmentation:
            row += [self.tokenizer.mask_token_id] * (self.settings.query_max_length - len(row))
        return row or [
            empty_text_token_id(self.tokenizer)
        ]  # no marker nor special tokens around an empty text

    def tokenize_queries(self, queries: Sequence[str]) -> list[list[int]]:
        """Query rows: special tokens, marker, the query truncated, mask tokens up to ``query_max_length``."""
        budget = self._content_budget("query")
        return [self._row("query", ids[:budget]) for ids in tokenize_content(self.tokenizer, queries)]

    def tokenize_documents(self, documents: Sequence[str]) -> list[list[int]]:
        """Document rows: special tokens, marker and the document truncated to ``max_length`` (one window)."""
        budget = self._content_budget("document")
        return [self._row("document", ids[:budget]) for ids in tokenize_content(self.tokenizer, documents)]

    def _document_windows(self, document_ids: list[int]) -> list[list[int]]:
        spans = plan_windows(
            len(document_ids),
            self._content_budget("document"),
            self.settings.window_stride,
            self.settings.max_windows,
        )
        return [self._row("document", document_ids[start:end]) for start, end in spans]

    # ------------------------------------------------------------------ encoding
    def _encode_rows(
        self, rows: list[list[int]], kind: TextKind, options: dict[str, Any]
    ) -> Iterator[tuple[np.ndarray, TokenEmbeddings]]:
        device = self.device
        for batch in iter_row_batches(rows, padding_side="right", **options):
            output = self(
                batch.input_ids.to(device, non_blocking=True),
                batch.attention_mask.to(device, non_blocking=True),
                kind,
            )
            yield batch.positions, output

    def _encode(
        self,
        texts: str | Sequence[str],
        kind: TextKind,
        batch_size: int | None,
        token_budget: int | None,
        show_progress_bar: bool | None,
    ) -> np.ndarray | list[np.ndarray]:
        items, single = text_items(texts)
        rows = self.tokenize_queries(items) if kind == "query" else self.tokenize_documents(items)
        output: list[np.ndarray] = [np.empty((0, self.colbert_dim), dtype=np.float32)] * len(items)
        with self.inference(len(items), show_progress_bar, "Encoding") as progress:
            for positions, encoded in self._encode_rows(
                rows, kind, self._batch_options(batch_size, token_budget)
            ):
                vectors, mask = encoded.embeddings.cpu(), encoded.mask.cpu()
                for row, position in enumerate(positions):
                    output[int(position)] = vectors[row][mask[row]].numpy()
                progress.update(len(positions))
        return output[0] if single else output

    def encode_queries(
        self,
        queries: str | Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Token matrices of queries: one float32 ``(n_tokens, colbert_dim)`` array per query (a list, or one
        array for a single string).

        Only the tokens that count are kept (with query augmentation, the mask tokens too), so the rows are
        what MaxSim sums over: ``maxsim(q[None], d[None])`` of two such arrays (as tensors) is their score
        (divided by ``len(q)`` with ``score_reduction="mean"``).
        """
        return self._encode(queries, "query", batch_size, token_budget, show_progress_bar)

    def encode_corpus(
        self,
        documents: str | Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Token matrices of documents (truncated to ``max_length``), one float32 array per document (a list,
        or one array for a single string).

        Padding and punctuation tokens are left out. Scoring (:meth:`compute_score`, :meth:`rerank`) windows
        long documents instead of truncating them.
        """
        return self._encode(documents, "document", batch_size, token_budget, show_progress_bar)

    # ------------------------------------------------------------------ saving
    def _load_extra_weights(self, directory: Path) -> None:
        projection = load_projection(directory)
        if projection is None:
            raise ValueError(f"{directory}: no {PROJECTION_FILE} to load the projection from")
        self.colbert_linear.load_state_dict(projection)

    def save_pretrained(self, save_directory: str | os.PathLike[str], merge_lora: bool = False) -> None:
        """Write the encoder (safetensors; a LoRA adapter alone unless ``merge_lora``),
        ``colbert_linear.safetensors``, tokenizer and settings."""
        from safetensors.torch import save_file

        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        transformer, _ = self._transformer_to_save(merge_lora)
        transformer.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        state = {
            name: tensor.detach().to("cpu").contiguous()
            for name, tensor in self.colbert_linear.state_dict().items()
        }
        save_file(state, str(directory / PROJECTION_FILE))
        self._save_settings(directory)

    def __repr__(self) -> str:
        return (
            f"ColBERT(model={type(self.model).__name__}, colbert_dim={self.colbert_dim}, "
            f"max_length={self.max_length}, query_max_length={self.query_max_length}, device={self.device})"
        )
