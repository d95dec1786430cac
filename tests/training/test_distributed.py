"""Training under torchrun: two CPU processes (gloo) through the CLI, launched as the README shows it (no
``--use_cpu``: on a machine without a GPU the arguments turn it on, so the processes train together)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import make_records

BATCH = 4  # per process; the dataset holds exactly one global batch of 2 x BATCH records


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _train(
    model: Path, data: Path, output: Path, processes: int, gather: bool, steps: int = 1, timeout: int = 600
) -> list[float]:
    options = [
        "train", "embedding",
        "--model_name_or_path", str(model),
        "--train_data", str(data),
        "--train_group_size", "2",
        "--output_dir", str(output),
        "--per_device_train_batch_size", str(BATCH * 2 // processes),
        "--max_steps", str(steps),
        "--logging_steps", "1",
        "--learning_rate", "1e-3",
        "--report_to", "none",
        "--save_strategy", "no",
        "--seed", "0",
        "--gather_negatives_across_processes", str(gather).lower(),
    ]  # fmt: skip
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if processes == 1:
        command = [sys.executable, "-m", "retrievals_rag.cli.main", *options]
    else:  # the README's command as written; torchrun reads a free port from PET_MASTER_PORT
        beside = Path(sys.executable).parent / "torchrun"  # this environment's, else the one on PATH
        torchrun = str(beside) if beside.is_file() else shutil.which("torchrun")
        assert torchrun, "torchrun (installed with torch) is not found"
        command = [torchrun, "--nproc_per_node", str(processes), "-m", "retrievals_rag.cli.main", *options]
        environment.update(PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=str(_free_port()))
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((output / "training_summary.json").read_text())["loss_history"]


@pytest.mark.timeout(900)
def test_torchrun_two_processes_gathers_negatives_like_one_big_batch(
    no_dropout_bert_path: Path, tmp_path: Path
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(record) for record in make_records(BATCH * 2)) + "\n")

    single = _train(no_dropout_bert_path, data, tmp_path / "single", processes=1, gather=False)
    gathered = _train(no_dropout_bert_path, data, tmp_path / "gathered", processes=2, gather=True)
    local_only = _train(no_dropout_bert_path, data, tmp_path / "local", processes=2, gather=False)

    # The logged loss is the mean over processes; with gathered documents it is the global-batch loss.
    assert gathered[0] == pytest.approx(single[0], abs=1e-5)
    # Without gathering each process only sees its own documents as negatives: an easier, different loss.
    assert local_only[0] < single[0] - 1e-3
    # The saved model (written by process 0 only) loads.
    from retrievals_rag import AutoModelForEmbedding

    assert AutoModelForEmbedding.from_pretrained(tmp_path / "gathered").encode(["cell"]).shape == (1, 32)


@pytest.mark.timeout(900)
def test_processes_whose_batches_differ_in_length_keep_in_step(
    no_dropout_bert_path: Path, tmp_path: Path
) -> None:
    """The second epoch draws other negatives: the two processes' batches then differ in length. Each process
    must still run as many forwards as the other (DDP broadcasts buffers at each), or both wait forever."""
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(record) for record in make_records(BATCH * 2)) + "\n")
    losses = _train(
        no_dropout_bert_path, data, tmp_path / "out", processes=2, gather=True, steps=3, timeout=300
    )
    assert len(losses) == 3
