"""Full-text search over the chat messages, tasks, documents and files a caller may see.

A request runs a constant number of statements whatever the page size:

1. per kind, the best ``offset + limit + 1`` (id, score) pairs among the rows the caller
   may see (the visibility rules come from :mod:`huddle.access`, never inlined here);
2. the kinds are merged into one ranked list in Python and the page is cut from it;
3. per kind, the page's rows with their snippets, which the database computes for those
   rows only.

The database does the text work. SQLite uses the FTS5 tables ``<table>_fts``
(external content: their rowid is the implicit rowid of ``messages``, ``tasks``,
``documents`` and ``files``, kept in step by triggers); PostgreSQL uses ``to_tsvector``
expressions that GIN indexes cover. Both come from the migrations
``2026-11-22-0400_chat_and_search.py`` and ``2026-12-01-1437_semantic_index_…``.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    func,
    inspect,
    literal_column,
    select,
)
from sqlalchemy import table as table_clause
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.channels import readable_channel_ids
from huddle.access.roles import Role
from huddle.access.service import visible_projects
from huddle.chat.channels import DM_TITLE
from huddle.chat.models import Channel, ChannelKind, Message
from huddle.core.errors import ValidationFailed
from huddle.core.models import Base
from huddle.documents.models import Document, File
from huddle.projects.models import Project
from huddle.search.schemas import (
    DocumentHit,
    FileHit,
    MessageHit,
    SearchHit,
    SearchPage,
    TaskHit,
)
from huddle.tasks.models import BoardColumn, Task

MAX_OFFSET = 1000  # ranked search pages by offset; deep offsets cost more than they help
SNIPPET_WORDS = 20
# Letter and digit runs. "_" separates words here as it does in both databases'
# tokenizers, and no character with a meaning in tsquery or FTS5 syntax can get through.
_TOKEN = re.compile(r"[^\W_]+")
# Private-use characters the database puts around matches (they cannot be confused with
# markup), turned into <mark> tags after escaping. _LT stands in for "<" in the text given
# to ts_headline, whose parser would otherwise drop anything that looks like an HTML tag.
_START, _STOP, _LT = "\ue000", "\ue001", "\ue002"
_SENTINELS = re.compile(f"([{_START}{_STOP}])")
_PG_HEADLINE = (
    f'StartSel="{_START}", StopSel="{_STOP}", MaxWords={SNIPPET_WORDS}, MinWords=10, '
    "ShortWord=2, MaxFragments=0"
)
# A literal, as in the indexes: a bound parameter would keep the planner from using them.
_PG_CONFIG: ColumnElement[str] = literal_column("'english'")


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"loc": ["query", field], "msg": message}])


# --- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Terms:
    """The words searched for: all must match, the last one also as a prefix."""

    tokens: tuple[str, ...]

    @classmethod
    def parse(cls, q: str) -> Terms:
        """The words of ``q``; 422 when it has none (only punctuation or spaces)."""
        tokens = tuple(_TOKEN.findall(q))
        if not tokens:
            raise _invalid("q", "must contain at least one word")
        return cls(tokens)

    def tsquery(self) -> str:
        """PostgreSQL ``to_tsquery`` input: ``tok1 & tok2:*``."""
        return " & ".join([*self.tokens[:-1], f"{self.tokens[-1]}:*"])

    def fts5(self) -> str:
        """FTS5 MATCH input: quoted strings (never operators), ``"tok1" "tok2"*``."""
        return " ".join([*(f'"{t}"' for t in self.tokens[:-1]), f'"{self.tokens[-1]}"*'])


def encode_cursor(offset: int) -> str:
    """The opaque cursor of a result offset."""
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The offset a cursor stands for; 422 if malformed or deeper than ``MAX_OFFSET``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, binascii.Error):
        raw = ""
    match = re.fullmatch(r"o(\d{1,9})", raw)
    if match is None:
        raise _invalid("cursor", "invalid cursor")
    offset = int(match[1])
    if offset > MAX_OFFSET:
        raise _invalid("cursor", f"results beyond the first {MAX_OFFSET} are not served")
    return offset


@dataclass(frozen=True)
class Scope:
    """Who searches, and in which workspace."""

    workspace_id: uuid.UUID
    user_id: uuid.UUID
    role: Role


@dataclass(frozen=True)
class SearchParams:
    terms: Terms
    kinds: tuple[Kind, ...]
    limit: int
    offset: int

    @classmethod
    def parse(cls, q: str, types: str | None, limit: int, cursor: str | None) -> SearchParams:
        """Validate the query string parameters (422 with the offending one's ``loc``)."""
        return cls(
            Terms.parse(q), parse_kinds(types), limit, decode_cursor(cursor) if cursor else 0
        )


def parse_kinds(types: str | None) -> tuple[Kind, ...]:
    """The kinds named in a comma-separated ``types`` (all of them when absent)."""
    if types is None:
        return tuple(KINDS.values())
    names = [name.strip() for name in types.split(",")]
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        allowed = ", ".join(KINDS)
        raise _invalid("types", f"unknown type {unknown[0]!r}; use a subset of: {allowed}")
    return tuple(KINDS[name] for name in dict.fromkeys(names))


# --- searchable kinds ----------------------------------------------------------------------


def _clear(column: str) -> str:
    """What the full-text index reads of an encrypted column: nothing when the value is
    encrypted (a Fernet token), the text otherwise (see the migration
    ``2026-12-02-1800_search_skips_encrypted_content.py``)."""
    return f"CASE WHEN {column} LIKE 'gAAAAA%' THEN '' ELSE coalesce({column}, '') END"


class Kind:
    """One kind of searchable row. Adding one (documents) means a subclass here, an entry
    in :data:`KINDS`, and its FTS5 table and GIN index in a migration."""

    name: ClassVar[str]  # its value in ``?types=``
    model: ClassVar[type[Base]]
    fts_table: ClassVar[str]  # SQLite: the FTS5 table whose rowid is the model's rowid
    snippet_column: ClassVar[int]  # SQLite: the FTS5 column excerpted (-1: the best one)
    # PostgreSQL: the text indexed. It MUST stay identical to the GIN index expression in
    # the migration, or the planner cannot use the index (EXPLAIN is tested).
    document: ClassVar[str]

    @property
    def id(self) -> ColumnElement[uuid.UUID]:
        primary_key: ColumnElement[uuid.UUID] = inspect(self.model).primary_key[0]
        return primary_key

    @property
    def vector(self) -> str:
        return f"to_tsvector('english', {self.document})"

    def visible(self, scope: Scope) -> ColumnElement[bool]:
        """Rows of this kind the caller may see."""
        raise NotImplementedError

    def page(self, query: Select[Any]) -> Select[Any]:
        """Add what the items need (columns, joins) to a query of the page's rows."""
        raise NotImplementedError

    def hit(self, row: Any, score: float, snippet: str) -> SearchHit:
        """The result item of one row of :meth:`page`."""
        raise NotImplementedError


class MessageKind(Kind):
    name = "messages"
    model = Message
    fts_table = "messages_fts"
    snippet_column = 0
    document = _clear("messages.content")

    def visible(self, scope: Scope) -> ColumnElement[bool]:
        readable = readable_channel_ids(scope.workspace_id, scope.user_id, scope.role)
        return and_(Message.deleted_at.is_(None), Message.channel_id.in_(readable))

    def page(self, query: Select[Any]) -> Select[Any]:
        return query.add_columns(
            Message.id,
            Message.channel_id,
            Message.parent_id,
            Message.author_id,
            Message.created_at,
            Channel.name.label("channel_name"),
            Channel.kind.label("channel_kind"),
        ).join(Channel, Channel.id == Message.channel_id)

    def hit(self, row: Any, score: float, snippet: str) -> SearchHit:
        dm = row.channel_kind is ChannelKind.dm
        return MessageHit(
            id=row.id,
            title=DM_TITLE if dm else row.channel_name,
            snippet=snippet,
            score=score,
            channel_id=row.channel_id,
            parent_id=row.parent_id,
            author_id=row.author_id,
            created_at=row.created_at,
        )


class TaskKind(Kind):
    name = "tasks"
    model = Task
    fts_table = "tasks_fts"
    snippet_column = -1  # FTS5 excerpts one column: the title or the description
    document = "coalesce(tasks.title, '') || ' ' || coalesce(tasks.description, '')"

    def visible(self, scope: Scope) -> ColumnElement[bool]:
        projects = visible_projects(scope.workspace_id, scope.user_id, scope.role)
        return Task.project_id.in_(projects.with_only_columns(Project.id))

    def page(self, query: Select[Any]) -> Select[Any]:
        return query.add_columns(
            Task.id,
            Task.title,
            Task.project_id,
            Task.created_at,
            BoardColumn.key.label("status"),
        ).join(BoardColumn, BoardColumn.id == Task.column_id)

    def hit(self, row: Any, score: float, snippet: str) -> SearchHit:
        return TaskHit(
            id=row.id,
            title=row.title,
            snippet=snippet,
            score=score,
            project_id=row.project_id,
            status=row.status,
            created_at=row.created_at,
        )


class DocumentKind(Kind):
    name = "documents"
    model = Document
    fts_table = "documents_fts"
    snippet_column = -1  # the title or the text
    document = "coalesce(documents.title, '') || ' ' || " + _clear("documents.content")

    def visible(self, scope: Scope) -> ColumnElement[bool]:
        projects = visible_projects(scope.workspace_id, scope.user_id, scope.role)
        return Document.project_id.in_(projects.with_only_columns(Project.id))

    def page(self, query: Select[Any]) -> Select[Any]:
        return query.add_columns(
            Document.id,
            Document.title,
            Document.project_id,
            Document.channel_id,
            Document.created_at,
        )

    def hit(self, row: Any, score: float, snippet: str) -> SearchHit:
        return DocumentHit(
            id=row.id,
            title=row.title,
            snippet=snippet,
            score=score,
            project_id=row.project_id,
            channel_id=row.channel_id,
            created_at=row.created_at,
        )


class FileKind(Kind):
    name = "files"
    model = File
    fts_table = "files_fts"
    snippet_column = -1  # the name or the extracted text
    document = "coalesce(files.filename, '') || ' ' || " + _clear("files.text")

    def visible(self, scope: Scope) -> ColumnElement[bool]:
        projects = visible_projects(scope.workspace_id, scope.user_id, scope.role)
        return File.project_id.in_(projects.with_only_columns(Project.id))

    def page(self, query: Select[Any]) -> Select[Any]:
        return query.add_columns(
            File.id,
            File.filename,
            File.content_type,
            File.project_id,
            File.channel_id,
            File.created_at,
        )

    def hit(self, row: Any, score: float, snippet: str) -> SearchHit:
        return FileHit(
            id=row.id,
            title=row.filename,
            snippet=snippet,
            score=score,
            project_id=row.project_id,
            channel_id=row.channel_id,
            content_type=row.content_type,
            created_at=row.created_at,
        )


KINDS: dict[str, Kind] = {
    kind.name: kind for kind in (MessageKind(), TaskKind(), DocumentKind(), FileKind())
}


# --- the database's full-text functions ----------------------------------------------------


@dataclass(frozen=True)
class FullText:
    """Matching, ranking and excerpting on one database (SQLite FTS5 or PostgreSQL)."""

    postgres: bool
    terms: Terms

    @classmethod
    def for_session(cls, session: AsyncSession, terms: Terms) -> FullText:
        return cls(session.get_bind().dialect.name == "postgresql", terms)

    def _tsquery(self) -> ColumnElement[Any]:
        return func.to_tsquery(_PG_CONFIG, self.terms.tsquery())

    def _fts(self, kind: Kind) -> ColumnElement[Any]:
        return literal_column(kind.fts_table)

    def match(self, kind: Kind) -> ColumnElement[bool]:
        """The kind's rows that contain the terms."""
        if self.postgres:
            return literal_column(kind.vector).op("@@")(self._tsquery())
        return self._fts(kind).op("MATCH")(self.terms.fts5())

    def score(self, kind: Kind) -> ColumnElement[float]:
        """Relevance, higher is better (FTS5's bm25 is lower-is-better, hence the minus)."""
        if self.postgres:
            return func.ts_rank(literal_column(kind.vector), self._tsquery(), type_=Float)
        return -func.bm25(self._fts(kind), type_=Float)

    def snippet(self, kind: Kind) -> ColumnElement[str]:
        """About ``SNIPPET_WORDS`` words around the match, matches between sentinels."""
        if not self.postgres:
            return func.snippet(
                self._fts(kind), kind.snippet_column, _START, _STOP, "…", SNIPPET_WORDS
            )
        # Sentinels already in the text are dropped so that only ours mark matches.
        text = func.replace(
            func.translate(literal_column(kind.document), _START + _STOP + _LT, ""), "<", _LT
        )
        return func.ts_headline(_PG_CONFIG, text, self._tsquery(), _PG_HEADLINE)

    def searchable(self, kind: Kind, scope: Scope, *columns: Any) -> Select[Any]:
        """``columns`` over the kind's rows that match and that the caller may see."""
        query = select(*columns)
        if self.postgres:
            query = query.select_from(kind.model)
        else:
            # bm25() and snippet() need the FTS5 table in the FROM clause with MATCH. The
            # rowids are implicit: SQLAlchemy's table metadata does not know them.
            fts_rowid: ColumnElement[Any] = literal_column(f"{kind.fts_table}.rowid")
            rowid: ColumnElement[Any] = literal_column(f"{kind.model.__tablename__}.rowid")
            query = query.select_from(table_clause(kind.fts_table))
            query = query.join(kind.model, fts_rowid == rowid)
        return query.where(self.match(kind), kind.visible(scope))

    def ranked(self, kind: Kind, scope: Scope, limit: int) -> Select[Any]:
        """The best ``limit`` (id, score) of a kind, best first, ties newest first."""
        score = self.score(kind).label("score")
        return (
            self.searchable(kind, scope, kind.id, score)
            .order_by(score.desc(), kind.id.desc())
            .limit(limit)
        )

    def page(self, kind: Kind, scope: Scope, ids: list[uuid.UUID]) -> Select[Any]:
        """The rows of ``ids`` (still matching and visible) with their snippets."""
        query = self.searchable(kind, scope, self.snippet(kind).label("snippet"))
        return kind.page(query).where(kind.id.in_(ids))

    def markup(self, snippet: str) -> str:
        """HTML-escape a database snippet and turn its sentinels into balanced <mark> tags.

        On SQLite a sentinel typed by a user reaches us too; dropping unbalanced ones keeps
        the output well-formed whatever the text holds.
        """
        if self.postgres:
            snippet = snippet.replace(_LT, "<")
        out: list[str] = []
        marked = False
        for part in _SENTINELS.split(snippet.strip()):
            if part == _START and not marked:
                out.append("<mark>")
                marked = True
            elif part == _STOP and marked:
                out.append("</mark>")
                marked = False
            elif part not in (_START, _STOP):
                out.append(html.escape(part))
        if marked:
            out.append("</mark>")
        return "".join(out)


# --- search --------------------------------------------------------------------------------


class _Ranked(NamedTuple):
    score: float
    id: uuid.UUID
    kind: Kind


async def search(session: AsyncSession, scope: Scope, params: SearchParams) -> SearchPage:
    """One page of the caller's visible messages and tasks matching the terms, best first."""
    fulltext = FullText.for_session(session, params.terms)
    end = params.offset + params.limit
    ranked: list[_Ranked] = []
    for kind in params.kinds:
        rows = await session.execute(fulltext.ranked(kind, scope, end + 1))
        ranked.extend(_Ranked(float(score), row_id, kind) for row_id, score in rows)
    # Each kind's list holds its best end + 1, so the merged top end + 1 is exact.
    ranked.sort(key=lambda r: (r.score, r.id), reverse=True)
    items = await _load(session, fulltext, scope, ranked[params.offset : end])
    more = len(ranked) > end and end <= MAX_OFFSET
    return SearchPage(items=items, next_cursor=encode_cursor(end) if more else None)


async def _load(
    session: AsyncSession, fulltext: FullText, scope: Scope, page: list[_Ranked]
) -> list[SearchHit]:
    """The page's items in rank order: one statement per kind present on the page."""
    by_kind: dict[Kind, list[uuid.UUID]] = {}
    for entry in page:
        by_kind.setdefault(entry.kind, []).append(entry.id)
    rows: dict[tuple[Kind, uuid.UUID], Any] = {}
    for kind, ids in by_kind.items():
        result = await session.execute(fulltext.page(kind, scope, ids))
        rows.update(((kind, row.id), row) for row in result)
    items: list[SearchHit] = []
    for entry in page:
        row = rows.get((entry.kind, entry.id))
        if row is not None:  # changed or deleted between the two statements
            items.append(entry.kind.hit(row, entry.score, fulltext.markup(row.snippet)))
    return items
