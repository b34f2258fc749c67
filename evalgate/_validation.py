"""pydantic errors → one clear message at the YAML file:line:col, with a did-you-mean hint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from ._yaml import YamlDoc
from .errors import Location, SuiteError, did_you_mean


def _message(err: Any, model: type[BaseModel] | None = None) -> str:
    loc = err.get("loc", ())
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc[-1]}'"
    if err["type"] == "missing":
        return f"missing required key '{loc[-1]}'"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    return f"'{loc[-1]}': {msg}" if loc and isinstance(loc[-1], str) else msg


def _hint(err: Any, model: type[BaseModel] | None) -> str | None:
    if err["type"] != "extra_forbidden" or model is None:
        return None
    loc = err["loc"]
    fields = _fields_at(model, loc[:-1])
    return did_you_mean(str(loc[-1]), fields) or (f"allowed keys: {', '.join(fields)}" if fields else None)


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names of the nested model at ``loc`` (for did-you-mean hints)."""
    import typing

    current: Any = model
    mapping = False
    for part in loc:
        if isinstance(part, int):
            continue
        if mapping:  # a key of dict[str, Model]: the model is already current
            mapping = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        ann = current.model_fields[part].annotation
        mapping = typing.get_origin(ann) is dict
        current = _unwrap(ann, typing)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(ann: Any, typing: Any) -> Any:
    for arg in (typing.get_args(ann) or ()):
        inner = _unwrap(arg, typing)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return ann


def _validate(model: type[BaseModel], data: Any, doc: YamlDoc | None, prefix: tuple[Any, ...], path: str, line: int | None = None) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if doc is not None:
            location = doc.locate(prefix + loc, key=err["type"] == "extra_forbidden")
        else:
            location = Location(path, line)
        where = ".".join(str(p) for p in loc[:-1])
        message = _message(err, model) + (f" (in {where})" if where else "")
        more = len(exc.errors()) - 1
        if more:
            message += f"; {more} more problem(s) after fixing this one"
        raise SuiteError(message, location=location, hint=_hint(err, model)) from None


def _parse_loc(source: str) -> Location:
    path, _, rest = source.partition(":")
    line, _, col = rest.partition(":")
    return Location(path, int(line) if line.isdigit() else None, int(col) if col.isdigit() else None)
