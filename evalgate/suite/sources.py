"""A suite's sources beyond its cases: the document set, redaction, and OTLP trace files converted once to native."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._files import read_text
from .._yaml import YamlDoc
from ..config import Config
from ..documents import (
    DocumentSet,
    FunctionPermissions,
    FunctionUsers,
    GroupPermissions,
    Permissions,
    UserFile,
    UserPermissions,
    Users,
)
from ..errors import SuiteError, display_path
from ..redact import Redactor
from ..traces import BadLine
from .spec import RedactSpec, SuiteSpec, TracesSource


@dataclass
class LoadNotes:
    """Things worth telling the user that are not errors."""

    warnings: list[str] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    bad_line_count: int = 0


def _redactor(spec: SuiteSpec, doc: YamlDoc) -> Redactor | None:
    """The suite's redactor: every built-in detector unless ``redact:`` says otherwise."""
    from ..redact import build_redactor

    if spec.redact is False:
        return None
    rs = spec.redact if isinstance(spec.redact, RedactSpec) else RedactSpec()
    try:
        return build_redactor(rs.detectors, rs.patterns, rs.python)
    except ValueError as exc:
        raise SuiteError(str(exc), location=doc.locate(("redact",)),
                         hint="redact: {detectors: [email, phone, card, api_key, bearer], patterns: {NAME: REGEX}, "
                              "python: module:function}, or redact: false") from None


def _source_format(src: TracesSource, path: str, doc: YamlDoc, i: int) -> str:
    from ..traces.otlp import is_otlp

    fmt = src.format
    if fmt == "auto":
        fmt = "otlp" if is_otlp(path) else "native"
    if fmt == "native" and src.mapping is not None:
        raise SuiteError("'mapping' applies to OTLP trace files, and this one is native JSONL",
                         location=doc.locate(("traces", i, "mapping"), key=True),
                         hint="remove mapping, or set format: otlp if the file is OTLP JSON")
    return fmt


def _converted_otlp(src: TracesSource, path: Path, base: Path, config: Config, spec: SuiteSpec, doc: YamlDoc,
                    i: int, notes: LoadNotes) -> str:
    """An OTLP source converted (and redacted) to native JSONL under the store's folder, reused while unchanged."""
    from .. import __version__
    from ..redact import build_redactor
    from ..traces import otlp

    if not path.is_file():
        raise SuiteError(f"trace file not found: {path}", location=doc.locate(("traces", i)),
                         hint="paths in a suite are relative to the suite's folder")
    if isinstance(src.mapping, str):
        mapping_path = Path(os.path.normpath(base / src.mapping))
        mapping = otlp.load_mapping(mapping_path)
        mapping_key: Any = read_text(mapping_path)
    else:
        try:
            mapping = otlp.parse_mapping(src.mapping)
        except ValueError as exc:
            raise SuiteError(str(exc), location=doc.locate(("traces", i, "mapping")),
                             hint="e.g. mapping: {route: {span_name: route_decision, attribute: app.route}}") from None
        mapping_key = src.mapping
    redact = spec.redact if isinstance(spec.redact, RedactSpec) else (RedactSpec() if spec.redact else None)
    st = path.stat()
    key = hashlib.sha256(json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, mapping_key,
                                     redact.model_dump() if redact else None, __version__],
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    out = config.store.parent / "otlp" / f"{path.name}.{key}.jsonl"
    summary_path = out.with_name(out.name + ".summary.json")
    if not out.is_file() or not summary_path.is_file():
        redactor = None
        if redact is not None:
            try:
                redactor = build_redactor(redact.detectors, redact.patterns, redact.python)
            except ValueError as exc:
                raise SuiteError(str(exc), location=doc.locate(("redact",))) from None
        from ..traces.otlp.guard import checked_import

        stats = checked_import([path], out, mapping=mapping, redactor=redactor)
        summary_path.write_text(json.dumps({"unmapped": dict(stats.unmapped.most_common()),
                                            "redacted": stats.redacted}), encoding="utf-8")
    # said on every run that uses the converted copy, not only the one that converted it
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if summary["unmapped"]:
        shown = ", ".join(f"{k} ({v})" for k, v in list(summary["unmapped"].items())[:5])
        notes.warnings.append(f"{display_path(path)}: {len(summary['unmapped'])} OTLP attribute(s) not mapped: {shown}")
    if summary["redacted"]:
        notes.warnings.append(f"{display_path(path)}: redacted on import: "
                              + ", ".join(f"{kind} {n}" for kind, n in summary["redacted"].items()))
    return str(out)


def _load_documents(spec: SuiteSpec, doc: YamlDoc, base: Path, path: str,
                    search: Sequence[Path] = ()) -> tuple[DocumentSet | None, Permissions | None]:
    """The suite's document set and permission source (errors point at the YAML key).

    ``search``: the folders a ``module:function`` reference imports from (the project root, the suite's folder).
    """
    documents: DocumentSet | None = None
    permissions: Permissions | None = None
    search = tuple(search) or (base,)
    key = "documents"
    try:
        if spec.documents is not None:
            ds = spec.documents
            # a document that does not say who may read it matters only while the set is the truth
            unlisted = ds.unlisted or ("error" if spec.permissions is None else "private")
            documents = DocumentSet.load(Path(os.path.normpath(base / ds.file)), acl_field=ds.acl_field,
                                         unlisted=unlisted)
            permissions = GroupPermissions.of(documents)
        key = "permissions"
        if spec.permissions is not None:
            if spec.permissions.file is not None:
                permissions = GroupPermissions.load(Path(os.path.normpath(base / spec.permissions.file)))
            elif spec.permissions.python is not None:
                permissions = FunctionPermissions.load(spec.permissions.python, search)
        key = "users"
        if spec.users is not None:
            if permissions is None:
                raise SuiteError("users: gives users their groups, but the suite says nothing about who may read what",
                                 hint="name the document set (documents:) or a permission source (permissions:) too")
            users: Users
            if spec.users.file is not None:
                users = UserFile.load(Path(os.path.normpath(base / spec.users.file)))
            else:
                users = FunctionUsers.load(str(spec.users.python), search)
            permissions = UserPermissions(permissions, users)
    except SuiteError as exc:
        if exc.location is None:
            exc.location = doc.locate((key,))
        raise
    return documents, permissions
