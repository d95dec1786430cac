"""Bytes of a user's text file as text: a byte-order mark, UTF-8, UTF-16 without a mark, or the legacy encoding
charset-normalizer finds; binary junk refused with :class:`DocumentLoadError`, which names the file and the reason.

The loaders of every format (:mod:`retrievals_rag.rag.loaders`) decode through :func:`decode_text`;
charset-normalizer is imported only when the bytes are not UTF-8.
"""

from __future__ import annotations

import codecs
from typing import Any

__all__ = ["DocumentLoadError", "decode_text"]

# Share of characters that must be printable or whitespace for bytes to count as text.
_MIN_PRINTABLE_RATIO = 0.95
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class DocumentLoadError(ValueError):
    """A file that cannot be turned into text; the message names the file and the reason.

    Attributes:
        source: The file's name or path.
        reason: Why it failed, in words.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def decode_text(data: bytes, source: str) -> str:
    """Decode bytes that should be text: a BOM (UTF-8, UTF-16, UTF-32), else UTF-16 without a BOM when NUL bytes
    fall in every other position, else UTF-8, else charset-normalizer; line ends made ``\n``.

    Args:
        data: The file's bytes.
        source: The file's name, for error messages.

    Returns:
        The text, without a BOM.

    Raises:
        DocumentLoadError: When the bytes look binary (NUL bytes, or few printable characters) or no encoding
            decodes them.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as error:
                raise DocumentLoadError(
                    source, f"starts with a {encoding} byte-order mark but {error}"
                ) from None
            _check_printable(text, source)
            return _universal_newlines(text.lstrip("\ufeff"))
    if b"\x00" in data:
        text = _utf16_without_bom(data)
        if text is None:
            raise DocumentLoadError(source, "looks like a binary file (it contains NUL bytes), not text")
        return _universal_newlines(text)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = _best_guess(list(from_bytes(data)))
        if best is None:
            raise DocumentLoadError(
                source, "cannot decode its bytes: not UTF-8, UTF-16 or any encoding that could be detected"
            ) from None
        text = str(best)
    _check_printable(text, source)
    return _universal_newlines(text)


def _utf16_without_bom(data: bytes) -> str | None:
    """The text of UTF-16 without a byte-order mark, or None.

    Text mostly of characters below U+0100 (Latin scripts, digits, punctuation) in UTF-16 has a NUL as the
    high byte of most characters: at most odd positions of the sample in little-endian, most even ones in
    big-endian, and few at the other. It is accepted when it decodes cleanly, without NUL characters, and
    printable (:data:`_MIN_PRINTABLE_RATIO`); a binary file whose bytes happen to alternate so (16-bit numbers)
    decodes to control characters and is refused.
    """
    if len(data) % 2:
        return None
    sample = data[:65_536]
    characters = len(sample) // 2
    nul_at_odd, nul_at_even = sample[1::2].count(0), sample[0::2].count(0)
    for encoding, nul_high, nul_low in (
        ("utf-16-le", nul_at_odd, nul_at_even),
        ("utf-16-be", nul_at_even, nul_at_odd),
    ):
        if nul_high * 2 >= characters and nul_low * 10 <= nul_high:
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                return None
            if "\x00" in text or _printable_ratio(text) < _MIN_PRINTABLE_RATIO:
                return None
            return text
    return None


def _universal_newlines(text: str) -> str:
    """Windows (CRLF) and classic Mac (CR) line ends as ``\n``: paragraphs, headings and CSV rows are found by
    line, and a chunk shown in the app carries no stray ``\r``."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


_TURKISH_ENCODINGS = ("cp1254", "iso8859_9")


def _best_guess(matches: list[Any]) -> Any:
    """charset-normalizer's best match, except that Windows-1252 wins a near tie.

    On a short Western European text it often ranks Windows-1250 first, tied with 1252 on chaos and a few
    hundredths ahead on coherence: Spanish "niña, ¿verdad?" then reads "nińa, żverdad?". 1252 is what a legacy
    single-byte file of Western Europe or the Americas almost always is (a Latin-1 label means it on the web, per
    WHATWG); a Czech, Polish or Hungarian text in 1250 has letters that 1252 decodes to other ones, which
    costs it more than the margin, so it stays 1250.

    A text that charset-normalizer reads as Turkish is decoded as Windows-1254 (or ISO 8859-9) when that is a
    match as clean as the best: it ranks 1252 first for Turkish too, and 1252 turns ş ğ ı İ into þ ð ý Ý (the two
    differ in only those six bytes, so nothing else can change).
    """
    if not matches:
        return None
    best = matches[0]
    if best.languages[:1] == ["Turkish"]:
        turkish = next((match for match in matches if match.encoding in _TURKISH_ENCODINGS), None)
        if turkish is not None and turkish.chaos <= best.chaos + 0.01:
            return turkish
    for match in matches:
        if (
            match.encoding == "cp1252"
            and match.chaos <= best.chaos + 0.01
            and match.coherence >= best.coherence - 0.05
        ):
            return match
    return best


def _check_printable(text: str, source: str) -> None:
    if "\x00" in text:
        raise DocumentLoadError(source, "looks like a binary file (it contains NUL characters), not text")
    ratio = _printable_ratio(text)
    if ratio < _MIN_PRINTABLE_RATIO:
        raise DocumentLoadError(
            source, f"looks like a binary file: only {ratio:.0%} of its characters are printable"
        )


def _printable_ratio(text: str) -> float:
    """Share of printable or white-space characters among the first 100,000 of ``text`` (1 when empty)."""
    sample = text[:100_000]
    if not sample:
        return 1.0
    printable = sum(1 for character in sample if character.isprintable() or character in "\n\r\t\f\v")
    return printable / len(sample)
