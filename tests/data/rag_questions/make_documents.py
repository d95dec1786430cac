"""Write the two binary documents of the answer-quality question set: lighthouse.pdf and trip.docx.

The text files beside them are written by hand; these two are generated so that their content is reviewable
here. Run from the repository root: ``python tests/data/rag_questions/make_documents.py``.
"""

from __future__ import annotations

import datetime
from pathlib import Path

HERE = Path(__file__).parent

LIGHTHOUSE_PAGES = [
    [
        "Kestrel Point Lighthouse: a short history",
        "Kestrel Point Lighthouse was first lit on 3 November 1872.",
        "The tower is 34 metres tall and was built from local granite.",
        "It was designed by the engineer Harriet Colquhoun.",
        "Its light can be seen from 22 nautical miles away in clear weather.",
    ],
    [
        "The keepers and the automatic light",
        "The last keeper, Alasdair Munro, left the lighthouse in 1986.",
        "Since then the light has been automatic and is watched from Oban.",
        "The keepers' cottages are now a museum, open from April to September.",
        "Entry to the museum costs 6 pounds for adults; children go free.",
    ],
]

TRIP_PARAGRAPHS = [
    "Year 8 field trip to the Glenmore Forest",
    "The coach leaves the school gates at 7:45 am on Thursday 5 June and returns by 5:30 pm.",
    "The coach company is Highland Star Coaches.",
    "Pupils need a packed lunch, a waterproof jacket and sturdy shoes.",
    "Lunch is eaten at the Loch Morlich beach picnic area.",
    "The trip costs 18 pounds per pupil; the deadline for payment is 23 May.",
]
TRIP_TABLE = [
    ("Time", "Activity"),
    ("10:00", "Guided walk with ranger Ewan Grant"),
    ("13:30", "Pond dipping at the visitor centre"),
]


def pdf_bytes(pages: list[list[str]]) -> bytes:
    """A small valid PDF: one text line per string, in Helvetica, one page per list."""
    page_ids = [4 + 2 * index for index in range(len(pages))]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{i} 0 R' for i in page_ids)}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for page_id, lines in zip(page_ids, pages, strict=True):
        body = " ".join(f"({line}) Tj T*" for line in lines)
        content = f"BT /F1 11 Tf 14 TL 60 740 Td {body} ET".encode()
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
            ).encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    output = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body_bytes in enumerate(objects, start=1):
        offsets.append(len(output))
        output += f"{number} 0 obj\n".encode() + body_bytes + b"\nendobj\n"
    xref = len(output)
    output += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        output += f"{offset:010d} 00000 n \n".encode()
    output += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(output)


def write_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = "Year 8 field trip"
    document.add_heading(TRIP_PARAGRAPHS[0], level=1)
    for paragraph in TRIP_PARAGRAPHS[1:]:
        document.add_paragraph(paragraph)
    table = document.add_table(rows=0, cols=2)
    for row in TRIP_TABLE:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = row
    document.core_properties.created = datetime.datetime(2025, 1, 1)
    document.save(path)


if __name__ == "__main__":
    (HERE / "lighthouse.pdf").write_bytes(pdf_bytes(LIGHTHOUSE_PAGES))
    write_docx(HERE / "trip.docx")
    print("wrote lighthouse.pdf and trip.docx")
