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
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ._files import read_text
from .errors import Location, SuiteError, display_path
from .traces import User

OPEN_GROUPS = frozenset({"*", "public"})
Unlisted = Literal["error", "private", "public"]
"""What a document without an ACL field means: an error at its line, readable by nobody, or by everyone."""
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
    def load(cls, path: Path | str, *, acl_field: str = "groups", unlisted: Unlisted = "private") -> DocumentSet:
        """Read a JSONL file or a folder of Markdown files.

        acl_field: the key that lists who may read a document. unlisted: what a
        document without it means (``error``: a SuiteError at its line).
        """
        path = Path(path)
        acl = _Acl(acl_field, unlisted)
        if path.is_dir():
            return cls(list(_read_markdown_folder(path, acl)), path)
        if not path.is_file():
            raise SuiteError(f"document set not found: {display_path(path)}",
                             hint="documents: names a .jsonl file or a folder of .md files, relative to the suite")
        if path.suffix.lower() not in (".jsonl", ".ndjson"):
            raise SuiteError(f"document set must be a .jsonl file or a folder of .md files: {display_path(path)}",
                             location=Location(display_path(path)))
        return cls(list(_read_jsonl(path, acl)), path)


@dataclass(frozen=True, slots=True)
class _Acl:
    """How a document set says who may read a document."""

    field: str = "groups"
    unlisted: Unlisted = "private"


def _loc(source: str) -> Location | None:
    if not source:
        return None
    file, _, line = source.rpartition(":")
    return Location(file, int(line)) if line.isdigit() else Location(source)


def _groups(value: Any, where: Location, name: str = "groups") -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(g, str) for g in value):
        return tuple(value)
    raise SuiteError(f"'{name}' must be a list of group names", location=where,
                     hint=f'e.g. "{name}": ["customer", "support"]')


def _acl_groups(raw: dict[str, Any], doc_id: str, where: Location, acl: _Acl) -> tuple[str, ...]:
    """The groups that may read a document; a document that does not say is what ``unlisted`` makes it."""
    if raw.get(acl.field) is not None:
        return _groups(raw[acl.field], where, acl.field)
    if acl.unlisted == "public":
        return ("*",)
    if acl.unlisted == "private":
        return ()
    other = [k for k, v in raw.items() if k not in ("id", "title", "text", "content")
             and (isinstance(v, list) and v and all(isinstance(g, str) for g in v))]
    named = f"; if '{other[0]}' lists them, say acl_field: {other[0]}" if other else ""
    raise SuiteError(f"document '{doc_id}' has no '{acl.field}' field, so nobody knows who may read it{named}",
                     location=where if where.line else Location(where.path, 1),
                     hint=f'give it "{acl.field}": [...] (["*"] for everyone), name the field that holds them '
                          "(documents: {file: ..., acl_field: NAME}), or say what a document without one means "
                          "(documents: {file: ..., unlisted: private} for nobody, unlisted: public for everyone)")


def _document(raw: Any, where: Location, default_id: str | None = None, text: str | None = None,
              acl: _Acl = _Acl()) -> Document:
    if not isinstance(raw, dict):
        raise SuiteError("a document is a mapping with id, title, groups and text", location=where)
    doc_id = raw.get("id", default_id)
    if not isinstance(doc_id, str) or not doc_id:
        raise SuiteError("a document needs a non-empty string 'id'", location=where,
                         hint='e.g. {"id": "kb/refund-policy", "title": ..., "groups": [...], "text": ...}')
    body = text if text is not None else raw.get("text", raw.get("content", ""))
    if not isinstance(body, str):
        raise SuiteError(f"document '{doc_id}': 'text' must be a string", location=where)
    meta = {k: v for k, v in raw.items() if k not in ("id", "title", acl.field, "text", "content")}
    return Document(doc_id, str(raw.get("title") or doc_id), _acl_groups(raw, doc_id, where, acl), body, meta,
                    f"{where.path}:{where.line}" if where.line else where.path)


def _read_jsonl(path: Path, acl: _Acl = _Acl()) -> Iterator[Document]:
    shown = display_path(path)
    with io.StringIO(read_text(path)) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SuiteError(f"not JSON: {exc.msg}", location=Location(shown, n, exc.colno),
                                 hint="a document set holds one JSON object per line") from None
            yield _document(raw, Location(shown, n), acl=acl)


def _read_markdown_folder(folder: Path, acl: _Acl = _Acl()) -> Iterator[Document]:
    import yaml

    for file in sorted(folder.rglob("*.md")):
        shown = display_path(file)
        text = read_text(file)
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
        yield _document(front, Location(shown), default_id, text, acl)


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
        return cls(_read_id_groups(path, _PERMISSION_FILE), f"permission file {display_path(path)}")


@dataclass(frozen=True, slots=True)
class _IdGroupsFile:
    """The words a file of ids → groups is described in, for its errors."""

    what: str
    """e.g. "permission file"."""
    ids: str
    """Whose ids it holds: "document", "user"."""
    key: str
    """The suite key that names it."""
    example: str
    """A line of it, in YAML."""


_PERMISSION_FILE = _IdGroupsFile("permission file", "document", "permissions", "kb/refund-policy: [customer, support]")
_USERS_FILE = _IdGroupsFile("users file", "user", "users", "u-17: [customer]")
_GROUP_SEPARATORS = re.compile(r"[;|,\s]+")


def _read_id_groups(path: Path, kind: _IdGroupsFile) -> dict[str, tuple[str, ...]]:
    """Ids → groups from a YAML/JSON mapping, JSONL lines ``{id, groups}`` or CSV ``id,groups`` (file:line errors)."""
    shown = display_path(path)
    forms = (f"a YAML/JSON mapping ({kind.example}), JSONL lines {{\"id\": ..., \"groups\": [...]}}, "
             "or CSV with columns id,groups (groups separated by ; or |)")
    if not path.is_file():
        raise SuiteError(f"{kind.what} not found: {shown}",
                         hint=f"{kind.key}: {{file: PATH}} maps {kind.ids} ids to groups: {forms}; "
                              "paths are relative to the suite's folder")
    suffix = path.suffix.lower()
    mapping: dict[str, tuple[str, ...]] = {}
    lines: dict[str, int] = {}

    def add(raw_id: Any, groups: tuple[str, ...], where: Location) -> None:
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
            raise SuiteError(f"each entry of a {kind.what} needs a {kind.ids} 'id'", location=where, hint=forms)
        key = str(raw_id).strip()
        if key in mapping:
            raise SuiteError(f"{kind.ids} id '{key}' appears twice (first at line {lines[key]})", location=where,
                             hint=f"a {kind.ids} is listed once, with all its groups")
        mapping[key] = groups
        lines[key] = where.line or 0

    if suffix in (".jsonl", ".ndjson"):
        with io.StringIO(read_text(path)) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = Location(shown, n)
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SuiteError(f"not JSON: {exc.msg}", location=Location(shown, n, exc.colno),
                                     hint=f"a {kind.what} in JSONL holds one {{\"id\", \"groups\"}} object per line") from None
                if not isinstance(raw, dict) or "groups" not in raw:
                    raise SuiteError(f"each line of a {kind.what} is an object with 'id' and 'groups'", location=where,
                                     hint=f'e.g. {{"id": "{kind.example.split(":")[0]}", "groups": ["customer"]}}')
                add(raw.get("id"), _groups(raw["groups"], where), where)
    elif suffix == ".csv":
        with io.StringIO(read_text(path), newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            if "id" not in columns or "groups" not in columns:
                raise SuiteError(f"a {kind.what} in CSV needs the columns id and groups (it has: "
                                 f"{', '.join(columns) or 'none'})", location=Location(shown, 1),
                                 hint=f"first line: id,groups; then e.g. {kind.example.split(':')[0]},customer;support")
            for row in reader:
                row = {(k or "").strip(): v for k, v in row.items()}
                where = Location(shown, reader.line_num)
                groups = tuple(g for g in _GROUP_SEPARATORS.split(row.get("groups") or "") if g)
                add(row.get("id") or "", groups, where)
    else:
        from ._yaml import load_yaml

        parsed = load_yaml(path, read_text(path))
        if not isinstance(parsed.data, dict):
            raise SuiteError(f"a {kind.what} maps {kind.ids} ids to lists of groups", location=Location(shown, 1),
                             hint=kind.example)
        for key, value in parsed.data.items():
            where = parsed.locate((key,))
            add(key, _groups(value, where), where)
    return mapping


def _load_function(ref: str, search_paths: Sequence[Path | str], what: str, hint: str) -> Callable[..., Any]:
    """A team's ``module:function``, imported from the suite's folders; any failure is a SuiteError."""
    from .references import import_reference

    try:
        obj = import_reference(ref, search_paths)
    except Exception as exc:  # the team's module may fail however it likes while importing
        raise SuiteError(f"cannot load {what} {ref}: {type(exc).__name__}: {exc}",
                         hint=f"{hint}; the module is imported from the suite's folder or the project root") from None
    if not callable(obj):
        raise SuiteError(f"{what} {ref} is not callable", hint=hint)
    return obj  # type: ignore[no-any-return]


class FunctionPermissions:
    """Permissions answered by the team's own ``module:function(user, doc_id) -> bool``."""

    def __init__(self, ref: str, fn: Callable[[User, str], Any]):
        self.ref = ref
        self._fn = fn

    @classmethod
    def load(cls, ref: str, search_paths: Sequence[Path | str] = ()) -> FunctionPermissions:
        return cls(ref, _load_function(ref, search_paths, "permission function",
                                       "permissions: {python: module:function} names a function(user, doc_id) -> bool"))

    def may_read(self, user: User, doc_id: str) -> bool | None:
        answer = self._fn(user, doc_id)
        return None if answer is None else bool(answer)

    def describe(self) -> str:
        return f"function {self.ref}"


class Users(Protocol):
    """The team's answer to "which groups is this user in?"."""

    def groups_of(self, user_id: str) -> tuple[str, ...] | None:
        """The user's groups; None when the source does not know the user."""

    def describe(self) -> str:
        """Where the answer comes from, for explanations."""


class UserFile:
    """Users' groups from a file of user ids → groups (YAML/JSON mapping, JSONL ``{id, groups}``, CSV ``id,groups``)."""

    def __init__(self, groups_by_id: Mapping[str, tuple[str, ...]], origin: str):
        self._groups = dict(groups_by_id)
        self.origin = origin

    @classmethod
    def load(cls, path: Path) -> UserFile:
        return cls(_read_id_groups(path, _USERS_FILE), f"users file {display_path(path)}")

    def groups_of(self, user_id: str) -> tuple[str, ...] | None:
        return self._groups.get(user_id)

    def describe(self) -> str:
        return self.origin


class FunctionUsers:
    """Users' groups from the team's own ``module:function(user_id) -> list[str]`` (None: not a user it knows).

    Asked once per user id: a directory lookup is not repeated for every turn.
    """

    def __init__(self, ref: str, fn: Callable[[str], Any]):
        self.ref = ref
        self._fn = fn
        self._known: dict[str, tuple[str, ...] | None] = {}

    @classmethod
    def load(cls, ref: str, search_paths: Sequence[Path | str] = ()) -> FunctionUsers:
        return cls(ref, _load_function(ref, search_paths, "users function",
                                       "users: {python: module:function} names a function(user_id) -> list[str]"))

    def groups_of(self, user_id: str) -> tuple[str, ...] | None:
        if user_id not in self._known:
            answer = self._fn(user_id)
            if isinstance(answer, str):
                answer = [answer]
            if answer is not None and not (isinstance(answer, (list, tuple, set, frozenset))
                                           and all(isinstance(g, str) for g in answer)):
                raise TypeError(f"users function {self.ref} returned {answer!r} for user '{user_id}'; "
                                "expected a list of group names, or None for a user it does not know")
            self._known[user_id] = None if answer is None else tuple(answer)
        return self._known[user_id]

    def describe(self) -> str:
        return f"users function {self.ref}"


@dataclass(frozen=True, slots=True)
class ResolvedUser:
    """The user a permission check runs as, and where their groups came from when the request had none."""

    user: User
    origin: str | None = None
    """The users source that gave the groups (None: the case or trace gave them)."""
    unknown: bool = False
    """The users source does not know this user: no groups."""

    def describe(self) -> str:
        """``u-17 [customer]``, with where the groups came from when a users source gave them."""
        who = f"{self.user.id} [{', '.join(self.user.groups) or 'no groups'}]"
        if self.unknown:
            return f"{who} (user {self.user.id} is not in the users source, {self.origin})"
        return f"{who} (groups from {self.origin})" if self.origin else who


class UserPermissions:
    """A permission source whose users, when they arrive with an id and no groups, get them from a users source.

    The groups a case or recorded trace gives are kept; an id alone is looked
    up, never filled from what the system under test reports. A user the
    source does not know has no groups, so only open documents are theirs.
    """

    def __init__(self, permissions: Permissions, users: Users):
        self.permissions = permissions
        self.users = users

    def resolve(self, user: User) -> ResolvedUser:
        if user.groups:
            return ResolvedUser(user)
        groups = self.users.groups_of(user.id)
        origin = self.users.describe()
        if groups is None:
            return ResolvedUser(user, origin, unknown=True)
        return ResolvedUser(User(id=user.id, groups=list(groups)), origin)

    @property
    def ids(self) -> list[str]:
        """Every document id the permission source knows (to find them in answers and tool results)."""
        return list(getattr(self.permissions, "ids", []))

    def may_read(self, user: User, doc_id: str) -> bool | None:
        return self.permissions.may_read(self.resolve(user).user, doc_id)

    def describe(self) -> str:
        return self.permissions.describe()


def resolve_user(permissions: Permissions, user: User) -> ResolvedUser:
    """The user with the groups a permission check uses (from the users source when the user has none)."""
    return permissions.resolve(user) if isinstance(permissions, UserPermissions) else ResolvedUser(user)
