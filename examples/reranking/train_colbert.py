"""Fine-tune a ColBERT late-interaction model (default: the packaged all-MiniLM-L6-v2 with a fresh 128-d
projection) with in-batch and hard negatives, or by distilling a cross-encoder's scores.

    python examples/reranking/train_colbert.py --train_data triplets.jsonl --output_dir runs/colbert \\
        --train_group_size 4 --per_device_train_batch_size 32 --num_train_epochs 1

The default loss, infonce, scores every query against every document of the batch by MaxSim, its own positive
the target (`--use_inbatch_negatives false` keeps only its group). To distil a cross-encoder, give records
with its scores of every passage, {"query", "positive", "negative", "positive_scores", "negative_scores"}, and
`--loss kl` (or `--loss margin_mse`); the scores can be made with

    teacher = AutoModelForRanking.from_pretrained("runs/cross-encoder")
    record["positive_scores"] = teacher.compute_score([(record["query"], p) for p in record["positive"]])
    record["negative_scores"] = teacher.compute_score([(record["query"], n) for n in record["negative"]])

The markers, query augmentation, lengths and projection are saved with the model: ColBERT.from_pretrained on
the output folder scores exactly as training did.
"""

from __future__ import annotations

import sys

from transformers import HfArgumentParser

from retrievals_rag.training.arguments import (
    RerankerDataArguments,
    RerankerModelArguments,
    RerankerTrainingArguments,
)
from retrievals_rag.training.run import train_reranker

# Set as the parser's defaults, so that --help shows them and the command line overrides them.
DEFAULTS = {"kind": "colbert", "train_group_size": 4, "learning_rate": 2e-5, "warmup_steps": 0.1}


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser((RerankerModelArguments, RerankerDataArguments, RerankerTrainingArguments))
    parser.set_defaults(**DEFAULTS)
    arguments = list(sys.argv[1:] if argv is None else argv)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=arguments)
    summary = train_reranker(model_args, data_args, training_args)
    print(summary.describe(), file=sys.stderr)


if __name__ == "__main__":
    main()
