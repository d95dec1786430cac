"""Display helpers shared by the app's pages (``app.py`` and ``versions_panel.py``): text from documents, file
names and errors is shown as text, never as markdown or HTML."""

from __future__ import annotations

import re
from collections.abc import Iterator

import streamlit as st

POLL_SECONDS = 1.0
"""How often a panel that shows a running job redraws itself."""
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")
_MAX_ERROR_CHARS = 400


def plain(text: str) -> str:
    """``text`` with every markdown (and HTML) character escaped, so that markdown shows it as it is."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def escaped_stream(pieces: Iterator[str]) -> Iterator[str]:
    """The answer's pieces with markdown escaped (escaping is per character, so pieces can be escaped alone)."""
    for piece in pieces:
        yield plain(piece)


def short(error: BaseException | str) -> str:
    """An error's message, cut to a readable length, never a traceback."""
    message = (str(error).strip() or type(error).__name__) if isinstance(error, BaseException) else error
    return message if len(message) <= _MAX_ERROR_CHARS else message[:_MAX_ERROR_CHARS] + " …"


def show_error(what: str, error: BaseException | str) -> None:
    st.error(plain(f"{what}: {short(error)}"))


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 2 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def ask_confirmation(what: tuple[str, ...]) -> None:
    """Remember what the next click of "Yes, delete" confirms (a button's callback)."""
    st.session_state["confirm"] = what
