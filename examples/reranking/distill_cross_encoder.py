"""Fine-tune a cross-encoder by distillation from a reranker you already have, and compare it side by side with
sentence-transformers' CrossEncoder trainer on the same groups, base model, steps and loss.

    # teacher: a ColBERT fine-tuned by examples/reranking/scifact_rerank.py --train --train-kind colbert
    python examples/reranking/distill_cross_encoder.py --data ../shared/data/scifact --teacher runs/colbert/colbert \
        --dense-run runs/scifact-dense.json --output runs/ce-distill

Steps (every figure is printed and kept in ``results-<trainers>.json``):

1. candidates for each train query: the packaged MiniLM's dense top ``--candidates`` (the train run is saved to
   ``--train-run`` and read back on the next run);
2. teacher scores of each query's positive and candidates (one ``compute_score`` call per teacher; several
   ``--teacher`` folders are averaged after standardising each teacher's scores per query);
3. false negatives dropped: a candidate the teacher scores within ``--false-negative-margin`` of the positive (or
   above it) is probably relevant but unjudged, and is not used as a negative;
4. ``--groups-per-query`` fixed groups per query, written once so that both trainers see exactly the same
   examples: the positive and ``--group-size - 1`` negatives, either spread over the teacher's order of the kept
   candidates (``--negatives spread``, the default: one drawn from each of ``group-size - 1`` equal slices, hardest
   to easiest, so the student also learns that the easy candidates deep in a first stage's top-100 are not
   relevant) or the teacher's hardest (``--negatives hardest``);
5. our cross-encoder (``train_reranker``, fresh head on the packaged MiniLM) and (``--trainers``)
   sentence-transformers' ``CrossEncoderTrainer`` with its ``MarginMSELoss`` (or ``ListNetLoss`` for ``kl``) on
   the same groups, epochs, batch size, learning rate and maximum length;
6. both rerank the dense top-``--top-k`` of the test queries and are evaluated by the same ``evaluate_run``
   (their runs are kept as ``test-run-<trainer>.json``), alone and with their standardised scores mixed with the
   first stage's (``--interpolation-weight``, fixed in advance: ``interpolate_runs``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrievals_rag import AutoModelForEmbedding, RetrievalEvaluator, default_embedding_model_path
from retrievals_rag.data.jsonl import write_jsonl
from retrievals_rag.evaluation.beir import load_beir
from retrievals_rag.evaluation.metrics import evaluate_run
from retrievals_rag.evaluation.reranking import read_run, write_run
from retrievals_rag.retrieval.fusion import interpolate_runs, standardise_scores
from retrievals_rag.retrieval.runs import Run, rank_documents

SHOWN = ("nDCG@10", "MRR@10", "Recall@10", "Recall@100")


def judged(dataset: Any, limit: int | None) -> dict[str, str]:
    ids = [q for q in dataset.queries if any(grade > 0 for grade in dataset.qrels.get(q, {}).values())]
    return {q: dataset.queries[q] for q in ids[:limit]}


def dense_run(path: Path | None, dataset: Any, queries: dict[str, str], top_k: int, encoder: Any) -> Run:
    """The dense top-``top_k`` of ``queries`` (read from ``path`` when it holds exactly these queries)."""
    if path is not None and path.is_file():
        run = read_run(path)
        if set(queries) <= set(run):
            return {q: run[q] for q in queries}
        print(f"{path} lacks some of these queries: computing the run again")
    qrels = {q: dataset.qrels[q] for q in queries}
    run, _ = RetrievalEvaluator(dataset.corpus, queries, qrels, k_values=[top_k]).retrieve(encoder)
    if path is not None:
        write_run(path, run)
    return run


def teacher_groups(
    args: argparse.Namespace, dataset: Any, queries: dict[str, str], run: Run, texts: dict[str, str]
) -> list[dict[str, Any]]:
    """One distillation record per train query: its positive, the hardest kept negatives, teacher scores."""
    from retrievals_rag.models.registry import load_model

    candidates: dict[str, tuple[str, list[str]]] = {}
    for query_id in queries:
        positives = [d for d, grade in dataset.qrels[query_id].items() if grade > 0]
        positive_texts = {texts[d] for d in positives}
        others = [
            d
            for d in rank_documents(run[query_id])[: args.candidates]
            if d not in positives and texts[d] not in positive_texts
        ]
        if others:
            candidates[query_id] = (positives[0], others)
    owners = [(q, d) for q, (positive, others) in candidates.items() for d in [positive, *others]]
    pairs = [(queries[q], texts[d]) for q, d in owners]
    per_teacher: list[dict[tuple[str, str], float]] = []
    for folder in args.teacher:
        teacher = load_model(folder, "auto", options={"device": args.device})
        if hasattr(teacher, "enable_document_cache"):  # late interaction: each document encoded once
            teacher.enable_document_cache()
        start = time.perf_counter()
        scores = teacher.compute_score(pairs, show_progress_bar=True)
        print(f"teacher {folder}: {len(pairs)} pairs scored in {time.perf_counter() - start:.0f}s")
        raw = dict(zip(owners, scores, strict=True))
        if len(args.teacher) == 1:
            per_teacher.append(raw)
            continue
        normalised: dict[tuple[str, str], float] = {}
        for q, (positive, others) in candidates.items():
            group = [positive, *others]
            normalised.update(
                zip([(q, d) for d in group], standardise_scores([raw[(q, d)] for d in group]), strict=True)
            )
        per_teacher.append(normalised)
    records: list[dict[str, Any]] = []
    dropped = 0
    rng = random.Random(args.seed)
    for q, (positive, others) in candidates.items():
        score = {d: statistics.fmean(t[(q, d)] for t in per_teacher) for d in [positive, *others]}
        kept = [d for d in others if score[d] < score[positive] - args.false_negative_margin]
        dropped += len(others) - len(kept)
        kept.sort(key=lambda d: -score[d])
        if len(kept) < args.group_size - 1:
            continue  # too few negatives left for a full group
        for _ in range(args.groups_per_query):
            negatives = choose_negatives(kept, args.group_size - 1, args.negatives, rng)
            records.append(
                {
                    "query": queries[q],
                    "positive": [texts[positive]],
                    "negative": [texts[d] for d in negatives],
                    "positive_scores": [score[positive]],
                    "negative_scores": [score[d] for d in negatives],
                }
            )
    print(
        f"{len(records)} groups of {args.group_size} ({args.negatives} negatives, {args.groups_per_query} per "
        f"query) from {len(candidates)} train queries; {dropped} candidates dropped as likely false negatives "
        f"(margin {args.false_negative_margin})"
    )
    return records


def choose_negatives(ranked: list[str], count: int, how: str, rng: random.Random) -> list[str]:
    """``count`` of the ``ranked`` negatives (teacher's order, hardest first): the first ``count``
    (``hardest``) or one drawn from each of ``count`` equal slices of the order (``spread``)."""
    if how == "hardest":
        return ranked[:count]
    bounds = [index * len(ranked) // count for index in range(count + 1)]  # increasing: len(ranked) >= count
    return [ranked[rng.randrange(low, high)] for low, high in itertools.pairwise(bounds)]


def checkpointing(args: argparse.Namespace) -> dict[str, Any]:
    """The trainers' save settings: none, or (``--save-steps``) the latest checkpoint kept every N steps."""
    if not args.save_steps:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": args.save_steps, "save_total_limit": 1}


def last_checkpoint(args: argparse.Namespace, folder: Path) -> str | None:
    """With ``--resume``: the latest ``checkpoint-N`` a stopped run left in ``folder`` (None: start afresh)."""
    if not args.resume or not folder.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(str(folder))
    print(
        f"{folder.name}: resuming from {found}" if found else f"{folder.name}: no checkpoint to resume from"
    )
    return found


def train_ours(args: argparse.Namespace, records_path: Path) -> Path:
    from retrievals_rag.training.arguments import (
        RerankerDataArguments,
        RerankerModelArguments,
        RerankerTrainingArguments,
    )
    from retrievals_rag.training.run import train_reranker

    summary = train_reranker(
        RerankerModelArguments(
            kind="cross-encoder",
            model_name_or_path=str(args.base_model) if args.base_model else None,
            max_length=args.max_length,
        ),
        # no holdout: sentence-transformers trains on every group too
        RerankerDataArguments(
            train_data=str(records_path), train_group_size=args.group_size, holdout_fraction=0
        ),
        RerankerTrainingArguments(
            output_dir=str(args.output / "ours"),
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=args.epochs,
            learning_rate=args.learning_rate,
            warmup_steps=0.1,
            logging_steps=10,
            **checkpointing(args),
            report_to="none",
            seed=args.seed,
            loss=args.loss,
            temperature=args.temperature,
            resume_from_checkpoint=last_checkpoint(args, args.output / "ours"),
        ),
    )
    print(summary.describe())
    return Path(summary.output_dir)


def train_sentence_transformers(args: argparse.Namespace, records: list[dict[str, Any]]) -> Path:
    """sentence-transformers' CrossEncoder on the same groups: MarginMSE (or ListNet for kl), same settings."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
        losses,
    )

    model = CrossEncoder(
        str(args.base_model or default_embedding_model_path()),
        num_labels=1,
        max_length=args.max_length,
        device="cpu",
    )
    if args.loss == "kl":
        dataset = Dataset.from_dict(
            {
                "query": [r["query"] for r in records],
                "docs": [r["positive"] + r["negative"] for r in records],
                "labels": [
                    [s / args.temperature for s in r["positive_scores"] + r["negative_scores"]]
                    for r in records
                ],
            }
        )
        loss = losses.ListNetLoss(model)
    else:
        columns: dict[str, list[Any]] = {"query": [r["query"] for r in records]}
        columns["positive"] = [r["positive"][0] for r in records]
        for index in range(args.group_size - 1):
            columns[f"negative_{index + 1}"] = [r["negative"][index] for r in records]
        columns["label"] = [r["positive_scores"] + r["negative_scores"] for r in records]
        dataset = Dataset.from_dict(columns)
        loss = losses.MarginMSELoss(model)
    output = args.output / "sentence-transformers"
    trainer = CrossEncoderTrainer(
        model=model,
        args=CrossEncoderTrainingArguments(
            output_dir=str(output),
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=args.epochs,
            learning_rate=args.learning_rate,
            warmup_steps=0.1,
            logging_steps=10,
            **checkpointing(args),
            report_to="none",
            seed=args.seed,
            use_cpu=True,
        ),
        train_dataset=dataset,
        loss=loss,
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=last_checkpoint(args, output))
    print(f"sentence-transformers CrossEncoder trained in {time.perf_counter() - start:.0f}s")
    model.save_pretrained(str(output))
    return output


def rerank(scorer: Any, run: Run, queries: dict[str, str], texts: dict[str, str], top_k: int) -> Run:
    owners = [(q, d) for q, hits in run.items() for d in rank_documents(hits)[:top_k]]
    scores = scorer([(queries[q], texts[d]) for q, d in owners])
    reranked: Run = {q: {} for q in run}
    for (q, d), score in zip(owners, scores, strict=True):
        reranked[q][d] = float(score)
    return reranked


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder (SciFact)")
    parser.add_argument(
        "--teacher", action="append", required=True, help="teacher folder (repeat: ensemble); required"
    )
    parser.add_argument("--output", type=Path, default=Path("runs/ce-distill"), help="default: %(default)s")
    parser.add_argument(
        "--base-model",
        type=Path,
        default=None,
        help="the students' starting weights, a fresh head on top (default: the packaged MiniLM)",
    )
    parser.add_argument(
        "--embedder",
        type=Path,
        default=None,
        help="the first stage's embedder, for the runs not read from files (default: the packaged MiniLM)",
    )
    parser.add_argument(
        "--dense-run",
        type=Path,
        default=None,
        help="test dense run (JSON), read or written (default: none, computed)",
    )
    parser.add_argument(
        "--train-run",
        type=Path,
        default=None,
        help="train dense run (JSON), read or written (default: none, computed)",
    )
    parser.add_argument(
        "--candidates", type=int, default=100, help="dense candidates per train query (default: %(default)s)"
    )
    parser.add_argument(
        "--group-size", type=int, default=8, help="positive + negatives (default: %(default)s)"
    )
    parser.add_argument(
        "--negatives",
        choices=["spread", "hardest"],
        default="spread",
        help="negatives of a group: spread over the teacher's order, or its hardest (default: %(default)s)",
    )
    parser.add_argument(
        "--groups-per-query",
        type=int,
        default=2,
        help="groups written per train query, each with other negatives (default: %(default)s)",
    )
    parser.add_argument("--false-negative-margin", type=float, default=0.0, help="default: %(default)s")
    parser.add_argument("--loss", choices=["margin_mse", "kl"], default="kl", help="default: %(default)s")
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="kl temperature (default: %(default)s)"
    )
    parser.add_argument(
        "--epochs", type=float, default=2, help="default: %(default)s (SciFact: 0.6541 at 1, 0.6926 at 2)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="queries per step (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=7e-5, help="default: %(default)s")
    parser.add_argument("--max-length", type=int, default=192, help="tokens per pair (default: %(default)s)")
    parser.add_argument(
        "--top-k", type=int, default=100, help="test candidates reranked (default: %(default)s)"
    )
    parser.add_argument(
        "--limit-queries", type=int, default=None, help="first N queries of each split (default: all)"
    )
    parser.add_argument(
        "--max-windows",
        type=int,
        default=1,
        help="windows per test document when our cross-encoder reranks, its score the best window's (default: "
        "%(default)s, the document cut at --max-length as sentence-transformers cuts it; the library's own "
        "default is 8)",
    )
    parser.add_argument(
        "--trainers",
        nargs="+",
        choices=["ours", "sentence-transformers"],
        default=["ours", "sentence-transformers"],
        help="cross-encoders trained on the groups; two processes can run one each (default: both)",
    )
    parser.add_argument(
        "--reuse-groups",
        action="store_true",
        help="read the groups and teacher scores an earlier run wrote into --output (default: off)",
    )
    parser.add_argument(
        "--reuse-models",
        action="store_true",
        help="evaluate the cross-encoders an earlier run saved in --output instead of training them (default: off)",
    )
    parser.add_argument(
        "--save-steps",
        type=int,
        default=0,
        help="keep the latest checkpoint of each trainer every N steps, for --resume (default: 0, none)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue each trainer from the latest checkpoint a stopped run with --save-steps left in --output "
        "(the same settings; default: off)",
    )
    parser.add_argument(
        "--interpolation-weight",
        type=float,
        default=0.5,
        help="also report each reranker's standardised scores mixed with the dense ones at this reranker weight "
        "(interpolate_runs; fixed in advance, not tuned on test; default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=42, help="default: %(default)s")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)

    train, test = load_beir(args.data, "train"), load_beir(args.data, "test")
    texts = {d: (doc.title + " " + doc.text).strip() for d, doc in test.corpus.items()}
    train_queries, test_queries = judged(train, args.limit_queries), judged(test, args.limit_queries)
    encoder = AutoModelForEmbedding.from_pretrained(
        args.embedder or default_embedding_model_path(), device=args.device
    )
    test_run = dense_run(args.dense_run, test, test_queries, args.top_k, encoder)
    train_run = dense_run(args.train_run, train, train_queries, args.candidates, encoder)
    records_path = args.output / "teacher_groups.jsonl"
    if args.reuse_groups and records_path.is_file():  # the teacher's scores of an earlier run, same settings
        lines = records_path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        print(f"{len(records)} groups read from {records_path} (the teacher is not run again)")
    else:
        records = teacher_groups(args, train, train_queries, train_run, texts)
        write_jsonl(records, records_path)

    qrels = {q: test.qrels[q] for q in test_queries}
    k_values = [1, 10, 100]
    results = {"dense (first stage)": evaluate_run(qrels, test_run, k_values=k_values)}
    for trainer in args.trainers:
        windows = args.max_windows if trainer == "ours" else 1
        name = trainer if windows == 1 else f"{trainer}-{windows}-windows"
        label = (
            f"cross-encoder ({trainer})" if windows == 1 else f"cross-encoder ({trainer}, {windows} windows)"
        )
        folder = args.output / trainer
        if not (args.reuse_models and (folder / "config.json").is_file()):
            folder = (
                train_ours(args, records_path)
                if trainer == "ours"
                else train_sentence_transformers(args, records)
            )
        start = time.perf_counter()
        reranked = rerank(scorer(trainer, folder, windows), test_run, test_queries, texts, args.top_k)
        print(f"{name}: the test candidates reranked in {time.perf_counter() - start:.0f}s")
        (args.output / f"test-run-{name}.json").write_text(json.dumps(reranked) + "\n", encoding="utf-8")
        results[label] = evaluate_run(qrels, reranked, k_values=k_values)
        weight = args.interpolation_weight
        if weight is not None:  # the reranker's standardised scores mixed with the first stage's
            mixed = interpolate_runs(test_run, reranked, weight)
            results[f"{label} + dense, weight {weight:g}"] = evaluate_run(qrels, mixed, k_values=k_values)
    print(f"\n{args.data.name} test: {len(test_queries)} queries, first stage dense top-{args.top_k}")
    width = max(len(label) for label in results) + 2
    print(f"{'':<{width}}" + "".join(f"{name:>12}" for name in SHOWN))
    for label, metrics in results.items():
        print(f"{label:<{width}}" + "".join(f"{metrics[name]:>12.4f}" for name in SHOWN))
    suffix = "" if args.max_windows == 1 or "ours" not in args.trainers else f"-{args.max_windows}-windows"
    (args.output / f"results-{'-'.join(args.trainers)}{suffix}.json").write_text(
        json.dumps({"arguments": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    return results


def scorer(trainer: str, folder: Path, max_windows: int = 1) -> Any:
    """The trained cross-encoder as ``pairs -> scores``: ours (reading ``max_windows`` windows of a long
    document), or sentence-transformers' ``CrossEncoder``."""
    if trainer == "sentence-transformers":
        import torch
        from sentence_transformers.cross_encoder import CrossEncoder

        st_model = CrossEncoder(str(folder), device="cpu")
        # raw logits, as ours gives them: predict's default sigmoid keeps the order but squeezes the scores that
        # interpolate_runs standardises, which made the mixed rows unequal (ours mixed its logits)
        identity = torch.nn.Identity()
        return lambda pairs: st_model.predict(
            pairs, batch_size=64, show_progress_bar=True, activation_fn=identity
        ).tolist()
    from retrievals_rag import AutoModelForRanking

    model = AutoModelForRanking.from_pretrained(folder, max_windows=max_windows)
    return lambda pairs: model.compute_score(pairs, show_progress_bar=True)


if __name__ == "__main__":
    main()
