"""The argument dataclasses: LoRA options declared once, kinds from the model registry, defaults that suit
short runs and multi-process launches."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from retrievals_rag.models.lora import LoraSettings
from retrievals_rag.training.arguments import (
    RERANKER_LOSSES,
    EmbeddingModelArguments,
    LoraArguments,
    RerankerModelArguments,
    RerankerTrainingArguments,
    RetrievalDataArguments,
    RetrievalTrainingArguments,
)


def test_lora_options_are_declared_once_and_map_onto_lora_settings() -> None:
    lora_fields = {field.name for field in fields(LoraArguments)}
    for arguments in (EmbeddingModelArguments, RerankerModelArguments):
        assert issubclass(arguments, LoraArguments)
        # the same field objects, inherited, not declared again
        assert {f.name for f in fields(arguments) if f.name in lora_fields} == lora_fields
        assert all(
            arguments.__dataclass_fields__[name] is LoraArguments.__dataclass_fields__[name]
            for name in lora_fields
        )
    options = {
        "use_lora": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "lora_target_modules": ["q_proj"],
    }
    expected = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj",))
    assert EmbeddingModelArguments(**options).lora_settings() == expected
    assert RerankerModelArguments(kind="llm", model_name_or_path="x", **options).lora_settings() == expected
    with pytest.raises(ValueError, match="lora_r must be >= 1"):
        RerankerModelArguments(kind="llm", model_name_or_path="x", lora_r=0)


@pytest.mark.parametrize(
    ("kind", "name"),
    [("cross-encoder", "cross_encoder"), ("cross_encoder", "cross_encoder"), ("llm", "llm_ranker"),
     ("llm_ranker", "llm_ranker"), ("colbert", "colbert")],
)  # fmt: skip
def test_reranker_kinds_take_the_command_line_and_the_saved_spellings(kind: str, name: str) -> None:
    arguments = RerankerModelArguments(kind=kind, model_name_or_path="x")  # type: ignore[arg-type]
    assert arguments.kind_name == name
    assert RERANKER_LOSSES[kind][0] == ("infonce" if name == "colbert" else "listwise")


def test_a_kind_that_does_not_rerank_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        RerankerModelArguments(kind="embedding")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt applies to --kind llm, not colbert"):
        RerankerModelArguments(kind="colbert", prompt="?")


def test_the_loss_is_logged_at_a_share_of_the_run_and_the_best_model_is_chosen_by_ndcg(
    tmp_path: Path,
) -> None:
    arguments = RetrievalTrainingArguments(output_dir=str(tmp_path), report_to="none")
    assert arguments.logging_steps == 0.02  # of the run's steps: every step of a 50-step run
    best = RerankerTrainingArguments(
        output_dir=str(tmp_path), report_to="none", load_best_model_at_end=True, eval_strategy="steps",
        save_strategy="steps",
    )  # fmt: skip
    assert best.metric_for_best_model == "nDCG@10" and best.greater_is_better is True
    assert best.eval_steps == best.save_steps  # an evaluation at each save: the best one can be kept


def test_holdout_fraction_is_checked() -> None:
    with pytest.raises(ValueError, match="holdout_fraction"):
        RetrievalDataArguments(train_data="x.jsonl", holdout_fraction=0.9)
