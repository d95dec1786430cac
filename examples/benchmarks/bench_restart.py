"""Time to first answer after a restart of the RAG engine with a ColBERT reranker: vectors on disk or not.

A ColBERT folder is built from the packaged MiniLM with a fresh projection (seeded; speed does not need quality)
unless ``--colbert`` gives one. The first ``--limit`` SciFact documents are indexed into a Chroma collection by a
first engine, which then encodes every chunk's token vectors (as a long-running app ends up doing). Then the
engine is "restarted" (a new ``RagEngine`` on the same folder, the model loaded again) twice:

- before: the vectors in memory only (the engine as it was: ``enable_document_cache()`` without a file);
- after: the vectors on disk beside the collection (``data_dir/colbert-vectors``), as ``RagEngine`` keeps them now.

For each, the time from the restart to the first answer (load the engine and the reranker, retrieve, rerank
the candidates, answer extractively) and the time until every chunk's vectors are ready again are printed.

    python examples/benchmarks/bench_restart.py --data ../shared/data/scifact --limit 300
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_colbert(folder: Path) -> Path:
    import torch

    from retrievals_rag import ColBERT, default_embedding_model_path

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fresh projection
        ColBERT.from_pretrained(default_embedding_model_path(), device="cpu").save_pretrained(folder)
    return folder


def first_answer_seconds(data_dir: Path, colbert: Path, question: str, persistent: bool) -> dict:
    from retrievals_rag.rag.engine import RagEngine

    start = time.perf_counter()
    engine = RagEngine(data_dir, reranker=colbert, llm="extractive", device="cpu")
    if not persistent:  # the engine as it was: vectors in memory only
        engine.reranker.disable_document_cache()
        engine.reranker.enable_document_cache()
    answer = "".join(engine.ask(question, "scifact"))
    first = time.perf_counter() - start
    chunks = [chunk.text for chunk in engine.store.all_chunks("scifact")]
    warm_start = time.perf_counter()
    encoded = engine.reranker.cache_documents(chunks, show_progress_bar=False)
    return {
        "first_answer_s": first,
        "all_chunks_ready_s": time.perf_counter() - warm_start,
        "chunks_encoded": encoded,
        "chunks": len(chunks),
        "answer_chars": len(answer),
        "backend": engine.reranker.backend,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder (corpus.jsonl, queries.jsonl)")
    parser.add_argument("--limit", type=int, default=300, help="documents indexed (default: 300)")
    parser.add_argument(
        "--colbert", type=Path, default=None, help="ColBERT folder (default: built from MiniLM)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="also write the figures to this JSON file (default: none)"
    )
    args = parser.parse_args()

    from bench_rag import read_corpus

    from retrievals_rag.evaluation.beir import load_queries
    from retrievals_rag.rag.engine import RagEngine
    from retrievals_rag.rag.indexing import index_documents

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        colbert = args.colbert or build_colbert(root / "colbert")
        data_dir = root / "rag-data"
        question = next(iter(load_queries(args.data / "queries.jsonl").values()))
        engine = RagEngine(data_dir, reranker=colbert, llm="extractive", device="cpu")
        start = time.perf_counter()
        index_documents(engine.store, read_corpus(args.data / "corpus.jsonl", args.limit), "scifact")
        indexing = time.perf_counter() - start
        chunks = [chunk.text for chunk in engine.store.all_chunks("scifact")]
        start = time.perf_counter()
        engine.reranker.cache_documents(chunks, show_progress_bar=False)
        encoding = time.perf_counter() - start
        print(
            f"indexed {args.limit} documents ({len(chunks)} chunks) in {indexing:.0f}s; ColBERT encoded every "
            f"chunk in {encoding:.0f}s",
            flush=True,
        )
        del engine
        results = {
            "before (vectors in memory only)": first_answer_seconds(data_dir, colbert, question, False),
            "after (vectors on disk)": first_answer_seconds(data_dir, colbert, question, True),
        }
    print(f"\nrestart of the RAG engine with a ColBERT reranker, {len(chunks)} chunks, one question")
    for name, row in results.items():
        print(
            f"  {name:34s} first answer {row['first_answer_s']:6.1f}s   all chunks ready "
            f"{row['all_chunks_ready_s']:6.1f}s ({row['chunks_encoded']} encoded)"
        )
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
