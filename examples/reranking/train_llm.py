"""Fine-tune a decoder LLM (Llama / Qwen2 / Gemma shape) as a reranker with LoRA: the logit of 'Yes' after a
relevance prompt is the score, trained listwise over each query's positive and hard negatives (the recipe of
bge-reranker-v2-gemma).

    python examples/reranking/train_llm.py --model_name_or_path path/to/llm --train_data triplets.jsonl \\
        --output_dir runs/llm-reranker --train_group_size 8 --per_device_train_batch_size 4 \\
        --num_train_epochs 1 --activation_checkpointing true

Defaults set here (each can be overridden on the command line): LoRA r=16 on every linear layer but the LM
head, learning rate 1e-4, bf16 where the GPU supports it, and the model's input layout
"A: {query}\\nB: {document}\\n{prompt}" (`--prompt`, `--query_instruction`, `--document_instruction`,
`--target_token` change it; all are saved with the adapter). The output folder holds the adapter; load it with

    AutoModelForRanking.from_pretrained("runs/llm-reranker")                    # base + adapter
    AutoModelForRanking.from_pretrained("runs/llm-reranker", merge_lora=True)   # adapter folded in
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
DEFAULTS = {"kind": "llm", "use_lora": True, "learning_rate": 1e-4, "warmup_steps": 0.1}


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser((RerankerModelArguments, RerankerDataArguments, RerankerTrainingArguments))
    parser.set_defaults(**DEFAULTS)
    arguments = list(sys.argv[1:] if argv is None else argv)
    given, _ = parser.parse_known_args(arguments)  # --help exits here, with the defaults above
    if given.model_name_or_path is None:  # the dataclass would refuse it with a less helpful message
        raise SystemExit("error: --model_name_or_path is required (a local decoder LLM folder)")
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=arguments)
    summary = train_reranker(model_args, data_args, training_args)
    print(summary.describe(), file=sys.stderr)


if __name__ == "__main__":
    main()
