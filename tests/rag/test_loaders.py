"""Loaders: each format from a small file made here, encodings, and the errors that name file and reason."""

from __future__ import annotations

import codecs
import io
import json
import struct
from pathlib import Path

import pytest

from retrievals_rag.rag.loaders import (
    SUPPORTED_EXTENSIONS,
    DocumentLoadError,
    UnsafePathError,
    decode_text,
    load_bytes,
    load_document,
    safe_upload_path,
)
from tests.rag.conftest import make_docx_with_broken_xml, make_pdf, make_pdf_over_a_parser_limit


def test_plain_text_and_markdown() -> None:
    document = load_bytes(b"# Title\n\nDense retrieval maps text to vectors.\n", "notes.md")

    assert document.source == "notes.md"
    assert document.metadata["file_type"] == "markdown"
    assert [page.page_number for page in document.pages] == [None]
    assert "Dense retrieval maps text to vectors." in document.pages[0].text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("café naïve".encode(), "café naïve"),
        (codecs.BOM_UTF8 + "café naïve".encode(), "café naïve"),
        ("café naïve".encode("utf-16"), "café naïve"),  # with its BOM
        (codecs.BOM_UTF16_BE + "café naïve".encode("utf-16-be"), "café naïve"),
        (
            "Привет, как дела? Это простой тест кодировки.".encode("cp1251"),
            "Привет, как дела? Это простой тест кодировки.",
        ),
        # legacy Windows files of Western and Central Europe: charset-normalizer alone reads the first two as
        # Windows-1250 ("nińa, żverdad?"); 1252 wins a near tie, and real 1250 text stays 1250
        *[
            (text.encode(encoding), text)
            for text, encoding in (
                (
                    "La niña comió piñata en el año pasado, ¿verdad? Sí, señor. El pingüino está en la montaña.",
                    "cp1252",
                ),
                ("A informação está disponível na seção de ações. Não há solução para o coração.", "cp1252"),
                ("Příliš žluťoučký kůň úpěl ďábelské ódy. Děkuji za vaši pomoc, přátelé.", "cp1250"),
                ("Zażółć gęślą jaźń. Wczoraj byłem w sklepie i kupiłem chleb dla córki.", "cp1250"),
                # charset-normalizer alone reads Turkish as 1252: "baþkenti Ankara'dýr"
                (
                    "Türkiye'nin başkenti Ankara'dır. Işık, ağaç, değişiklik, İstanbul şehri güzeldir. "
                    "Öğrenciler okula gidiyor.",
                    "cp1254",
                ),
                ("Türkiye'nin başkenti Ankara'dır. Işık, ağaç ve değişiklik.", "iso8859_9"),
                ("Það er gott að búa á Íslandi. Þú ert ýmislegt að gera þar í dag og á morgun.", "cp1252"),
            )
        ],
    ],
    ids=[
        "utf-8",
        "utf-8-bom",
        "utf-16-le-bom",
        "utf-16-be-bom",
        "cp1251-detected",
        "cp1252-spanish",
        "cp1252-portuguese",
        "cp1250-czech",
        "cp1250-polish",
        "cp1254-turkish",
        "iso8859-9-turkish",
        "cp1252-icelandic",
    ],
)
def test_encodings_are_detected(data: bytes, expected: str) -> None:
    assert decode_text(data, "x.txt") == expected
    assert load_bytes(data, "x.txt").pages[0].text == expected


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_text(encoding: str) -> None:
    text = "Grüße aus Köln: the café opens at 8 am.\nLe menu coûte 12 €."

    assert load_bytes(text.encode(encoding), "notes.txt").pages[0].text == text


def test_undecodable_bytes_are_an_error_naming_the_file() -> None:
    with pytest.raises(DocumentLoadError, match=r"^broken\.txt: cannot decode") as caught:
        load_bytes(bytes(range(128, 256)) * 3, "broken.txt")

    assert caught.value.source == "broken.txt"


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04\x00\x00binary\x00\x00content",
        "".join(chr(c) for c in range(1, 32) if chr(c) not in "\n\r\t\f\v").encode() * 20,
    ],
    ids=["nul-bytes", "control-characters"],
)
def test_binary_junk_is_refused(data: bytes) -> None:
    with pytest.raises(DocumentLoadError, match=r"junk\.txt: looks like a binary file"):
        load_bytes(data, "junk.txt")


def test_binary_shaped_like_utf16_is_refused() -> None:
    """16-bit little-endian numbers have a NUL in every other byte, as Latin text in UTF-16 does, but decode
    to control characters."""
    data = struct.pack("<400H", *range(400))

    with pytest.raises(DocumentLoadError, match=r"samples\.txt: looks like a binary file"):
        load_bytes(data, "samples.txt")


def test_html_keeps_text_and_drops_scripts_and_styles() -> None:
    html = b"""<html><head><title>Insulin facts</title><style>body { color: red }</style></head>
    <body><h1>Insulin</h1><script>var secret = "do not index";</script>
    <p>Insulin lowers blood glucose.</p><noscript>enable javascript</noscript></body></html>"""

    document = load_bytes(html, "page.html")

    text = document.pages[0].text
    assert "Insulin lowers blood glucose." in text
    assert "secret" not in text
    assert "color" not in text
    assert "javascript" not in text
    assert document.metadata["title"] == "Insulin facts"


def test_html_inline_elements_do_not_split_words_or_sentences() -> None:
    html = b"""<body><nav><a href="/">Home</a> | <a href="/menu">Menu</a></nav>
    <h1>Our co<b>ffee</b></h1><p>Read <a href="/beans">the bean guide</a> in a sentence,
    then <em>taste</em>.</p><div>First line<br>second line</div>
    <ul><li>Espresso</li><li>Flat <i>white</i></li></ul>
    <table><tr><th>size</th><td>small</td></tr></table><pre>  a = 1
  b = 2</pre></body>"""

    text = load_bytes(html, "cafe.html").pages[0].text

    assert text.split("\n\n") == [
        "Home | Menu",
        "Our coffee",
        "Read the bean guide in a sentence, then taste.",
        "First line\nsecond line",
        "Espresso",
        "Flat white",
        "size\nsmall",
        "a = 1\nb = 2",
    ]


def test_docx_paragraphs_and_tables() -> None:
    import docx

    word = docx.Document()
    word.core_properties.title = "Report"
    word.add_heading("Results", level=1)
    word.add_paragraph("The treatment lowered the risk.")
    table = word.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "group", "risk"
    table.cell(1, 0).text, table.cell(1, 1).text = "treated", "0.2"
    buffer = io.BytesIO()
    word.save(buffer)

    document = load_bytes(buffer.getvalue(), "report.docx")

    assert document.pages[0].text.split("\n\n") == [
        "Results",
        "The treatment lowered the risk.",
        "group | risk",
        "treated | 0.2",
    ]
    assert document.metadata["title"] == "Report"


def test_corrupt_docx_is_an_error() -> None:
    with pytest.raises(DocumentLoadError, match=r"report\.docx: not a valid DOCX"):
        load_bytes(b"this is not a zip file at all", "report.docx")


def test_docx_with_broken_xml_is_an_error_naming_the_file_and_the_reason() -> None:
    with pytest.raises(DocumentLoadError, match=r"^report\.docx: not a valid DOCX file \(XMLSyntaxError: "):
        load_bytes(make_docx_with_broken_xml(), "report.docx")


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_csv_rows_become_column_value_lines(delimiter: str) -> None:
    rows = [["name", "city", "age"], ["Ada", "London", "36"], ["Alan", "", "41"]]
    data = "\n".join(delimiter.join(row) for row in rows).encode()

    document = load_bytes(data, "people.csv")

    assert document.pages[0].text == "name: Ada\ncity: London\nage: 36\n\nname: Alan\nage: 41"
    assert document.metadata["n_rows"] == 2


def test_csv_header_of_text_columns_is_recognised() -> None:
    data = (
        b"name,description\n"
        b"Widget,A small widget for the kitchen drawer\n"
        b"Gadget,A handy gadget that opens jars\n"
        b"Sprocket,A toothed wheel that drives a chain\n"
    )

    document = load_bytes(data, "products.csv")

    assert (
        document.pages[0].text.split("\n\n")[0]
        == "name: Widget\ndescription: A small widget for the kitchen drawer"
    )
    assert document.metadata["n_rows"] == 3


def test_csv_without_a_header_keeps_its_first_row_as_data() -> None:
    data = (
        b"Widget,A small widget for the kitchen\n"
        b"Gadget,A handy gadget that opens jars\n"
        b"Sprocket,A toothed wheel\n"
    )

    document = load_bytes(data, "products.csv")

    assert (
        document.pages[0].text.split("\n\n")[0]
        == "column 1: Widget\ncolumn 2: A small widget for the kitchen"
    )
    assert document.metadata["n_rows"] == 3


def test_jsonl_records_join_their_text_fields() -> None:
    records = [
        {"_id": "1", "title": "Insulin", "text": "Insulin lowers glucose.", "year": 2020},
        {
            "id": 2,
            "text": "Magma rises.",
            "tags": ["geology", "volcano"],
            "meta": {"author_id": "x", "note": "n"},
        },
    ]
    data = "\n".join(json.dumps(record) for record in records).encode() + b"\n\n"

    document = load_bytes(data, "records.jsonl")

    assert (
        document.pages[0].text
        == "Insulin\nInsulin lowers glucose.\nyear: 2020\n\nMagma rises.\ngeology\nvolcano\nn"
    )
    assert document.metadata["n_records"] == 2


def test_jsonl_numbers_and_booleans_are_kept_with_their_key() -> None:
    records = [
        {"id": 7, "name": "Widget", "price_eur": 24.5, "stock": 3, "in_stock": True, "discount": None},
        {"product_id": 8, "name": "Gadget", "sizes": [38, 40], "ratings": {"mean": 4.2}, "on_sale": False},
        42,
    ]
    data = "\n".join(json.dumps(record) for record in records).encode()
    data += (
        b'\n{"name": "Kettle", "price_eur": 24.50, "weight_kg": 1.2e0}\n'  # numbers as the file writes them
    )

    document = load_bytes(data, "products.jsonl")

    assert document.pages[0].text.split("\n\n") == [
        "Widget\nprice_eur: 24.5\nstock: 3\nin_stock: true",
        "Gadget\nsizes: 38\nsizes: 40\nmean: 4.2\non_sale: false",
        "42",
        "Kettle\nprice_eur: 24.50\nweight_kg: 1.2e0",
    ]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_jsonl_unicode_line_separators_inside_strings_are_text(separator: str) -> None:
    data = json.dumps({"text": f"First line{separator}second line"}, ensure_ascii=False).encode() + b"\n"

    document = load_bytes(data + b'{"text": "Next record"}\n', "records.jsonl")

    assert document.pages[0].text == f"First line{separator}second line\n\nNext record"


def test_jsonl_bad_line_names_the_line() -> None:
    with pytest.raises(DocumentLoadError, match=r"records\.jsonl: line 2 is not valid JSON"):
        load_bytes(b'{"text": "ok"}\n{not json}\n', "records.jsonl")


def test_pdf_keeps_page_numbers() -> None:
    data = make_pdf(["Photosynthesis makes sugar.", "", "The Eiffel Tower is in Paris."])

    document = load_bytes(data, "book.pdf")

    assert [(page.page_number, page.text) for page in document.pages] == [
        (1, "Photosynthesis makes sugar."),
        (3, "The Eiffel Tower is in Paris."),
    ]
    assert document.metadata["n_pages"] == 3


def test_pdf_written_by_pypdf_without_text_is_a_clear_error() -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)

    with pytest.raises(DocumentLoadError, match=r"scan\.pdf: no extractable text in its 1 page\(s\).*OCR"):
        load_bytes(buffer.getvalue(), "scan.pdf")


def test_corrupt_pdf_is_an_error() -> None:
    with pytest.raises(DocumentLoadError, match=r"bad\.pdf: "):
        load_bytes(b"%PDF-1.4\nthis is not really a pdf", "bad.pdf")


def test_pdf_over_a_parser_limit_is_an_error_naming_the_file_and_the_reason() -> None:
    with pytest.raises(DocumentLoadError, match=r"^bomb\.pdf: not a readable PDF \(LimitReachedError: "):
        load_bytes(make_pdf_over_a_parser_limit(), "bomb.pdf")


def test_jsonl_nested_too_deeply_is_an_error_naming_the_line() -> None:
    data = b'{"text": "ok"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n"

    with pytest.raises(DocumentLoadError, match=r"^deep\.jsonl: line 2 "):
        load_bytes(data, "deep.jsonl")


def test_unknown_extension_lists_the_supported_types() -> None:
    with pytest.raises(
        DocumentLoadError, match=r"image\.png: unsupported file type '\.png'; supported: "
    ) as caught:
        load_bytes(b"\x89PNG", "image.png")

    assert all(extension in str(caught.value) for extension in (".pdf", ".docx", ".jsonl", ".md"))
    assert ".pdf" in SUPPORTED_EXTENSIONS


def test_size_limit() -> None:
    with pytest.raises(DocumentLoadError, match=r"big\.txt: 2,000 bytes is over the 1,000-byte limit"):
        load_bytes(b"a" * 2000, "big.txt", max_bytes=1000)
    assert load_bytes(b"a" * 2000, "big.txt", max_bytes=None).pages[0].text == "a" * 2000


def test_whitespace_only_file_has_no_text() -> None:
    with pytest.raises(DocumentLoadError, match=r"empty\.txt: no text found"):
        load_bytes(b"  \n\n \t", "empty.txt")


def test_load_document_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("Volcanoes erupt.", encoding="utf-8")

    document = load_document(path)

    assert document.source == str(path.resolve())
    assert document.metadata["file_name"] == "notes.txt"
    with pytest.raises(DocumentLoadError, match="cannot read the file"):
        load_document(tmp_path / "missing.txt")


def test_upload_source_is_the_last_name_component() -> None:
    assert load_bytes(b"text", "../../etc/notes.txt").source == "notes.txt"
    assert load_bytes(b"text", "C:\\Users\\me\\notes.txt").source == "notes.txt"


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "a/../../x",
        "..\\x",
        "sub\\..\\..\\x",
        "/etc/passwd",
        "C:\\Windows\\x",
        "\\\\server\\share\\x",
        "",
        "a\x00b",
        "..",
    ],
)
def test_safe_upload_path_refuses_escapes(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_upload_path(tmp_path, name)


def test_safe_upload_path_refuses_symlinks_out(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "data" / "link").symlink_to(tmp_path / "outside")

    with pytest.raises(UnsafePathError, match="outside"):
        safe_upload_path(tmp_path / "data", "link/x.txt")


def test_safe_upload_path_accepts_plain_names(tmp_path: Path) -> None:
    assert safe_upload_path(tmp_path, "report.pdf") == tmp_path.resolve() / "report.pdf"
    assert safe_upload_path(tmp_path, "sub/report.pdf") == tmp_path.resolve() / "sub" / "report.pdf"
    assert safe_upload_path(tmp_path, "my..notes.txt") == tmp_path.resolve() / "my..notes.txt"


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["windows-crlf", "classic-mac-cr"])
def test_line_ends_of_other_systems_become_newlines(newline: str) -> None:
    text = newline.join(["# Opening hours", "", "We open at 8 am.", "", "We close at 4 pm."])

    document = load_bytes(text.encode("utf-8"), "hours.md")

    assert document.pages[0].text == "# Opening hours\n\nWe open at 8 am.\n\nWe close at 4 pm."
