"""Upload type detection and text extraction, on real PDFs built here byte by byte."""

from __future__ import annotations

import io
import logging
import zlib

import pytest
from pypdf import PdfWriter

from huddle.documents.extract import (
    MARKDOWN,
    PDF,
    PLAIN_TEXT,
    CorruptFile,
    EncryptedFile,
    FileRejected,
    UnsupportedFileType,
    detect_type,
    extract_text,
    normalize_whitespace,
)

# A content stream that makes pypdf's extract_text raise (an unterminated dictionary).
BROKEN_CONTENT = b"BT /F1 12 Tf 72 720 Td <<<<<< Tj ET"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


def make_pdf(pages: list[str | bytes], *, compress: bool = False) -> bytes:
    """A valid PDF (correct xref) with one Helvetica text line per input line.

    A ``bytes`` page is used as the page's content stream as it is.
    """
    page_ids = [4 + 2 * i for i in range(len(pages))]
    kids = b" ".join(b"%d 0 R" % page_id for page_id in page_ids)
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % len(pages),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for page_id, text in zip(page_ids, pages, strict=True):
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        content = text if isinstance(text, bytes) else _content(text)
        objects[page_id + 1] = _stream(content, compress=compress)
    return _assemble(objects)


def _content(text: str) -> bytes:
    lines = []
    for number, line in enumerate(text.split("\n")):
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        lines.append(f"BT /F1 12 Tf 72 {720 - 16 * number} Td ({escaped}) Tj ET")
    return "\n".join(lines).encode("latin-1")


def _stream(data: bytes, *, compress: bool) -> bytes:
    if compress:
        data = zlib.compress(data)
    flate = b" /Filter /FlateDecode" if compress else b""
    return b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(data), flate, data)


def _assemble(objects: dict[int, bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[number] for number in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def encrypt(pdf: bytes, user_password: str, **options: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", **options)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


class TestDetectPdf:
    def test_pdf_by_name_and_content(self) -> None:
        assert detect_type(make_pdf(["Hi"]), "report.PDF", "application/pdf") == PDF

    def test_pdf_content_without_extension_or_declared_type(self) -> None:
        assert detect_type(make_pdf(["Hi"]), "scan", None) == PDF
        assert detect_type(make_pdf(["Hi"]), "scan.bin", "application/octet-stream") == PDF

    def test_client_path_in_filename(self) -> None:
        assert detect_type(make_pdf(["Hi"]), "C:\\Users\\me\\report.pdf", None) == PDF

    def test_png_named_pdf_is_refused(self) -> None:
        with pytest.raises(UnsupportedFileType, match="PNG image") as caught:
            detect_type(PNG, "photo.pdf", "application/pdf")
        assert (caught.value.status, caught.value.code) == (415, "unsupported_media_type")

    def test_text_named_pdf_is_refused(self) -> None:
        with pytest.raises(UnsupportedFileType, match="not a PDF"):
            detect_type(b"just some text", "notes.pdf", None)

    def test_text_declared_pdf_is_refused(self) -> None:
        with pytest.raises(UnsupportedFileType, match="not a PDF"):
            detect_type(b"just some text", "notes", "application/pdf")

    @pytest.mark.parametrize(
        ("filename", "declared"),
        [("notes.txt", None), ("notes.md", None), ("notes", "text/plain"), ("x", "text/markdown")],
    )
    def test_pdf_named_or_declared_as_text_is_refused(
        self, filename: str, declared: str | None
    ) -> None:
        with pytest.raises(UnsupportedFileType, match="content is a PDF"):
            detect_type(make_pdf(["Hi"]), filename, declared)

    def test_header_must_be_at_the_start(self) -> None:
        for filename in ("x", "x.pdf"):
            with pytest.raises(UnsupportedFileType):
                detect_type(b"junk\n" + make_pdf(["Hi"]), filename, None)

    def test_text_mentioning_the_pdf_header_is_text(self) -> None:
        note = b"# Formats\n\nA PDF file starts with `%PDF-1.7`.\n"
        assert detect_type(note, "formats.md", None) == MARKDOWN


class TestDetectText:
    def test_utf8_text(self) -> None:
        assert detect_type("Grüße, 世界 ✓\n".encode(), "hello.txt", "text/plain") == PLAIN_TEXT

    def test_utf8_bom(self) -> None:
        assert detect_type(b"\xef\xbb\xbfhello", "hello.txt", None) == PLAIN_TEXT

    @pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
    def test_utf16_with_bom(self, encoding: str) -> None:
        bom = b"\xff\xfe" if encoding.endswith("le") else b"\xfe\xff"
        data = bom + "Grüße\r\nline".encode(encoding)
        assert detect_type(data, "hello.txt", None) == PLAIN_TEXT
        assert extract_text(data, PLAIN_TEXT) == "Grüße\r\nline"

    def test_utf16_without_bom_is_refused(self) -> None:
        with pytest.raises(UnsupportedFileType, match="NUL"):
            detect_type("hello".encode("utf-16-le"), "hello.txt", None)

    def test_invalid_utf8_is_refused(self) -> None:
        with pytest.raises(UnsupportedFileType, match="UTF-8"):
            detect_type("café".encode("latin-1"), "menu.txt", None)

    def test_nul_bytes_are_refused(self) -> None:
        with pytest.raises(UnsupportedFileType, match="NUL"):
            detect_type(b"text\x00more text", "a.txt", None)

    def test_many_control_characters_are_refused(self) -> None:
        with pytest.raises(UnsupportedFileType, match="control characters"):
            detect_type(b"ab\x01\x02cd\x1b" * 10, "a.txt", None)

    def test_a_few_control_characters_are_text(self) -> None:
        data = b"\x1b[1mbold\x1b[0m " + b"plain words\tand tabs\f\n" * 20
        assert detect_type(data, "log.txt", None) == PLAIN_TEXT

    def test_empty_file_is_empty_text(self) -> None:
        assert detect_type(b"", "empty.txt", None) == PLAIN_TEXT
        assert extract_text(b"", PLAIN_TEXT) == ""

    def test_empty_file_named_pdf_is_refused(self) -> None:
        with pytest.raises(UnsupportedFileType, match="empty"):
            detect_type(b"", "empty.pdf", None)

    def test_markdown_by_extension(self) -> None:
        assert detect_type(b"# Title\n", "README.md", None) == MARKDOWN
        assert detect_type(b"# Title\n", "README.Markdown", "text/plain") == MARKDOWN

    def test_markdown_by_declared_type(self) -> None:
        assert detect_type(b"# Title\n", "README", "text/markdown; charset=utf-8") == MARKDOWN
        assert detect_type(b"# Title\n", "README.txt", "text/markdown") == MARKDOWN

    def test_unknown_extension_is_judged_by_content(self) -> None:
        assert detect_type(b"a,b\n1,2\n", "data.csv", "text/csv") == PLAIN_TEXT

    @pytest.mark.parametrize(
        ("data", "what"),
        [
            (PNG, "PNG image"),
            (b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe", "ZIP archive"),
            (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00", "ELF"),
            (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG image"),
            (b"\x00\x01\x02\xfe\xfa", "unrecognised binary"),
        ],
    )
    def test_binaries_are_refused(self, data: bytes, what: str) -> None:
        with pytest.raises(UnsupportedFileType, match=what):
            detect_type(data, "upload", None)

    def test_utf32_is_refused(self) -> None:
        with pytest.raises(UnsupportedFileType, match="UTF-32"):
            detect_type("hi".encode("utf-32"), "a.txt", None)


class TestExtractText:
    def test_text_is_decoded_without_bom(self) -> None:
        assert extract_text(b"\xef\xbb\xbf# Title\n\nBody", MARKDOWN) == "# Title\n\nBody"

    def test_text_is_truncated(self) -> None:
        assert extract_text(b"abcdef", PLAIN_TEXT, max_chars=3) == "abc"

    def test_pdf_text(self) -> None:
        text = extract_text(make_pdf(["Hello (PDF) world"]), PDF)
        assert text == "Hello (PDF) world"

    def test_multi_page_pdf_pages_are_separated_by_a_blank_line(self) -> None:
        pdf = make_pdf(["First page\nsecond line", "Second page", "Third page"], compress=True)
        assert extract_text(pdf, PDF) == "First page\nsecond line\n\nSecond page\n\nThird page"

    def test_whitespace_is_normalised(self) -> None:
        pdf = make_pdf(["  spaced     out\t words  ", "", "after an empty page"])
        assert extract_text(pdf, PDF) == "spaced out words\n\nafter an empty page"

    def test_pdf_control_characters_do_not_reach_the_text(self) -> None:
        pdf = make_pdf([b"BT /F1 12 Tf 72 720 Td (nul\\000and\\007bell) Tj ET"])
        assert extract_text(pdf, PDF) == "nul and bell"

    def test_normalisation_replaces_lone_surrogates(self) -> None:
        assert normalize_whitespace("a\ud800b \x00 c\r\n\r\n\r\n\r\nd ") == "a\ufffdb c\n\nd"

    def test_page_cap(self) -> None:
        pdf = make_pdf([f"page {n}" for n in range(5)])
        assert extract_text(pdf, PDF, max_pages=2) == "page 0\n\npage 1"

    def test_text_cap(self) -> None:
        pdf = make_pdf(["a" * 50, "b" * 50, "c" * 50])
        text = extract_text(pdf, PDF, max_chars=60)
        assert text == "a" * 50 + "\n\n" + "b" * 8

    def test_time_budget_stops_between_pages(self) -> None:
        pdf = make_pdf(["first", "second"])
        assert extract_text(pdf, PDF, max_seconds=-1) == ""

    def test_pdf_with_no_text_gives_empty_text(self) -> None:
        assert extract_text(make_pdf([""]), PDF) == ""

    def test_encrypted_pdf_is_refused(self) -> None:
        pdf = encrypt(make_pdf(["Top secret"]), "secret")
        assert detect_type(pdf, "secret.pdf", None) == PDF
        with pytest.raises(EncryptedFile, match="password") as caught:
            extract_text(pdf, PDF)
        assert (caught.value.status, caught.value.code) == (422, "unprocessable_file")

    def test_aes256_encrypted_pdf_is_refused(self) -> None:
        pdf = encrypt(make_pdf(["Top secret"]), "secret", algorithm="AES-256")
        with pytest.raises(EncryptedFile):
            extract_text(pdf, PDF)

    @pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
    def test_pdf_with_empty_user_password_is_read(self, algorithm: str) -> None:
        pdf = encrypt(make_pdf(["Only printing is restricted"]), "", algorithm=algorithm)
        assert extract_text(pdf, PDF) == "Only printing is restricted"

    @pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
    def test_truncated_pdf_is_corrupt(self, keep: float) -> None:
        pdf = make_pdf(["Hello", "world"])
        with pytest.raises(CorruptFile, match="damaged or truncated") as caught:
            extract_text(pdf[: int(len(pdf) * keep)], PDF)
        assert (caught.value.status, caught.value.code) == (422, "unprocessable_file")

    @pytest.mark.parametrize(
        "data", [b"%PDF-", b"%PDF-1.7\n" + b"garbage " * 100, b"%PDF-1.4\n\x00\x01\xff" * 50]
    )
    def test_garbage_after_header_is_corrupt(self, data: bytes) -> None:
        assert detect_type(data, "x.pdf", None) == PDF
        with pytest.raises(CorruptFile):
            extract_text(data, PDF)

    def test_an_unreadable_page_is_skipped(self) -> None:
        pdf = make_pdf(["good page", BROKEN_CONTENT, "last page"])
        assert extract_text(pdf, PDF) == "good page\n\nlast page"

    def test_no_readable_page_is_corrupt(self) -> None:
        with pytest.raises(CorruptFile, match="none of its pages"):
            extract_text(make_pdf([BROKEN_CONTENT, BROKEN_CONTENT]), PDF)

    def test_undecodable_stream_gives_no_text_for_that_page(self) -> None:
        pdf = make_pdf(["good page", "lost page"], compress=True)
        lost = zlib.compress(_content("lost page"))
        assert extract_text(pdf.replace(lost, b"\x00" * len(lost)), PDF) == "good page"

    def test_pypdf_repairs_are_not_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="huddle")
        with pytest.raises(CorruptFile):
            extract_text(make_pdf(["Hello"])[:-30], PDF)
        assert [r for r in caplog.records if r.name.startswith("pypdf")] == []

    def test_unsupported_type(self) -> None:
        with pytest.raises(UnsupportedFileType):
            extract_text(PNG, "image/png")

    def test_all_refusals_share_one_base(self) -> None:
        for error in (UnsupportedFileType, CorruptFile, EncryptedFile):
            assert issubclass(error, FileRejected)
