"""Splitting documents into chunks small enough to embed.

The embedding model reads at most 256 word pieces, so a document is cut into chunks of
about ``max_tokens`` (default 200) estimated word pieces, leaving room for the heading
path that is prefixed to each chunk's embedded text. The estimate is cheap and slightly
pessimistic for English prose (about 10% above the real count on the evaluation corpus);
text the estimate underrates is truncated by the embedder, never rejected.

How a document is cut:

1. Markdown ATX headings (``#`` to ``######``, outside fenced code blocks) split it into
   sections. A section's heading path is the chain of headings above it, starting with
   ``title`` when one is given (a top heading that repeats the title is not repeated).
2. Within a section the units are sentences: blank lines separate paragraphs (a fenced
   code block counts as one paragraph), line breaks and sentence punctuation separate
   sentences. A sentence longer than the budget is cut between words (a run of
   characters with no spaces, between characters).
3. Consecutive sentences are packed into chunks up to the budget. When a chunk is full,
   it ends at the last paragraph boundary if that keeps it at least half full, else at
   the last sentence that fits. The next chunk of the same section starts with the
   previous chunk's last one or two sentences (at most ``overlap`` tokens), so a fact
   that straddles the cut is still found. Chunks never span two sections.

``Chunk.text`` is the exact slice of the source (``text[start:start + len(chunk.text)]``),
for snippets and highlighting; ``Chunk.embedding_text`` is what to embed: the heading path
on its own line, then the text. The result depends only on the arguments.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_MAX_TOKENS = 200
DEFAULT_OVERLAP = 30
HEADING_SEPARATOR = " > "

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Runs of . ! ? or an ellipsis, then closing quotes or brackets, before a space; or the CJK
# full stop, exclamation and question marks, which no space follows.
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)|[\u3002\uff01\uff1f]+")
_WORD = re.compile(r"\S+")
_ESTIMATE_TOKEN = re.compile(r"[^\W_]+|\S")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: its text, heading path and character offset in the source."""

    text: str
    heading: str | None
    start: int

    @property
    def embedding_text(self) -> str:
        """The text to embed: the heading path, when there is one, above the chunk's text."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    paragraph: int


def estimate_tokens(text: str) -> int:
    """A cheap, mostly pessimistic estimate of the word pieces a BERT tokenizer makes."""
    count = 0
    for match in _ESTIMATE_TOKEN.finditer(text):
        token = match.group()
        if not token[0].isalnum():
            count += 1
            continue
        if not token.isascii():
            stripped = unicodedata.normalize("NFKD", token).encode("ascii", "ignore").decode()
            # Accented Latin reads like ASCII; other scripts cost about a piece per letter.
            token = stripped if len(stripped) == len(token) else token
        if not token.isascii():
            count += len(token)
        elif token.isalpha():
            count += 1 + (len(token) - 1) // 6
        else:  # digits, or letters mixed with digits (versions, hashes)
            count += math.ceil(len(token) / 2)
    return count


def chunk_text(
    text: str,
    *,
    title: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap: int = DEFAULT_OVERLAP,
) -> list[Chunk]:
    """Chunks of ``text`` of at most about ``max_tokens`` word pieces (see the module doc)."""
    if max_tokens < 8:
        raise ValueError("max_tokens must be at least 8")
    if not text.strip():
        return []
    chunks: list[Chunk] = []
    for path, start, end in _sections(text, title):
        heading = HEADING_SEPARATOR.join(path) or None
        reserved = estimate_tokens(heading) + 1 if heading else 0
        budget = max(max_tokens - reserved, max_tokens // 2)
        units = list(_units(text, start, end, budget))
        for group in _pack(units, budget, min(overlap, budget // 2)):
            first, last = group[0].start, group[-1].end
            chunks.append(Chunk(text=text[first:last], heading=heading, start=first))
    if not chunks:  # headings only: keep them findable
        start = len(text) - len(text.lstrip())
        chunks.append(Chunk(text=text.strip(), heading=title or None, start=start))
    return chunks


def _sections(text: str, title: str | None) -> Iterator[tuple[list[str], int, int]]:
    """(heading path, body start, body end) for each section, in order."""
    stack: list[tuple[int, str]] = []
    fence: str | None = None
    body_start = 0
    offset = 0
    for line in text.splitlines(keepends=True):
        fence = _next_fence(fence, line)
        heading = _HEADING.match(line.rstrip("\r\n")) if fence is None else None
        if heading:
            yield _heading_path(stack, title), body_start, offset
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, (heading.group(2) or "").strip()))
            body_start = offset + len(line)
        offset += len(line)
    yield _heading_path(stack, title), body_start, len(text)


def _next_fence(fence: str | None, line: str) -> str | None:
    """The open code fence after ``line`` (None outside fenced blocks)."""
    match = _FENCE.match(line)
    if not match:
        return fence
    marker = match.group(1)
    if fence is None:
        return marker
    return None if marker[0] == fence[0] and len(marker) >= len(fence) else fence


def _heading_path(stack: list[tuple[int, str]], title: str | None) -> list[str]:
    names = [name for _, name in stack if name]
    if title and title.strip():
        if names and names[0].casefold() == title.strip().casefold():
            names = names[1:]
        names = [title.strip(), *names]
    return names


def _units(text: str, start: int, end: int, budget: int) -> Iterator[_Unit]:
    """The sentences of ``text[start:end]`` (cut further when longer than ``budget``)."""
    for paragraph, (p_start, p_end) in enumerate(_paragraphs(text, start, end)):
        for s_start, s_end in _sentences(text, p_start, p_end):
            for w_start, w_end in _fit(text, s_start, s_end, budget):
                tokens = estimate_tokens(text[w_start:w_end])
                yield _Unit(w_start, w_end, tokens, paragraph)


def _paragraphs(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    block_start: int | None = None
    block_end = start
    fence: str | None = None
    offset = start
    for line in text[start:end].splitlines(keepends=True):
        fence = _next_fence(fence, line)
        if line.strip():
            if block_start is None:
                block_start = offset
            block_end = offset + len(line.rstrip())
        elif fence is None and block_start is not None:
            yield block_start, block_end
            block_start = None
        offset += len(line)
    if block_start is not None:
        yield block_start, block_end


def _sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    offset = start
    for line in text[start:end].splitlines(keepends=True):
        line_start = offset
        offset += len(line)
        piece_start = line_start
        for match in _SENTENCE_END.finditer(line):
            yield from _trimmed(text, piece_start, line_start + match.end())
            piece_start = line_start + match.end()
        yield from _trimmed(text, piece_start, offset)


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        left = start + len(piece) - len(piece.lstrip())
        yield left, left + len(stripped)


def _fit(text: str, start: int, end: int, budget: int) -> Iterator[tuple[int, int]]:
    """``text[start:end]`` in pieces of at most ``budget`` estimated tokens."""
    if estimate_tokens(text[start:end]) <= budget:
        yield start, end
        return
    piece_start: int | None = None
    piece_end = start
    tokens = 0
    for word in _WORD.finditer(text, start, end):
        cost = estimate_tokens(word.group())
        if cost > budget:  # no spaces to cut at: a character costs at most one piece
            if piece_start is not None:
                yield piece_start, piece_end
            for cut in range(word.start(), word.end(), budget):
                yield cut, min(cut + budget, word.end())
            piece_start, tokens = None, 0
            continue
        if piece_start is not None and tokens + cost > budget:
            yield piece_start, piece_end
            piece_start, tokens = None, 0
        if piece_start is None:
            piece_start = word.start()
        piece_end, tokens = word.end(), tokens + cost
    if piece_start is not None:
        yield piece_start, piece_end


def _pack(units: list[_Unit], budget: int, overlap: int) -> Iterator[list[_Unit]]:
    """Groups of consecutive units within ``budget``, overlapping by up to ``overlap``."""
    current: list[_Unit] = []
    carried = 0  # how many units at the head of ``current`` repeat the previous chunk
    for unit in units:
        if sum(u.tokens for u in current) + unit.tokens <= budget:
            current.append(unit)
            continue
        if len(current) > carried:
            cut = _cut_point(current, carried, budget)
            done, rest = current[:cut], current[cut:]
            yield done
            current = _tail(done, overlap) + rest
            carried = len(current) - len(rest)
        while current and sum(u.tokens for u in current) + unit.tokens > budget:
            if carried == 0:  # the moved sentences and this one cannot share a chunk
                yield current
                current = []
                break
            current.pop(0)
            carried -= 1
        current.append(unit)
    if len(current) > carried:
        yield current


def _cut_point(current: list[_Unit], carried: int, budget: int) -> int:
    """End a full chunk at its last paragraph boundary if that keeps it half full."""
    for cut in range(len(current) - 1, carried, -1):
        if current[cut].paragraph != current[cut - 1].paragraph:
            if sum(u.tokens for u in current[:cut]) >= budget // 2:
                return cut
            break
    return len(current)


def _tail(units: list[_Unit], overlap: int) -> list[_Unit]:
    """The last one or two units of a chunk within ``overlap`` tokens (never all of it)."""
    tail: list[_Unit] = []
    for unit in reversed(units[1:]):
        if len(tail) == 2 or sum(u.tokens for u in tail) + unit.tokens > overlap:
            break
        tail.insert(0, unit)
    return tail
