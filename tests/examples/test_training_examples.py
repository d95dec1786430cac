"""The training examples run, end to end, on tiny models (a few steps)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from retrievals_rag import AutoModelForEmbedding

from ..conftest import REPO_ROOT
from ..training.conftest import make_records


def _example(name: str):  # -> module
    path = REPO_ROOT / "examples" / "embedding" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in make_records(8)) + "\n")
    return path


COMMON = [
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "4",
    "--use_cpu",
    "true",
    "--report_to",
    "none",
]


def test_train_pairwise_example(tiny_bert_path: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    _example("train_pairwise").main(
        ["--model_name_or_path", str(tiny_bert_path), "--train_data", str(_data(tmp_path)), "--output_dir", str(output),
         "--train_group_size", "2", *COMMON]
    )  # fmt: skip
    assert AutoModelForEmbedding.from_pretrained(output).encode(["cell"]).shape == (1, 32)


def test_train_llm_example_saves_an_adapter_with_the_instruction(
    tiny_llama_path: Path, tmp_path: Path
) -> None:
    module = _example("train_llm")
    output = tmp_path / "out"
    module.main(
        ["--model_name_or_path", str(tiny_llama_path), "--train_data", str(_data(tmp_path)), "--output_dir", str(output),
         "--lora_r", "4", *COMMON]
    )  # fmt: skip
    assert (output / "adapter_config.json").is_file()
    loaded = AutoModelForEmbedding.from_pretrained(output)
    assert loaded.has_lora
    assert loaded.query_instruction == module.QUERY_INSTRUCTION
    assert loaded.pooling_method == "last"
    assert loaded.encode_queries(["what is a cell"]).shape == (1, 32)
