"""The GPU suite: ours against sentence-transformers in one process, every figure in one JSON and one table.

Five measurements, each ours and sentence-transformers' on the same weights and inputs, alternating rounds:

1. ``encode_bert_base``: a BERT-base-shape embedder (768 wide, 12 layers; random weights from a config, with
   MiniLM's tokenizer), documents/s in float16 and bfloat16.
2. ``encode_minilm``: the packaged all-MiniLM-L6-v2, documents/s in float16 and bfloat16.
3. ``cross_encoder_bert_base``: a BERT-base-shape cross-encoder, 100 queries x 100 documents, pairs/s
   (``compute_score`` against ``CrossEncoder.predict``), float16.
4. ``train_bi_encoder``: MiniLM trained with in-batch negatives in bfloat16 (our RetrievalTrainer + InfoNCE
   against SentenceTransformerTrainer + MultipleNegativesRankingLoss), pairs/s.
5. ``llm_embedder``: a Qwen2-1.5B-shape decoder (random weights from a config, last-token pooling), encode
   documents/s in bfloat16, and one LoRA training step (InfoNCE over in-batch negatives) in seconds, ours against
   sentence-transformers with the same peft adapter.

``--reduced`` runs every measurement with tiny shapes (a 2-layer, 32-wide encoder; a 2-layer, 64-wide decoder;
a few documents) on whatever device there is, so CI checks on a CPU that the suite runs; its figures mean
nothing. The full suite takes under 8 minutes on one H200. Nothing is downloaded: every model is built here from a
config or is the packaged MiniLM.

    bash examples/benchmarks/gpu_suite.sh                      # full suite, writes gpu_suite.json
    python examples/benchmarks/gpu_suite.py --reduced --output /tmp/suite.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHAPES = {
    "full": {
        "encoder": {
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
        },
        "decoder": {
            "hidden_size": 1536,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "intermediate_size": 8960,
            "vocab_size": 151_936,
        },
        "documents": 4_000,
        "llm_documents": 1_000,
        "queries": 100,
        "candidates": 100,
        "train_steps": 30,
        "train_batch": 64,
        "lora_batch": 16,
        "rounds": 2,
    },
    "reduced": {
        "encoder": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        "decoder": {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 128,
            "vocab_size": 30_522,
        },
        "documents": 48,
        "llm_documents": 16,
        "queries": 4,
        "candidates": 8,
        "train_steps": 2,
        "train_batch": 8,
        "lora_batch": 4,
        "rounds": 1,
    },
}


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(
    sides: dict[str, Callable[[], Any]], rounds: int, device: Any
) -> tuple[dict[str, float], dict[str, Any]]:
    """Median seconds of each side over ``rounds`` (order rotated each round) and each side's first output."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    outputs: dict[str, Any] = {}
    names = list(sides)
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            synchronize(device)
            start = time.perf_counter()
            output = sides[name]()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
            outputs.setdefault(name, output)
    return {name: statistics.median(values) for name, values in seconds.items()}, outputs


def max_difference(first: Any, second: Any) -> float:
    import numpy as np

    return float(np.abs(np.asarray(first, np.float32) - np.asarray(second, np.float32)).max())


def load_texts(data: Path) -> tuple[list[str], list[str]]:
    from retrievals_rag.evaluation.beir import document_text, load_corpus, load_queries

    documents = [document_text(document) for document in load_corpus(data / "corpus.jsonl").values()]
    queries = list(load_queries(data / "queries.jsonl").values())
    return documents, queries


def repeat_to(items: list[str], count: int) -> list[str]:
    return [items[index % len(items)] for index in range(count)]


def build_encoder(folder: Path, shape: dict[str, int], tokenizer_source: Path) -> Path:
    """A random BERT of ``shape`` with MiniLM's tokenizer, saved as a sentence-transformers-free folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=512, **shape)
    BertModel(config).save_pretrained(folder)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    return folder


def build_decoder(folder: Path, shape: dict[str, int], tokenizer_source: Path, device: Any) -> Path:
    """A random Qwen2 of ``shape`` (bfloat16) with MiniLM's tokenizer, [SEP] as its EOS (pooled as the last token)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    tokenizer.eos_token = tokenizer.sep_token  # the BERT tokenizer ends every text with [SEP]
    config = Qwen2Config(
        max_position_embeddings=4096,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **shape,
    )
    with torch.device(device):
        model = Qwen2Model(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    del model
    return folder


def st_encoder(folder: Path, device: Any, dtype: Any, pooling: str, max_length: int) -> Any:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    transformer = Transformer(str(folder), max_seq_length=max_length)
    modules = [transformer, Pooling(transformer.get_word_embedding_dimension(), pooling), Normalize()]
    return SentenceTransformer(modules=modules, device=str(device)).to(dtype)


def encode_row(
    folder: Path, documents: list[str], device: Any, dtype: str, rounds: int, st_pooling: str
) -> dict:
    """Ours against sentence-transformers encoding ``documents`` in ``dtype``: docs/s and max |difference|."""
    import torch
    from sentence_transformers import SentenceTransformer

    from retrievals_rag import AutoModelForEmbedding

    ours = AutoModelForEmbedding.from_pretrained(folder, device=device, dtype=dtype)
    if (Path(folder) / "modules.json").is_file():
        theirs = SentenceTransformer(str(folder), device=str(device)).to(getattr(torch, dtype))
    else:
        theirs = st_encoder(folder, device, getattr(torch, dtype), st_pooling, ours.max_length)
    ours.encode(documents[:64], show_progress_bar=False)
    theirs.encode(documents[:64])
    seconds, outputs = alternate(
        {
            "ours": lambda: ours.encode(documents, show_progress_bar=False),
            "sentence_transformers": lambda: theirs.encode(documents, batch_size=64, convert_to_numpy=True),
        },
        rounds,
        device,
    )
    return {
        "unit": "docs/s",
        "ours": len(documents) / seconds["ours"],
        "sentence_transformers": len(documents) / seconds["sentence_transformers"],
        "max_difference": max_difference(outputs["ours"], outputs["sentence_transformers"]),
    }


def bench_encode(
    folder: Path, documents: list[str], device: Any, dtypes: list[str], rounds: int, st_pooling: str
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for dtype in dtypes:
        results[dtype] = encode_row(folder, documents, device, dtype, rounds, st_pooling)
        empty_cache(device)
    return results


def bench_cross_encoder(
    folder: Path, queries: list[str], documents: list[str], shape: dict[str, Any], device: Any, rounds: int
) -> dict[str, Any]:
    import random

    import torch
    from sentence_transformers import CrossEncoder

    from retrievals_rag import AutoModelForRanking

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fresh classification head
        built = AutoModelForRanking.from_pretrained(folder, device="cpu", max_length=512)
    built.save_pretrained(folder.with_name("cross-encoder"))
    ranker_folder = folder.with_name("cross-encoder")
    generator = random.Random(0)
    pairs = [
        (query, document)
        for query in queries[: shape["queries"]]
        for document in generator.sample(documents, shape["candidates"])
    ]
    ours = AutoModelForRanking.from_pretrained(ranker_folder, device=device, dtype="float16", max_windows=1)
    theirs = CrossEncoder(str(ranker_folder), device=str(device))
    theirs.model.to(torch.float16)
    ours.compute_score(pairs[:64])
    theirs.predict(pairs[:64])
    seconds, outputs = alternate(
        {
            "ours": lambda: ours.compute_score(pairs),
            "sentence_transformers": lambda: theirs.predict(pairs, batch_size=64, convert_to_numpy=True),
        },
        rounds,
        device,
    )
    return {
        "float16": {
            "unit": "pairs/s",
            "ours": len(pairs) / seconds["ours"],
            "sentence_transformers": len(pairs) / seconds["sentence_transformers"],
            "max_difference": max_difference(outputs["ours"], outputs["sentence_transformers"]),
        }
    }


def bench_training(data: Path, shape: dict[str, Any], device: Any, rounds: int) -> dict[str, Any]:
    import bench_train  # examples/benchmarks/bench_train.py: the same two trainers, one definition
    import torch

    from retrievals_rag.models.loading import default_embedding_model_path

    gpu_bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())  # both trainers alike
    options = argparse.Namespace(
        batch_size=shape["train_batch"], steps=shape["train_steps"], max_length=256, bf16=gpu_bf16
    )
    from retrievals_rag.evaluation.beir import load_beir

    split = "train" if (data / "qrels" / "train.tsv").is_file() else "test"
    judged = sum(any(grade > 0 for grade in row.values()) for row in load_beir(data, split).qrels.values())
    needed = options.batch_size * options.steps
    pairs = bench_train.load_pairs(data, split, min(needed, judged))
    pairs = [pairs[index % len(pairs)] for index in range(needed)]  # repeated where the split has fewer
    model = str(default_embedding_model_path())
    trainers = {"ours": bench_train.train_ours, "sentence_transformers": bench_train.train_theirs}
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(rounds):
            order = list(trainers)[::-1] if round_index % 2 else list(trainers)
            for name in order:  # each returns its trainer.train() wall time (loading excluded)
                seconds[name].append(trainers[name](model, pairs, options, f"{scratch}/{name}{round_index}"))
    return {
        "bfloat16" if device.type == "cuda" else "float32": {
            "unit": "pairs/s",
            **{name: len(pairs) / statistics.median(values) for name, values in seconds.items()},
        }
    }


def lora_step_seconds(
    encode_batch: Callable[[list[str]], Any], parameters: list[Any], pairs: list, steps: int
) -> float:
    """Median seconds of one InfoNCE step (queries and documents encoded with gradients, backward, AdamW)."""
    import torch

    optimizer = torch.optim.AdamW([p for p in parameters if p.requires_grad], lr=1e-4)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        queries = encode_batch([query for query, _ in pairs])
        documents = encode_batch([document for _, document in pairs])
        logits = queries.float() @ documents.float().T / 0.05  # (batch, batch)
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(pairs), device=logits.device))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def lora_ours(folder: Path, pairs: list, device: Any, steps: int) -> float:
    from retrievals_rag import AutoModelForEmbedding
    from retrievals_rag.models.lora import LoraSettings

    ours = AutoModelForEmbedding.from_pretrained(folder, device=device, dtype="bfloat16", max_length=256)
    ours.enable_lora(LoraSettings(r=16, alpha=32, dropout=0.0))
    ours.train()

    def batch(texts: list[str]) -> Any:
        features = {name: value.to(device) for name, value in ours.tokenize(texts).items()}
        return ours(**features)

    return lora_step_seconds(batch, list(ours.parameters()), pairs, steps)


def lora_theirs(folder: Path, pairs: list, device: Any, steps: int) -> float:
    import torch
    from peft import LoraConfig, get_peft_model

    theirs = st_encoder(folder, device, torch.bfloat16, "lasttoken", 256)
    target = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    # peft directly on its transformer (its add_adapter needs a newer peft than transformers 5 pins here)
    transformer = theirs[0]
    transformer.auto_model = get_peft_model(
        transformer.auto_model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=target)
    )
    theirs.train()

    def batch(texts: list[str]) -> Any:
        features = {  # its tokenize also returns non-tensor entries
            name: value.to(device) for name, value in theirs.tokenize(texts).items() if hasattr(value, "to")
        }
        return theirs(features)["sentence_embedding"]

    return lora_step_seconds(batch, list(theirs.parameters()), pairs, steps)


def bench_llm(
    folder: Path, documents: list[str], queries: list[str], shape: dict[str, Any], device: Any
) -> dict:
    texts = documents[: shape["llm_documents"]]
    encode = bench_encode(folder, texts, device, ["bfloat16"], shape["rounds"], "lasttoken")
    pairs = list(zip(queries, documents, strict=False))[: shape["lora_batch"]]
    steps = max(2, shape["rounds"])
    ours_seconds = lora_ours(folder, pairs, device, steps)
    empty_cache(device)
    theirs_seconds = lora_theirs(folder, pairs, device, steps)
    empty_cache(device)
    return {
        "encode_bfloat16": encode["bfloat16"],
        "lora_step": {
            "unit": "steps/s",
            "batch": len(pairs),
            "ours": 1 / ours_seconds,
            "sentence_transformers": 1 / theirs_seconds,
        },
    }


def empty_cache(device: Any) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def table(results: dict[str, Any]) -> str:
    lines = [f"{'measurement':42s} {'ours':>10s} {'sent.-tr.':>10s} {'ratio':>7s} {'max|diff|':>10s}  unit"]
    for section, entries in results["sections"].items():
        if "error" in entries:
            lines.append(f"{section:42s} failed: {entries['error'].splitlines()[-1][:90]}")
            continue
        for variant, row in entries.items():
            ratio = row["ours"] / row["sentence_transformers"]
            difference = f"{row['max_difference']:.1e}" if "max_difference" in row else "-"
            lines.append(
                f"{section + ' ' + variant:42s} {row['ours']:10.1f} {row['sentence_transformers']:10.1f} "
                f"{ratio:6.2f}x {difference:>10s}  {row['unit']}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reduced", action="store_true", help="tiny shapes (runs on a CPU, for CI; default: the full suite)"
    )
    parser.add_argument("--output", type=Path, default=Path("gpu_suite.json"), help="default: gpu_suite.json")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="BEIR folder (default: ../shared/data/scifact, else the test subset)",
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="run these sections only (names as in the JSON; default: all)"
    )
    args = parser.parse_args(argv)

    import torch

    from retrievals_rag.models.loading import default_embedding_model_path, resolve_device

    device = resolve_device(args.device)
    shape = SHAPES["reduced" if args.reduced else "full"]
    data = args.data or next(
        path
        for path in (REPO.parent / "shared" / "data" / "scifact", REPO / "tests" / "data" / "scifact_subset")
        if (path / "corpus.jsonl").is_file()
    )
    documents, queries = load_texts(data)
    documents = repeat_to(documents, max(shape["documents"], shape["candidates"]))
    queries = repeat_to(queries, shape["queries"])
    half = ["float16", "bfloat16"] if device.type == "cuda" else ["float32"]
    minilm = default_embedding_model_path()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": "reduced" if args.reduced else "full",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}",
        "data": str(data),
        "versions": {"torch": torch.__version__},
        "sections": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        sections: dict[str, Callable[[], dict[str, Any]]] = {
            "encode_bert_base": lambda: bench_encode(
                build_encoder(root / "bert-base", shape["encoder"], minilm),
                documents[: shape["documents"]],
                device,
                half,
                shape["rounds"],
                "mean",
            ),
            "encode_minilm": lambda: bench_encode(
                minilm, documents[: shape["documents"]], device, half, shape["rounds"], "mean"
            ),
            "cross_encoder_bert_base": lambda: bench_cross_encoder(
                root / "bert-base"
                if (root / "bert-base").is_dir()
                else build_encoder(root / "bert-base", shape["encoder"], minilm),
                queries,
                documents,
                shape,
                device,
                shape["rounds"],
            ),
            "train_bi_encoder": lambda: bench_training(data, shape, device, shape["rounds"]),
            "llm_embedder": lambda: bench_llm(
                build_decoder(root / "qwen2", shape["decoder"], minilm, device),
                documents,
                queries,
                shape,
                device,
            ),
        }
        for name, run in sections.items():
            if args.only and name not in args.only:
                continue
            section_start = time.perf_counter()
            try:
                results["sections"][name] = run()
            except Exception:
                results["sections"][name] = {"error": traceback.format_exc()}
            print(f"{name}: {time.perf_counter() - section_start:.0f}s", file=sys.stderr, flush=True)
            empty_cache(device)
    results["seconds"] = time.perf_counter() - started
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{results['mode']} suite on {results['device']} in {results['seconds']:.0f}s\n{table(results)}")
    print(f"wrote {args.output}", file=sys.stderr)
    failed = [name for name, entries in results["sections"].items() if "error" in entries]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
