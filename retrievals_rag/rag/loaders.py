"""Load a user's file into plain text pages: PDF, text, Markdown, HTML, DOCX, CSV and JSON lines.

:func:`load_document` reads a path, :func:`load_bytes` an upload (its bytes and file name). Both return a
:class:`LoadedDocument` whose pages keep their page numbers where the format has pages (PDF), or raise a
:class:`DocumentLoadError` that names the file and the reason: an unsupported type, a file over the size limit,
a PDF without extractable text, bytes that decode to no known encoding, binary junk, a corrupt PDF or DOCX
(whatever its parser raised, named), a line of JSON that is not valid.

Parsers are imported when a file of their type is loaded (pypdf, python-docx, BeautifulSoup,
charset-normalizer), so importing this module costs nothing.

Example:
    >>> document = load_bytes(b"Dense retrieval maps text to vectors.", "notes.txt")
    >>> document.pages[0].text
    'Dense retrieval maps text to vectors.'
    >>> document.metadata["file_type"]
    'text'
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from retrievals_rag.rag.text_decoding import DocumentLoadError, decode_text

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SUPPORTED_EXTENSIONS",
    "DocumentLoadError",
    "LoadedDocument",
    "Page",
    "UnsafePathError",
    "decode_text",
    "display_name",
    "load_bytes",
    "load_document",
    "safe_upload_path",
]

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""Files larger than this (50 MiB) are refused unless a larger ``max_bytes`` is given."""


class UnsafePathError(ValueError):
    """A file name that would place a file outside the folder it belongs in."""


@dataclass(frozen=True)
class Page:
    """The text of one page (PDF) or of a whole file (other formats).

    Attributes:
        text: The page's text.
        page_number: 1-based page number in formats that have pages; None otherwise.
    """

    text: str
    page_number: int | None = None


@dataclass(frozen=True)
class LoadedDocument:
    """A file turned into text.

    Attributes:
        source: What the file is called where it is shown and deleted: the upload's file name or the path.
        pages: Its pages with text, in order (at least one).
        metadata: ``file_type`` and what the format tells (``title``, ``n_pages``...): str, int or float values.
    """

    source: str
    pages: list[Page]
    metadata: dict[str, str | int | float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """All pages' text, separated by blank lines."""
        return "\n\n".join(page.text for page in self.pages)


# ---------------------------------------------------------------------------------------------- per format
# What the parsers (pypdf, python-docx and the zip and zlib modules under it) raise besides their own errors
# when a file is malformed: a truncated stream, a wrong type where a dictionary was expected, a missing key, a
# reference loop. Anything else reaches the indexing run, which reports it by file name and exception type.
_MALFORMED_INPUT_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # UnicodeDecodeError, binascii.Error and many parse errors among them
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    OSError,
    EOFError,
    RecursionError,
    zlib.error,
    struct.error,
)


def _load_text(data: bytes, source: str) -> tuple[list[Page], dict[str, Any]]:
    return [Page(decode_text(data, source))], {}


def _load_pdf(data: bytes, source: str) -> tuple[list[Page], dict[str, Any]]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentLoadError(source, "the PDF is encrypted with a password")
        pages = [
            Page(text, number)
            for number, page in enumerate(reader.pages, start=1)
            if (text := (page.extract_text() or "").strip())
        ]
        n_pages = len(reader.pages)
        title = (reader.metadata or {}).get("/Title") if reader.metadata is not None else None
    except DocumentLoadError:
        raise
    except (PyPdfError, *_MALFORMED_INPUT_ERRORS) as error:
        raise DocumentLoadError(source, f"not a readable PDF ({type(error).__name__}: {error})") from error
    if not pages:
        raise DocumentLoadError(
            source,
            f"no extractable text in its {n_pages} page(s): an empty or image-only (scanned) PDF; "
            "run OCR on it first",
        )
    metadata: dict[str, Any] = {"n_pages": n_pages}
    if isinstance(title, str) and title.strip():
        metadata["title"] = title.strip()
    return pages, metadata


# Elements that start a paragraph of their own (a blank line around them) and those that start a line: the rest
# (a, b, em, span, code...) is inline, part of the words and sentences around it.
_HTML_BLOCKS = frozenset(
    "address article aside blockquote body caption center details dialog dd div dl dt fieldset figcaption "
    "figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li main menu nav ol p pre section "
    "summary table tbody tfoot thead tr ul".split()
)
_HTML_LINES = frozenset({"td", "th", "option"})


def _load_html(data: bytes, source: str) -> tuple[list[Page], dict[str, Any]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data, source), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title is not None else ""
    for element in soup(["script", "style", "noscript", "template", "head", "svg"]):
        element.decompose()
    lines = (line.strip() for line in _html_text(soup).split("\n"))
    text = _collapse_blank_lines(lines)
    metadata: dict[str, Any] = {"title": title} if title else {}
    return [Page(text)], metadata


def _html_text(root: Any) -> str:
    """The text of an HTML tree as a browser lays it out: inline elements joined to the words around them, a
    blank line around each block element, a line break for ``<br>`` and around table cells, white space
    collapsed to one space except in ``<pre>``. Walked with a stack, so that deep nesting costs no recursion."""
    from bs4 import CData, NavigableString, Tag

    parts: list[str] = []
    pending = ""  # the widest break asked for since the last text: "", "\n" or "\n\n"
    in_pre = 0
    end_of_pre = object()
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if node is end_of_pre:
            in_pre -= 1
        elif isinstance(node, str) and not isinstance(node, NavigableString):  # a break pushed below
            pending = max(pending, node, key=len)
        elif isinstance(node, NavigableString):
            if type(node) not in (NavigableString, CData):  # a comment, doctype or processing instruction
                continue
            text = str(node) if in_pre else re.sub(r"\s+", " ", node)
            if not text.strip() and (pending or not in_pre):  # white space between blocks, or beside a break
                if not pending:
                    parts.append(" ")
                continue
            parts.extend((pending, text))
            pending = ""
        elif isinstance(node, Tag):
            name = node.name.lower()
            if name == "br":  # two in a row leave a blank line
                pending = (pending + "\n")[:2]
                continue
            separator = "\n\n" if name in _HTML_BLOCKS else "\n" if name in _HTML_LINES else ""
            pending = max(pending, separator, key=len)
            if name == "pre":
                in_pre += 1
                stack.append(end_of_pre)
            stack.append(separator)  # its end
            stack.extend(reversed(node.contents))
    return "".join(parts)


def _load_docx(data: bytes, source: str) -> tuple[list[Page], dict[str, Any]]:
    from zipfile import BadZipFile

    import docx
    from docx.exceptions import PythonDocxError
    from docx.opc.exceptions import OpcError
    from docx.table import Table
    from lxml.etree import LxmlError

    try:  # python-docx parses the XML parts as it opens the file, and reads elements as they are iterated
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    cells = [cell.text.strip() for cell in row.cells]
                    if any(cells):
                        blocks.append(" | ".join(cells))
            elif item.text.strip():
                blocks.append(item.text.strip())
        title = document.core_properties.title
    except (BadZipFile, LxmlError, OpcError, PythonDocxError, *_MALFORMED_INPUT_ERRORS) as error:
        raise DocumentLoadError(source, f"not a valid DOCX file ({type(error).__name__}: {error})") from error
    metadata: dict[str, Any] = {"title": title} if title else {}
    return [Page("\n\n".join(blocks))], metadata


def _load_csv(data: bytes, source: str) -> tuple[list[Page], dict[str, Any]]:
    text = decode_text(data, source)
    sample = text[:65_536]
    sniffer = csv.Sniffer()
    try:
        dialect: type[csv.Dialect] | csv.Dialect = sniffer.sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if source.lower().endswith(".tsv") else csv.excel
    try:
        has_header = sniffer.has_header(sample)
    except csv.Error:
        has_header = True
    try:
        rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise DocumentLoadError(source, f"not a readable CSV file ({error})") from error
    has_header = has_header or _names_columns(rows)
    if has_header and rows:
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
    else:
        header = []
    records: list[str] = []
    for row in rows:
        names = [header[i] if i < len(header) and header[i] else f"column {i + 1}" for i in range(len(row))]
        lines = [f"{name}: {value.strip()}" for name, value in zip(names, row, strict=True) if value.strip()]
        records.append("\n".join(lines))
    return [Page("\n\n".join(records))], {"n_rows": len(rows)}


def _names_columns(rows: list[list[str]]) -> bool:
    """Whether the first row names the columns of a file whose columns are all text, where ``csv.Sniffer``
    finds no evidence (it compares the first row's types and lengths with those of columns of numbers or of
    fixed-length values): its cells are non-empty, short, unique, no number, none of them found in the rows
    below, and in at least one column every value has more words than the cell above it (``description`` over
    sentences). A file of all-text rows whose first row is like the others is data."""
    names = [cell.strip() for cell in rows[0]] if len(rows) > 1 else []
    if not names or not all(names) or len({name.casefold() for name in names}) < len(names):
        return False
    if any(len(name) > 40 or re.fullmatch(r"[-+]?[\d.,\s]+", name) for name in names):
        return False
    data = rows[1:51]
    if {name.casefold() for name in names} & {cell.strip().casefold() for row in data for cell in row}:
        return False
    for index, name in enumerate(names):
        values = [row[index].strip() for row in data if index < len(row) and row[index].strip()]
        if values and all(len(value.split()) > len(name.split()) for value in values):
            return True
    return False


def _load_jsonl(data: bytes, source: str) -> tuple[list[Page], dict[str, Any]]:
    records: list[str] = []
    # "\n" alone ends a line (decode_text made every line end one): str.splitlines would also split at U+2028,
    # U+2029 and U+0085, which JSON allows unescaped inside a string.
    for line_number, line in enumerate(decode_text(data, source).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(
                line, parse_int=_JsonNumber, parse_float=_JsonNumber, parse_constant=_JsonNumber
            )
            text = _record_text(record)
        except json.JSONDecodeError as error:
            raise DocumentLoadError(source, f"line {line_number} is not valid JSON ({error.msg})") from None
        except RecursionError:
            raise DocumentLoadError(source, f"line {line_number} nests too deeply") from None
        if text:
            records.append(text)
    return [Page("\n\n".join(records))], {"n_records": len(records)}


class _JsonNumber(str):
    """A JSON number as the file writes it (``24.50`` stays ``24.50``, as in a CSV cell)."""


def _record_text(record: Any, key: str | None = None) -> str:
    """A JSON record's values, one a line: strings as they are, numbers and booleans after their key as in a CSV
    record (``price_eur: 24.50``, ``in_stock: true``; the items of a list take the list's key; a value with no
    key alone); id fields (``id``, ``_id``, ``*_id``) and nulls left out."""
    if isinstance(record, _JsonNumber | bool):
        value = str(record) if isinstance(record, _JsonNumber) else json.dumps(record)
        return f"{key}: {value}" if key is not None else value
    if isinstance(record, str):
        return record.strip()
    if isinstance(record, list):
        return "\n".join(text for item in record if (text := _record_text(item, key)))
    if isinstance(record, dict):
        parts = [
            text
            for name, value in record.items()
            if not (name in ("id", "_id") or name.endswith("_id"))
            if (text := _record_text(value, name))
        ]
        return "\n".join(parts)
    return ""


def _collapse_blank_lines(lines: Any) -> str:
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_LOADERS: dict[str, tuple[str, Callable[[bytes, str], tuple[list[Page], dict[str, Any]]]]] = {
    ".pdf": ("pdf", _load_pdf),
    ".txt": ("text", _load_text),
    ".text": ("text", _load_text),
    ".md": ("markdown", _load_text),
    ".markdown": ("markdown", _load_text),
    ".rst": ("text", _load_text),
    ".html": ("html", _load_html),
    ".htm": ("html", _load_html),
    ".docx": ("docx", _load_docx),
    ".csv": ("csv", _load_csv),
    ".tsv": ("csv", _load_csv),
    ".jsonl": ("jsonl", _load_jsonl),
    ".ndjson": ("jsonl", _load_jsonl),
}

SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(sorted(_LOADERS))
"""File name extensions :func:`load_bytes` knows, lower case, with the dot."""


# ---------------------------------------------------------------------------------------------- public API
def load_bytes(
    data: bytes, file_name: str, *, source: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> LoadedDocument:
    """Load an uploaded file from its bytes; its type comes from the file name's extension.

    Args:
        data: The file's content.
        file_name: Its name (only the extension and the last path component are used).
        source: The document's name in the store; None: the last component of ``file_name``.
        max_bytes: Refuse larger files; None: no limit.

    Returns:
        The document, with at least one page of non-blank text.

    Raises:
        DocumentLoadError: On an unsupported extension, a file over ``max_bytes``, or a file with no text.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    name = source if source is not None else display_name(file_name)
    extension = _extension(file_name)
    if extension not in _LOADERS:
        raise DocumentLoadError(
            name,
            f"unsupported file type {extension or '(no extension)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}",
        )
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentLoadError(name, f"{len(data):,} bytes is over the {max_bytes:,}-byte limit")
    file_type, loader = _LOADERS[extension]
    pages, metadata = loader(data, name)
    pages = [page for page in pages if page.text.strip()]
    if not pages:
        raise DocumentLoadError(name, f"no text found in this {file_type} file")
    return LoadedDocument(
        source=name,
        pages=pages,
        metadata={"file_type": file_type, "file_name": display_name(file_name), **metadata},
    )


def load_document(
    path: str | os.PathLike[str], *, source: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> LoadedDocument:
    """Load a file from disk.

    Args:
        path: The file.
        source: The document's name in the store; None: the absolute path, so that the same file indexed
            from another working directory is the same document.
        max_bytes: Refuse larger files; None: no limit.

    Raises:
        DocumentLoadError: As :func:`load_bytes`, and when the file cannot be read.
    """
    file_path = Path(path)
    name = source if source is not None else str(file_path.resolve())
    extension = _extension(file_path.name)
    if extension not in _LOADERS:  # before reading: the file may be large
        raise DocumentLoadError(
            name,
            f"unsupported file type {extension or '(no extension)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}",
        )
    try:
        size = file_path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise DocumentLoadError(name, f"{size:,} bytes is over the {max_bytes:,}-byte limit")
        data = file_path.read_bytes()
    except OSError as error:
        raise DocumentLoadError(name, f"cannot read the file ({error.strerror or error})") from error
    return load_bytes(data, file_path.name, source=name, max_bytes=max_bytes)


def display_name(file_name: str) -> str:
    """The last component of a file name given by a browser or a user (``/`` and ``\\`` both separate)."""
    last = PureWindowsPath(PurePosixPath(file_name).name).name
    cleaned = "".join(character for character in last if character.isprintable()).strip()
    return cleaned or "unnamed"


def safe_upload_path(data_dir: str | os.PathLike[str], name: str) -> Path:
    """The path of the file ``name`` inside ``data_dir``, refusing any name that could leave it.

    Refused: empty names, absolute paths (``/etc/passwd``, ``C:\\x``, ``\\\\server\\share``), any ``..``
    component with either separator (``../x``, ``..\\x``), NUL or control characters, and names whose resolved
    path (symbolic links followed) is not inside ``data_dir``.

    Args:
        data_dir: The folder uploads are written into.
        name: The file name as the user gave it; sub-folders (``a/b.txt``) are allowed.

    Returns:
        The resolved path, inside the resolved ``data_dir``.

    Raises:
        UnsafePathError: On any name above.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnsafePathError(f"an empty file name is not allowed: {name!r}")
    if any(not character.isprintable() for character in name):
        raise UnsafePathError(f"file name {name!r} contains control characters")
    windows = PureWindowsPath(name)
    if PurePosixPath(name).is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise UnsafePathError(f"file name {name!r} is an absolute path; give a plain file name")
    parts = re.split(r"[\\/]", name)
    if any(part == ".." for part in parts):
        raise UnsafePathError(f"file name {name!r} contains '..': it would leave the upload folder")
    root = Path(data_dir).resolve()
    target = root.joinpath(*[part for part in parts if part not in ("", ".")]).resolve()
    if target == root or not target.is_relative_to(root):
        raise UnsafePathError(f"file name {name!r} resolves to {target}, outside {root}")
    return target


def _extension(file_name: str) -> str:
    return PurePosixPath(display_name(file_name)).suffix.lower()
