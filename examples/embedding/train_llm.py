"""Fine-tune a decoder LLM (Llama / Qwen2 / Mistral shape) as an embedder with LoRA, last-token pooling and
an instruction on the queries, as in the reference library's LLM recipe.

    python examples/embedding/train_llm.py --model_name_or_path path/to/llm --train_data triplets.jsonl \\
        --output_dir runs/llm-embedder --train_group_size 4 --per_device_train_batch_size 8 \\
        --num_train_epochs 1 --learning_rate 1e-3 --gradient_checkpointing true

The learning rate matters more than anything else here: on SciFact, SmolLM2-135M with LoRA r 16 and last-token
pooling collapsed to one vector at 2e-5 to 3e-4 and learned at 1e-3 (nDCG@10 0.0000 -> 0.5841 in 51 steps; see
``examples/scifact/smollm2.py`` and the README). Watch the loss: one that stays at ln(batch x group) for the whole
run is that collapse.

Defaults set here (each can be overridden on the command line): LoRA r=16 on every linear layer, last-token
pooling (the tokenizer is made to append EOS, which is the pooled token), the query instruction below, no
document instruction, and bf16 where the GPU supports it. The output folder holds the adapter; load it with

    AutoModelForEmbedding.from_pretrained("runs/llm-embedder")                    # base + adapter
    AutoModelForEmbedding.from_pretrained("runs/llm-embedder", merge_lora=True)   # adapter folded in

and the instruction comes back with it, so queries are encoded exactly as they were trained.
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

QUERY_INSTRUCTION = (
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
)
# Set as the parser's defaults, so that --help shows them and the command line overrides them.
DEFAULTS = {
    "use_lora": True,
    "pooling_method": "last",
    "query_instruction": QUERY_INSTRUCTION,
    "document_instruction": "",
    "temperature": 0.02,
}


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser((EmbeddingModelArguments, RetrievalDataArguments, RetrievalTrainingArguments))
    parser.set_defaults(**DEFAULTS)
    arguments = list(sys.argv[1:] if argv is None else argv)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=arguments)
    if not model_args.model_name_or_path:
        raise SystemExit("error: --model_name_or_path is required (a local decoder LLM folder)")
    summary = train_embedding(model_args, data_args, training_args)
    print(summary.describe(), file=sys.stderr)


if __name__ == "__main__":
    main()
