"""``retrievals-rag train embedding|reranker ...``: fine-tuning driven by the argument dataclasses.

``embedding`` takes the fields of ``EmbeddingModelArguments``, ``RetrievalDataArguments`` and
``RetrievalTrainingArguments``; ``reranker`` those of ``RerankerModelArguments`` (``--kind cross-encoder|llm|colbert``),
``RerankerDataArguments`` and ``RerankerTrainingArguments`` (``--loss listwise|bce|kl|margin_mse|infonce``, as the
kind allows). Every ``transformers.TrainingArguments`` option works too, in HF style:
``--train_data triplets.jsonl --output_dir out --num_train_epochs 1``. A single ``.json`` / ``.yaml`` file of
them works too. Runs unchanged under ``torchrun`` and ``accelerate launch`` (without a GPU the processes train
together over gloo)::

    torchrun --nproc_per_node 2 -m retrievals_rag.cli.main train embedding --train_data ... --output_dir ...
    retrievals-rag train reranker --kind colbert --train_data triplets.jsonl --output_dir runs/colbert

Every run ends with a verdict: the starting model and the trained one evaluated on ``--eval_data`` (a BEIR folder;
rerankers reorder its first stage's top-k: ``--first_stage`` run file or embedder folder, default the packaged
MiniLM) or, without it, on held-out training queries (``--holdout_fraction``), printed side by side, written to
``verdict.json`` in the output folder, with a one-sentence warning when training made the model worse.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a model (embedding, reranker)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", choices=["embedding", "reranker"], help="what to train")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="training options (--help after the task)")
    parser.set_defaults(handler=run)


def _task(task: str) -> tuple[tuple[Any, Any, Any], Any]:
    """The argument dataclasses of ``task`` and its training function."""
    from retrievals_rag.training import arguments, run

    if task == "reranker":
        return (
            arguments.RerankerModelArguments,
            arguments.RerankerDataArguments,
            arguments.RerankerTrainingArguments,
        ), run.train_reranker
    return (
        arguments.EmbeddingModelArguments,
        arguments.RetrievalDataArguments,
        arguments.RetrievalTrainingArguments,
    ), run.train_embedding


def training_parser(task: str) -> Any:
    """The parser of ``train TASK``'s options (a transformers ``HfArgumentParser`` over the task's arguments)."""
    from transformers import HfArgumentParser

    from retrievals_rag.cli.common import TrainingHelpFormatter

    classes, _ = _task(task)
    return HfArgumentParser(
        classes, prog=f"retrievals-rag train {task}", formatter_class=TrainingHelpFormatter
    )


def run(args: argparse.Namespace) -> int:
    _, train = _task(args.task)
    parser = training_parser(args.task)
    options = list(args.options)
    if len(options) == 1 and options[0].endswith((".json", ".yaml", ".yml")):
        loader = parser.parse_json_file if options[0].endswith(".json") else parser.parse_yaml_file
        model_args, data_args, training_args = loader(options[0])
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=options)
    summary = train(model_args, data_args, training_args)
    if training_args.process_index == 0:
        print(summary.describe(), file=sys.stderr)
    return 0
