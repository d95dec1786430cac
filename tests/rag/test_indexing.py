"""Bulk indexing: per-file errors, progress, resuming after an interruption or a kill, uploads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.rag import loaders
from retrievals_rag.rag.indexing import (
    IndexProgress,
    content_sha,
    expand_paths,
    index_documents,
    index_paths,
    index_uploads,
    unsupported_in_folders,
)
from retrievals_rag.rag.loaders import LoadedDocument, load_bytes, load_document
from retrievals_rag.rag.store import VectorStore
from tests.rag.conftest import (
    TOPICS,
    make_docx,
    make_docx_with_broken_xml,
    make_pdf,
    make_pdf_over_a_parser_limit,
)


def write_corpus(folder: Path, n_files: int = 5) -> list[Path]:
    """``n_files`` text files of several paragraphs each (a few chunks of 24 tokens each)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    topics = list(TOPICS.values())
    for index in range(n_files):
        path = folder / f"doc{index}.txt"
        path.write_text(
            "\n\n".join(f"File {index}, part {part}. {topics[(index + part) % 4]}" for part in range(4))
        )
        paths.append(path)
    return paths


def expected_ids(store: VectorStore, paths: list[Path]) -> set[str]:
    return {chunk.id for path in paths for chunk in store.split(load_document(path))}


def stored_ids(store: VectorStore, collection: str) -> list[str]:
    return [chunk.id for chunk in store.all_chunks(collection)]


def stored_texts(store: VectorStore, collection: str) -> dict[str, list[str]]:
    """Each stored source's chunk texts, in the document's order."""
    texts: dict[str, list[str]] = {}
    for chunk in sorted(store.all_chunks(collection), key=lambda chunk: chunk.metadata["chunk_index"]):
        texts.setdefault(chunk.metadata["source"], []).append(chunk.text)
    return dict(sorted(texts.items()))


def split_texts(store: VectorStore, document: LoadedDocument) -> list[str]:
    return [chunk.text for chunk in store.split(document)]


def listing(store: VectorStore, collection: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(info.source, info.aliases) for info in store.list_documents(collection)]


def test_a_broken_file_among_good_ones_is_reported_and_the_others_indexed(
    store: VectorStore, tmp_path: Path
) -> None:
    good = write_corpus(tmp_path / "docs", 3)
    (tmp_path / "docs" / "scan.pdf").write_bytes(make_pdf([""]))
    (tmp_path / "docs" / "junk.txt").write_bytes(b"\x00\x01binary\x00")
    unsupported = tmp_path / "image.png"
    unsupported.write_bytes(b"\x89PNG")

    report = index_paths(store, [tmp_path / "docs", unsupported, tmp_path / "missing.txt"], "notes")

    assert sorted(report.indexed) == sorted(str(path.resolve()) for path in good)
    assert {Path(error.path).name: error.reason.split(" ")[0] for error in report.errors} == {
        "junk.txt": "looks",
        "scan.pdf": "no",
        "image.png": "unsupported",
        "missing.txt": "cannot",
    }
    assert set(stored_ids(store, "notes")) == expected_ids(store, good)
    assert report.chunks_added == store.count("notes")


def test_corrupt_docx_and_pdf_among_good_files_are_reported_by_name(
    store: VectorStore, tmp_path: Path
) -> None:
    good = write_corpus(tmp_path / "docs", 2)
    (tmp_path / "docs" / "minutes.docx").write_bytes(make_docx(["The committee meets on the first Monday."]))
    (tmp_path / "docs" / "report.docx").write_bytes(make_docx_with_broken_xml())
    (tmp_path / "docs" / "bomb.pdf").write_bytes(make_pdf_over_a_parser_limit())

    report = index_paths(store, [tmp_path / "docs"], "notes")

    assert sorted(Path(source).name for source in report.indexed) == ["doc0.txt", "doc1.txt", "minutes.docx"]
    reasons = {Path(error.path).name: error.reason for error in report.errors}
    assert sorted(reasons) == ["bomb.pdf", "report.docx"]
    assert reasons["bomb.pdf"].startswith("not a readable PDF (LimitReachedError: ")
    assert reasons["report.docx"].startswith("not a valid DOCX file (XMLSyntaxError: ")
    assert {info.source for info in store.list_documents("notes")} == {
        *(str(path.resolve()) for path in good),
        str((tmp_path / "docs" / "minutes.docx").resolve()),
    }


def test_an_unexpected_parser_error_is_reported_with_its_type_and_logged(
    store: VectorStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def parser_with_a_bug(data: bytes, source: str) -> Any:
        raise AttributeError("'NoneType' object has no attribute 'text'")

    monkeypatch.setitem(loaders._LOADERS, ".html", ("html", parser_with_a_bug))
    good = write_corpus(tmp_path / "docs", 2)
    (tmp_path / "docs" / "page.html").write_text("<p>Insulin lowers glucose.</p>")

    report = index_paths(store, [tmp_path / "docs"], "notes")

    assert sorted(report.indexed) == sorted(str(path.resolve()) for path in good)
    assert [(Path(error.path).name, error.reason) for error in report.errors] == [
        (
            "page.html",
            "unexpected error while reading it (AttributeError: 'NoneType' object has no attribute 'text')",
        )
    ]
    (record,) = [record for record in caplog.records if record.levelname == "ERROR"]
    assert "page.html" in record.getMessage() and record.exc_info is not None


def test_reindexing_adds_nothing(store: VectorStore, tmp_path: Path) -> None:
    paths = write_corpus(tmp_path / "docs")
    first = index_paths(store, paths, "notes")

    second = index_paths(store, [tmp_path / "docs"], "notes")

    assert first.chunks_added == len(expected_ids(store, paths)) > 0
    assert (second.chunks_added, second.chunks_skipped) == (0, first.chunks_added)
    assert store.count("notes") == first.chunks_added


def test_progress_reports_files_and_chunks(store: VectorStore, tmp_path: Path) -> None:
    paths = write_corpus(tmp_path / "docs")
    reports: list[IndexProgress] = []

    report = index_paths(store, paths, "notes", progress=reports.append)

    last = reports[-1]
    assert (last.files_done, last.files_total, last.chunks_added, last.chunks_skipped, last.current) == (
        5,
        5,
        report.chunks_added,
        0,
        None,
    )
    assert last.chunks_total == report.chunks_added and last.fraction == 1.0 and last.eta_seconds == 0.0
    # Every file is read before the first chunk is written: the total is known from the first write on.
    writes = [progress for progress in reports if progress.chunks_added]
    assert writes and all(progress.chunks_total == report.chunks_added for progress in writes)
    assert all(progress.eta_seconds is not None for progress in writes)
    assert [progress.files_done for progress in reports] == sorted(
        progress.files_done for progress in reports
    )
    assert [progress.chunks_added for progress in reports] == sorted(
        progress.chunks_added for progress in reports
    )
    assert all(progress.files_total == 5 for progress in reports)


class Interrupted(Exception):
    """Raised by a progress callback to stop a run, as a user pressing Ctrl-C would."""


def test_a_run_stopped_half_way_resumes_and_stores_every_chunk_once(
    store: VectorStore, tmp_path: Path
) -> None:
    paths = write_corpus(tmp_path / "docs", 6)
    expected = expected_ids(store, paths)
    batches_seen = 0

    def stop_after_three_batches(progress: IndexProgress) -> None:
        nonlocal batches_seen
        if progress.chunks_added > batches_seen * store.batch_size:
            batches_seen += 1
        if batches_seen == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        index_paths(store, paths, "notes", progress=stop_after_three_batches)
    written = store.count("notes")
    assert 0 < written < len(expected)

    report = index_paths(store, paths, "notes")

    ids = stored_ids(store, "notes")
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    assert (report.chunks_added, report.chunks_skipped) == (len(expected) - written, written)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction
    from retrievals_rag.rag.indexing import index_paths
    from retrievals_rag.rag.store import VectorStore

    model, data, docs = sys.argv[1:4]
    store = VectorStore(data, embedding_function=ChromaEmbeddingFunction(model, device="cpu"),
                        chunk_size=24, chunk_overlap=4, batch_size=4)
    def kill_after_two_batches(progress):
        if progress.chunks_added >= 8:
            os.kill(os.getpid(), signal.SIGKILL)
    index_paths(store, [docs], "notes", progress=kill_after_two_batches)
    """
)


def test_a_killed_process_resumes_with_every_chunk_once(
    tmp_path: Path, tiny_bert_path: Path, tiny_function: Any
) -> None:
    paths = write_corpus(tmp_path / "docs", 6)
    data = tmp_path / "data"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tiny_bert_path), str(data), str(tmp_path / "docs")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert killed.returncode == -9, killed.stderr

    store = VectorStore(data, embedding_function=tiny_function, chunk_size=24, chunk_overlap=4, batch_size=4)
    written = store.count("notes")
    expected = expected_ids(store, paths)
    assert 8 <= written < len(expected)
    report = index_paths(store, [tmp_path / "docs"], "notes")

    ids = stored_ids(store, "notes")
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    assert report.chunks_skipped == written


def test_uploads_use_the_file_name_and_report_errors(store: VectorStore) -> None:
    files = [
        ("../../etc/notes.txt", b"Magma rises through the crust and erupts."),
        ("C:\\Users\\me\\report.html", b"<p>Insulin lowers glucose.</p><script>x()</script>"),
        ("photo.jpg", b"\xff\xd8\xff"),
    ]

    report = index_uploads(store, files, "uploads")

    assert report.indexed == ["notes.txt", "report.html"]
    assert [(error.path, error.reason.split(";")[0]) for error in report.errors] == [
        ("photo.jpg", "unsupported file type '.jpg'")
    ]
    assert [info.source for info in store.list_documents("uploads")] == ["notes.txt", "report.html"]
    assert index_uploads(store, files[:2], "uploads").chunks_added == 0


def test_index_documents_batches_across_documents(store: VectorStore) -> None:
    from retrievals_rag.rag.loaders import LoadedDocument, Page

    documents = [
        LoadedDocument(f"record-{index}", [Page(f"Record {index} about volcanoes.")]) for index in range(10)
    ]
    reports: list[IndexProgress] = []

    report = index_documents(store, iter(documents), "records", progress=reports.append)

    assert report.chunks_added == 10 == store.count("records")
    assert report.indexed == [document.source for document in documents]
    assert reports[-1].files_done == 10 and reports[-1].files_total is None


def test_expand_paths_skips_hidden_and_unsupported_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.png").write_bytes(b"png")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.txt").write_text("c")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.md").write_text("d")

    assert expand_paths([tmp_path]) == [tmp_path / "a.txt", tmp_path / "sub" / "d.md"]
    assert expand_paths([tmp_path], recursive=False) == [tmp_path / "a.txt"]
    assert expand_paths([tmp_path / "b.png"]) == [tmp_path / "b.png"]
    (tmp_path / "sub" / "Makefile").write_text("all:")
    assert unsupported_in_folders([tmp_path]) == {"": 1, ".png": 1}  # what expand_paths left out
    assert unsupported_in_folders([tmp_path], recursive=False) == {".png": 1}
    assert (
        unsupported_in_folders([tmp_path / "b.png"]) == {}
    )  # a file named is reported by the loader instead


def test_a_stopped_run_leaves_the_document_listed_as_partial_until_resumed(
    store: VectorStore, tmp_path: Path
) -> None:
    paths = write_corpus(tmp_path / "docs", 1)
    (expected,) = [len(store.split(load_document(path))) for path in paths]
    assert expected > store.batch_size  # more than one batch

    def stop_after_first_batch(progress: IndexProgress) -> None:
        if progress.chunks_added:
            raise Interrupted

    with pytest.raises(Interrupted):
        index_paths(store, paths, "notes", progress=stop_after_first_batch)
    (info,) = store.list_documents("notes")
    assert (info.chunk_count, info.expected_chunks, info.complete) == (store.batch_size, expected, False)

    report = index_paths(store, paths, "notes")

    (info,) = store.list_documents("notes")
    assert (info.chunk_count, info.expected_chunks, info.complete) == (expected, expected, True)
    assert [(result.chunks, result.added) for result in report.documents] == [
        (expected, expected - store.batch_size)
    ]


def test_identical_content_under_another_name_is_stored_once_with_both_names(store: VectorStore) -> None:
    text = b"Magma rises through the crust and erupts at the surface of a volcano."
    first = index_uploads(store, [("volcano.txt", text)], "notes")
    count = store.count("notes")

    second = index_uploads(store, [("copy of volcano.txt", text), ("same-run.txt", text)], "notes")

    assert first.chunks_added == count > 0
    assert second.chunks_added == 0 and store.count("notes") == count
    assert [(result.source, result.duplicate_of) for result in second.documents] == [
        ("copy of volcano.txt", "volcano.txt"),
        ("same-run.txt", "volcano.txt"),
    ]
    (info,) = store.list_documents("notes")
    assert (info.source, info.aliases) == ("volcano.txt", ("copy of volcano.txt", "same-run.txt"))

    # Deleting the stored name passes the chunks to the next name; deleting an alias removes only the name.
    assert store.delete_document("notes", "volcano.txt") == 0
    (info,) = store.list_documents("notes")
    assert (info.source, info.aliases, info.chunk_count) == ("copy of volcano.txt", ("same-run.txt",), count)
    assert store.delete_document("notes", "same-run.txt") == 0
    assert [(info.source, info.aliases) for info in store.list_documents("notes")] == [
        ("copy of volcano.txt", ())
    ]
    assert store.delete_document("notes", "copy of volcano.txt") == count
    assert store.list_documents("notes") == []


def test_a_deleted_documents_text_passes_to_its_other_name_with_that_names_file_name(
    store: VectorStore,
) -> None:
    """The chunks keep their ids (a collection's versions follow them by id) and take the next name's source,
    document id and file name (before: the file name stayed the deleted one's, shown in citations)."""
    text = b"Magma rises through the crust and erupts at the surface of a volcano. " * 20
    index_uploads(store, [("volcano.txt", text), ("copy.txt", text)], "notes")
    ids = set(stored_ids(store, "notes"))

    assert store.delete_document("notes", "volcano.txt") == 0

    assert set(stored_ids(store, "notes")) == ids
    expected = {key: value for key, value in store.split(load_bytes(text, "copy.txt"))[0].metadata().items()}
    for chunk in store.all_chunks("notes"):
        assert {key: chunk.metadata[key] for key in ("source", "document_id", "file_name")} == {
            key: expected[key] for key in ("source", "document_id", "file_name")
        }
    assert listing(store, "notes") == [("copy.txt", ())]
    assert store.delete_document("notes", "copy.txt") == len(ids)
    assert store.count("notes") == 0


def test_a_changed_file_replaces_its_chunks_and_an_unchanged_one_writes_nothing(
    store: VectorStore, tmp_path: Path
) -> None:
    paths = write_corpus(tmp_path / "docs", 2)
    index_paths(store, paths, "notes")
    old = load_document(paths[0])
    # The new text starts as the old one did, so its first chunk keeps its id, and it has fewer chunks.
    paths[0].write_text(paths[0].read_text().split("\n\n")[0] + "\n\nEdited. " + TOPICS["insulin"])
    new = load_document(paths[0])
    shared = {chunk.id for chunk in store.split(old)} & {chunk.id for chunk in store.split(new)}
    assert shared and len(store.split(new)) < len(store.split(old))

    report = index_paths(store, paths, "notes")

    assert set(stored_ids(store, "notes")) == expected_ids(store, paths)
    assert stored_texts(store, "notes")[new.source] == split_texts(store, new)
    info = next(info for info in store.list_documents("notes") if info.source == new.source)
    assert (info.chunk_count, info.expected_chunks, info.complete) == (
        len(store.split(new)),
        len(store.split(new)),
        True,
    )
    assert store.source_with_content("notes", content_sha(old)) is None
    assert sorted(report.indexed) == sorted(str(path.resolve()) for path in paths)

    revision = store.revision("notes")
    again = index_paths(store, paths, "notes")

    assert (again.chunks_added, store.revision("notes")) == (0, revision)


def test_a_changed_file_keeps_its_old_chunks_until_its_new_ones_are_written(
    store: VectorStore, tmp_path: Path
) -> None:
    (path,) = write_corpus(tmp_path / "docs", 1)
    index_paths(store, [path], "notes")
    old = set(stored_ids(store, "notes"))
    path.write_text("\n\n".join(f"Edited part {part}. {TOPICS['volcano']}" for part in range(8)))
    assert len(store.split(load_document(path))) > store.batch_size

    def stop_after_first_batch(progress: IndexProgress) -> None:
        if progress.chunks_added:
            raise Interrupted

    with pytest.raises(Interrupted):
        index_paths(store, [path], "notes", progress=stop_after_first_batch)
    assert old <= set(stored_ids(store, "notes"))
    # Listed by its new text, partial (before: the old and new chunks counted together, "complete").
    (info,) = store.list_documents("notes")
    new_count = len(store.split(load_document(path)))
    assert (info.chunk_count, info.expected_chunks, info.complete) == (store.batch_size, new_count, False)

    index_paths(store, [path], "notes")

    assert set(stored_ids(store, "notes")) == expected_ids(store, [path])
    (info,) = store.list_documents("notes")
    assert (info.chunk_count, info.expected_chunks, info.complete) == (new_count, new_count, True)


def test_an_edited_alias_becomes_a_document_of_its_own_listed_once(store: VectorStore) -> None:
    volcano = b"Magma rises through the crust and erupts at the surface of a volcano."
    insulin = b"Insulin is a hormone made by the pancreas that lowers blood glucose."
    index_uploads(store, [("volcano.txt", volcano), ("copy.txt", volcano)], "notes")

    index_uploads(store, [("copy.txt", insulin)], "notes")

    assert listing(store, "notes") == [("copy.txt", ()), ("volcano.txt", ())]
    assert stored_texts(store, "notes") == {
        "copy.txt": split_texts(store, load_bytes(insulin, "copy.txt")),
        "volcano.txt": split_texts(store, load_bytes(volcano, "volcano.txt")),
    }


def test_an_edited_document_leaves_its_old_text_to_its_other_names(store: VectorStore) -> None:
    old = b"Magma rises through the crust and erupts at the surface of a volcano."
    new = b"Magma rises through the crust. Edited: the volcano is dormant now."
    files = [("volcano.txt", old), ("copy.txt", old), ("backup.txt", old)]
    index_uploads(store, files, "notes")

    index_uploads(store, [("volcano.txt", new)], "notes")

    assert listing(store, "notes") == [("copy.txt", ("backup.txt",)), ("volcano.txt", ())]
    assert stored_texts(store, "notes") == {
        "copy.txt": split_texts(store, load_bytes(old, "copy.txt")),
        "volcano.txt": split_texts(store, load_bytes(new, "volcano.txt")),
    }
    assert index_uploads(store, files[1:], "notes").chunks_added == 0  # the copy is under its own ids


def test_a_document_edited_to_the_text_of_another_becomes_its_other_name(store: VectorStore) -> None:
    volcano = b"Magma rises through the crust and erupts at the surface of a volcano."
    insulin = b"Insulin is a hormone made by the pancreas that lowers blood glucose."
    files = [("volcano.txt", volcano), ("insulin.txt", insulin), ("insulin copy.txt", insulin)]
    index_uploads(store, files, "notes")

    index_uploads(store, [("insulin.txt", volcano)], "notes")

    assert listing(store, "notes") == [("insulin copy.txt", ()), ("volcano.txt", ("insulin.txt",))]
    assert stored_texts(store, "notes") == {
        "insulin copy.txt": split_texts(store, load_bytes(insulin, "insulin copy.txt")),
        "volcano.txt": split_texts(store, load_bytes(volcano, "volcano.txt")),
    }


@pytest.mark.parametrize("copy_first", [False, True], ids=["edit-first", "copy-first"])
def test_the_old_text_of_a_file_edited_in_the_same_run_is_kept_under_another_name(
    store: VectorStore, copy_first: bool
) -> None:
    old = b"Magma rises through the crust and erupts at the surface of a volcano."
    new = b"Insulin is a hormone made by the pancreas that lowers blood glucose."
    index_uploads(store, [("report.txt", old)], "notes")
    files = [("report.txt", new), ("report-backup.txt", old)]

    index_uploads(store, files[::-1] if copy_first else files, "notes")

    assert listing(store, "notes") == [("report-backup.txt", ()), ("report.txt", ())]
    assert stored_texts(store, "notes") == {
        "report-backup.txt": split_texts(store, load_bytes(old, "report-backup.txt")),
        "report.txt": split_texts(store, load_bytes(new, "report.txt")),
    }


def test_a_name_given_twice_in_one_run_is_indexed_once_or_reported(
    store: VectorStore, tmp_path: Path
) -> None:
    """Before, `index docs/ docs/doc0.txt` or two uploads of one name raised KeyError in the batch writer and
    stopped the run."""
    paths = write_corpus(tmp_path / "docs", n_files=2)

    report = index_paths(store, [tmp_path / "docs", paths[0]], "twice")

    assert sorted(report.indexed) == sorted(str(path.resolve()) for path in paths)
    assert report.errors == []
    assert set(stored_ids(store, "twice")) == expected_ids(store, paths)

    uploads = [
        ("notes.txt", b"Magma rises through the crust and erupts."),
        ("other/notes.txt", b"Insulin lowers blood glucose after a meal."),
        ("notes.txt", b"Magma rises through the crust and erupts."),
    ]
    report = index_uploads(store, uploads, "uploads")

    assert report.indexed == ["notes.txt"]
    assert [(error.path, error.reason) for error in report.errors] == [
        (
            "notes.txt",
            "another file of this run has the same name, with another text: it was not indexed; "
            "rename one of them",
        )
    ]
    assert stored_texts(store, "uploads") == {"notes.txt": ["Magma rises through the crust and erupts."]}
