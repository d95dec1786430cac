"""Sharded, resumable encoding and the merge: equal to one encode, resumable, and every bad input refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from retrievals_rag.cli.main import main
from retrievals_rag.distributed.merge import build_index, load_encoded_corpus, write_index
from retrievals_rag.distributed.shards import ShardSpec, shard_bounds

from ..conftest import REPO_ROOT, SCIFACT_SUBSET, build_tiny_bert

CORPUS = SCIFACT_SUBSET / "corpus.jsonl"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-encoder"), minilm_path, dropout=0.0)


@pytest.fixture(scope="module")
def reference(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], np.ndarray]:
    """The one-process, one-file encode of the SciFact subset."""
    output = tmp_path_factory.mktemp("reference") / "corpus.npy"
    assert main(["encode", "--model", str(model_path), "--input", str(CORPUS), "--output", str(output)]) == 0
    ids = json.loads(output.with_name("corpus.ids.json").read_text())
    return ids, np.load(output)


def _encode(model_path: Path, output_dir: Path, *options: str) -> int:
    return main(
        [
            "encode",
            "--model",
            str(model_path),
            "--input",
            str(CORPUS),
            "--output-dir",
            str(output_dir),
            *options,
        ]
    )


def test_shard_spec_and_bounds() -> None:
    assert ShardSpec.parse("1/4") == ShardSpec(1, 4)
    assert shard_bounds(600, 4) == [(0, 150), (150, 300), (300, 450), (450, 600)]
    for text in ("4/4", "1-4", "-1/2", "0/0"):
        with pytest.raises(ValueError):
            ShardSpec.parse(text)


def test_shards_merged_equal_the_single_encode_and_resume_finishes_the_rest(
    model_path: Path, reference, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "vecs"
    # a process that stopped after its first shard: only shard 0/3 is there
    assert _encode(model_path, folder, "--shard", "0/3") == 0
    first = (folder / "shard-00000-of-00003.safetensors").stat().st_mtime_ns
    with pytest.raises(ValueError, match=r"missing shard .* rows \[200, 600\)"):
        load_encoded_corpus(folder)
    capsys.readouterr()
    # running the whole job again encodes shards 1 and 2 only
    assert _encode(model_path, folder, "--num-shards", "3") == 0
    messages = capsys.readouterr().err
    assert "shard 0/3: already finished, skipped" in messages
    assert "shard 1/3: 200 rows" in messages and "shard 2/3: 200 rows" in messages
    assert (folder / "shard-00000-of-00003.safetensors").stat().st_mtime_ns == first

    corpus = load_encoded_corpus(folder, expected_model=model_path)
    ids, vectors = reference
    assert corpus.ids == ids
    assert float(np.abs(corpus.embeddings - vectors).max()) < 1e-6
    manifest = corpus.manifest
    assert manifest["num_shards"] == 3 and manifest["dim"] == 32 and manifest["dtype"] == "float32"
    assert manifest["input"]["rows"] == 600 and len(manifest["model"]["fingerprint"]) == 64

    # merge into an exact index and read it back; the CLI does the same
    index = build_index(corpus, "exact")
    written = write_index(corpus, index, tmp_path / "index")
    merged = load_encoded_corpus(written)
    assert merged.ids == ids and np.array_equal(merged.embeddings, corpus.embeddings)
    assert main(["merge", str(folder), "--output", str(tmp_path / "index2")]) == 0
    assert "wrote a exact index of 600 vectors" in capsys.readouterr().out


def test_a_killed_encode_run_again_finishes_only_the_missing_shards(
    model_path: Path, reference, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The CLI killed (SIGKILL) once its first shard is finished: run again, it skips what was finished."""
    folder = tmp_path / "vecs"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "retrievals_rag.cli.main", "encode", "--model", str(model_path),
        "--input", str(CORPUS), "--output-dir", str(folder), "--num-shards", "6", "--batch-size", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_record = folder / "shard-00000-of-00006.json"
    deadline = time.monotonic() + 300
    while not first_record.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.kill()
    process.wait(timeout=60)
    finished = sorted(path.name for path in folder.glob("shard-*-of-00006.json"))
    assert first_record.name in finished and len(finished) < 6, finished  # killed in the middle of the job
    written = {name: (folder / name).with_suffix(".safetensors").stat().st_mtime_ns for name in finished}
    capsys.readouterr()

    assert _encode(model_path, folder, "--num-shards", "6") == 0
    messages = capsys.readouterr().err
    assert messages.count("already finished, skipped") == len(finished)
    for name, mtime in written.items():  # the finished shards were not written again
        assert (folder / name).with_suffix(".safetensors").stat().st_mtime_ns == mtime
    corpus = load_encoded_corpus(folder, expected_model=model_path)
    ids, vectors = reference
    assert corpus.ids == ids and float(np.abs(corpus.embeddings - vectors).max()) < 1e-6
    assert not [path.name for path in folder.iterdir() if ".tmp-" in path.name]  # no half-written file left


def test_faiss_indexes_from_shards(model_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    from retrievals_rag.retrieval.faiss_index import FaissIndex

    folder = tmp_path / "vecs"
    assert _encode(model_path, folder, "--num-shards", "2") == 0
    corpus = load_encoded_corpus(folder)
    exact = build_index(corpus, "exact").search(corpus.embeddings[:5], top_k=3)
    for kind in ("faiss-flat", "faiss-ivf", "faiss-hnsw"):
        index = build_index(corpus, kind)
        assert len(index) == 600
        assert [hits[0][0] for hits in index.search(corpus.embeddings[:5], top_k=3)] == corpus.ids[:5]
    assert main(["merge", str(folder), "--output", str(tmp_path / "flat"), "--index", "faiss-flat"]) == 0
    loaded = FaissIndex.load(tmp_path / "flat")
    assert [[doc for doc, _ in hits] for hits in loaded.search(corpus.embeddings[:5], top_k=3)] == [
        [doc for doc, _ in hits] for hits in exact
    ]


def test_torchrun_two_processes_equal_one(model_path: Path, reference, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2`` runs one shard per process (RANK / WORLD_SIZE)."""
    folder = tmp_path / "vecs"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", "0", "-m", "retrievals_rag.cli.main", "encode", "--model", str(model_path),
        "--input", str(CORPUS), "--output-dir", str(folder),
    ]  # fmt: skip
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "process 0 of 2" in result.stderr and "process 1 of 2" in result.stderr
    corpus = load_encoded_corpus(folder)
    assert corpus.manifest["num_shards"] == 2
    ids, vectors = reference
    assert corpus.ids == ids and float(np.abs(corpus.embeddings - vectors).max()) < 1e-6


# ----------------------------------------------------------------------------------------------- bad input
@pytest.fixture()
def two_shards(model_path: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.getbasetemp() / "two-shards"
    if not cache.exists():
        assert _encode(model_path, cache, "--num-shards", "2") == 0
    folder = tmp_path / "vecs"
    shutil.copytree(cache, folder)
    return folder


def test_missing_shard_is_refused(two_shards: Path, tmp_path: Path) -> None:
    for name in ("shard-00001-of-00002.json", "shard-00001-of-00002.safetensors"):
        (two_shards / name).unlink()
    with pytest.raises(ValueError, match=r"missing shard .*rows \[300, 600\)"):
        load_encoded_corpus(two_shards)
    assert main(["merge", str(two_shards), "--output", str(tmp_path / "index")]) == 2
    assert not (tmp_path / "index").exists()


def test_overlapping_shards_are_refused(two_shards: Path, model_path: Path, tmp_path: Path) -> None:
    # a shard of a 3-shard run of the same model and input dropped into the 2-shard folder
    other = tmp_path / "other"
    assert _encode(model_path, other, "--shard", "1/3") == 0
    for suffix in ("json", "safetensors"):
        shutil.copy(other / f"shard-00001-of-00003.{suffix}", two_shards)
    with pytest.raises(ValueError, match=r"another run|overlapping"):
        load_encoded_corpus(two_shards)
    # the same with records that claim this run: rows [200, 400) overlap [0, 300) and [300, 600)
    record_path = two_shards / "shard-00001-of-00003.json"
    record = json.loads(record_path.read_text())
    record["manifest_digest"] = json.loads((two_shards / "shard-00000-of-00002.json").read_text())[
        "manifest_digest"
    ]
    record["count"] = 2
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"overlapping shards .*shard-00001-of-00003"):
        load_encoded_corpus(two_shards)


def test_manifest_of_another_model_is_refused(
    two_shards: Path, model_path: Path, minilm_path: Path, tmp_path: Path
) -> None:
    # encoding into the folder with another model
    other_model = build_tiny_bert(tmp_path / "other-model", minilm_path, dropout=0.1)
    with pytest.raises(ValueError, match=r"already holds shards of another run .*model"):
        main(
            [
                "-v",
                "encode",
                "--model",
                str(other_model),
                "--input",
                str(CORPUS),
                "--output-dir",
                str(two_shards),
            ]
        )
    # merging for another model
    with pytest.raises(ValueError, match="encoded by another model"):
        load_encoded_corpus(two_shards, expected_model=other_model)
    # a shard whose manifest was replaced by another model's
    manifest_path = two_shards / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model"]["fingerprint"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="written by another run"):
        load_encoded_corpus(two_shards)


def test_partial_shard_of_a_crashed_process_is_refused_then_rewritten(
    two_shards: Path, model_path: Path
) -> None:
    vectors = two_shards / "shard-00001-of-00002.safetensors"
    # a crash while writing: a temporary file, no finished shard
    (two_shards / "shard-00001-of-00002.json").unlink()
    data = vectors.read_bytes()
    vectors.unlink()
    (two_shards / "shard-00001-of-00002.safetensors.tmp-4242").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"unfinished shards .*tmp-4242"):
        load_encoded_corpus(two_shards)
    # a crash after the rename, before the record: the .safetensors has no record
    (two_shards / "shard-00001-of-00002.safetensors.tmp-4242").unlink()
    vectors.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"unfinished shards .*shard-00001-of-00002.safetensors"):
        load_encoded_corpus(two_shards)
    # both at once (killed mid-write, then again after the rename): running again rewrites the shard, removes
    # the dead process's temporary file, and the merge goes through
    (two_shards / "shard-00001-of-00002.json.tmp-4243").write_bytes(b'{"index": ')
    assert _encode(model_path, two_shards, "--num-shards", "2") == 0
    assert not list(two_shards.glob("*.tmp-*"))
    assert len(load_encoded_corpus(two_shards).ids) == 600


def test_truncated_shard_with_a_record_is_refused(two_shards: Path) -> None:
    vectors = two_shards / "shard-00000-of-00002.safetensors"
    vectors.write_bytes(vectors.read_bytes()[:-100])
    with pytest.raises(ValueError, match="does not match its record"):
        load_encoded_corpus(two_shards)


def test_evaluate_and_mine_read_the_encoded_corpus(
    model_path: Path, minilm_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "vecs"
    assert _encode(model_path, folder, "--num-shards", "2") == 0
    model = ["--model", str(model_path)]
    for name, extra in (("plain", []), ("encoded", ["--encoded-corpus", str(folder)])):
        assert (
            main(
                [
                    "evaluate",
                    *model,
                    "--data",
                    str(SCIFACT_SUBSET),
                    "--output-json",
                    str(tmp_path / f"{name}.json"),
                    *extra,
                ]
            )
            == 0
        )
        assert main(["mine", *model, "--data", str(SCIFACT_SUBSET), "--split", "test", "--output",
                     str(tmp_path / f"{name}.jsonl"), "--rank-range", "2", "20", *extra]) == 0  # fmt: skip
    plain, encoded = (
        json.loads((tmp_path / f"{name}.json").read_text())["metrics"] for name in ("plain", "encoded")
    )
    assert encoded == pytest.approx(plain, abs=1e-9)
    assert (tmp_path / "encoded.jsonl").read_text() == (tmp_path / "plain.jsonl").read_text()
    # vectors of another model are refused
    other_model = build_tiny_bert(tmp_path / "other-model", minilm_path, dropout=0.1)
    with pytest.raises(ValueError, match="encoded by another model"):
        main(
            [
                "-v",
                "evaluate",
                "--model",
                str(other_model),
                "--data",
                str(SCIFACT_SUBSET),
                "--encoded-corpus",
                str(folder),
            ]
        )


def test_merge_into_chroma(two_shards: Path, model_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("chromadb")
    from retrievals_rag.integrations.chroma import persistent_client

    assert (
        main(["merge", str(two_shards), "--data-dir", str(tmp_path / "rag"), "--collection", "scifact"]) == 0
    )
    collection = persistent_client(tmp_path / "rag" / "chroma").get_collection("scifact")
    assert collection.count() == 600
    corpus = load_encoded_corpus(two_shards)
    stored = collection.get(ids=corpus.ids[:3], include=["embeddings", "documents"])
    order = [stored["ids"].index(identifier) for identifier in corpus.ids[:3]]
    assert np.allclose(np.asarray(stored["embeddings"])[order], corpus.embeddings[:3], atol=1e-6)
    assert all(stored["documents"])  # the texts, read back from the unchanged input
    # queries embedded by the collection's function (the same model) find their own documents
    hits = collection.query(query_embeddings=corpus.embeddings[:3].tolist(), n_results=1)
    assert [ids[0] for ids in hits["ids"]] == corpus.ids[:3]


def test_an_encoded_corpus_of_other_settings_is_refused_with_each_difference(
    model_path: Path, tmp_path: Path
) -> None:
    """Before, only the model folder was compared: vectors pooled by CLS over 8 tokens were scored against
    queries pooled by mean over 128 tokens, and evaluate printed a wrong nDCG."""
    from retrievals_rag.distributed.merge import encoded_corpus_for
    from retrievals_rag.models.embedding import AutoModelForEmbedding

    folder = tmp_path / "vecs"
    assert _encode(model_path, folder, "--pooling", "cls", "--max-length", "8", "--kind", "query",
                   "--num-shards", "2") == 0  # fmt: skip
    ids = load_encoded_corpus(folder).ids
    with pytest.raises(ValueError) as raised:
        main(["-v", "evaluate", "--model", str(model_path), "--data", str(SCIFACT_SUBSET), "--encoded-corpus",
              str(folder)])  # fmt: skip
    message = str(raised.value)
    assert "pooling_method: 'cls' there, 'mean' now" in message
    assert "max_length: 8 there, " in message and "--pooling cls --max-length 8" in message
    assert "encode it again" in message
    # the model loaded with the recorded settings reads it (the query instruction of this model is none)
    same = AutoModelForEmbedding.from_pretrained(model_path, pooling_method="cls", max_length=8)
    assert encoded_corpus_for(folder, model_path, ids, model=same).shape == (600, 32)
    with_instruction = AutoModelForEmbedding.from_pretrained(
        model_path, pooling_method="cls", max_length=8, document_instruction="passage: {}"
    )
    with pytest.raises(ValueError, match=r"document instruction: None there, 'passage: \{\}' now"):
        encoded_corpus_for(folder, model_path, ids, model=with_instruction)


def test_a_merged_folder_with_a_bad_manifest_or_ids_file_is_refused_naming_the_file(
    two_shards: Path, model_path: Path, tmp_path: Path
) -> None:
    """Before, a manifest without "model" gave a bare KeyError: 'model', and a corrupt ids.json a JSON error
    that named no file."""
    corpus = load_encoded_corpus(two_shards)
    merged = write_index(corpus, build_index(corpus), tmp_path / "index")
    (merged / "ids.json").write_text('["a", "b"', encoding="utf-8")
    with pytest.raises(ValueError, match=r"ids\.json is not valid JSON"):
        load_encoded_corpus(merged)
    (merged / "ids.json").write_text(json.dumps(corpus.ids), encoding="utf-8")
    manifest_path = merged / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["model"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"manifest\.json has no 'model' entry"):
        load_encoded_corpus(merged, expected_model=model_path)


def test_a_chroma_collection_embeds_documents_as_the_shards_were_encoded(
    model_path: Path, tmp_path: Path
) -> None:
    """Before, the collection's embedding function loaded the model with its saved pooling and token limit,
    not the encode's: a document embedded again by the collection was 0.72 cosine from its stored vector."""
    pytest.importorskip("chromadb")
    from retrievals_rag.integrations.chroma import persistent_client

    source = tmp_path / "corpus.jsonl"
    texts = [
        f"document {number} about proteins, cells and the immune response of mice" for number in range(5)
    ]
    source.write_text(
        "".join(json.dumps({"_id": f"d{number}", "text": text}) + "\n" for number, text in enumerate(texts))
    )
    folder = tmp_path / "vecs"
    assert main(["encode", "--model", str(model_path), "--input", str(source), "--output-dir", str(folder),
                 "--pooling", "cls", "--max-length", "8", "--document-instruction", "passage: {}"]) == 0  # fmt: skip
    assert main(["merge", str(folder), "--data-dir", str(tmp_path / "rag"), "--collection", "small"]) == 0
    collection = persistent_client(tmp_path / "rag" / "chroma").get_collection("small")
    function = collection.configuration["embedding_function"]
    stored = collection.get(ids=["d0", "d3"], include=["embeddings"])
    order = [stored["ids"].index(identifier) for identifier in ("d0", "d3")]
    again = np.asarray(function([texts[0], texts[3]]))
    np.testing.assert_allclose(again, np.asarray(stored["embeddings"])[order], atol=1e-5)


def test_shards_of_another_backend_or_dtype_are_refused_and_old_manifests_still_resume(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the manifest recorded neither --backend nor the compute dtype: a shard encoded with torch and
    one with onnx-int8 merged into one index."""
    from retrievals_rag.models.base import RetrievalModel

    folder = tmp_path / "vecs"
    assert _encode(model_path, folder, "--shard", "0/2") == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["encoder"] == {"backend": "torch", "compute_dtype": "float32"}
    second_shard = ["encode", "--model", str(model_path), "--input", str(CORPUS), "--output-dir", str(folder),
                    "--shard", "1/2"]  # fmt: skip
    with monkeypatch.context() as patched:
        patched.setattr(RetrievalModel, "backend", property(lambda self: "onnx-int8"))
        with pytest.raises(
            ValueError, match=r"already holds shards of another run \(encoder: .*'torch'.* there"
        ):
            main(["-v", *second_shard])
    with monkeypatch.context() as patched:
        patched.setattr(RetrievalModel, "compute_dtype", property(lambda self: "bfloat16"), raising=False)
        with pytest.raises(ValueError, match=r"another run \(encoder: .*'bfloat16'.* now"):
            main(["-v", *second_shard])
    assert not (folder / "shard-00001-of-00002.json").exists()
    # a folder whose manifest predates the record (no "encoder") is resumed, not refused
    for name in ("shard-00000-of-00002.json", "shard-00000-of-00002.safetensors"):
        (folder / name).unlink()
    del manifest["encoder"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert _encode(model_path, folder, "--num-shards", "2") == 0
    assert len(load_encoded_corpus(folder).ids) == 600
