"""Fine-tune an encoder embedder (default: the packaged all-MiniLM-L6-v2) on pair or triplet jsonl.

    python examples/embedding/train_pairwise.py --train_data triplets.jsonl --output_dir runs/pairwise \\
        --train_group_size 4 --num_train_epochs 1 --per_device_train_batch_size 32 --learning_rate 2e-5

Records: {"query": str, "positive": [str, ...]} (in-batch negatives) or with "negative": [str, ...] (hard
negatives; make some with `retrievals-rag mine`). Every option of `retrievals-rag train embedding` works here
(they are the same dataclasses); add --eval_data BEIR_FOLDER to print nDCG@10 after training. The saved folder
loads with AutoModelForEmbedding.from_pretrained and with SentenceTransformer alike.
"""

from __future__ import annotations

import sys

from transformers import HfArgumentParser

from retrievals_rag.training.arguments import (
    EmbeddingModelArguments,
    RetrievalDataArguments,
    RetrievalTrainingArguments,
)
from retrievals_rag.training.run import train_embedding


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser((EmbeddingModelArguments, RetrievalDataArguments, RetrievalTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    summary = train_embedding(model_args, data_args, training_args)
    print(summary.describe(), file=sys.stderr)


if __name__ == "__main__":
    main()
