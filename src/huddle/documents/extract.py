"""Check what an uploaded file really is, and extract its text for search.

Accepted: PDF, plain text and markdown. The type is decided by the *content*; the file
name and the client's declared type only choose between markdown and plain text and
must not contradict the content. The rules (documented for API users):

* **PDF** is a file whose first bytes are ``%PDF-``. Some readers accept up to 1 KB of
  junk before the header; we do not: a markdown note that mentions ``%PDF-`` near its
  top would otherwise be taken for a PDF, and real PDFs with leading junk are rare.
* **Text** is UTF-8 (a UTF-8 byte-order mark is accepted and dropped) or UTF-16 with a
  byte-order mark. It may hold no NUL character and at most 1 % other control
  characters (tab, newline, carriage return and form feed are text). An empty file is
  valid (empty) text.
* **Markdown** is text whose name ends in ``.md``/``.markdown`` or whose declared type
  is ``text/markdown``; any other text is ``text/plain``.
* A name ending in ``.pdf`` must hold a PDF, and one ending in ``.txt``/``.text``/
  ``.md``/``.markdown`` must hold text; a declared ``application/pdf``, ``text/plain``
  or ``text/markdown`` must agree the same way. Names with no or another extension
  (``notes``, ``data.csv``) are judged by content alone; vague declared types such as
  ``application/octet-stream`` are ignored.
* Anything else (images, archives, executables, other encodings) is refused with 415.

Extraction: text files are decoded; PDFs go through pypdf. An encrypted PDF that opens
with the empty user password (an "owner password" that only restricts printing or
copying) is read as any viewer would; one that needs a password is refused with
:class:`EncryptedFile`. Pages pypdf cannot read are skipped; if no page can be read the
file is :class:`CorruptFile`. Scanned (image-only) PDFs give no text: there is no OCR.
Against PDF bombs, at most ``max_pages`` pages are read, the text stops at
``max_chars`` characters and reading stops after ``max_seconds`` (checked between
pages); all three truncate silently. pypdf's own stream limits (75 MB per decoded
stream) stay on.

pypdf reports the repairs it makes to malformed files as log warnings under the
``pypdf`` logger; those are driven by the uploaded file, so an attacker could fill the
logs with them. Importing this module therefore raises that logger's level to CRITICAL.
"""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pypdf import PdfReader

PDF = "application/pdf"
MARKDOWN = "text/markdown"
PLAIN_TEXT = "text/plain"
SUPPORTED_TYPES = (PDF, MARKDOWN, PLAIN_TEXT)

MAX_PAGES = 2_000
MAX_CHARS = 5_000_000
MAX_SECONDS = 60.0

_PDF_EXTENSIONS = {".pdf"}
_MARKDOWN_EXTENSIONS = {".md", ".markdown"}
_TEXT_EXTENSIONS = {".txt", ".text"} | _MARKDOWN_EXTENSIONS
_MARKDOWN_DECLARED = {"text/markdown", "text/x-markdown"}
_MAX_CONTROL_RATIO = 0.01
# Unicode "Cc" characters except tab, newline, form feed and carriage return.
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")

# Only used to name a refused file in the error message; the decision is by content.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"MZ", "a Windows executable"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!", "a RAR archive"),
)

logging.getLogger("pypdf").setLevel(logging.CRITICAL)
log = logging.getLogger(__name__)


class FileRejected(Exception):
    """Base of the upload refusals; ``code`` and ``status`` are for the HTTP layer."""

    code = "unprocessable_file"
    status = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedFileType(FileRejected):
    """The content is not PDF or text, or contradicts the file name or declared type."""

    code = "unsupported_media_type"
    status = 415


class CorruptFile(FileRejected):
    """The file claims to be a PDF but cannot be read."""


class EncryptedFile(FileRejected):
    """The PDF needs a password to be read."""


def detect_type(data: bytes, filename: str, declared: str | None) -> str:
    """Return the content type of an upload from its bytes; raise :class:`FileRejected`."""
    extension = _extension(filename)
    declared_type = _media_type(declared)
    if data.startswith(b"%PDF-"):
        if extension in _TEXT_EXTENSIONS or declared_type in (PLAIN_TEXT, *_MARKDOWN_DECLARED):
            raise UnsupportedFileType(
                f"{_describe(filename, declared_type)} but the content is a PDF"
            )
        return PDF
    if extension in _PDF_EXTENSIONS or declared_type == PDF:
        raise UnsupportedFileType(
            f"{_describe(filename, declared_type)} but the content is not a PDF ({_sniff(data)})"
        )
    decode_text(data)
    if extension in _MARKDOWN_EXTENSIONS or declared_type in _MARKDOWN_DECLARED:
        return MARKDOWN
    return PLAIN_TEXT


def decode_text(data: bytes) -> str:
    """Decode an upload as text (UTF-8, or UTF-16 with a BOM); raise if it is not text."""
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise UnsupportedFileType("UTF-32 text is not supported; save the file as UTF-8")
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")  # the BOM picks the byte order and is dropped
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedFileType(
            f"The file is neither a PDF nor UTF-8 text ({_sniff(data)})"
        ) from None
    if "\x00" in text:
        raise UnsupportedFileType(f"The file contains NUL bytes: it is not text ({_sniff(data)})")
    controls = sum(1 for _ in _BINARY_CONTROLS.finditer(text))
    if controls > len(text) * _MAX_CONTROL_RATIO:
        raise UnsupportedFileType("The file contains too many control characters to be text")
    return text


def extract_text(
    data: bytes,
    content_type: str,
    *,
    max_pages: int = MAX_PAGES,
    max_chars: int = MAX_CHARS,
    max_seconds: float = MAX_SECONDS,
) -> str:
    """Return the searchable text of a file whose type :func:`detect_type` returned.

    CPU-bound and synchronous (a large PDF takes seconds): call it from a worker thread,
    e.g. ``await anyio.to_thread.run_sync(extract_text, data, content_type)``, never on
    the event loop. Output is capped at ``max_chars`` characters and ``max_pages`` pages
    (truncated, no error). Raises :class:`CorruptFile` or :class:`EncryptedFile` for a
    PDF that cannot be read, :class:`UnsupportedFileType` for another type; no pypdf
    exception escapes.
    """
    if content_type in (PLAIN_TEXT, MARKDOWN):
        return decode_text(data)[:max_chars]
    if content_type != PDF:
        raise UnsupportedFileType(f"Cannot extract text from {content_type!r}")
    return _extract_pdf(data, max_pages=max_pages, max_chars=max_chars, max_seconds=max_seconds)


def normalize_whitespace(text: str) -> str:
    """Collapse runs of spaces, trim lines, keep at most one blank line in a row.

    Control characters become spaces and lone surrogates U+FFFD, so the result can be
    stored in any database.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # No NUL or lone surrogate may reach the database (PostgreSQL text refuses both).
    text = _BINARY_CONTROLS.sub(" ", _SURROGATES.sub("\ufffd", text))
    text = re.sub(r"[^\S\n]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _extract_pdf(data: bytes, *, max_pages: int, max_chars: int, max_seconds: float) -> str:
    # Imported here: pypdf costs ~0.1 s to import and only PDF uploads need it.
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)  # tries the empty password itself
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedFile("The PDF is password-protected; upload an unprotected copy")
        page_count = len(reader.pages)
    except FileRejected:
        raise
    except FileNotDecryptedError:
        raise EncryptedFile("The PDF is password-protected; upload an unprotected copy") from None
    except Exception as exc:  # pypdf raises many types (and bugs) on hostile input
        log.debug("unreadable PDF: %r", exc)
        raise CorruptFile("The PDF is damaged or truncated and cannot be read") from None
    return _extract_pages(reader, page_count, max_pages, max_chars, max_seconds)


def _extract_pages(
    reader: PdfReader, page_count: int, max_pages: int, max_chars: int, max_seconds: float
) -> str:
    deadline = time.monotonic() + max_seconds
    parts: list[str] = []
    length = tried = failed = 0
    for index in range(min(page_count, max_pages)):
        if length >= max_chars or time.monotonic() > deadline:
            break
        tried += 1
        try:
            page_text = normalize_whitespace(reader.pages[index].extract_text())
        except Exception as exc:  # one unreadable page should not lose the others
            log.debug("unreadable PDF page %d: %r", index, exc)
            failed += 1
            continue
        if page_text:
            parts.append(page_text)
            length += len(page_text) + 2
    if failed and failed == tried:
        raise CorruptFile("The PDF is damaged: none of its pages can be read")
    return "\n\n".join(parts)[:max_chars]


def _extension(filename: str) -> str:
    # Browsers may send a full client path; keep the last component of either style.
    name = PureWindowsPath(PurePosixPath(filename).name).name
    return PurePosixPath(name).suffix.lower()


def _media_type(declared: str | None) -> str | None:
    if not declared:
        return None
    return declared.split(";", 1)[0].strip().lower() or None


def _describe(filename: str, declared_type: str | None) -> str:
    extension = _extension(filename)
    if extension in _PDF_EXTENSIONS | _TEXT_EXTENSIONS:
        return f"The file is named {extension!r}"
    return f"The file is declared as {declared_type!r}"


def _sniff(data: bytes) -> str:
    if not data:
        return "it is empty"
    for signature, what in _SIGNATURES:
        if data.startswith(signature):
            return f"it looks like {what}"
    return "unrecognised binary content"
