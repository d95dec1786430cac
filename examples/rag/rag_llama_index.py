"""Retrieval with LlamaIndex: a VectorStoreIndex on our embeddings, reranked by our ranker, sources with scores.

Usage::

    python examples/rag/rag_llama_index.py --question "What is dense retrieval?" notes/*.txt
    python examples/rag/rag_llama_index.py --reranker path/to/cross-encoder --question "..." notes.txt

What it does: reads the text files into LlamaIndex ``Document`` objects, splits them with ``SentenceSplitter``,
embeds the nodes in a ``VectorStoreIndex`` (in memory) with
:class:`~retrievals_rag.integrations.llama_index.LlamaIndexEmbedding` (the packaged all-MiniLM-L6-v2 unless
``--embedding-model``), retrieves ``--similarity-top-k`` nodes for the question and reranks them down to
``--top-n`` with :class:`~retrievals_rag.integrations.llama_index.LlamaIndexReranker` as the query engine's
node postprocessor. It prints each source with its rerank score (a sigmoid in (0, 1)) and its retrieval score
(cosine similarity, kept in the node's metadata). No LLM is used (``Settings.llm = None``,
``response_mode="no_text"``), so nothing is generated and nothing reaches the network.

Without ``--reranker`` it builds a cross-encoder from the packaged MiniLM with a fresh, UNTRAINED
classification head: its scores are random, so give a fine-tuned cross-encoder for a meaningful order.

Needs the ``llama-index`` extra.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrievals_rag.cli.common import HelpFormatter  # help that shows the defaults

UNTRAINED_WARNING = (
    "WARNING: no --reranker given: reranking with a cross-encoder built from the packaged MiniLM with a fresh, "
    "UNTRAINED classification head. Its scores are random and its order means nothing; fine-tune one "
    "(retrievals-rag train) and pass its folder with --reranker."
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="Text files to index.")
    parser.add_argument("--question", required=True, help="The question to retrieve for.")
    parser.add_argument("--embedding-model", help="Embedding model folder; default: the packaged MiniLM.")
    parser.add_argument(
        "--reranker", help="Reranker folder (cross-encoder, LLM ranker or ColBERT); default: no reranking."
    )
    parser.add_argument("--similarity-top-k", type=int, default=10, help="Nodes retrieved before reranking.")
    parser.add_argument("--top-n", type=int, default=3, help="Nodes kept after reranking.")
    parser.add_argument("--chunk-size", type=int, default=256, help="SentenceSplitter chunk size, in tokens.")
    parser.add_argument("--device", help="'cpu', 'cuda'...; default: CUDA when available.")
    args = parser.parse_args(argv)
    for name in ("similarity_top_k", "top_n", "chunk_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def make_reranker(args: argparse.Namespace) -> Any:
    from retrievals_rag.integrations.llama_index import LlamaIndexReranker
    from retrievals_rag.models.loading import default_embedding_model_path

    if args.reranker is not None:
        return LlamaIndexReranker(
            model_name_or_path=args.reranker, device=args.device, top_n=args.top_n, normalize=True
        )
    print(UNTRAINED_WARNING, file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader's own fresh-head warning: said above
        return LlamaIndexReranker(
            model_name_or_path=default_embedding_model_path(),
            model_kind="cross_encoder",
            device=args.device,
            top_n=args.top_n,
            normalize=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [path for path in args.files if not path.is_file()]
    if missing:
        print(f"not a file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2

    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter

    from retrievals_rag.integrations.llama_index import RETRIEVAL_SCORE_KEY, LlamaIndexEmbedding

    Settings.llm = None  # no LLM: LlamaIndex uses its MockLLM, and nothing reaches OpenAI
    documents = [
        Document(text=path.read_text(encoding="utf-8"), metadata={"file_name": path.name})
        for path in args.files
    ]
    index = VectorStoreIndex.from_documents(
        documents,
        embed_model=LlamaIndexEmbedding(model_name_or_path=args.embedding_model, device=args.device),
        transformations=[
            SentenceSplitter(chunk_size=args.chunk_size, chunk_overlap=min(32, args.chunk_size // 4))
        ],
    )
    engine = index.as_query_engine(
        similarity_top_k=args.similarity_top_k,
        node_postprocessors=[make_reranker(args)],
        response_mode="no_text",
    )

    sources = engine.query(args.question).source_nodes
    print(f"Question: {args.question}\n\nSources (reranked, best first):")
    for number, source in enumerate(sources, start=1):
        metadata = source.node.metadata
        text = " ".join(source.node.get_content().split())
        snippet = text if len(text) <= 160 else text[:157] + "..."
        print(
            f"[{number}] {metadata.get('file_name', '?')} rerank={source.score:.4f} "
            f"retrieval={metadata.get(RETRIEVAL_SCORE_KEY, float('nan')):.4f}\n    {snippet}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
