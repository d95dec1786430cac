"""Fine-tune the packaged all-MiniLM-L6-v2 on SciFact's train qrels with mined hard negatives.

The whole pipeline, start to end:

1. evaluate the base model on the test split (zero-shot);
2. mine hard negatives for the train queries from the base model's own ranking;
3. fine-tune with InfoNCE (in-batch + hard negatives) on RetrievalTrainer;
4. evaluate the fine-tuned model on the test split and print both results.

Usage (from the repository root; about an hour on 2 CPU cores, a few minutes on a GPU):

    python examples/scifact/finetune_scifact.py --data ../shared/data/scifact --output runs/scifact-minilm

The corpus is encoded once with the base model and reused for the zero-shot evaluation and for mining.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from retrievals_rag import AutoModelForEmbedding, RetrievalEvaluator, default_embedding_model_path
from retrievals_rag.cli.common import RawDescriptionHelpFormatter  # help that shows the defaults
from retrievals_rag.data.datasets import RetrievalTrainDataset
from retrievals_rag.data.jsonl import write_jsonl
from retrievals_rag.evaluation.beir import document_text, load_beir
from retrievals_rag.losses.infonce import InfoNCELoss
from retrievals_rag.retrieval.mining import mine_hard_negatives
from retrievals_rag.retrieval.runs import CorpusEmbeddingCache
from retrievals_rag.training.arguments import RetrievalTrainingArguments
from retrievals_rag.training.trainer import RetrievalTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="BEIR SciFact folder (with qrels/train.tsv)")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("runs/scifact-minilm"),
        help="where triplets, model and results go",
    )
    parser.add_argument("--model", default=None, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument(
        "--rank-range",
        type=int,
        nargs=2,
        default=(10, 50),
        help="0-based ranks of mined negatives, END excluded",
    )
    parser.add_argument("--num-negatives", type=int, default=8, help="mined per query")
    parser.add_argument(
        "--group-size", type=int, default=4, help="1 positive + (n-1) hard negatives per query"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="queries per training batch")
    parser.add_argument("--epochs", type=float, default=3, help="training epochs")
    parser.add_argument("--learning-rate", type=float, default=3e-5, help="peak learning rate")
    parser.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature")
    parser.add_argument(
        "--document-max-length",
        type=int,
        default=128,
        help="tokens per document in training (evaluation: 256)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of mining draws and training")
    parser.add_argument(
        "--triplets", type=Path, default=None, help="reuse mined triplets instead of mining (default: mine)"
    )
    parser.add_argument(
        "--skip-zero-shot",
        action="store_true",
        help="do not evaluate the base model first (default: evaluate it)",
    )
    args = parser.parse_args()

    start = time.perf_counter()
    args.output.mkdir(parents=True, exist_ok=True)
    model_path = args.model or str(default_embedding_model_path())
    train = load_beir(args.data, "train")
    test_evaluator = RetrievalEvaluator.from_beir(args.data, "test", k_values=(1, 10, 100))

    before = None
    if not args.skip_zero_shot or args.triplets is None:
        base = AutoModelForEmbedding.from_pretrained(model_path)
        cached = CorpusEmbeddingCache(base)
    if not args.skip_zero_shot:
        before = test_evaluator.evaluate(cached)
        print(
            f"zero-shot test nDCG@10 = {before.metrics['nDCG@10']:.4f}  ({time.perf_counter() - start:.0f}s)"
        )

    if args.triplets is not None:
        triplets = args.triplets
    else:
        corpus_ids = list(train.corpus)
        corpus_texts = [document_text(document) for document in train.corpus.values()]
        positives = {q: [d for d, grade in judged.items() if grade > 0] for q, judged in train.qrels.items()}
        records = mine_hard_negatives(
            cached,
            corpus_ids,
            corpus_texts,
            train.queries,
            positives,
            rank_range=tuple(args.rank_range),
            num_negatives=args.num_negatives,
            seed=args.seed,
            exclude_query_id=False,
        )
        triplets = args.output / "train_triplets.jsonl"
        write_jsonl(records, triplets)
        print(f"mined {len(records)} train queries -> {triplets}  ({time.perf_counter() - start:.0f}s)")

    model = AutoModelForEmbedding.from_pretrained(model_path)
    dataset = RetrievalTrainDataset(triplets, train_group_size=args.group_size, seed=args.seed)
    training_args = RetrievalTrainingArguments(
        output_dir=str(args.output / "checkpoints"),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        dataloader_drop_last=True,
    )
    trainer = RetrievalTrainer(
        model,
        training_args,
        dataset,
        InfoNCELoss(temperature=args.temperature),
        query_max_length=64,
        document_max_length=args.document_max_length,
    )
    train_start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_start
    final = args.output / "model"
    trainer.save_model(str(final))
    print(f"trained in {train_seconds:.0f}s -> {final}")

    after = test_evaluator.evaluate(AutoModelForEmbedding.from_pretrained(final))
    total = time.perf_counter() - start
    summary = {
        "zero_shot": before.metrics if before is not None else None,
        "fine_tuned": after.metrics,
        "train_seconds": train_seconds,
        "total_seconds": total,
        "arguments": {
            key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
        },
        "loss_history": [entry for entry in trainer.state.log_history if "loss" in entry],
    }
    (args.output / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"\nSciFact test ({len(test_evaluator.query_ids)} queries, {len(test_evaluator.document_ids):,} documents)"
    )
    for name, result in (("zero-shot ", before), ("fine-tuned", after)):
        if result is not None:
            metrics = result.metrics
            print(f"  {name} nDCG@10 = {metrics['nDCG@10']:.4f}  Recall@100 = {metrics['Recall@100']:.4f}")
    print(f"  wall time {total / 60:.1f} min (training {train_seconds / 60:.1f} min)")
    print(f"results: {args.output / 'results.json'}")


if __name__ == "__main__":
    main()
