"""``retrievals-rag app``: run the Streamlit RAG app (``apps/app.py``) on this machine."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from retrievals_rag.cli.index import default_data_dir
from retrievals_rag.rag.answer_modes import DEFAULT_LLM, LLM_CHOICES


def app_path() -> Path:
    """``apps/app.py`` beside the package (the project is installed editable, from its checkout).

    Raises:
        FileNotFoundError: When the app is not there (a wheel install has no ``apps/`` folder).
    """
    import retrievals_rag

    path = Path(retrievals_rag.__file__).resolve().parents[1] / "apps" / "app.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"the Streamlit app is not at {path}: run `retrievals-rag app` from an editable install of the "
            "project's checkout (pip install -e '.[app]'), or `streamlit run path/to/apps/app.py`"
        )
    return path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "app",
        help="run the Streamlit RAG app",
        description="Run the Streamlit app that indexes your documents and chats over them (headless: open "
        "http://HOST:PORT in a browser). Each option sets the environment variable named in its help, which "
        "the app reads; the local SmolLM2 is converted once per machine, in $RETRIEVALS_RAG_CACHE (default "
        "~/.cache/retrievals_rag).",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the engine's folder; default: $RETRIEVALS_RAG_DATA_DIR or ./rag-data",
    )
    parser.add_argument(
        "--chroma-url",
        default=None,
        help="a Chroma server (http://127.0.0.1:8000) instead of the embedded database; "
        "default: $RETRIEVALS_RAG_CHROMA_URL, else the embedded one",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8501, help="port (default: 8501)")
    parser.add_argument(
        "--llm",
        choices=LLM_CHOICES,
        default=None,
        help="the answer mode selected at start: smollm2 (SmolLM2's answers checked against the sources, the "
        "sources quoted when they do not support them), openai (an OpenAI-compatible server, checked the same "
        f"way) or extractive (no LLM); default: $RETRIEVALS_RAG_LLM, else {DEFAULT_LLM}",
    )
    parser.add_argument(
        "--llm-base-url",
        default=None,
        help="API root of an OpenAI-compatible server for --llm openai, e.g. http://127.0.0.1:11434/v1 "
        "(Ollama); default: $RETRIEVALS_RAG_LLM_BASE_URL, else http://127.0.0.1:11434/v1",
    )
    parser.add_argument(
        "--llm-model",
        default=None,
        help="the model name that server knows, for --llm openai; default: $RETRIEVALS_RAG_LLM_MODEL",
    )
    parser.add_argument(
        "--llm-api-key",
        default=None,
        help="bearer token for that server, if it wants one; default: $RETRIEVALS_RAG_LLM_API_KEY, else none "
        "(prefer the variable: a command line is visible to other users)",
    )
    parser.add_argument(
        "--embedder",
        default=None,
        help="embedder folder shown in the settings; default: $RETRIEVALS_RAG_EMBEDDER, else the packaged "
        "all-MiniLM-L6-v2",
    )
    parser.add_argument(
        "--reranker",
        default=None,
        help="reranker folder shown in the settings, or query-likelihood (the local SmolLM2's query likelihood, "
        "no training); default: $RETRIEVALS_RAG_RERANKER, else no reranking",
    )
    parser.set_defaults(handler=run)


def command(args: argparse.Namespace) -> list[str]:
    """The ``streamlit run`` command line."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.headless",
        "true",
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        "--browser.gatherUsageStats",
        "false",
    ]


def environment(args: argparse.Namespace) -> dict[str, str]:
    """This process's environment with the app's settings."""
    env = dict(os.environ)
    env["RETRIEVALS_RAG_DATA_DIR"] = str(Path(args.data_dir or default_data_dir()).resolve())
    for name, value in (
        ("RETRIEVALS_RAG_CHROMA_URL", args.chroma_url),
        ("RETRIEVALS_RAG_LLM", args.llm),
        ("RETRIEVALS_RAG_EMBEDDER", args.embedder),
        ("RETRIEVALS_RAG_RERANKER", args.reranker),
        ("RETRIEVALS_RAG_LLM_BASE_URL", args.llm_base_url),
        ("RETRIEVALS_RAG_LLM_MODEL", args.llm_model),
        ("RETRIEVALS_RAG_LLM_API_KEY", args.llm_api_key),
    ):
        if value:
            env[name] = value
    return env


def run(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("streamlit") is None:
        raise OSError("the app needs streamlit: pip install 'retrievals-rag[app]'")
    argv = command(args)
    env = environment(args)
    print(f"serving the app on http://{args.host}:{args.port} (Ctrl+C stops it)", file=sys.stderr, flush=True)
    if os.name == "posix":  # become streamlit: signals reach it, no orphan is left behind
        os.execve(sys.executable, argv, env)
    return subprocess.call(argv, env=env)
