"""Fine-tune a cross-encoder reranker (default: the packaged all-MiniLM-L6-v2 with a fresh head) on triplet jsonl.

    python examples/reranking/train_cross_encoder.py --train_data triplets.jsonl --output_dir runs/cross-encoder \\
        --train_group_size 8 --per_device_train_batch_size 16 --num_train_epochs 1 --learning_rate 2e-5

Records: {"query": str, "positive": [str, ...], "negative": [str, ...]} (make hard negatives with
`retrievals-rag mine`). The default loss is listwise: each query's positive against its train_group_size - 1
hard negatives. `--loss bce` trains pointwise (also on scored pairs {"query", "document", "label"}), and
`--loss kl` / `--loss margin_mse` distil a teacher's "positive_scores" / "negative_scores". Every option of
`retrievals-rag train reranker` works here (they are the same dataclasses). The saved folder loads with
AutoModelForRanking.from_pretrained and with sentence_transformers.CrossEncoder, with the same scores.
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
DEFAULTS = {"kind": "cross-encoder", "learning_rate": 2e-5, "warmup_steps": 0.1}


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser((RerankerModelArguments, RerankerDataArguments, RerankerTrainingArguments))
    parser.set_defaults(**DEFAULTS)
    arguments = list(sys.argv[1:] if argv is None else argv)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=arguments)
    summary = train_reranker(model_args, data_args, training_args)
    print(summary.describe(), file=sys.stderr)


if __name__ == "__main__":
    main()
