"""chromadb adapter (extra ``chroma``): an embedding function that persistent collections remember.

:class:`ChromaEmbeddingFunction` implements chromadb 1.5's ``EmbeddingFunction``: ``__call__(input)`` embeds
documents with the document instruction, ``embed_query(input)`` queries with the query instruction, and
``get_config`` / ``build_from_config`` describe it by its model path, instructions and model options (never
the model itself). It is registered with chromadb under the name ``"retrievals_rag"`` when this module is
imported, so a persistent collection created with it reopens in a new process, after this import, with
``client.get_collection(name)`` alone and the function rebuilt from the stored config.

:func:`persistent_client` opens a ``PersistentClient`` with telemetry off; :func:`get_or_create_collection`
creates collections in cosine space (:func:`cosine_configuration`) with this function, so that chromadb never
reaches for its default ONNX model.

Importing this module loads chromadb, not torch: the model is loaded on the first embedding call.

Example:
    >>> from retrievals_rag.integrations.chroma import get_or_create_collection, persistent_client
    >>> client = persistent_client("index/")  # doctest: +SKIP
    >>> collection = get_or_create_collection(client, "notes")  # the packaged MiniLM  # doctest: +SKIP
    >>> collection.add(ids=["a"], documents=["Dense retrieval maps text to vectors."])  # doctest: +SKIP
    >>> collection.query(query_texts=["what is dense retrieval?"], n_results=1)["ids"]  # doctest: +SKIP
    [['a']]

    In another process::

        import retrievals_rag.integrations.chroma  # registers the function with chromadb
        collection = persistent_client("index/").get_collection("notes")
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from retrievals_rag.integrations._embedding import (
    Side,
    check_model_kwargs,
    encode_side,
    load_model,
    missing_extra_error,
    path_to_string,
)
from retrievals_rag.models.loading import resolve_model_path

try:
    import chromadb
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
    from chromadb.config import Settings
    from chromadb.utils.embedding_functions import register_embedding_function
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise missing_extra_error(__name__, "chroma", error) from error

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from retrievals_rag.models.embedding import AutoModelForEmbedding

__all__ = [
    "EMBEDDING_FUNCTION_NAME",
    "ChromaEmbeddingFunction",
    "cosine_configuration",
    "get_or_create_collection",
    "persistent_client",
]

EMBEDDING_FUNCTION_NAME = "retrievals_rag"
"""The name the function is registered and stored under in chromadb."""

# The options that define the embedding space: stored in a collection's config and rebuilt from it.
_CONFIG_KEYS = (
    "model_name_or_path",
    "query_instruction",
    "document_instruction",
    "normalize_embeddings",
    "model_kwargs",
)


@register_embedding_function
class ChromaEmbeddingFunction(EmbeddingFunction[Documents]):
    """A chromadb embedding function over an ``AutoModelForEmbedding``, loaded on first use.

    The collection's config stores ``model_name_or_path`` (absolute for a local folder; None for the packaged
    MiniLM, found again wherever it is installed), the two instructions, ``normalize_embeddings`` and
    ``model_kwargs``: what defines the vectors. Runtime options (``device``, ``use_fp16``, ``batch_size``,
    ``token_budget``, ``show_progress_bar``) are not stored: a reopened collection uses their defaults.

    Args:
        model_name_or_path: Model folder (or hub id); None: the packaged all-MiniLM-L6-v2.
        query_instruction: Prefix for queries (``{}`` is a placeholder for the text); None: the model's own,
            ``""``: none.
        document_instruction: Prefix for documents, same rules.
        normalize_embeddings: L2-normalise queries and documents alike; None: the model's setting.
        model_kwargs: Other ``from_pretrained`` options: ``pooling_method``, ``max_length``,
            ``trust_remote_code``, ``dtype``, ``backend`` (default ``"auto"``: the fastest backend the folder
            holds on the device; ``"torch"`` forces the weights themselves).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: CUDA when available.
        use_fp16: Half precision on a GPU (the CPU falls back to float32 with a warning).
        batch_size: Most texts per forward pass; None: the model's default.
        token_budget: Most padded tokens per forward pass; None: the model's default.
        show_progress_bar: None: a progress bar for 1,000 texts or more (redrawn once a minute away from a terminal).

    Raises:
        FileNotFoundError: When ``model_name_or_path`` looks like a local path that does not exist.
        ValueError: On an unknown ``model_kwargs`` key.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        normalize_embeddings: bool | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        device: str | None = None,
        use_fp16: bool = False,
        batch_size: int | None = None,
        token_budget: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> None:
        path = path_to_string(model_name_or_path)
        self.model_name_or_path: str | None = None if path is None else resolve_model_path(path)
        self.query_instruction = query_instruction
        self.document_instruction = document_instruction
        self.normalize_embeddings = normalize_embeddings
        self.model_kwargs = check_model_kwargs(model_kwargs or {})
        self.device = device
        self.use_fp16 = use_fp16
        for name, value in (("batch_size", batch_size), ("token_budget", token_budget)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.show_progress_bar = show_progress_bar
        self._model: AutoModelForEmbedding | None = None
        self._load_lock = threading.Lock()

    @property
    def model(self) -> AutoModelForEmbedding:
        """The embedder, loaded on first access."""
        with self._load_lock:
            if self._model is None:
                self._model = load_model(
                    self.model_name_or_path,
                    device=self.device,
                    use_fp16=self.use_fp16,
                    model_kwargs=self.model_kwargs,
                )
            return self._model

    def _encode(self, texts: Documents, side: Side) -> Embeddings:
        embeddings = encode_side(
            self.model,
            texts,
            side,
            instruction=self.query_instruction if side == "query" else self.document_instruction,
            normalize_embeddings=self.normalize_embeddings,
            batch_size=self.batch_size,
            token_budget=self.token_budget,
            show_progress_bar=self.show_progress_bar,
        )  # (n_texts, dim) float32
        return list(embeddings)

    def __call__(self, input: Documents) -> Embeddings:
        """Embed documents with the document instruction: one float32 array per text."""
        return self._encode(input, "document")

    def embed_query(self, input: Documents) -> Embeddings:
        """Embed queries with the query instruction: one float32 array per text."""
        return self._encode(input, "query")

    @staticmethod
    def name() -> str:
        """The name chromadb stores with a collection's config."""
        return EMBEDDING_FUNCTION_NAME

    def default_space(self) -> Space:
        """Cosine: the space these (by default normalised) vectors are trained for."""
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        """Cosine and inner product; not l2, whose distances make poor relevance scores."""
        return ["cosine", "ip"]

    def get_config(self) -> dict[str, Any]:
        """What defines the vectors: model path, instructions, normalisation and model options."""
        return {
            "model_name_or_path": self.model_name_or_path,
            "query_instruction": self.query_instruction,
            "document_instruction": self.document_instruction,
            "normalize_embeddings": self.normalize_embeddings,
            "model_kwargs": dict(self.model_kwargs),
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbeddingFunction:
        """Rebuild the function from :meth:`get_config`'s output (runtime options at their defaults)."""
        ChromaEmbeddingFunction.validate_config(config)
        return ChromaEmbeddingFunction(**config)

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Reject a config with keys that :meth:`get_config` does not write.

        Raises:
            ValueError: On an unknown key.
        """
        unknown = sorted(set(config) - set(_CONFIG_KEYS))
        if unknown:
            raise ValueError(f"unknown {EMBEDDING_FUNCTION_NAME} embedding function config keys: {unknown}")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """Refuse to change what defines the vectors of a collection that already holds some.

        Raises:
            ValueError: When the update changes a stored option.
        """
        changed = sorted(
            key for key in new_config if key in _CONFIG_KEYS and new_config[key] != old_config.get(key)
        )
        if changed:
            raise ValueError(
                f"changing {changed} would make new vectors incomparable with the stored ones: "
                "create a new collection instead"
            )

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"ChromaEmbeddingFunction({options})"


def cosine_configuration() -> dict[str, Any]:
    """A new chromadb 1.5 collection configuration for cosine space: ``{"hnsw": {"space": "cosine"}}``.

    (``metadata={"hnsw:space": "cosine"}`` is the older form.) A new dict each call, because chromadb writes
    the embedding function into the configuration it is given: a shared dict would carry one collection's
    function into the next.
    """
    return {"hnsw": {"space": "cosine"}}


def persistent_client(path: str | os.PathLike[str]) -> ClientAPI:
    """A chromadb ``PersistentClient`` on the folder ``path``, with anonymised telemetry off.

    chromadb refuses a second client on the same path with other settings in one process: create one client
    per path and reuse it.
    """
    return chromadb.PersistentClient(path=os.fspath(path), settings=Settings(anonymized_telemetry=False))


def get_or_create_collection(
    client: ClientAPI,
    name: str,
    *,
    embedding_function: ChromaEmbeddingFunction | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Collection:
    """Get the collection ``name``, or create it in cosine space with ``embedding_function``.

    Args:
        client: A chromadb client, e.g. from :func:`persistent_client`.
        name: The collection name.
        embedding_function: The function to embed with; None: a :class:`ChromaEmbeddingFunction` of the
            packaged MiniLM.
        metadata: Collection metadata (not its configuration).

    Returns:
        The collection.

    Raises:
        ValueError: When the collection exists with another embedding function or another config of this
            one (its stored vectors would not be comparable with the new ones).
    """
    function = embedding_function if embedding_function is not None else ChromaEmbeddingFunction()
    collection = client.get_or_create_collection(
        name,
        configuration=cosine_configuration(),
        metadata=dict(metadata) if metadata is not None else None,
        embedding_function=function,
    )
    stored = collection.configuration.get("embedding_function")
    stored_config = stored.get_config() if stored is not None and stored.name() == function.name() else None
    if stored_config != function.get_config():
        stored_name = None if stored is None else stored.name()
        raise ValueError(
            f"collection {name!r} exists with embedding function {stored_name!r} "
            f"({stored_config if stored_config is not None else 'another function'}), not with {function!r}"
        )
    return collection
