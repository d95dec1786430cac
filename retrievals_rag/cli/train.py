"""``retrievals-rag train embedding ...``: fine-tuning driven by the argument dataclasses.

Options are the fields of ``EmbeddingModelArguments``, ``RetrievalDataArguments`` and
``RetrievalTrainingArguments`` (every ``transformers.TrainingArguments`` option included), in HF style:
``--train_data triplets.jsonl --output_dir out --num_train_epochs 1``. A single ``.json`` / ``.yaml`` file of
them works too. Runs unchanged under ``torchrun`` and ``accelerate launch``::

    torchrun --nproc_per_node 2 -m retrievals_rag.cli.main train embedding --train_data ... --output_dir ...
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a model (embedding)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", choices=["embedding"], help="what to train")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="training options (--help after the task)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from transformers import HfArgumentParser

    from retrievals_rag.training.arguments import (
        EmbeddingModelArguments,
        RetrievalDataArguments,
        RetrievalTrainingArguments,
    )
    from retrievals_rag.training.run import train_embedding

    parser = HfArgumentParser(
        (EmbeddingModelArguments, RetrievalDataArguments, RetrievalTrainingArguments),
        prog=f"retrievals-rag train {args.task}",
    )
    options = list(args.options)
    if len(options) == 1 and options[0].endswith((".json", ".yaml", ".yml")):
        loader = parser.parse_json_file if options[0].endswith(".json") else parser.parse_yaml_file
        model_args, data_args, training_args = loader(options[0])
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=options)
    summary = train_embedding(model_args, data_args, training_args)
    if training_args.process_index == 0:
        print(summary.describe(), file=sys.stderr)
    return 0
