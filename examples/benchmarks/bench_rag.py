"""RAG engine benchmark: index a BEIR corpus into a fresh Chroma collection, then time retrieval (+ reranking).

Each ``corpus.jsonl`` record becomes one document (``title`` and ``text``, source = its id), chunked by the
embedder's tokenizer, embedded and written in batches by :func:`retrievals_rag.rag.indexing.index_documents`
into a new persistent collection; the indexing time is reported. Then ``--queries`` queries (test-split queries
first, when ``qrels/test.tsv`` is there) go through :class:`retrievals_rag.rag.retrieve.Retriever`: the top
``--candidates`` chunks by dense search, reranked by ``--reranker`` when one is given, no LLM. p50 / p95 latency
per query is printed (target: p50 under 300 ms on 2 CPU cores), with hit@k over the queries whose relevant
documents are indexed, as a sanity check.

Usage::

    python examples/benchmarks/bench_rag.py --data ../shared/data/scifact                 # the full corpus
    python examples/benchmarks/bench_rag.py --data ../shared/data/scifact --limit 500     # a quick run
    python examples/benchmarks/bench_rag.py --data ../shared/data/scifact --reranker PATH --reranker-kind cross-encoder
    python examples/benchmarks/bench_rag.py --data ../shared/data/scifact --reranker PATH --reranker-kind colbert --precompute

A ColBERT reranker keeps its chunks' token vectors (``ColBERT.enable_document_cache``, as ``RagEngine`` does),
so a chunk is encoded once; ``--precompute`` encodes them all right after indexing (timed apart), and each
query then costs its dense search, its own ColBERT encoding and MaxSim over the candidates.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from retrievals_rag.cli.common import HelpFormatter  # help that shows the defaults
from retrievals_rag.rag.loaders import LoadedDocument, Page


def read_corpus(path: Path, limit: int | None) -> list[LoadedDocument]:
    documents = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(documents) >= limit:
                break
            if not line.strip():
                continue
            record = json.loads(line)
            title, text = record.get("title", "").strip(), record.get("text", "").strip()
            body = f"{title}\n\n{text}" if title else text
            if body:
                documents.append(
                    LoadedDocument(str(record["_id"]), [Page(body)], {"file_type": "jsonl", "title": title})
                )
    return documents


def read_queries(
    data: Path, indexed: set[str], n_queries: int
) -> tuple[list[tuple[str, str]], dict[str, set[str]]]:
    """Queries (test-split ones with an indexed relevant document first) and their relevant documents."""
    queries = {}
    with (data / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                queries[str(record["_id"])] = record["text"]
    relevant: dict[str, set[str]] = {}
    qrels = data / "qrels" / "test.tsv"
    if qrels.is_file():
        with qrels.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                if int(row["score"]) > 0 and row["corpus-id"] in indexed:
                    relevant.setdefault(row["query-id"], set()).add(row["corpus-id"])
    ordered = [query_id for query_id in relevant if query_id in queries]
    ordered += [query_id for query_id in queries if query_id not in relevant]
    return [(query_id, queries[query_id]) for query_id in ordered[:n_queries]], relevant


def load_reranker(path: str | None, kind: str, device: str) -> Any:
    if path is None:
        return None
    if kind == "cross-encoder":
        from retrievals_rag.models.ranking import AutoModelForRanking

        return AutoModelForRanking.from_pretrained(path, device=device)
    if kind == "llm":
        from retrievals_rag.models.llm_ranking import LLMRanker

        return LLMRanker.from_pretrained(path, device=device)
    from retrievals_rag.models.colbert import ColBERT

    return ColBERT.from_pretrained(path, device=device)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[position]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder (corpus.jsonl, queries.jsonl)")
    parser.add_argument(
        "--limit", type=int, default=None, help="index only the first N documents (default: all)"
    )
    parser.add_argument("--queries", type=int, default=100, help="queries timed")
    parser.add_argument(
        "--candidates", type=int, default=20, help="chunks retrieved (and reranked) per query"
    )
    parser.add_argument("--top-k", type=int, default=10, help="chunks kept after reranking; hit@k uses it")
    parser.add_argument("--embedder", default=None, help="embedding model folder (default: packaged MiniLM)")
    parser.add_argument("--reranker", default=None, help="reranker folder (default: no reranking)")
    parser.add_argument(
        "--reranker-kind",
        choices=["cross-encoder", "llm", "colbert"],
        default="cross-encoder",
        help="what --reranker holds",
    )
    parser.add_argument(
        "--use-bm25", action="store_true", help="fuse BM25 with dense retrieval (default: dense only)"
    )
    parser.add_argument(
        "--precompute",
        action="store_true",
        help="colbert: compute every chunk's token vectors after indexing (default: on first retrieval)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="store folder (default: a new temp folder)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the collection already in --data-dir: indexing adds only what is missing (resumes); "
        "default: a new collection",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="chunks embedded and written per batch")
    parser.add_argument("--device", default="cpu", help="device of the embedder and reranker")
    args = parser.parse_args()

    from tqdm.auto import tqdm

    from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction
    from retrievals_rag.rag.indexing import IndexProgress, index_documents
    from retrievals_rag.rag.retrieve import Retriever
    from retrievals_rag.rag.store import VectorStore

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-rag-"))
    documents = read_corpus(args.data / "corpus.jsonl", args.limit)
    started = time.perf_counter()
    function = ChromaEmbeddingFunction(args.embedder, device=args.device)
    store = VectorStore(data_dir, embedding_function=function, batch_size=args.batch_size)
    _ = store.chunker  # loads the embedder
    load_s = time.perf_counter() - started
    collection = "bench-rag"
    if collection in store.list_collections() and not args.reuse:
        store.delete_collection(collection)

    bar = tqdm(total=len(documents), unit="doc", desc="Indexing")

    def show(progress: IndexProgress) -> None:
        bar.update(progress.files_done - bar.n)
        bar.set_postfix(chunks=progress.chunks_added)

    started = time.perf_counter()
    report = index_documents(store, documents, collection, progress=show)
    index_s = time.perf_counter() - started
    bar.close()
    print(
        f"store: {data_dir} (Chroma {'server' if store.chroma_url else 'embedded'}), embedder load {load_s:.1f} s"
    )
    print(
        f"indexed {len(documents)} documents -> {report.chunks_added} chunks in {index_s:.1f} s "
        f"({len(documents) / index_s:.1f} docs/s, {report.chunks_added / index_s:.1f} chunks/s), "
        f"chunk size {store.chunker.chunk_size}/{store.chunker.chunk_overlap} tokens"
    )

    reranker = load_reranker(args.reranker, args.reranker_kind, args.device)
    if args.reranker_kind == "colbert" and reranker is not None:
        reranker.enable_document_cache()  # as RagEngine does: a chunk's vectors are encoded once
        if args.precompute:
            texts = [chunk.text for chunk in store.all_chunks(collection)]
            started = time.perf_counter()
            reranker.cache_documents(texts, show_progress_bar=True)
            seconds = time.perf_counter() - started
            print(
                f"ColBERT vectors of {len(texts)} chunks computed ahead in {seconds:.1f} s "
                f"({len(texts) / seconds:.1f} chunks/s; part of indexing): {reranker.document_cache}"
            )
    retriever = Retriever(
        store,
        collection,
        top_k=args.top_k if reranker is not None else args.candidates,
        use_bm25=args.use_bm25,
        reranker=reranker,
        candidates=args.candidates,
    )
    queries, relevant = read_queries(args.data, {document.source for document in documents}, args.queries)
    for _, text in queries[:3]:  # warm-up, not timed
        retriever.retrieve(text)
    latencies, hits, judged = [], 0, 0
    for query_id, text in queries:
        started = time.perf_counter()
        results = retriever.retrieve(text)
        latencies.append((time.perf_counter() - started) * 1000)
        if query_id in relevant:
            judged += 1
            hits += any(result.source in relevant[query_id] for result in results[: args.top_k])
    mode = f"dense top-{args.candidates}" + (" + BM25 (RRF)" if args.use_bm25 else "")
    mode += (
        f", reranked by {args.reranker_kind} to top-{args.top_k}" if reranker is not None else ", no reranker"
    )
    print(
        f"{len(queries)} queries ({mode}): p50 {statistics.median(latencies):.1f} ms, "
        f"p95 {percentile(latencies, 0.95):.1f} ms, mean {statistics.fmean(latencies):.1f} ms"
    )
    if judged:
        print(f"hit@{args.top_k} over {judged} judged queries: {hits / judged:.3f}")


if __name__ == "__main__":
    main()
