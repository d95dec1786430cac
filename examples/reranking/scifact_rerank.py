"""Rerank dense retrieval on a BEIR dataset (SciFact): the packaged MiniLM's top-100 alone, then reranked by a
cross-encoder, an LLM reranker or ColBERT.

    # rerank with a trained model folder (its kind is read from the folder)
    python examples/reranking/scifact_rerank.py --data ../shared/data/scifact --reranker runs/cross-encoder
    # first fine-tune a cross-encoder (or --train-kind colbert) from the packaged MiniLM on the train qrels
    python examples/reranking/scifact_rerank.py --data ../shared/data/scifact --train --output runs/scifact-rerank
    # keep the dense run and the mined triplets, to train another kind on them without encoding again
    python examples/reranking/scifact_rerank.py --data ../shared/data/scifact --train --train-kind colbert \
        --dense-run runs/scifact-dense.json --triplets runs/scifact-triplets.jsonl --output runs/scifact-colbert
    # a zero-shot reranker with no training at all: SmolLM2's query likelihood (UPR), over the dense top-10
    python examples/reranking/scifact_rerank.py --data ../shared/data/scifact --reranker query-likelihood --top-k 10
    # a quick look: 20 test queries (and, with --train, 20 train queries)
    python examples/reranking/scifact_rerank.py --data ../shared/data/scifact --reranker runs/colbert --limit-queries 20

Steps:

1. dense retrieval of the top ``--top-k`` documents per test query (``RetrievalEvaluator.retrieve``);
2. with ``--train``: hard negatives mined for the train queries from the dense model's own ranking (ranks
   10-50 by default; the corpus is encoded once for step 1 and for mining), then ``train_reranker`` from the
   packaged MiniLM with a fresh head (cross-encoder) or projection (ColBERT);
3. every (query, candidate) pair scored in one ``compute_score`` call: pair rankers batch all pairs by tokens,
   and ColBERT encodes each candidate document once for the whole run, not once per query;
4. both runs evaluated with ``evaluate_run`` (nDCG@10, MRR@10, Recall@10, Recall@top-k) and printed side by
   side; ``results.json`` in ``--output`` keeps them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrievals_rag import AutoModelForEmbedding, RetrievalEvaluator, default_embedding_model_path
from retrievals_rag.cli.common import RawDescriptionHelpFormatter  # help that shows the defaults
from retrievals_rag.data.jsonl import write_jsonl
from retrievals_rag.evaluation.beir import BeirDataset, document_text, load_beir
from retrievals_rag.evaluation.metrics import evaluate_run
from retrievals_rag.evaluation.reranking import read_run, write_run
from retrievals_rag.models.backends.record import BACKEND_NAMES
from retrievals_rag.retrieval.mining import mine_hard_negatives
from retrievals_rag.retrieval.runs import CorpusEmbeddingCache, Run, rank_documents

SHOWN_METRICS = ("nDCG@10", "MRR@10", "Recall@10")


def judged_queries(dataset: BeirDataset, limit: int | None) -> dict[str, str]:
    """Query id -> text of the queries with a relevant document, in file order, the first ``limit`` only."""
    ids = [
        query_id
        for query_id in dataset.queries
        if any(grade > 0 for grade in dataset.qrels.get(query_id, {}).values())
    ]
    return {query_id: dataset.queries[query_id] for query_id in ids[:limit]}


def load_reranker(
    path: str | Path, device: str | None, max_windows: int | None = None, backend: str = "torch"
) -> Any:
    """The reranker saved in ``path``: ColBERT, or a cross-encoder / LLM ranker (adapter folders included),
    scoring at most ``max_windows`` windows per document (None: the model's setting), run by ``backend``; or,
    for ``query-likelihood``, the packaged SmolLM2's query likelihood (UPR: no training, no folder)."""
    from retrievals_rag import AutoModelForRanking, ColBERT
    from retrievals_rag.models.config import read_model_kind
    from retrievals_rag.training.adapt_settings import QUERY_LIKELIHOOD_TEACHER

    if str(path) == QUERY_LIKELIHOOD_TEACHER:
        from retrievals_rag.llm.query_likelihood import query_likelihood_ranker

        if backend != "torch":
            raise SystemExit(
                f"--reranker {QUERY_LIKELIHOOD_TEACHER} runs on torch only, not --backend {backend}"
            )
        return query_likelihood_ranker(device=device, max_windows=max_windows or 1)

    if read_model_kind(path) == "colbert":
        return ColBERT.from_pretrained(path, device=device, max_windows=max_windows, backend=backend)
    return AutoModelForRanking.from_pretrained(path, device=device, max_windows=max_windows, backend=backend)


def rerank_run(
    reranker: Any,
    run: Run,
    queries: dict[str, str],
    documents: dict[str, str],
    top_k: int,
    batch_size: int | None = None,
) -> Run:
    """Rescore each query's ``top_k`` documents of ``run`` with ``reranker``, all pairs in one call."""
    owners = [
        (query_id, document_id)
        for query_id, hits in run.items()
        for document_id in rank_documents(hits)[:top_k]
    ]
    pairs = [(queries[query_id], documents[document_id]) for query_id, document_id in owners]
    scores = reranker.compute_score(pairs, batch_size=batch_size, show_progress_bar=None) if pairs else []
    reranked: Run = {query_id: {} for query_id in run}
    for (query_id, document_id), score in zip(owners, scores, strict=True):
        reranked[query_id][document_id] = score
    return reranked


def train_on_qrels(args: argparse.Namespace, dense: CorpusEmbeddingCache) -> Path:
    """Mine hard negatives for the train queries with the dense model (or read ``--triplets`` when that file
    exists), fine-tune a reranker on them; its folder."""
    if args.triplets is not None and args.triplets.is_file():
        print(f"training on the triplets in {args.triplets} (not mined again)")
        return fine_tune(args, args.triplets)
    train = load_beir(args.data, args.train_split)
    positives = {
        query_id: [d for d, grade in judged.items() if grade > 0] for query_id, judged in train.qrels.items()
    }
    records = mine_hard_negatives(
        dense,
        list(train.corpus),
        [document_text(document) for document in train.corpus.values()],
        judged_queries(train, args.limit_queries),
        positives,
        rank_range=tuple(args.rank_range),
        num_negatives=args.num_negatives,
        seed=args.seed,
        exclude_query_id=False,
    )
    triplets = args.triplets or args.output / "train_triplets.jsonl"
    write_jsonl(records, triplets)
    print(f"mined hard negatives for {len(records)} {args.train_split} queries -> {triplets}")
    return fine_tune(args, triplets)


def fine_tune(args: argparse.Namespace, triplets: Path) -> Path:
    """Fine-tune a ``--train-kind`` reranker from ``--base-model`` on ``triplets``; its folder."""
    from retrievals_rag.training.arguments import (
        RerankerDataArguments,
        RerankerModelArguments,
        RerankerTrainingArguments,
    )
    from retrievals_rag.training.run import train_reranker

    summary = train_reranker(
        RerankerModelArguments(
            kind=args.train_kind, model_name_or_path=args.base_model, max_length=args.max_length
        ),
        RerankerDataArguments(train_data=str(triplets), train_group_size=args.group_size),
        RerankerTrainingArguments(
            output_dir=str(args.output / args.train_kind),
            per_device_train_batch_size=args.train_batch_size,
            num_train_epochs=args.epochs,
            max_steps=args.max_steps,
            learning_rate=args.learning_rate,
            warmup_steps=0.1,
            logging_steps=5,
            save_strategy="no",
            report_to="none",
            seed=args.seed,
            use_cpu=args.device == "cpu",
        ),
    )
    print(summary.describe())
    return Path(summary.output_dir)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    parser.add_argument("--split", default="test", help="qrels split to evaluate on")
    parser.add_argument(
        "--reranker",
        default=None,
        help="reranker folder (cross-encoder, LLM ranker or ColBERT), or query-likelihood (the packaged SmolLM2's "
        "likelihood of the query given the document, UPR: no training); default: the one --train makes",
    )
    parser.add_argument(
        "--dense-model", default=None, help="first-stage embedder (default: the packaged MiniLM)"
    )
    parser.add_argument("--top-k", type=int, default=100, help="documents per query to rerank")
    parser.add_argument(
        "--limit-queries", type=int, default=None, help="only the first N judged queries (default: all)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="most inputs per scoring batch (default: the model's)"
    )
    parser.add_argument(
        "--max-windows",
        type=int,
        default=None,
        help="windows scored per long document (1: truncate; default: the model's setting)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument(
        "--backend",
        choices=[*BACKEND_NAMES, "auto"],
        default="torch",
        help="what runs the reranker's transformer (an exported graph: see `retrievals-rag export`)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("runs/scifact-rerank"), help="where runs and results go"
    )
    parser.add_argument(
        "--dense-run",
        type=Path,
        default=None,
        help="JSON file of the dense run: read when it exists (no encoding), else written after retrieval "
        "(default: none)",
    )
    training = parser.add_argument_group("--train: fine-tune a reranker on the train qrels first")
    training.add_argument("--train", action="store_true", help="fine-tune a reranker first (default: off)")
    training.add_argument(
        "--train-kind", choices=["cross-encoder", "colbert"], default="cross-encoder", help="what to train"
    )
    training.add_argument("--train-split", default="train", help="qrels split to train on")
    training.add_argument(
        "--triplets",
        type=Path,
        default=None,
        help="triplet jsonl: trained on when it exists (no mining), else where the mined triplets go "
        "(default: in --output)",
    )
    training.add_argument("--base-model", default=None, help="default: the packaged MiniLM, fresh head")
    training.add_argument("--rank-range", type=int, nargs=2, default=(10, 50), help="mined negatives' ranks")
    training.add_argument("--num-negatives", type=int, default=8, help="mined per query")
    training.add_argument("--group-size", type=int, default=8, help="1 positive + (n-1) negatives per query")
    training.add_argument(
        "--max-length", type=int, default=None, help="tokens per input (default: the model's)"
    )
    training.add_argument("--train-batch-size", type=int, default=16, help="queries per training batch")
    training.add_argument("--epochs", type=float, default=1, help="training epochs")
    training.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: epochs)")
    training.add_argument("--learning-rate", type=float, default=2e-5, help="peak learning rate")
    training.add_argument("--seed", type=int, default=42, help="seed of mining draws and training")
    args = parser.parse_args(argv)
    if not args.train and args.reranker is None:
        parser.error("give --reranker FOLDER, or --train to fine-tune one first")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_arguments(argv)
    start = time.perf_counter()
    args.output.mkdir(parents=True, exist_ok=True)
    dataset = load_beir(args.data, args.split)
    queries = judged_queries(dataset, args.limit_queries)
    qrels = {query_id: dataset.qrels[query_id] for query_id in queries}
    k_values = sorted({1, 10, args.top_k})
    evaluator = RetrievalEvaluator(dataset.corpus, queries, qrels, k_values=k_values)
    dense = CorpusEmbeddingCache(
        AutoModelForEmbedding.from_pretrained(
            args.dense_model or default_embedding_model_path(), device=args.device
        )
    )
    if args.dense_run is not None and args.dense_run.is_file():
        run = read_run(args.dense_run)
        if set(run) != set(queries):
            raise SystemExit(
                f"{args.dense_run} holds other queries than {args.split}'s; delete it or pick another"
            )
        print(f"dense top-{args.top_k} for {len(queries)} {args.split} queries read from {args.dense_run}")
    else:
        run, _ = evaluator.retrieve(dense)
        print(
            f"dense top-{args.top_k} for {len(queries)} {args.split} queries "
            f"({time.perf_counter() - start:.0f}s)"
        )
        if args.dense_run is not None:
            write_run(args.dense_run, run)

    reranker_path = train_on_qrels(args, dense) if args.train else Path(args.reranker)
    reranker = load_reranker(reranker_path, args.device, args.max_windows, args.backend)
    rerank_start = time.perf_counter()
    documents = dict(zip(evaluator.document_ids, evaluator.document_texts, strict=True))
    reranked = rerank_run(reranker, run, queries, documents, args.top_k, args.batch_size)
    rerank_seconds = time.perf_counter() - rerank_start

    results = {
        "dense": evaluate_run(qrels, run, k_values=k_values),
        "reranked": evaluate_run(qrels, reranked, k_values=k_values),
    }
    shown = [*SHOWN_METRICS, f"Recall@{args.top_k}"]
    print(f"\n{args.data.name} {args.split}: {len(queries)} queries, {len(documents)} documents")
    print(f"{'':<34}" + "".join(f"{name:>12}" for name in shown))
    reranked_label = f"reranked ({type(reranker).__name__}, {getattr(reranker, 'backend', 'torch')})"
    for label, name in (("dense (MiniLM)", "dense"), (reranked_label, "reranked")):
        print(f"{label:<34}" + "".join(f"{results[name][metric]:>12.4f}" for metric in shown))
    print(f"reranking {sum(len(hits) for hits in reranked.values())} pairs took {rerank_seconds:.1f}s")
    summary = {**results, "reranker": str(reranker_path), "rerank_seconds": rerank_seconds}
    (args.output / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
