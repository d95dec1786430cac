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
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from retrievals_rag.models.backends import (
    BackendChoice,
    check_trainable,
    load_backend_transformer,
    resolve_backend,
)
from retrievals_rag.models.batching import plan_batches
from retrievals_rag.models.config import (
    ColBERTSettings,
    merge_settings,
    read_model_kind,
    read_settings,
    save_settings,
)
from retrievals_rag.models.loading import (
    DtypeName,
    default_max_length,
    load_backbone,
    load_config,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
    resolve_model_path,
)
from retrievals_rag.models.ranker import Ranker
from retrievals_rag.models.token_cache import DocumentVectorCache
from retrievals_rag.models.windows import (
    find_token_frame,
    iter_row_batches,
    plan_windows,
    tokenize_content,
)
from retrievals_rag.similarity import maxsim

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TextKind = Literal["query", "document"]
PROJECTION_FILE = "colbert_linear.safetensors"
BGE_M3_PROJECTION_FILE = "colbert_linear.pt"
DEFAULT_COLBERT_DIM = 128
DEFAULT_QUERY_MAX_LENGTH = 32
# Default document length when the folder does not say (BGE-M3's tokenizer allows 8,192).
DEFAULT_DOCUMENT_MAX_LENGTH = 512
# Unique documents tokenized and windowed together: bounds memory on very large inputs.
DOCUMENTS_PER_CHUNK = 4_096
# Most elements of the (queries, documents, query_len, doc_len) token-score tensor of one MaxSim operation.
MAXSIM_MAX_ELEMENTS = 1 << 26


class TokenEmbeddings(NamedTuple):
    """Per-token vectors of a batch of texts.

    Attributes:
        embeddings: ``(batch, seq_len, colbert_dim)`` L2-normalised float32 vectors.
        mask: ``(batch, seq_len)`` bool, True for the tokens that count (not padding; for documents not
            punctuation).
    """

    embeddings: torch.Tensor
    mask: torch.Tensor


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


class ColBERT(Ranker):
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
            query_max_length: tokens per query (default 32).
            device: ``"cpu"``, ``"cuda"``, ...; None picks CUDA when available.
            use_fp16: half precision on a GPU; on the CPU it falls back to float32 with a warning.
            dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``; overrides ``use_fp16``.
            trust_remote_code: allow custom modelling code from the folder.
            window_stride: tokens between the starts of a long document's windows (None: half a window).
            max_windows: most windows per document when scoring (default 8; 1 truncates).
            backend: ``"torch"``, an exported graph of the folder's encoder (``"onnx"``, ``"onnx-int8"``,
                ``"openvino"``, ``"openvino-int8"``: see ``retrievals-rag export``), or ``"auto"``, the fastest
                one the folder holds on this device. The projection and MaxSim stay in torch.
        """
        path = resolve_model_path(model_name_or_path)
        is_folder = Path(path).is_dir()
        kind = read_model_kind(path) if is_folder else None
        saved = read_settings(path, ColBERTSettings) if kind == "colbert" else None
        projection = load_projection(path) if is_folder else None
        config = load_config(path, trust_remote_code)
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        found_dim = int(projection["weight"].shape[0]) if projection is not None else None
        if colbert_dim is not None and found_dim is not None and colbert_dim != found_dim:
            raise ValueError(
                f"{path}: the saved colbert_linear gives {found_dim} dimensions, not {colbert_dim}"
            )
        if saved is None and projection is not None:  # BGE-M3's layout and conventions
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
        settings: ColBERTSettings = merge_settings(
            ColBERTSettings,
            {
                "colbert_dim": colbert_dim,
                "max_length": max_length,
                "query_max_length": query_max_length,
                "window_stride": window_stride,
                "max_windows": max_windows,
            },
            saved,
            {
                "colbert_dim": found_dim or DEFAULT_COLBERT_DIM,
                "max_length": min(default_max_length(tokenizer, config), DEFAULT_DOCUMENT_MAX_LENGTH),
                "query_max_length": DEFAULT_QUERY_MAX_LENGTH,
                **style,
            },
        )
        resolved_device = resolve_device(device)
        resolved_dtype = resolve_dtype(resolved_device, use_fp16, dtype)
        backend_name = resolve_backend(path, backend, resolved_device.type)
        if backend_name != "torch":
            model = load_backend_transformer(path, backend_name, "base", config=config)
        else:
            model = load_backbone(
                path, dtype=resolved_dtype, device=resolved_device, trust_remote_code=trust_remote_code
            )
        hidden_size = int(model.config.hidden_size)
        linear = nn.Linear(hidden_size, settings.colbert_dim, bias=projection is None or "bias" in projection)
        if projection is not None:
            weight_shape = tuple(projection["weight"].shape)
            if weight_shape != (settings.colbert_dim, hidden_size):
                raise ValueError(
                    f"{path}: colbert_linear weight is {weight_shape}, expected "
                    f"({settings.colbert_dim}, {hidden_size})"
                )
            linear.load_state_dict(projection)
        else:
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
            warnings.warn(
                f"{path} has no colbert_linear: the projection is randomly initialised; fine-tune before use",
                UserWarning,
                stacklevel=2,
            )
        linear = linear.to(device=resolved_device, dtype=resolved_dtype)
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
        padded = bool((attention_mask == 0).any())
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask if padded else None
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
        return row

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
        single = isinstance(texts, str)
        items: list[str] = [texts] if single else list(texts)  # type: ignore[list-item]
        for index, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
        rows = self.tokenize_queries(items) if kind == "query" else self.tokenize_documents(items)
        output: list[np.ndarray] = [np.empty((0, self.colbert_dim), dtype=np.float32)] * len(items)
        progress = self._progress(len(items), show_progress_bar, "Encoding")
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for positions, encoded in self._encode_rows(
                    rows, kind, self._batch_options(batch_size, token_budget)
                ):
                    vectors, mask = encoded.embeddings.cpu(), encoded.mask.cpu()
                    for row, position in enumerate(positions):
                        output[int(position)] = vectors[row][mask[row]].numpy()
                    if progress is not None:
                        progress.update(len(positions))
        finally:
            self.train(was_training)
            if progress is not None:
                progress.close()
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

    # ------------------------------------------------------------------ document vector cache
    def enable_document_cache(
        self,
        max_bytes: int = 2 << 30,
        dtype: torch.dtype | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> DocumentVectorCache:
        """Keep every scored document's token vectors, so later queries score it by MaxSim alone.

        Late interaction's document vectors do not depend on the query: with the cache on, :meth:`rerank` and
        :meth:`compute_score` encode a document the first time it is seen and only the query afterwards
        (:meth:`cache_documents` fills it ahead, e.g. at indexing time). The cache is cleared whenever the
        weights change (``train()``, :meth:`load_weights`). Returns the cache (already enabled: the same one).

        Args:
            max_bytes: most bytes of vectors kept in memory; least recently used documents are forgotten beyond it.
            dtype: storage type, float16 by default (float32 gives the uncached scores exactly).
            path: also keep the vectors in this file (SQLite), so another process (a restart) reads them instead
                of encoding the documents again; name it after
                :func:`retrievals_rag.models.token_store.model_fingerprint` of this model.
        """
        if self.document_cache is None:
            if path is not None:
                from retrievals_rag.models.token_store import PersistentDocumentVectorCache

                self.document_cache = PersistentDocumentVectorCache(path, max_bytes=max_bytes, dtype=dtype)
            else:
                self.document_cache = DocumentVectorCache(max_bytes=max_bytes, dtype=dtype)
        return self.document_cache

    def disable_document_cache(self) -> None:
        """Drop the cache and its vectors; documents are encoded at every call again."""
        self.document_cache = None

    def cache_documents(
        self,
        documents: Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> int:
        """Encode the ``documents`` not cached yet into the document cache (enabled with its defaults if it is
        off), windows included, so that scoring them later encodes only queries. Returns how many were added.
        """
        cache = self.enable_document_cache()
        for index, document in enumerate(documents):
            if not isinstance(document, str):
                raise TypeError(f"documents[{index}] is {type(document).__name__}, expected str")
        missing = [document for document in dict.fromkeys(documents) if document not in cache]
        options = self._batch_options(batch_size, token_budget)
        progress = self._progress(len(missing), show_progress_bar, "Encoding documents")
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(missing), DOCUMENTS_PER_CHUNK):
                    chunk = missing[start : start + DOCUMENTS_PER_CHUNK]
                    for document, windows in zip(chunk, self._document_vectors(chunk, options), strict=True):
                        cache.put(document, windows)
                    if progress is not None:
                        progress.update(len(chunk))
        finally:
            self.train(was_training)
            if progress is not None:
                progress.close()
        return len(missing)

    def train(self, mode: bool = True) -> ColBERT:
        if mode and self.document_cache is not None:
            self.document_cache.clear()  # the weights are about to change
        return super().train(mode)

    def _window_rows(self, documents: list[str], first: int = 0) -> tuple[list[list[int]], list[int]]:
        """The documents' window rows, and each row's document (numbered from ``first``)."""
        rows: list[list[int]] = []
        owners: list[int] = []
        for offset, ids in enumerate(tokenize_content(self.tokenizer, documents)):
            windows = self._document_windows(ids)
            rows.extend(windows)
            owners.extend([first + offset] * len(windows))
        return rows, owners

    def _document_vectors(self, documents: list[str], options: dict[str, Any]) -> list[list[torch.Tensor]]:
        """Each document's windows as matrices of the vectors that count, ``(n_tokens, colbert_dim)``."""
        rows, owners = self._window_rows(documents)
        by_row: list[torch.Tensor] = [torch.empty(0)] * len(rows)
        for positions, encoded in self._encode_rows(rows, "document", options):
            for row, position in enumerate(positions):
                by_row[int(position)] = encoded.embeddings[row][encoded.mask[row]]
        vectors: list[list[torch.Tensor]] = [[] for _ in documents]
        for row, owner in enumerate(owners):
            vectors[owner].append(by_row[row])
        return vectors

    def _cached_batches(
        self, windows: list[tuple[int, torch.Tensor]], options: dict[str, Any]
    ) -> Iterator[tuple[list[int], TokenEmbeddings]]:
        """Padded float batches of cached window matrices, planned by tokens, with each row's document."""
        for rows in plan_batches(
            [len(matrix) for _, matrix in windows], options["token_budget"], options["max_batch_size"]
        ):
            longest = max(1, max(len(windows[int(row)][1]) for row in rows))
            embeddings = torch.zeros((len(rows), longest, self.colbert_dim), device=self.device)
            mask = torch.zeros((len(rows), longest), dtype=torch.bool, device=self.device)
            for slot, row in enumerate(rows):
                matrix = windows[int(row)][1]
                embeddings[slot, : len(matrix)] = matrix.to(self.device, torch.float32, non_blocking=True)
                mask[slot, : len(matrix)] = True
            yield [windows[int(row)][0] for row in rows], TokenEmbeddings(embeddings, mask)

    def _streamed_batches(
        self, documents: list[str], options: dict[str, Any]
    ) -> Iterator[tuple[list[int], TokenEmbeddings]]:
        """Encoded batches of the documents' windows, chunk by chunk, with each row's document."""
        for start in range(0, len(documents), DOCUMENTS_PER_CHUNK):
            rows, owners = self._window_rows(documents[start : start + DOCUMENTS_PER_CHUNK], start)
            for positions, encoded in self._encode_rows(rows, "document", options):
                yield [owners[int(p)] for p in positions], encoded

    # ------------------------------------------------------------------ scoring
    def _score_pairs(
        self,
        queries: list[str],
        documents: list[str],
        *,
        batch_size: int | None,
        token_budget: int | None,
        show_progress_bar: bool | None,
    ) -> np.ndarray:
        options = self._batch_options(batch_size, token_budget)
        unique_queries = list(dict.fromkeys(queries))
        unique_documents = list(dict.fromkeys(documents))
        query_index = {query: index for index, query in enumerate(unique_queries)}
        query_of_pair = np.asarray([query_index[query] for query in queries])
        document_index = {document: index for index, document in enumerate(unique_documents)}
        pairs_of_document: list[list[int]] = [[] for _ in unique_documents]
        for pair, document in enumerate(documents):
            pairs_of_document[document_index[document]].append(pair)
        scores = np.full(len(queries), -np.inf, dtype=np.float64)
        cache = self.document_cache
        progress = self._progress(len(unique_documents), show_progress_bar, "Scoring")
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                query_vectors = self._encode_queries_padded(self.tokenize_queries(unique_queries), options)
                if cache is None:
                    batches = self._streamed_batches(unique_documents, options)
                else:
                    found = [cache.get(document) for document in unique_documents]
                    missing = [index for index, vectors in enumerate(found) if vectors is None]
                    for start in range(0, len(missing), DOCUMENTS_PER_CHUNK):
                        chunk = missing[start : start + DOCUMENTS_PER_CHUNK]
                        encoded = self._document_vectors([unique_documents[i] for i in chunk], options)
                        for index, vectors in zip(chunk, encoded, strict=True):
                            # kept for this call even where a small cache cannot hold them all
                            found[index] = cache.put(unique_documents[index], vectors)
                    windows = [
                        (index, matrix) for index, vectors in enumerate(found) for matrix in vectors or []
                    ]
                    batches = self._cached_batches(windows, options)
                seen: set[int] = set()
                for owners, encoded in batches:
                    self._score_batch(
                        query_vectors, encoded, owners, pairs_of_document, query_of_pair, scores
                    )
                    if progress is not None:
                        progress.update(len(set(owners) - seen))
                        seen.update(owners)
        finally:
            self.train(was_training)
            if progress is not None:
                progress.close()
        return scores

    def _encode_queries_padded(self, rows: list[list[int]], options: dict[str, Any]) -> TokenEmbeddings:
        """Query rows encoded into one padded ``(n, longest, dim)`` tensor and mask, on the model's device."""
        longest = max(len(row) for row in rows)
        embeddings = torch.zeros((len(rows), longest, self.colbert_dim), device=self.device)
        mask = torch.zeros((len(rows), longest), dtype=torch.bool, device=self.device)
        for positions, encoded in self._encode_rows(rows, "query", options):
            index = torch.from_numpy(positions).to(self.device)
            width = encoded.embeddings.shape[1]
            embeddings[index, :width] = encoded.embeddings
            mask[index, :width] = encoded.mask
        return TokenEmbeddings(embeddings, mask)

    def _score_batch(
        self,
        queries: TokenEmbeddings,
        documents: TokenEmbeddings,
        row_documents: list[int],
        pairs_of_document: list[list[int]],
        query_of_pair: np.ndarray,
        scores: np.ndarray,
    ) -> None:
        """Score one batch of document windows against the queries paired with them; keep each pair's best."""
        pair_list: list[int] = []
        row_list: list[int] = []
        for row, document in enumerate(row_documents):
            pairs = pairs_of_document[document]
            pair_list.extend(pairs)
            row_list.extend([row] * len(pairs))
        pair_index, row_index = np.asarray(pair_list), np.asarray(row_list)
        needed = np.unique(query_of_pair[pair_index])  # sorted query indices this batch needs
        column = np.searchsorted(needed, query_of_pair[pair_index])  # each pair's row in `needed`
        n_rows, doc_len = documents.mask.shape
        per_query = max(1, queries.mask.shape[1] * n_rows * doc_len)
        group = max(1, MAXSIM_MAX_ELEMENTS // per_query)
        for first in range(0, len(needed), group):
            chosen = torch.from_numpy(needed[first : first + group]).to(self.device)
            block = self.score(
                TokenEmbeddings(queries.embeddings[chosen], queries.mask[chosen]), documents
            )  # (group, n_rows): one MaxSim operation per query group x document batch
            values = block.float().cpu().numpy()
            selected = (column >= first) & (column < first + group)
            np.maximum.at(
                scores,
                pair_index[selected],
                values[column[selected] - first, row_index[selected]].astype(np.float64),
            )

    # ------------------------------------------------------------------ saving
    def load_weights(self, directory: str | os.PathLike[str]) -> None:
        """Load the encoder and projection saved by :meth:`save_pretrained` (resuming from a checkpoint)."""
        super().load_weights(directory)
        projection = load_projection(directory)
        if projection is None:
            raise ValueError(f"{directory}: no {PROJECTION_FILE} to load the projection from")
        self.colbert_linear.load_state_dict(projection)
        if self.document_cache is not None:
            self.document_cache.clear()

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> None:
        """Write the encoder (safetensors), ``colbert_linear.safetensors``, tokenizer and settings."""
        from safetensors.torch import save_file

        check_trainable(self.model, "save the model")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        state = {
            name: tensor.detach().to("cpu").contiguous()
            for name, tensor in self.colbert_linear.state_dict().items()
        }
        save_file(state, str(directory / PROJECTION_FILE))
        save_settings(directory, self.settings, model_kind="colbert")

    def __repr__(self) -> str:
        return (
            f"ColBERT(model={type(self.model).__name__}, backend={self.backend!r}, colbert_dim={self.colbert_dim}, "
            f"max_length={self.max_length}, query_max_length={self.query_max_length}, device={self.device})"
        )
