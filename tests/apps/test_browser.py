"""The app in a real browser: Streamlit served on 127.0.0.1, driven by Chromium through Playwright.

Needs the Debian ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python package (never
``playwright install``: its browser downloads fail offline; the system Chromium is used). Skipped without them.
A document is indexed beforehand with ``retrievals-rag index``; the test uploads a second one through the file
uploader, indexes it, asks about it in the chat and waits for the answer and its source, then saves a screenshot
(into ``$RETRIEVALS_RAG_SCREENSHOT_DIR`` when set) and prints its path. Then it uploads a file that takes 30 s or
more to index (on 2 CPU cores) and asks a question while it is indexed: the answer comes, the indexing goes on to
the end with its progress in view, and the document is listed as being indexed, never as complete, until it is.

A second test serves the app over a tiny random BERT: it creates a collection, uploads and indexes six one-chunk
files, adapts the embedder to them (cropping questions: seconds), watches the progress and then the before / after
table, switches questions to the adapted index, asks, and gets an answer with its sources.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "apps" / "app.py"
HOST = "127.0.0.1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 180_000
# One 200-token chunk each: 200 take about 40 s on 2 idle CPU cores (5 chunks/s); fewer on a loaded machine.
BIG_PARAGRAPHS = int(os.environ.get("RETRIEVALS_RAG_BROWSER_CHUNKS") or 200)
INDEXING_LIMIT_S = 900  # only a stuck job takes this long, even on a loaded machine
TOPIC_WORDS = ["magma", "crust", "glacier", "forest", "market", "engine", "protein", "orbit", "storm", "harbor",
               "bridge", "library", "castle", "garden", "valley", "river", "planet", "cell", "city", "mantle"]  # fmt: skip


def big_text(paragraphs: int) -> str:
    """Distinct paragraphs of random topic words (fixed seed): each becomes one chunk of its own."""
    rng = random.Random(0)
    return "\n\n".join(" ".join(rng.choice(TOPIC_WORDS) for _ in range(120)) + "." for _ in range(paragraphs))


def find_chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer ok within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """Stop the process group started for streamlit (SIGTERM, then SIGKILL)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium: apt-get install -y chromium")
    pytest.importorskip(
        "playwright.sync_api", reason="no playwright: pip install playwright (not `playwright install`)"
    )
    return path


def app_environment(data_dir: Path, embedder: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RETRIEVALS_RAG_DATA_DIR": str(data_dir),
        "RETRIEVALS_RAG_EMBEDDER": str(embedder),
        "RETRIEVALS_RAG_LLM": "extractive",
    }
    for name in ("RETRIEVALS_RAG_CHROMA_URL", "RETRIEVALS_RAG_LLM_MODEL"):
        env.pop(name, None)
    return env


@contextlib.contextmanager
def serving(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """``streamlit run apps/app.py`` on a free loopback port; yields its URL, stops it at the end."""
    port = free_port()
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.address", HOST, "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_healthy(f"http://{HOST}:{port}/_stcore/health", process)
        yield f"http://{HOST}:{port}"
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def chromium_page(chromium: str) -> Iterator[Any]:
    """A headless Chromium page (1400 x 1000) whose waits last up to ``WAIT_MS``."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            yield page
        finally:
            browser.close()


@pytest.fixture
def served_app(tmp_path: Path, minilm_path: Path) -> Iterator[str]:
    """The app on a free loopback port over a data folder that already holds one indexed document."""
    env = app_environment(tmp_path / "rag-data", minilm_path)
    eiffel = tmp_path / "eiffel.txt"
    eiffel.write_text("The Eiffel Tower was completed in 1889 for the World's Fair in Paris, France.\n")
    indexed = subprocess.run(
        [sys.executable, "-m", "retrievals_rag.cli.main", "index", str(eiffel), "--collection", "notes",
         "--embedder", str(minilm_path), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr
    with serving(tmp_path, env) as url:
        yield url


@pytest.fixture
def served_tiny_app(tmp_path: Path, tiny_bert_path: Path) -> Iterator[str]:
    """The app over an empty data folder and a tiny random BERT as the embedder."""
    with serving(tmp_path, app_environment(tmp_path / "rag-data", tiny_bert_path)) as url:
        yield url


def test_upload_index_and_ask_in_chromium(
    chromium: str, served_app: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    volcano = tmp_path / "upload" / "volcano.txt"
    volcano.parent.mkdir()
    big = tmp_path / "upload" / "big.txt"
    big.write_text(big_text(BIG_PARAGRAPHS))
    volcano.write_text(
        "A volcano erupts when magma from the mantle rises through the crust to the surface.\n"
    )
    screenshots = Path(os.environ.get("RETRIEVALS_RAG_SCREENSHOT_DIR") or tmp_path)
    screenshots.mkdir(parents=True, exist_ok=True)
    screenshot = screenshots / "retrievals-rag-app.png"

    with chromium_page(chromium) as page:
        page.goto(served_app)
        expect(page.get_by_text("Chat with your documents")).to_be_visible()
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("eiffel.txt", exact=False)).to_be_visible()  # indexed beforehand

        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(volcano))
        expect(sidebar.get_by_text("volcano.txt").first).to_be_visible()
        sidebar.get_by_role("button", name="Index files").click()
        expect(sidebar.get_by_text("volcano.txt: 1 chunk(s) added")).to_be_visible()

        chat = page.get_by_test_id("stChatInputTextArea")
        chat.fill("When does a volcano erupt?")
        chat.press("Enter")
        answer = page.get_by_test_id("stChatMessage").nth(1)
        # The sentence is in the answer and, once rendered, in the Sources expander too: check the answer.
        expect(answer.get_by_text("magma from the mantle rises", exact=False).first).to_be_visible()
        answer.get_by_text("Sources (", exact=False).first.click()
        expect(answer.get_by_text("volcano.txt · cosine similarity", exact=False)).to_be_visible()
        expect(answer.get_by_test_id("stCode").first).to_contain_text("magma from the mantle")
        page.wait_for_timeout(500)  # the expander's opening animation
        page.screenshot(path=str(screenshot), full_page=True)

        summary = index_a_big_file_while_asking(page, sidebar, big, expect, screenshots)
    assert screenshot.stat().st_size > 10_000
    with capsys.disabled():  # shown in the CI log even though pytest captures output
        print(f"\nscreenshot: {screenshot}\n{summary}")


def index_a_big_file_while_asking(page, sidebar, big: Path, expect, screenshots: Path) -> str:
    """Index ``big`` (30 s or more), ask a question meanwhile, and watch the document list until the end."""
    started = time.monotonic()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(big))
    expect(sidebar.get_by_text("big.txt").first).to_be_visible()
    sidebar.get_by_role("button", name="Index files").click()
    progress = sidebar.get_by_test_id("stProgress")
    # big.txt alone: the uploader was emptied after volcano.txt was sent.
    expect(progress.first).to_contain_text("Indexing big.txt:")
    expect(progress.first).to_contain_text(re.compile(r"\d+ of \d+ chunks, about .* left"))
    page.screenshot(path=str(screenshots / "retrievals-rag-indexing.png"), full_page=True)

    # A question while it indexes: answered, and the indexing is not stopped.
    chat = page.get_by_test_id("stChatInputTextArea")
    chat.fill("When was the Eiffel Tower completed?")
    chat.press("Enter")
    expect(page.get_by_test_id("stChatMessage").nth(3).get_by_text("1889", exact=False).first).to_be_visible()
    answered = time.monotonic()

    done = sidebar.get_by_text(re.compile(r"^big\.txt: \d+ chunk\(s\) added$"))
    seen: list[str] = []  # each state of big.txt in the document list, until the job reports its end
    progress_seen = 0
    while not done.count():
        assert time.monotonic() - started < INDEXING_LIMIT_S, f"indexing did not finish; seen {seen[-3:]}"
        texts = sidebar.get_by_test_id("stText").all_inner_texts()
        if done.count():  # finished between the two reads: the list may already show it complete
            break
        seen += [text for text in texts if text.startswith("big.txt")]
        progress_seen += progress.count()
        page.wait_for_timeout(500)
    finished = time.monotonic()
    assert seen and progress_seen, "the document and the progress were never shown while indexing"
    states = [text.split("\n")[1] for text in seen]
    # the list may show the document complete a moment before the job's end is reported: only at the end
    while states and not states[-1].startswith("indexing: ") and len(states) > 1:
        assert states[-1] == f"{BIG_PARAGRAPHS} chunk(s)", states[-1]
        states.pop()
    assert all(state.startswith("indexing: ") for state in states), sorted(set(states))
    counts = [int(state.split()[1]) for state in states]
    assert counts == sorted(counts) and counts[-1] > counts[0], counts  # it went on after the question

    (total,) = {int(state.split()[3]) for state in states}
    expect(sidebar.get_by_text(f"big.txt\n{total} chunk(s)")).to_be_visible()  # complete, listed as such
    assert total == BIG_PARAGRAPHS
    return (
        f"big.txt: {total} chunks indexed in {finished - started:.0f} s; the question was answered after "
        f"{answered - started:.0f} s, while indexing; the document was seen {len(seen)} times as "
        f"'{states[0]}' ... '{states[-1]}', then complete"
    )


def test_adapt_switch_and_ask_in_chromium(
    chromium: str, served_tiny_app: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    from tests.apps.test_app_versions import PASSAGES

    folder = tmp_path / "passages"
    folder.mkdir()
    for name, data in PASSAGES.items():
        (folder / name).write_bytes(data)
    screenshots = Path(os.environ.get("RETRIEVALS_RAG_SCREENSHOT_DIR") or tmp_path)
    screenshots.mkdir(parents=True, exist_ok=True)

    with chromium_page(chromium) as page:
        started = time.monotonic()
        page.goto(served_tiny_app)
        sidebar = page.get_by_test_id("stSidebar")
        name = sidebar.get_by_label("New collection")
        name.fill("notes")
        name.press("Enter")
        sidebar.get_by_role("button", name="Create collection").click()
        expect(page.get_by_test_id("stFileUploaderDropzoneInput")).to_have_count(1)

        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            [str(folder / name) for name in PASSAGES]
        )
        sidebar.get_by_role("button", name="Index files").click()
        for file_name in PASSAGES:
            expect(sidebar.get_by_text(f"{file_name}: 1 chunk(s) added")).to_be_visible()

        panel = page.get_by_test_id("stExpander").filter(has_text="Index versions")
        panel.get_by_text("Index versions · adapt the embedder to these documents").click()
        panel.get_by_role("button", name="Adapt the embedder").click()
        adapting = panel.get_by_test_id("stProgress").filter(has_text="Adapting the embedder (adapted-1)")
        expect(adapting.first).to_be_visible()  # the job runs in the background; the page polls it
        progress_text = adapting.first.inner_text()
        expect(panel.get_by_text("adapted-1 is ready: choose it under 'Questions use'.")).to_be_visible()
        adapted = time.monotonic()
        table = panel.get_by_test_id("stTable")
        for metric in ("nDCG@10", "MRR@10", "Recall@100"):
            expect(table).to_contain_text(metric)
        page.screenshot(path=str(screenshots / "retrievals-rag-adapted.png"), full_page=True)

        option = panel.get_by_text(re.compile(r"^adapted-1 \(nDCG@10"))
        expect(option).to_be_visible()  # the panel stays open after the job's end
        option.click()
        expect(panel.get_by_role("radio", name=re.compile(r"^adapted-1"))).to_be_checked()

        page.get_by_test_id("stSidebar").get_by_text("Settings").click()
        top_k = page.get_by_label("Sources per answer (top-k)")
        top_k.fill(str(len(PASSAGES)))  # every passage a source: the random model's order does not matter
        top_k.press("Enter")
        chat = page.get_by_test_id("stChatInputTextArea")
        chat.fill("When was the Eiffel Tower completed?")
        chat.press("Enter")
        answer = page.get_by_test_id("stChatMessage").nth(1)
        expect(answer.get_by_text("1889", exact=False).first).to_be_visible()
        answer.get_by_text("Sources (", exact=False).first.click()
        expect(answer.get_by_text("eiffel.txt · cosine similarity", exact=False)).to_be_visible()
        expect(panel.get_by_role("radio", name=re.compile(r"^adapted-1"))).to_be_checked()  # still in use
        page.wait_for_timeout(500)
        screenshot = screenshots / "retrievals-rag-adapted-answer.png"
        page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    with capsys.disabled():
        print(
            f"\nadapted in {adapted - started:.0f} s from the page's start (progress seen: {progress_text!r}); "
            f"answered from adapted-1 with its sources; screenshots in {screenshots}"
        )
