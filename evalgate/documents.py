"""Document sets and the truth about who may read them.

A document set is a JSONL file (one object per line: ``id``, ``title``,
``groups``, ``text``, any other keys kept as metadata) or a folder of Markdown
files whose YAML front matter gives ``id``, ``title`` and ``groups`` (the id
defaults to the file's path inside the folder, without ``.md``).

Who may read a document is decided here, never by what the system under test
reports about itself: by the document set's ``groups``, by a file mapping
document ids to groups, or by a ``module:function(user, doc_id) -> bool``.
A user may read a document when they share a group with it; the group ``*``
(or ``public``) opens a document to everyone.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import Location, SuiteError, display_path
from .traces import User

OPEN_GROUPS = frozenset({"*", "public"})
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Document:
    """One document: its id, who may read it, and its text."""

    id: str
    title: str
    groups: tuple[str, ...]
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    """file:line (or file) it came from."""


class DocumentSet:
    """Documents by id, in the order they were read."""

    def __init__(self, documents: list[Document], path: Path | None = None):
        self.path = path
        self._docs: dict[str, Document] = {}
        for doc in documents:
            if doc.id in self._docs:
                raise SuiteError(f"duplicate document id '{doc.id}' (first at {self._docs[doc.id].source})",
                                 location=_loc(doc.source), hint="document ids must be unique within a set")
            self._docs[doc.id] = doc

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[Document]:
        return iter(self._docs.values())

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def get(self, doc_id: str) -> Document | None:
        return self._docs.get(doc_id)

    def __getitem__(self, doc_id: str) -> Document:
        return self._docs[doc_id]

    @property
    def ids(self) -> list[str]:
        return list(self._docs)

    @classmethod
    def load(cls, path: Path | str) -> DocumentSet:
        """Read a JSONL file or a folder of Markdown files."""
        path = Path(path)
        if path.is_dir():
            return cls(list(_read_markdown_folder(path)), path)
        if not path.is_file():
            raise SuiteError(f"document set not found: {display_path(path)}",
                             hint="documents: names a .jsonl file or a folder of .md files, relative to the suite")
        if path.suffix.lower() not in (".jsonl", ".ndjson"):
            raise SuiteError(f"document set must be a .jsonl file or a folder of .md files: {display_path(path)}",
                             location=Location(display_path(path)))
        return cls(list(_read_jsonl(path)), path)


def _loc(source: str) -> Location | None:
    if not source:
        return None
    file, _, line = source.rpartition(":")
    return Location(file, int(line)) if line.isdigit() else Location(source)


def _groups(value: Any, where: Location) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(g, str) for g in value):
        return tuple(value)
    raise SuiteError("'groups' must be a list of group names", location=where,
                     hint='e.g. "groups": ["customer", "support"]')


def _document(raw: Any, where: Location, default_id: str | None = None, text: str | None = None) -> Document:
    if not isinstance(raw, dict):
        raise SuiteError("a document is a mapping with id, title, groups and text", location=where)
    doc_id = raw.get("id", default_id)
    if not isinstance(doc_id, str) or not doc_id:
        raise SuiteError("a document needs a non-empty string 'id'", location=where,
                         hint='e.g. {"id": "kb/refund-policy", "title": ..., "groups": [...], "text": ...}')
    body = text if text is not None else raw.get("text", raw.get("content", ""))
    if not isinstance(body, str):
        raise SuiteError(f"document '{doc_id}': 'text' must be a string", location=where)
    meta = {k: v for k, v in raw.items() if k not in ("id", "title", "groups", "text", "content")}
    return Document(doc_id, str(raw.get("title") or doc_id), _groups(raw.get("groups"), where), body, meta,
                    f"{where.path}:{where.line}" if where.line else where.path)


def _read_jsonl(path: Path) -> Iterator[Document]:
    shown = display_path(path)
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SuiteError(f"not JSON: {exc.msg}", location=Location(shown, n, exc.colno),
                                 hint="a document set holds one JSON object per line") from None
            yield _document(raw, Location(shown, n))


def _read_markdown_folder(folder: Path) -> Iterator[Document]:
    import yaml

    for file in sorted(folder.rglob("*.md")):
        shown = display_path(file)
        text = file.read_text(encoding="utf-8")
        front: Any = {}
        match = _FRONT_MATTER.match(text)
        if match:
            try:
                front = yaml.safe_load(match.group(1)) or {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                raise SuiteError(f"front matter is not valid YAML: {getattr(exc, 'problem', exc)}",
                                 location=Location(shown, mark.line + 2 if mark else 1)) from None
            text = text[match.end():]
        elif text.startswith("---"):
            raise SuiteError("front matter opened with --- but never closed", location=Location(shown, 1),
                             hint="end the front matter with a line holding only ---")
        default_id = file.relative_to(folder).with_suffix("").as_posix()
        yield _document(front, Location(shown), default_id, text)


class Permissions(Protocol):
    """The truth about who may read what."""

    def may_read(self, user: User, doc_id: str) -> bool | None:
        """True or False; None when the document is unknown to this source."""

    def describe(self) -> str:
        """Where the truth comes from, for explanations."""


def group_allows(groups: tuple[str, ...] | list[str], user: User) -> bool:
    """A user may read a document when they share a group with it, or it is open to all."""
    allowed = set(groups)
    return bool(allowed & OPEN_GROUPS) or bool(allowed & set(user.groups))


class GroupPermissions:
    """Permissions from document id → groups (a document set, or a mapping file)."""

    def __init__(self, groups_by_id: Mapping[str, tuple[str, ...]], origin: str):
        self._groups = dict(groups_by_id)
        self.origin = origin

    @classmethod
    def of(cls, documents: DocumentSet) -> GroupPermissions:
        return cls({d.id: d.groups for d in documents}, f"document set {display_path(documents.path) if documents.path else ''}".strip())

    def groups(self, doc_id: str) -> tuple[str, ...] | None:
        return self._groups.get(doc_id)

    @property
    def ids(self) -> list[str]:
        """Every document id this source knows (to find them in answers and tool results)."""
        return list(self._groups)

    def may_read(self, user: User, doc_id: str) -> bool | None:
        groups = self._groups.get(doc_id)
        return None if groups is None else group_allows(groups, user)

    def describe(self) -> str:
        return self.origin

    @classmethod
    def load(cls, path: Path) -> GroupPermissions:
        """A file of document ids → groups: YAML/JSON mapping, JSONL ({id, groups}) or CSV (id, groups)."""
        shown = display_path(path)
        if not path.is_file():
            raise SuiteError(f"permission file not found: {shown}",
                             hint="permissions: {file: PATH} maps document ids to the groups that may read them")
        suffix = path.suffix.lower()
        mapping: dict[str, tuple[str, ...]] = {}
        if suffix in (".jsonl", ".ndjson"):
            for document in _read_jsonl(path):
                mapping[document.id] = document.groups
        elif suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as fh:
                for n, row in enumerate(csv.DictReader(fh), 2):
                    if not row.get("id"):
                        raise SuiteError("each row needs an 'id'", location=Location(shown, n),
                                         hint="columns: id, groups (groups separated by spaces, commas or |)")
                    raw = (row.get("groups") or "").replace("|", " ").replace(",", " ")
                    mapping[row["id"]] = tuple(raw.split())
        else:
            from ._yaml import load_yaml

            parsed = load_yaml(path, path.read_text(encoding="utf-8"))
            if not isinstance(parsed.data, dict):
                raise SuiteError("a permission file maps document ids to lists of groups", location=Location(shown, 1),
                                 hint="kb/refund-policy: [customer, support]")
            for key, value in parsed.data.items():
                mapping[str(key)] = _groups(value, parsed.locate((key,)))
        return cls(mapping, f"permission file {shown}")


class FunctionPermissions:
    """Permissions answered by the team's own ``module:function(user, doc_id) -> bool``."""

    def __init__(self, ref: str, fn: Callable[[User, str], Any]):
        self.ref = ref
        self._fn = fn

    @classmethod
    def load(cls, ref: str) -> FunctionPermissions:
        from .references import import_reference

        try:
            obj = import_reference(ref)
        except (ImportError, AttributeError, ValueError) as exc:
            raise SuiteError(f"cannot load permission function {ref}: {exc}",
                             hint="the module must be importable from the project root") from None
        if not callable(obj):
            raise SuiteError(f"permission source {ref} is not callable")
        return cls(ref, obj)

    def may_read(self, user: User, doc_id: str) -> bool | None:
        answer = self._fn(user, doc_id)
        return None if answer is None else bool(answer)

    def describe(self) -> str:
        return f"function {self.ref}"
