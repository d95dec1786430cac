"""Contenders for ``retrievals-rag bench encode|rerank --backend``: ours per backend, sentence-transformers' per
backend, run in alternating rounds in one run.

Ours run in this process. Each sentence-transformers contender runs in a worker process (``st_worker.py``)
started with ``--st-python`` (default: this interpreter), because its ONNX / OpenVINO backends need optimum,
which can live in another environment; a worker waits on its stdin while the others run. Every round runs every
contender once, the order rotated each round; the median round is reported, with each contender's ratio to
sentence-transformers' torch path and the largest difference of its vectors / scores from that reference.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("st_worker.py")


@dataclass
class Contender:
    """One side of the comparison.

    Attributes:
        name: printed name, e.g. ``"retrievals_rag onnx-int8"``.
        run: one timed pass; returns the seconds it took.
        output: the first pass's vectors / scores (None until run, or when unavailable).
        error: why the contender could not run (it is then left out of the rounds).
    """

    name: str
    run: Callable[[], float]
    output: Callable[[], Any]
    close: Callable[[], None] = lambda: None
    error: str | None = None
    seconds: list[float] = field(default_factory=list)


def in_process(name: str, work: Callable[[], Any]) -> Contender:
    """A contender run in this process: ``work`` is timed; its first result is kept."""
    kept: list[Any] = []

    def run() -> float:
        start = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - start
        if not kept:
            kept.append(result)
        return seconds

    return Contender(name, run, lambda: kept[0] if kept else None)


def st_worker(
    name: str, python: str, setup: dict[str, Any], output: Path, timeout: float = 3_600
) -> Contender:
    """A sentence-transformers contender in its own process (``st_worker.py`` run by ``python``)."""
    import numpy as np

    setup_file = output.with_suffix(".setup.json")
    setup_file.write_text(json.dumps({**setup, "output": str(output)}), encoding="utf-8")
    package_root = str(Path(__file__).resolve().parents[2])  # this checkout's retrievals_rag, for ours
    paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    process = subprocess.Popen(
        [python, str(WORKER), str(setup_file)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None

    def answer() -> dict[str, Any]:
        """The worker's next protocol line (a JSON object); anything else a library printed is skipped."""
        for line in process.stdout:  # type: ignore[union-attr]
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
        return {"error": f"the worker exited (code {process.wait()})"}

    reply = answer()

    def close() -> None:
        if process.poll() is None:
            process.stdin.close()  # type: ignore[union-attr]
            process.wait(timeout=60)

    def run() -> float:
        process.stdin.write("run\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        reply = answer()
        if "error" in reply:
            raise RuntimeError(f"{name}: {reply['error']}")
        return float(reply["seconds"])

    def result() -> Any:
        return np.load(output) if output.is_file() else None

    contender = Contender(name, run, result, close)
    if "error" in reply:
        close()
        contender.error = reply["error"]
    return contender


def alternate(contenders: list[Contender], rounds: int, items: int, unit: str) -> None:
    """Run every available contender once per round, rotating the order; print each round's rates."""
    active = [contender for contender in contenders if contender.error is None]
    for round_index in range(rounds):
        shift = round_index % max(len(active), 1)
        order = active[shift:] + active[:shift]
        for contender in order:
            contender.seconds.append(contender.run())
        rates = ", ".join(f"{c.name} {items / c.seconds[-1]:.1f}" for c in active)
        print(f"round {round_index + 1} ({unit}): {rates}", flush=True)


def report(contenders: list[Contender], items: int, unit: str, reference: str, title: str) -> list[dict]:
    """Print the table (rate, ratio to ``reference``, max |difference| from it); return its rows."""
    import numpy as np

    by_name = {contender.name: contender for contender in contenders}
    anchor = by_name.get(reference)
    anchor_rate = items / statistics.median(anchor.seconds) if anchor and anchor.seconds else None
    anchor_output = anchor.output() if anchor and anchor.seconds else None
    rows = []
    print(f"\n{title}")
    print(f"  {'contender':36s} {unit:>10s} {'vs ' + reference:>32s} {'max |diff|':>11s}")
    for contender in contenders:
        if contender.error is not None:
            print(f"  {contender.name:36s} unavailable: {contender.error[:160]}")
            rows.append({"name": contender.name, "error": contender.error})
            continue
        rate = items / statistics.median(contender.seconds)
        output = contender.output()
        difference = None
        if anchor_output is not None and output is not None:
            difference = float(
                np.abs(np.asarray(output, np.float32) - np.asarray(anchor_output, np.float32)).max()
            )
        ratio = rate / anchor_rate if anchor_rate else None
        print(
            f"  {contender.name:36s} {rate:10.1f} {(f'{ratio:.2f}x' if ratio else '-'):>32s} "
            f"{(f'{difference:.2e}' if difference is not None else '-'):>11s}"
        )
        rows.append({"name": contender.name, "rate": rate, "ratio": ratio, "max_difference": difference})
    return rows


def prepare_folders(
    model: Path, work_dir: Path, backends: list[str], calibration: list[Any]
) -> tuple[Path, Path]:
    """Two copies of ``model`` under ``work_dir``: ours (with the exports ``backends`` need; a static int8 one
    calibrated on ``calibration``) and one for sentence-transformers (its own exports go there). Copies and
    exports made by an earlier run are reused.
    """
    from retrievals_rag.models.backends import available_backends, export
    from retrievals_rag.models.backends.exporter import copy_model_folder
    from retrievals_rag.models.backends.record import split_backend

    ours, theirs = work_dir / "ours", work_dir / "sentence-transformers"
    for folder in (ours, theirs):
        if not folder.is_dir():
            copy_model_folder(model, folder)
    held = set(available_backends(ours))
    for name in backends:
        if name == "torch" or name in held:
            continue
        backend, quantization = split_backend(name)
        start = time.perf_counter()
        export(
            str(ours),
            backend=backend,
            quantize=quantization,
            calibration=calibration if quantization == "int8-static" else None,
        )
        held = set(available_backends(ours))
        print(f"exported {ours} to {name} in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    return ours, theirs
