"""The registry of model kinds: one spelling each, aliases, folder kinds and the refusal of a wrong folder."""

from __future__ import annotations

import json
import typing

import pytest

from retrievals_rag.models import registry
from retrievals_rag.models.config import CONFIG_FILE_NAME


def _folder(tmp_path, kind):
    folder = tmp_path / kind
    folder.mkdir()
    (folder / CONFIG_FILE_NAME).write_text(json.dumps({"model_kind": kind}))
    return folder


def test_every_kind_is_registered_once_with_its_spelling():
    assert list(registry.KINDS) == list(typing.get_args(registry.ModelKind))
    for name, spec in registry.KINDS.items():
        assert spec.name == name
        assert registry.kind_spec(name) is spec
        for alias in spec.aliases:
            assert registry.kind_spec(alias) is spec


def test_aliases_of_the_command_line_map_to_the_saved_spelling():
    assert registry.kind_spec("cross-encoder").name == "cross_encoder"
    assert registry.kind_spec("llm").name == "llm_ranker"
    with pytest.raises(
        ValueError, match=r"unknown model kind .reranker.: expected one of embedding, cross_encoder"
    ):
        registry.kind_spec("reranker")


def test_kind_of_a_class_and_its_classes_import():
    for spec in registry.KINDS.values():
        model_class = spec.model_class()
        assert registry.kind_of(model_class) == spec.name
    with pytest.raises(TypeError, match="not a retrievals_rag model"):
        registry.kind_of(object())


def test_a_folder_of_another_kind_is_refused_with_the_class_to_use(tmp_path):
    colbert = _folder(tmp_path, "colbert")
    with pytest.raises(
        ValueError,
        match=r"holds a colbert model, not a cross_encoder model: load it with ColBERT.from_pretrained",
    ):
        registry.check_folder_kind(colbert, "cross_encoder")
    registry.check_folder_kind(colbert, "colbert")
    # a bare folder (no config of ours) may start any kind
    registry.check_folder_kind(tmp_path, "llm_ranker")


def test_resolve_kind_auto_reads_the_folder_and_needs_a_default_for_a_bare_one(tmp_path):
    assert registry.resolve_kind(_folder(tmp_path, "llm_ranker"), "auto") == "llm_ranker"
    bare = tmp_path / "bare"
    bare.mkdir()
    assert registry.resolve_kind(bare, "auto", default="cross-encoder") == "cross_encoder"
    with pytest.raises(ValueError, match="does not say which kind"):
        registry.resolve_kind(bare, "auto")
    # a ranker may start from an embedder's folder (a fresh head on a bi-encoder)
    assert registry.resolve_kind(_folder(tmp_path, "embedding"), "cross-encoder") == "cross_encoder"


def test_an_unknown_saved_kind_names_the_folder(tmp_path):
    folder = _folder(tmp_path, "splade")
    with pytest.raises(ValueError, match=r"splade.*unknown model kind 'splade'"):
        registry.folder_kind(folder)


def test_load_options_are_the_from_pretrained_keywords_of_each_class():
    import inspect

    for spec in registry.KINDS.values():
        parameters = set(inspect.signature(spec.model_class().from_pretrained).parameters)
        # the path, and the device / precision fields that adapters hold themselves; causal_lm only dispatches
        expected = parameters - {"model_name_or_path", "device", "use_fp16", "causal_lm"}
        if (
            spec.name == "cross_encoder"
        ):  # AutoModelForRanking passes these to an LLM ranker, refuses them here
            assert {"prompt", "target_token", "scoring"} <= registry.KINDS["llm_ranker"].load_options
            expected -= {"prompt", "target_token", "scoring"}
        assert spec.load_options == expected, spec.name


def test_importing_the_registry_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, retrievals_rag.models.registry; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
