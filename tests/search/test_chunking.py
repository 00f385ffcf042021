"""Chunking documents for embedding: sections, packing, overlap, offsets, limits."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from huddle.search.chunking import Chunk, chunk_text, estimate_tokens
from huddle.search.embeddings import MAX_SEQUENCE_LENGTH, load_minilm

EVAL_DOCS = sorted((Path(__file__).parent.parent / "data" / "search_eval").glob("*.md"))


def sentences(n: int, topic: str = "rollout") -> str:
    return " ".join(
        f"Sentence {i} explains one more detail of the {topic} and why it matters."
        for i in range(n)
    )


def assert_offsets(source: str, chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert chunk.text
        assert source[chunk.start : chunk.start + len(chunk.text)] == chunk.text
        assert chunk.text == chunk.text.strip()


# --- the simple cases --------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", " ", "\n\n\t  \n", "\u00a0\u2003"])
def test_blank_text_has_no_chunks(blank: str) -> None:
    assert chunk_text(blank) == []
    assert chunk_text(blank, title="A title") == []


def test_a_short_plain_text_is_one_chunk() -> None:
    text = "  Lunch is delivered on Wednesdays.\nCoffee is free.  "

    assert chunk_text(text) == [Chunk(text=text.strip(), heading=None, start=2)]
    [titled] = chunk_text(text, title="Berlin office")
    assert titled.heading == "Berlin office"
    assert titled.embedding_text == "Berlin office\n" + text.strip()
    assert chunk_text(text)[0].embedding_text == text.strip()


def test_too_small_a_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("text", max_tokens=4)


# --- headings ----------------------------------------------------------------------------

MARKDOWN = """# Release process

The train leaves weekly.

## Timeline

Code freeze is on Tuesday.

### Thursday

The captain deploys.

## Versioning ##

Calendar versions.

```
# not a heading: a shell comment in a code block

## still not one
```
"""


def test_sections_carry_their_heading_path() -> None:
    chunks = chunk_text(MARKDOWN)

    assert [(c.heading, c.text.splitlines()[0]) for c in chunks] == [
        ("Release process", "The train leaves weekly."),
        ("Release process > Timeline", "Code freeze is on Tuesday."),
        ("Release process > Timeline > Thursday", "The captain deploys."),
        ("Release process > Versioning", "Calendar versions."),
    ]
    # The fenced block, blank line included, stays in its section as one paragraph.
    assert chunks[-1].text.endswith("## still not one\n```")
    assert_offsets(MARKDOWN, chunks)


def test_the_title_starts_the_path_without_repeating_the_top_heading() -> None:
    same = chunk_text(MARKDOWN, title="release PROCESS")
    other = chunk_text(MARKDOWN, title="Handbook")

    assert [c.heading for c in same][:2] == ["release PROCESS", "release PROCESS > Timeline"]
    assert [c.heading for c in other][:2] == [
        "Handbook > Release process",
        "Handbook > Release process > Timeline",
    ]


def test_headings_without_text_are_not_chunks_of_their_own() -> None:
    text = "# Handbook\n\n## People\n\n### Leave\n\nTake your holidays.\n"

    assert [(c.heading, c.text) for c in chunk_text(text)] == [
        ("Handbook > People > Leave", "Take your holidays.")
    ]
    assert chunk_text("# Only a title\n") == [Chunk("# Only a title", None, 0)]
    assert chunk_text("#hashtag is not a heading")[0].heading is None


# --- long text ---------------------------------------------------------------------------


def test_a_long_paragraph_is_cut_between_sentences_with_overlap() -> None:
    text = "## Rollout\n\n" + sentences(60)
    chunks = chunk_text(text, max_tokens=120, overlap=30)

    assert len(chunks) > 3
    assert_offsets(text, chunks)
    for chunk in chunks:
        assert chunk.heading == "Rollout"
        assert estimate_tokens(chunk.embedding_text) <= 120
        assert re.fullmatch(r"Sentence \d+ .*matters\.", chunk.text, re.DOTALL)
    for before, after in itertools.pairwise(chunks):
        shared = before.start + len(before.text) - after.start
        assert shared > 0, "consecutive chunks of one section overlap"
        overlap = text[after.start : after.start + shared]
        assert 1 <= overlap.count("Sentence") <= 2
        assert estimate_tokens(overlap) <= 30
    covered = {m.group() for c in chunks for m in re.finditer(r"Sentence \d+", c.text)}
    assert covered == {f"Sentence {i}" for i in range(60)}


def test_without_overlap_chunks_tile_the_text() -> None:
    text = sentences(60)
    chunks = chunk_text(text, max_tokens=100, overlap=0)

    assert len(chunks) > 3
    for before, after in itertools.pairwise(chunks):
        assert text[before.start + len(before.text) : after.start] == " "


def test_chunks_end_at_paragraph_boundaries_when_they_can() -> None:
    first, second = sentences(5, "freeze"), sentences(5, "canary")
    text = f"{first}\n\n{second}"
    assert 75 < estimate_tokens(first) < 100  # both do not fit in 150; the first half does

    chunks = chunk_text(text, max_tokens=150, overlap=0)

    assert [c.text for c in chunks] == [first, second]
    assert chunks[1].start == len(first) + 2


def test_overlap_never_crosses_sections() -> None:
    text = f"## One\n\n{sentences(30, 'one')}\n\n## Two\n\n{sentences(30, 'two')}"
    chunks = chunk_text(text, max_tokens=100, overlap=30)

    for chunk in chunks:
        topic = "one" if chunk.heading == "One" else "two"
        assert chunk.text.count(f"the {topic} ") == chunk.text.count("Sentence ")


def test_a_sentence_longer_than_the_budget_is_cut_between_words() -> None:
    words = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_text(words, max_tokens=50, overlap=0)

    assert len(chunks) > 5
    assert " ".join(c.text for c in chunks) == words
    assert all(estimate_tokens(c.text) <= 50 for c in chunks)


def test_a_run_without_spaces_is_cut_between_characters() -> None:
    blob = "x" + "=" * 3000
    text = f"Header line.\n\n{blob}\n\nFooter line."
    chunks = chunk_text(text, max_tokens=100, overlap=0)

    assert_offsets(text, chunks)
    assert all(estimate_tokens(c.text) <= 100 for c in chunks)
    assert len(chunks) >= 30
    tiled = "".join(c.text for c in chunks)
    assert re.sub(r"\s", "", tiled) == re.sub(r"\s", "", text)


# --- text of every kind ------------------------------------------------------------------


def test_unicode_offsets_and_sentences() -> None:
    text = (
        "# Café notes 🎉\n\n"
        "Ünïcödé text — naïve résumé. Straße und Größe!\n\n"
        + "東京は日本の首都です。" * 40
        + "\r\n\r\nПривет, как дела? Это тест."  # noqa: RUF001 - Cyrillic on purpose
    )
    chunks = chunk_text(text, max_tokens=60, overlap=10)

    assert_offsets(text, chunks)
    assert {c.heading for c in chunks} == {"Café notes 🎉"}
    assert chunks[0].text.startswith("Ünïcödé text — naïve résumé. Straße und Größe!\n\n東京")
    assert len(chunks) > 5
    for chunk in chunks:  # cut between sentences (at 。), never inside one
        assert not re.search("[\u3040-\u9fff]", chunk.text.replace("東京は日本の首都です。", ""))
    russian = "Привет, как дела? Это тест."
    assert chunks[-1].text.endswith("東京は日本の首都です。\r\n\r\n" + russian)


def test_chunking_is_deterministic() -> None:
    text = EVAL_DOCS[0].read_text()

    assert chunk_text(text, title="x") == chunk_text(text, title="x")


def test_estimates_track_the_real_tokenizer() -> None:
    model = load_minilm()
    prose = "\n\n".join(path.read_text() for path in EVAL_DOCS)
    real = model.count_tokens(prose)

    assert 1.0 <= estimate_tokens(prose) / real <= 1.25  # a little pessimistic for prose


def test_every_evaluation_chunk_fits_the_model_window() -> None:
    model = load_minilm()
    assert len(EVAL_DOCS) >= 30
    for path in EVAL_DOCS:
        source = path.read_text()
        chunks = chunk_text(source, title=path.stem)
        assert chunks, path
        assert_offsets(source, chunks)
        for chunk in chunks:
            assert model.count_tokens(chunk.embedding_text) <= MAX_SEQUENCE_LENGTH, path
