"""Split loaded documents into chunks measured in the embedder's own tokens, with ids made from their content.

A :class:`Chunker` splits each page with langchain-text-splitters' ``RecursiveCharacterTextSplitter`` (paragraphs,
then lines, then sentences, then words) whose length function counts tokens of the embedder's tokenizer, so a
chunk never exceeds what the embedder reads: the default size is 25/32 of the embedder's ``max_length`` (200
tokens of MiniLM's 256) with a fifth of it as overlap (40).

The embedder reads more than the chunk: its special tokens (``[CLS]`` and ``[SEP]`` for BERT), the document
instruction, and an appended EOS token for some decoders. A chunk size that leaves no room for them would be cut
off silently before embedding, so the :class:`Chunker` refuses it (naming the largest size that fits) rather than
shrink a size the user chose; the default size is lowered to fit when the instruction is long.

Chunk ids are a hash of the source, the page, the start offset and the text (:func:`chunk_id`): indexing the same
file twice gives the same ids, which is what makes re-indexing add nothing and a killed bulk run resumable.
A chunk's ``document_id`` is a hash of its source (:func:`document_id`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrievals_rag.data.tokenization import apply_instruction
from retrievals_rag.rag.loaders import LoadedDocument

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["Chunk", "Chunker", "chunk_id", "default_chunk_sizes", "document_id"]

_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


def document_id(source: str) -> str:
    """A stable id of a document: the first 16 hex digits of the SHA-256 of its source."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def chunk_id(source: str, page_number: int | None, start_index: int, text: str) -> str:
    """A stable id of a chunk: 32 hex digits of the SHA-256 of its source, page, start offset and text.

    The start offset tells apart a passage repeated on one page; the same file split the same way always
    gives the same ids.

    Example:
        >>> chunk_id("a.txt", None, 0, "hello") == chunk_id("a.txt", None, 0, "hello")
        True
        >>> chunk_id("a.txt", None, 0, "hello") == chunk_id("b.txt", None, 0, "hello")
        False
    """
    key = "\x1f".join([source, "" if page_number is None else str(page_number), str(start_index), text])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, as it is embedded and stored.

    Attributes:
        id: :func:`chunk_id` of the chunk.
        text: The chunk's text.
        source: The document's source (file name or path).
        document_id: :func:`document_id` of the source.
        page_number: The page it comes from (1-based), None where the format has no pages.
        chunk_index: Its position among the document's chunks, from 0.
        start_index: Character offset of its start within the page's text.
        document_metadata: The document's metadata (``file_type``, ``title``...), shared by its chunks.
    """

    id: str
    text: str
    source: str
    document_id: str
    page_number: int | None
    chunk_index: int
    start_index: int
    document_metadata: dict[str, str | int | float]

    def metadata(self) -> dict[str, str | int | float]:
        """The chunk's metadata as stored in Chroma (no None values: a missing page has no ``page`` key)."""
        metadata: dict[str, str | int | float] = {
            key: value
            for key, value in self.document_metadata.items()
            if isinstance(value, str | int | float) and not isinstance(value, bool)
        }
        metadata.update(
            source=self.source,
            document_id=self.document_id,
            chunk_index=self.chunk_index,
            start_index=self.start_index,
        )
        if self.page_number is not None:
            metadata["page"] = self.page_number
        return metadata


def default_chunk_sizes(max_length: int) -> tuple[int, int]:
    """Default ``(chunk_size, chunk_overlap)`` in tokens for an embedder reading ``max_length`` tokens.

    The chunk takes 25/32 of the window (room for special tokens and a document instruction), the overlap a
    fifth of the chunk.

    Example:
        >>> default_chunk_sizes(256)
        (200, 40)
        >>> default_chunk_sizes(512)
        (400, 80)
    """
    if max_length < 8:
        raise ValueError(f"max_length must be >= 8 tokens, got {max_length}")
    chunk_size = max_length * 25 // 32
    return chunk_size, chunk_size // 5


class Chunker:
    """Split documents into token-sized chunks with stable ids.

    Args:
        tokenizer: The embedder's tokenizer (a Hugging Face ``PreTrainedTokenizerBase``); lengths are counted
            in its tokens, special tokens excluded.
        max_length: The embedder's window in tokens; sets the defaults of the two sizes below.
        chunk_size: Most tokens per chunk; None: from ``max_length`` (:func:`default_chunk_sizes`), lowered
            to :attr:`capacity` when that is smaller.
        chunk_overlap: Tokens shared by consecutive chunks; None: a fifth of ``chunk_size``.
        document_instruction: The embedder's document instruction (``{}`` is a placeholder for the text);
            its tokens are read with every chunk.
        append_eos: The embedder appends an EOS token to every text (some decoder embedders do).

    Raises:
        ValueError: When a size is not positive, the overlap is not smaller than the chunk size, or the chunk
            size exceeds :attr:`capacity` (``max_length`` less the special tokens, the instruction's tokens
            and the EOS token).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        document_instruction: str | None = None,
        append_eos: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        special = int(tokenizer.num_special_tokens_to_add(pair=False)) + (1 if append_eos else 0)
        instruction = (
            self.count_tokens(apply_instruction(document_instruction, "")) if document_instruction else 0
        )
        self.capacity = max_length - special - instruction
        """The most tokens of a chunk the embedder reads whole."""
        if self.capacity < 1:
            raise ValueError(
                f"the embedder's max_length {max_length} leaves no room for text after {special} special "
                f"token(s) and {instruction} token(s) of the document instruction"
            )
        default_size, _ = default_chunk_sizes(max_length)
        size = min(default_size, self.capacity) if chunk_size is None else chunk_size
        overlap = size // 5 if chunk_overlap is None else chunk_overlap
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        if size > self.capacity:
            raise ValueError(
                f"chunk_size {size} does not fit the embedder's window: max_length {max_length} less "
                f"{special} special token(s) and {instruction} token(s) of the document instruction leaves "
                f"{self.capacity}, so the end of each chunk would be cut off before embedding; give a "
                f"chunk_size of at most {self.capacity}"
            )
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
            raise ValueError(f"chunk_overlap must be an integer in [0, chunk_size), got {chunk_overlap!r}")
        self.max_length = max_length
        self.chunk_size = size
        self.chunk_overlap = overlap
        self._splitter: Any = None

    @classmethod
    def for_embedder(
        cls, embedder: Any, *, chunk_size: int | None = None, chunk_overlap: int | None = None
    ) -> Chunker:
        """A chunker with an ``AutoModelForEmbedding``'s tokenizer, ``max_length``, document instruction and EOS."""
        settings = getattr(embedder, "settings", None)
        return cls(
            embedder.tokenizer,
            max_length=int(embedder.max_length),
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            document_instruction=getattr(embedder, "document_instruction", None),
            append_eos=bool(getattr(settings, "append_eos", False)),
        )

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` as the splitter counts them (no special tokens)."""
        encoded = self.tokenizer(
            text,
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,  # no "longer than the maximum" warning: long texts are measured to be split
        )
        return len(encoded["input_ids"])

    def _text_splitter(self) -> Any:
        if self._splitter is None:
            from langchain_text_splitters import RecursiveCharacterTextSplitter

            self._splitter = RecursiveCharacterTextSplitter(
                separators=_SEPARATORS,
                keep_separator="end",
                chunk_size=self.chunk_size,
                chunk_overlap=self.chunk_overlap,
                length_function=self.count_tokens,
                strip_whitespace=True,
            )
        return self._splitter

    def split_text(self, text: str) -> list[tuple[int, str]]:
        """Split one page's text: ``(start offset, chunk text)`` pairs in order.

        Each chunk is a substring of ``text``; its offset is found after the previous chunk's start (the
        splitter's own ``add_start_index`` assumes an overlap counted in characters, not tokens).
        """
        if not text.strip():
            return []
        pieces: list[tuple[int, str]] = []
        previous_start = -1
        for chunk_text in self._text_splitter().split_text(text):
            start = text.find(chunk_text, previous_start + 1)
            if start < 0:  # not expected: chunks are substrings in order
                start = text.find(chunk_text)
            start = max(start, previous_start + 1)
            pieces.append((start, chunk_text))
            previous_start = start
        return pieces

    def split(self, document: LoadedDocument) -> list[Chunk]:
        """Split every page of ``document`` into chunks, numbered across the document.

        A chunk repeated at the same place (same id) is kept once.
        """
        doc_id = document_id(document.source)
        chunks: list[Chunk] = []
        seen: set[str] = set()
        for page in document.pages:
            for start_index, text in self.split_text(page.text):
                identifier = chunk_id(document.source, page.page_number, start_index, text)
                if identifier in seen:
                    continue
                seen.add(identifier)
                chunks.append(
                    Chunk(
                        id=identifier,
                        text=text,
                        source=document.source,
                        document_id=doc_id,
                        page_number=page.page_number,
                        chunk_index=len(chunks),
                        start_index=start_index,
                        document_metadata=dict(document.metadata),
                    )
                )
        return chunks

    def __repr__(self) -> str:
        return f"Chunker(chunk_size={self.chunk_size}, chunk_overlap={self.chunk_overlap}, max_length={self.max_length})"
